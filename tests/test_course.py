"""setup(): which model it picks and why, with the GPU and the hub stood in for."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import p2p_teach
from p2p_teach import course
from p2p_teach.defaults import SD_V1
from p2p_teach.defaults import SHAPES as SHAPES_DEFAULTS
from p2p_teach.lessons import SHAPES, SLIDES
from p2p_teach.models import ModelNotAvailableError


def fake_sd_pipeline(name: str) -> SimpleNamespace:
    """What load_pipeline returns for a hub id on a GPU, without the 2 GB."""
    unet = SimpleNamespace(device=torch.device("cuda"), dtype=torch.float16)
    return SimpleNamespace(name_or_path=name, unet=unet)


@pytest.fixture
def world(monkeypatch, pipe):
    """A machine whose GPU, hub and loads the test decides; ``world.loaded`` records loads."""
    state = SimpleNamespace(cuda=False, reachable=(False, "not cached"), loaded=[], fail=set(),
                            probes=0)  # fmt: skip

    def reachable(model_id):
        state.probes += 1
        return state.reachable

    def load(model, verbose=True):
        state.loaded.append(model)
        if model in state.fail:
            raise ModelNotAvailableError(f"could not load {model!r}")
        return pipe if model in ("builtin", "tiny-random") else fake_sd_pipeline(model)

    monkeypatch.delenv(course.MODEL_VARIABLE, raising=False)
    monkeypatch.setattr(course, "cuda_available", lambda: state.cuda)
    monkeypatch.setattr(course, "weights_reachable", reachable)
    monkeypatch.setattr(course, "load_pipeline", load)
    return state


@pytest.fixture
def shapes_named(monkeypatch):
    """The fixture's tiny pipeline answers as the built-in shapes model does."""
    monkeypatch.setattr(course, "model_defaults", lambda pipe: SD_V1 if
                        isinstance(pipe, SimpleNamespace) else SHAPES_DEFAULTS)  # fmt: skip
    monkeypatch.setattr(course, "lesson_prompts", lambda pipe: SLIDES if
                        isinstance(pipe, SimpleNamespace) else SHAPES)  # fmt: skip


@pytest.mark.parametrize(
    ("available", "used"), [(1, 1), (2, 2), (16, 2)]
)
def test_without_a_gpu_the_builtin_model_runs_on_a_few_threads_and_no_hub_is_asked(
    world, shapes_named, capsys, monkeypatch, available, used
):
    threads = []
    monkeypatch.setattr(course.torch, "get_num_threads", lambda: available)
    monkeypatch.setattr(course.torch, "set_num_threads", threads.append)
    chosen = course.setup()
    assert threads == [used] and chosen.cpu_threads == used
    assert world.loaded == ["builtin"] and world.probes == 0
    assert chosen.steps == course.BUILTIN_STEPS and chosen.prompts is SHAPES
    assert chosen.model == "p2p_teach/shapes"
    printed = capsys.readouterr().out
    assert "no CUDA GPU" in printed and "Change runtime type" in printed


def test_a_gpu_with_reachable_weights_runs_sd15_in_its_steps_and_prompts(
    world, shapes_named, capsys, monkeypatch
):
    world.cuda, world.reachable = True, (True, "cached on this machine")
    monkeypatch.setattr(course.torch, "set_num_threads", lambda n: pytest.fail("threads set"))
    chosen = course.setup()
    assert world.loaded == [course.SD15] and chosen.model == course.SD15
    assert chosen.steps == course.SD_STEPS and chosen.prompts is SLIDES
    assert chosen.guidance == 7.5 and not chosen.builtin
    printed = capsys.readouterr().out
    assert "(cuda, float16), 50 steps" in printed and "weights are cached" in printed


def test_a_gpu_without_the_weights_falls_back_to_the_builtin_model(world, shapes_named):
    world.cuda, world.reachable = True, (False, "not cached, and the hub did not answer (X)")
    chosen = course.setup(verbose=False)
    assert world.loaded == ["builtin"] and chosen.steps == course.BUILTIN_STEPS
    assert "hub did not answer" in chosen.reason


def test_a_failed_automatic_load_falls_back_but_a_named_one_raises(world, shapes_named):
    world.cuda, world.reachable = True, (True, "downloadable")
    world.fail = {course.SD15}
    chosen = course.setup(verbose=False)
    assert world.loaded == [course.SD15, "builtin"] and "loading it failed" in chosen.reason
    with pytest.raises(ModelNotAvailableError):
        course.setup(course.SD15, verbose=False)


