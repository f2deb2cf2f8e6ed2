"""Fault injection, by class: signals at each stage (load, denoise, save), damaged and truncated
files of every kind the package reads, values out of range, wrong types for public arguments,
and concurrent use. Each numbered bug of the reliability review has a test here that fails on
the code before its fix (the test's docstring names the bug).

Most tests build results in memory (no model); those that run one use the tiny random model
at two or three steps, and the signal tests run the command line in a subprocess.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from p2p_teach.atomic import MANIFEST, IncompleteResultError
from p2p_teach.engine import EditResult
from p2p_teach.history import AttentionHistory, HistoryFileError
from p2p_teach.layers import LayerInfo
from p2p_teach.settings import EditSettings
from p2p_teach.tokens import tokenize

ROOT = Path(__file__).resolve().parents[1]
LAYER = LayerInfo("down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor", "down", 4, 4)


def make_result(source: str = "a red circle", target: str = "a blue circle", *, steps: int = 2,
                record: bool = True, colour: int = 10) -> EditResult:  # fmt: skip
    """A small result in memory, as an edit returns one (images, settings, history, latents)."""
    history = None
    if record:
        history = AttentionHistory([LAYER], tokenize(source), tokenize(target),
                                   [900.0 - 100 * k for k in range(steps)])  # fmt: skip
        for step in range(steps):
            history.record(LAYER.name, step, torch.full((2, LAYER.pixels, 77), 1 / 77))
            history.end_step(step)
    settings = {  # every field an edit writes (settings.json of a real result)
        "source_prompt": source, "target_prompt": target,
        "edit": {"kind": "replace", "rule": "course"}, "blend": None, "seed": colour,
        "latents_given": False, "steps": steps, "guidance": 2.0, "height": 8, "width": 8,
        "cross_steps": {"default": [0.0, 0.8]}, "cross_step_ranges": {"default": [0, 1]},
        "self_steps": [0.0, 0.6], "self_step_range": [0, 1], "self_max_ratio": 1.0,
        "self_max_side": 4, "blend_resolution": None, "record": "auto" if record else "none",
        "record_slots": "used", "scheduler": "PNDMScheduler", "scheduler_config": {},
        "model": "p2p_teach/shapes", "device": "cpu", "dtype": "float32",
        "p2p_teach_version": "0.1.0",
    }  # fmt: skip
    return EditResult(
        Image.new("RGB", (8, 8), (colour, 0, 0)),
        Image.new("RGB", (8, 8), (0, 0, colour)),
        EditSettings.from_json(settings),
        history,
        torch.full((2, 4, 2, 2), float(colour)),
    )


def settings_json(result: EditResult) -> dict:
    settings = result.settings
    return settings.to_json() if hasattr(settings, "to_json") else dict(settings)


def same_result(a: EditResult, b: EditResult) -> bool:
    return (
        settings_json(a) == settings_json(b)
        and a.source_image.tobytes() == b.source_image.tobytes()
        and a.edited_image.tobytes() == b.edited_image.tobytes()
        and torch.equal(a.latents, b.latents)
        and (a.history is None) == (b.history is None)
    )


def hidden_siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}"))


# ============================================================================================
# Saved results: whole or absent (bugs 4, 5, 6), readable by others, damaged files named
# ============================================================================================


def test_a_saved_result_round_trips_with_a_manifest_listing_every_file(tmp_path):
    result = make_result()
    folder = result.save(tmp_path / "run")
    manifest = json.loads((folder / MANIFEST).read_text())
    on_disk = sorted(p.name for p in folder.iterdir() if p.name != MANIFEST)
    assert sorted(manifest["files"]) == on_disk
    for name, entry in manifest["files"].items():
        assert entry["bytes"] == (folder / name).stat().st_size
    assert same_result(EditResult.load(folder), result)
    assert hidden_siblings(folder) == []


def test_stale_history_cannot_survive_a_second_save(tmp_path):
    """Bug 6: a save with record='none' over a recorded result kept the old history."""
    folder = tmp_path / "run"
    make_result(colour=1).save(folder)
    make_result(colour=2, record=False).save(folder)
    loaded = EditResult.load(folder)
    assert loaded.history is None and settings_json(loaded)["seed"] == 2
    assert not (folder / "history.safetensors").exists()


def test_result_files_are_as_readable_as_the_pngs(tmp_path):
    """Result files were 0600 (history, latents) while the PNGs followed the umask."""
    old = os.umask(0o022)
    try:
        folder = make_result().save(tmp_path / "run")
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()}
    assert set(modes.values()) == {0o644}, modes


def test_a_failed_save_leaves_the_old_result_whole(tmp_path, monkeypatch):
    """Bug 5: a save that failed half-way mixed new files with the old settings."""
    folder = tmp_path / "run"
    old = make_result(colour=1)
    old.save(folder)
    (folder / "settings.json").chmod(0o444)  # the old folder's file is read-only: no matter
    new = make_result(colour=2)

    def fail(path):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(new.history, "save", fail)
    with pytest.raises(OSError, match="No space left"):
        new.save(folder)
    assert same_result(EditResult.load(folder), old)
    assert hidden_siblings(folder) == []
    monkeypatch.undo()
    new.save(folder)  # and a good save replaces it, read-only file and all
    assert same_result(EditResult.load(folder), new)


def test_a_folder_with_other_files_is_refused_not_replaced(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="mine.txt.*Fix: save to a new folder"):
        make_result().save(folder)
    assert [p.name for p in folder.iterdir()] == ["mine.txt"]
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(FileExistsError, match="not a folder"):
        make_result().save(afile)


@pytest.mark.parametrize("damage", ["delete", "truncate", "flip", "manifest"])
@pytest.mark.parametrize("name", ["source.png", "settings.json", "history.safetensors",
                                  "latents.safetensors"])  # fmt: skip
def test_a_damaged_result_is_refused_naming_the_file(tmp_path, name, damage):
    """Bug 4's folder (files missing) and any damaged file: refused, with the file named."""
    folder = make_result().save(tmp_path / "run")
    path = folder / name
    data = path.read_bytes()
    if damage == "delete":
        path.unlink()
        expected = f"missing: {name}"
    elif damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
        expected = f"changed or truncated: {name}"
    elif damage == "flip":
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
        expected = f"changed or truncated: {name}"
    else:
        (folder / MANIFEST).write_text('{"kind": "p2p_teach result", "files": ')
        expected = "manifest.json cannot be read"
    with pytest.raises(IncompleteResultError, match=expected + ".*Fix:"):
        EditResult.load(folder)


