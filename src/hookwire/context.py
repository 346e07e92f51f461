"""Run and request context, carried by ``contextvars``.

Everything inside a run (LLM calls, tools, nested runs) receives the run as ``parent_run_id``,
the outermost run as ``trace_id``, the nesting ``depth``, and the request context
(``user_id``, ``correlation_id``, ...) as keywords. ``hookwire.trace`` (in ``tracing``) opens
runs; ``hookwire.request_context(...)`` sets request context alone, without a run. Runners and
bridges that open runs of their own use :func:`enter_run` / :func:`exit_run`, and dispatch
reads the keywords with :func:`hook_context`.

Context crosses ``await``, ``asyncio.create_task`` and ``contextvars.copy_context().run``, as
``contextvars`` do. A plain ``threading.Thread`` starts with an empty context: run the thread's
target in ``contextvars.copy_context().run`` to carry it over.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigurationError
from .events import REQUEST_CONTEXT_KEYS

__all__ = [
    "EMPTY_CONTEXT",
    "Run",
    "RunScope",
    "check_request_context",
    "current_context",
    "current_run",
    "enter_run",
    "exit_run",
    "hook_context",
    "request_context",
]

#: The context outside any run and request context (shared, never changed).
EMPTY_CONTEXT: dict[str, Any] = {}

#: What every hook inside the current run receives (only keys that have a value). Treated as
#: immutable: a new dict is set for each nested run, so dispatch can merge it without copying.
_CONTEXT: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar(
    "hookwire_context", default=EMPTY_CONTEXT
)
_RUN: contextvars.ContextVar[Run | None] = contextvars.ContextVar("hookwire_run", default=None)


def current_context() -> dict[str, Any]:
    """A copy of the keywords that hooks called here would receive from the context."""
    return dict(_CONTEXT.get())


def current_run() -> Run | None:
    """The innermost open run, or ``None`` outside any run."""
    return _RUN.get()


#: The keywords hooks called here receive from the context (only keys that have a value), as
#: the dict itself: callers read it and never change it. Dispatch calls it once per event, so
#: it is the context variable's own ``get``, not a function around it.
hook_context: Callable[[], dict[str, Any]] = _CONTEXT.get


def check_request_context(context: Mapping[str, Any]) -> dict[str, Any]:
    """``context`` without ``None`` values; ``ConfigurationError`` for a key that is not one of
    the request context's (``REQUEST_CONTEXT_KEYS``)."""
    unknown = set(context) - set(REQUEST_CONTEXT_KEYS)
    if unknown:
        raise ConfigurationError(
            f"unknown request context key(s) {sorted(unknown)}; the keys are "
            f"{', '.join(REQUEST_CONTEXT_KEYS)} (put anything else in metadata=...)"
        )
    return {k: v for k, v in context.items() if v is not None}


@dataclass(eq=False, repr=False, slots=True)
class Run:
    """An open run: its ids, name and depth. Set ``output`` to report it in ``on_run_end``,
    and ``end_keywords`` to add keywords to it (a runner's ``usage``, ``cost``, ``model``)."""

    name: str
    run_id: str
    trace_id: str
    parent_run_id: str | None
    depth: int
    output: Any = None
    end_keywords: Mapping[str, Any] | None = None

    def __repr__(self) -> str:
        return f"Run(name={self.name!r}, run_id={self.run_id!r}, depth={self.depth})"


class request_context:
    """Set request context (``user_id``, ``correlation_id``, ...) for the code inside.

    ``with hookwire.request_context(user_id="u1", request_id=req.id): ...``; also usable as
    ``async with``. Values add to (and override) any context already set.
    """

    __slots__ = ("_extra", "_token")

    def __init__(self, **context: Any) -> None:
        self._extra = check_request_context(context)
        self._token: contextvars.Token[dict[str, Any]] | None = None

    def __enter__(self) -> dict[str, Any]:
        ctx = {**_CONTEXT.get(), **self._extra}
        self._token = _CONTEXT.set(ctx)
        return ctx

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _CONTEXT.reset(self._token)
            self._token = None

    async def __aenter__(self) -> dict[str, Any]:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__()


#: What :func:`enter_run` returns and :func:`exit_run` takes back.
RunScope = tuple["contextvars.Token[dict[str, Any]]", "contextvars.Token[Run | None]"]


def enter_run(run: Run, child_context: dict[str, Any]) -> RunScope:
    """Make ``run`` the current run, and ``child_context`` the keywords of every hook inside it.

    ``child_context`` must hold the run's ``trace_id``, ``parent_run_id`` (the run's own id)
    and ``depth`` (the run's depth + 1), plus the request context, tags and metadata to carry;
    it is shared with dispatch, so it is not changed afterwards. Undo with :func:`exit_run`
    in the same context (a ``finally``), innermost first.
    """
    return _CONTEXT.set(child_context), _RUN.set(run)


def exit_run(scope: RunScope) -> None:
    """Restore the context that was current before :func:`enter_run` returned ``scope``."""
    _CONTEXT.reset(scope[0])
    _RUN.reset(scope[1])
