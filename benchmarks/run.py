"""Benchmark: a Prompt-to-Prompt edit costs what generating the same two images plainly costs.

Three variants generate the same source/target pair from one z_T, with the same steps and
guidance, on the same pipeline:

* ``stock``: ``StableDiffusionPipeline.__call__`` with both prompts as one batch of two and the
  pipeline's default (fused SDPA) attention: the floor;
* ``edit``: :func:`p2p_teach.edit` with Replace, cross- and self-attention injection on and the
  per-step history recorded at its default resolutions;
* ``explicit``: the same edit with attention probabilities materialised in every layer, as the
  original implementations do (:mod:`benchmarks.explicit`).

Time: each configuration (and the scaling runs) is timed in a fresh child process of its own
(``--child``), which builds the model, runs one untimed warm-up of each variant at the full step
count, then the variants in turn, stock, edit, explicit, stock, edit, explicit, …; each
variant's ratio to stock is the median of the per-repetition ratios. Memory: each variant runs
in a fresh child process of its own that builds the model, notes its resident memory, resets the
kernel's peak-RSS mark and runs the variant ``memory_runs`` times; the peak is the kernel's
high-water mark of resident memory (see :mod:`benchmarks.memory`). The parent process builds no
model: it starts the children one at a time and writes the results.

    python benchmarks/run.py --quick      # small model, SD v1.5 architecture at 256², scaling
    python benchmarks/run.py              # the full run (more repetitions, 5 steps, 512²)
    python benchmarks/run.py --smoke --out DIR   # 1 repetition, small model, 2 steps (tests)

Results: a table on stdout and in ``benchmarks/results/latest.md``, and JSON in
``benchmarks/results/<mode>-<date>.json`` (or ``results.md`` and ``results.json`` in
``--out DIR``).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime as dt
import hashlib
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` and ``p2p_teach`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from benchmarks import memory
from benchmarks.explicit import explicit_edit

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline

    from p2p_teach.history import AttentionHistory

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = ("stock", "edit", "explicit")
SOURCE_PROMPT = "photo of a cat riding on a bicycle"
TARGET_PROMPT = "photo of a cat riding on a motorcycle"
CROSS_STEPS = 0.8
SELF_STEPS = 0.4
GUIDANCE = 7.5
SEED = 1
HISTORY_STEPS_TARGET = 50  # the history target is stated for a 50-step edit
# Jobs of this project that load the CPU for a long time; the results say whether they ran.
TRAINING_JOB = "shapes.train"
EVALUATION_JOB = "shapes.evaluate"
PROC = Path("/proc")

# Targets of the benchmark issue (ratios measured in the same run).
TARGETS: dict[str, dict[str, float]] = {
    "small": {"time": 1.15, "memory": 1.10},
    "sd15": {"time": 1.05, "memory": 1.10, "history_mb_50_steps": 10.0},
}


@dataclass(frozen=True)
class Case:
    """One benchmark configuration: which model, image size, steps and repetitions."""

    name: str
    model: str  # "builtin" or "sd15"
    height: int
    width: int
    steps: int
    repetitions: int
    record: Any = "auto"
    variants: tuple[str, ...] = VARIANTS
    memory: bool = True
    memory_runs: int = 1  # measured runs per memory subprocess (the median is reported)

    @property
    def target_key(self) -> str:
        return "sd15" if self.model == "sd15" else "small"

    @classmethod
    def from_dict(cls, fields: dict) -> Case:
        """The case ``dataclasses.asdict`` gave (after a JSON round trip)."""
        return cls(**{**fields, "variants": tuple(fields["variants"])})


# --------------------------------------------------------------------------------------------
# Models and variants
# --------------------------------------------------------------------------------------------


def build_pipeline(model: str) -> StableDiffusionPipeline:
    """The pipeline of a case: the built-in small model or SD v1.5's architecture (random)."""
    if model == "sd15":
        from benchmarks.sd15 import build_sd15_random_pipeline

        return build_sd15_random_pipeline()
    from p2p_teach.models import load_pipeline

    return load_pipeline("builtin", verbose=False)


