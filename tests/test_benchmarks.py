"""The benchmark script cannot rot: a smoke run, its JSON, and the baseline's sameness check.

The smoke run is ``benchmarks/run.py --smoke``: one repetition of the small built-in model at
2 steps, the three variants timed in one process and each measured for memory in its own
subprocess. The explicit baseline must do the very same edit as the engine (only the attention
strategy differs), so its latents and history must equal the engine's to float tolerance; a
deliberately broken baseline shows that the check would catch a divergence.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import explicit, run  # noqa: E402

LATENTS_TOLERANCE = 1e-3  # fp32 fused vs explicit attention: observed ~2e-5 on latents of ~10
HISTORY_TOLERANCE = 1e-3  # maps are stored in float16 (spacing ~5e-4 just below 1)
IMAGE_TOLERANCE = 2  # 8-bit levels


def _positive_finite(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench")
    run.run("smoke", out, log=lambda message: None)
    assert (out / "results.md").read_text().startswith("Measured ")
    return json.loads((out / "results.json").read_text())


def test_smoke_json_structure(smoke):
    assert smoke["mode"] == "smoke"
    assert {"machine", "settings", "configs", "started", "finished"} <= set(smoke)
    (config,) = smoke["configs"]
    assert config["case"]["steps"] == 2 and config["case"]["repetitions"] == 1
    timing = config["time"]
    for variant in run.VARIANTS:
        assert len(timing["times_s"][variant]) == 1
        assert _positive_finite(timing["median_s"][variant])
    for variant in ("edit", "explicit"):
        assert _positive_finite(timing["ratio_to_stock"][variant])
    history = timing["history"]
    assert _positive_finite(history["mb"]) and _positive_finite(history["per_step_mb"])
    assert history["mb_50_steps"] == pytest.approx(history["per_step_mb"] * 50)
    assert timing["explicit_history_mb"] == pytest.approx(history["mb"])

    memory = config["memory"]
    for variant in run.VARIANTS:
        measured = memory["per_variant"][variant]
        assert measured["variant"] == variant
        for key in ("base_mb", "peak_mb", "build_s", "run_s"):
            assert _positive_finite(measured[key]), (variant, key, measured[key])
        assert measured["peak_mb"] >= measured["base_mb"]
        assert math.isfinite(measured["delta_mb"]) and measured["delta_mb"] >= 0
    for variant in ("edit", "explicit"):
        assert _positive_finite(memory["ratio_to_stock"][variant]["peak"])
    assert set(config["targets"]) >= {"edit_time", "edit_peak_memory", "explicit_above_edit"}


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

    (The random model's images barely change, so latents and history carry the check.)
    """
    case = run.plan("smoke")[0][0]
    pipe = run.build_pipeline(case.model)
    noise = run.initial_noise(pipe, case.height, case.width)
    engine_outcome = run.run_variant("edit", pipe, case, noise)
    faithful = run.agreement(engine_outcome, run.run_variant("explicit", pipe, case, noise), None)
    assert faithful["history_max_abs_diff"] <= HISTORY_TOLERANCE

    def record_only(self, probabilities):  # records the target's maps but never edits them
        state = self.run
        if state.record_call and self.record and state.history is not None:
            pair = [state.cond_source, state.cond_target]
            maps = probabilities[pair].float().mean(dim=1)  # (2, pixels, 77)
            state.history.record(self.layer.name, state.step, maps)

    monkeypatch.setattr(explicit.ExplicitPromptToPromptProcessor, "_edit_cross", record_only)
    broken = run.agreement(engine_outcome, run.run_variant("explicit", pipe, case, noise), None)
    # measured on the random built-in model: history 4.9e-3, latents 4.1e-2 (faithful: 2e-5)
    assert broken["history_max_abs_diff"] > HISTORY_TOLERANCE
    assert broken["latents_max_abs_diff"] > 10 * LATENTS_TOLERANCE
    # the pipeline's own attention processors are back after every variant
    assert {type(p).__name__ for p in pipe.unet.attn_processors.values()} == {"AttnProcessor2_0"}
