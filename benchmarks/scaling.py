"""Scaling on the small model: edit time against steps, history size against recorded layers."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmarks.cases import Case
from benchmarks.timing import history_report, measure_time
from benchmarks.variants import initial_noise, run_variant, timed

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline


def measure_scaling(
    pipe: StableDiffusionPipeline,
    steps_list: list[int],
    record_sets: list,
    repetitions: int,
    log: Callable[[str], None],
) -> dict:
    """Edit time against steps (with stock alongside) and history size against record sets."""
    side = pipe.unet.config.sample_size * pipe.vae_scale_factor
    by_steps = time_by_steps(pipe, side, steps_list, repetitions, log)
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
    steps = steps_list[len(steps_list) // 2]
    by_record, stock_times = history_by_record(pipe, side, steps, record_sets, repetitions, log)
    return {
        "image_side": side,
        "by_steps": by_steps,
        "edit_time_fit": fits["edit"],
        "stock_time_fit": fits["stock"],
        "record_steps": steps,
        "record_stock_median_s": statistics.median(stock_times),
        "by_record": by_record,
    }


def time_by_steps(
    pipe: StableDiffusionPipeline,
    side: int,
    steps_list: list[int],
    repetitions: int,
    log: Callable[[str], None],
) -> list[dict]:
    """Stock and edit timed at each step count (:func:`~benchmarks.timing.measure_time`)."""
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
    return by_steps


def history_by_record(
    pipe: StableDiffusionPipeline,
    side: int,
    steps: int,
    record_sets: list,
    repetitions: int,
    log: Callable[[str], None],
) -> tuple[list[dict], list[float]]:
    """The edit with each record set, interleaved with stock in every repetition (stock,
    edit(set 1), edit(set 2), …): per set, the layers kept, the history's size against the
    formula's, and the time; and the stock times."""
    from p2p_teach.history import estimate_nbytes
    from p2p_teach.layers import keep_layer, plan_layers

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
    return by_record, stock_times


def _linear_fit(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Least-squares ``y = slope·x + intercept`` and its R²."""
    if len(xs) < 2:
        return math.nan, math.nan, math.nan
    slope, intercept = np.polyfit(xs, ys, 1)
    predicted = slope * np.asarray(xs) + intercept
    residual = float(((np.asarray(ys) - predicted) ** 2).sum())
    total = float(((np.asarray(ys) - np.mean(ys)) ** 2).sum())
    return float(slope), float(intercept), 1.0 - residual / total if total else 1.0
