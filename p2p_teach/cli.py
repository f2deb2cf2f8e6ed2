"""The ``p2p-teach`` command line.

    p2p-teach tokens "A hippopotamus eating"        # the 77 slots of a prompt
    p2p-teach tokens --work "An unimaginably large house"
    p2p-teach mapper "A lion eating" "A hippopotamus eating" [--rule original]
    p2p-teach mapper "a cat" "a fluffy cat" --refine
    p2p-teach edit "a cat riding a bicycle" "a cat riding a motorcycle"   # images + attention
    p2p-teach edit "a cat" "a fluffy cat" --edit refine --blend cat --out runs/fluffy

Wrong input exits with status 2 and one line on stderr, never a traceback; other failures (out
of memory, a file system error) exit with status 1 and one line; Ctrl-C exits 130 and SIGTERM
143. Every argument is checked before a model is loaded, and a result folder is written whole
or not at all.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .tokens import TokenView, Word


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
    from .mapper import WordCountMismatchError, format_mapper, word_swap_mapper

    if args.refine:
        print(format_alignment(refinement_alignment(args.source, args.target)))
        return
    try:
        mapper = word_swap_mapper(args.source, args.target, rule=args.rule)
    except WordCountMismatchError as error:
        counts = str(error).split(". To add or remove words", 1)[0]
        raise UsageError(
            f"{counts}. Fix: to add or remove words, align the prompts with --refine: "
            f"p2p-teach mapper {_quoted(args.source)} {_quoted(args.target)} --refine"
        ) from error
    print(format_mapper(mapper))


def _quoted(text: str) -> str:
    import shlex

    return shlex.quote(text)


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


def _seed(text: str) -> int:
    """``--seed``: a whole number from 0 to 2**64 - 1, checked before any model loads."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**64:
        raise argparse.ArgumentTypeError(
            f"{text!r}: a whole number from 0 to 2**64 - 1 (a generator's seed), e.g. 0"
        )
    return value


def _guidance(text: str) -> float:
    """``--guidance``: a finite number ≥ 0, checked before any model loads."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(
            f"{text!r}: a finite number ≥ 0 (1 or less turns guidance off), e.g. 7.5"
        )
    return value


def _steps(text: str) -> int:
    """``--steps``: a whole number ≥ 1 (the scheduler's own limit is checked before loading)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number of steps ≥ 1, e.g. 25")
    return value


def _word_scale(text: str) -> tuple[str, float]:
    word, _, scale = text.partition("=")
    try:
        value = float(scale)
    except ValueError:
        value = math.nan
    if not word.strip() or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r}: give WORD=SCALE, e.g. smiling=3")
    return word, value


def _words(view: TokenView) -> list[str]:
    return [word.text for word in view.words]


def _has_word(view: TokenView, text: str) -> bool:
    from .tokens import WordNotFoundError

    try:
        view.find_words(text)
    except WordNotFoundError:
        return False
    return True


def _name_of(view: TokenView, word: Word) -> str | int:
    """How a blend names ``word``: its text, or its index where the text occurs twice."""
    return word.text if len(view.find_words(word.text)) == 1 else word.index


def _blend_words(
    items: Sequence[str], source: TokenView, target: TokenView
) -> tuple[list[str | int], list[str | int]]:
    """The source's and the target's blend words from ``--blend`` items.

    ``WORD`` in both prompts is used in both. ``WORD`` in one prompt is used there, with the
    word in its place in the other prompt, which is well defined when both prompts have the
    same number of words (a word swap). ``SOURCE:TARGET`` names a word per prompt.
    """
    in_source: list[str | int] = []
    in_target: list[str | int] = []
    prompts = {"source": source, "target": target}
    for item in items:
        source_text, colon, target_text = item.partition(":")
        found = {role: _has_word(view, item) for role, view in prompts.items()}
        if colon and source_text and target_text and not any(found.values()):
            for role, text in (("source", source_text), ("target", target_text)):
                if not _has_word(prompts[role], text):
                    raise UsageError(
                        f"--blend {item!r}: {text!r} is not a word of the {role} prompt "
                        f"{prompts[role].prompt!r}; its words are {_words(prompts[role])}"
                    )
            in_source.append(source_text)
            in_target.append(target_text)
            continue
        if found["source"] and found["target"]:
            in_source.append(item)
            in_target.append(item)
            continue
        if not any(found.values()):
            raise UsageError(
                f"--blend {item!r} is in neither prompt; source words {_words(source)}, target "
                f"words {_words(target)}"
            )
        role, other = ("source", "target") if found["source"] else ("target", "source")
        here, there = prompts[role], prompts[other]
        if len(here.words) != len(there.words):
            raise UsageError(_unpaired_blend_message(item, role, here, there))
        (in_source if role == "source" else in_target).append(item)
        for word in here.find_words(item):  # the word in its place in the other prompt
            counterpart = _name_of(there, there.words[word.index])
            (in_target if role == "source" else in_source).append(counterpart)
    return list(dict.fromkeys(in_source)), list(dict.fromkeys(in_target))


