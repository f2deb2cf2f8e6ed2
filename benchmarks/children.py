"""Every measurement in a fresh child process: the children's work, and starting them."""

from __future__ import annotations

import collections
import dataclasses
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import memory
from benchmarks.cases import Case
from benchmarks.scaling import measure_scaling
from benchmarks.timing import measure_time
from benchmarks.variants import build_pipeline, initial_noise, run_variant, timed

ENTRY_POINT = Path(__file__).resolve().parent / "run.py"  # the children run it with --child


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
    command = [sys.executable, str(ENTRY_POINT), "--child", json.dumps(spec)]
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
