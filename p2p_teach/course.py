"""One place to choose the course's model: :func:`setup`, the first call of every notebook.

    COURSE = p2p_teach.setup()          # picks, loads and says why
    pipe, PROMPTS, STEPS = COURSE.pipe, COURSE.prompts, COURSE.steps

With no argument it picks Stable Diffusion v1.5 in fp16 on a CUDA GPU (Colab) when its weights
are reachable (in the local Hugging Face cache, or downloadable from the hub), and the built-in
offline model otherwise, and prints what it picked and why. The steps and the lesson prompts
follow the model: 20 steps and the coloured-shapes prompts for the built-in model, 50 steps and
the recitation's prompts for Stable Diffusion.

Changing the model is one line in one place: ``setup("builtin")`` (or a hub id, or a folder)
in the notebook's first cell, or the environment variable ``P2P_TEACH_MODEL`` for every
notebook at once (``auto`` is the default).
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .defaults import BUILTIN_PREFIX, model_defaults
from .lessons import LessonPrompts, lesson_prompts
from .models import ModelNotAvailableError, load_pipeline

MODEL_VARIABLE = "P2P_TEACH_MODEL"
AUTO = "auto"
SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
BUILTIN_STEPS = 20  # the built-in model's lessons: a few seconds per edit on a CPU
SD_STEPS = 50  # Stable Diffusion's usual setting, and the paper's
# The built-in model's ops are tiny: past two CPU threads they only wait for each other, and on
# 2 cores 2 threads edit about 30 % faster than 1 (20 steps: 1.4 s against 2.0 s on a quiet
# machine). A fixed count also gives the same numbers on every machine (a float sum split over
# more threads rounds differently), which the notebooks' stored outputs rely on.
BUILTIN_CPU_THREADS = 2  # at most: 1 on a machine with one core

# The text of every notebook's first cell: install the package where it is missing (Colab),
# then one setup call. INSTALL_FROM is what pip installs: ".." is the repository the notebooks
# sit in (VS Code, Jupyter on a clone); a course publishing the notebooks for Colab writes its
# git URL or wheel there once, in every notebook: ``python -m p2p_teach.course --source URL``.
DEFAULT_SOURCE = ".."
FIRST_CELL = """\
# Setup. Where p2p_teach is missing (Colab), this installs it from INSTALL_FROM first:
# ".." is the repository these notebooks sit in; a course's Colab copy names its git URL here.
INSTALL_FROM = "{source}"
try:
    import p2p_teach
except ImportError:
    %pip install -q {{INSTALL_FROM}}
    import p2p_teach

# The model: setup() picks Stable Diffusion v1.5 on a GPU when it can, else the built-in one.
# To choose, change this one line, e.g. setup("builtin"), or set P2P_TEACH_MODEL.
COURSE = p2p_teach.setup()
pipe, PROMPTS, STEPS = COURSE.pipe, COURSE.prompts, COURSE.steps
"""


def first_cell(source: str = DEFAULT_SOURCE) -> str:
    """Every notebook's first cell, installing from ``source`` (a folder, git URL or wheel)."""
    if not isinstance(source, str) or not source.strip() or any(c in source for c in "\"\n"):
        raise ValueError(
            f"source={source!r}: what pip installs p2p_teach from, on one line without quotes. "
            "Fix: e.g. 'git+https://example.org/course/p2p_teach.git' or '..'."
        )
    return FIRST_CELL.format(source=source.strip())


_SOURCE_LINE = re.compile(r'^INSTALL_FROM = "([^"\n]*)"$', re.MULTILINE)


def set_install_source(notebooks: Iterable[str | Path], source: str) -> list[Path]:
    """Rewrite the first cell of each notebook to install from ``source``; the notebooks
    changed. A notebook whose first cell is not the course's setup cell is refused, and no
    notebook is changed.
    """
    cell_text = first_cell(source)
    loaded = []
    for path in map(Path, notebooks):
        notebook = json.loads(path.read_text("utf-8"))
        cell = next((c for c in notebook["cells"] if c["cell_type"] == "code"), None)
        text = "".join(cell["source"]) if cell else ""
        current = _SOURCE_LINE.search(text)
        if current is None or text != first_cell(current.group(1)):
            raise ValueError(
                f"{path}: its first code cell is not the course's setup cell "
                "(p2p_teach.course.FIRST_CELL), so no notebook was changed. Fix: make it so, "
                "or leave this notebook out."
            )
        loaded.append((path, notebook, cell))
    for path, notebook, cell in loaded:
        cell["source"] = cell_text.splitlines(keepends=True)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", "utf-8")
        os.replace(temporary, path)  # a notebook is rewritten whole or not at all
    return [path for path, _, _ in loaded]


