"""The package's shape, kept true by parsing it: imports flow one way along the data flow
(no cycle, no module importing a later stage), and no function is over 80 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "p2p_teach"

# The data flow, first to last. A module may import its own stage and earlier ones. Imports
# inside functions and under TYPE_CHECKING count too: they are dependencies all the same.
STAGES: list[tuple[str, ...]] = [
    ("p2p_teach", "defaults", "compat", "settings", "atomic"),  # no imports of the package
    ("tokens", "guards"),  # prompt → 77 CLIP slots; checks of prompts, weights and values
    ("mapper", "alignment", "schedules"),  # which slot maps to which; when to inject
    ("edits",),  # M, a, w and their per-step coefficients
    ("layers", "history"),  # the UNet's attention layers, and where their maps are kept
    ("processors",),  # the hook into diffusers: attention with Edit(M_t, M*_t, t)
    ("shapes", "shapes.data", "shapes.model"),  # the built-in model's parts
    ("models",),  # getting a pipeline
    ("engine",),  # Algorithm 1
    # reading results, the lessons, the exercises
    ("measures", "timeline", "sweep", "lessons", "tour", "self_attention", "exercises"),
    ("inversion", "course"),  # real images to edit; the course's model, steps and prompts
    ("shapes.train", "shapes.evaluate", "shapes.readers", "shapes.swap_study"),  # the model's
    ("claims",),  # the lessons' claims, measured on the built-in model
    ("figures",),  # data in, matplotlib Figure out
    ("widgets",),  # thin ipywidgets views
    ("cli",),  # the command line
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(module: str) -> set[str]:
    """The package modules ``module`` imports (``from x import y`` counts x, and x.y if y is
    a module)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            found.add(origin)
            found.update(f"{origin}.{alias.name}" for alias in node.names)
    return {name for name in found if name in MODULES and name != module}


GRAPH = {module: _imports(module) for module in MODULES}


def _stage(module: str) -> int:
    """The stage of a module: of the longest stage entry naming it or a package above it."""
    short = module.removeprefix("p2p_teach.")
    best, best_length = None, -1
    for index, stage in enumerate(STAGES):
        for entry in stage:
            if (short == entry or short.startswith(entry + ".")) and len(entry) > best_length:
                best, best_length = index, len(entry)
    if best is None:
        raise AssertionError(f"{module} is in no stage: add it to STAGES in this test")
    return best


def test_every_module_has_a_stage():
    for module in MODULES:
        _stage(module)


def test_the_import_graph_has_no_cycle():
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for imported in sorted(GRAPH[module]):
            if state.get(imported) == "open":
                cycle = path[path.index(imported) :] + [imported]
                raise AssertionError("import cycle: " + " → ".join(cycle))
            if imported not in state:
                visit(imported, [*path, imported])
        state[module] = "done"

    for module in MODULES:
        if module not in state:
            visit(module, [module])


def test_no_module_imports_a_later_stage():
    backwards = [
        f"{module} (stage {_stage(module)}) imports {imported} (stage {_stage(imported)})"
        for module, imported_modules in GRAPH.items()
        for imported in imported_modules
        if _stage(imported) > _stage(module)
    ]
    assert not backwards, "\n".join(backwards)


def test_compute_never_imports_figures_or_widgets_and_figures_never_widgets():
    for module, imported_modules in GRAPH.items():
        short = module.removeprefix("p2p_teach.")
        for imported in imported_modules:
            kind = imported.removeprefix("p2p_teach.").split(".")[0]
            if short.split(".")[0] not in ("figures", "widgets", "cli", "p2p_teach"):
                assert kind not in ("figures", "widgets"), f"{module} imports {imported}"
            if short.startswith("figures"):
                assert kind != "widgets", f"{module} imports {imported}"


def test_the_checks_see_a_backward_import():
    """The stage check is not vacuous: a made-up import of a widget from tokens is caught."""
    assert _stage("p2p_teach.widgets.edit_runner") > _stage("p2p_teach.tokens")
    assert "p2p_teach.tokens" in GRAPH["p2p_teach.mapper"]  # `from .tokens import …` is seen
    assert "p2p_teach.figures.images" in GRAPH["p2p_teach.widgets.edit_runner"]


# --------------------------------------------------------------------------------------------
# Function length
# --------------------------------------------------------------------------------------------

MAX_LINES = 80


def _function_lengths(path: Path) -> list[tuple[str, int, int]]:
    """(name, first line, lines without the docstring) of every function in ``path``."""
    lengths = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
        lines = node.end_lineno - first + 1
        body = node.body[0]
        value = body.value if isinstance(body, ast.Expr) else None
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            lines -= body.end_lineno - body.lineno + 1
        lengths.append((node.name, node.lineno, lines))
    return lengths


@pytest.mark.parametrize("path", sorted(MODULES.values()), ids=lambda p: str(p.name))
def test_no_function_is_over_80_lines(path):
    too_long = [
        f"{path.relative_to(PACKAGE.parent)}:{line} {name}: {lines} lines"
        for name, line, lines in _function_lengths(path)
        if lines > MAX_LINES
    ]
    assert not too_long, "\n".join(too_long)


def test_the_length_count_leaves_out_the_docstring(tmp_path):
    source = tmp_path / "example.py"
    body = "\n".join(f"    x{i} = {i}" for i in range(3))
    source.write_text(f'def f():\n    """One.\n\n    Two.\n    """\n{body}\n', "utf-8")
    assert _function_lengths(source) == [("f", 1, 4)]  # the def line and three statements
