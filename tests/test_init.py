"""The public surface: __all__ is sorted, complete, and every name resolves."""

from __future__ import annotations

import importlib

import pytest

import hookwire
import hookwire.callbacks
import hookwire.errors

EAGER = [
    "AsyncBaseCallback",
    "BaseCallback",
    "CallbackManager",
    "LLMResponse",
    "ToolCall",
    "Usage",
    "current_context",
    "current_run",
    "new_id",
    "request_context",
    "trace",
]


@pytest.mark.parametrize("module", [hookwire, hookwire.callbacks, hookwire.errors])
def test_all_is_sorted_and_unique(module: object) -> None:
    names = list(module.__all__)  # type: ignore[attr-defined]

    # isort-style, as ruff's RUF022 keeps it: CONSTANTS, then Classes, then functions.
    def group(n: str) -> tuple[int, str]:
        return (0 if n.isupper() else 1 if n[0].isupper() else 2, n)

    assert names == sorted(names, key=group)
    assert len(names) == len(set(names))


def test_eager_names_import_without_the_runtime() -> None:
    for name in EAGER:
        assert getattr(hookwire, name) is not None


def test_every_error_is_a_hookwire_error() -> None:
    for name in hookwire.errors.__all__:
        cls = getattr(hookwire.errors, name)
        assert issubclass(cls, hookwire.errors.HookwireError)
        assert cls.__doc__, f"{name} has no docstring"


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError):
        hookwire.NoSuchThing  # noqa: B018
    with pytest.raises(AttributeError):
        hookwire.callbacks.NoSuchThing  # noqa: B018


def test_lazy_names_resolve_when_their_module_exists() -> None:
    for name, module in hookwire._LAZY.modules.items():
        try:
            importlib.import_module(module, "hookwire")
        except ModuleNotFoundError:
            continue
        assert getattr(hookwire, name) is not None
