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
