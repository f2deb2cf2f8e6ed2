"""The learner's own Prompt-to-Prompt: their functions inside the real edit, beside the toolkit's.

:func:`learner_edit` runs :func:`p2p_teach.engine.edit` with an attention processor of the
explicit-probability kind (``softmax(Q·Kᵀ/√d)`` materialised, as the original code does) whose
cross-attention edit is the learner's: at step k, for every target slot j,

    P*[:, j] = τ[k, j] · edited[:, j] + (1 − τ[k, j]) · P_tgt[:, j]

with ``τ = injection_table(...)`` and ``edited = replace_attention(P_src, build_mapper(swaps))``
for a word swap, or ``refine_attention(P_src, P_tgt, source_index, alphas)`` for a refinement;
with ``blend=LocalBlend(...)``, the blend's mask is ``local_blend_mask(...)``. Everything else
(self-attention injection, the loop, the scheduler) is the engine's.

:func:`check_edit` runs the toolkit's edit and the learner's from the same seed and compares
the edited images: correct when no pixel differs by more than one level of 255.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from ..alignment import refinement_alignment
from ..edits import Edit, LocalBlend, Refine, Replace
from ..mapper import find_swaps
from ..processors import ExplicitAttnProcessor, PromptToPromptProcessor
from ..schedules import check_num_steps, parse_cross_steps
from ..tokens import MAX_SLOTS, TokenView, tokenize
from .cases import as_tensor
from .feedback import NotWritten, Verdict, call_learner

NEEDED: dict[str, tuple[str, ...]] = {
    "replace": ("build_mapper", "replace_attention", "injection_table"),
    "refine": ("refine_attention", "injection_table"),
}
PIXEL_TOLERANCE = 1  # levels of 255


class LearnerFunctionError(RuntimeError):
    """One of the learner's functions failed inside the edit (the message says which, where)."""


@dataclass
class LearnerPlan:
    """The learner's pieces of one edit, computed before the loop (mapper, τ, alignment)."""

    kind: str
    functions: Mapping[str, Callable]
    table: torch.Tensor  # (T, 77): τ, 1 where target slot j takes the source's map at step k
    mapper: torch.Tensor | None = None  # (77, 77) for a word swap
    source_index: torch.Tensor | None = None  # (77,) int64 for a refinement
    alphas: torch.Tensor | None = None  # (77,) for a refinement
    cache: dict = field(default_factory=dict)  # device copies


class LearnerProcessor(ExplicitAttnProcessor, PromptToPromptProcessor):
    """The engine's processor interface, with the learner's cross-attention edit on explicit
    probabilities; subclasses made by :func:`learner_processor_class` carry the plan."""

    plan: ClassVar[LearnerPlan]

    def edit_probabilities(self, attn: Any, probabilities: torch.Tensor) -> torch.Tensor:
        _, pixels, tokens = probabilities.shape
        # (batch·heads, pixels, tokens) → (batch, heads, pixels, tokens), a view
        per_head = probabilities.view(-1, attn.heads, pixels, tokens)
        run = self.run
        if self.layer.cross:
            per_head[run.cond_target] = self._learner_target(per_head).to(per_head.dtype)
            if run.record_call and (self.record or self.blend):
                maps = per_head[[run.cond_source, run.cond_target]].float().mean(dim=1)
                if self.record and run.history is not None:
                    run.history.record(self.layer.name, run.step, maps)  # (2, pixels, 77)
                if self.blend:
                    run.add_blend_maps(maps, self.layer)
        elif self.inject_self and run.coefficients.self_inject[run.row]:
            per_head[run.cond_target] = per_head[run.cond_source]
        return probabilities

    def _learner_target(self, per_head: torch.Tensor) -> torch.Tensor:
        """The edited target (heads, pixels, 77) from the learner's functions."""
        plan, run = self.plan, self.run
        source = per_head[run.cond_source].float()  # (heads, pixels, 77)
        target = per_head[run.cond_target].float()
        tau = plan.table[run.step].to(target.device)  # (77,)
        if not bool(tau.any()):
            return target
        where = f"in layer {self.layer.name} at step {run.step}"
        if plan.kind == "replace":
            name, args = "replace_attention", (source, plan.mapper.to(target.device))
        else:
            index, alphas = plan.source_index.to(target.device), plan.alphas.to(target.device)
            name, args = "refine_attention", (source, target, index, alphas)
        edited = _call(plan.functions, name, where, *args)
        edited = _checked(edited, tuple(target.shape), name, where).to(target)
        return tau * edited + (1 - tau) * target  # (heads, pixels, 77)


