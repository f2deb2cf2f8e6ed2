"""Notebook 07 both ways.

* As distributed (blanks): nbval runs the saved notebook; here we check that its blanks raise
  ``NotImplementedError`` with a one-line hint and that every check reports "not written yet".
* Filled in: the cells tagged ``exercise`` (the blanks) are replaced by imports of the reference
  solutions (:mod:`p2p_teach.exercises.solutions`), the notebook is executed with nbclient, and
  every check must pass and the learner's edits equal the toolkit's within 1/255. Nothing in
  the notebook knows about this: the tag marks the cells a learner fills in.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "07_build_prompt_to_prompt.ipynb"
EXERCISES = (
    "build_mapper",
    "replace_attention",
    "injection_table",
    "refine_attention",
    "local_blend_mask",
)
FINAL_CHECK = """
for name, result in (("swap", swap_check), ("refine", refine_check)):
    assert result.ok and result.max_difference <= 1, (name, str(result))
    print(name, "edit matches, largest difference", result.max_difference)
"""


def exercise_cells(notebook) -> list:
    return [cell for cell in notebook.cells if "exercise" in cell.metadata.get("tags", [])]


def defined_names(source: str) -> list[str]:
    return re.findall(r"^def (\w+)\(", source, flags=re.MULTILINE)


def output_text(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        parts.append(output.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def test_each_blank_raises_not_implemented_with_a_one_line_hint():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    cells = exercise_cells(notebook)
    assert [name for cell in cells for name in defined_names(cell.source)] == list(EXERCISES)
    for cell in cells:
        hints = re.findall(r'raise NotImplementedError\("([^"\n]+)"\)', cell.source)
        assert len(hints) == 1, cell.source


def test_the_saved_notebook_reports_every_exercise_not_written_yet():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    texts = [output_text(cell) for cell in notebook.cells if cell.cell_type == "code"]
    for name in EXERCISES:
        assert any(text.startswith(f"{name}: not written yet (") for text in texts), name
    edits = [text for text in texts if text.startswith("your ")]
    assert len(edits) == 2 and all("not written yet; still blank:" in t for t in edits)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_filled_in_with_the_solutions_every_check_passes_and_the_edits_match():
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in exercise_cells(notebook):
        names = ", ".join(defined_names(cell.source))
        cell.source = f"from p2p_teach.exercises.solutions import {names}"
    notebook.cells.append(nbformat.v4.new_code_cell(FINAL_CHECK.strip()))
    # one torch thread, as conftest gives the in-process tests: the model's ops are tiny
    notebook.cells.insert(0, nbformat.v4.new_code_cell("import torch\ntorch.set_num_threads(1)"))
    NotebookClient(
        notebook, timeout=600, kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    ).execute()  # fmt: skip
    texts = [output_text(cell) for cell in notebook.cells if cell.cell_type == "code"]
    for name in EXERCISES:
        assert any(re.match(rf"{name}: correct on all \d+ cases\.", t) for t in texts), name
    assert "swap edit matches" in texts[-1] and "refine edit matches" in texts[-1]
    assert not any("not written yet" in text for text in texts)