@dataclass(frozen=True)
class Course:
    """What :func:`setup` chose: the pipeline, the steps and prompts that suit it, and why."""

    pipe: Any
    model: str
    steps: int
    prompts: LessonPrompts
    guidance: float
    reason: str
    cpu_threads: int | None = None  # capped by setup for the built-in model on a CPU, else None

    @property
    def builtin(self) -> bool:
        return model_defaults(self.pipe).builtin is not None

    def __str__(self) -> str:
        unet = self.pipe.unet
        threads = f", {self.cpu_threads} CPU thread(s)" if self.cpu_threads else ""
        return (
            f"p2p_teach.setup: {self.model} ({unet.device.type}, "
            f"{str(unet.dtype).removeprefix('torch.')}), {self.steps} steps, guidance "
            f"{self.guidance:g}{threads}.\n  why: {self.reason}\n  lesson prompts: "
            f"{self.prompts.source!r} → {', '.join(map(repr, self.prompts.swaps.values()))}"
        )


def cuda_available() -> bool:
    """Whether a CUDA GPU can be used (a function of its own, so tests can stand one in)."""
    return torch.cuda.is_available()


def weights_reachable(model_id: str) -> tuple[bool, str]:
    """(reachable, where): a hub model's weights in the local cache, or on a hub that answers.

    Only the model's index is looked up (no download). ``HF_HUB_OFFLINE=1`` skips the hub.
    """
    from huggingface_hub import HfApi, try_to_load_from_cache

    cached = try_to_load_from_cache(model_id, "model_index.json")
    if isinstance(cached, str):
        return True, "cached on this machine"
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False, "not cached, and HF_HUB_OFFLINE is set"
    try:
        HfApi().model_info(model_id, timeout=10)
    except Exception as error:  # offline, DNS, proxy, gated, rate limit: all mean "not now"
        return False, f"not cached, and the hub did not answer ({type(error).__name__})"
    return True, "downloadable from the hub (about 2 GB in fp16, once)"


def choose_model(model: str | None = None) -> tuple[str, str]:
    """(model, reason): what :func:`setup` loads. ``model`` (else ``$P2P_TEACH_MODEL``, else
    ``"auto"``): ``"auto"`` picks SD v1.5 on a CUDA GPU when its weights are reachable, else
    the built-in model; any other value is loaded as asked."""
    asked = model if model is not None else os.environ.get(MODEL_VARIABLE, "").strip() or AUTO
    source = "setup's argument" if model is not None else f"${MODEL_VARIABLE}"
    if not isinstance(asked, str) or not asked:
        raise ValueError(f"model={asked!r}: 'auto', 'builtin', a hub id or a folder")
    if asked != AUTO:
        return asked, f"asked for by {source}"
    if not cuda_available():
        return "builtin", (
            "no CUDA GPU here, so the built-in offline model (runs on a CPU in seconds). "
            "On Colab: Runtime → Change runtime type → GPU, then run this cell again."
        )
    reachable, where = weights_reachable(SD15)
    if reachable:
        return SD15, f"a CUDA GPU, and Stable Diffusion v1.5's weights are {where}"
    return "builtin", f"a CUDA GPU, but Stable Diffusion v1.5's weights are {where}"


def setup(model: str | None = None, *, verbose: bool = True) -> Course:
    """Load the course's model and the steps and lesson prompts that suit it.

    Args:
        model: ``None`` (``$P2P_TEACH_MODEL``, else ``"auto"``), ``"auto"``, ``"builtin"``, a
            hub id (``"stable-diffusion-v1-5/stable-diffusion-v1-5"``) or a saved folder.
        verbose: print what was picked and why.

    A model that cannot be loaded (no network, a wrong id) falls back to the built-in model
    when it was picked automatically; asked for by name, its error (with the fix) is raised.
    """
    chosen, reason = choose_model(model)
    try:
        pipe = load_pipeline(chosen, verbose=False)
    except ModelNotAvailableError as error:
        if model is not None or os.environ.get(MODEL_VARIABLE, AUTO).strip() not in ("", AUTO):
            raise
        chosen, reason = "builtin", f"{reason}; loading it failed ({error}), so the built-in"
        pipe = load_pipeline(chosen, verbose=False)
    defaults = model_defaults(pipe)
    name = defaults.builtin
    threads = None
    if name is not None and pipe.unet.device.type == "cpu":
        threads = min(torch.get_num_threads(), BUILTIN_CPU_THREADS)
        torch.set_num_threads(threads)
    course = Course(
        pipe=pipe,
        model=f"{BUILTIN_PREFIX}{name}" if name else chosen,
        steps=BUILTIN_STEPS if name else SD_STEPS,
        prompts=lesson_prompts(pipe),
        guidance=defaults.guidance,
        reason=reason,
        cpu_threads=threads,
    )
    if verbose:
        print(course)
    return course


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m p2p_teach.course --source URL [NOTEBOOK ...]``: set where every notebook's
    first cell installs p2p_teach from (default: the notebooks/ folder beside this package)."""
    parser = argparse.ArgumentParser(
        prog="python -m p2p_teach.course",
        description="Set where every notebook's first cell installs p2p_teach from (for a "
        "course publishing the notebooks to Colab). Default notebooks: this repository's.",
    )
    parser.add_argument("--source", required=True, help="a git URL, a wheel, or a folder")
    parser.add_argument("notebooks", nargs="*", type=Path)
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted(
        (Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb")
    )
    for path in set_install_source(notebooks, args.source):
        print(f"{path}: installs from {args.source}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
