"""Tests of the shapes model: data generator, caption tokens, grounding loss, recording
processor, the image measures, the shipped weights and a quick evaluation of them."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from p2p_teach.shapes import WEIGHTS_DIR, load_shapes_pipeline
from p2p_teach.shapes import data as shapes_data
from p2p_teach.shapes import evaluate as shapes_eval
from p2p_teach.shapes import model as shapes_model
from p2p_teach.shapes import train as shapes_train
from p2p_teach.shapes.train import CaptionIds, grounding_loss


@pytest.fixture(scope="module")
def caption_ids() -> CaptionIds:
    return CaptionIds()


# ---- data generator ---------------------------------------------------------------------------


def test_samples_are_deterministic_by_seed_and_index():
    a, b = shapes_data.sample(17, seed=3), shapes_data.sample(17, seed=3)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.masks, b.masks)
    assert a.caption == b.caption and a.objects == b.objects
    others = [shapes_data.sample(17, seed=4), shapes_data.sample(18, seed=3)]
    assert all(o.caption != a.caption or not np.array_equal(o.image, a.image) for o in others)


def test_masks_match_the_attributes():
    for index in range(120):
        item = shapes_data.sample(index, seed=1)
        assert item.image.shape == (64, 64, 3) and item.image.dtype == np.uint8
        assert item.masks.shape == (len(item.objects), 64, 64)
        background = np.array(shapes_data.BACKGROUNDS[item.background])
        outside = ~item.masks.any(0)
        assert np.abs(item.image[outside].astype(int) - background).max() <= 128  # edges blend
        assert np.median(np.abs(item.image[outside].astype(int) - background)) == 0
        for obj, mask in zip(item.objects, item.masks, strict=True):
            assert mask.sum() > 60
            colour = np.median(item.image[mask], axis=0)
            assert np.abs(colour - np.array(shapes_data.COLOURS[obj.colour])).max() <= 1
            ys, xs = np.nonzero(mask)
            assert shapes_data.nearest_position(xs.mean() + 0.5, ys.mean() + 0.5) == obj.position
        if len(item.objects) == 2:
            assert item.objects[0].colour != item.objects[1].colour
            pair = {item.objects[0].position, item.objects[1].position}
            assert pair in ({"left", "right"}, {"top", "bottom"})


def test_later_objects_are_drawn_over_earlier_ones_where_the_drawings_overlap():
    overlapping, fully_covered = 0, 0
    for index in range(600):
        objects, background, named = shapes_data.sample_layout(index, seed=0)
        if len(objects) < 2:
            continue
        item = shapes_data.build_sample(objects, background, named)
        first, second = (shapes_data._draw_mask(obj) for obj in objects)  # raw coverages
        # the later object keeps its whole drawing; the earlier one loses what it covers
        assert np.array_equal(item.masks[1], second >= 0.5)
        assert np.array_equal(item.masks[0], first * (1.0 - second) >= 0.5)
        overlap = (first >= 0.5) & (second >= 0.5)  # (64, 64): both drawings cover it
        if overlap.any():
            overlapping += 1
            assert not item.masks[0][overlap].any() and item.masks[1][overlap].all()
            covered = overlap & (second == 1.0)
            fully_covered += int(covered.sum())
            colour = np.array(shapes_data.COLOURS[objects[1].colour])
            assert (np.abs(item.image[covered].astype(int) - colour) <= 1).all()
    # the drawings of opposite sides do touch (seed 0's sample 464 by 7 pixels)
    assert overlapping >= 2 and fully_covered > 0


def test_big_objects_are_bigger_than_small_ones():
    areas: dict[str, list[int]] = {"big": [], "small": []}
    for index in range(200):
        item = shapes_data.sample(index, seed=2)
        for obj, mask in zip(item.objects, item.masks, strict=True):
            areas[obj.size].append(int(mask.sum()))
    assert min(areas["big"]) > 0 and np.mean(areas["big"]) > 1.8 * np.mean(areas["small"])


def test_captions_name_every_object_and_its_position():
    seen_shapes, seen_two = set(), 0
    for index in range(200):
        item = shapes_data.sample(index, seed=5)
        assert item.caption == " ".join(item.words)
        for k, obj in enumerate(item.objects):
            assert obj.phrase() in item.caption
            pairs = zip(item.words, item.word_objects, strict=True)
            owned = [word for word, owner in pairs if owner == k]
            assert obj.colour in owned and obj.shape in owned
            assert (obj.size in owned) == obj.size_in_caption
            seen_shapes.add(obj.shape)
        seen_two += len(item.objects) == 2
        if len(item.objects) == 2:
            assert " and " in item.caption
    assert seen_shapes == set(shapes_data.SHAPES)
    assert 40 < seen_two < 120  # about 40% of samples have two objects


def test_position_unnamed_share_drops_only_the_position_words_of_one_object_captions():
    unnamed = 0
    for index in range(300):
        named = shapes_data.sample(index, seed=6)
        item = shapes_data.sample(index, seed=6, position_unnamed_share=0.4)
        # the drawing is the same as with the default share of 0
        assert np.array_equal(item.image, named.image) and np.array_equal(item.masks, named.masks)
        if item.words == named.words:
            assert all(obj.position_in_caption for obj in item.objects)
            continue
        unnamed += 1
        (obj,) = item.objects  # only one-object captions leave the position out
        assert not obj.position_in_caption and obj.position == named.objects[0].position
        cut = len(obj.words())
        phrase = shapes_data.POSITION_PHRASES[obj.position].split()
        assert named.words[cut : cut + len(phrase)] == phrase
        rest = cut + len(phrase)
        assert item.words == named.words[:cut] + named.words[rest:]
        assert item.word_objects == named.word_objects[:cut] + named.word_objects[rest:]
    assert 0.15 * 300 < unnamed < 0.35 * 300  # 0.4 of the ~60% one-object samples
    for index in range(40):
        item = shapes_data.sample(index, 6, position_unnamed_share=1.0)
        assert (len(item.objects) == 1) is not item.objects[0].position_in_caption
    with pytest.raises(ValueError, match="position_unnamed_share must be in"):
        shapes_data.sample(0, 6, position_unnamed_share=1.5)


def test_some_names_are_split_into_several_clip_pieces(caption_ids: CaptionIds):
    assert len(caption_ids.word_ids("hexagon")) == 2
    assert len(caption_ids.word_ids("cyan")) == 2
    assert len(caption_ids.word_ids("chartreuse")) == 3
    assert len(caption_ids.word_ids("red")) == 1


def test_caption_ids_equal_the_tokenizer_on_whole_captions(caption_ids: CaptionIds):
    tokenizer = caption_ids.tokenizer
    for index in range(40):
        item = shapes_data.sample(index, seed=9)
        ids, owners = caption_ids.encode(item.words, item.word_objects)
        expected = tokenizer(item.caption, padding="max_length", max_length=77)["input_ids"]
        assert ids == expected
        for k, obj in enumerate(item.objects):
            slots = [slot for slot, owner in enumerate(owners) if owner == k]
            pieces = [tokenizer.convert_ids_to_tokens(ids[s]) for s in slots]
            joined = "".join(p.replace("</w>", " ") for p in pieces).split()
            assert obj.colour in joined and obj.shape in joined


# ---- training pieces ----------------------------------------------------------------------------


def test_grounding_loss_is_zero_inside_and_one_minus_share_when_uniform():
    masks = torch.zeros(1, 2, 64, 64)
    masks[0, 0, :32, :32] = 1.0  # object 0: top-left quarter
    owners = torch.full((1, 77), -1)
    owners[0, 3] = 0
    inside = torch.zeros(1, 16 * 16, 77)  # (batch, pixels, tokens)
    grid = torch.zeros(16, 16)
    grid[:8, :8] = 1.0
    inside[0, :, 3] = grid.flatten() / grid.sum()
    assert grounding_loss([("a", inside)], masks, owners).item() == pytest.approx(0.0, abs=1e-6)
    uniform = torch.full((1, 64, 77), 1.0 / 64)  # an 8×8 layer
    assert grounding_loss([("b", uniform)], masks, owners).item() == pytest.approx(0.75)
    assert grounding_loss([("b", uniform)], masks, torch.full((1, 77), -1)).item() == 0.0


def test_phase_checkpoints_resume_model_optimizer_step_and_rng(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    path = tmp_path / "phase.pt"
    shapes_train.save_phase(path, "net", model, optimizer, 7, 12.5, ema=[torch.ones(2)])
    expected_draw = torch.rand(3)  # what the RNG gives right after the checkpoint

    fresh = torch.nn.Linear(3, 2)
    fresh_optimizer = torch.optim.AdamW(fresh.parameters(), lr=1e-2)
    step, elapsed, state = shapes_train.resume_phase(path, "net", fresh, fresh_optimizer, "t")
    assert (step, elapsed) == (7, 12.5) and state["ema"][0].eq(1).all()
    assert torch.equal(fresh.weight, model.weight) and torch.equal(fresh.bias, model.bias)
    saved_moment = optimizer.state_dict()["state"][0]["exp_avg"]
    assert torch.equal(fresh_optimizer.state_dict()["state"][0]["exp_avg"], saved_moment)
    assert torch.equal(torch.rand(3), expected_draw)
    missing = shapes_train.resume_phase(tmp_path / "none.pt", "net", fresh, fresh_optimizer, "t")
    assert missing == (0, 0.0, {})


def test_a_fine_tune_starts_from_the_pipeline_and_keeps_its_vae_and_text_encoder(tmp_path):
    out = tmp_path / "run"
    shapes_train.main([
        "--out", str(out), "--n-images", "24", "--minutes", "0.02", "--batch", "4",
        "--init-from", str(WEIGHTS_DIR), "--position-unnamed-share", "1.0",
    ])  # fmt: skip
    start = load_shapes_pipeline()
    tuned = load_shapes_pipeline(out / "pipeline")
    for part in ("vae", "text_encoder"):
        before, after = getattr(start, part).state_dict(), getattr(tuned, part).state_dict()
        assert all(torch.equal(before[name], after[name]) for name in before)
    assert tuned.vae.config.scaling_factor == start.vae.config.scaling_factor
    # the cached latents carry that scale too, so a mid-run export of a checkpoint agrees
    assert torch.load(out / "latents.pt")["scaling_factor"] == start.vae.config.scaling_factor
    # a few steps from the shipped UNet: close to it, not to a fresh initialisation
    before = torch.cat([p.flatten() for p in start.unet.parameters()])
    after = torch.cat([p.flatten() for p in tuned.unet.parameters()])
    fresh = torch.cat([p.flatten() for p in shapes_model.build_unet().parameters()])
    assert 0 < (after - before).norm() < 0.05 * before.norm() < (fresh - before).norm()
    # every one-object caption of the run's data leaves the position out
    data = torch.load(out / "data.pt")
    tokenizer = CaptionIds().tokenizer
    for index in range(24):
        item = shapes_data.sample(index, 0, position_unnamed_share=1.0)
        assert data["input_ids"][index].tolist() == tokenizer(
            item.caption, padding="max_length", max_length=77)["input_ids"]  # fmt: skip

    # resuming with another --n-images is refused before anything is touched
    saved_args = (out / "args.json").read_text()
    same = ["--out", str(out), "--resume", "--n-images", "24", "--position-unnamed-share", "1.0",
            "--minutes", "0.02", "--batch", "4", "--decoder-minutes", "0.01"]  # fmt: skip
    with pytest.raises(SystemExit, match="was made with --n-images 24, not 30"):
        shapes_train.main([*same, "--n-images", "30"])
    assert (out / "args.json").read_text() == saved_args
    # a fine-tune resumed without --init-from is still one: with no UNet checkpoint left it
    # starts again from the pipeline's UNet, and it does not fine-tune the kept decoder
    for name in ("unet_ckpt.pt", "unet_ckpt.pt.json", "final.pt"):
        (out / name).unlink()
    shapes_train.main(same)
    assert json.loads((out / "args.json").read_text())["init_from"] == str(WEIGHTS_DIR)
    assert not (out / "vae_decoder_final.pt").exists()
    resumed = load_shapes_pipeline(out / "pipeline")
    again = torch.cat([p.flatten() for p in resumed.unet.parameters()])
    assert 0 < (again - before).norm() < 0.05 * before.norm()
    resumed_vae = resumed.vae.state_dict()
    assert all(torch.equal(value, start.vae.state_dict()[name])
               for name, value in resumed_vae.items())  # fmt: skip


def test_bad_fine_tune_options_are_refused_with_the_fix(tmp_path, capsys):
    with pytest.raises(SystemExit):
        shapes_train.parse_args(["--position-unnamed-share", "1.5"])
    assert "--position-unnamed-share must be in [0, 1], got 1.5" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        shapes_train.parse_args(["--init-from", str(tmp_path)])
    error = capsys.readouterr().err
    assert "not an exported pipeline folder" in error and "p2p_teach/shapes/weights" in error
    assert shapes_train.parse_args(["--init-from", str(WEIGHTS_DIR)]).init_from == WEIGHTS_DIR


def test_export_only_without_a_folder_is_refused_with_the_fix(capsys):
    with pytest.raises(SystemExit):
        shapes_train.parse_args(["--export-only"])
    assert "--export-only needs --export DIR" in capsys.readouterr().err


def test_export_only_of_a_folder_without_a_run_is_refused_and_creates_nothing(tmp_path, capsys):
    typo = tmp_path / "typo"
    with pytest.raises(SystemExit):
        shapes_train.main(["--out", str(typo), "--export-only", "--export", str(tmp_path / "x")])
    assert "holds no trained run" in capsys.readouterr().err
    assert not typo.exists() and not (tmp_path / "x").exists()


@pytest.mark.parametrize("inside", ["", "pipeline"])
def test_export_into_the_run_folder_is_refused_before_training(tmp_path, capsys, inside):
    run = tmp_path / "run"
    with pytest.raises(SystemExit):
        shapes_train.parse_args(["--out", str(run), "--export", str(run / inside)])
    assert "export to a folder of its own" in capsys.readouterr().err


def _resume_args(out, *flags: str):
    return shapes_train.parse_args(["--out", str(out), "--n-images", "100", "--seed", "3",
                                    "--resume", *flags])  # fmt: skip


def test_resume_refuses_settings_that_define_the_cached_data(tmp_path):
    shapes_train.check_resume(tmp_path, _resume_args(tmp_path))  # a new run: nothing to check
    saved = vars(_resume_args(tmp_path))
    (tmp_path / "args.json").write_text(json.dumps(saved, default=str))
    shapes_train.check_resume(tmp_path, _resume_args(tmp_path, "--minutes", "200"))
    for flags, message in (
        (["--n-images", "120"], "was made with --n-images 100, not 120"),
        (["--seed", "4"], "was made with --seed 3, not 4"),
        (["--position-unnamed-share", "0.5"], "--position-unnamed-share 0.35, not 0.5"),
        (["--text-targets", "cumulative"], "--text-targets word, not cumulative"),
        (["--init-from", str(WEIGHTS_DIR)], "trains from scratch, so --init-from"),
    ):
        with pytest.raises(SystemExit, match=message) as refused:
            shapes_train.check_resume(tmp_path, _resume_args(tmp_path, *flags))
        assert "use another --out" in str(refused.value)
    # a fine-tune's own folder is taken when --init-from is not repeated; another is refused
    saved["init_from"] = str(WEIGHTS_DIR)
    (tmp_path / "args.json").write_text(json.dumps(saved, default=str))
    resumed = shapes_train.check_resume(tmp_path, _resume_args(tmp_path))
    assert resumed.init_from == WEIGHTS_DIR
    other = tmp_path / "other"
    other.mkdir()
    (other / "model_index.json").write_text("{}")
    with pytest.raises(SystemExit, match=f"--init-from {WEIGHTS_DIR}, not {other}"):
        shapes_train.check_resume(tmp_path, _resume_args(tmp_path, "--init-from", str(other)))


def test_cached_tensors_of_another_length_are_refused():
    shapes_train.check_cached_lengths(6, **{"latents.pt": torch.zeros(6, 4)})
    with pytest.raises(SystemExit, match="latents.pt holds 5 samples but the run has --n-images 6"):
        shapes_train.check_cached_lengths(6, **{"latents.pt": torch.zeros(5, 4)})


def test_export_replaces_only_a_pipeline_folder_and_swaps_it_in_whole(tmp_path, monkeypatch,
                                                                      capsys):  # fmt: skip
    import p2p_teach.tokens

    states = (shapes_model.build_unet().state_dict(),
              shapes_model.build_text_encoder().state_dict(),
              shapes_model.build_vae().state_dict())  # fmt: skip

    def export(folder):
        return shapes_train.export_pipeline(*states, 0.5, folder, torch.float16)

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "mine.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty and holds no pipeline"):
        export(notes)
    assert [p.name for p in notes.iterdir()] == ["mine.txt"]
    with pytest.raises(SystemExit):  # refused before any training
        shapes_train.parse_args(["--export", str(notes)])
    assert "not empty and holds no pipeline (no model_index.json)" in capsys.readouterr().err

    folder = tmp_path / "pipe"
    export(folder)
    (folder / "stale.txt").write_text("from the last export")
    # an export that fails half-way leaves the folder as it was
    monkeypatch.setattr(p2p_teach.tokens, "write_clip_tokenizer_files", _fail)
    with pytest.raises(RuntimeError, match="half-way"):
        export(folder)
    assert (folder / "stale.txt").exists() and (folder / "model_index.json").exists()
    monkeypatch.undo()
    export(folder)  # a pipeline folder is replaced whole
    assert not (folder / "stale.txt").exists() and (folder / "tokenizer" / "vocab.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes", "pipe"]  # nothing left over
    assert shapes_train.parse_args(["--export", str(folder)]).export == folder


def _fail(*_args, **_kwargs):
    raise RuntimeError("stopped half-way")


def test_the_text_phase_resumes_from_its_checkpoint(tmp_path):
    first = shapes_train.train_text_encoder(tmp_path, minutes=0.01, seed=0, batch=8)
    clock = json.loads((tmp_path / "text_ckpt.pt.json").read_text())
    assert clock["step"] > 0 and clock["elapsed"] >= 0.6
    # the budget is spent: a second call resumes from the checkpoint and takes no step more
    again = shapes_train.train_text_encoder(tmp_path, minutes=0.01, seed=0, batch=8)
    assert json.loads((tmp_path / "text_ckpt.pt.json").read_text())["step"] == clock["step"]
    assert all(torch.equal(first[name], again[name]) for name in first)


def test_vae_psnr_is_the_per_image_mean_on_samples_past_the_training_set():
    images = shapes_train.held_out_images(10, seed=2, count=3)
    assert images.shape == (3, 64, 64, 3) and images.dtype == torch.uint8
    for k in range(3):
        assert np.array_equal(images[k].numpy(), shapes_data.sample(10 + k, 2).image)
    offsets = torch.tensor([0.1, 0.2, 0.05])[:, None, None, None]  # (3, 1, 1, 1)

    class Stub:  # encode is the identity, decode adds a known error per image
        def encode(self, pixels):
            return SimpleNamespace(latent_dist=SimpleNamespace(mean=pixels))

        def decode(self, latents):
            return SimpleNamespace(sample=latents + offsets)

    grey = torch.full((3, 64, 64, 3), 128, dtype=torch.uint8)  # far from the clamp at ±1
    expected = np.mean([10 * math.log10(4.0 / o**2) for o in (0.1, 0.2, 0.05)])
    assert shapes_train.vae_psnr(Stub(), grey) == pytest.approx(expected, abs=1e-3)
    pooled = 10 * math.log10(4.0 / np.mean([o**2 for o in (0.1, 0.2, 0.05)]))
    # the pooled formula would give another value here: vae_psnr is the per-image mean
    assert shapes_train.vae_psnr(Stub(), grey) != pytest.approx(pooled, abs=1.0)


def test_ema_warm_up_matches_its_closed_form():
    # with the parameters held at p, the EMA after k steps is p + (e0 − p) · Π decay_i, and
    # the warm-up's product Π_{i<k} (1 + i) / (10 + i) is k! 9! / (k + 9)! = 1 / C(k + 9, 9)
    params = [torch.full((3,), 2.0), torch.full((2, 2), -1.0)]
    ema = [torch.zeros(3), torch.ones(2, 2)]
    for step in range(25):
        shapes_train.update_ema(ema, params, shapes_train.ema_decay_at(step, 0.999))
    left = 1 / math.comb(25 + 9, 9)
    assert torch.allclose(ema[0], torch.full((3,), 2.0 * (1 - left)))
    assert torch.allclose(ema[1], torch.full((2, 2), -1.0 + 2.0 * left))
    # the cap: 0.999 is reached at step 8,990, of the shipped run's 11,437
    assert shapes_train.ema_decay_at(8989, 0.999) < 0.999
    assert shapes_train.ema_decay_at(8990, 0.999) == shapes_train.ema_decay_at(11436, 0.999)
    assert shapes_train.ema_decay_at(11436, 0.999) == 0.999


def test_min_snr_weight_is_min_snr_gamma_over_snr():
    # SD v1's scaled-linear betas, computed here independently of diffusers
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=np.float64) ** 2
    alpha_bar = np.cumprod(1.0 - betas)
    snr = alpha_bar / (1.0 - alpha_bar)
    timesteps = torch.tensor([0, 10, 100, 300, 600, 999])
    alphas_cumprod = shapes_model.build_noise_scheduler().alphas_cumprod.float()
    got = shapes_train.min_snr_weight(timesteps, alphas_cumprod, gamma=5.0)
    expected = np.minimum(snr, 5.0) / snr
    assert np.allclose(got.numpy(), expected[timesteps.numpy()], rtol=1e-4)
    assert got[0] < 0.01 and got[-1] == 1.0  # nearly clean steps weigh little, noisy ones 1


def test_unet_minutes_trained_reads_the_checkpoint_clock(tmp_path):
    # what --resume compares with --minutes to decide whether a finished UNet trains further
    assert shapes_train.unet_minutes_trained(tmp_path) == 0.0
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    shapes_train.save_phase(tmp_path / "unet_ckpt.pt", "unet", model, optimizer, 9, 2520.0)
    assert shapes_train.unet_minutes_trained(tmp_path) == 42.0
    # read from the small clock file beside the checkpoint, which matches it
    clock = json.loads((tmp_path / "unet_ckpt.pt.json").read_text())
    assert clock == {"step": 9, "elapsed": 2520.0}
    assert not list(tmp_path.glob("*.tmp"))  # both files were moved into place
    (tmp_path / "unet_ckpt.pt.json").write_text(json.dumps({"step": 1, "elapsed": 60.0}))
    assert shapes_train.unet_minutes_trained(tmp_path) == 1.0  # the checkpoint is not loaded
    (tmp_path / "unet_ckpt.pt.json").unlink()  # an older checkpoint, without the clock file
    assert shapes_train.unet_minutes_trained(tmp_path) == 42.0


def _decode_targets(targets: np.ndarray) -> dict:
    """Class indices of one slot back to names: {(attribute, object): value}."""
    named = {}
    for (attribute, k), value in zip(shapes_train.HEADS, targets, strict=True):
        if value > 0:
            values = (
                tuple(shapes_data.BACKGROUNDS)
                if attribute == "background"
                else shapes_train.ATTRIBUTE_VALUES[attribute]
            )
            named[(attribute, k)] = values[value - 1]
    return named


CAPTION = "a big red circle on the left and a cyan hexagon on the right on a black background"
EVERYTHING = {
    ("size", 0): "big", ("colour", 0): "red", ("shape", 0): "circle",
    ("position", 0): "left", ("colour", 1): "cyan", ("shape", 1): "hexagon",
    ("position", 1): "right", ("background", None): "black",
}  # fmt: skip


def test_word_targets_name_only_each_slots_own_word(caption_ids: CaptionIds):
    ids, targets = shapes_train.caption_targets(caption_ids, CAPTION.split(), "word")
    assert ids == caption_ids.tokenizer(CAPTION, padding="max_length", max_length=77).input_ids
    assert targets.shape == (77, len(shapes_train.HEADS))
    tokens = caption_ids.tokenizer.convert_ids_to_tokens(ids)
    named = [(token, _decode_targets(t)) for token, t in zip(tokens, targets, strict=True)]
    said = {head: value for _, slot in named for head, value in slot.items()}
    assert said == EVERYTHING  # every attribute is named by some slot...
    assert all(len(slot) <= 1 for _, slot in named)  # ...and each slot names at most one
    assert named[0][1] == {} and named[-1][1] == {}  # BOS and the EOS padding name nothing
    assert named[3] == ("red</w>", {("colour", 0): "red"})
    cy, an = ids.index(caption_ids.word_ids("cyan")[0]), ids.index(caption_ids.word_ids("cyan")[1])
    assert named[cy][1] == named[an][1] == {("colour", 1): "cyan"}  # both pieces, object 1
    words_without_attribute = {"a</w>", "on</w>", "the</w>", "and</w>", "background</w>"}
    assert all(slot == {} for token, slot in named if token in words_without_attribute)


def test_cumulative_targets_name_what_the_caption_has_said_so_far(caption_ids: CaptionIds):
    ids, targets = shapes_train.caption_targets(caption_ids, CAPTION.split(), "cumulative")
    assert _decode_targets(targets[0]) == {}  # BOS: nothing said yet
    assert _decode_targets(targets[3]) == {("size", 0): "big", ("colour", 0): "red"}
    assert _decode_targets(targets[-1]) == EVERYTHING  # the EOS padding knows the whole caption
    cy_slot = ids.index(caption_ids.word_ids("cyan")[0])
    assert _decode_targets(targets[cy_slot])[("colour", 1)] == "cyan"  # from its first piece
    assert ("shape", 1) not in _decode_targets(targets[cy_slot])
    # targets only grow along the caption: a named attribute is never forgotten
    named = targets > 0
    assert (named[1:] >= named[:-1]).all()
    with pytest.raises(ValueError, match="kind='both': use one of word, cumulative"):
        shapes_train.caption_targets(caption_ids, CAPTION.split(), "both")


def test_caption_corpus_matches_the_dataset_captions(caption_ids: CaptionIds):
    ids, targets = shapes_train.caption_corpus(5, seed=4)
    for index in range(5):
        caption = shapes_data.sample(index, seed=4).caption
        assert ids[index].tolist() == caption_ids.tokenizer(
            caption, padding="max_length", max_length=77
        ).input_ids
    assert targets.shape == (5, 77, len(shapes_train.HEADS))


def test_position_owners_ground_each_position_word_to_its_object(caption_ids: CaptionIds):
    item = shapes_data.build_sample(
        [
            shapes_data.make_object(np.random.default_rng(0), "top", colour="red"),
            shapes_data.make_object(np.random.default_rng(1), "bottom", colour="blue"),
        ],
        "white",
        "white",
    )
    ids, owners = caption_ids.encode(item.words, item.word_objects)
    result = shapes_train.position_owners(torch.tensor([ids]), torch.tensor([owners]))[0]
    top, bottom = caption_ids.word_ids("top")[0], caption_ids.word_ids("bottom")[0]
    assert result[ids.index(top)] == 0 and result[ids.index(bottom)] == 1
    changed = (result != torch.tensor(owners)).nonzero().flatten().tolist()
    assert changed == sorted([ids.index(top), ids.index(bottom)])  # nothing else moves


def test_object_weights_are_one_on_background_and_grow_with_coverage():
    masks = torch.zeros(1, 2, 64, 64, dtype=torch.bool)
    masks[0, 0, :8, :8] = True  # exactly latent pixels (0, 0) and (0, 1), (1, 0), (1, 1)
    masks[0, 1, 60:, 62:] = True  # half of latent pixel (15, 15)
    weights = shapes_train.object_weights(masks, 3.0)  # (1, 1, 16, 16)
    assert weights.shape == (1, 1, 16, 16)
    assert weights[0, 0, :2, :2].eq(4.0).all()
    assert weights[0, 0, 15, 15].item() == pytest.approx(2.5)
    assert weights.sum().item() == pytest.approx(256 + 4 * 3.0 + 1.5)


def test_recording_processor_matches_default_attention_and_records_maps():
    torch.manual_seed(0)
    unet = shapes_model.build_unet().eval()
    latents = torch.randn(2, 4, 16, 16)
    context = torch.randn(2, 77, shapes_model.TEXT_HIDDEN)
    with torch.no_grad():
        expected = unet(latents, 10, context).sample
        record = shapes_model.AttentionRecord(active=True)
        own = unet.attn_processors
        with shapes_model.recording(unet, record):
            got = unet(latents, 10, context).sample
        assert unet.attn_processors == own
        with pytest.raises(RuntimeError, match="stop"), shapes_model.recording(unet, record):
            raise RuntimeError("stop")
        assert unet.attn_processors == own  # put back after an error too
    assert torch.allclose(got, expected, atol=1e-5)
    sides = sorted({int(round(m.shape[1] ** 0.5)) for _, m in record.maps})
    assert sides == [4, 8, 16]  # cross-attention at 16×16 and 8×8, and the 4×4 middle block
    for _, probs in record.maps:
        assert probs.shape[0] == 2 and probs.shape[2] == 77
        assert torch.allclose(probs.sum(-1), torch.ones(()), atol=1e-5)


# ---- the measures, on ground-truth images ---------------------------------------------------


def test_measures_read_ground_truth_images_correctly():
    rng = np.random.default_rng(0)
    for k in range(60):
        spec = shapes_eval.single_object_specs(60)[k]
        obj = shapes_data.make_object(rng, spec.position, shape=spec.shape, colour=spec.colour)
        item = shapes_data.build_sample([obj], list(shapes_data.BACKGROUNDS)[k % 3])
        mask = shapes_eval.foreground(item.image)
        assert shapes_eval.mask_iou(mask, item.masks[0]) > 0.8
        assert shapes_eval.object_colour(item.image, mask) == spec.colour
        assert shapes_eval.object_position(mask) == spec.position
    blank = np.full((64, 64, 3), 245, np.uint8)
    assert shapes_eval.object_colour(blank, shapes_eval.foreground(blank)) is None


def test_a_swap_without_an_object_counts_as_a_failure():
    from PIL import Image

    empty = np.zeros((64, 64), bool)
    blob = empty.copy()
    blob[10:30, 10:30] = True
    speck = empty.copy()
    speck[0, : shapes_eval.MIN_OBJECT_PIXELS - 1] = True  # too few pixels to be an object
    assert shapes_eval.mask_iou(empty, empty) == 0.0 and shapes_eval.mask_iou(blob, blob) == 1.0
    assert shapes_eval.swap_iou(blob, blob) == 1.0
    assert shapes_eval.swap_iou(speck, speck) == 0.0 and shapes_eval.swap_iou(blob, empty) == 0.0
    # an edit function that draws nothing on either side: every swap fails
    blank = Image.fromarray(np.full((64, 64, 3), 245, np.uint8))

    def draws_nothing(pipe, source, target, **kwargs):
        return SimpleNamespace(source_image=blank, edited_image=blank)

    settings = shapes_eval.EvalSettings.quick()
    swaps = shapes_eval.colour_swaps(settings, name_size=True)
    runs = shapes_eval.run_swaps(None, swaps, settings, draws_nothing)
    assert runs["iou"] == [0.0] * len(swaps)
    summary = shapes_eval.summarise_colour_swaps(runs, runs, swaps)
    assert summary["iou_median_injected"] == 0.0 and summary["edit_success_share"] == 0.0


def _attention_maps(values_for_side) -> list[tuple[str, torch.Tensor]]:
    """One made-up layer per side (16 and 8): (2, side², 77) maps, tokens 3 and 5 given by
    ``values_for_side(side)`` (side, side), every other token uniform."""
    maps = []
    for side in (16, 8):
        probs = torch.full((2, side * side, 77), 1.0 / (side * side))  # (batch, pixels, tokens)
        grid = values_for_side(side)
        probs[:, :, [3, 5]] = (grid / grid.sum()).flatten()[None, :, None]  # (1, pixels, 1)
        maps.append((f"side {side}", probs))
    return maps


def test_attention_ratio_is_one_for_uniform_maps_and_one_over_share_inside_the_mask():
    mask = np.zeros((64, 64), bool)
    mask[:32, :16] = True  # an eighth of the image, on whole latent pixels at 16 and 8
    uniform = _attention_maps(lambda side: torch.ones(side, side))
    assert shapes_eval.attention_ratio(uniform, 1, [3, 5], mask) == pytest.approx(1.0)

    def inside(side: int) -> torch.Tensor:
        grid = torch.zeros(side, side)
        grid[: side // 2, : side // 4] = 1.0
        return grid

    maps = _attention_maps(inside)
    assert shapes_eval.attention_ratio(maps, 0, [3, 5], mask) == pytest.approx(8.0)
    assert shapes_eval.attention_ratio(maps, 0, [4], mask) == pytest.approx(1.0)  # uniform slot


def test_prompt_sets_cover_every_attribute():
    specs = shapes_eval.single_object_specs(40)
    assert {s.shape for s in specs} == set(shapes_data.SHAPES)
    assert {s.colour for s in specs} == set(shapes_data.COLOURS)
    assert {s.position for s in specs} == set(shapes_data.POSITIONS)
    for first, second in shapes_eval.two_object_specs(8):
        assert first.colour != second.colour
        assert {first.position, second.position} in ({"left", "right"}, {"top", "bottom"})


def test_swaps_change_exactly_one_word_into_another_value_of_its_attribute():
    settings = shapes_eval.EvalSettings(swaps=12, position_swaps=8)
    opposite = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}
    for name_size in (True, False):
        for swap, spec in shapes_eval.colour_swaps(settings, name_size):
            source, target = swap.source.split(), swap.target.split()
            changed = [k for k, (a, b) in enumerate(zip(source, target, strict=True)) if a != b]
            assert changed == [swap.index]
            assert source[swap.index] == spec.colour and target[swap.index] in shapes_data.COLOURS
            assert (spec.size in source) is name_size
    for swap, spec in shapes_eval.colour_swaps(settings, name_size=True, name_position=False):
        assert swap.source == f"a {spec.size} {spec.colour} {spec.shape}"
        assert swap.target == f"a {spec.size} {swap.new_word} {spec.shape}"
        assert swap.new_word != spec.colour
    layout = shapes_eval.position_swaps(settings)
    assert len(layout) == 8
    for swap, spec in layout:
        assert swap.source == spec.phrase()
        assert swap.target == spec.phrase().replace(spec.position, opposite[spec.position])
    assert len({swap.seed for swap, _ in layout}) == 8
    # the check set: other prompts and other seeds than the main swaps
    other = shapes_eval.colour_swaps(
        shapes_eval.EvalSettings(swaps=12, other_swaps=12), name_size=True, other=True
    )
    main = shapes_eval.colour_swaps(settings, name_size=True)
    assert len(other) == 12
    assert not {swap.seed for swap, _ in other} & {swap.seed for swap, _ in main}
    assert [swap.source for swap, _ in other] != [swap.source for swap, _ in main]
    shape_swaps = shapes_eval.shape_swaps(settings)
    assert len(shape_swaps) == 12
    for swap, spec in shape_swaps:
        assert swap.source == f"a {spec.size} {spec.colour} {spec.shape}"  # the seed's layout
        assert swap.target == f"a {spec.size} {spec.colour} {swap.new_word}"
        assert swap.new_word in shapes_data.SHAPES and swap.new_word != spec.shape


# ---- the shipped weights ------------------------------------------------------------------------


def test_shipped_weights_are_small_fp16_and_load_offline():
    from diffusers import StableDiffusionPipeline
    from safetensors import safe_open

    from p2p_teach.tokens import load_clip_tokenizer

    files = [p for p in WEIGHTS_DIR.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 40 * 2**20
    index = json.loads((WEIGHTS_DIR / "model_index.json").read_text())
    assert index["safety_checker"] == [None, None] and index["tokenizer"][1] == "CLIPTokenizer"
    for part in ("unet", "vae", "text_encoder"):
        (weights,) = (WEIGHTS_DIR / part).glob("*.safetensors")
        with safe_open(str(weights), "pt") as handle:
            name = next(iter(handle.keys()))
            assert handle.get_tensor(name).dtype == torch.float16
    pipe = StableDiffusionPipeline.from_pretrained(str(WEIGHTS_DIR), torch_dtype=torch.float32)
    assert pipe.text_encoder.config.vocab_size == 49408
    assert pipe.unet.config.sample_size * pipe.vae_scale_factor == 64
    assert type(pipe.scheduler).__name__ == "PNDMScheduler"
    prompt = "a big cyan hexagon on the left"
    assert pipe.tokenizer(prompt)["input_ids"] == load_clip_tokenizer()(prompt)["input_ids"]


def test_quick_evaluation_of_the_shipped_model():
    settings = shapes_eval.EvalSettings.quick()
    results = shapes_eval.evaluate(load_shapes_pipeline(), settings)
    single = results["single_object"]
    # loose bounds under the shipped model's 1.0 / 1.0 / 0.9 / 11.6 here; a random-weight
    # model of this architecture scores 0.0 colour and 1.0 attention ratio
    assert single["colour_accuracy"] >= 0.7
    assert single["position_accuracy"] >= 0.7
    assert single["shape_accuracy"] >= 0.6
    assert results["two_objects"]["both_right_share"] >= 0.5
    assert single["attention_ratio_mean"] >= 3.0
    assert single["no_object_share"] <= 0.2
    assert results["shape_classifier_heldout_accuracy"] >= 0.95
    swap = results["colour_swap"]
    assert swap["edit_success_share"] >= 0.5
    # a side-word swap: injection holds the source layout, a plain run follows the new word
    # (here: 0.0 and 1.0 of the edits reach the new side)
    assert swap["position_swap"]["moved_to_new_position_injected"] <= 0.5
    assert swap["position_swap"]["moved_to_new_position_no_injection"] >= 0.5
    # a colour swap whose place the seed decides: injection keeps the object where it was
    # (the full evaluation: 1.0 of the edits with injection, 0.333 without; here 1.0 and 0.5)
    assert swap["position_unnamed"]["kept_source_position_injected"] >= 0.5
    # one swap of other prompts and seeds, injected over 0.8 and 0.7 of the steps
    other = swap["other_prompts"]["position_unnamed"]
    assert "1 other colour swaps, seed layout" in shapes_eval.summary(results)
    # the summary line reads both runs of that swap (0.8 and 0.7) out of the results
    assert (f"edit success {other['edit_success_share']:.3f}; with cross 0.7: IoU "
            f"{other['shorter_cross']['iou_median_injected']:.3f}") in shapes_eval.summary(results)
    # a shape swap draws the new shape in the source's colour once injection leaves it steps
    # of its own (here: new shape 0.0 injected over 0.8 of the steps, 0.5 over 0.4, 1.0
    # without injection; colour kept and sources right 1.0 in every run)
    shape_swap = results["shape_swap"]
    assert shape_swap["shorter_injection"]["new_shape_share"] >= 0.5
    assert shape_swap["no_injection"]["new_shape_share"] >= 0.5
    for run in ("injected", "shorter_injection"):
        assert shape_swap[run]["colour_kept_share"] >= 0.5
        assert shape_swap[run]["source_shape_right_share"] >= 0.5
    # the summary line reads that run's value out of the results
    shorter_share = shape_swap["shorter_injection"]["new_shape_share"]
    assert (f"cross and self {shapes_eval.SHAPE_SWAP_STEPS:g} {shorter_share:.3f}"
            in shapes_eval.summary(results))  # fmt: skip
    # the summary table reads every target's value out of the nested results
    table = shapes_eval.summary(results)
    for name, (path, target) in shapes_eval.TARGETS.items():
        assert f"{name:<22} {shapes_eval.result_at(results, path):>7.3f}   ≥ {target}" in table
    assert shapes_eval.result_at(results, ("colour_swap", "no such key")) is None
