"""What differs between the diffusers versions p2p_teach runs on (imports nothing of p2p_teach)."""

from __future__ import annotations

from typing import Any


def dtype_kwarg(dtype: Any) -> dict:
    """diffusers renamed ``torch_dtype`` to ``dtype``; pass whichever this version reads."""
    from diffusers.pipelines import pipeline_utils

    return {"dtype" if hasattr(pipeline_utils, "_resolve_dtype") else "torch_dtype": dtype}
