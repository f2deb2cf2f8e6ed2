"""Lazy re-exports for a package's ``__init__``: a name imports its module on first use.

The training and evaluation packages re-export their modules' names this way, so importing
the package stays cheap and its command line can set the environment (``OMP_WAIT_POLICY``)
before torch loads::

    __getattr__, __dir__ = lazy_exports(__name__, {"main": "cli", "TrainConfig": "config"})
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str, exports: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module ``__getattr__`` and ``__dir__`` for ``package`` that serve ``exports``
    (public name → the submodule that defines it)."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(f".{exports[name]}", package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
