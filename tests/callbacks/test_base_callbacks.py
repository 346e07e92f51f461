"""BaseCallback and AsyncBaseCallback: their hooks come from events.HOOKS."""

from __future__ import annotations

import ast
import inspect
from typing import Any

import pytest

from hookwire import CallbackManager
from hookwire.callbacks import base
from hookwire.callbacks.base import AsyncBaseCallback, BaseCallback
from hookwire.events import HOOKS


def test_every_hook_is_a_documented_no_op_with_the_hooks_parameters() -> None:
    for hook, spec in HOOKS.items():
        for cls in (BaseCallback, AsyncBaseCallback):
            fn = getattr(cls, hook)
            assert fn.__hookwire_noop__, (cls, hook)
            assert fn.__name__ == hook and fn.__qualname__ == f"{cls.__name__}.{hook}"
            assert fn.__doc__ == spec.description != ""
            params = list(inspect.signature(fn).parameters)
            assert params == ["self", *spec.args, "kwargs"]
            assert inspect.iscoroutinefunction(fn) is (cls is AsyncBaseCallback)
        assert getattr(BaseCallback, hook)(object(), *spec.args, extra=1) is None


@pytest.mark.parametrize("cls", [BaseCallback, AsyncBaseCallback])
def test_the_declarations_for_type_checkers_are_the_hook_table(cls: type) -> None:
    # Both classes declare hookwire's own hooks under TYPE_CHECKING for mypy and editors; at
    # run time they come from events.HOOKS. The two must name the same hooks and arguments.
    tree = ast.parse(inspect.getsource(base))
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls.__name__)
    block = next(n for n in node.body if isinstance(n, ast.If))
    kind = ast.AsyncFunctionDef if cls is AsyncBaseCallback else ast.FunctionDef
    declared = {f.name: [a.arg for a in f.args.args[1:]] for f in block.body if isinstance(f, kind)}
    assert len(declared) == len(block.body)
    assert declared == {h: list(spec.args) for h, spec in HOOKS.items()}


async def test_the_async_no_ops_are_awaitable() -> None:
    assert await AsyncBaseCallback().on_llm_end("r", run_id="x") is None


def test_ignore_makes_an_overridden_hook_a_no_op_for_one_instance() -> None:
    class Both(BaseCallback):
        def __init__(self, tokens: bool) -> None:
            self.got: list[str] = []
            if not tokens:
                self.ignore_hooks("on_llm_new_token")

        def on_llm_new_token(self, token: str, **kw: Any) -> None:
            self.got.append(token)

        def on_llm_end(self, response: Any, **kw: Any) -> None:
            self.got.append("end")

    quiet, loud = Both(False), Both(True)
    manager = CallbackManager([quiet, loud])
    manager.on_llm_new_token("t")
    manager.on_llm_end("r")
    assert quiet.got == ["end"] and loud.got == ["t", "end"]


async def test_ignore_on_an_async_handler() -> None:
    class Async(AsyncBaseCallback):
        def __init__(self) -> None:
            self.got: list[str] = []
            self.ignore_hooks("on_llm_end")

        async def on_llm_end(self, response: Any, **kw: Any) -> None:
            self.got.append("end")

    handler = Async()
    assert handler.on_llm_end.__hookwire_noop__
    assert await handler.on_llm_end("r") is None and handler.got == []
