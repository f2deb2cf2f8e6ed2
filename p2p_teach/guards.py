"""Guards against silent garbage: weights that did not load, and values that are not finite.

* :func:`check_loaded_weights` compares a loaded module with the safetensors file it was
  loaded from, tensor by tensor. A library that cannot read a file's key names may initialise
  the weights at random and only log a warning; this turns that into an error.
* :func:`check_finite` stops an edit at the first NaN or Inf in its latents, noise predictions
  or decoded images, naming the step and the likely causes.
* :func:`check_prompt` and :func:`tokenize_prompt` refuse a prompt without words, and name the
  prompt (source or target) that is too long.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .tokens import TokenView

# Prefixes that one library version writes and another does not (transformers 5's
# CLIPTextModel has no ``text_model.`` level; transformers 4's has).
_OPTIONAL_PREFIXES = ("text_model.",)


class WeightsNotLoadedError(RuntimeError):
    """A module's weights differ from the file they were loaded from (missing, extra or
    different tensors): the library loaded something else, often random weights."""


class NonFiniteError(FloatingPointError):
    """An edit produced NaN or Inf values; the message names the step and the likely cause."""


def _file_key_to_module_key(key: str, module_keys: set[str]) -> str | None:
    if key in module_keys:
        return key
    for prefix in _OPTIONAL_PREFIXES:
        if key.startswith(prefix) and key.removeprefix(prefix) in module_keys:
            return key.removeprefix(prefix)
        if prefix + key in module_keys:
            return prefix + key
    return None


def check_loaded_weights(module: torch.nn.Module, files: Iterable[str | Path], what: str) -> None:
    """Check that ``module`` holds exactly the tensors of the safetensors ``files``.

    Every entry of the module's state dict must come from the files with the same values (up
    to the module's dtype), and every tensor of the files must have a place in the module.

    Raises:
        WeightsNotLoadedError: names the missing, unexpected or differing tensors, and the fix.
    """
    from safetensors import safe_open

    state = module.state_dict()
    module_keys = set(state)
    found: set[str] = set()
    unexpected: list[str] = []
    differing: list[str] = []
    non_finite: list[str] = []
    for path in files:
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (a safetensors handle, not a dict)
                target = _file_key_to_module_key(key, module_keys)
                if target is None:
                    unexpected.append(key)
                    continue
                found.add(target)
                stored = handle.get_tensor(key)
                loaded = state[target].detach().cpu()
                if stored.is_floating_point() and not bool(torch.isfinite(stored).all()):
                    non_finite.append(key)
                    continue
                if stored.shape != loaded.shape or not torch.equal(
                    stored.to(loaded.dtype), loaded
                ):
                    differing.append(target)
    missing = sorted(module_keys - found)
    if non_finite:
        raise WeightsNotLoadedError(
            f"the {what}'s weight file holds NaN or Inf values in {len(non_finite)} tensors (e.g. "
            f"{', '.join(sorted(non_finite)[:3])}): the file is damaged, and every image would "
            "come out black. Fix: reinstall p2p_teach, or export the training run again."
        )
    if not (missing or unexpected or differing):
        return
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("different", differing)):
        if keys:
            problems.append(f"{len(keys)} {label} (e.g. {', '.join(sorted(keys)[:3])})")
    raise WeightsNotLoadedError(
        f"the {what} did not load its weights: {'; '.join(problems)}; its "
        f"{len(module_keys)} tensors would run with values not in the file. Fix: reinstall "
        "p2p_teach (the weight files may be damaged), or install the versions of diffusers "
        "and transformers the package lists."
    )


def check_finite(tensor: torch.Tensor, what: str, step: int | None = None) -> None:
    """Raise :class:`NonFiniteError` if ``tensor`` holds a NaN or an Inf.

    Args:
        tensor: any tensor (checked on its device, one reduction).
        what: what it is, for the message: ``"latents"``, ``"noise prediction"``,
            ``"decoded images"``, ``"latents="`` (the caller's z_T).
        step: the denoising step it belongs to, or None (before the loop or after it).
    """
    if bool(torch.isfinite(tensor).all()):
        return
    nan = int(torch.isnan(tensor).sum())
    inf = int(torch.isinf(tensor).sum())
    where = f" at step {step}" if step is not None else ""
    if what == "latents=":
        raise NonFiniteError(
            f"latents= holds {nan} NaN and {inf} Inf values; an edit starts from them and "
            "would only produce NaN. Fix: pass finite latents (e.g. torch.randn(shape)), or "
            "drop latents= to draw them from the seed."
        )
    causes = (
        "likely causes: damaged model weights (check the weight files, or reinstall/redownload "
        "the model), fp16 overflow (load the model in float32 or bfloat16: "
        "load_pipeline(..., dtype=torch.float32)), or non-finite latents= given to the edit"
    )
    raise NonFiniteError(
        f"the {what}{where} hold {nan} NaN and {inf} Inf values of {tensor.numel()}; the edit "
        f"stopped and nothing was returned ({causes})."
    )


class EmptyPromptError(ValueError):
    """A prompt with no words: nothing to generate, no words to edit or show."""


def check_prompt(prompt: object, role: str) -> str:
    """``prompt`` if it is a string with at least one word.

    Args:
        prompt: the prompt.
        role: ``"source"`` or ``"target"``, for the message.

    Raises:
        TypeError: not a string.
        EmptyPromptError: empty or only whitespace.
    """
    if not isinstance(prompt, str):
        raise TypeError(
            f"the {role} prompt must be a string, not {type(prompt).__name__} {prompt!r:.40}. "
            "Fix: e.g. 'a big red circle'."
        )
    from .tokens import default_fix_text, normalize

    if not normalize(prompt, default_fix_text()):  # what the tokenizer keeps of it
        raise EmptyPromptError(
            f"the {role} prompt {prompt!r} has no words: an edit needs words to draw and to "
            "compare. Fix: give it words, e.g. 'a big red circle' (the same prompt twice "
            "with edit=None draws it plainly)."
        )
    return prompt


def tokenize_prompt(prompt: object, role: str, tokenizer: Any = None) -> TokenView:
    """:func:`~p2p_teach.tokens.tokenize` of a checked prompt; a too-long prompt is named as the
    source or the target."""
    from .tokens import PromptTooLongError, tokenize

    try:
        return tokenize(check_prompt(prompt, role), tokenizer)
    except PromptTooLongError as error:
        raise PromptTooLongError(f"the {role} prompt is too long: {error}") from error


def check_pipeline(pipe: Any, caller: str) -> None:
    """``pipe`` has what a Stable Diffusion v1 pipeline has, or a TypeError naming the fix."""
    missing = [
        name
        for name in ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
        if getattr(pipe, name, None) is None
    ]
    if missing or not hasattr(pipe, "encode_prompt"):
        # a model name or folder given where the pipeline goes: load it first
        load = f"p2p_teach.load_pipeline({pipe!r})" if isinstance(pipe, str) else (
            "p2p_teach.load_pipeline()")  # fmt: skip
        raise TypeError(
            f"{caller} needs a diffusers StableDiffusionPipeline (SD v1.x); this "
            f"{type(pipe).__name__} lacks {missing or ['encode_prompt']}. "
            f"Fix: pipe = {load}, then pass pipe."
        )
