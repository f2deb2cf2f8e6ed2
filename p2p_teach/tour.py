"""A tour of a diffusers ``StableDiffusionPipeline``: its seven components and one prompt's trip.

The recitation's "Diffuser API" slides say a pipeline is loaded from a model id and holds seven
components: tokenizer, text encoder, VAE, scheduler, UNet, safety checker and feature
extractor. :func:`pipeline_components` lists them as plain data (present or absent, class, key
config values, parameter count), and :func:`encode_prompt_with_shapes` follows one prompt
through the tokenizer (its output is a dictionary) and the text encoder (its output is an
object), recording every shape. Nothing here draws; the renderers are
:func:`components_table`, :func:`components_html` and :func:`p2p_teach.figures.tour`.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from .models import count_parameters
from .tokens import MAX_SLOTS

# The order a prompt meets them: text in, image out, then the optional safety screen.
SLIDE_COMPONENTS: tuple[str, ...] = (
    "tokenizer",
    "text_encoder",
    "unet",
    "scheduler",
    "vae",
    "safety_checker",
    "feature_extractor",
)

COMPONENT_ROLES: dict[str, str] = {
    "tokenizer": "splits the prompt into CLIP's 77 slots of token ids; its output is a dictionary",
    "text_encoder": "turns the 77 ids into 77 vectors the UNet attends to; its output is an object",
    "unet": "predicts the noise in the latents, attending to the text vectors (cross-attention)",
    "scheduler": "turns each noise prediction into the next, less noisy latents",
    "vae": "decodes the final latents into pixels (and encodes images into latents)",
    "safety_checker": "screens generated images against harmful content",
    "feature_extractor": "prepares generated images for the safety checker (CLIP image input)",
}

# Config keys worth reading for each component; keys a class lacks are skipped.
_CONFIG_KEYS: dict[str, tuple[str, ...]] = {
    "text_encoder": (
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "max_position_embeddings",
    ),
    "unet": (
        "sample_size",
        "in_channels",
        "block_out_channels",
        "down_block_types",
        "up_block_types",
        "cross_attention_dim",
        "attention_head_dim",
    ),
    "scheduler": (
        "num_train_timesteps",
        "beta_schedule",
        "beta_start",
        "beta_end",
        "prediction_type",
        "timestep_spacing",
        "steps_offset",
        "skip_prk_steps",
    ),
    "vae": (
        "sample_size",
        "in_channels",
        "latent_channels",
        "block_out_channels",
        "scaling_factor",
    ),
    "safety_checker": ("projection_dim",),
    "feature_extractor": ("size", "crop_size", "image_mean", "image_std"),
}


@dataclass(frozen=True)
class ComponentInfo:
    """One pipeline component as plain data: what it is, whether it is there, how big it is."""

    name: str  # the attribute name, e.g. "text_encoder"
    present: bool
    class_name: str | None  # e.g. "CLIPTextModel"; None when absent
    library: str | None  # top-level package of the class, e.g. "transformers"
    role: str  # one line on what it does in the pipeline
    config: dict[str, str] = field(default_factory=dict)  # key → value, as short text
    n_parameters: int | None = None  # None for components without weights (and absent ones)

    @property
    def parameters_text(self) -> str:
        """The parameter count for people: ``'1.47M'``, ``'—'`` without weights."""
        return "—" if self.n_parameters is None else _human_count(self.n_parameters)


def _human_count(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    if isinstance(value, (list, tuple)):
        text = "(" + ", ".join(str(v) for v in value) + ")"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _config_of(name: str, component: Any) -> dict[str, str]:
    """The key config values of one component, as short text."""
    if name == "tokenizer":
        return {
            "vocab_size": _short(len(component)),
            "model_max_length": _short(component.model_max_length),
            "padding_side": _short(component.padding_side),
            "bos_token": _short(component.bos_token),
            "eos_token": _short(component.eos_token),
            "pad_token": _short(component.pad_token),
        }
    config: Mapping[str, Any] | None = getattr(component, "config", None)
    if config is None and hasattr(component, "to_dict"):  # image processors
        config = component.to_dict()
    if config is None:
        return {}
    if not isinstance(config, Mapping):  # transformers configs are objects, not mappings
        config = config.to_dict()
    return {key: _short(config[key]) for key in _CONFIG_KEYS.get(name, ()) if key in config}


def pipeline_components(pipe: Any) -> list[ComponentInfo]:
    """The seven components the slides list, in the order a prompt meets them.

    Each is marked present or absent (the built-in models and many fine-tunes ship without a
    safety checker and feature extractor), with its class, the library that defines the class,
    key config values and its parameter count (None for components without weights).
    """
    infos = []
    for name in SLIDE_COMPONENTS:
        component = getattr(pipe, name, None)
        if component is None:
            infos.append(ComponentInfo(name, False, None, None, COMPONENT_ROLES[name]))
            continue
        cls = type(component)
        n_parameters = (
            count_parameters(component) if isinstance(component, torch.nn.Module) else None
        )
        infos.append(
            ComponentInfo(
                name=name,
                present=True,
                class_name=cls.__name__,
                library=cls.__module__.split(".")[0],
                role=COMPONENT_ROLES[name],
                config=_config_of(name, component),
                n_parameters=n_parameters,
            )
        )
    return infos


def components_table(components: list[ComponentInfo]) -> str:
    """The components as a plain text table: name, present, class, parameters, key config."""
    lines = [f"{'component':<18} {'present':<8} {'class':<30} {'parameters':>10}"]
    for info in components:
        lines.append(
            f"{info.name:<18} {'yes' if info.present else 'no':<8} "
            f"{(info.class_name or '—'):<30} {info.parameters_text:>10}"
        )
        for key, value in info.config.items():
            lines.append(f"{'':<20}{key} = {value}")
    return "\n".join(lines)


def components_html(components: list[ComponentInfo]) -> str:
    """The components as an HTML table (for ipywidgets.HTML or ``IPython.display.HTML``)."""
    rows = []
    for info in components:
        status = (
            '<span class="p2p-present" style="color:#1a7f37">present</span>'
            if info.present
            else '<span class="p2p-absent" style="color:#b35900">absent (None)</span>'
        )
        config = "<br>".join(
            f"<code>{html.escape(key)}</code> = {html.escape(value)}"
            for key, value in info.config.items()
        )
        class_text = (
            f"<code>{html.escape(info.class_name)}</code> <small>({html.escape(info.library)})"
            "</small>"
            if info.class_name and info.library
            else "—"
        )
        rows.append(
            "<tr>"
            f"<td><b><code>pipe.{html.escape(info.name)}</code></b><br>"
            f"<small>{html.escape(info.role)}</small></td>"
            f"<td>{status}</td><td>{class_text}</td>"
            f"<td style='text-align:right'>{html.escape(info.parameters_text)}</td>"
            f"<td><small>{config}</small></td>"
            "</tr>"
        )
    header = (
        "<tr><th>component</th><th>present</th><th>class</th><th>parameters</th>"
        "<th>key config</th></tr>"
    )
    return (
        '<table class="p2p-components" style="border-collapse:collapse;text-align:left">'
        f"{header}{''.join(rows)}</table>"
    )


# --------------------------------------------------------------------------------------------
# One prompt through the tokenizer and the text encoder
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptEncoding:
    """One prompt's trip through the tokenizer and the text encoder, with every shape."""

    prompt: str
    tokenizer_output_type: str  # "BatchEncoding": a dict subclass
    tokenizer_output: dict[str, torch.Tensor]  # input_ids, attention_mask: (1, 77) each
    text_encoder_output_type: str  # e.g. "BaseModelOutputWithPooling": an object
    text_encoder_output: dict[str, torch.Tensor]  # last_hidden_state (1, 77, hidden), …
    pieces: tuple[str, ...]  # the 77 slots as vocabulary entries
    n_tokens_untruncated: int  # BOS + pieces + EOS before truncation to 77

    @property
    def truncated(self) -> bool:
        """True when the prompt needed more than 77 slots and the tokenizer cut it."""
        return self.n_tokens_untruncated > len(self.pieces)

    @property
    def input_ids(self) -> torch.Tensor:
        return self.tokenizer_output["input_ids"]

    @property
    def last_hidden_state(self) -> torch.Tensor:
        """What the UNet's cross-attention reads: one vector per slot, (1, 77, hidden)."""
        return self.text_encoder_output["last_hidden_state"]

    @property
    def n_used(self) -> int:
        """Slots holding BOS, the prompt's pieces and EOS; the rest is padding."""
        return int(self.tokenizer_output["attention_mask"].sum())

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Every field of both outputs with its shape, e.g. ``'input_ids': (1, 77)``."""
        fields = {**self.tokenizer_output, **self.text_encoder_output}
        return {name: tuple(value.shape) for name, value in fields.items()}

    def summary(self) -> str:
        """Both outputs as text: type, fields and shapes, and what each dimension means."""
        hidden = self.last_hidden_state.shape[-1]
        ids = self.input_ids[0].tolist()
        shown = ", ".join(str(i) for i in ids[: self.n_used])
        lines = [
            f"prompt: {self.prompt!r}",
            f"tokenizer(prompt, padding='max_length', max_length={MAX_SLOTS}, truncation=True, "
            "return_tensors='pt')",
            f"  -> {self.tokenizer_output_type} (a dictionary) with keys "
            f"{list(self.tokenizer_output)}",
        ]
        for name, value in self.tokenizer_output.items():
            lines.append(f"     [{name!r}]: shape {tuple(value.shape)}, dtype {value.dtype}")
        lines.append(
            f"     input_ids[0, :{self.n_used}] = [{shown}]  then {MAX_SLOTS - self.n_used} "
            f"padding ids"
        )
        lines.append(f"     pieces: {' · '.join(self.pieces[: self.n_used])}")
        if self.truncated:
            lines.append(
                f"     TRUNCATED: the prompt needs {self.n_tokens_untruncated} slots; the "
                f"tokenizer kept the first {len(self.pieces)} and the rest is never seen"
            )
        lines.append(
            "     (SD v1 does not pass attention_mask to the text encoder: padding slots get "
            "vectors too)"
        )
        lines.append("text_encoder(input_ids)")
        lines.append(
            f"  -> {self.text_encoder_output_type} (an object: read fields as attributes)"
        )
        for name, value in self.text_encoder_output.items():
            lines.append(f"     .{name}: shape {tuple(value.shape)}")
        lines.append(
            f"  last_hidden_state is (batch 1, {MAX_SLOTS} slots, hidden size {hidden}): the "
            "UNet's cross-attention reads these vectors"
        )
        return "\n".join(lines)


def encode_prompt_with_shapes(pipe: Any, prompt: str) -> PromptEncoding:
    """Run ``prompt`` through ``pipe.tokenizer`` and ``pipe.text_encoder`` as the pipeline does.

    The tokenizer pads to CLIP's 77 slots and returns a ``BatchEncoding`` (a dictionary); the
    text encoder returns a ``BaseModelOutputWithPooling`` (an object whose fields are
    attributes). Tensors come back on the CPU.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"a prompt must be a string, not {type(prompt).__name__}")
    tokenizer, text_encoder = pipe.tokenizer, pipe.text_encoder
    encoding = tokenizer(
        prompt,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        output = text_encoder(encoding["input_ids"].to(text_encoder.device))
    # ModelOutput is an OrderedDict subclass holding only the fields that are set
    encoder_fields = {
        name: value.detach().cpu()
        for name, value in output.items()
        if isinstance(value, torch.Tensor)
    }
    ids = encoding["input_ids"][0].tolist()
    return PromptEncoding(
        prompt=prompt,
        tokenizer_output_type=type(encoding).__name__,
        tokenizer_output={name: value.cpu() for name, value in encoding.items()},
        text_encoder_output_type=type(output).__name__,
        text_encoder_output=encoder_fields,
        pieces=tuple(tokenizer.convert_ids_to_tokens(ids)),
        n_tokens_untruncated=len(tokenizer(prompt).input_ids),
    )


def flow_shapes(pipe: Any, batch: int = 1) -> dict[str, str]:
    """The shape of what flows between components, for one image (labels for the diagram).

    Labels are two lines (name, shape). Keys: ``input_ids``, ``text_embeddings``,
    ``noise_prediction``, ``latents``, ``final_latents``, ``image``, ``clip_input`` (only with
    a feature extractor). Computed from the configs, without running anything.
    """
    unet_config = pipe.unet.config
    latent_side = int(unet_config.sample_size)
    channels = int(unet_config.in_channels)
    scale = int(pipe.vae_scale_factor)  # image side / latent side: SD v1's 512 → 64 is 8
    image_side = latent_side * scale
    hidden = int(pipe.text_encoder.config.hidden_size)
    slots = int(pipe.tokenizer.model_max_length)
    latents = f"({batch}, {channels}, {latent_side}, {latent_side})"
    shapes = {
        "input_ids": f"input_ids\n({batch}, {slots})",
        "text_embeddings": f"last_hidden_state\n({batch}, {slots}, {hidden})",
        "noise_prediction": f"noise\n{latents}",
        "latents": f"latents\n{latents}",
        "final_latents": f"z_0\n{latents}",
        "image": f"image {image_side}×{image_side}×3",
    }
    extractor = getattr(pipe, "feature_extractor", None)
    crop = extractor.to_dict().get("crop_size") if hasattr(extractor, "to_dict") else None
    if isinstance(crop, Mapping) and "height" in crop:
        shapes["clip_input"] = f"pixel_values\n({batch}, 3, {crop['height']}, {crop['width']})"
    return shapes