def _unpaired_blend_message(item: str, role: str, here: TokenView, there: TokenView) -> str:
    """Say that a one-prompt blend word has no partner, and how to name words per prompt."""
    other = "target" if role == "source" else "source"
    index = here.find_words(item)[0].index
    # the nearest word of this prompt that the other prompt has too: a likely partner
    nearest = sorted(here.words, key=lambda word: (abs(word.index - index), -word.index))
    shared = [w.core_text for w in nearest if w.index != index and _has_word(there, w.text)]
    partner = shared[0] if shared else there.words[0].core_text
    pair = f"{item}:{partner}" if role == "source" else f"{partner}:{item}"
    return (
        f"--blend {item!r} is only in the {role} prompt, and the {other} prompt has no word "
        f"in its place (the prompts have {len(here.words)} and {len(there.words)} words). Fix: "
        f"name a word per prompt as SOURCE:TARGET, e.g. --blend {pair}"
        + (f", or give a word both prompts have, e.g. --blend {shared[0]}" if shared else "")
    )


def _output_folder(text: str) -> Path:
    """Check that ``--out`` can become the result folder, before any model is loaded.

    Nothing stays behind here (a hidden test folder is made in the parent and removed at once):
    the result is saved whole at the end (a hidden sibling renamed into place), so a run that
    fails or is interrupted leaves no folder behind.
    """
    from .atomic import check_replaceable
    from .engine import RESULT_FILES

    if not text.strip():
        raise UsageError(
            "--out '': an empty path would write into the current folder. Fix: name a "
            "folder, e.g. --out ./p2p_edit."
        )
    folder = Path(text).expanduser()
    existing = folder  # the nearest path that exists: the folder itself or a parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing != folder and not existing.is_dir():
        raise UsageError(
            f"--out {text!r}: a file is in the way (under {str(existing)!r}, which is a file); "
            "the output must be a folder. Fix: give a folder path (it is created if missing), "
            "or move the file away."
        )
    if existing == folder and not folder.is_dir():
        raise UsageError(
            f"--out {text!r}: a file is in the way; the output must be a folder. Fix: give a "
            "folder path (it is created if missing), or move the file away."
        )
    parent = existing if existing != folder else folder.parent
    try:  # permissions do not tell everything (root, read-only or special file systems)
        os.rmdir(tempfile.mkdtemp(prefix=f".{folder.name}.check-", dir=parent))
    except OSError as error:
        raise UsageError(
            f"--out {text!r}: cannot write in {str(parent)!r} ({error.strerror or error}). "
            "Fix: choose a folder you can write to, e.g. --out ./p2p_edit."
        ) from error
    try:
        check_replaceable(folder, set(RESULT_FILES))
    except FileExistsError as error:
        raise UsageError(f"--out {text!r}: {error}") from error
    return folder


