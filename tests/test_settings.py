"""EditSettings: a frozen, typed record of an edit that round-trips through JSON, and reads
the settings.json that p2p_teach 0.1.0 wrote (``tests/data/settings_v0_1_0.json``)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from p2p_teach.engine import EditResult
from p2p_teach.settings import EditSettings

OLD = Path(__file__).parent / "data" / "settings_v0_1_0.json"


@pytest.fixture
def old_json() -> dict:
    return json.loads(OLD.read_text("utf-8"))


def test_a_0_1_0_settings_file_loads_with_typed_fields(old_json):
    settings = EditSettings.from_json(old_json)
    assert (settings.source_prompt, settings.target_prompt) == (
        "a big red circle",
        "a big blue circle",
    )
    assert settings.kind == "replace" and settings.edit["rule"] == "course"
    assert settings.cross_steps == {"default": (0.0, 0.8)}
    assert settings.cross_step_ranges == {"default": (0, 8)}
    assert settings.self_steps == (0.0, 0.6) and settings.self_step_range == (0, 6)
    # fields added after 0.1.0 take the behaviour 0.1.0 had
    assert settings.conventions == "p2p_teach" and settings.null_embeddings_given is False
    assert settings.target_null_steps is None


def test_to_json_gives_back_the_file_plus_the_new_fields(old_json):
    data = EditSettings.from_json(old_json).to_json()
    assert data == {**old_json, "conventions": "p2p_teach", "null_embeddings_given": False,
                    "target_null_steps": None}  # fmt: skip
    assert EditSettings.from_json(json.loads(json.dumps(data))) == EditSettings.from_json(old_json)


def test_settings_are_frozen_and_hold_their_own_copies(old_json):
    settings = EditSettings.from_json(old_json)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.seed = 2  # type: ignore[misc]
    old_json["edit"]["rule"] = "changed"  # the caller's dict is not the settings' dict
    assert settings.edit["rule"] == "course"
    assert settings.to_json()["edit"] is not settings.edit
    assert hash(settings) == hash(EditSettings.from_json(settings.to_json()))


def test_a_changed_copy_differs(old_json):
    settings = EditSettings.from_json(old_json)
    other = dataclasses.replace(settings, seed=2)
    assert other != settings and other.seed == 2 and settings.seed == 1


def test_unknown_or_missing_fields_are_named(old_json):
    with pytest.raises(ValueError, match=r"unknown fields \['colour'\]"):
        EditSettings.from_json({**old_json, "colour": "red"})
    del old_json["seed"]
    with pytest.raises(ValueError, match=r"missing fields \['seed'\]"):
        EditSettings.from_json(old_json)


def test_unknown_conventions_are_refused(old_json):
    with pytest.raises(ValueError, match="conventions='paper'"):
        EditSettings.from_json({**old_json, "conventions": "paper"})


def test_key_lookup_reads_the_json_values(old_json):
    settings = EditSettings.from_json(old_json)
    assert settings["self_steps"] == [0.0, 0.6] and settings["edit"] == old_json["edit"]
    with pytest.raises(KeyError):
        settings["colour"]


def test_a_result_folder_saved_by_0_1_0_loads(tmp_path, old_json):
    """0.1.0 wrote no manifest; a complete folder (latents.safetensors, its last file, there)
    loads with a warning, a partial one is refused (tests/test_faults.py)."""
    from safetensors.torch import save_file

    for name in ("source.png", "edited.png"):
        Image.new("RGB", (64, 64), "red").save(tmp_path / name)
    shutil.copy(OLD, tmp_path / "settings.json")
    save_file({"latents": torch.zeros(2, 4, 16, 16)}, str(tmp_path / "latents.safetensors"))
    with pytest.warns(UserWarning, match="saved before p2p_teach wrote manifests"):
        result = EditResult.load(tmp_path)
    assert result.settings == EditSettings.from_json(old_json)
    assert result.history is None and torch.equal(result.latents, torch.zeros(2, 4, 16, 16))
    assert "'a big red circle' → 'a big blue circle', edit=replace, seed=1" in repr(result)
