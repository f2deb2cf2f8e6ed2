"""The shape classifier: a small CNN trained here, in seconds, on generated silhouettes."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from p2p_teach.shapes import data as shapes_data

from .readers import MIN_OBJECT_PIXELS, foreground, silhouette_crop


def build_classifier() -> torch.nn.Module:
    """A small CNN over (1, 32, 32) silhouettes, one output per shape."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(64 * 4 * 4, len(shapes_data.SHAPES)),
    )  # fmt: skip


def _single_object_silhouettes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    crops, labels = [], []
    for _ in range(n):
        position = list(shapes_data.POSITIONS)[rng.integers(5)]
        obj = shapes_data.make_object(rng, position)
        background = list(shapes_data.BACKGROUNDS)[rng.integers(3)]
        item = shapes_data.build_sample([obj], background)
        crops.append(silhouette_crop(foreground(item.image)))
        labels.append(shapes_data.SHAPES.index(obj.shape))
    return torch.stack(crops), torch.tensor(labels)  # (n, 1, 32, 32), (n,)


def train_shape_classifier(
    n_train: int = 2400, steps: int = 300, seed: int = 7
) -> tuple[torch.nn.Module, float]:
    """Train the classifier on generated silhouettes; returns it and its held-out accuracy."""
    torch.manual_seed(seed)
    crops, labels = _single_object_silhouettes(n_train, seed)
    test_crops, test_labels = _single_object_silhouettes(max(200, n_train // 4), seed + 1)
    classifier = build_classifier()
    optimizer = torch.optim.Adam(classifier.parameters(), lr=3e-3)
    for _ in range(steps):
        index = torch.randint(0, n_train, (64,))
        batch = crops[index]
        # augment: random dilation or erosion by one pixel, like a slightly fat or thin object
        choice = torch.rand(64)[:, None, None, None]
        dilated = F.max_pool2d(batch, 3, 1, 1)
        eroded = -F.max_pool2d(-batch, 3, 1, 1)
        batch = torch.where(choice < 0.2, dilated, torch.where(choice < 0.4, eroded, batch))
        loss = F.cross_entropy(classifier(batch), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    classifier.eval()
    with torch.no_grad():
        accuracy = (classifier(test_crops).argmax(1) == test_labels).float().mean().item()
    return classifier, accuracy


@torch.no_grad()
def classify_shape(classifier: torch.nn.Module, mask: np.ndarray) -> str | None:
    """Shape name for an object mask; None when the mask is (nearly) empty."""
    if mask.sum() < MIN_OBJECT_PIXELS:
        return None
    crop = silhouette_crop(mask)[None]  # (1, 1, 32, 32): a batch of one
    logits = classifier(crop)  # (1, shapes)
    return shapes_data.SHAPES[int(logits.argmax())]