def _cmd_edit(args: argparse.Namespace) -> None:
    from .edits import LocalBlend, Refine, Replace, Reweight, as_edit
    from .guards import tokenize_prompt
    from .mapper import WordCountMismatchError
    from .schedules import DEFAULT_SELF_STEPS, resolve_schedule

    source = tokenize_prompt(args.source, "source")  # no words, or too long: named
    target = tokenize_prompt(args.target, "target")
    same = source.ids == target.ids
    base = {"replace": Replace(), "refine": Refine(), "none": None}[args.edit]
    chosen = as_edit(base)
    if args.reweight:
        if args.edit == "none" and not same:
            raise UsageError(
                "--reweight with --edit none needs the same prompt twice (it then only scales "
                "words). Fix: for two different prompts use --edit replace or --edit refine."
            )
        chosen = Reweight(dict(args.reweight), base=None if same else base)

    # Check the prompts, the edit, the blend, the schedules and the output folder before
    # loading a model (errors come fast, and nothing is written).
    try:
        chosen.resolve(source, target)
    except WordCountMismatchError as error:
        raise UsageError(f"{error} On the command line: --edit refine.") from None
    blend = None
    if args.blend:
        blend = LocalBlend(*_blend_words(args.blend, source, target))
        blend.resolve(source, target, args.steps)
    self_steps = DEFAULT_SELF_STEPS if args.self_ is None else args.self_  # any model's is valid
    resolve_schedule(args.cross, self_steps, args.steps, target)
    _check_steps_before_loading(args)
    folder = _output_folder(args.out)
    _run_edit(args, chosen, blend, folder)


def _check_steps_before_loading(args: argparse.Namespace) -> None:
    """Refuse more steps than the scheduler can take, judged on SD v1's scheduler settings
    (every built-in model and SD v1.x hub model has them); the engine checks the loaded
    model's own scheduler again."""
    from .defaults import SD_V1_SCHEDULER_CONFIG
    from .schedules import check_scheduler_steps

    if args.steps <= 50:  # every scheduler trained on ≥ 51 timesteps can
        return
    from diffusers import DDIMScheduler, EulerDiscreteScheduler, PNDMScheduler

    kind = {"pndm": PNDMScheduler, "ddim": DDIMScheduler, "euler": EulerDiscreteScheduler}
    check_scheduler_steps(
        kind[args.scheduler or "pndm"].from_config(SD_V1_SCHEDULER_CONFIG), args.steps
    )


def _run_edit(args: argparse.Namespace, chosen: object, blend: object, folder: Path) -> None:
    from .engine import edit
    from .figures.attention import word_steps_figure
    from .models import load_pipeline

    try:
        pipe = load_pipeline(args.model)  # prints which model runs
    except TypeError as error:  # the folder or id holds another kind of pipeline
        raise UsageError(f"--model {args.model!r}: {error}") from error
    if args.scheduler:
        from diffusers import DDIMScheduler, EulerDiscreteScheduler, PNDMScheduler

        kind = {"pndm": PNDMScheduler, "ddim": DDIMScheduler, "euler": EulerDiscreteScheduler}
        pipe.scheduler = kind[args.scheduler].from_config(pipe.scheduler.config)
    result = edit(
        pipe, args.source, args.target, edit=chosen, blend=blend, seed=args.seed,
        steps=args.steps, guidance=args.guidance, cross_steps=args.cross, self_steps=args.self_,
        conventions=args.conventions, progress=not args.quiet,
    )  # fmt: skip
    extra = {}
    if result.history is not None:
        figure = word_steps_figure(result.history)
        extra["attention.png"] = lambda path: figure.savefig(path, dpi=100, bbox_inches="tight")
    folder = result.save(folder, extra=extra)  # whole, or not at all
    written = sorted(path.name for path in folder.iterdir() if path.name != "manifest.json")
    print(f"edit: {args.source!r} → {args.target!r} ({result.settings.kind}, "
          f"{args.steps} steps, seed {args.seed}, {result.settings.scheduler})")  # fmt: skip
    for name in written:
        print(f"wrote {folder / name}")


