"""The injection sweep: the same edit with the source's attention injected for more and more steps.

The recitation's "Injection Step" slide runs bicycle → motorcycle and bicycle → train from "w/o
attention injection" (fraction 0: the target is generated from the same noise but freely) to
"full attention injection" (fraction 1: the target keeps the source's attention at every step).
:func:`injection_sweep` runs that grid for cross-attention (self-attention held fixed) or for
self-attention (cross-attention held fixed). Results go into a :class:`SweepCache` keyed by
every setting that changes the picture, so asking again (a slider moved back, a widget redrawn)
never recomputes. :func:`layout_survival` measures how much of the source's layout each edited
image keeps (:func:`p2p_teach.measures.layout_similarity`).
"""

from __future__ import annotations

import hashlib
import json
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .defaults import model_defaults
from .engine import EditResult, edit
from .measures import layout_similarity

Varied = Literal["cross", "self"]
DEFAULT_FRACTIONS: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


@dataclass(frozen=True)
class SweepKey:
    """Every setting that changes an edited image: the cache key of one sweep cell.

    ``pipeline`` is the pipeline object itself, held weakly (two built-in pipelines built with
    different weight seeds share a name; a pipeline that is gone never matches a new one that
    happens to get its ``id``). The scheduler, its config, the UNet's dtype and the device are
    in the key too, so changing ``pipe.scheduler`` or moving the pipeline misses the cache.
    """

    model: str
    pipeline: weakref.ref  # to the pipeline
    scheduler: str  # class name
    scheduler_config: str  # a stable hash of the scheduler's config
    dtype: str
    device: str
    source_prompt: str
    target_prompt: str
    seed: int
    steps: int
    guidance: float
    cross: float
    self_: float
    options: str = ""  # a stable hash of the other edit() arguments (edit=, blend=, …)


@dataclass
class SweepCache:
    """Finished edits by their settings. ``hits`` and ``misses`` count lookups (for tests)."""

    results: dict[SweepKey, EditResult] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0

    def get(self, key: SweepKey) -> EditResult | None:
        result = self.results.get(key)
        if result is None:
            self.misses += 1
        else:
            self.hits += 1
        return result

    def put(self, key: SweepKey, result: EditResult) -> None:
        """Store a cell, and drop the cells of pipelines that no longer exist (their keys can
        never match again)."""
        self.results = {
            other: kept
            for other, kept in self.results.items()
            if other.pipeline() is not None
        }
        self.results[key] = result

    def __len__(self) -> int:
        return len(self.results)

    def __contains__(self, key: object) -> bool:
        return key in self.results


@dataclass(frozen=True)
class SweepResult:
    """One row of the sweep: the varied setting, the fixed one, and an edit per fraction."""

    varied: Varied
    fixed: float  # the other setting's fraction
    source_image: Any  # PIL; the source is the same in every cell (same seed and prompt)
    cells: dict[float, EditResult]

    @property
    def fractions(self) -> list[float]:
        return sorted(self.cells)

    def images(self) -> dict[float, Any]:
        """fraction → edited image (PIL)."""
        return {fraction: self.cells[fraction].edited_image for fraction in self.fractions}


# injection_sweep sets these edit() arguments itself, from vary, fractions and fixed
_SWEEP_OWN = {"cross_steps": "cross", "self_steps": "self"}


def _model_name(pipe: Any) -> str:
    return str(getattr(pipe, "name_or_path", "") or "pipeline")


def _identity(pipe: Any) -> weakref.ref:
    """A weak reference to ``pipe`` (equal only while it lives and is the same object)."""
    return weakref.ref(pipe)


