"""The command line of ``python -m p2p_teach.shapes.train``: flags, their checks, ``main``."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from .checkpoints import log
from .config import TEXT_TARGETS, TrainConfig
from .export import check_export_folder, export_from_run
from .phases import run_phases

DESCRIPTION = (
    "Train the shapes Stable Diffusion from scratch on CPU: ``python -m p2p_teach.shapes.train``."
)


def build_parser() -> argparse.ArgumentParser:
    """The flags, one per :class:`~.config.TrainConfig` field, with its defaults."""
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(
        prog="python -m p2p_teach.shapes.train", description=DESCRIPTION
    )
    parser.add_argument("--out", type=Path, default=defaults.out)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--n-images", type=int, default=defaults.n_images)
    parser.add_argument("--vae-minutes", type=float, default=defaults.vae_minutes)
    parser.add_argument("--text-minutes", type=float, default=defaults.text_minutes,
                        help="text pre-training")  # fmt: skip
    parser.add_argument(
        "--text-targets", choices=TEXT_TARGETS, default=defaults.text_targets,
        help="what each slot's embedding is trained to name: its own word, or all said so far",
    )  # fmt: skip
    parser.add_argument(
        "--position-unnamed-share", type=float, default=defaults.position_unnamed_share,
        help="share of one-object captions that leave the position to the seed",
    )  # fmt: skip
    parser.add_argument(
        "--init-from", type=Path, default=defaults.init_from,
        help="fine-tune: start from this exported pipeline's weights (its VAE and text "
        "encoder are kept; the decoder is not fine-tuned again)",
    )  # fmt: skip
    parser.add_argument("--minutes", type=float, default=defaults.minutes,
                        help="UNet training time")  # fmt: skip
    parser.add_argument("--batch", type=int, default=defaults.batch)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--warmup", type=int, default=defaults.warmup)
    parser.add_argument("--ema-decay", type=float, default=defaults.ema_decay)
    parser.add_argument("--ground-weight", type=float, default=defaults.ground_weight)
    parser.add_argument("--ground-every", type=int, default=defaults.ground_every,
                        help="grounding loss every k steps")  # fmt: skip
    parser.add_argument(
        "--no-ground-positions", dest="ground_positions", action="store_false",
        help="ground only colour, shape and size words, not position words",
    )  # fmt: skip
    parser.add_argument(
        "--object-weight", type=float, default=defaults.object_weight,
        help="extra loss weight on the objects' latent pixels (0: plain MSE)",
    )  # fmt: skip
    parser.add_argument(
        "--no-bf16", dest="bf16", action="store_false", help="UNet in fp32 (default bf16 autocast)"
    )
    parser.add_argument("--checkpoint-minutes", type=float, default=defaults.checkpoint_minutes)
    parser.add_argument("--threads", type=int, default=defaults.threads)
    parser.add_argument("--resume", action="store_true", help="continue from checkpoints")
    parser.add_argument("--export", type=Path, default=defaults.export,
                        help="also export fp16 here")  # fmt: skip
    parser.add_argument("--export-only", action="store_true")
    parser.add_argument(
        "--decoder-minutes", type=float, default=defaults.decoder_minutes,
        help="VAE decoder fine-tune time, after the UNet phase",
    )  # fmt: skip
    return parser


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """The run's settings from the command line, checked: a bad combination exits with a
    usage error that names the flag and the fix, before anything is written."""
    parser = build_parser()
    config = TrainConfig(**vars(parser.parse_args(argv)))
    share = config.position_unnamed_share
    if not 0.0 <= share <= 1.0:
        parser.error(f"--position-unnamed-share must be in [0, 1], got {share}")
    if config.init_from is not None and not (config.init_from / "model_index.json").exists():
        parser.error(f"--init-from {config.init_from}: not an exported pipeline folder (no "
                     "model_index.json); pass one such as p2p_teach/shapes/weights")  # fmt: skip
    if config.export_only and config.export is None:
        parser.error("--export-only needs --export DIR, the folder to write the fp16 pipeline "
                     "to (e.g. --export-only --export p2p_teach/shapes/weights)")  # fmt: skip
    if config.export is not None:
        export, out = config.export.resolve(), config.out.resolve()
        if export == out or out in export.parents:
            parser.error(f"--export {config.export} is the run folder --out {config.out} or "
                         "inside it; export to a folder of its own, e.g. --export "
                         f"{config.out / '..' / 'export'}")  # fmt: skip
        try:
            check_export_folder(config.export)
        except ValueError as error:
            parser.error(f"--export: {error}")
    if config.export_only and not any(
        (config.out / name).exists() for name in ("final.pt", "unet_ckpt.pt")
    ):
        parser.error(f"--export-only: {config.out} holds no trained run (no final.pt or "
                     "unet_ckpt.pt); pass the --out of a run that trained its UNet")  # fmt: skip
    return config


def main(argv: list[str] | None = None) -> None:
    """Run all phases (see :mod:`p2p_teach.shapes.train`), or only the export."""
    config = parse_args(argv)
    torch.set_num_threads(config.threads)
    if config.export_only:  # parse_args checked that out holds a trained run
        export_from_run(config.out, config.export, torch.float16)
        log(f"exported to {config.export}")
        return
    run_phases(config)
