"""``trace()``: a run around a block or a function, sync and async.

``hookwire.trace(name, **context)`` opens a run: it emits ``on_run_start`` / ``on_run_end``
to its callbacks, and makes the run the context of everything inside (see ``context``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar, cast

from .context import (
    EMPTY_CONTEXT,
    Run,
    RunScope,
    check_request_context,
    enter_run,
    exit_run,
    hook_context,
)
from .dispatch import CallbackManager, Callbacks
from .errors import ConfigurationError
from .frozen import freeze
from .ids import new_id
from .sampling import check_rate, end_trace_rate, set_trace_rate

__all__ = ["trace"]

F = TypeVar("F", bound=Callable[..., Any])
_EMPTY = EMPTY_CONTEXT


class trace:
    """Open a run around a block or a function.

    ``name`` names the run. ``callbacks`` (a list of handlers or a ``CallbackManager``) receive
    ``on_run_start(input, name=...)`` and ``on_run_end(output, name=..., error=...)``.
    ``tags`` and ``metadata`` add to the enclosing run's; ``**context`` sets request context
    (``user_id``, ``org_id``, ``correlation_id``, ``request_id``, ``conversation_id``,
    ``agent``).

    As a context manager it yields the ``Run`` (set ``run.output`` to report an output); as a
    decorator, on sync or async functions, the call's arguments are the input and its return
    value the output. A fresh run is opened for each use.

    ``sample_rate`` samples the trace this run opens (an outermost run; a nested run is part
    of its trace's decision and its ``sample_rate`` is ignored): the handlers that sample
    (given a ``sample_rate`` of their own, ``1.0`` included) keep it if it is in the smaller of
    the two rates, decided from the trace id as theirs is (``hookwire.sampling``). Handlers
    that do not sample, and accounting, budgets and chat history, see every trace.
    """

    def __init__(
        self,
        name: str,
        *,
        callbacks: Callbacks | None = None,
        input: Any = None,
        tags: Iterable[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        sample_rate: float | None = None,
        **context: Any,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError("trace() needs a non-empty name, e.g. trace('checkout')")
        self.name = name
        self.input = input
        self._callbacks = callbacks
        self._manager: CallbackManager | None = None
        self._tags = tuple(tags) if tags else ()
        self._metadata = dict(metadata) if metadata else None
        self._run_id = run_id
        self._sample_rate = None if sample_rate is None else check_rate(sample_rate)
        self._sampled: str | None = None
        self._context = check_request_context(context) if context else _EMPTY
        self._scope: RunScope | None = None
        self.run: Run | None = None
        self._start_kw: dict[str, Any] = {}
        self._child: dict[str, Any] = _EMPTY

    # -- shared by the sync and async paths --------------------------------------------------

    def _get_manager(self) -> CallbackManager | None:
        if self._manager is None and self._callbacks is not None:
            self._manager = CallbackManager.ensure(self._callbacks)
        return self._manager

    def _open(self) -> Run:
        parent = hook_context()
        run_id = self._run_id or new_id()
        if not parent and not self._context and not self._tags and not self._metadata:
            # An outermost run with nothing to inherit: the dicts below, built directly.
            name = self.name
            self._start_kw = {"trace_id": run_id, "run_id": run_id, "name": name}
            self._child = {"trace_id": run_id, "parent_run_id": run_id, "depth": 1}
            run = self.run = Run(name, run_id, run_id, None, 0)
            if self._sample_rate is not None:
                self._sampled = run_id
                set_trace_rate(run_id, self._sample_rate)
            return run
        trace_id = parent.get("trace_id") or run_id
        depth = parent.get("depth", 0)
        own = {**parent, **self._context}
        if self._tags:
            own["tags"] = (*parent.get("tags", ()), *self._tags)
        if self._metadata:
            # read-only: a handler's edit would otherwise reach later events and runs
            own["metadata"] = freeze({**parent.get("metadata", _EMPTY), **self._metadata})
        own["trace_id"] = trace_id
        # This run's own events: its parent is the enclosing run (already in ``parent``).
        self._start_kw = {**own, "run_id": run_id, "name": self.name}
        child = dict(own)
        child["parent_run_id"] = run_id
        child["depth"] = depth + 1
        self._child = child
        run = Run(self.name, run_id, trace_id, parent.get("parent_run_id"), depth)
        self.run = run
        if self._sample_rate is not None and trace_id == run_id:
            self._sampled = run_id
            set_trace_rate(run_id, self._sample_rate)
        return run

    def _activate(self, run: Run) -> None:
        # Set only after on_run_start went out, so the run's own start event carries its
        # parent's context rather than its own.
        self._scope = enter_run(run, self._child)

    def _close(self) -> None:
        if self._scope is not None:
            exit_run(self._scope)
            self._scope = None

    def _forget(self) -> None:
        # After the run's end event: that event is part of the trace's decision too.
        if self._sampled is not None:
            end_trace_rate(self._sampled)
            self._sampled = None

    def _end_kw(self, error: BaseException | None) -> dict[str, Any]:
        kw = dict(self._start_kw)
        if error is not None:
            kw["error"] = error
        if self.run is not None and self.run.end_keywords:
            kw.update(self.run.end_keywords)
        return kw

    # -- sync ---------------------------------------------------------------------------------

    def __enter__(self) -> Run:
        manager = self._get_manager()
        run = self._open()
        if manager is not None:
            manager.on_run_start(self.input, **self._start_kw)
        self._activate(run)
        return run

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close()
        manager = self._manager
        try:
            if manager is not None and self.run is not None:
                manager.on_run_end(self.run.output, **self._end_kw(exc))
        finally:
            self._forget()

    # -- async --------------------------------------------------------------------------------

    async def __aenter__(self) -> Run:
        manager = self._get_manager()
        run = self._open()
        if manager is not None:
            await manager.aon_run_start(self.input, **self._start_kw)
        self._activate(run)
        return run

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close()
        manager = self._manager
        try:
            if manager is not None and self.run is not None:
                await manager.aon_run_end(self.run.output, **self._end_kw(exc))
        finally:
            self._forget()

    # -- decorator ----------------------------------------------------------------------------

    def _fresh(self, input: Any) -> trace:
        t = trace(
            self.name,
            callbacks=self._manager or self._callbacks,
            input=input,
            tags=self._tags,
            metadata=self._metadata,
            sample_rate=self._sample_rate,
            **self._context,
        )
        return t

    def __call__(self, fn: F) -> F:
        sig = inspect.signature(fn)

        def _input(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
            try:
                bound = sig.bind(*args, **kwargs)
            except TypeError:
                return {"args": args, "kwargs": kwargs}
            return dict(bound.arguments)

        if inspect.iscoroutinefunction(fn):
            afn = cast(Callable[..., Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                async with self._fresh(_input(args, kwargs)) as run:
                    run.output = await afn(*args, **kwargs)
                    return run.output

            return cast(F, awrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._fresh(_input(args, kwargs)) as run:
                run.output = fn(*args, **kwargs)
                return run.output

        return cast(F, wrapper)