def config_hash(config: Any) -> str:
    """A stable hash of a scheduler's config (the same across sessions, unlike ``hash``)."""
    items = dict(config) if config is not None else {}
    text = json.dumps(items, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# edit() arguments that change neither the images nor what a cell holds: left out of the key
# (``record`` stays in: a cell computed without attention history must not answer a request
# for one)
_NOT_IN_KEY = frozenset({"progress", "callback", "preview"})


def _describe(value: Any) -> Any:
    """A JSON-ready description of an edit() argument that two equal settings share."""
    import torch

    if hasattr(value, "describe") and callable(value.describe):
        return {"type": type(value).__name__, **value.describe()}
    if isinstance(value, torch.Tensor):
        data = value.detach().cpu().contiguous()
        digest = hashlib.sha256(data.numpy().tobytes() if data.dtype != torch.bfloat16
                                else data.float().numpy().tobytes()).hexdigest()[:16]  # fmt: skip
        return {"tensor": list(data.shape), "dtype": str(data.dtype), "sha256": digest}
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _describe(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [_describe(item) for item in items]
    return repr(value)


def options_hash(edit_kwargs: dict[str, Any] | None) -> str:
    """A stable hash of the edit() arguments beyond the sweep's own (``edit=``, ``blend=``,
    ``latents=``, ``self_max_ratio=``…): a Refine cell never answers a Replace request."""
    described = {
        name: _describe(value)
        for name, value in sorted((edit_kwargs or {}).items())
        if name not in _NOT_IN_KEY
    }
    text = json.dumps(described, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _device(pipe: Any) -> str:
    """Where the pipeline runs: its execution device (under CPU offload, the GPU)."""
    try:
        return str(pipe._execution_device)
    except Exception:  # not a diffusers pipeline, or one without modules
        unet = getattr(pipe, "unet", None)
        return str(getattr(unet, "device", "unknown"))


def sweep_key(
    pipe: Any,
    source_prompt: str,
    target_prompt: str,
    *,
    seed: int,
    steps: int,
    guidance: float,
    cross: float,
    self_: float,
    edit_kwargs: dict[str, Any] | None = None,
) -> SweepKey:
    """The cache key of one cell (fractions rounded to 4 decimals, so 0.6 == 0.6000000001);
    ``edit_kwargs``: the other :func:`~p2p_teach.engine.edit` arguments (:func:`options_hash`)."""
    scheduler = getattr(pipe, "scheduler", None)
    unet = getattr(pipe, "unet", None)
    return SweepKey(
        _model_name(pipe),
        _identity(pipe),
        type(scheduler).__name__,
        config_hash(getattr(scheduler, "config", None)),
        str(getattr(unet, "dtype", "unknown")),
        _device(pipe),
        source_prompt,
        target_prompt,
        int(seed),
        int(steps),
        float(guidance),
        round(float(cross), 4),
        round(float(self_), 4),
        options_hash(edit_kwargs),
    )


def injection_sweep(
    pipe: Any,
    source_prompt: str,
    target_prompt: str,
    *,
    vary: Varied = "cross",
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    fixed: float | None = None,
    seed: int = 0,
    steps: int = 10,
    guidance: float | None = None,
    cache: SweepCache | None = None,
    on_cell: Callable[[int, int, float], None] | None = None,
    **edit_kwargs: Any,
) -> SweepResult:
    """Run the edit once per fraction of the varied injection, reusing cached cells.

    Args:
        pipe: a ``StableDiffusionPipeline``.
        source_prompt, target_prompt: a word swap, e.g. bicycle → motorcycle.
        vary: ``"cross"`` (cross-attention steps vary; self-attention fixed) or ``"self"``.
        fractions: the injection fractions, from 0 (none) to 1 (every step).
        fixed: the other injection's fraction; default 0 for self-attention when cross varies
            (the slide's sweep is cross-attention alone) and 0.8 for cross-attention when self
            varies.
        seed, steps, guidance: as in :func:`p2p_teach.engine.edit`.
        cache: a :class:`SweepCache` to read from and fill; cells already there are not
            recomputed.
        on_cell: called as ``on_cell(index, count, fraction)`` before each cell (for a
            progress bar), cached or not.
        edit_kwargs: more :func:`~p2p_teach.engine.edit` arguments (``edit=Replace()`` is the
            default); those that change the images are part of the cache key.
            ``cross_steps`` and ``self_steps`` are the sweep's own: set them with ``vary``,
            ``fractions`` and ``fixed``. A sweep shows images, so its cells record no
            attention (``record="none"``, about a sixth faster on the built-in model); pass
            ``record="auto"`` to keep each cell's :class:`~p2p_teach.history.AttentionHistory`.
    """
    own = sorted(name for name in edit_kwargs if name in _SWEEP_OWN)
    if own:
        raise TypeError(
            f"injection_sweep sets {' and '.join(own)} itself, so it cannot take them. Fix: "
            "choose the varied injection with vary='cross' or vary='self', its values with "
            "fractions=(...), and the other injection's fraction with fixed=...; e.g. "
            f"vary={_SWEEP_OWN[own[0]]!r}, fractions=(0.0, 0.5, 1.0), fixed=0.4."
        )
    if vary not in ("cross", "self"):
        raise ValueError(f"vary={vary!r}: use 'cross' or 'self'")
    if not fractions:
        raise ValueError("a sweep needs at least one fraction, e.g. (0.0, 0.5, 1.0)")
    if fixed is None:
        fixed = 0.0 if vary == "cross" else 0.8
    cache = cache if cache is not None else SweepCache()
    guidance = model_defaults(pipe).guidance if guidance is None else guidance
    edit_kwargs.setdefault("progress", False)
    edit_kwargs.setdefault("record", "none")
    cells: dict[float, EditResult] = {}
    ordered = sorted({round(float(f), 4) for f in fractions})
    for index, fraction in enumerate(ordered):
        if on_cell is not None:
            on_cell(index, len(ordered), fraction)
        cross, self_ = (fraction, fixed) if vary == "cross" else (fixed, fraction)
        key = sweep_key(
            pipe, source_prompt, target_prompt, seed=seed, steps=steps, guidance=guidance,
            cross=cross, self_=self_, edit_kwargs=edit_kwargs,
        )  # fmt: skip
        result = cache.get(key)
        if result is None:
            result = edit(
                pipe, source_prompt, target_prompt, seed=seed, steps=steps, guidance=guidance,
                cross_steps=key.cross, self_steps=key.self_, **edit_kwargs,
            )  # fmt: skip
            cache.put(key, result)
        cells[fraction] = result
    first = cells[ordered[0]]
    return SweepResult(vary, float(fixed), first.source_image, cells)


def layout_survival(sweep: SweepResult, grid: int = 8) -> dict[float, float]:
    """fraction → layout similarity of the edited image to the source image (−1 … 1)."""
    return {
        fraction: layout_similarity(sweep.source_image, image, grid=grid)
        for fraction, image in sweep.images().items()
    }
