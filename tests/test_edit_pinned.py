"""One edit on the built-in shapes model, pinned bit for bit (CPU, fp32, one thread).

Refactoring the engine must not change a single bit of what an edit computes: this test hashes
the two images, the final latents and every recorded attention map of one Replace edit, and
compares its settings with the ones saved by p2p_teach 0.1.0 (``tests/data``). The hashes were
taken with the code as it was before the engine was split into plan and run; a change in torch
or in the CPU's kernels may legitimately move them (then re-pin, with the reason in the commit).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from p2p_teach.edits import Replace
from p2p_teach.engine import edit
from p2p_teach.models import load_pipeline

OLD_SETTINGS = Path(__file__).parent / "data" / "settings_v0_1_0.json"
IMAGES_AND_LATENTS_SHA256 = "f54325e1a338158f42e5aba276ed39140aab42fbd9b2fdfbbc91e0e0e606d1f2"
HISTORY_SHA256 = "89206f9d6b76136ca45262a25bcb38d687889fa4b2f250d8bb8cae4963225904"


@pytest.fixture(scope="module")
def pinned(one_thread):
    pipe = load_pipeline("builtin", device="cpu", verbose=False)
    return edit(
        pipe, "a big red circle", "a big blue circle", edit=Replace(), seed=1, steps=10,
        progress=False,
    )  # fmt: skip


def test_images_and_final_latents_are_bit_identical(pinned):
    digest = hashlib.sha256()
    for image in pinned.images:
        digest.update(np.asarray(image).tobytes())  # (64, 64, 3) uint8
    digest.update(pinned.latents.numpy().tobytes())  # (2, 4, 16, 16) float32
    assert digest.hexdigest() == IMAGES_AND_LATENTS_SHA256


def test_recorded_attention_is_bit_identical(pinned):
    digest = hashlib.sha256()
    for step in range(pinned.history.steps_recorded):
        for name, maps in sorted(pinned.history.at_step(step).items()):
            digest.update(name.encode())
            digest.update(maps.float().numpy().tobytes())  # (2, H, W, columns)
    assert digest.hexdigest() == HISTORY_SHA256


def test_settings_are_written_as_version_0_1_0_wrote_them(pinned):
    old = json.loads(OLD_SETTINGS.read_text("utf-8"))
    new = pinned.settings.to_json()
    added = ("conventions", "null_embeddings_given", "target_null_steps")  # since 0.1.0
    assert tuple(new.pop(name) for name in added) == ("p2p_teach", False, None)
    for data in (old, new):
        data.pop("p2p_teach_version")
        data["scheduler_config"].pop("_diffusers_version")
    assert new == old