def initial_noise(pipe: StableDiffusionPipeline, height: int, width: int) -> torch.Tensor:
    """z_T of shape (1, C, h, w), the same for every variant (CPU generator, ``SEED``)."""
    factor = pipe.vae_scale_factor
    shape = (1, pipe.unet.config.in_channels, height // factor, width // factor)
    return torch.randn(shape, generator=torch.Generator().manual_seed(SEED))


@dataclass
class Outcome:
    """What one run of a variant returns (images, final latents, history)."""

    images: list
    latents: torch.Tensor | None = None
    history: Any = None


def run_variant(
    variant: str,
    pipe: StableDiffusionPipeline,
    case: Case,
    noise: torch.Tensor,
    *,
    steps: int | None = None,
    record: Any = None,
    on_step: Callable[[], None] | None = None,
) -> Outcome:
    """Generate the source/target pair once with ``variant``; returns images and history.

    ``on_step`` (memory subprocesses only) is called at the end of every denoising step,
    through the pipeline's ``callback_on_step_end`` or the engine's ``callback``.
    """
    steps = case.steps if steps is None else steps
    record = case.record if record is None else record
    if variant == "stock":
        output = pipe(
            prompt=[SOURCE_PROMPT, TARGET_PROMPT],
            height=case.height,
            width=case.width,
            num_inference_steps=steps,
            guidance_scale=GUIDANCE,
            latents=noise.expand(2, *noise.shape[1:]),  # (2, C, h, w): one z_T for both
            output_type="pil",
            callback_on_step_end=None if on_step is None else _stock_callback(on_step),
        )
        return Outcome(list(output.images))
    from p2p_teach.edits import Replace
    from p2p_teach.engine import edit

    run = {"edit": edit, "explicit": explicit_edit}[variant]
    result = run(
        pipe,
        SOURCE_PROMPT,
        TARGET_PROMPT,
        edit=Replace(),
        seed=SEED,
        steps=steps,
        guidance=GUIDANCE,
        cross_steps=CROSS_STEPS,
        self_steps=SELF_STEPS,
        height=case.height,
        width=case.width,
        latents=noise,
        record=record,
        progress=False,
        callback=None if on_step is None else (lambda info: on_step()),
    )
    return Outcome(list(result.images), result.latents, result.history)


def _stock_callback(on_step: Callable[[], None]) -> Callable:
    """A ``callback_on_step_end`` for the pipeline that calls ``on_step`` and changes nothing."""

    def callback(pipe, step: int, timestep, callback_kwargs: dict) -> dict:
        on_step()
        return {}

    return callback


def timed(function: Callable[[], Outcome]) -> tuple[float, Outcome]:
    """Wall time of ``function`` and what it returned."""
    start = time.perf_counter()
    outcome = function()
    return time.perf_counter() - start, outcome


def _busy_cpu_seconds() -> float | None:
    """CPU seconds all processes of the machine have used since boot (``/proc/stat``)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def timed_with_load(function: Callable[[], Outcome]) -> tuple[float, float | None, Outcome]:
    """Wall time of ``function`` and the share of the machine's cores that *other* processes
    kept busy meanwhile (0: the benchmark had the machine to itself; None: unknown)."""
    busy_before, own_before = _busy_cpu_seconds(), time.process_time()
    seconds, outcome = timed(function)
    busy_after, own_after = _busy_cpu_seconds(), time.process_time()
    if busy_before is None or busy_after is None:
        return seconds, None, outcome
    others = (busy_after - busy_before) - (own_after - own_before)
    return seconds, max(0.0, others) / (seconds * (os.cpu_count() or 1)), outcome


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------


def history_report(history: AttentionHistory | None) -> dict:
    """The history's own size report, per step, and extrapolated to 50 steps."""
    if history is None:
        return {"mb": 0.0, "per_step_mb": 0.0, "mb_50_steps": 0.0, "layers": []}
    per_step = history.memory_mb / history.num_steps
    return {
        "mb": history.memory_mb,
        "per_step_mb": per_step,
        "mb_50_steps": per_step * HISTORY_STEPS_TARGET,
        "columns": history.n_columns,
        "layers": [f"{layer.place} {layer.height}x{layer.width}" for layer in history.layers],
    }


def agreement(edit: Outcome, explicit: Outcome, stock: Outcome | None) -> dict:
    """How far the explicit baseline's edit is from the engine's (it should be the same edit)."""
    report = {
        "latents_max_abs_diff": float((edit.latents - explicit.latents).abs().max()),
        "latents_max_abs": float(edit.latents.abs().max()),
        "images_max_abs_diff": max(_image_diff(a, b) for a, b in zip(edit.images, explicit.images)),
        "history_max_abs_diff": _history_diff(edit.history, explicit.history),
    }
    if stock is not None:  # the edit leaves the source alone: its image is the stock one
        report["source_image_vs_stock_max_abs_diff"] = _image_diff(edit.images[0], stock.images[0])
    return report


def _image_diff(first, second) -> int:
    """Largest difference of two PIL images, in 8-bit levels."""
    return int(np.abs(np.asarray(first, dtype=np.int16) - np.asarray(second, dtype=np.int16)).max())


def _history_diff(first, second) -> float:
    if first is None or second is None:
        return 0.0 if first is second else math.inf
    names = [layer.name for layer in first.layers]
    if names != [layer.name for layer in second.layers]:
        return math.inf
    steps = range(first.steps_recorded)
    return max(
        float(
            (first.layer_maps(name, prompt, steps) - second.layer_maps(name, prompt, steps))
            .abs()
            .max()
        )
        for name in names
        for prompt in ("source", "target")
    )


def measure_time(pipe: StableDiffusionPipeline, case: Case, log: Callable[[str], None]) -> dict:
    """Warm up, then time the variants in turn; per-repetition ratios to stock.

    The warm-up runs every variant once at the full step count (allocator, kernels, caches):
    a shorter warm-up left the first timed repetition visibly slower.
    """
    noise = initial_noise(pipe, case.height, case.width)
    for variant in case.variants:
        run_variant(variant, pipe, case, noise)
    times: dict[str, list[float]] = {variant: [] for variant in case.variants}
    others_load: list[float] = []
    last: dict[str, Outcome] = {}
    for repetition in range(case.repetitions):
        for variant in case.variants:
            seconds, load, last[variant] = timed_with_load(
                lambda v=variant: run_variant(v, pipe, case, noise)
            )
            times[variant].append(seconds)
            if load is not None:
                others_load.append(load)
        log(
            f"  {case.name} repetition {repetition + 1}/{case.repetitions}: "
            + ", ".join(f"{v} {times[v][-1]:.2f} s" for v in case.variants)
        )
    report: dict[str, Any] = {
        "times_s": times,
        # share of the cores other processes used during the timed runs (median, max)
        "others_load": {
            "median": statistics.median(others_load) if others_load else None,
            "max": max(others_load) if others_load else None,
        },
        "median_s": {v: statistics.median(t) for v, t in times.items()},
    }
    if "stock" in times:
        per_repetition = {
            v: [a / b for a, b in zip(times[v], times["stock"])]
            for v in case.variants
            if v != "stock"
        }
        report["ratio_per_repetition"] = per_repetition
        report["ratio_to_stock"] = {v: statistics.median(r) for v, r in per_repetition.items()}
    if "edit" in last:
        report["history"] = history_report(last["edit"].history)
    if "edit" in last and "explicit" in last:
        report["explicit_history_mb"] = history_report(last["explicit"].history)["mb"]
        report["agreement"] = agreement(last["edit"], last["explicit"], last.get("stock"))
    return report


def time_child(spec: dict, log: Callable[[str], None]) -> dict:
    """In a fresh process: build the model of ``spec["case"]`` and time its variants."""
    from p2p_teach.models import describe_pipeline

    case = Case.from_dict(spec["case"])
    start = time.perf_counter()
    pipe = build_pipeline(case.model)
    build_s = time.perf_counter() - start
    model = describe_pipeline(pipe)
    log(f"  model: {model} (built in {build_s:.1f} s)")
    return {"model": model, "build_s": build_s, "time": measure_time(pipe, case, log)}


def scaling_child(spec: dict, log: Callable[[str], None]) -> dict:
    """In a fresh process: build the small model and run :func:`measure_scaling`."""
    pipe = build_pipeline("builtin")
    return measure_scaling(pipe, spec["steps"], spec["record"], spec["repetitions"], log)


def memory_child(spec: dict, log: Callable[[str], None] | None = None) -> dict:
    """In a fresh process: build the model, warm up, then reset the peak, run, read it.

    The warm-up runs the variant for one step, so one-time allocations (modules imported on
    first use, kernel caches) are made before the measurement, as in the timing process. Each
    measured run releases the previous run's outcome, resets the kernel's peak mark and reads it
    twice: at the end of the last denoising step (the denoising's peak; the mark only grows) and
    after the run (which adds the VAE decode). With several runs (``case.memory_runs``), the
    medians are reported. ``peak_reset`` is False if the kernel refused any reset: the peaks
    may then be the model build's, not the run's.
    """
    case = Case.from_dict(spec["case"])
    start = time.perf_counter()
    pipe = build_pipeline(case.model)
    noise = initial_noise(pipe, case.height, case.width)
    build_s = time.perf_counter() - start
    run_variant(spec["variant"], pipe, case, noise, steps=1)
    runs = []
    history_mb = 0.0
    for _ in range(case.memory_runs):
        outcome = None  # the previous run's images and history must not count in this run
        memory.release_free_memory()
        base = memory.current_rss_mb()
        peak_reset = memory.reset_peak()
        denoising_peaks: list[float] = []
        seconds, outcome = timed(
            lambda peaks=denoising_peaks: run_variant(
                spec["variant"], pipe, case, noise,
                on_step=lambda: peaks.append(memory.peak_rss_mb()),
            )
        )  # fmt: skip
        peak = memory.peak_rss_mb()
        history_mb = outcome.history.memory_mb if outcome.history is not None else 0.0
        runs.append(
            {
                "run_s": seconds,
                "base_mb": base,
                "peak_mb": peak,
                "delta_mb": peak - base,
                "denoising_delta_mb": denoising_peaks[-1] - base,
                "peak_reset": peak_reset,
            }
        )
    report: dict[str, Any] = {"variant": spec["variant"], "build_s": build_s}
    for key in ("run_s", "base_mb", "peak_mb", "delta_mb", "denoising_delta_mb"):
        report[key] = statistics.median(run[key] for run in runs)
    report["peak_reset"] = all(run["peak_reset"] for run in runs)
    report["runs"] = runs
    report["ru_maxrss_mb"] = memory.maxrss_mb()
    report["history_mb"] = history_mb
    return report


CHILDREN: dict[str, Callable[..., dict]] = {
    "time": time_child,
    "scaling": scaling_child,
    "memory": memory_child,
}


def run_child(spec: dict, what: str, log: Callable[[str], None]) -> dict:
    """Run ``spec`` (``{"kind": "time" | "scaling" | "memory", …}``) in a fresh Python process.

    The child's ``LOG`` lines are passed on to ``log`` as they come; its ``RESULT`` line is the
    report. Anything else it prints (library warnings) is kept for the error message.
    """
    if spec.get("kind") not in CHILDREN:
        raise ValueError(f"unknown child kind {spec.get('kind')!r} (one of {sorted(CHILDREN)})")
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    tail: collections.deque[str] = collections.deque(maxlen=60)
    result = None
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            line = line.rstrip("\n")
            if line.startswith("RESULT "):
                result = line.removeprefix("RESULT ")
            elif line.startswith("LOG "):
                log(line.removeprefix("LOG "))
            else:
                tail.append(line)
    if process.returncode != 0 or result is None:
        output = "\n".join(tail)[-3000:]
        raise RuntimeError(
            f"{what} failed in its child process (exit {process.returncode}):\n{output}"
        )
    return json.loads(result)


def measure_memory(case: Case, log: Callable[[str], None]) -> dict:
    """Each variant in its own child process (one at a time); peaks and ratios to stock."""
    results = {}
    for variant in case.variants:
        spec = {"kind": "memory", "case": dataclasses.asdict(case), "variant": variant}
        results[variant] = run_child(spec, f"memory of {case.name}/{variant}", log)
        log(
            f"  {case.name} memory {variant}: peak {results[variant]['peak_mb']:.0f} MB, "
            f"after build {results[variant]['base_mb']:.0f} MB"
        )
        if not results[variant]["peak_reset"]:
            log(
                f"  warning: the kernel refused the peak reset (/proc/self/clear_refs) for "
                f"{case.name}/{variant}: its peak may be the model build's, not the run's"
            )
    report: dict[str, Any] = {"per_variant": results}
    if "stock" in results:
        stock = results["stock"]
        report["ratio_to_stock"] = {
            variant: {
                "peak": results[variant]["peak_mb"] / stock["peak_mb"],
                "delta": results[variant]["delta_mb"] / stock["delta_mb"],
                "denoising_delta": results[variant]["denoising_delta_mb"]
                / stock["denoising_delta_mb"],
            }
            for variant in case.variants
            if variant != "stock"
        }
    return report


def check_targets(case: Case, report: dict) -> dict:
    """Which targets of the issue this configuration meets (only those that apply)."""
    limits = TARGETS[case.target_key]
    checks = {}
    if "ratio_to_stock" in report.get("time", {}):
        ratios = report["time"]["ratio_to_stock"]
        checks["edit_time"] = {"value": ratios["edit"], "limit": limits["time"]}
        if "explicit" in ratios:
            checks["explicit_above_edit"] = {
                "value": ratios["explicit"],
                "limit": ratios["edit"],
                "met": ratios["explicit"] > ratios["edit"],
            }
    if "ratio_to_stock" in report.get("memory", {}):
        peak = report["memory"]["ratio_to_stock"]["edit"]["peak"]
        checks["edit_peak_memory"] = {"value": peak, "limit": limits["memory"]}
        per_variant = report["memory"]["per_variant"].values()
        if not all(measured["peak_reset"] for measured in per_variant):  # maybe the build's
            checks["edit_peak_memory"].update(met=None, unreliable=True)
    if "history_mb_50_steps" in limits and "history" in report.get("time", {}):
        value = report["time"]["history"]["mb_50_steps"]
        checks["history_mb_50_steps"] = {"value": value, "limit": limits["history_mb_50_steps"]}
    for check in checks.values():
        check.setdefault("met", check["value"] <= check["limit"])
    return checks


# --------------------------------------------------------------------------------------------
# Scaling on the small model: steps and recorded resolutions
# --------------------------------------------------------------------------------------------


def measure_scaling(
    pipe: StableDiffusionPipeline,
    steps_list: list[int],
    record_sets: list,
    repetitions: int,
    log: Callable[[str], None],
) -> dict:
    """Edit time against steps (with stock alongside) and history size against record sets."""
    from p2p_teach.history import estimate_nbytes, keep_layer
    from p2p_teach.processors import plan_layers

    side = pipe.unet.config.sample_size * pipe.vae_scale_factor
    by_steps = []
    for steps in steps_list:
        case = Case(
            f"steps {steps}",
            "builtin",
            side,
            side,
            steps,
            repetitions,
            variants=("stock", "edit"),
            memory=False,
        )
        report = measure_time(pipe, case, log)
        by_steps.append(
            {
                "steps": steps,
                "median_s": report["median_s"],
                "ratio_to_stock": report["ratio_to_stock"]["edit"],
                "edit_s_per_step": report["median_s"]["edit"] / steps,
                "history_mb": report["history"]["mb"],
                "others_load": report["others_load"]["median"],
            }
        )
    fit_steps = [row["steps"] for row in by_steps]
    fits = {
        variant: dict(
            zip(
                ("seconds_per_step", "intercept_s", "r_squared"),
                _linear_fit(fit_steps, [row["median_s"][variant] for row in by_steps]),
            )
        )
        for variant in ("stock", "edit")
    }

    # Record sets, interleaved with stock in every repetition: stock, edit(set 1), edit(set 2), …
    steps = steps_list[len(steps_list) // 2]
    case = Case("record sets", "builtin", side, side, steps, repetitions, memory=False)
    noise = initial_noise(pipe, side, side)
    latent = side // pipe.vae_scale_factor
    layers = plan_layers(pipe.unet, latent, latent)
    run_variant("stock", pipe, case, noise)  # warm-up
    for record in record_sets:
        run_variant("edit", pipe, case, noise, record=record)
    stock_times: list[float] = []
    edit_times: list[list[float]] = [[] for _ in record_sets]
    histories: list[Any] = [None] * len(record_sets)
    for repetition in range(repetitions):
        stock_times.append(timed(lambda: run_variant("stock", pipe, case, noise))[0])
        for index, record in enumerate(record_sets):
            seconds, outcome = timed(
                lambda r=record: run_variant("edit", pipe, case, noise, record=r)
            )
            edit_times[index].append(seconds)
            histories[index] = outcome.history
        log(f"  record sets repetition {repetition + 1}/{repetitions}")
    by_record = []
    for index, record in enumerate(record_sets):
        history = history_report(histories[index])
        kept = [layer for layer in layers if keep_layer(layer, record, latent)]
        columns = history.get("columns", 0)
        by_record.append(
            {
                "record": record,
                "layers": history["layers"],
                "pixels": sum(layer.pixels for layer in kept),
                "history_mb": history["mb"],
                "formula_mb": estimate_nbytes(kept, steps, columns) / 1e6 if kept else 0.0,
                "edit_median_s": statistics.median(edit_times[index]),
                "ratio_to_stock": statistics.median(
                    edit / stock for edit, stock in zip(edit_times[index], stock_times)
                ),
            }
        )
    return {
        "image_side": side,
        "by_steps": by_steps,
        "edit_time_fit": fits["edit"],
        "stock_time_fit": fits["stock"],
        "record_steps": steps,
        "record_stock_median_s": statistics.median(stock_times),
        "by_record": by_record,
    }


def _linear_fit(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Least-squares ``y = slope·x + intercept`` and its R²."""
    if len(xs) < 2:
        return math.nan, math.nan, math.nan
    slope, intercept = np.polyfit(xs, ys, 1)
    predicted = slope * np.asarray(xs) + intercept
    residual = float(((np.asarray(ys) - predicted) ** 2).sum())
    total = float(((np.asarray(ys) - np.mean(ys)) ** 2).sum())
    return float(slope), float(intercept), 1.0 - residual / total if total else 1.0


# --------------------------------------------------------------------------------------------
# The run, the table, the files
# --------------------------------------------------------------------------------------------


def plan(mode: str) -> tuple[list[Case], dict | None]:
    """The configurations of a mode (smoke, quick or full) and the scaling settings."""
    if mode == "smoke":
        return [Case("small 64² · 2 steps", "builtin", 64, 64, 2, 1)], None
    if mode == "quick":
        cases = [
            Case("small 64² · 25 steps", "builtin", 64, 64, 25, 5, memory_runs=3),
            Case("SD v1.5 arch 256² · 3 steps", "sd15", 256, 256, 3, 3, memory_runs=2),
        ]
        scaling = {"steps": [10, 25, 50], "record": ["none", [4], 8, "all"], "repetitions": 3}
        return cases, scaling
    cases = [
        Case("small 64² · 25 steps", "builtin", 64, 64, 25, 10, memory_runs=5),
        Case("SD v1.5 arch 256² · 5 steps", "sd15", 256, 256, 5, 5, memory_runs=2),
        Case("SD v1.5 arch 512² · 3 steps", "sd15", 512, 512, 3, 3),
    ]
    scaling = {"steps": [10, 25, 50], "record": ["none", [4], 8, "all"], "repetitions": 5}
    return cases, scaling


def machine() -> dict:
    """What the numbers were measured on."""
    import diffusers
    import transformers

    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        pages = 0
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "ram_gb": round(pages / 1e9, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "platform": platform.platform(),
    }


def job_running(pattern: str) -> bool | None:
    """Whether another process's command line contains ``pattern`` (None: cannot tell).

    Reads ``/proc/<pid>/cmdline`` (what ``pgrep -f`` does, without needing procps); without
    ``/proc`` it asks ``pgrep`` if there is one.
    """
    if PROC.is_dir():
        own = os.getpid()
        for entry in PROC.iterdir():
            if not entry.name.isdigit() or int(entry.name) == own:
                continue
            try:
                command = (
                    (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                )
            except OSError:  # the process has exited, or its cmdline is not ours to read
                continue
            if pattern in command:
                return True
        return False
    pgrep = shutil.which("pgrep")
    if pgrep is None:
        return None
    found = subprocess.run([pgrep, "-f", pattern], capture_output=True, check=False)
    return {0: True, 1: False}.get(found.returncode)


def other_jobs() -> dict[str, bool | None]:
    """Which of this project's long CPU jobs run now: training, evaluation (None: unknown)."""
    return {"training": job_running(TRAINING_JOB), "evaluation": job_running(EVALUATION_JOB)}


def provenance() -> dict:
    """What was measured: the code's commit (and files changed since) and the built-in weights.

    Every field is None where it cannot be found (no git, not a checkout).
    """
    root = Path(__file__).resolve().parent.parent
    info: dict[str, Any] = {"commit": None, "changed_files": None, "builtin_weights_sha256": None}
    git = shutil.which("git")
    if git is not None:
        head = subprocess.run(
            [git, "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
        )
        status = subprocess.run(
            [git, "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=False,
        )
        if head.returncode == 0:
            info["commit"] = head.stdout.strip()
        if status.returncode == 0:
            info["changed_files"] = [line[3:] for line in status.stdout.splitlines()]
    from p2p_teach.shapes import WEIGHTS_DIR as weights
    files = sorted(path for path in weights.rglob("*") if path.is_file())
    if files:
        digest = hashlib.sha256()
        for path in files:
            digest.update(path.relative_to(weights).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
        info["builtin_weights_sha256"] = digest.hexdigest()
    return info


def run(mode: str, out: Path | None, log: Callable[[str], None] = print) -> dict:
    """Run every configuration of ``mode``; write the JSON and the Markdown table.

    Each configuration's timing, each variant's memory and the scaling runs each run in a fresh
    child process of their own, one at a time; this process builds no model.
    """
    cases, scaling = plan(mode)
    started = dt.datetime.now(dt.timezone.utc)
    results: dict[str, Any] = {
        "format": 1,
        "mode": mode,
        "started": started.isoformat(timespec="seconds"),
        "command": "python benchmarks/run.py" + ("" if mode == "full" else f" --{mode}"),
        "machine": machine(),
        "code": provenance(),
        "other_jobs_at_start": other_jobs(),
        "settings": {
            "source_prompt": SOURCE_PROMPT,
            "target_prompt": TARGET_PROMPT,
            "edit": "Replace",
            "cross_steps": CROSS_STEPS,
            "self_steps": SELF_STEPS,
            "guidance": GUIDANCE,
            "seed": SEED,
            "scheduler": "PNDM (skip_prk_steps, SD v1's)",
            "dtype": "float32",
        },
        "configs": [],
    }
    for case in cases:
        log(f"{case.name}: timing in a child process ({case.model}) …")
        spec = {"kind": "time", "case": dataclasses.asdict(case)}
        timing = run_child(spec, f"timing of {case.name}", log)
        report: dict[str, Any] = {
            "name": case.name,
            "case": dataclasses.asdict(case),
            "model": timing["model"],
            "build_s": timing["build_s"],
            "time": timing["time"],
        }
        if case.memory:
            report["memory"] = measure_memory(case, log)
        report["targets"] = check_targets(case, report)
        results["configs"].append(report)
    if scaling is not None:
        log("scaling on the small model, in a child process …")
        results["scaling"] = run_child({"kind": "scaling", **scaling}, "scaling", log)
    results["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    results["other_jobs_at_end"] = other_jobs()

    table = markdown(results)
    log("\n" + table)
    folder = out or RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y-%m-%dT%H%M")
    json_path = folder / (f"{mode}-{stamp}.json" if out is None else "results.json")
    json_path.write_text(json.dumps(results, indent=1, default=_json_default) + "\n", "utf-8")
    (folder / ("latest.md" if out is None else "results.md")).write_text(table + "\n", "utf-8")
    log(f"wrote {json_path}")
    return results


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def markdown(results: dict) -> str:
    """The results as Markdown tables (what the README's Performance section shows)."""
    info = results["machine"]
    lines = [
        f"Measured {results['started'][:16].replace('T', ' ')} UTC on {info['cpu']}, "
        f"{info['cores']} cores ({info['torch_threads']} torch threads), "
        f"{info['ram_gb']} GB RAM; torch {info['torch']}, diffusers {info['diffusers']}, "
        f"transformers {info['transformers']}; fp32, PNDM, guidance {GUIDANCE}. "
        f"Command: `{results['command']}`." + _other_jobs_note(results),
        "",
        "| configuration | variant | median time | time / stock (range over repetitions) "
        "| peak RSS | peak / stock | peak above the built model: whole run | … denoising only "
        "| history |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    unreliable = False
    for config in results["configs"]:
        timing = config["time"]
        mem = config.get("memory", {})
        for variant in config["case"]["variants"]:
            ratio = timing.get("ratio_to_stock", {}).get(variant)
            per = mem.get("per_variant", {}).get(variant)
            mem_ratio = mem.get("ratio_to_stock", {}).get(variant)
            history = "—"
            if variant == "edit" and "history" in timing:
                h = timing["history"]
                history = f"{h['mb']:.3f} MB ({h['mb_50_steps']:.2f} MB at 50 steps)"
            elif variant == "explicit" and "explicit_history_mb" in timing:
                history = f"{timing['explicit_history_mb']:.3f} MB"
            stock_row = variant == "stock"
            time_ratio = "1" if stock_row else f"{ratio:.3f}" if ratio else "—"
            spread = timing.get("ratio_per_repetition", {}).get(variant)
            if ratio and spread and len(spread) > 1:
                time_ratio += f" ({min(spread):.2f}–{max(spread):.2f})"
            peak = f"{per['peak_mb']:.0f} MB" if per else "—"
            peak_ratio = (
                "1" if stock_row and per else (f"{mem_ratio['peak']:.3f}" if mem_ratio else "—")
            )
            own_peak = f"{per['delta_mb']:.0f} MB" if per else "—"
            denoising = f"{per['denoising_delta_mb']:.0f} MB" if per else "—"
            if mem_ratio:
                own_peak += f" ({mem_ratio['delta']:.2f}×)"
                denoising += f" ({mem_ratio['denoising_delta']:.2f}×)"
            if per and not per.get("peak_reset", True):
                unreliable = True
                peak, own_peak, denoising = (f"{cell} †" for cell in (peak, own_peak, denoising))
            lines.append(
                f"| {config['name']} | {variant} | {timing['median_s'][variant]:.2f} s | "
                f"{time_ratio} | {peak} | {peak_ratio} | {own_peak} | {denoising} | {history} |"
            )
    if unreliable:
        lines += [
            "",
            "† unreliable: the kernel refused to reset the peak-RSS mark (/proc/self/clear_refs) "
            "in this variant's child process, so its peak may be the model build's, not the run's.",
        ]
    memory_runs = [
        f"{config['name']} {config['case'].get('memory_runs', 1)}"
        for config in results["configs"]
        if config.get("memory")
    ]
    if memory_runs:
        lines += [
            "",
            "Memory runs per variant (the median is shown; 1 means a single sample): "
            + "; ".join(memory_runs)
            + ".",
        ]
    checks = [
        f"{config['name']}: {name} {check['value']:.3f} "
        f"({'≤' if name != 'explicit_above_edit' else '>'} {check['limit']:.3f}) "
        + (
            "unreliable (peak reset refused)"
            if check.get("unreliable")
            else "met"
            if check["met"]
            else "MISSED"
        )
        for config in results["configs"]
        for name, check in config["targets"].items()
    ]
    if checks:
        lines += ["", "Targets: " + "; ".join(checks) + "."]
    loads = [
        f"{config['name']} median {load['median']:.0%}, max {load['max']:.0%}"
        for config in results["configs"]
        for load in [config["time"].get("others_load", {})]
        if load.get("median") is not None
    ]
    if loads:
        lines += [
            "",
            "Share of the cores other processes used during the timed runs: "
            + "; ".join(loads)
            + ".",
        ]
    for config in results["configs"]:
        agree = config["time"].get("agreement")
        if agree:
            lines.append(
                f"\n{config['name']}: explicit baseline vs engine: latents differ by at most "
                f"{agree['latents_max_abs_diff']:.2e} (of {agree['latents_max_abs']:.1f}), "
                f"history by {agree['history_max_abs_diff']:.2e}, images by "
                f"{agree['images_max_abs_diff']} of 255 levels; edit's source image vs stock: "
                f"{agree.get('source_image_vs_stock_max_abs_diff', '—')} levels."
            )
    scaling = results.get("scaling")
    if scaling:
        fit, stock_fit = scaling["edit_time_fit"], scaling["stock_time_fit"]
        lines += [
            "",
            f"Scaling on the small model ({scaling['image_side']}²): edit time ≈ "
            f"{fit['intercept_s']:.2f} s + {fit['seconds_per_step'] * 1000:.1f} ms × steps "
            f"(R² {fit['r_squared']:.4f}); stock ≈ {stock_fit['intercept_s']:.2f} s + "
            f"{stock_fit['seconds_per_step'] * 1000:.1f} ms × steps "
            f"(R² {stock_fit['r_squared']:.4f}).",
            "",
            "| steps | stock | edit | edit / stock | edit per step | history | others' load |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in scaling["by_steps"]:
            lines.append(
                f"| {row['steps']} | {row['median_s']['stock']:.2f} s | "
                f"{row['median_s']['edit']:.2f} s | {row['ratio_to_stock']:.3f} | "
                f"{row['edit_s_per_step'] * 1000:.1f} ms | {row['history_mb']:.3f} MB | "
                f"{_percent(row.get('others_load'))} |"
            )
        lines += [
            "",
            f"| record ({scaling['record_steps']} steps) | layers kept | map pixels | "
            "history | formula | edit time | edit / stock |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in scaling["by_record"]:
            lines.append(
                f"| {row['record']} | {', '.join(row['layers']) or 'none'} | {row['pixels']} | "
                f"{row['history_mb']:.4f} MB | {row['formula_mb']:.4f} MB | "
                f"{row['edit_median_s']:.2f} s | {row['ratio_to_stock']:.3f} |"
            )
        lines.append(
            f"\n(stock at {scaling['record_steps']} steps: "
            f"{scaling['record_stock_median_s']:.2f} s)"
        )
    return "\n".join(lines)


def _other_jobs_note(results: dict) -> str:
    """A sentence on the project's long jobs that shared the CPU during the run."""
    states: dict[str, list[bool | None]] = {}
    for when in ("start", "end"):
        for job, state in results[f"other_jobs_at_{when}"].items():
            states.setdefault(job, []).append(state)
    shared = [job for job, seen in states.items() if any(seen)]
    unknown = [job for job, seen in states.items() if not any(seen) and None in seen]
    note = ""
    if shared:
        note += f" The shapes model's {' and '.join(shared)} job shared the CPU during this run."
    if unknown:
        note += f" Whether the {' and '.join(unknown)} job ran could not be checked."
    return note


def _percent(share: float | None) -> str:
    return "—" if share is None else f"{share:.0%}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--quick", action="store_true", help="about 10 minutes on 2 cores")
    modes.add_argument("--smoke", action="store_true", help="1 repetition, small model, 2 steps")
    modes.add_argument("--child", help=argparse.SUPPRESS)  # a child process's spec (JSON)
    parser.add_argument("--out", type=Path, help="folder for results.json and results.md")
    args = parser.parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        if spec.get("kind") not in CHILDREN:
            parser.error(f"--child: unknown kind {spec.get('kind')!r} (one of {sorted(CHILDREN)})")

        def child_log(message: str) -> None:
            print("LOG " + message, flush=True)

        report = CHILDREN[spec["kind"]](spec, child_log)
        print("RESULT " + json.dumps(report, default=_json_default), flush=True)
        return 0
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.0f} s] {message}", flush=True)

    log(f"p2p_teach benchmark ({mode}): {shlex.join(sys.argv)}")
    run(mode, args.out, log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
