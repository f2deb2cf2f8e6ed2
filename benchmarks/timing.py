"""Timing the variants in turn, and what a timing run also reads: history, agreement, targets."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmarks.cases import HISTORY_STEPS_TARGET, TARGETS, Case
from benchmarks.variants import Outcome, initial_noise, run_variant, timed_with_load

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline

    from p2p_teach.history import AttentionHistory


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
