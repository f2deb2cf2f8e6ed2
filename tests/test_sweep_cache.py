"""The sweep cache: every setting that changes a picture is in the key, and nothing else runs."""

from __future__ import annotations

import gc

import pytest
import torch

from p2p_teach.sweep import SweepCache, config_hash, injection_sweep, sweep_key

SOURCE = "photo of a cat riding on a bicycle"
TARGET = "photo of a cat riding on a motorcycle"


def test_a_new_scheduler_misses_the_cache_and_the_cell_says_which_ran(pipe):
    from diffusers import DDIMScheduler

    original = pipe.scheduler
    cache = SweepCache()
    try:
        first = injection_sweep(pipe, SOURCE, TARGET, fractions=(0.0,), steps=2, cache=cache)
        assert first.cells[0.0].settings.scheduler == "PNDMScheduler"
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        second = injection_sweep(pipe, SOURCE, TARGET, fractions=(0.0,), steps=2, cache=cache)
        assert cache.misses == 2 and cache.hits == 0 and len(cache) == 2
        assert second.cells[0.0].settings.scheduler == "DDIMScheduler"
        pipe.scheduler = original  # back to the first: its cell comes from the cache
        third = injection_sweep(pipe, SOURCE, TARGET, fractions=(0.0,), steps=2, cache=cache)
        assert cache.hits == 1 and third.cells[0.0] is first.cells[0.0]
    finally:
        pipe.scheduler = original


def test_the_key_holds_the_scheduler_config_dtype_and_device(pipe):
    from diffusers import PNDMScheduler

    settings = {"seed": 0, "steps": 2, "guidance": 7.5, "cross": 0.8, "self_": 0.4}
    key = sweep_key(pipe, SOURCE, TARGET, **settings)
    assert key == sweep_key(pipe, SOURCE, TARGET, **settings)
    assert key.scheduler == "PNDMScheduler" and key.dtype == "torch.float32"
    assert key.device == "cpu"
    assert key.scheduler_config == config_hash(pipe.scheduler.config)  # stable, not hash()
    original = pipe.scheduler
    try:
        pipe.scheduler = PNDMScheduler.from_config(original.config, beta_end=0.02)
        assert sweep_key(pipe, SOURCE, TARGET, **settings) != key  # same class, new config
    finally:
        pipe.scheduler = original
    pipe.unet.to(torch.bfloat16)
    try:
        assert sweep_key(pipe, SOURCE, TARGET, **settings).dtype == "torch.bfloat16"
        assert sweep_key(pipe, SOURCE, TARGET, **settings) != key
    finally:
        pipe.unet.to(torch.float32)


class _Scheduler:
    config = {"beta_end": 0.012}


class _UNet:
    dtype = torch.float32
    device = torch.device("cpu")


class _Pipeline:
    """Just what a key reads: a name, a scheduler with a config, a UNet's dtype and device."""

    name_or_path = "p2p_teach/tiny-random"
    scheduler = _Scheduler()
    unet = _UNet()


def test_a_pipeline_that_is_gone_never_matches_one_that_reuses_its_id():
    settings = {"seed": 0, "steps": 2, "guidance": 7.5, "cross": 0.8, "self_": 0.4}
    old = _Pipeline()
    old_key = sweep_key(old, SOURCE, TARGET, **settings)
    old_id = id(old)
    hash(old_key)  # a dict would have hashed it while the pipeline lived
    assert old_key != sweep_key(_Pipeline(), SOURCE, TARGET, **settings)  # same name: differs
    del old
    gc.collect()
    alive = []  # CPython hands a freed object's memory to a later object of its size
    for _ in range(5000):
        alive.append(_Pipeline())
        if id(alive[-1]) == old_id:
            break
    else:
        pytest.skip("no new object reused the freed id")
    new = alive[-1]
    new_key = sweep_key(new, SOURCE, TARGET, **settings)
    assert new_key != old_key
    assert SweepCache(results={old_key: object()}).get(new_key) is None  # type: ignore[dict-item]


@pytest.mark.parametrize("name", ["cross_steps", "self_steps"])
def test_the_sweeps_own_settings_are_refused_in_edit_kwargs(pipe, name):
    with pytest.raises(TypeError, match=r"injection_sweep sets .* itself.*vary=.*fixed=") as error:
        injection_sweep(pipe, SOURCE, TARGET, steps=2, **{name: 0.5})
    assert name in str(error.value) and "multiple values" not in str(error.value)


def test_storing_a_cell_drops_the_cells_of_pipelines_that_are_gone():
    settings = {"seed": 0, "steps": 2, "guidance": 7.5, "cross": 0.8, "self_": 0.4}
    gone, kept = _Pipeline(), _Pipeline()
    cache = SweepCache()
    cache.put(sweep_key(gone, SOURCE, TARGET, **settings), "gone")  # type: ignore[arg-type]
    kept_key = sweep_key(kept, SOURCE, TARGET, **settings)
    cache.put(kept_key, "kept")  # type: ignore[arg-type]
    assert len(cache) == 2
    del gone
    gc.collect()
    new_key = sweep_key(kept, SOURCE, TARGET, **dict(settings, seed=1))
    cache.put(new_key, "new")  # type: ignore[arg-type]
    assert set(cache.results) == {kept_key, new_key}


def test_sweep_cells_record_no_attention_unless_asked_and_the_record_setting_is_keyed(pipe):
    cache = SweepCache()
    plain = injection_sweep(pipe, SOURCE, TARGET, fractions=(0.5,), steps=2, cache=cache)
    assert plain.cells[0.5].history is None  # images only: nothing recorded
    recorded = injection_sweep(pipe, SOURCE, TARGET, fractions=(0.5,), steps=2, cache=cache,
                               record="auto")  # fmt: skip
    assert cache.misses == 2 and cache.hits == 0  # the image-only cell did not answer
    assert recorded.cells[0.5].history is not None and recorded.cells[0.5].history.layers
    # the same edit (recording reads the probabilities, so the last bits may differ)
    torch.testing.assert_close(recorded.cells[0.5].latents, plain.cells[0.5].latents,
                               rtol=1e-4, atol=1e-4)  # fmt: skip