def test_one_line_changes_the_model_argument_or_environment(world, shapes_named, monkeypatch):
    world.cuda, world.reachable = True, (True, "cached")
    chosen = course.setup("tiny-random", verbose=False)
    assert world.loaded == ["tiny-random"] and chosen.reason == "asked for by setup's argument"
    monkeypatch.setenv(course.MODEL_VARIABLE, "builtin")
    chosen = course.setup(verbose=False)
    assert world.loaded[-1] == "builtin" and "$P2P_TEACH_MODEL" in chosen.reason
    assert world.probes == 0  # a named model is loaded as asked, nothing probed
    with pytest.raises(ValueError, match="model=''"):
        course.choose_model("")


def hub(monkeypatch, cached, answer):
    import huggingface_hub

    calls = []

    def model_info(self, model_id, timeout=None):
        calls.append(model_id)
        if isinstance(answer, Exception):
            raise answer
        return SimpleNamespace(id=model_id)

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache",
                        lambda repo, name: cached)  # fmt: skip
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", model_info)
    return calls


def test_weights_reachable_looks_in_the_cache_then_asks_the_hub(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    calls = hub(monkeypatch, "/cache/model_index.json", None)
    assert course.weights_reachable(course.SD15) == (True, "cached on this machine")
    assert calls == []
    calls = hub(monkeypatch, None, None)
    reachable, where = course.weights_reachable(course.SD15)
    assert reachable and "downloadable" in where and calls == [course.SD15]
    hub(monkeypatch, None, ConnectionError("no network"))
    assert course.weights_reachable(course.SD15) == (
        False, "not cached, and the hub did not answer (ConnectionError)"
    )  # fmt: skip
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    calls = hub(monkeypatch, None, None)
    assert course.weights_reachable(course.SD15)[0] is False and calls == []


def test_the_first_cell_is_python_once_the_install_line_is_ipythons():
    cell = course.first_cell()
    assert cell.count("p2p_teach.setup()") == 1 and "%pip install -q {INSTALL_FROM}" in cell
    compile(cell.replace("%pip install", "pass  #"), "first cell", "exec")
    assert p2p_teach.setup is course.setup


NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name[:2])
def test_every_notebook_opens_with_the_setup_cell(path):
    cells = json.loads(path.read_text("utf-8"))["cells"]
    first = next(cell for cell in cells if cell["cell_type"] == "code")
    assert "".join(first["source"]) == course.first_cell()


def _copy_notebooks(folder: Path) -> list[Path]:
    copies = []
    for path in NOTEBOOKS[:2]:
        copy = folder / path.name
        copy.write_text(path.read_text("utf-8"), "utf-8")
        copies.append(copy)
    return copies


def test_the_install_source_is_set_in_every_notebook_at_once(tmp_path, capsys):
    copies = _copy_notebooks(tmp_path)
    url = "git+https://example.org/course/p2p_teach.git"
    assert course.main(["--source", url, *map(str, copies)]) == 0
    for copy, original in zip(copies, NOTEBOOKS):
        cells, before = (json.loads(p.read_text("utf-8"))["cells"] for p in (copy, original))
        first = next(cell for cell in cells if cell["cell_type"] == "code")
        assert "".join(first["source"]) == course.first_cell(url)
        assert f'INSTALL_FROM = "{url}"' in "".join(first["source"])
        assert cells[1:] != [] and len(cells) == len(before)  # nothing else moved
        assert [c["source"] for c in cells if c is not first] == [
            c["source"] for c in before if "".join(c["source"]) != course.first_cell()]
    assert capsys.readouterr().out.count(f"installs from {url}") == 2
    course.set_install_source(copies, "..")  # and back
    assert [p.read_text("utf-8") for p in copies] == [p.read_text("utf-8") for p in NOTEBOOKS[:2]]


def test_a_notebook_without_the_setup_cell_is_refused_and_none_is_changed(tmp_path):
    copies = _copy_notebooks(tmp_path)
    notebook = json.loads(copies[1].read_text("utf-8"))
    first = next(cell for cell in notebook["cells"] if cell["cell_type"] == "code")
    first["source"] = ["import p2p_teach\n"]
    copies[1].write_text(json.dumps(notebook), "utf-8")
    before = [p.read_text("utf-8") for p in copies]
    with pytest.raises(ValueError, match=r"not the course's setup cell.*no notebook was changed"):
        course.set_install_source(copies, "git+https://example.org/p2p_teach.git")
    assert [p.read_text("utf-8") for p in copies] == before
    with pytest.raises(ValueError, match=r"source='a \"b': .*on one line without quotes"):
        course.first_cell('a "b')