def write_old_format(result: EditResult, folder: Path, files: list[str]) -> None:
    """A folder as p2p_teach wrote it before manifests (only the listed files)."""
    folder.mkdir()
    writers = {
        "source.png": lambda p: result.source_image.save(p),
        "edited.png": lambda p: result.edited_image.save(p),
        "settings.json": lambda p: p.write_text(json.dumps(settings_json(result))),
        "history.safetensors": lambda p: result.history.save(p),
        "latents.safetensors": lambda p: __import__("safetensors.torch").torch.save_file(
            {"latents": result.latents}, str(p)
        ),
    }
    for name in files:
        writers[name](folder / name)


ALL_OLD = ["source.png", "edited.png", "settings.json", "history.safetensors",
           "latents.safetensors"]  # fmt: skip


def test_an_old_complete_folder_loads_with_a_warning(tmp_path):
    result = make_result()
    write_old_format(result, tmp_path / "old", ALL_OLD)
    with pytest.warns(UserWarning, match="before p2p_teach wrote manifests.*save it again"):
        loaded = EditResult.load(tmp_path / "old")
    assert same_result(loaded, result)


def test_an_old_folder_left_by_an_interrupted_save_is_refused(tmp_path):
    """Bug 4: Ctrl-C while saving left source.png, edited.png and settings.json, and load
    took that folder as complete."""
    write_old_format(make_result(), tmp_path / "old", ALL_OLD[:3])
    with pytest.raises(IncompleteResultError, match="incomplete result.*latents.safetensors"):
        EditResult.load(tmp_path / "old")


def test_an_old_folder_with_another_edits_history_is_refused(tmp_path):
    """Bug 6 in folders saved before manifests: settings and history of two edits."""
    folder = tmp_path / "old"
    write_old_format(make_result(record=False), folder, ALL_OLD[:3] + ALL_OLD[4:])
    make_result(source="a green square", target="a blue square").history.save(
        folder / "history.safetensors"
    )
    with pytest.warns(UserWarning), pytest.raises(IncompleteResultError, match="another edit"):
        EditResult.load(folder)


def test_loading_what_is_not_a_result_folder_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        EditResult.load(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IncompleteResultError, match="not a saved edit"):
        EditResult.load(tmp_path / "empty")


# ---- signals while saving, in a subprocess (the signal really arrives mid-save)

SAVE_SCRIPT = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (see CLI_SCRIPT)
sys.path.insert(0, {tests!r})
from test_faults import make_result
folder = sys.argv[1]
make_result(colour=1).save(folder)
new = make_result(colour=2)
original = new.history.save
def save_then_signal(path):
    original(path)
    os.kill(os.getpid(), getattr(signal, sys.argv[2]))
    original(path)  # still writing when the signal arrives
