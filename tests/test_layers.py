"""layers: which attention layers the history keeps (one check of the ``record`` setting) and
which side LocalBlend reads, on made-up layers whose answers are known."""

from __future__ import annotations

import pytest

from p2p_teach.layers import (
    LayerInfo,
    blend_resolution,
    check_keep,
    keep_layer,
    kept_layers,
    layer_place,
)


def layer(place: str, block: int, side: int, cross: bool = True) -> LayerInfo:
    attn = "attn2" if cross else "attn1"
    prefix = "mid_block" if place == "mid" else f"{place}_blocks.{block}"
    name = f"{prefix}.attentions.0.transformer_blocks.0.{attn}.processor"
    return LayerInfo(name, place, side, side, cross)


# SD v1's ladder on a 64×64 latent: 64, 32, 16 down, 8 mid, 16, 32, 64 up
LADDER = [
    layer("down", 0, 64), layer("down", 0, 64, cross=False), layer("down", 1, 32),
    layer("down", 2, 16), layer("mid", 0, 8), layer("up", 1, 16), layer("up", 2, 32),
    layer("up", 3, 64),
]  # fmt: skip


@pytest.mark.parametrize(
    ("keep", "sides"),
    [
        ("auto", [16, 8, 16]),  # ≤ a quarter of 64
        ("all", [64, 32, 16, 8, 16, 32, 64]),  # every cross-attention layer, no self
        ("none", []),
        (32, [32, 16, 8, 16, 32]),
        ({64, 8}, [64, 8, 64]),
        ([16], [16, 16]),
    ],
)
def test_kept_layers_follow_the_setting(keep, sides):
    assert [each.side for each in kept_layers(LADDER, keep, 64)] == sides


def test_auto_keeps_every_layer_of_a_small_latent():
    small = [layer("down", 0, 16), layer("mid", 0, 4), layer("up", 1, 8)]
    assert kept_layers(small, "auto", 16) == small  # side ≤ 16 is always small enough


@pytest.mark.parametrize("keep", ["most", 0, -3, True, 16.0, [16, "8"], None])
def test_a_bad_record_setting_is_refused_once_with_the_choices(keep):
    with pytest.raises(ValueError, match=r"record=.*use 'auto', 'all', 'none'"):
        check_keep(keep)
    with pytest.raises(ValueError, match=r"record=.*use 'auto', 'all', 'none'"):
        keep_layer(LADDER[0], keep, 64)


def test_check_keep_gives_sides_as_a_set():
    assert check_keep([8, 16, 8]) == frozenset({8, 16}) and check_keep("auto") == "auto"


def test_blend_resolution_reads_down_and_up_layers():
    assert blend_resolution(LADDER, 64, None) == 16  # the largest side ≤ 64 / 4
    assert blend_resolution(LADDER, 64, 32) == 32
    with pytest.raises(ValueError, match=r"sides are \[16, 32, 64\].*resolution=None"):
        blend_resolution(LADDER, 64, 8)  # the mid block's 8×8 is not read
    assert blend_resolution([layer("down", 0, 8), layer("up", 1, 4)], 8, None) == 4
    with pytest.raises(ValueError, match="no down/up cross-attention"):
        blend_resolution([layer("mid", 0, 8)], 64, None)


def test_layer_place_reads_the_processor_name():
    assert [layer_place(each.name) for each in LADDER[:5]] == ["down"] * 4 + ["mid"]
    with pytest.raises(ValueError, match="cannot tell the place"):
        layer_place("text_encoder.layers.0")
