"""Names a package imports on first use (PEP 562): importing the package stays cheap, and a
name whose optional dependency is missing fails only when it is used."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Mapping
from typing import Any

__all__ = ["LazyFilter", "LazyNames", "missing_extra"]


class LazyNames:
    """What a package's ``__getattr__`` returns: ``modules`` maps each lazy name to the
    module, relative to ``package``, that defines it.

    ``def __getattr__(name: str) -> Any: return _LAZY(name)`` in the package, with
    ``_LAZY = LazyNames(__name__, {...})``.
    """

    __slots__ = ("_namespace", "_package", "modules")

    def __init__(self, package: str, modules: Mapping[str, str]) -> None:
        self._package = package
        #: Each lazy name and the module that defines it.
        self.modules = modules
        self._namespace = sys.modules[package].__dict__

    def __call__(self, name: str) -> Any:
        """``name`` imported now and kept in the package's namespace, so that later lookups
        find it there; ``AttributeError`` if it is not a lazy name."""
        module = self.modules.get(name)
        if module is None:
            raise AttributeError(f"module {self._package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, self._package), name)
        self._namespace[name] = value
        return value


class LazyFilter:
    """A ``logging`` filter that imports the filter class ``name`` of ``module`` when the
    first record passes, and hands every record to an instance of it: a logger can carry a
    filter whose module is costly to import, at no cost until something is logged."""

    __slots__ = ("_filter", "_module", "_name")

    def __init__(self, module: str, name: str) -> None:
        self._module = module
        self._name = name
        self._filter: logging.Filter | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether the real filter lets ``record`` through (having changed it as it does)."""
        if self._filter is None:
            self._filter = getattr(importlib.import_module(self._module), self._name)()
        return bool(self._filter.filter(record))


def missing_extra(exc: ModuleNotFoundError, what: str, extra: str) -> ModuleNotFoundError:
    """The error for a module of an optional dependency that is not installed: ``what`` needs
    it, and ``pip install 'hookwire[extra]'`` brings it (raise it ``from exc``)."""
    return ModuleNotFoundError(f"{what}: pip install 'hookwire[{extra}]'", name=exc.name)