new.history.save = save_then_signal
new.save(folder)
"""


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_a_signal_while_saving_leaves_the_old_result(tmp_path, signal_name):
    """Bug 4: Ctrl-C or SIGTERM during a save left a partial folder."""
    script = tmp_path / "save.py"
    script.write_text(SAVE_SCRIPT.format(tests=str(ROOT / "tests")))
    folder = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(script), str(folder), signal_name], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    # SIGTERM kills; Python ends on an uncaught KeyboardInterrupt by SIGINT too
    assert done.returncode == -getattr(signal, signal_name), done.stderr
    assert same_result(EditResult.load(folder), make_result(colour=1))
    # SIGTERM gives no chance to clean up: a hidden partial sibling may stay; the next save
    # removes it (its process is gone)
    make_result(colour=3).save(folder)
    assert hidden_siblings(folder) == []


# ============================================================================================
# History files: folders, foreign files, truncation, tampered metadata
# ============================================================================================


def test_a_history_from_a_folder_says_to_pass_the_file(tmp_path):
    with pytest.raises(HistoryFileError, match="is a folder.*EditResult.load"):
        AttentionHistory.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such history file"):
        AttentionHistory.load(tmp_path / "none.safetensors")


def test_a_foreign_safetensors_file_is_not_a_history(tmp_path):
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(2)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(HistoryFileError, match="holds no p2p_teach attention history"):
        AttentionHistory.load(tmp_path / "model.safetensors")


@pytest.mark.parametrize("cut", [0, 7, 100, -10])
def test_a_truncated_history_is_refused(tmp_path, cut):
    path = make_result().history.save(tmp_path / "h.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[:cut])
    with pytest.raises(HistoryFileError, match="truncated, damaged|unknown history format"):
        AttentionHistory.load(path)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("steps_recorded", 999, "steps_recorded is 999, outside 0–2"),
        ("steps_recorded", "2", "not a whole number"),
        ("timesteps", [1.0, 2.0, 3.0], r"holds \(2, 2, 16, 6\).*means \(3,"),
        ("layers", [], "its maps are for layers"),
        ("slots", "many", "metadata is damaged"),
        ("format_version", 7, "unknown history format 7"),
        ("source_prompt", None, "metadata is damaged"),
    ],
)
def test_tampered_history_metadata_is_refused(tmp_path, field, value, expected):
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = make_result().history.save(tmp_path / "h.safetensors")
    with safe_open(str(path), "pt") as handle:
        metadata = json.loads(handle.metadata()["p2p_teach_history"])
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    metadata[field] = value
    save_file(tensors, str(path), metadata={"p2p_teach_history": json.dumps(metadata)})
    with pytest.raises(HistoryFileError, match=expected):
        AttentionHistory.load(path)


# ============================================================================================
# The command line: signals at each stage (load, denoise, save)
# ============================================================================================

CLI_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    # Ctrl-C as a terminal delivers it: a job started in the background (CI under nohup, &)
    # inherits SIGINT ignored, and then Python raises no KeyboardInterrupt at all
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import p2p_teach.cli as cli
    import p2p_teach.models as models
    from p2p_teach.history import AttentionHistory
    stage, name = sys.argv[1], sys.argv[2]
    def send():
        os.kill(os.getpid(), getattr(signal, name))
    load = models.load_pipeline
    def load_pipeline(*args, **kwargs):
        if stage == "load":
            send()
        pipe = load(*args, **kwargs)
        calls = []
        def hook(module, inputs, output):
            calls.append(1)
            if stage == "denoise" and len(calls) == 2:
                send()
        pipe.unet.register_forward_hook(hook)
        return pipe
    models.load_pipeline = load_pipeline
    save = AttentionHistory.save
    def save_history(self, path):
        if stage == "save":
            send()
        return save(self, path)
    AttentionHistory.save = save_history
    sys.exit(cli.main(["edit", "a red circle", "a blue circle", "--model", "tiny-random",
                       "--steps", "3", "--quiet", "--out", sys.argv[3]]))
""")


@pytest.mark.parametrize(
    ("stage", "signal_name"),
    [("load", "SIGINT"), ("denoise", "SIGINT"), ("denoise", "SIGTERM"), ("save", "SIGTERM")],
)  # fmt: skip
def test_a_signal_at_each_stage_of_the_command_line_leaves_nothing(tmp_path, stage, signal_name):
    out = tmp_path / "new" / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", CLI_SCRIPT, stage, signal_name, str(out)],
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == (130 if signal_name == "SIGINT" else 143), done.stderr
    assert done.stderr.strip().endswith("nothing was written"), done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "new").exists()  # not the folder, not its parent, no partial copy


# ============================================================================================
# Non-finite values (bug 7): a guard that names the step and the likely cause
# ============================================================================================


def test_check_finite_passes_finite_values_and_names_the_step_of_others():
    from p2p_teach.guards import NonFiniteError, check_finite

    check_finite(torch.randn(2, 4, 8, 8), "latents", 3)
    bad = torch.zeros(2, 4, 8, 8)
    bad[0, 0, 0, 0], bad[1, 1, 1, 1] = float("nan"), float("inf")
    with pytest.raises(NonFiniteError, match=r"noise prediction at step 4 hold 1 NaN and 1 Inf"
                       r".*damaged model weights.*fp16 overflow.*latents="):  # fmt: skip
        check_finite(bad, "noise prediction", 4)
    with pytest.raises(NonFiniteError, match="latents= holds 1 NaN.*Fix: pass finite latents"):
        check_finite(torch.tensor([0.0, float("nan")]), "latents=")


# ============================================================================================
# Prompts and steps (bugs 1, 2, 3; steps=np.int64)
# ============================================================================================


@pytest.mark.parametrize("prompt", ["", " ", "\t\n", "\u3000"])
def test_a_prompt_without_words_is_refused_naming_it(prompt):
    """Bug 1: an empty prompt ran the edit, then failed in the figure."""
    from p2p_teach.guards import EmptyPromptError, check_prompt

    for role in ("source", "target"):
        with pytest.raises(EmptyPromptError, match=f"the {role} prompt .* has no words.*Fix:"):
            check_prompt(prompt, role)


def test_a_too_long_target_prompt_is_named_as_the_target():
    from p2p_teach.guards import tokenize_prompt
    from p2p_teach.tokens import PromptTooLongError

    assert tokenize_prompt("a red circle", "target").words[-1].text == "circle"
    with pytest.raises(PromptTooLongError, match="the target prompt is too long: .*needs 82 slots"):
        tokenize_prompt("word " * 80, "target")
    with pytest.raises(TypeError, match="the source prompt must be a string, not int"):
        tokenize_prompt(5, "source")


def sd_scheduler(kind):
    from p2p_teach.defaults import SD_V1_SCHEDULER_CONFIG

    return kind.from_config(SD_V1_SCHEDULER_CONFIG)


@pytest.mark.parametrize("kind", ["PNDMScheduler", "DDIMScheduler", "EulerDiscreteScheduler",
                                  "DPMSolverMultistepScheduler"])  # fmt: skip
