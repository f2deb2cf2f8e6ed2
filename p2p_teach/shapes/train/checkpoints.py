"""The run folder's files: the log, atomic saves, and each training phase's checkpoint."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch


def log(message: str) -> None:
    """Print a time-stamped line (the log goes to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def save_atomic(obj: object, path: Path) -> None:
    """``torch.save`` through a temporary file, so a killed run never leaves half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_phase(
    path: Path, key: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int,
    elapsed: float, **extra: object,
) -> None:  # fmt: skip
    """Checkpoint a training phase: ``model`` under ``key``, optimizer, step, wall clock, RNG.

    The step and the clock also go to a small ``<path>.json`` beside it, which can be read
    without loading the checkpoint.
    """
    state = {key: model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
             "elapsed": elapsed, "rng": torch.get_rng_state(), **extra}  # fmt: skip
    save_atomic(state, path)
    clock = path.with_suffix(path.suffix + ".json")
    tmp = clock.with_suffix(clock.suffix + ".tmp")  # not the checkpoint's own temporary file
    tmp.write_text(json.dumps({"step": step, "elapsed": elapsed}))
    os.replace(tmp, clock)


def resume_phase(
    path: Path, key: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer, phase: str
) -> tuple[int, float, dict]:
    """Load a :func:`save_phase` checkpoint if there is one: (step, elapsed seconds, state).

    A missing checkpoint gives ``(0, 0.0, {})``; the RNG is restored when it was saved.
    """
    if not path.exists():
        return 0, 0.0, {}
    state = torch.load(path, weights_only=False)
    model.load_state_dict(state[key])
    optimizer.load_state_dict(state["optimizer"])
    if "rng" in state:
        torch.set_rng_state(state["rng"])
    log(f"{phase}: resumed at step {state['step']}, {state['elapsed'] / 60:.1f} min")
    return state["step"], state["elapsed"], state


def unet_minutes_trained(out: Path) -> float:
    """Minutes of UNet training in the run's checkpoint (0 without one).

    Read from the checkpoint's ``.json`` clock; a checkpoint written without one is loaded.
    """
    path = out / "unet_ckpt.pt"
    clock = path.with_suffix(path.suffix + ".json")
    if clock.exists() and path.exists():
        return json.loads(clock.read_text())["elapsed"] / 60
    return torch.load(path, weights_only=False)["elapsed"] / 60 if path.exists() else 0.0
