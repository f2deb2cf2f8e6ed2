"""p2p_teach: teach Prompt-to-Prompt image editing on Stable Diffusion, step by step, in Jupyter.

The public API is imported lazily (torch, diffusers and matplotlib are slow to import), so
``import p2p_teach`` is instant and ``p2p_teach.tokenize`` loads only what it needs.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "tokenize": "tokens",
    "TokenView": "tokens",
    "load_clip_tokenizer": "tokens",
    "PromptTooLongError": "tokens",
    "WordNotFoundError": "tokens",
    "load_pipeline": "models",
    "describe_pipeline": "models",
    "lesson_prompts": "lessons",
    "LessonPrompts": "lessons",
    "ModelNotAvailableError": "models",
    "word_swap_mapper": "mapper",
    "format_mapper": "mapper",
    "check_mapper": "mapper",
    "WordCountMismatchError": "mapper",
    "refinement_alignment": "alignment",
    "format_alignment": "alignment",
    "edit": "engine",
    "EditResult": "engine",
    "StepInfo": "engine",
    "UnsupportedSchedulerError": "engine",
    "Replace": "edits",
    "Refine": "edits",
    "Reweight": "edits",
    "LocalBlend": "edits",
    "NoEdit": "edits",
    "AttentionHistory": "history",
    "attention_processors": "processors",
    "PipelineBusyError": "processors",
    "ScheduleError": "schedules",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'p2p_teach' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