def test_the_steps_limit_is_the_largest_count_a_scheduler_steps_through(kind):
    """Bugs 2 and 3: steps=1000 with PNDM ended in an IndexError, steps=100000 hung.

    The limit the check names is checked independently: at the limit every step has its own
    timestep inside the trained range; one more and a timestep repeats or falls outside."""
    import time

    import diffusers

    from p2p_teach.schedules import ScheduleError, check_scheduler_steps

    scheduler = sd_scheduler(getattr(diffusers, kind))
    before = None if scheduler.timesteps is None else scheduler.timesteps.clone()
    started = time.perf_counter()
    with pytest.raises(ScheduleError, match=r"can take at most \d+ steps.*Fix:") as error:
        check_scheduler_steps(scheduler, 100_000)
    assert time.perf_counter() - started < 5  # no hang
    limit = int(re.search(r"at most (\d+) steps", str(error.value)).group(1))
    check_scheduler_steps(scheduler, limit)  # the limit itself passes
    for steps, fits in ((limit, True), (limit + 1, False)):
        trial = sd_scheduler(getattr(diffusers, kind))
        try:
            trial.set_timesteps(steps)
        except ValueError:
            assert not fits
            continue
        times = [float(t) for t in trial.timesteps]
        if kind == "PNDMScheduler":
            times = [times[0], *times[2:]]
        distinct = len(set(times)) == len(times) and max(times) <= 999 and min(times) >= 0
        assert (distinct and steps <= 1000) == fits, (steps, fits)  # ≤ 1 step per timestep
    after = scheduler.timesteps
    assert (before is None and after is None) or torch.equal(before, after)  # a copy was used


def test_steps_take_numpy_integers_and_refuse_the_rest():
    np = pytest.importorskip("numpy")
    from p2p_teach.schedules import ScheduleError, check_num_steps

    assert check_num_steps(np.int64(5)) == 5 and type(check_num_steps(np.int64(5))) is int
    for bad in (0, -1, 2.5, True, "10", np.float64(5.0), None):
        with pytest.raises(ScheduleError, match="whole number ≥ 1"):
            check_num_steps(bad)


