"""Exercise (e): the local-blend mask from a word's attention maps.

The learner writes ``local_blend_mask(word_maps, latent_size, threshold) -> (1, 1, h, w)``
from the source's and the target's word maps ``(2, H, W)``, as the original's ``LocalBlend``
does: a 3×3 max-pool, nearest resizing to the latent, each map divided by its own maximum,
``> threshold``, and the source's and target's masks united. Compared with
:func:`p2p_teach.edits.blend_mask` on maps of several sizes, thresholds and scales, with the
two words in different places.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..edits import blend_mask
from .cases import Case, as_tensor, mistake_hint, run_cases
from .feedback import CheckReport, Finding

# name → (map side (H, W), latent (h, w), threshold, source peak, target peak, target scale)
BLEND_CASES: dict[str, tuple] = {
    "4×4 maps, 8×8 latent": ((4, 4), (8, 8), 0.3, (0, 0), (0, 1), 1.0),
    "8×8 maps, 16×16 latent": ((8, 8), (16, 16), 0.3, (2, 5), (3, 5), 0.2),
    "16×16 maps, 16×16 latent, threshold 0.5": ((16, 16), (16, 16), 0.5, (4, 4), (5, 6), 3.0),
    "words in opposite corners": ((8, 8), (8, 8), 0.3, (0, 0), (7, 7), 0.5),
    "a high threshold, 0.9": ((4, 4), (16, 16), 0.9, (2, 2), (1, 1), 1.0),
    "a wide latent, 4×6 maps to 8×12": ((4, 6), (8, 12), 0.3, (1, 4), (2, 1), 0.1),
}


def word_maps(side: tuple[int, int], source_peak, target_peak, target_scale, seed: int):
    """(2, H, W) positive word maps: a bump at each peak on a faint random floor."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.arange(side[0], dtype=torch.float32)[:, None]  # (H, 1)
    columns = torch.arange(side[1], dtype=torch.float32)[None, :]  # (1, W)
    maps = []
    for (row, column), scale in ((source_peak, 1.0), (target_peak, target_scale)):
        bump = torch.exp(-2.0 * ((rows - row) ** 2 + (columns - column) ** 2))  # (H, W)
        floor = 0.05 * torch.rand(side, generator=generator)
        maps.append(scale * (bump + floor))
    return torch.stack(maps)  # (2, H, W)


def check_local_blend_mask(
    local_blend_mask: Callable, *, hint: bool = False, reveal: bool = False
) -> CheckReport:
    """Check the learner's ``local_blend_mask(word_maps, latent_size, threshold)``."""
    cases = []
    for index, (label, (side, latent, threshold, source, target, scale)) in enumerate(
        BLEND_CASES.items()
    ):
        maps = word_maps(side, source, target, scale, index)
        expected = blend_mask(maps, latent, threshold).double()  # (1, 1, h, w)
        name = (
            f"'{label}' (word_maps {tuple(maps.shape)}, latent_size={latent}, "
            f"threshold={threshold})"
        )
        args = (maps, latent, threshold)
        cases.append(Case(name, args, _judge(name, args, expected)))
    return run_cases("local_blend_mask", local_blend_mask, cases, hint=hint, reveal=reveal)


def _judge(name: str, args: tuple, expected: torch.Tensor):
    mistakes = {
        "no 3×3 max-pool: the original spreads each map's peaks to their neighbours first, so "
        "the mask covers a little more than the word": _variant(*args, "no pool"),
        "both maps divided by one common maximum: divide each map by its own maximum, so a "
        "word with weak attention still gets its region": _variant(*args, "common max"),
        "not divided by the maximum: the threshold is a share of each map's maximum":
        _variant(*args, "no max"),
        "the intersection of the two masks: the blend may change the pixels of either word, "
        "so unite them (source OR target)": _variant(*args, "intersection"),
        "only the target's word: the source's word region must change too (the old object "
        "goes), so unite both masks": _variant(*args, "target only"),
        "bilinear resizing: the original resizes the maps with nearest-neighbour": _variant(
            *args, "bilinear"),
    }  # fmt: skip
    height, width = expected.shape[-2:]

    def judge(output: object) -> Finding | None:
        mask = as_tensor(output, (1, 1, height, width), "local_blend_mask")
        if isinstance(mask, str):
            return Finding(name, mask, "one mask for the target's latent: (1, 1, h, w)",
                           _show(expected))  # fmt: skip
        if not bool(((mask == 0) | (mask == 1)).all()):
            return Finding(name, "the mask holds values other than 0 and 1",
                           "compare with the threshold: a pixel changes or it does not",
                           _show(expected))  # fmt: skip
        differ = (mask - expected).abs() > 0.5  # (1, 1, h, w)
        if not differ.any():
            return None
        _, _, row, column = differ.nonzero()[0].tolist()
        what = (
            f"{int(differ.sum())} of {height * width} latent pixels differ, first at row {row}, "
            f"column {column} (yours: {int(mask[0, 0, row, column])})"
        )
        why = mistake_hint(
            mask,
            mistakes,
            "3×3 max-pool (stride 1, padding 1), nearest resize to the latent, divide each map "
            "by its own maximum, keep what exceeds the threshold, unite source and target",
        )
        return Finding(name, what, why, _show(expected))

    return judge


def _variant(maps: torch.Tensor, latent: tuple, threshold: float, mistake: str) -> torch.Tensor:
    """The mask a common mistake gives."""
    maps = maps[:, None].float()  # (2, 1, H, W)
    if mistake != "no pool":
        maps = F.max_pool2d(maps, kernel_size=3, stride=1, padding=1)
    if mistake == "bilinear":
        maps = F.interpolate(maps, size=latent, mode="bilinear", align_corners=False)
    else:
        maps = F.interpolate(maps, size=latent)  # (2, 1, h, w), nearest
    if mistake == "common max":
        maps = maps / maps.amax()
    elif mistake != "no max":
        maps = maps / maps.amax(dim=(2, 3), keepdim=True)
    mask = maps > threshold  # (2, 1, h, w)
    if mistake == "intersection":
        return (mask[:1] & mask[1:]).double()
    if mistake == "target only":
        return mask[1:].double()
    return (mask[:1] | mask[1:]).double()


def _show(expected: torch.Tensor) -> str:
    return (
        "\n".join(" ".join("#" if v else "." for v in row) for row in expected[0, 0].tolist())
        + "\n(# = 1, . = 0)"
    )