def _call(functions: Mapping[str, Callable], name: str, where: str, *args: Any) -> Any:
    try:
        return call_learner(functions[name], *args)
    except NotWritten:
        raise
    except Exception as error:
        raise LearnerFunctionError(
            f"your {name} raised {type(error).__name__} {where}: {error}. Fix: run "
            f"check_{name}({name}) and follow its report."
        ) from error


def _checked(output: Any, shape: tuple[int, ...], name: str, where: str) -> torch.Tensor:
    tensor = as_tensor(output, shape, name)
    if isinstance(tensor, str):
        raise LearnerFunctionError(f"{tensor} ({where}). Fix: run check_{name}({name}).")
    return tensor


def learner_plan(
    functions: Mapping[str, Callable],
    kind: str,
    source: TokenView,
    target: TokenView,
    steps: int,
    cross_steps: Any,
    blends: bool = False,
) -> LearnerPlan:
    """Call the learner's mapper and τ once for the prompts, and the attention function once
    on small maps (a dry run before the edit).

    Raises:
        NotWritten: naming every needed function that is still blank, with its hint.
        LearnerFunctionError: a function raised or returned the wrong shape.
    """
    missing = [name for name in NEEDED[kind] if not callable(functions.get(name))]
    if missing:
        raise TypeError(f"the {kind} edit needs your functions {missing}; pass them by name")
    # the windows the toolkit's edit runs with (a swapped word of another piece count gets its own)
    windows = parse_cross_steps(_as_edit(kind).cross_windows(cross_steps, source, target))
    word_windows = {
        word.core: window
        for text, window in windows.items()
        if text != "default"
        for word in target.find_words(text)
    }
    where = f"for the prompts {source.prompt!r} → {target.prompt!r}"
    blanks: dict[str, str] = {}

    def attempt(name: str, shape: tuple[int, ...], *args: Any) -> torch.Tensor | None:
        try:
            return _checked(_call(functions, name, where, *args), shape, name, where).float()
        except NotWritten as blank:
            blanks[name] = str(blank)
            return None

    plan = LearnerPlan(kind, functions, torch.zeros(0))
    table = attempt("injection_table", (steps, MAX_SLOTS), steps, windows["default"], word_windows)
    maps = torch.full((1, 2, MAX_SLOTS), 1.0 / MAX_SLOTS)  # (heads, pixels, 77) for a dry run
    if kind == "replace":
        plan.mapper = attempt("build_mapper", (MAX_SLOTS, MAX_SLOTS), find_swaps(source, target))
        mapper = torch.eye(MAX_SLOTS) if plan.mapper is None else plan.mapper
        attempt("replace_attention", tuple(maps.shape), maps.clone(), mapper)
    else:
        alignment = refinement_alignment(source, target)
        plan.source_index, plan.alphas = alignment.source_index, alignment.alphas
        attempt("refine_attention", tuple(maps.shape), maps.clone(), maps.clone(),
                alignment.source_index, alignment.alphas)  # fmt: skip
    if blends:  # the learner's LocalBlend mask, if they pass it
        attempt("local_blend_mask", (1, 1, 8, 8), torch.rand(2, 4, 4), (8, 8), 0.3)
    if blanks:
        raise NotWritten("; ".join(f"{name} ({hint})" for name, hint in blanks.items()))
    plan.table = table
    return plan


def learner_processor_class(plan: LearnerPlan) -> type[LearnerProcessor]:
    """A :class:`LearnerProcessor` subclass carrying ``plan`` (the engine builds one per layer)."""
    return type("LearnerProcessor", (LearnerProcessor,), {"plan": plan})


def _as_edit(kind: str) -> Edit:
    if kind not in NEEDED:
        raise ValueError(f"edit={kind!r}: the exercises build 'replace' or 'refine'")
    return Replace() if kind == "replace" else Refine()


