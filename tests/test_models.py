"""Pipelines from a built-in name, a folder, a hub id (offline: a clear error) or an object."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline

from p2p_teach.defaults import SD_V1, model_defaults
from p2p_teach.models import (
    BUILTIN_MODELS,
    ModelNotAvailableError,
    choose_dtype,
    describe_pipeline,
    load_pipeline,
)
from p2p_teach.shapes import GUIDANCE as SHAPES_GUIDANCE
from p2p_teach.shapes import SELF_STEPS as SHAPES_SELF_STEPS
from p2p_teach.tokens import load_clip_tokenizer


@pytest.fixture(scope="module")
def tiny():
    return load_pipeline("tiny-random", verbose=False)


def _weights(pipe) -> list[torch.Tensor]:
    return [p.detach().clone() for p in pipe.unet.parameters()]


def test_builtin_is_a_plain_sd_pipeline(tiny):
    assert type(tiny) is StableDiffusionPipeline
    assert tiny.safety_checker is None and tiny.feature_extractor is None
    assert tiny.tokenizer.model_max_length == 77 and len(tiny.tokenizer) == 49408
    assert tiny.vae_scale_factor * tiny.unet.config.sample_size == 64
    assert tiny.unet.device.type == "cpu" and tiny.unet.dtype == torch.float32
    assert model_defaults(tiny).builtin == "tiny-random"
    cross = [k for k in tiny.unet.attn_processors if k.endswith("attn2.processor")]
    assert len(cross) == 7  # 2 down, 1 mid, 4 up cross-attention layers


def test_builtin_is_deterministic_per_seed(tiny):
    again = load_pipeline("tiny-random", seed=0, verbose=False)
    other = load_pipeline("tiny-random", seed=1, verbose=False)
    assert all(torch.equal(a, b) for a, b in zip(_weights(tiny), _weights(again)))
    assert not all(torch.equal(a, b) for a, b in zip(_weights(tiny), _weights(other)))


def test_builtin_does_not_touch_the_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load_pipeline("tiny-random", verbose=False)
    assert torch.equal(torch.rand(3), expected)


def test_builtin_generates_images(tiny):
    generator = torch.Generator().manual_seed(0)
    images = tiny(
        ["a cat", "a dog"], num_inference_steps=2, generator=generator, output_type="np"
    ).images
    assert images.shape == (2, 64, 64, 3) and np.isfinite(images).all()


def test_load_pipeline_says_which_model_runs(capsys):
    load_pipeline("tiny-random")
    line = capsys.readouterr().out.strip()
    assert line.startswith("p2p_teach: built-in offline model 'tiny-random'")
    assert "RANDOM weights" in line and "cpu, float32" in line


def test_default_is_the_shipped_shapes_model(capsys):
    pipe = load_pipeline()
    line = capsys.readouterr().out.strip()
    assert line.startswith("p2p_teach: built-in offline model 'shapes'")
    assert "trained on 64×64 pictures" in line and "cpu, float32" in line
    assert model_defaults(pipe).builtin == "shapes" and type(pipe) is StableDiffusionPipeline
    assert pipe.unet.dtype == torch.float32  # stored in fp16, computed in fp32 on the CPU
    assert load_pipeline("builtin", verbose=False).unet.config == pipe.unet.config


def test_each_model_runs_at_its_own_guidance_unless_told(tiny):
    from p2p_teach import edit
    from p2p_teach.widgets import EditRunner

    shapes = load_pipeline(verbose=False)
    assert model_defaults(shapes).guidance == SHAPES_GUIDANCE
    assert 1.0 < SHAPES_GUIDANCE < SD_V1.guidance
    assert model_defaults(tiny).guidance == SD_V1.guidance == 7.5
    prompts = ("a big red circle on the left", "a big blue circle on the left")
    ran = edit(shapes, *prompts, steps=2, record="none", progress=False)
    assert ran.settings.guidance == SHAPES_GUIDANCE
    told = edit(shapes, *prompts, steps=2, guidance=7.5, record="none", progress=False)
    assert told.settings.guidance == 7.5
    assert EditRunner(shapes, *prompts, threaded=False).guidance_slider.value == SHAPES_GUIDANCE


def test_each_model_injects_self_attention_in_its_own_layers_unless_told(tiny):
    from p2p_teach import edit
    from p2p_teach.schedules import DEFAULT_SELF_RATIO
    from p2p_teach.shapes import SELF_MAX_RATIO

    shapes = load_pipeline(verbose=False)
    assert model_defaults(shapes).self_max_ratio == SELF_MAX_RATIO == 1.0
    assert model_defaults(tiny).self_max_ratio == DEFAULT_SELF_RATIO == 0.25
    prompts = ("a big red circle on the left", "a big blue circle on the left")
    ran = edit(shapes, *prompts, steps=5, record="none", progress=False)  # self: steps 1–2
    assert ran.settings.self_max_side == 16  # every layer of the 16×16 latent
    told = edit(shapes, *prompts, steps=5, self_max_ratio=0.25, record="none", progress=False)
    assert told.settings.self_max_side == 4
    # self-attention injected in the 16×16 and 8×8 layers changes the edit
    assert not torch.equal(ran.latents[1], told.latents[1])
    torch.testing.assert_close(ran.latents[0], told.latents[0])  # the source never changes


def test_each_model_injects_self_attention_over_its_own_steps_unless_told(tiny):
    from p2p_teach import edit
    from p2p_teach.schedules import DEFAULT_SELF_STEPS, window_steps
    from p2p_teach.shapes import SELF_STEPS
    from p2p_teach.widgets import EditRunner

    shapes = load_pipeline(verbose=False)
    assert model_defaults(shapes).self_steps == SELF_STEPS == 0.6
    assert model_defaults(tiny).self_steps == DEFAULT_SELF_STEPS == 0.4
    prompts = ("a big red circle", "a big blue circle")
    ran = edit(shapes, *prompts, steps=5, record="none", progress=False)
    assert ran.settings.self_steps == (0.0, 0.6)
    assert list(window_steps((0.0, 0.6), 5)) == [0, 1, 2]  # one step more than 0.4's
    told = edit(shapes, *prompts, steps=5, self_steps=0.4, record="none", progress=False)
    assert told.settings.self_steps == (0.0, 0.4)
    assert not torch.equal(ran.latents[1], told.latents[1])  # the third step's injection counts
    torch.testing.assert_close(ran.latents[0], told.latents[0])  # the source never changes
    on_tiny = edit(tiny, "a cat", "a dog", steps=2, record="none", progress=False)
    assert on_tiny.settings.self_steps == (0.0, 0.4)
    assert EditRunner(shapes, *prompts, threaded=False).self_slider.value == SELF_STEPS
    assert EditRunner(tiny, threaded=False).self_slider.value == DEFAULT_SELF_STEPS


def test_defaults_go_with_the_unet_not_the_name(tiny):
    shapes = load_pipeline(verbose=False)
    assert model_defaults(shapes).builtin == "shapes"
    assert model_defaults(shapes.to("cpu", torch.float32)).guidance == SHAPES_GUIDANCE
    rebuilt = StableDiffusionPipeline(**shapes.components)  # built by hand around its UNet
    assert model_defaults(rebuilt).guidance == SHAPES_GUIDANCE
    rebuilt.register_to_config(_name_or_path="my-model")  # a name does not change them
    assert model_defaults(rebuilt).self_steps == SHAPES_SELF_STEPS
    other = StableDiffusionPipeline(**{**shapes.components, "unet": tiny.unet})
    assert model_defaults(other) == model_defaults(tiny) and model_defaults(other).guidance == 7.5
    assert model_defaults(object()) == SD_V1  # anything never marked runs at SD v1's


def test_pipeline_object_passes_through(tiny):
    assert load_pipeline(tiny, verbose=False) is tiny


def test_pipeline_object_is_moved_only_when_asked(tiny):
    moved = load_pipeline(tiny, dtype=torch.bfloat16, verbose=False)
    try:
        assert moved.unet.dtype == torch.bfloat16
    finally:
        tiny.to(dtype=torch.float32)


def test_local_folder_round_trip(tiny, tmp_path):
    tiny.save_pretrained(tmp_path / "saved")
    loaded = load_pipeline(str(tmp_path / "saved"), verbose=False)
    assert type(loaded) is StableDiffusionPipeline
    assert all(torch.equal(a, b) for a, b in zip(_weights(tiny), _weights(loaded)))
    assert "saved" in describe_pipeline(loaded)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotAvailableError, match="is not a folder"):
        load_pipeline(str(tmp_path / "nowhere"), verbose=False)


def test_hub_id_offline_says_how_to_get_it(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError) as error:
        load_pipeline("stable-diffusion-v1-5/stable-diffusion-v1-5", verbose=False)
    message = str(error.value)
    assert "hf download stable-diffusion-v1-5/stable-diffusion-v1-5" in message
    assert "load_pipeline('builtin') runs offline" in message


def test_wrong_type_is_rejected():
    with pytest.raises(TypeError, match="must be a name, a folder, a hub id or a pipeline"):
        load_pipeline(42, verbose=False)


def test_builtin_uses_the_real_tokenizer(tiny):
    reference = load_clip_tokenizer()
    prompt = "A hippopotamus eating"
    assert tiny.tokenizer(prompt).input_ids == reference(prompt).input_ids
    assert set(BUILTIN_MODELS) >= {"tiny-random", "shapes"}


# ---------------------------------------------------------------- dtype, devices, offload


@pytest.mark.parametrize(
    ("device", "dtype", "expected"),
    [
        ("cuda", None, torch.float16),
        ("cuda:1", None, torch.float16),
        (torch.device("cuda", 0), None, torch.float16),
        ("cpu", None, torch.float32),
        ("cuda", torch.bfloat16, torch.bfloat16),  # a dtype you give wins
        ("cpu", torch.float16, torch.float16),
    ],
)
def test_dtype_choice_is_fp16_on_cuda_and_fp32_elsewhere(device, dtype, expected):
    assert choose_dtype(device, dtype) == expected


@pytest.mark.parametrize("name", ["tiny-random", "shapes", "builtin"])
def test_builtin_models_run_in_fp16_on_cuda(monkeypatch, tiny, name):
    from p2p_teach import models

    asked = {}

    def move(pipe, device, dtype):
        asked.update(device=device, dtype=dtype)
        return pipe

    for builtin, model in list(models.BUILTIN_MODELS.items()):
        monkeypatch.setitem(models.BUILTIN_MODELS, builtin, replace(model, build=lambda seed: tiny))
    monkeypatch.setattr(models, "_move", move)
    load_pipeline(name, device="cuda", verbose=False)
    assert asked == {"device": torch.device("cuda"), "dtype": torch.float16}
    load_pipeline(name, device="cpu", verbose=False)
    assert asked["dtype"] == torch.float32


def test_devices_compare_as_torch_devices():
    from p2p_teach.models import same_device

    assert same_device("cpu", torch.device("cpu"))
    assert same_device("cuda:0", "cuda:0") and not same_device("cuda:0", "cuda:1")
    assert not same_device("cpu", "cuda:0")
    if not torch.cuda.is_available():  # "cuda" is CUDA device 0 unless set otherwise
        assert same_device("cuda", "cuda:0") and not same_device("cuda", "cuda:1")


def test_a_pipeline_on_its_device_is_not_moved(tiny, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("moved")

    monkeypatch.setattr(tiny, "to", refuse)
    assert load_pipeline(tiny, device="cpu", dtype=torch.float32, verbose=False) is tiny
    assert load_pipeline(tiny, device=torch.device("cpu", 0), verbose=False) is tiny


def test_an_offloaded_pipeline_is_not_moved(tiny, monkeypatch):
    from p2p_teach.models import is_offloaded

    def refuse(*args, **kwargs):  # .to() on a sequentially offloaded pipeline raises
        raise ValueError("It seems like you have activated sequential model offloading")

    assert not is_offloaded(tiny)
    monkeypatch.setattr(tiny, "to", refuse)
    monkeypatch.setattr(tiny.unet, "_hf_hook", object(), raising=False)  # as accelerate sets
    assert is_offloaded(tiny)
    assert load_pipeline(tiny, device="cuda", verbose=False) is tiny
    with pytest.raises(ValueError, match="CPU offload enabled.*Fix: load it in the dtype"):
        load_pipeline(tiny, dtype=torch.float16, verbose=False)


# ---------------------------------------------------------------- hub errors


def _hub_error(kind: str, message: str) -> Exception:
    """A huggingface_hub error as the installed version builds one (it needs a response)."""
    import importlib

    from huggingface_hub import errors

    cls = getattr(errors, kind)
    response_cls = getattr(errors, "Response", None)
    url = "https://huggingface.co/api/models/someone/sd-typo"
    if response_cls is not None:  # httpx-style: Response(status, request=Request(...))
        http = importlib.import_module(response_cls.__module__.split(".")[0])
        response = http.Response(404, request=http.Request("GET", url))
    else:  # requests-style (older huggingface_hub)
        import requests

        response = requests.Response()
        response.status_code, response.url = 404, url
    return cls(message, response=response)


@pytest.mark.parametrize(
    ("kind", "wrapped", "expected"),
    [
        ("RepositoryNotFoundError", False, r"no such model.*Fix: check the id.*hf auth login"),
        ("RepositoryNotFoundError", True, r"no such model.*Fix: check the id"),
        ("GatedRepoError", False, r"gated model.*accept the licence.*`hf auth login`"),
        ("GatedRepoError", True, r"gated model.*accept the licence.*`hf auth login`"),
    ],
)
def test_a_wrong_or_gated_hub_id_says_so(monkeypatch, kind, wrapped, expected):
    hub_error = _hub_error(kind, "404 Client Error: Repository Not Found")
    assert isinstance(hub_error, OSError)

    def from_pretrained(*args, **kwargs):
        if not wrapped:
            raise hub_error
        # diffusers re-raises the model_info error as an OSError from it
        raise OSError("Cannot load model someone/sd-typo: not fully cached") from hub_error

    monkeypatch.setattr(StableDiffusionPipeline, "from_pretrained", from_pretrained)
    with pytest.raises(ModelNotAvailableError, match=expected) as error:
        load_pipeline("someone/sd-typo", device="cpu", verbose=False)
    assert "not in the local Hugging Face cache" not in str(error.value)


def test_other_hub_failures_name_the_error(monkeypatch):
    def from_pretrained(*args, **kwargs):
        raise OSError("disk quota exceeded while writing the cache")

    monkeypatch.setattr(StableDiffusionPipeline, "from_pretrained", from_pretrained)
    with pytest.raises(ModelNotAvailableError, match="OSError: disk quota exceeded"):
        load_pipeline("someone/sd", device="cpu", verbose=False)


# ---------------------------------------------------------------- loading stays quiet


def test_loading_hides_known_irrelevant_messages_only_while_it_runs():
    import logging

    from p2p_teach.models import _quiet_loading

    noise = "`CLIPImageProcessor` requires torchvision (not installed); falling back to `X`"
    log = logging.getLogger("transformers.utils.import_utils")
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    log.addHandler(handler)
    filters = list(log.filters)
    try:
        with _quiet_loading():
            log.warning(noise)
            log.warning("Some weights were not initialized")  # relevant: still shown
        log.warning(noise)  # outside load_pipeline: untouched
    finally:
        log.removeHandler(handler)
    assert seen == ["Some weights were not initialized", noise]
    assert log.filters == filters


def test_loading_the_builtin_model_prints_only_which_model_runs():
    import subprocess
    import sys

    code = "from p2p_teach.models import load_pipeline; load_pipeline('tiny-random')"
    result = subprocess.run(
        [sys.executable, "-W", "always", "-c", code], capture_output=True, text=True, check=True
    )
    assert "requires torchvision" not in result.stderr, result.stderr
    assert result.stdout.startswith("p2p_teach: built-in offline model 'tiny-random'")
