"""Fixtures shared by the tests that run the built-in model: one torch thread, a tiny pipeline.

``pipe`` is the fast random-weight model ``"tiny-random"`` by name (not ``"builtin"``, whose
default may become a trained model), built afresh for every test module as each module had it.
"""

from __future__ import annotations

import pytest
import torch

from p2p_teach.models import load_pipeline


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "cuda: needs a CUDA GPU (skipped without one; benchmarks/gpu_check.sh runs them)"
    )


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """The built-in model's ops are tiny: one thread is faster, and avoids OpenMP threads
    spin-waiting for each other on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pipe(one_thread):
    """A fresh tiny random-weight Stable Diffusion pipeline for each test module."""
    return load_pipeline("tiny-random", verbose=False)
