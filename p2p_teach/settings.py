"""What an edit ran with: :class:`EditSettings`, frozen and typed, saved as ``settings.json``.

    result = edit(pipe, "a big red circle", "a big blue circle", seed=1, steps=10)
    result.settings.guidance             # 2.0 (the built-in model's own scale)
    result.settings.cross_step_ranges    # {'default': (0, 8)}: steps 0–7 take the source's maps
    EditSettings.from_json(result.settings.to_json()) == result.settings   # True

Windows are kept twice, as the fractions asked for (``cross_steps``, ``self_steps``) and as
the 0-based step ranges they cover (``cross_step_ranges``, ``self_step_range``: start
included, stop excluded). ``edit`` and ``blend`` are the edits' own JSON descriptions
(:meth:`p2p_teach.edits.Edit.describe`). The JSON is the one p2p_teach 0.1.0 wrote, so old
result folders load; fields added since take their default when a file lacks them.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Conventions = Literal["p2p_teach", "original"]
CONVENTIONS: tuple[str, ...] = ("p2p_teach", "original")

# Fields a settings.json written before they existed may lack, with the value they had then.
_ADDED_SINCE_0_1_0: dict[str, Any] = {
    "conventions": "p2p_teach",
    "null_embeddings_given": False,
    "target_null_steps": None,
}


def check_conventions(conventions: object) -> str:
    """``conventions`` if it names one (``"p2p_teach"`` or ``"original"``), else a ValueError."""
    if conventions not in CONVENTIONS:
        raise ValueError(
            f"conventions={conventions!r}: use 'p2p_teach' (this toolkit's step windows) or "
            "'original' (the original code's window counting)."
        )
    return str(conventions)


def _pair(values: Any) -> tuple:
    return tuple(values)


@dataclass(frozen=True)
class EditSettings:
    """Everything needed to reproduce one edit; see the module docstring for the windows.

    Frozen: no field can be reassigned (``dataclasses.replace`` makes a changed copy); the
    mappings are the settings' own copies.
    """

    source_prompt: str
    target_prompt: str
    edit: Mapping[str, Any]  # the edit's describe(): {"kind": "replace", "rule": "course"}
    blend: Mapping[str, Any] | None  # LocalBlend.describe(), or None
    seed: int
    latents_given: bool  # z_T was given (latents=...), not drawn from the seed
    steps: int
    guidance: float
    height: int
    width: int
    cross_steps: Mapping[str, tuple[float, float]]  # word (or "default") → (start, end) shares
    # word → (first step, stop step); UNet calls, not steps, under conventions="original"
    cross_step_ranges: Mapping[str, tuple[int, int]]
    self_steps: tuple[float, float]
    self_step_range: tuple[int, int]  # (first step, stop step), or calls as above
    self_max_ratio: float
    self_max_side: int  # self-attention is injected in layers of side ≤ this
    blend_resolution: int | None  # the cross-attention side LocalBlend read
    record: str | int | tuple[int, ...]  # which layers the history kept (layers.KeepSetting)
    record_slots: str  # "used" or "all"
    scheduler: str  # the scheduler's class name
    scheduler_config: Mapping[str, Any]
    model: str = "a pipeline built in memory"
    device: str = "cpu"
    dtype: str = "float32"
    p2p_teach_version: str = "0.1.0"
    conventions: str = "p2p_teach"  # whose windows, padding and mapper rule the edit used
    null_embeddings_given: bool = False  # per-step unconditional embeddings were given
    # with them: the share of the steps (from the first) in which the target took them too
    target_null_steps: float | None = None

    def __post_init__(self) -> None:
        set_field = object.__setattr__  # frozen: normalise once, here
        set_field(self, "edit", copy.deepcopy(dict(self.edit)))
        set_field(self, "blend", None if self.blend is None else copy.deepcopy(dict(self.blend)))
        set_field(self, "cross_steps", {k: _pair(v) for k, v in self.cross_steps.items()})
        set_field(
            self, "cross_step_ranges", {k: _pair(v) for k, v in self.cross_step_ranges.items()}
        )
        set_field(self, "self_steps", _pair(self.self_steps))
        set_field(self, "self_step_range", _pair(self.self_step_range))
        if not isinstance(self.record, (str, int)):
            set_field(self, "record", tuple(sorted(self.record)))
        set_field(self, "scheduler_config", copy.deepcopy(dict(self.scheduler_config)))
        check_conventions(self.conventions)

    @property
    def kind(self) -> str:
        """The edit's kind: ``"replace"``, ``"refine"``, ``"reweight"`` or ``"none"``."""
        return str(self.edit.get("kind", ""))

    def to_json(self) -> dict[str, Any]:
        """JSON-ready data (pairs as lists), the ``settings.json`` of a saved result."""
        names = (each.name for each in dataclasses.fields(self))
        return {name: _json_ready(getattr(self, name)) for name in names}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EditSettings:
        """Settings from :meth:`to_json`'s data, or from a settings.json written by 0.1.0.

        Raises:
            ValueError: a field is missing or unknown (the message names it).
        """
        names = {each.name for each in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        missing = sorted(names - set(data) - set(_ADDED_SINCE_0_1_0))
        if unknown or missing:
            raise ValueError(
                "these are not an edit's settings: "
                + "; ".join(
                    part
                    for part in (
                        f"unknown fields {unknown}" if unknown else "",
                        f"missing fields {missing}" if missing else "",
                    )
                    if part
                )
                + ". Fix: load a settings.json written by EditResult.save."
            )
        return cls(**{**_ADDED_SINCE_0_1_0, **data})

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_json(), sort_keys=True, default=str))

    def __getitem__(self, key: str) -> Any:
        """``settings[key]``: the value under ``key`` in :meth:`to_json`'s data, for code
        written when settings were a plain dict (prefer the attribute: ``settings.seed``)."""
        if key not in {each.name for each in dataclasses.fields(self)}:
            raise KeyError(key)
        return _json_ready(getattr(self, key))


def _json_ready(value: Any) -> Any:
    """Tuples as lists and mappings as dicts, recursively (copies, never the frozen values)."""
    if isinstance(value, Mapping):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return [_json_ready(item) for item in value]
    return value