def _add_edit(subparsers) -> None:
    parser = subparsers.add_parser(
        "edit",
        help="run a Prompt-to-Prompt edit: two images, per-step attention, settings",
        description="Generate the source prompt's image and edit it into the target prompt's "
        "(Prompt-to-Prompt). Writes source.png, edited.png, settings.json, "
        "latents.safetensors and, when attention is recorded, attention.png (per-step "
        "attention of the swapped words) and history.safetensors.",
    )
    parser.add_argument("source", help="the source prompt, quoted")
    parser.add_argument("target", help="the target prompt, quoted")
    parser.add_argument(
        "--edit", choices=("replace", "refine", "none"), default="replace",
        help="replace: word swap (same word count); refine: words added or removed; "
        "none: both prompts plainly, or with --reweight the same prompt twice "
        "(default: replace)",
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
    parser.add_argument("--steps", type=_steps, default=25, help="denoising steps (default 25)")
    parser.add_argument("--seed", type=_seed, default=0, help="seed of z_T (default 0)")
    parser.add_argument(
        "--guidance", type=_guidance, default=None,
        help="CFG scale (default: the model's own, 7.5 for SD, 2 for the built-in model)",
    )  # fmt: skip
    parser.add_argument(
        "--reweight", type=_word_scale, action="append", metavar="WORD=SCALE",
        help="scale a target word's attention (repeatable; negative allowed)",
    )  # fmt: skip
    parser.add_argument(
        "--blend", nargs="+", metavar="WORD",
        help="local blend: change only near these words. A word both prompts have is used in "
        "both; a word only one prompt has is paired with the word in its place in the other "
        "(prompts with the same word count); SOURCE:TARGET names a word per prompt, e.g. "
        "cat:fluffy",
    )  # fmt: skip
    parser.add_argument(
        "--conventions", choices=("p2p_teach", "original"), default="p2p_teach",
        help="original: count injection windows in UNet calls and use the original code's "
        "mapper rule and refinement padding, to compare numbers with it (default: p2p_teach)",
    )  # fmt: skip
    parser.add_argument(
        "--scheduler", choices=("pndm", "ddim", "euler"),
        help="replace the model's scheduler (default: keep it; SD ships PNDM)",
    )  # fmt: skip
    parser.add_argument(
        "--model", default="builtin",
        help="'builtin' (the default: the built-in offline 'shapes' model, trained on "
        "pictures of coloured shapes), 'tiny-random' (offline, random weights), a hub id such "
        "as stable-diffusion-v1-5/stable-diffusion-v1-5, or a saved pipeline folder",
    )  # fmt: skip
    parser.add_argument("--out", default="p2p_edit", help="output folder (default ./p2p_edit)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=_cmd_edit)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="p2p-teach",
        description="Prompt-to-Prompt image editing, taught step by step.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_tokens, _add_mapper, _add_edit):
        add(subparsers)
    return parser


def _usage_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean wrong input (exit 2): a bad value, name, word or model id."""
    from .models import ModelNotAvailableError  # imports torch: only once something failed

    return (UsageError, ValueError, KeyError, ModelNotAvailableError)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that a run cleans up (exit status 143)."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; the exit status: 0 done, 2 wrong input (one line on stderr),
    1 another failure such as out of memory or a file system error (one line), 130 Ctrl-C,
    143 SIGTERM. Nothing half-written is left either way."""
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse itself exits 2 with a usage line
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        args.run(args)
    except _usage_errors() as error:  # evaluated only when something is raised
        print(f"p2p-teach {args.command}: error: {_error_line(error)}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError, ArithmeticError, MemoryError) as error:
        print(f"p2p-teach {args.command}: failed: {_error_line(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as interrupt:
        stopped = "terminated" if isinstance(interrupt, Terminated) else "interrupted"
        print(f"p2p-teach {args.command}: {stopped}; nothing was written", file=sys.stderr)
        return 143 if isinstance(interrupt, Terminated) else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


def _error_line(error: BaseException) -> str:
    """One line saying what went wrong (an OSError: what, and which file)."""
    if isinstance(error, KeyError) and error.args:
        message = str(error.args[0])
    elif isinstance(error, OSError) and error.strerror and error.filename is not None:
        message = f"{error.strerror}: {error.filename}"
        if error.filename2 is not None:
            message += f" → {error.filename2}"
    else:
        message = str(error) or type(error).__name__
    return " ".join(message.split())  # one line


if __name__ == "__main__":
    sys.exit(main())
