"""AttentionHistory: storage layout, queries by word/slot/step/resolution/place, aggregation,
memory arithmetic (SD v1.5 at 512², 50 steps) and the file round trip."""

from __future__ import annotations

import pytest
import torch

from p2p_teach.history import AttentionHistory, estimate_nbytes
from p2p_teach.layers import LayerInfo, keep_layer, plan_layers
from p2p_teach.tokens import WordNotFoundError, tokenize

SOURCE = tokenize("a hippopotamus eating")  # BOS a hippo potam us eating EOS: 7 used slots
TARGET = tokenize("a lion eating")  # 5 used slots
LAYERS = [
    LayerInfo("down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor", "down", 4, 4),
    LayerInfo("mid_block.attentions.0.transformer_blocks.0.attn2.processor", "mid", 2, 2),
    LayerInfo("up_blocks.1.attentions.0.transformer_blocks.0.attn2.processor", "up", 4, 4),
]
STEPS = 3


def _random_maps(pixels: int, generator: torch.Generator, constant: bool = False):
    """(2, pixels, 77) softmax rows; with ``constant`` every pixel has the same row."""
    rows = 1 if constant else pixels
    logits = torch.randn(2, rows, 77, generator=generator) * 2
    maps = logits.softmax(-1)  # (2, rows, 77)
    return maps.expand(2, pixels, 77).clone()


@pytest.fixture(scope="module")
def filled():
    """A history with 3 recorded steps; the mid (2×2) layer's maps are constant per pixel."""
    generator = torch.Generator().manual_seed(0)
    history = AttentionHistory(LAYERS, SOURCE, TARGET, [900.0, 600.0, 300.0])
    written = {}
    for step in range(STEPS):
        for layer in LAYERS:
            maps = _random_maps(layer.pixels, generator, constant=layer.place == "mid")
            history.record(layer.name, step, maps)
            written[layer.name, step] = maps
        history.end_step(step)
    return history, written


def test_used_slots_are_kept_and_padding_is_summed_into_one_column(filled):
    history, written = filled
    assert (history.n_kept, history.n_columns) == (7, 8)
    assert history.columns("source")[:3] == ["BOS", "a", "hippo"]
    assert history.columns("target")[-1] == "padding"
    layer = LAYERS[0]
    for step in range(STEPS):
        for index, prompt in enumerate(("source", "target")):
            stored = history.layer_maps(layer.name, prompt, step)  # (4, 4, 8)
            expected = written[layer.name, step][index].view(4, 4, 77)
            torch.testing.assert_close(stored[..., :7], expected[..., :7], atol=1e-3, rtol=2e-3)
            torch.testing.assert_close(
                stored[..., 7], expected[..., 7:].sum(-1), atol=1e-3, rtol=2e-3
            )
            torch.testing.assert_close(stored.sum(-1), torch.ones(4, 4), atol=5e-3, rtol=0)


def test_word_maps_sum_all_pieces_of_the_word(filled):
    history, written = filled
    layer = LAYERS[0]
    maps = history.word_maps("hippopotamus", "source", resolution=4, place="down")  # (3, 4, 4)
    assert maps.shape == (STEPS, 4, 4)
    hippo = SOURCE.find_word("hippopotamus")
    assert list(hippo.slots) == [2, 3, 4]
    for step in range(STEPS):
        expected = written[layer.name, step][0][:, 2:5].sum(-1).view(4, 4)
        torch.testing.assert_close(maps[step], expected, atol=3e-3, rtol=3e-3)
    mean = history.word_maps("hippopotamus", "source", resolution=4, place="down", reduce="mean")
    torch.testing.assert_close(mean * 3, maps, atol=1e-5, rtol=1e-5)
    with pytest.raises(WordNotFoundError, match="'lion', 'eating'"):
        history.word_maps("hippopotamus", "target")


def test_aggregation_resizes_to_a_common_size_then_averages(filled):
    history, written = filled
    step = 1
    aggregated = history.maps("target", steps=step)  # all layers → 4×4: (4, 4, 8)
    assert aggregated.shape == (4, 4, 8)
    # bilinear resizing keeps a constant map constant, so the mid layer adds its one row
    down = history.layer_maps(LAYERS[0].name, "target", step)
    up = history.layer_maps(LAYERS[2].name, "target", step)
    mid_row = history.layer_maps(LAYERS[1].name, "target", step)[0, 0]  # (8,)
    torch.testing.assert_close(aggregated, (down + up + mid_row) / 3, atol=1e-5, rtol=1e-5)
    same_size = history.maps("target", steps=step, resolution=4)
    torch.testing.assert_close(same_size, (down + up) / 2, atol=1e-6, rtol=1e-6)
    upsampled = history.maps("target", steps=[0, 2], resolution=2, size=8)
    assert upsampled.shape == (2, 8, 8, 8)