def _check_arguments(functions: object, edit: object) -> str:
    """The edit's kind (``"replace"`` or ``"refine"``), or an error naming the fix."""
    if not isinstance(functions, Mapping):
        raise TypeError(
            f"functions must be your functions by name, not {type(functions).__name__}. Fix: "
            "e.g. dict(build_mapper=build_mapper, replace_attention=replace_attention, "
            "injection_table=injection_table)."
        )
    if isinstance(edit, Edit) and edit.kind in NEEDED and edit == _as_edit(edit.kind):
        return edit.kind  # Replace() or Refine() as edit() takes them
    if isinstance(edit, str) and edit in NEEDED:
        return edit
    raise ValueError(
        f"edit={edit!r}: the exercises build the plain word swap and refinement. Fix: "
        "edit='replace' (or Replace()) or edit='refine' (or Refine())."
    )


def learner_edit(
    pipe: Any,
    source_prompt: str,
    target_prompt: str,
    functions: Mapping[str, Callable],
    *,
    edit: str | Edit = "replace",
    steps: int = 25,
    cross_steps: Any = 0.8,
    **kwargs: Any,
):
    """Run the real edit with the learner's functions (see the module docstring).

    Args:
        pipe: the pipeline (e.g. ``load_pipeline()``).
        source_prompt, target_prompt: the prompts.
        functions: the learner's functions by name (``build_mapper``, ``replace_attention``,
            ``injection_table``, ``refine_attention``, and ``local_blend_mask`` for an edit with
            ``blend=LocalBlend(...)``); e.g. ``dict(build_mapper=build_mapper, ...)``.
        edit: ``"replace"`` (word swap) or ``"refine"`` (words added or removed).
        steps, cross_steps: as :func:`p2p_teach.engine.edit`; other keyword arguments too.

    Raises:
        NotWritten: one of the needed functions is still a blank.
        LearnerFunctionError: a function raised or returned the wrong shape (says where).
    """
    from ..engine import edit as run_edit

    edit = _check_arguments(functions, edit)
    if kwargs.get("conventions", "p2p_teach") != "p2p_teach":
        raise ValueError(
            "the exercises build this toolkit's conventions (windows over steps); compare "
            "edit(..., conventions='original') with the toolkit's edit instead"
        )
    source, target = (
        tokenize(source_prompt, pipe.tokenizer),
        tokenize(target_prompt, pipe.tokenizer),
    )
    blend = _learner_blend(functions, kwargs.pop("blend", None))
    plan = learner_plan(
        functions, edit, source, target, check_num_steps(steps), cross_steps,
        blends=blend is not None and "local_blend_mask" in functions,
    )  # fmt: skip
    return run_edit(
        pipe, source_prompt, target_prompt, edit=_as_edit(edit), steps=steps, blend=blend,
        cross_steps=cross_steps, processor_class=learner_processor_class(plan), **kwargs,
    )  # fmt: skip


def _learner_blend(functions: Mapping[str, Callable], blend: LocalBlend | None):
    """``blend`` with the learner's ``local_blend_mask`` as its mask (if they pass one)."""
    if blend is None or "local_blend_mask" not in functions:
        return blend

    def local_blend_mask(word_maps: torch.Tensor, latent_size: tuple, threshold: float):
        where = f"on word maps of shape {tuple(word_maps.shape)}"
        mask = _call(functions, "local_blend_mask", where, word_maps, latent_size, threshold)
        return _checked(mask, (1, 1, *latent_size), "local_blend_mask", where).to(word_maps)

    return dataclasses.replace(blend, mask_function=local_blend_mask)


# -------------------------------------------------------------------------------- comparing


@dataclass
class EditCheck(Verdict):
    """The learner's edit beside the toolkit's.

    Attributes:
        status: ``"correct"``, ``"not written yet"``, ``"wrong"`` or ``"error"``.
        toolkit, learner: the two :class:`~p2p_teach.engine.EditResult` (None if not run).
        max_difference: the largest pixel difference of the edited images, in levels of 255.
        message: the report's text.
    """

    status: str
    message: str
    toolkit: Any = None
    learner: Any = None
    max_difference: int | None = None

    def __str__(self) -> str:
        return self.message

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))