# ============================================================================================
# The command line: every argument checked before a model loads
# ============================================================================================


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if the CLI loads a model."""
    import p2p_teach.models

    def load_pipeline(*args, **kwargs):
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr(p2p_teach.models, "load_pipeline", load_pipeline)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["", ""], "the source prompt '' has no words"),
        (["a red circle", "\t"], "the target prompt"),
        (["a red circle", "a blue circle", "--seed", "-1"], "--seed: '-1': a whole number"),
        (["a red circle", "a blue circle", "--seed", str(2**64)], "--seed"),
        (["a red circle", "a blue circle", "--guidance", "nan"], "--guidance: 'nan'"),
        (["a red circle", "a blue circle", "--guidance", "-2"], "--guidance"),
        (["a red circle", "a blue circle", "--steps", "0"], "--steps: '0'"),
        (["a red circle", "a blue circle", "--steps", "1000"], "at most 999 steps"),
        (["a red circle", "a blue circle", "--steps", "100000", "--scheduler", "ddim"],
         "DDIMScheduler can take at most 999"),
        (["a red circle", "a blue circle", "--out", ""], "--out '': an empty path"),
        (["a red circle", "a blue circle", "--reweight", "=3"], "--reweight: '=3'"),
        (["a red circle", "a blue circle", "--reweight", "red=inf"], "--reweight"),
        (["a red circle", "a blue circle", "--cross", "2"], "fractions must lie in"),
        (["a red circle", "a blue circle", "--blend", "square"], "in neither prompt"),
        (["a red circle", "word " * 80], "the target prompt is too long"),
    ],
)  # fmt: skip
def test_every_edit_argument_is_checked_before_a_model_loads(
    no_model_load, tmp_path, capsys, monkeypatch, arguments, message
):
    from p2p_teach.cli import main

    monkeypatch.chdir(tmp_path)
    try:
        code = main(["edit", *arguments])
    except SystemExit as stop:  # argparse's own usage errors
        code = stop.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_an_output_folder_with_other_files_is_refused_before_loading(no_model_load, tmp_path,
                                                                    capsys):  # fmt: skip
    from p2p_teach.cli import main

    (tmp_path / "notes.txt").write_text("keep")
    assert main(["edit", "a red circle", "a blue circle", "--out", str(tmp_path)]) == 2
    assert "notes.txt" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_output_folder_that_cannot_be_made_is_refused_before_loading(no_model_load, capsys):
    from p2p_teach.cli import main

    # /proc refuses new folders even to root, for whom the permission bits say "writable"
    assert main(["edit", "a red circle", "a blue circle", "--out", "/proc/p2p_teach_out"]) == 2
    err = capsys.readouterr().err
    assert "--out '/proc/p2p_teach_out': cannot write in '/proc'" in err and "Fix:" in err
    assert not [p for p in Path("/proc").iterdir() if "p2p_teach_out" in p.name]


# ============================================================================================
# Widgets: constructor values checked with the range and the fix (bugs 8, 9)
# ============================================================================================


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cross": 5}, r"cross=5: this widget's control runs from 0 to 1"),
        ({"self_steps": 2}, r"self_steps=2: this widget's control runs from 0 to 1"),
        ({"cross": -0.1}, r"cross=-0.1"),
        ({"edit_kind": "swap"}, r"edit_kind='swap' is not one of .*'replace', 'refine', 'none'"),
        ({"source": None}, r"source must be a string, not NoneType"),
    ],
)
def test_edit_runner_refuses_what_its_controls_cannot_hold(pipe, kwargs, message):
    """Bug 8: cross=5 and self_steps=2 were clamped to 1.0 silently."""
    from p2p_teach.widgets.edit_runner import EditRunner

    with pytest.raises((ValueError, TypeError), match=message + ".*Fix:"):
        EditRunner(pipe, **kwargs)


def test_injection_sweep_takes_one_target_string_as_one_target(pipe):
    """Bug 9: a string target became one target per character."""
    from p2p_teach.widgets.sweep import InjectionSweep

    sweep = InjectionSweep(pipe, "a big red circle", "a big blue circle", threaded=False)
    assert list(sweep.target_dropdown.options) == ["a big blue circle"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fractions": []}, r"fractions=\[\]: give at least one fraction"),
        ({"fractions": [0.5, 2]}, r"2 is not a fraction of the steps"),
        ({"fractions": "0.5"}, "give at least one fraction"),
        ({"targets": []}, "needs a target prompt or a list"),
        ({"targets": [None]}, "each target must be a string"),
    ],
)
def test_injection_sweep_refuses_bad_settings_clearly(pipe, kwargs, message):
    from p2p_teach.widgets.sweep import InjectionSweep

    with pytest.raises((ValueError, TypeError), match=message + ".*Fix:"):
        InjectionSweep(pipe, "a big red circle", **kwargs)


def test_the_timeline_needs_a_result_and_a_step_it_has():
    from p2p_teach.widgets.timeline import AttentionTimeline

    with pytest.raises(TypeError, match="needs an EditResult.*not NoneType.*Fix:"):
        AttentionTimeline(None)
    with pytest.raises(ValueError, match="step=5: this widget's control runs from 0 to 1"):
        AttentionTimeline(make_result(steps=2), step=5)


def test_the_mapper_widget_refuses_an_unknown_rule():
    from p2p_teach.widgets.mapper import MapperExplorer

    with pytest.raises(ValueError, match="rule='paper' is not one of .*'course', 'original'"):
        MapperExplorer(rule="paper")


# ============================================================================================
# Sweep cache: the edit's own arguments are part of the key
# ============================================================================================


def test_the_sweep_cache_key_tells_edits_apart(pipe):
    from p2p_teach.edits import LocalBlend, Refine, Replace
    from p2p_teach.sweep import sweep_key

    def key(**edit_kwargs):
        return sweep_key(pipe, "a cat", "a dog", seed=0, steps=2, guidance=2.0, cross=0.8,
                         self_=0.4, edit_kwargs=edit_kwargs)  # fmt: skip

    assert key(edit=Replace()) == key(edit=Replace(), progress=True, preview="vae")
    assert key(record="none") != key(record="auto")  # no history cannot answer a request for one
    assert key(edit=Replace()) != key(edit=Refine())
    assert key(edit=Replace()) != key(edit=Replace(rule="original"))
    assert key(blend=LocalBlend("cat")) != key(blend=LocalBlend("dog"))
    assert key(latents=torch.zeros(1, 4, 8, 8)) != key(latents=torch.ones(1, 4, 8, 8))
    assert key(latents=torch.zeros(1, 4, 8, 8)) == key(latents=torch.zeros(1, 4, 8, 8))


# ============================================================================================
# Edits: wrong types for public arguments
# ============================================================================================


@pytest.mark.parametrize("weights", [["smiling"], "smiling", [], {1: 2.0}])
def test_reweight_refuses_what_is_not_words_and_scales(weights):
    from p2p_teach.edits import Reweight

    with pytest.raises(TypeError, match="Reweight.*Fix: e.g. Reweight"):
        Reweight(weights)
    assert Reweight([("smiling", 3.0)]).weights == {"smiling": 3.0}


# ============================================================================================
# Whole input spaces (hypothesis)
# ============================================================================================


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(" \t\n\r\x0b\x0c\x1c\x1f\u00a0\u2003\u3000ab.,"),
                    max_size=8))  # fmt: skip
def test_a_prompt_is_refused_exactly_when_the_tokenizer_sees_no_word(text):
    from p2p_teach.guards import EmptyPromptError, check_prompt

    has_words = bool(tokenize(text).words)
    try:
        check_prompt(text, "source")
        refused = False
    except EmptyPromptError:
        refused = True
    assert refused == (not has_words)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_any_changed_byte_of_a_saved_result_is_caught(tmp_path_factory, data):
    folder = make_result().save(tmp_path_factory.mktemp("r") / "run")
    files = sorted(p for p in folder.iterdir() if p.name != MANIFEST)
    path = data.draw(st.sampled_from(files))
    raw = bytearray(path.read_bytes())
    offset = data.draw(st.integers(0, len(raw) - 1))
    raw[offset] ^= data.draw(st.integers(1, 255))
    path.write_bytes(bytes(raw))
    with pytest.raises(IncompleteResultError, match=f"changed or truncated: {path.name}"):
        EditResult.load(folder)


@settings(max_examples=100, deadline=None)
@given(value=st.one_of(st.integers(-5, 2000), st.floats(allow_nan=True), st.text(max_size=3),
                       st.none(), st.booleans()))  # fmt: skip
def test_steps_are_a_whole_number_at_least_one_whatever_is_passed(value):
    from p2p_teach.schedules import ScheduleError, check_num_steps

    valid = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    if valid:
        assert check_num_steps(value) == value
    else:
        with pytest.raises(ScheduleError):
            check_num_steps(value)


# ============================================================================================
# The engine: bad input refused before the pipeline is touched; NaN stops the edit (bug 7)
# ============================================================================================


def processors_of(pipe):
    return dict(pipe.unet.attn_processors)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"source_prompt": ""}, "EmptyPromptError", "the source prompt '' has no words"),
        ({"target_prompt": " \n"}, "EmptyPromptError", "the target prompt .* has no words"),
        ({"target_prompt": "word " * 80}, "PromptTooLongError", "the target prompt is too long"),
        ({"steps": 1000}, "ScheduleError", "PNDMScheduler can take at most 999 steps"),
        ({"steps": 100_000}, "ScheduleError", "at most 999 steps"),
        ({"latents": torch.full((1, 4, 16, 16), float("nan"))}, "NonFiniteError",
         "latents= holds 1024 NaN"),
    ],
)  # fmt: skip
def test_edit_refuses_bad_input_before_touching_the_pipeline(pipe, kwargs, error, message):
    """Bugs 1, 2, 3 and NaN latents=: refused up front, fast, the pipeline unchanged."""
    import time

    from p2p_teach.engine import edit

    before = processors_of(pipe)
    arguments = {"source_prompt": "a red circle", "target_prompt": "a blue circle", "steps": 2,
                 "progress": False, **kwargs}  # fmt: skip
    started = time.perf_counter()
    with pytest.raises(Exception, match=message) as raised:
        edit(pipe, **arguments)
    assert type(raised.value).__name__ == error
    assert time.perf_counter() - started < 10  # steps=100000 hung in planning
    assert processors_of(pipe) == before


def test_edit_takes_numpy_integer_steps(pipe):
    np = pytest.importorskip("numpy")
    from p2p_teach.engine import edit

    result = edit(pipe, "a red circle", "a blue circle", steps=np.int64(2), progress=False)
    assert result.settings["steps"] == 2 and type(result.settings["steps"]) is int


def test_a_nan_weight_stops_the_edit_at_step_0_naming_the_cause(pipe):
    """Bug 7: damaged weights gave all-NaN latents, black images and exit 0."""
    from p2p_teach.engine import edit
    from p2p_teach.guards import NonFiniteError

    before = processors_of(pipe)
    weight = pipe.unet.conv_in.weight
    saved = weight.detach().clone()
    with torch.no_grad():
        weight[0, 0, 0, 0] = float("nan")
    try:
        with pytest.raises(NonFiniteError, match="noise prediction at step 0.*damaged model "
                                                 "weights"):  # fmt: skip
            edit(pipe, "a red circle", "a blue circle", steps=2, progress=False)
    finally:
        with torch.no_grad():
            weight.copy_(saved)
    assert processors_of(pipe) == before


def test_a_plain_pipe_call_during_an_edit_is_told_an_edit_is_running(pipe):
    """A pipe(...) in another thread while an edit runs died with 'IndexError: index 2'."""
    import threading

    from p2p_teach.engine import edit
    from p2p_teach.processors import PipelineBusyError

    errors = []

    def other_thread():
        try:
            pipe("a green square", num_inference_steps=1, output_type="latent")
        except Exception as error:  # noqa: BLE001 (recorded for the assertion)
            errors.append(error)

    def callback(info):
        if info.step == 0:
            thread = threading.Thread(target=other_thread)
            thread.start()
            thread.join()

    edit(pipe, "a red circle", "a blue circle", steps=2, callback=callback, progress=False)
    assert len(errors) == 1 and isinstance(errors[0], PipelineBusyError)
    assert "running a Prompt-to-Prompt edit" in str(errors[0]) and "Fix:" in str(errors[0])


def test_bytes_overwritten_in_the_unets_file_are_refused_at_load(tmp_path):
    """Bug 7 as reported: 0xFF bytes in the middle of the UNet's safetensors (fp16 NaN) gave
    exit 0 and black images; the load now names the damaged tensors (other models' NaN
    stops the edit: test_a_nan_weight_stops_the_edit_at_step_0_naming_the_cause)."""
    import shutil

    from p2p_teach.guards import WeightsNotLoadedError
    from p2p_teach.shapes import WEIGHTS_DIR, load_shapes_pipeline

    folder = tmp_path / "weights"
    shutil.copytree(WEIGHTS_DIR, folder)
    unet_file = folder / "unet" / "diffusion_pytorch_model.safetensors"
    raw = bytearray(unet_file.read_bytes())
    middle = len(raw) // 2
    raw[middle : middle + 65536] = b"\xff" * 65536
    unet_file.write_bytes(bytes(raw))
    with pytest.raises(WeightsNotLoadedError, match="unet.*holds NaN or Inf values.*damaged"):
        load_shapes_pipeline(folder)


@pytest.mark.parametrize("part", ["unet/diffusion_pytorch_model.safetensors",
                                  "text_encoder/model.safetensors"])  # fmt: skip
def test_a_truncated_weight_file_is_an_error_naming_it(tmp_path, part):
    import shutil

    from p2p_teach.guards import WeightsNotLoadedError
    from p2p_teach.shapes import WEIGHTS_DIR, load_shapes_pipeline

    folder = tmp_path / "weights"
    shutil.copytree(WEIGHTS_DIR, folder)
    path = folder / part
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(WeightsNotLoadedError, match=f"cannot be loaded.*{part.split('/')[0]}"
                                                    ".*Fix: reinstall"):  # fmt: skip
        load_shapes_pipeline(folder)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"source_prompt": 5}, "source prompt must be a string"),
        ({"target_prompt": ["a", "b"]}, "target prompt must be a string"),
        ({"seed": "1"}, "seed='1'"),
        ({"seed": -1}, "seed=-1"),
        ({"seed": 2**64}, "seed="),
        ({"guidance": "7"}, "guidance='7'"),
        ({"guidance": float("nan")}, "guidance=nan"),
        ({"steps": "10"}, "steps='10'"),
        ({"steps": 2.0}, "steps=2.0"),
        ({"callback": 5}, "callback must be callable"),
        ({"blend": "cat"}, "blend must be a LocalBlend"),
        ({"edit": 5}, "edit"),
        ({"cross_steps": 1.5}, "cross_steps=1.5"),
        ({"self_steps": (0.5, 0.2)}, "self_steps"),
        ({"record": True}, "record=True"),
        ({"record_slots": "some"}, "record_slots='some'"),
        ({"preview": "fast"}, "preview='fast'"),
        ({"height": 65}, "height=65"),
        ({"latents": [[0.0]]}, "latents must be a torch.Tensor"),
    ],
)
def test_wrong_types_and_values_for_edit_are_named_before_the_pipeline_is_touched(
    pipe, kwargs, message
):
    from p2p_teach.engine import edit

    before = processors_of(pipe)
    arguments = {"source_prompt": "a red circle", "target_prompt": "a blue circle", "steps": 2,
                 "progress": False, **kwargs}  # fmt: skip
    with pytest.raises((TypeError, ValueError, KeyError), match=re.escape(message)):
        edit(pipe, **arguments)
    assert processors_of(pipe) == before


def test_concurrent_saves_to_one_folder_leave_one_complete_result(tmp_path):
    import threading

    folder = tmp_path / "run"
    results = [make_result(colour=c) for c in range(1, 9)]
    errors = []

    def save(result):
        try:
            result.save(folder)
        except Exception as error:  # noqa: BLE001 (recorded for the assertion)
            errors.append(error)

    threads = [threading.Thread(target=save, args=(r,)) for r in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    loaded = EditResult.load(folder)
    assert any(same_result(loaded, result) for result in results)
    assert hidden_siblings(folder) == []


def test_a_link_to_a_result_folder_saves_into_the_folder_it_points_to(tmp_path):
    real = make_result(colour=1).save(tmp_path / "real")
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    make_result(colour=2).save(link)
    assert link.is_symlink() and same_result(EditResult.load(link), make_result(colour=2))


def test_show_and_load_name_what_they_were_given_instead(tmp_path):
    import p2p_teach
    from p2p_teach.atomic import IncompleteResultError
    from p2p_teach.engine import EditResult

    with pytest.raises(TypeError, match="show\\(\\) draws an edit's result, not str"):
        p2p_teach.show("out1")
    (tmp_path / "inv").mkdir()
    (tmp_path / "inv" / "inversion.json").write_text("{}")
    with pytest.raises(IncompleteResultError, match="holds a saved inversion.*Inversion.load"):
        EditResult.load(tmp_path / "inv")


# ============================================================================================
# Constructors and calls that gave raw errors: the problem and the fix, before any change
# ============================================================================================


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        ((5,), {}, TypeError, r"source must be a string, not int 5"),
        (("a cat", None), {}, TypeError, r"target must be a string, not NoneType"),
        (("a cat",), {"padding_shown": "x"}, ValueError,
         r"padding_shown='x': this widget's control runs from 0 to 10"),
    ],
)  # fmt: skip
def test_tokens_view_names_a_prompt_that_is_not_a_string(args, kwargs, error, message):
    import p2p_teach

    with pytest.raises(error, match=message + ".*Fix:"):
        p2p_teach.tokens_view(*args, **kwargs)


def test_mapper_view_refuses_an_unknown_preset_listing_the_examples():
    import p2p_teach
    from p2p_teach.mapper import EXAMPLES

    first = re.escape(repr(next(iter(EXAMPLES))))
    with pytest.raises(ValueError, match=f"preset=5 is not one of .*{first}.*Fix:"):
        p2p_teach.mapper_view(5)


def make_widget(name: str, *args, **kwargs):
    """A widget of ``p2p_teach.widgets`` by name (``edit_view``: the top-level call)."""
    import p2p_teach
    import p2p_teach.widgets

    make = p2p_teach.edit_view if name == "edit_view" else getattr(p2p_teach.widgets, name)
    return make(*args, **kwargs)


@pytest.mark.parametrize(
    ("name", "args", "kwargs", "message"),
    [
        ("edit_view", (), {"source": 5}, "source must be a string"),
        ("RefinePanel", (), {"target": 5}, "target must be a string"),
        ("ReweightPanel", (), {"prompt": 5}, "prompt must be a string"),
        ("LocalBlendPanel", (), {"source_word": ["cat"]}, "source_word must be a string"),
        ("SelfAttentionExplorer", (5, "a cat"), {}, "source must be a string"),
        ("PipelineTour", (), {"prompt": 5}, "prompt must be a string"),
    ],
)
def test_widgets_name_a_prompt_that_is_not_a_string(pipe, name, args, kwargs, message):
    """A non-string prompt raised traitlets' TraitError from inside the text box."""
    with pytest.raises(TypeError, match=message + r", not .*Fix: e\.g\."):
        make_widget(name, pipe, *args, **kwargs)


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("edit_view", ()),
        ("InjectionSweep", ()),
        ("InversionWidget", ()),
        ("SelfAttentionExplorer", ("a cat", "a dog")),
        ("ReweightPanel", ()),
        ("RefinePanel", ()),
        ("LocalBlendPanel", ()),
        ("PipelineTour", ()),
    ],
)
@pytest.mark.parametrize("not_a_pipe", [None, "runwayml/stable-diffusion-v1-5"])
def test_widgets_that_run_a_pipeline_check_it_when_made_not_at_run(name, args, not_a_pipe):
    """pipe=None was accepted and failed only when Run was pressed."""
    message = (
        f"needs a diffusers StableDiffusionPipeline .*this {type(not_a_pipe).__name__} "
        r"lacks \['unet'.*Fix: pipe = p2p_teach.load_pipeline"
    )
    with pytest.raises(TypeError, match=message) as error:
        make_widget(name, not_a_pipe, *args)
    if isinstance(not_a_pipe, str):  # a model id where the pipeline goes: load that model
        assert f"load_pipeline({not_a_pipe!r}), then pass pipe" in str(error.value)
    if name == "edit_view":
        assert str(error.value).startswith("EditRunner (p2p_teach.edit_view) needs")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shape": "hexagonn"}, "shape='hexagonn' is not one of .*'circle'.*'hexagon'"),
        ({"colour": 3}, "colour=3 is not one of .*'red'.*'blue'"),
        ({"colour": "Red"}, "colour='Red' is not one of"),
    ],
)
def test_the_inversion_widget_names_the_known_shapes_and_colours(pipe, kwargs, message):
    from p2p_teach.widgets import InversionWidget

    with pytest.raises(ValueError, match=message + ".*Fix: pass one of them"):
        InversionWidget(pipe, threaded=False, **kwargs)


