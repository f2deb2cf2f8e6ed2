"""Concentration of attention maps and layout similarity of images: hand-checked values."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from PIL import Image

from p2p_teach.measures import concentration, edge_strength, layout_similarity, top_k_mass
from p2p_teach.shapes import data as shapes_data


def test_concentration_is_zero_for_uniform_and_one_for_a_single_pixel():
    uniform = torch.ones(16, 16)
    peak = torch.zeros(16, 16)
    peak[3, 7] = 5.0
    assert concentration(uniform).item() == pytest.approx(0.0, abs=1e-12)
    assert concentration(peak).item() == pytest.approx(1.0)


def test_concentration_of_mass_on_a_quarter_is_exactly_half_at_16x16():
    # uniform on 64 of 256 pixels: H = log 64, so 1 − log 64 / log 256 = 1 − 6/8
    quarter = torch.zeros(16, 16)
    quarter[:8, :8] = 1.0
    assert concentration(quarter).item() == pytest.approx(1 - math.log(64) / math.log(256))
    assert concentration(quarter).item() == pytest.approx(0.25)


def test_concentration_ignores_scale_and_batches_over_leading_dims():
    rng = np.random.default_rng(0)
    maps = torch.from_numpy(rng.random((3, 5, 8, 8)))
    values = concentration(maps)
    assert values.shape == (3, 5)
    torch.testing.assert_close(concentration(maps * 7.5), values)
    # a sharper map (a power of the same map) is more concentrated
    assert bool((concentration(maps**4) > values).all())


def test_zero_maps_and_bad_input():
    assert concentration(torch.zeros(4, 4)).item() == 0.0
    assert top_k_mass(torch.zeros(10, 10), 0.1).item() == pytest.approx(0.1)
    with pytest.raises(ValueError, match="non-negative"):
        concentration(-torch.ones(4, 4))
    with pytest.raises(ValueError, match="shape"):
        concentration(torch.ones(4))
    with pytest.raises(ValueError, match="fraction"):
        top_k_mass(torch.ones(4, 4), 0.0)
    with pytest.raises(ValueError, match="NaN"):
        concentration(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))


def test_top_k_mass_hand_values():
    uniform = torch.ones(10, 10)
    assert top_k_mass(uniform, 0.1).item() == pytest.approx(0.1)
    half = torch.zeros(10, 10)
    half[0, :5] = 1.0  # all the mass in 5 pixels
    assert top_k_mass(half, 0.1).item() == pytest.approx(1.0)  # top 10 pixels hold all
    assert top_k_mass(half, 0.03).item() == pytest.approx(3 / 5)  # top 3 of 5 equal pixels


def _blob_image(center: tuple[int, int], size: int = 64) -> Image.Image:
    yy, xx = np.mgrid[:size, :size]
    blob = np.exp(-((yy - center[0]) ** 2 + (xx - center[1]) ** 2) / (2 * 6.0**2))
    rgb = np.stack([blob * 0.9, blob * 0.5, blob * 0.2], axis=-1)  # (H, W, 3)
    return Image.fromarray((rgb * 255).astype(np.uint8))


def test_layout_similarity_is_one_for_the_same_layout_in_another_colour():
    image = _blob_image((20, 40))
    recoloured = Image.fromarray(255 - np.asarray(image)[..., ::-1])  # inverted, channels swapped
    assert layout_similarity(image, image) == pytest.approx(1.0)
    brighter = Image.fromarray(np.clip(np.asarray(image).astype(int) + 40, 0, 255).astype(np.uint8))
    assert layout_similarity(image, brighter) > 0.99
    assert layout_similarity(image, recoloured) > 0.99  # dark turned light: the edges stay


def test_a_flat_shape_recoloured_dark_to_light_keeps_its_layout():
    # the built-in model's lesson: a red circle turned cyan on gray; its brightness inverts
    # against the background (red is darker than gray, cyan lighter), its outline does not
    red = shapes_data.ShapeObject("circle", "red", "big", "left", (17.0, 32.0), 13.0)
    cyan = dataclasses.replace(red, colour="cyan")
    moved = dataclasses.replace(red, centre=(47.0, 32.0), position="right")
    image, recoloured, elsewhere = (
        shapes_data.build_sample([obj], "gray").image for obj in (red, cyan, moved)
    )
    assert layout_similarity(image, recoloured) > 0.95
    assert layout_similarity(image, elsewhere) < 0.2


def test_edge_strength_is_the_colour_gradient_magnitude():
    step = np.zeros((8, 8, 3))
    step[:, 4:] = (0.6, 0.0, 0.8)  # a vertical edge between columns 3 and 4
    edges = edge_strength(step).numpy()  # (6, 6): the interior, columns 1–6 of the image
    assert edges.shape == (6, 6)
    # central differences: half the jump on each side of the edge, in every channel at once
    expected = np.hypot(0.3, 0.4)
    assert np.allclose(edges[:, [2, 3]], expected) and np.allclose(edges[:, [0, 1, 4, 5]], 0.0)
    assert np.allclose(edge_strength(step[..., 2]).numpy()[:, 2], 0.4)  # grayscale input


def test_layout_similarity_falls_as_the_object_moves():
    base = _blob_image((32, 16))
    near = _blob_image((32, 22))
    far = _blob_image((32, 50))
    assert 1.0 > layout_similarity(base, near) > layout_similarity(base, far)
    assert layout_similarity(base, far) < 0.2


def test_layout_similarity_of_unrelated_noise_is_near_zero_and_flat_images():
    rng = np.random.default_rng(1)
    noise_a = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    noise_b = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    assert abs(layout_similarity(noise_a, noise_b, grid=16)) < 0.2
    flat = np.full((32, 32), 0.5)
    assert layout_similarity(flat, flat) == 1.0
    assert layout_similarity(flat, np.full((32, 32), 0.2)) == 0.0
    assert layout_similarity(flat, noise_a) == 0.0


def test_an_image_reads_the_same_as_pil_uint8_hwc_array_or_chw_tensor():
    step = np.zeros((8, 8, 3), dtype=np.uint8)
    step[:, 4:] = (153, 0, 204)  # the 0.6 / 0 / 0.8 edge in 0–255
    reference = edge_strength(Image.fromarray(step)).numpy()
    assert np.allclose(reference[:, 2], np.hypot(0.3, 0.4))
    as_float = step.astype(np.float64) / 255.0
    chw = torch.from_numpy(as_float).permute(2, 0, 1)  # (3, H, W), as torchvision gives
    for other in (step, as_float, torch.from_numpy(as_float), chw, chw.requires_grad_()):
        assert np.allclose(edge_strength(other).numpy(), reference)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        edge_strength(np.zeros((8, 8, 4)))
