"""p2p_teach: teach Prompt-to-Prompt image editing on Stable Diffusion, step by step, in Jupyter.

    import p2p_teach as p2p

    pipe = p2p.load_pipeline()                       # the built-in offline model (CPU is fine)
    p2p.tokens_view("A lion eating", "A hippopotamus eating")          # prompts → CLIP slots
    p2p.mapper_view()                                # the word-swap mapper matrix M
    result = p2p.edit(pipe, "a big red circle", "a big blue circle", edit=p2p.Replace())
    p2p.show(result)                                 # source and edited image side by side
    p2p.timeline_view(result)                        # the attention maps, step by step

The top level holds what a learner needs: loading a pipeline, tokenizing, the mapper, the edit
and its kinds, and one call per view. Everything else is public in its module (``p2p_teach.
tokens``, ``.mapper``, ``.alignment``, ``.engine``, ``.history``, ``.figures``, ``.widgets``…).
Names are imported lazily (torch, diffusers and matplotlib are slow to import), so
``import p2p_teach`` is instant and ``p2p_teach.tokenize`` loads only what it needs.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> (module that defines it, its name there)
_EXPORTS: dict[str, tuple[str, str]] = {
    "setup": ("course", "setup"),  # every notebook's first call: the model, steps, prompts
    "load_pipeline": ("models", "load_pipeline"),
    "tokenize": ("tokens", "tokenize"),
    "word_swap_mapper": ("mapper", "word_swap_mapper"),
    "edit": ("engine", "edit"),
    "Replace": ("edits", "Replace"),
    "Refine": ("edits", "Refine"),
    "Reweight": ("edits", "Reweight"),
    "LocalBlend": ("edits", "LocalBlend"),
    "invert": ("inversion", "invert"),  # a real image → what edit(..., inversion=) starts from
    # one call per view (the pipeline tour and the injection sweep: p2p_teach.widgets)
    "show": ("figures.images", "result_figure"),
    "tokens_view": ("widgets.tokens", "TokenExplorer"),
    "mapper_view": ("widgets.mapper", "MapperExplorer"),
    "edit_view": ("widgets.edit_runner", "EditRunner"),
    "timeline_view": ("widgets.timeline", "AttentionTimeline"),
}

# Names this package's top level offered before it was kept small. They still import from
# here, unlisted; new code imports them from their modules (shown here).
_FORMER: dict[str, str] = {
    "TokenView": "tokens",
    "load_clip_tokenizer": "tokens",
    "PromptTooLongError": "tokens",
    "WordNotFoundError": "tokens",
    "describe_pipeline": "models",
    "ModelNotAvailableError": "models",
    "lesson_prompts": "lessons",
    "LessonPrompts": "lessons",
    "format_mapper": "mapper",
    "check_mapper": "mapper",
    "WordCountMismatchError": "mapper",
    "refinement_alignment": "alignment",
    "format_alignment": "alignment",
    "EditResult": "engine",
    "StepInfo": "engine",
    "UnsupportedSchedulerError": "engine",
    "NoEdit": "edits",
    "AttentionHistory": "history",
    "attention_processors": "processors",
    "PipelineBusyError": "processors",
    "ScheduleError": "schedules",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module, attribute = _EXPORTS[name]
        return getattr(importlib.import_module(f".{module}", __name__), attribute)
    if name in _FORMER:
        return getattr(importlib.import_module(f".{_FORMER[name]}", __name__), name)
    raise AttributeError(f"module 'p2p_teach' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
