"""The benchmark script cannot rot: a smoke run, its JSON, and the baseline's sameness check.

The smoke run is ``benchmarks/run.py --smoke``: one repetition of the small built-in model at
2 steps, the three variants timed in one child process and each measured for memory in a child
process of its own. The explicit baseline must do the very same edit as the engine (only the
attention strategy differs), so its latents and history must equal the engine's to float
tolerance; a deliberately broken baseline shows that the check would catch a divergence.
"""

from __future__ import annotations

import copy
import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import (  # noqa: E402
    cases,
    environment,
    explicit,
    memory,
    report,
    suite,
    timing,
    variants,
)

LATENTS_TOLERANCE = 1e-3  # fp32 fused vs explicit attention: observed 2e-5–3e-4 on latents of ~10
HISTORY_TOLERANCE = 1e-3  # maps are stored in float16 (spacing ~5e-4 just below 1)
IMAGE_TOLERANCE = 2  # 8-bit levels


def _positive_finite(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench")
    suite.run("smoke", out, log=lambda message: None)
    assert (out / "results.md").read_text().startswith("Measured ")
    return json.loads((out / "results.json").read_text())


def test_smoke_json_structure(smoke):
    assert smoke["mode"] == "smoke"
    assert {"machine", "settings", "configs", "started", "finished"} <= set(smoke)
    (config,) = smoke["configs"]
    assert config["case"]["steps"] == 2 and config["case"]["repetitions"] == 1
    timing = config["time"]
    for variant in cases.VARIANTS:
        assert len(timing["times_s"][variant]) == 1
        assert _positive_finite(timing["median_s"][variant])
    for variant in ("edit", "explicit"):
        assert _positive_finite(timing["ratio_to_stock"][variant])
        assert timing["ratio_per_repetition"][variant] == [timing["ratio_to_stock"][variant]]
    history = timing["history"]
    assert _positive_finite(history["mb"]) and _positive_finite(history["per_step_mb"])
    assert history["mb_50_steps"] == pytest.approx(history["per_step_mb"] * 50)
    assert timing["explicit_history_mb"] == pytest.approx(history["mb"])

    memory = config["memory"]
    for variant in cases.VARIANTS:
        measured = memory["per_variant"][variant]
        assert measured["variant"] == variant
        for key in ("base_mb", "peak_mb", "build_s", "run_s"):
            assert _positive_finite(measured[key]), (variant, key, measured[key])
        # the kernel reset the peak mark before the run, so the peak is the run's, not the build's
        assert measured["peak_reset"] is True, (variant, "the kernel refused clear_refs")
        # the mark only grows: the denoising's peak (read at its last step) cannot exceed the
        # whole run's, and neither can exceed the process's lifetime peak (ru_maxrss)
        assert 0 <= measured["denoising_delta_mb"] <= measured["delta_mb"], measured
        assert measured["peak_mb"] <= measured["ru_maxrss_mb"] + 1, measured
    for variant in ("edit", "explicit"):
        assert _positive_finite(memory["ratio_to_stock"][variant]["peak"])
    assert set(config["targets"]) >= {"edit_time", "edit_peak_memory", "explicit_above_edit"}


def test_smoke_markdown_shows_spread_and_memory_runs(smoke):
    table = report.markdown(smoke)
    assert "†" not in table  # the peaks are reliable here
    assert "Memory runs per variant" in table and "small 64² · 2 steps 1" in table
    several = copy.deepcopy(smoke)  # the smoke run has one repetition: no range to show
    several["configs"][0]["time"]["ratio_per_repetition"]["edit"] = [1.04, 1.21, 1.1]
    assert "(1.04–1.21)" in report.markdown(several)


def test_a_refused_peak_reset_is_flagged(smoke):
    """If the kernel refuses clear_refs, the table marks the memory cells and the target."""
    results = copy.deepcopy(smoke)
    (config,) = results["configs"]
    config["memory"]["per_variant"]["edit"]["peak_reset"] = False  # one child's reset refused
    case = cases.Case.from_dict(config["case"])
    config["targets"] = timing.check_targets(case, config)
    assert config["targets"]["edit_peak_memory"]["unreliable"] is True
    assert config["targets"]["edit_peak_memory"]["met"] is None
    table = report.markdown(results)
    (edit_row,) = [
        line for line in table.splitlines() if line.startswith("| small") and "| edit |" in line
    ]
    assert edit_row.count("†") == 3  # peak RSS, whole run's and denoising's peak above the build
    assert "† unreliable: the kernel refused to reset the peak-RSS mark" in table
    assert "edit_peak_memory" in table and "unreliable (peak reset refused)" in table


def test_peak_reset_forgets_an_earlier_peak():
    """The mechanism the memory children rely on: after a reset the peak is the current RSS."""
    import numpy as np

    if not memory.reset_peak():
        pytest.skip("the kernel refuses /proc/self/clear_refs here (the table flags it, above)")
    buffer = np.ones(256 * 2**20 // 8)  # 256 MB, every page touched
    high = memory.peak_rss_mb()
    del buffer
    memory.release_free_memory()
    assert memory.reset_peak()
    assert memory.peak_rss_mb() < high - 200, (memory.peak_rss_mb(), high)


def test_job_running_without_pgrep(monkeypatch, tmp_path):
    """Finds jobs from /proc without procps, and says None when it cannot tell."""
    monkeypatch.setenv("PATH", "")  # no pgrep
    assert isinstance(environment.job_running(environment.TRAINING_JOB), bool)  # the real /proc

    fake = tmp_path / "proc"
    (fake / "123").mkdir(parents=True)
    (fake / "123" / "cmdline").write_bytes(b"python\0-m\0p2p_teach.shapes.train\0--out\0x\0")
    (fake / "self").mkdir()  # not a process id: ignored
    monkeypatch.setattr(environment, "PROC", fake)
    assert environment.job_running(environment.TRAINING_JOB) is True
    assert environment.job_running(environment.EVALUATION_JOB) is False
    assert environment.other_jobs() == {"training": True, "evaluation": False}

    monkeypatch.setattr(environment, "PROC", tmp_path / "no-proc")
    assert environment.job_running(environment.TRAINING_JOB) is None  # no /proc and no pgrep
    results = {
        "other_jobs_at_start": environment.other_jobs(),
        "other_jobs_at_end": environment.other_jobs(),
    }
    assert "could not be checked" in report._other_jobs_note(results)


def test_explicit_baseline_does_the_same_edit(smoke):
    agreement = smoke["configs"][0]["time"]["agreement"]
    assert agreement["latents_max_abs"] > 0.1  # the comparison is about real latents
    assert agreement["latents_max_abs_diff"] <= LATENTS_TOLERANCE
    assert agreement["history_max_abs_diff"] <= HISTORY_TOLERANCE
    assert agreement["images_max_abs_diff"] <= IMAGE_TOLERANCE
    # the edit leaves the source alone, so its source image is the stock pipeline's
    assert agreement["source_image_vs_stock_max_abs_diff"] <= IMAGE_TOLERANCE


def test_a_diverging_baseline_is_caught(monkeypatch):
    """Without its cross-attention edit, the baseline's result must fail the same check.

    (On the trained built-in shapes model the broken baseline's images change too.)
    """
    case = cases.plan("smoke")[0][0]
    pipe = variants.build_pipeline(case.model)
    noise = variants.initial_noise(pipe, case.height, case.width)
    engine_outcome = variants.run_variant("edit", pipe, case, noise)
    explicit_outcome = variants.run_variant("explicit", pipe, case, noise)
    faithful = timing.agreement(engine_outcome, explicit_outcome, None)
    assert faithful["history_max_abs_diff"] <= HISTORY_TOLERANCE

    def record_only(self, probabilities):  # records the target's maps but never edits them
        state = self.run
        if state.record_call and self.record and state.history is not None:
            pair = [state.cond_source, state.cond_target]
            maps = probabilities[pair].float().mean(dim=1)  # (2, pixels, 77)
            state.history.record(self.layer.name, state.step, maps)

    monkeypatch.setattr(explicit.ExplicitPromptToPromptProcessor, "_edit_cross", record_only)
    broken_outcome = variants.run_variant("explicit", pipe, case, noise)
    broken = timing.agreement(engine_outcome, broken_outcome, None)
    # measured on the trained built-in shapes model (not the random 'tiny-random'): history
    # 0.47, latents 6.1, images 228 levels (faithful: 6e-5, 3e-4 and 1)
    assert broken["history_max_abs_diff"] > HISTORY_TOLERANCE
    assert broken["latents_max_abs_diff"] > 10 * LATENTS_TOLERANCE
    assert broken["images_max_abs_diff"] > IMAGE_TOLERANCE
    # the pipeline's own attention processors are back after every variant
    assert {type(p).__name__ for p in pipe.unet.attn_processors.values()} == {"AttnProcessor2_0"}