@pytest.mark.parametrize(
    ("folder", "extra", "error", "message"),
    [
        (None, None, TypeError, r"save\(\) needs a folder as a str or path, not NoneType"),
        (5, None, TypeError, "not int 5"),
        ("run", {"x": 5}, TypeError, r"extra\['x'\] must be a function that writes the file"),
        ("run", ["a.png"], TypeError, "extra must be a dict of file name"),
        ("run", {"sub/a.png": print}, ValueError, "'sub/a.png' is not a plain file name"),
        ("run", {"manifest.json": print}, ValueError, "'manifest.json' is not a plain file"),
        ("run", {"": print}, ValueError, "'' is not a plain file name"),
        ("run", {"source.png": print}, ValueError, "'source.png' would overwrite a result"),
    ],
)  # fmt: skip
def test_save_checks_its_folder_and_extra_files_before_writing(tmp_path, folder, extra, error,
                                                               message):  # fmt: skip
    result = make_result()
    target = tmp_path / folder if isinstance(folder, str) else folder
    with pytest.raises(error, match=message + ".*Fix:"):
        result.save(target, extra=extra)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a hidden sibling


def test_save_writes_a_valid_extra_file(tmp_path):
    folder = make_result().save(tmp_path / "run", extra={"notes.txt": lambda p: p.write_text("x")})
    assert (folder / "notes.txt").read_text() == "x"


