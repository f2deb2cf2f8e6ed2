"""The shipped model loads the same on every supported install (the floor and the newest).

``tests/data/shapes_reference.npz`` holds one edit's images and one text embedding computed
on the newest versions (``python tests/test_floor.py`` writes it); CI runs this file on the
oldest versions ``pyproject.toml`` accepts too. A text encoder that silently loads random
weights draws another picture (up to 232 levels off) and another embedding (off by units).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from p2p_teach.guards import WeightsNotLoadedError
from p2p_teach.shapes import WEIGHTS_DIR, load_shapes_pipeline

REFERENCE = Path(__file__).parent / "data" / "shapes_reference.npz"
SOURCE, TARGET = "a big red circle on the left", "a big blue circle on the left"
SEED, STEPS = 0, 6
EMBEDDING_PROMPT = "a small green square"


def compute() -> dict[str, np.ndarray]:
    from p2p_teach.engine import edit
    from p2p_teach.models import load_pipeline

    pipe = load_pipeline("builtin", device="cpu", verbose=False)
    result = edit(pipe, SOURCE, TARGET, seed=SEED, steps=STEPS, progress=False)
    ids = pipe.tokenizer([EMBEDDING_PROMPT], padding="max_length", return_tensors="pt")
    with torch.no_grad():
        embedding = pipe.text_encoder(ids.input_ids)[0]  # (1, 77, 128)
    return {
        "source": np.asarray(result.source_image),
        "edited": np.asarray(result.edited_image),
        "embedding": embedding.numpy(),
    }



def test_the_shipped_text_encoder_uses_the_standard_key_names():
    """transformers 4 reads CLIPTextModel weights only under ``text_model.``; 5 reads both."""
    with safe_open(str(WEIGHTS_DIR / "text_encoder" / "model.safetensors"), "pt") as handle:
        keys = list(handle.keys())  # noqa: SIM118
    assert keys and all(key.startswith("text_model.") for key in keys)


def test_images_and_embeddings_equal_the_reference_within_one_level():
    reference = np.load(REFERENCE)
    now = compute()
    for name in ("source", "edited"):
        difference = np.abs(now[name].astype(int) - reference[name].astype(int))
        assert difference.max() <= 1, f"{name}: {difference.max()} levels off the reference"
    assert np.abs(now["embedding"] - reference["embedding"]).max() < 1e-3


def test_weights_that_do_not_load_are_an_error(tmp_path):
    """Key names the installed transformers cannot place: an error, never random weights."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "weights"
    shutil.copytree(WEIGHTS_DIR, folder)
    path = folder / "text_encoder" / "model.safetensors"
    tensors = load_file(str(path))
    save_file({f"renamed.{key}": value for key, value in tensors.items()}, str(path))
    with pytest.raises(WeightsNotLoadedError, match=r"text_encoder.*52 missing.*Fix: reinstall"):
        load_shapes_pipeline(folder)


def test_an_exported_training_run_uses_the_standard_key_names_and_loads(tmp_path):
    from p2p_teach.shapes import model as shapes_model
    from p2p_teach.shapes import train as shapes_train

    states = (shapes_model.build_unet().state_dict(),
              shapes_model.build_text_encoder().state_dict(),
              shapes_model.build_vae().state_dict())  # fmt: skip
    folder = shapes_train.export_pipeline(*states, 0.5, tmp_path / "pipe", torch.float16)
    with safe_open(str(folder / "text_encoder" / "model.safetensors"), "pt") as handle:
        assert all(key.startswith("text_model.") for key in handle.keys())  # noqa: SIM118
    pipe = load_shapes_pipeline(folder)  # checks every tensor against the files
    text_state = states[1]
    loaded = pipe.text_encoder.state_dict()
    for key, value in text_state.items():
        mine = loaded.get(key, loaded.get(key.removeprefix("text_model.")))
        assert torch.equal(mine, value.to(torch.float16).float())


if __name__ == "__main__":
    REFERENCE.parent.mkdir(exist_ok=True)
    np.savez_compressed(REFERENCE, **compute())
    print(f"wrote {REFERENCE}")
