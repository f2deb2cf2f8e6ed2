"""The ``p2p-teach`` command line.

    p2p-teach tokens "A hippopotamus eating"        # the 77 slots of a prompt
    p2p-teach tokens --work "An unimaginably large house"
    p2p-teach mapper "A lion eating" "A hippopotamus eating" [--rule original]
    p2p-teach mapper "a cat" "a fluffy cat" --refine

Wrong input exits with status 2 and one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence


class UsageError(Exception):
    """Bad input from the command line: printed as one line, exit status 2."""


def _cmd_tokens(args: argparse.Namespace) -> None:
    from .tokens import tokenize

    view = tokenize(args.prompt)
    print(view.show_work() if args.work else view.table(show_padding=args.all))


def _add_tokens(subparsers) -> None:
    parser = subparsers.add_parser("tokens", help="print a prompt's 77 CLIP slots")
    parser.add_argument("prompt", help="the prompt, quoted")
    parser.add_argument("--all", action="store_true", help="list every padding slot too")
    parser.add_argument(
        "--work", action="store_true", help="show every stage: normalisation, pre-tokens, BPE"
    )
    parser.set_defaults(run=_cmd_tokens)


def _cmd_mapper(args: argparse.Namespace) -> None:
    from .alignment import format_alignment, refinement_alignment
    from .mapper import format_mapper, word_swap_mapper

    if args.refine:
        print(format_alignment(refinement_alignment(args.source, args.target)))
        return
    print(format_mapper(word_swap_mapper(args.source, args.target, rule=args.rule)))


def _add_mapper(subparsers) -> None:
    parser = subparsers.add_parser(
        "mapper", help="print the word-swap mapper (or refinement alignment) of two prompts"
    )
    parser.add_argument("source", help="the source prompt, quoted")
    parser.add_argument("target", help="the target prompt, quoted")
    parser.add_argument("--rule", choices=("course", "original"), default="course")
    parser.add_argument(
        "--refine", action="store_true", help="align prompts that add or remove words"
    )
    parser.set_defaults(run=_cmd_mapper)


# Each entry adds one subcommand; later modules register theirs here.
SUBCOMMANDS: list[Callable] = [_add_tokens, _add_mapper]


# ---- p2p-teach edit ---------------------------------------------------------------------------


def _fraction_or_pair(text: str) -> float | tuple[float, float]:
    """``0.8`` → 0.8; ``0.2:0.8`` → (0.2, 0.8). Range checks happen in the engine."""
    try:
        if ":" in text:
            start, end = text.split(":", 1)
            return (float(start), float(end))
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a fraction: give e.g. 0.8, or START:END such as 0.2:0.8"
        ) from None


def _word_scale(text: str) -> tuple[str, float]:
    word, _, scale = text.partition("=")
    try:
        return word, float(scale)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give WORD=SCALE, e.g. smiling=3") from None


def _cmd_edit(args: argparse.Namespace) -> None:
    from .edits import LocalBlend, Refine, Replace, Reweight, as_edit
    from .engine import edit
    from .figures.attention import word_steps_figure
    from .models import load_pipeline
    from .schedules import DEFAULT_SELF_STEPS, resolve_schedule
    from .tokens import WordNotFoundError, tokenize

    base = {"replace": Replace(), "refine": Refine(), "none": None}[args.edit]
    chosen = as_edit(base)
    if args.reweight:
        if args.edit == "none":
            raise UsageError("--reweight needs --edit replace or refine (or the same prompts)")
        same = tokenize(args.source).ids == tokenize(args.target).ids
        chosen = Reweight(dict(args.reweight), base=None if same else base)
    blend = None
    if args.blend:
        source, target = tokenize(args.source), tokenize(args.target)
        in_source, in_target = [], []
        for word in args.blend:
            found = False
            for view, bucket in ((source, in_source), (target, in_target)):
                try:
                    view.find_word(word)
                except WordNotFoundError:
                    continue
                bucket.append(word)
                found = True
            if not found:
                raise UsageError(
                    f"--blend {word!r} is in neither prompt; source words "
                    f"{[w.text for w in source.words]}, target words "
                    f"{[w.text for w in target.words]}"
                )
        blend = LocalBlend(in_source or in_target, in_target or in_source)

    # Check the prompts, the edit and the schedules before loading a model (errors come fast).
    chosen.resolve(tokenize(args.source), tokenize(args.target))
    self_steps = DEFAULT_SELF_STEPS if args.self_ is None else args.self_  # any model's is valid
    resolve_schedule(args.cross, self_steps, args.steps, tokenize(args.target))
    pipe = load_pipeline(args.model)  # prints which model runs
    if args.scheduler:
        from diffusers import DDIMScheduler, EulerDiscreteScheduler, PNDMScheduler

        kind = {"pndm": PNDMScheduler, "ddim": DDIMScheduler, "euler": EulerDiscreteScheduler}
        pipe.scheduler = kind[args.scheduler].from_config(pipe.scheduler.config)
    result = edit(
        pipe, args.source, args.target, edit=chosen, blend=blend, seed=args.seed,
        steps=args.steps, guidance=args.guidance, cross_steps=args.cross, self_steps=args.self_,
        progress=not args.quiet,
    )  # fmt: skip
    folder = result.save(args.out)
    written = ["source.png", "edited.png", "settings.json"]
    if result.history is not None:
        figure = word_steps_figure(result.history)
        figure.savefig(folder / "attention.png", dpi=100, bbox_inches="tight")
        written += ["attention.png", "history.safetensors"]
    print(f"edit: {args.source!r} → {args.target!r} ({result.settings['edit']['kind']}, "
          f"{args.steps} steps, seed {args.seed}, {result.settings['scheduler']})")  # fmt: skip
    for name in written:
        print(f"wrote {folder / name}")


def _add_edit(subparsers) -> None:
    parser = subparsers.add_parser(
        "edit",
        help="run a Prompt-to-Prompt edit: two images, per-step attention, settings",
        description="Generate the source prompt's image and edit it into the target prompt's "
        "(Prompt-to-Prompt). Writes source.png, edited.png, attention.png (per-step "
        "attention of the swapped words), settings.json and the attention history.",
    )
    parser.add_argument("source", help="the source prompt, quoted")
    parser.add_argument("target", help="the target prompt, quoted")
    parser.add_argument(
        "--edit", choices=("replace", "refine", "none"), default="replace",
        help="replace: word swap (same word count); refine: words added or removed; "
        "none: both prompts plainly (default: replace)",
    )  # fmt: skip
    parser.add_argument(
        "--cross", type=_fraction_or_pair, default=0.8, metavar="F|START:END",
        help="cross-attention injection: share of the steps, or START:END (default 0.8)",
    )  # fmt: skip
    parser.add_argument(
        "--self", dest="self_", type=_fraction_or_pair, default=None, metavar="F|START:END",
        help="self-attention injection: share of the steps, or START:END (default: the "
        "model's own, 0.4 for SD, 0.6 for the built-in model)",
    )  # fmt: skip
    parser.add_argument("--steps", type=int, default=25, help="denoising steps (default 25)")
    parser.add_argument("--seed", type=int, default=0, help="seed of z_T (default 0)")
    parser.add_argument(
        "--guidance", type=float, default=None,
        help="CFG scale (default: the model's own, 7.5 for SD, 2 for the built-in model)",
    )  # fmt: skip
    parser.add_argument(
        "--reweight", type=_word_scale, action="append", metavar="WORD=SCALE",
        help="scale a target word's attention (repeatable; negative allowed)",
    )  # fmt: skip
    parser.add_argument(
        "--blend", nargs="+", metavar="WORD",
        help="local blend: change only near these words (looked up in both prompts)",
    )  # fmt: skip
    parser.add_argument(
        "--scheduler", choices=("pndm", "ddim", "euler"),
        help="replace the model's scheduler (default: keep it; SD ships PNDM)",
    )  # fmt: skip
    parser.add_argument(
        "--model", default="builtin",
        help="'builtin' (offline, random weights), a hub id or a saved pipeline folder",
    )  # fmt: skip
    parser.add_argument("--out", default="p2p_edit", help="output folder (default ./p2p_edit)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=_cmd_edit)


SUBCOMMANDS.append(_add_edit)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="p2p-teach",
        description="Prompt-to-Prompt image editing, taught step by step.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse itself exits 2 with a usage line
    try:
        args.run(args)
    except (UsageError, ValueError, KeyError, FileNotFoundError, RuntimeError) as error:
        message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
        print(f"p2p-teach {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"p2p-teach {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