def test_selection_by_place_resolution_and_steps(filled):
    history, _ = filled
    assert [layer.place for layer in history.select(place="up")] == ["up"]
    assert [layer.place for layer in history.select(resolution=4)] == ["down", "up"]
    assert [layer.place for layer in history.select(resolution=(2, 2))] == ["mid"]
    assert [layer.place for layer in history.select(resolution=[2, 4], place=["mid", "up"])] == [
        "mid",
        "up",
    ]
    assert history.resolutions == [(4, 4), (2, 2)]
    with pytest.raises(ValueError, match="keeps"):
        history.select(resolution=16)
    name = LAYERS[0].name
    assert history.layer_maps(name, steps=slice(1, None)).shape == (2, 4, 4, 8)
    assert history.layer_maps(name, steps=[2, 0]).shape == (2, 4, 4, 8)
    torch.testing.assert_close(
        history.layer_maps(name, steps=-1), history.layer_maps(name, steps=[2])[0]
    )
    with pytest.raises(IndexError, match="not recorded"):
        history.layer_maps(name, steps=3)


def test_slot_queries_and_the_padding_column(filled):
    history, written = filled
    first = history.slot_maps(1, "source", resolution=4, place="down", steps=0)
    expected = written[LAYERS[0].name, 0][0][:, 1].view(4, 4)
    torch.testing.assert_close(first, expected, atol=1e-3, rtol=2e-3)
    padding = history.slot_maps("padding", "source", resolution=4, place="down", steps=0)
    torch.testing.assert_close(
        padding, written[LAYERS[0].name, 0][0][:, 7:].sum(-1).view(4, 4), atol=2e-3, rtol=2e-3
    )
    with pytest.raises(ValueError, match="slot 30 is padding"):
        history.slot_maps(30)


def test_at_step_gives_every_layer_and_steps_in_progress_are_hidden():
    history = AttentionHistory(LAYERS, SOURCE, TARGET, [900.0, 600.0])
    history.record(LAYERS[0].name, 0, torch.full((2, 16, 77), 1 / 77))
    assert history.steps_recorded == 0
    with pytest.raises(IndexError):
        history.at_step(0)
    history.end_step(0)
    maps = history.at_step(0)
    assert {name: tuple(m.shape) for name, m in maps.items()} == {
        LAYERS[0].name: (2, 4, 4, 8),
        LAYERS[1].name: (2, 2, 2, 8),
        LAYERS[2].name: (2, 4, 4, 8),
    }
    assert history.maps(steps=None).shape[0] == 1


def test_nbytes_is_the_arithmetic_and_all_slots_keep_77_columns(filled):
    history, _ = filled
    assert history.nbytes == STEPS * (16 + 4 + 16) * 8 * 2 * 2
    assert history.nbytes == estimate_nbytes(LAYERS, STEPS, history.n_columns)
    full = AttentionHistory(LAYERS, SOURCE, TARGET, [1.0], slots="all")
    assert (full.n_columns, full.has_padding_column) == (77, False)
    assert full.nbytes == (16 + 4 + 16) * 77 * 4
    assert "MB" in repr(full)


def test_sd15_at_512_keeping_16x16_and_below_fits_in_10_mb_for_50_steps():
    from diffusers import UNet2DConditionModel

    config = dict(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    )  # fmt: skip
    with torch.device("meta"):  # SD v1.5's UNet, without allocating its 860M weights
        unet = UNet2DConditionModel(**config)
    layers = plan_layers(unet, 64, 64)
    kept = [layer for layer in layers if keep_layer(layer, "auto", 64)]
    assert sorted((layer.place, layer.side) for layer in kept) == [
        ("down", 16), ("down", 16), ("mid", 8), ("up", 16), ("up", 16), ("up", 16),
    ]  # fmt: skip
    assert sum(layer.pixels for layer in kept) == 5 * 256 + 64
    source = tokenize("photo of a cat riding on a bicycle")
    target = tokenize("photo of a cat riding on a motorcycle")
    history = AttentionHistory(kept, source, target, [float(t) for t in range(50)])
    assert history.n_columns == 11  # BOS, 8 words, EOS, padding
    assert history.nbytes == 50 * 1344 * 11 * 2 * 2  # 2,956,800 bytes
    assert history.memory_mb == pytest.approx(2.9568) and history.memory_mb < 10
    # prompts of up to 36 used slots (37 columns) fit in 10 MB; all 77 columns would not
    assert estimate_nbytes(kept, 50, 37) <= 10e6 < estimate_nbytes(kept, 50, 38)
    assert estimate_nbytes(kept, 50, 77) / 1e6 == pytest.approx(20.6976)
    assert all(keep_layer(layer, "auto", 16) for layer in plan_layers(unet, 16, 16) if layer.cross)


def test_save_and_load_round_trip(filled, tmp_path):
    history, _ = filled
    path = history.save(tmp_path / "history.safetensors")
    loaded = AttentionHistory.load(path)
    assert loaded.layers == history.layers
    assert loaded.timesteps == history.timesteps
    assert loaded.steps_recorded == history.steps_recorded
    assert loaded.source.ids == history.source.ids and loaded.target.ids == history.target.ids
    for layer in LAYERS:
        assert torch.equal(loaded.layer_maps(layer.name), history.layer_maps(layer.name))
    assert loaded.nbytes == history.nbytes