def check_edit(
    pipe: Any,
    source_prompt: str,
    target_prompt: str,
    functions: Mapping[str, Callable],
    *,
    edit: str | Edit = "replace",
    **kwargs: Any,
) -> EditCheck:
    """Run the toolkit's edit and the learner's (same seed and settings) and compare them.

    Correct when the edited images agree to within one level of 255 in every pixel. When
    they differ, the report names the first step and layer where the recorded maps part.
    """
    edit = _check_arguments(functions, edit)
    kwargs.setdefault("progress", False)
    try:
        learner = learner_edit(pipe, source_prompt, target_prompt, functions, edit=edit, **kwargs)
    except NotWritten as blank:
        return EditCheck(
            "not written yet", f"your {edit} edit: not written yet; still blank: {blank}."
        )
    except LearnerFunctionError as error:
        return EditCheck("error", f"your {edit} edit stopped: {error}")
    from ..engine import edit as run_edit

    toolkit = run_edit(pipe, source_prompt, target_prompt, edit=_as_edit(edit), **kwargs)
    difference = image_difference(toolkit.edited_image, learner.edited_image)
    source_difference = image_difference(toolkit.source_image, learner.source_image)
    lines = [
        f"your {edit} edit {source_prompt!r} → {target_prompt!r} against the toolkit's:",
        f"  largest pixel difference, edited image: {difference}/255; source image: "
        f"{source_difference}/255 (at most {PIXEL_TOLERANCE} is a match)",
    ]
    if difference <= PIXEL_TOLERANCE:
        lines.append("  Correct: your Prompt-to-Prompt makes the toolkit's image.")
        return EditCheck("correct", "\n".join(lines), toolkit, learner, difference)
    lines.append(f"  what: {first_divergence(toolkit.history, learner.history)}")
    names = NEEDED[edit] + (("local_blend_mask",) if kwargs.get("blend") is not None else ())
    lines.append(f"  why: {_first_failing_exercise(functions, names)}")
    return EditCheck("wrong", "\n".join(lines), toolkit, learner, difference)


def _first_failing_exercise(functions: Mapping[str, Callable], names: tuple[str, ...]) -> str:
    """Which of the edit's functions fails its own check (the checks take a second or so)."""
    from .attention_checks import check_refine_attention, check_replace_attention
    from .blend_checks import check_local_blend_mask
    from .feedback import _LAST_FAILURE
    from .mapper_checks import check_build_mapper
    from .schedule_checks import check_injection_table

    remembered = dict(_LAST_FAILURE)  # these checks are not the learner's attempts
    checks = {
        "build_mapper": check_build_mapper,
        "replace_attention": check_replace_attention,
        "injection_table": check_injection_table,
        "refine_attention": check_refine_attention,
        "local_blend_mask": check_local_blend_mask,
    }
    try:
        for name in names:
            if name in functions and not checks[name](functions[name]).ok:
                return f"check_{name}({name}) is not correct yet; run it for what is wrong there"
    finally:
        _LAST_FAILURE.clear()
        _LAST_FAILURE.update(remembered)
    return "every function passes its own check, so look at how they combine in the edit"


def image_difference(first: Any, second: Any) -> int:
    """The largest difference of two images' pixel values, in levels of 255."""
    a = np.asarray(first, dtype=np.int16)
    b = np.asarray(second, dtype=np.int16)
    return int(np.abs(a - b).max())


def first_divergence(toolkit_history: Any, learner_history: Any, atol: float = 2e-3) -> str:
    """Where the edited target's recorded maps first differ: the step, the layer, the slots."""
    if toolkit_history is None or learner_history is None:
        return "the edited images differ (no maps were recorded to say where)"
    for step in range(toolkit_history.steps_recorded):
        ours, theirs = toolkit_history.at_step(step), learner_history.at_step(step)
        for name, maps in ours.items():
            differ = (maps[1].float() - theirs[name][1].float()).abs() > atol  # (H, W, columns)
            if differ.any():
                columns = differ.flatten(0, 1).any(0).nonzero().flatten().tolist()
                labels = toolkit_history.columns("target")
                return (
                    f"the edited target's maps first differ at step {step}, layer {name}, "
                    f"target column(s) {', '.join(repr(labels[c]) for c in columns[:6])}"
                )
    return "the maps agree, yet the images differ: look at self-attention and the loop"
