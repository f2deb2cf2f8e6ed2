"""A training run's settings: :class:`TrainConfig`, and what a resumed run must keep of them."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoints import log

TEXT_TARGETS = ("word", "cumulative")
# Settings that define the run's cached data and components: a resumed run must keep them.
FIXED_ON_RESUME: tuple[str, ...] = (
    "seed", "n_images", "position_unnamed_share", "text_targets", "init_from",
)  # fmt: skip


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run, one field per command-line flag (``--n-images`` is
    ``n_images``; ``--no-bf16`` and ``--no-ground-positions`` clear ``bf16`` and
    ``ground_positions``). Built once from the command line by
    :func:`~p2p_teach.shapes.train.cli.parse_args`, which also checks it."""

    out: Path = Path("runs/shapes")
    seed: int = 0
    n_images: int = 30000
    vae_minutes: float = 10.0
    text_minutes: float = 4.0  # text pre-training
    text_targets: str = "word"  # one of TEXT_TARGETS
    position_unnamed_share: float = 0.35
    init_from: Path | None = None  # a fine-tune's exported pipeline
    minutes: float = 110.0  # UNet training time
    batch: int = 32
    lr: float = 8e-4
    warmup: int = 200
    ema_decay: float = 0.999
    ground_weight: float = 0.1
    ground_every: int = 1  # the grounding loss every k steps
    ground_positions: bool = True
    object_weight: float = 3.0
    bf16: bool = True  # the UNet under bf16 autocast
    checkpoint_minutes: float = 5.0
    threads: int = 2
    resume: bool = False
    export: Path | None = None  # also export an fp16 pipeline here
    export_only: bool = False
    decoder_minutes: float = 8.0  # VAE decoder fine-tune, after the UNet phase

    def to_json(self) -> str:
        """The settings as the run's ``args.json`` holds them (paths as strings)."""
        return json.dumps(dataclasses.asdict(self), default=str, indent=1)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_resume(out: Path, config: TrainConfig) -> TrainConfig:
    """Refuse to resume ``out`` with settings that disagree with its ``args.json``.

    The settings of :data:`FIXED_ON_RESUME` define what the run has cached (data, latents,
    text encoder, a fine-tune's start), so a resumed run must keep them: raises
    ``SystemExit`` naming the flag and the fix. Returns the settings to resume with: a
    fine-tune resumed without ``--init-from`` takes the run's own (from ``args.json``).
    """
    path = out / "args.json"
    if not path.exists():
        return config
    saved = json.loads(path.read_text())
    for name in FIXED_ON_RESUME:
        if name not in saved:  # an older run's args.json, without this setting
            continue
        was, now = saved[name], getattr(config, name)
        if name == "init_from":
            if now is None:
                if was is not None:
                    config = dataclasses.replace(config, init_from=Path(was))
                    log(f"resume: a fine-tune of {was}")
                continue
            if was is None:
                raise SystemExit(f"--resume: {out} trains from scratch, so --init-from {now} "
                                 "cannot resume it; drop --init-from, or use another --out "
                                 "for a fine-tune")  # fmt: skip
            same = Path(was).resolve() == Path(now).resolve()
        else:
            same = was == now  # numbers compare by value (3 == 3.0)
        if not same:
            raise SystemExit(f"--resume: {out} was made with {_flag(name)} {was}, not {now}; "
                             f"repeat {_flag(name)} {was} to resume it (its cached data and "
                             f"components depend on it), or use another --out")  # fmt: skip
    return config


def check_cached_lengths(n_images: int, **cached: torch.Tensor) -> None:
    """Refuse cached tensors (name: tensor) whose first dimension is not ``n_images``."""
    for name, tensor in cached.items():
        if tensor.shape[0] != n_images:
            raise SystemExit(f"{name} holds {tensor.shape[0]} samples but the run has "
                             f"--n-images {n_images}; resume with the --n-images it was made "
                             "with, or use another --out")  # fmt: skip
