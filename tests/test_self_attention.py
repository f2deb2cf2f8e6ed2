"""The self-attention view: softmax rows of one pixel, equal in source and target when the
step is injected, the target's own otherwise; its widget and its bad-input errors."""

from __future__ import annotations

import pytest
import torch

from p2p_teach.figures.claims import self_attention_figure
from p2p_teach.self_attention import self_attention_view
from p2p_teach.widgets import SelfAttentionExplorer

SOURCE, TARGET = "a red cat", "a blue cat"


def test_rows_are_distributions_and_injection_makes_the_target_the_source(pipe):
    view = self_attention_view(pipe, SOURCE, TARGET, pixel=(10, 20), step=1, steps=4,
                               inject=1.0, self_max_ratio=1.0)  # fmt: skip
    assert view.injected
    for run in ("with", "without"):
        for prompt in ("source", "target"):
            row = view.maps[run][prompt]
            assert row.shape == (view.side, view.side)
            assert torch.all(row >= 0) and abs(float(row.sum()) - 1.0) < 1e-4
    assert torch.equal(view.maps["with"]["target"], view.maps["with"]["source"])
    # the source never sees the target, and nothing is injected into it: same in both runs
    assert torch.allclose(view.maps["with"]["source"], view.maps["without"]["source"])
    assert not torch.allclose(view.maps["without"]["target"], view.maps["without"]["source"])
    side = pipe.unet.config.sample_size * pipe.vae_scale_factor
    assert view.cell == (10 * view.side // side, 20 * view.side // side)
    assert len(self_attention_figure(view).axes) >= 4


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"pixel": (-1, 0), "step": 0}, "rows and columns"),
    ({"pixel": (0, 0), "step": 3}, "choose a step"),
    ({"pixel": (0, 0), "step": 0, "side": 999}, "self-attention at the sides"),
])  # fmt: skip
def test_bad_input_names_the_fix(pipe, kwargs, message):
    with pytest.raises(ValueError, match=message):
        self_attention_view(pipe, SOURCE, TARGET, steps=4, **kwargs)


def test_explorer_computes_and_shows_errors_in_its_status(pipe):
    explorer = SelfAttentionExplorer(pipe, SOURCE, TARGET, pixel=(5, 5), step=0, steps=3)
    assert explorer.compute() is not None and explorer.figure_image.value
    explorer.target = "a blue cat and more words"  # not a word swap
    assert explorer.compute() is None and "Could not compute" in explorer.status.value
    with pytest.raises(ValueError, match="step"):
        SelfAttentionExplorer(pipe, SOURCE, TARGET, step=5, steps=3)
