"""The top level: a few names a learner needs, each resolving to its module's object, imported
lazily; the names it offered before still import from it."""

from __future__ import annotations

import subprocess
import sys

import pytest

import p2p_teach


def test_the_top_level_is_small_and_every_name_resolves():
    assert len(p2p_teach.__all__) <= 17
    assert len(set(p2p_teach.__all__)) == len(p2p_teach.__all__)
    for name in p2p_teach.__all__:
        module, attribute = p2p_teach._EXPORTS[name]
        defined = getattr(__import__(f"p2p_teach.{module}", fromlist=[attribute]), attribute)
        assert getattr(p2p_teach, name) is defined, name
    assert set(p2p_teach.__all__) <= set(dir(p2p_teach))


def test_views_are_the_widgets_and_show_is_the_result_figure():
    from p2p_teach.figures.images import result_figure
    from p2p_teach.widgets import AttentionTimeline, EditRunner, TokenExplorer

    assert p2p_teach.tokens_view is TokenExplorer and p2p_teach.edit_view is EditRunner
    assert p2p_teach.timeline_view is AttentionTimeline and p2p_teach.show is result_figure


def test_former_top_level_names_still_import_but_are_not_listed():
    from p2p_teach.processors import PipelineBusyError

    assert p2p_teach.PipelineBusyError is PipelineBusyError
    assert "PipelineBusyError" not in p2p_teach.__all__


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        p2p_teach.no_such_name  # noqa: B018


def test_importing_the_package_loads_neither_torch_nor_matplotlib():
    code = "import sys, p2p_teach; print('torch' in sys.modules, 'matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
