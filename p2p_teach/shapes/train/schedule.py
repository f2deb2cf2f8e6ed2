"""The optimisation: the phase budget on the wall clock, learning rate, optimiser step, EMA."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

import torch

EMA_WARMUP = 10  # the EMA decay warms up as (1 + step) / (EMA_WARMUP + step)


class PhaseClock:
    """A training phase's budget of ``minutes`` of wall clock, ``elapsed`` seconds already spent
    (a resumed phase), and when its next checkpoint is due (every ``checkpoint_minutes``)."""

    def __init__(self, minutes: float, elapsed: float, checkpoint_minutes: float) -> None:
        self.budget = minutes * 60.0
        self.start = time.time() - elapsed
        self.checkpoint_seconds = checkpoint_minutes * 60
        self._last_checkpoint = time.time()

    @property
    def elapsed(self) -> float:
        """Seconds of the phase spent, the resumed ones included."""
        return time.time() - self.start

    def running(self) -> bool:
        """Whether the budget has time left."""
        return self.elapsed < self.budget

    def fraction(self) -> float:
        """The share of the budget spent (0 to 1): what the learning rate schedules follow."""
        return self.elapsed / self.budget

    def checkpoint_due(self) -> bool:
        """Whether a checkpoint is due; if so, the next one is due a period from now."""
        if time.time() - self._last_checkpoint <= self.checkpoint_seconds:
            return False
        self._last_checkpoint = time.time()
        return True


def lr_at(base: float, step: int, frac: float, warmup: int) -> float:
    """Warm-up over ``warmup`` steps, then cosine from ``base`` to 10% by the time budget."""
    return base * min(1.0, (step + 1) / warmup) * (0.1 + 0.45 * (1 + math.cos(math.pi * frac)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def optimiser_step(
    optimizer: torch.optim.Optimizer, loss: torch.Tensor, params: Iterable[torch.Tensor]
) -> None:
    """One update on ``loss``: fresh gradients, clipped to a total norm of 1, then the step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()


def ema_decay_at(step: int, max_decay: float) -> float:
    """The EMA decay after optimiser step ``step`` (0-based): a warm-up, then ``max_decay``.

    ``min(max_decay, (1 + step) / (EMA_WARMUP + step))``: early weights are forgotten fast.
    With ``max_decay`` 0.999 the warm-up reaches it at step 8,990.
    """
    return min(max_decay, (1 + step) / (EMA_WARMUP + step))


@torch.no_grad()
def update_ema(ema: list[torch.Tensor], params: list[torch.Tensor], decay: float) -> None:
    """In place: ``ema ← decay · ema + (1 − decay) · param`` for each pair."""
    torch._foreach_lerp_(ema, [p.detach() for p in params], 1.0 - decay)


def ema_state_dict(unet: torch.nn.Module, ema: list[torch.Tensor]) -> dict:
    """The UNet's state dict with the EMA weights in place of the live ones."""
    with torch.no_grad():
        for p, e in zip(unet.parameters(), ema, strict=True):
            p.copy_(e)
    return unet.state_dict()