@pytest.mark.parametrize("processor_class", [dict, "PromptToPromptProcessor", None])
def test_edit_refuses_a_processor_class_that_is_not_a_p2p_processor(pipe, processor_class):
    """processor_class=dict failed inside the first step, from diffusers' attention call."""
    from p2p_teach.engine import edit, plan_edit

    before = processors_of(pipe)
    with pytest.raises(TypeError, match="processor_class must be a subclass of "
                                        "PromptToPromptProcessor.*Fix: leave it out"):  # fmt: skip
        edit(pipe, "a red circle", "a blue circle", steps=2, progress=False,
             processor_class=processor_class)  # fmt: skip
    with pytest.raises(TypeError, match="processor_class must be a subclass"):
        plan_edit(pipe, "a red circle", "a blue circle", steps=2, processor_class=processor_class)
    assert processors_of(pipe) == before


def test_edit_takes_a_subclass_of_the_p2p_processor():
    from p2p_teach.engine import _check_run_options
    from p2p_teach.processors import PromptToPromptProcessor

    class Mine(PromptToPromptProcessor):
        pass

    _check_run_options("auto", "used", None, processor_class=Mine)  # no error


@pytest.mark.parametrize(
    ("scale", "message"),
    [
        (1e30, r"Reweight weight of 'red' is 1e\+30, beyond ±10000: .*attention logits"),
        (-2e4, r"Reweight weight of 'red' is -20000.0, beyond ±10000"),
        (float("inf"), "Reweight weight of 'red' must be a finite number, not inf"),
        (float("nan"), "Reweight weight of 'red' must be a finite number, not nan"),
        ("3", "Reweight weight of 'red' must be a finite number, not '3'"),
        (True, "Reweight weight of 'red' must be a finite number, not True"),
    ],
)
def test_reweight_refuses_a_scale_that_would_overflow_naming_the_word(scale, message):
    """Reweight({'red': 1e30}) ran, then stopped with a NonFiniteError blaming the weights."""
    from p2p_teach.edits import Reweight

    with pytest.raises(ValueError, match=message + r".*Fix: .*Reweight\(\{'red': 3.0\}\)"):
        Reweight({"red": scale})
    assert Reweight({"red": 1e4, "circle": -1e4}).weights == {"red": 1e4, "circle": -1e4}
