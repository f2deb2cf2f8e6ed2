"""The pipeline tour: component data, the prompt's trip with shapes, the diagram, the widget."""

from __future__ import annotations

import pytest
import torch

from p2p_teach.figures.images import figure_png
from p2p_teach.figures.tour import pipeline_diagram
from p2p_teach.tour import (
    SLIDE_COMPONENTS,
    components_html,
    components_table,
    encode_prompt_with_shapes,
    flow_shapes,
    pipeline_components,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_seven_components_in_flow_order_with_presence(pipe):
    infos = pipeline_components(pipe)
    assert [info.name for info in infos] == list(SLIDE_COMPONENTS)
    assert set(SLIDE_COMPONENTS) == {
        "tokenizer",
        "text_encoder",
        "vae",
        "scheduler",
        "unet",
        "safety_checker",
        "feature_extractor",
    }
    by_name = {info.name: info for info in infos}
    # the built-in model ships without the safety screen
    assert not by_name["safety_checker"].present and by_name["safety_checker"].class_name is None
    assert not by_name["feature_extractor"].present
    assert by_name["tokenizer"].class_name == "CLIPTokenizer"
    assert by_name["text_encoder"].class_name == "CLIPTextModel"
    assert by_name["text_encoder"].library == "transformers"
    assert by_name["unet"].class_name == "UNet2DConditionModel"
    assert by_name["unet"].library == "diffusers"
    assert by_name["vae"].class_name == "AutoencoderKL"
    assert by_name["scheduler"].class_name == type(pipe.scheduler).__name__


def test_parameter_counts_and_config_values_come_from_the_modules(pipe):
    by_name = {info.name: info for info in pipeline_components(pipe)}
    for name in ("unet", "vae", "text_encoder"):
        module = getattr(pipe, name)
        assert by_name[name].n_parameters == sum(p.numel() for p in module.parameters())
    assert by_name["scheduler"].n_parameters is None  # no weights
    assert by_name["tokenizer"].n_parameters is None
    assert by_name["tokenizer"].config["model_max_length"] == "77"
    assert by_name["tokenizer"].config["vocab_size"] == "49408"
    assert by_name["text_encoder"].config["hidden_size"] == str(
        pipe.text_encoder.config.hidden_size
    )
    assert by_name["unet"].config["cross_attention_dim"] == str(
        pipe.unet.config.cross_attention_dim
    )
    assert by_name["scheduler"].config["num_train_timesteps"] == "1000"


def test_a_present_feature_extractor_is_reported(pipe):
    from transformers import CLIPImageProcessor

    original = pipe.feature_extractor
    pipe.feature_extractor = CLIPImageProcessor()
    try:
        info = {i.name: i for i in pipeline_components(pipe)}["feature_extractor"]
        shapes = flow_shapes(pipe)
    finally:
        pipe.feature_extractor = original
    assert info.present and info.class_name.startswith("CLIPImageProcessor")
    assert info.n_parameters is None
    assert "crop_size" in info.config
    assert shapes["clip_input"] == "pixel_values\n(1, 3, 224, 224)"


def test_text_renderers_list_every_component(pipe):
    infos = pipeline_components(pipe)
    table = components_table(infos)
    page = components_html(infos)
    for name in SLIDE_COMPONENTS:
        assert name in table
        assert f"pipe.{name}" in page
    assert page.count("absent (None)") == 2
    assert page.count('class="p2p-present"') == 5


def test_prompt_encoding_has_the_dictionary_and_the_object_with_shapes(pipe):
    encoding = encode_prompt_with_shapes(pipe, "photo of a cat riding on a bicycle")
    hidden = pipe.text_encoder.config.hidden_size
    assert encoding.tokenizer_output_type == "BatchEncoding"
    assert encoding.text_encoder_output_type == "BaseModelOutputWithPooling"
    assert encoding.shapes() == {
        "input_ids": (1, 77),
        "attention_mask": (1, 77),
        "last_hidden_state": (1, 77, hidden),
        "pooler_output": (1, hidden),
    }
    # BOS photo of a cat riding on a bicycle EOS
    assert encoding.n_used == 10
    assert encoding.input_ids[0, 0].item() == 49406
    assert encoding.input_ids[0, 9:].eq(49407).all()
    assert encoding.pieces[8] == "bicycle</w>"
    assert not encoding.truncated
    # the same vectors the pipeline itself would compute
    with torch.no_grad():
        expected = pipe.text_encoder(encoding.input_ids)[0]
    torch.testing.assert_close(encoding.last_hidden_state, expected)
    summary = encoding.summary()
    assert "BatchEncoding (a dictionary)" in summary
    assert ".last_hidden_state: shape (1, 77, " in summary


def test_too_long_prompt_is_reported_as_truncated(pipe):
    encoding = encode_prompt_with_shapes(pipe, " ".join(["cat"] * 90))
    assert encoding.truncated
    assert encoding.n_tokens_untruncated == 92
    assert "TRUNCATED" in encoding.summary()
    with pytest.raises(TypeError, match="string"):
        encode_prompt_with_shapes(pipe, 42)  # type: ignore[arg-type]


def test_flow_shapes_follow_the_configs(pipe):
    shapes = flow_shapes(pipe)
    side = pipe.unet.config.sample_size
    assert shapes["latents"] == f"latents\n(1, 4, {side}, {side})"
    assert shapes["image"] == f"image {side * 4}×{side * 4}×3"  # the tiny VAE has factor 4
    assert "clip_input" not in shapes  # no feature extractor


def test_diagram_draws_absent_components_dashed(pipe):
    figure = pipeline_diagram(pipeline_components(pipe), flow_shapes(pipe))
    texts = [text.get_text() for text in figure.axes[0].texts]
    assert any(t.startswith("unet\nUNet2DConditionModel") for t in texts)
    assert sum("absent (None)" in t for t in texts) == 2
    dashed = [p for p in figure.axes[0].patches if p.get_linestyle() == "--"]
    assert len(dashed) == 2
    assert figure_png(figure).startswith(PNG_MAGIC)


def test_tour_widget_encodes_typed_prompts(pipe):
    from p2p_teach.widgets.tour import PipelineTour

    tour = PipelineTour(pipe, prompt="a cat")
    assert tour.encoding is not None and tour.encoding.n_used == 4
    assert bytes(tour.diagram_image.value).startswith(PNG_MAGIC)
    assert "p2p-tour" in tour._dom_classes
    tour.prompt_text.value = "A lion eating"  # typing + Enter re-encodes
    assert tour.encoding.prompt == "A lion eating"
    assert "lion&lt;/w&gt;" in tour.encoding_view.value
    assert tour.status.value == "encoded: 5 of 77 slots used"
    tour.prompt_text.value = " ".join(["dog"] * 80)
    tour.encode_button.click()
    assert tour.status.value.endswith("(TRUNCATED)")
