"""Run and request context, carried by ``contextvars``.

``hookwire.trace(name, **context)`` opens a run: it emits ``on_run_start`` / ``on_run_end``
to its callbacks, and everything inside it (LLM calls, tools, nested runs) receives the run as
``parent_run_id``, the outermost run as ``trace_id``, the nesting ``depth``, and the request
context (``user_id``, ``correlation_id``, ...) as keywords. ``hookwire.request_context(...)``
sets request context alone, without a run.

Context crosses ``await``, ``asyncio.create_task`` and ``contextvars.copy_context().run``, as
``contextvars`` do. A plain ``threading.Thread`` starts with an empty context: run the thread's
target in ``contextvars.copy_context().run`` to carry it over.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import itertools
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .errors import ConfigurationError
from .events import REQUEST_CONTEXT_KEYS

if TYPE_CHECKING:
    from .dispatch import CallbackManager, Callbacks

__all__ = [
    "Run",
    "current_context",
    "current_run",
    "new_id",
    "request_context",
    "trace",
]

F = TypeVar("F", bound=Callable[..., Any])

_EMPTY: dict[str, Any] = {}

#: What every hook inside the current run receives (only keys that have a value). Treated as
#: immutable: a new dict is set for each nested run, so dispatch can merge it without copying.
_CONTEXT: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar(
    "hookwire_context", default=_EMPTY
)
_RUN: contextvars.ContextVar[Run | None] = contextvars.ContextVar("hookwire_run", default=None)

# -- ids ------------------------------------------------------------------------------------------
#
# Run ids are UUIDv7 text (RFC 9562, "method 1": a counter in the random bits). Formatting a
# 128-bit number as text is what an id costs (``str(uuid_utils.uuid7())``: 0.2 µs, a fifth of
# an LLM call's dispatch), so an id is a cached prefix plus one of 4,096 ready-made 3-digit
# tails: the prefix (the millisecond, this process's random bits, the counter's high bits) is
# rebuilt once per millisecond or 4,096 ids, and an id in between is one string concatenation.
#
# Layout: tttttttt-tttt-7rrr-Vrrr-hhhhhhhhhlll, where t is the Unix time in milliseconds, r
# 26 random bits drawn per process, h the counter's high bits plus a random per-process base,
# l the counter's low 12 bits. Unique within a process by the counter; across processes by
# the 26 random bits and the random base (drawn again in a forked child, which inherits the
# counter). Ordered by time, then by the counter within a millisecond and a thread.

_time = time.time
_TAILS = tuple(f"{i:03x}" for i in range(4096))
_next_n = itertools.count().__next__
#: (end of the prefix's millisecond, the counter's ``n >> 12`` it was built for, the prefix).
#: One tuple, replaced whole, so a thread never sees a prefix with another's bounds.
_ID_CELL: list[tuple[float, int, str]] = [(0.0, -1, "")]
_ID_RANDOM = ""
_ID_BASE = 0
#: (the counter's ``n >> 12``, the prefix's part after the time for it): it changes once per
#: 4,096 ids, the time part once per millisecond, so a new prefix formats only the time.
_ID_REST: list[tuple[int, str]] = [(-1, "")]


def _seed_ids() -> None:
    global _ID_RANDOM, _ID_BASE
    r = int.from_bytes(os.urandom(8), "big")
    _ID_RANDOM = f"-7{r & 0xFFF:03x}-{0x8000 | (r >> 12) & 0x3FFF:04x}-"
    _ID_BASE = (r >> 26) & 0x7_FFFF_FFFF  # 35 bits: the 36-bit field does not wrap
    _ID_CELL[0] = (0.0, -1, "")
    _ID_REST[0] = (-1, "")


_seed_ids()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_seed_ids)


def _fresh_id(n: int, now: float) -> str:
    """The id for counter value ``n`` at time ``now`` (seconds), building a new prefix."""
    ms = int(now * 1000)
    hi = n >> 12
    rest_hi, rest = _ID_REST[0]
    if rest_hi != hi:
        rest = f"{_ID_RANDOM}{(hi + _ID_BASE) & 0xF_FFFF_FFFF:09x}"
        _ID_REST[0] = (hi, rest)
    # The 48-bit millisecond as 12 hex digits, split 8-4: ``hex`` of it with a 49th bit set
    # (so the digits are zero-padded), which costs less than two formatted fields.
    t = hex(ms & 0xFFFF_FFFF_FFFF | 0x1_0000_0000_0000)
    prefix = t[3:11] + "-" + t[11:] + rest
    _ID_CELL[0] = ((ms + 1) / 1000, hi, prefix)
    return prefix + _TAILS[n & 0xFFF]


def new_id() -> str:
    """A new run id: a time-ordered UUIDv7 as text, unique across threads and processes.

    About 0.15 µs: ``str(uuid_utils.uuid7())`` costs 0.2 µs, ``str(uuid.uuid4())`` 2 µs.
    """
    # The dispatchers inline this body (see dispatch._generate); keep the two alike.
    now = _time()
    n = _next_n()
    end, hi, prefix = _ID_CELL[0]
    if now < end and n >> 12 == hi:
        return prefix + _TAILS[n & 0xFFF]
    return _fresh_id(n, now)


def current_context() -> dict[str, Any]:
    """A copy of the keywords that hooks called here would receive from the context."""
    return dict(_CONTEXT.get())


def current_run() -> Run | None:
    """The innermost open run, or ``None`` outside any run."""
    return _RUN.get()


def _check_context(context: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(context) - set(REQUEST_CONTEXT_KEYS)
    if unknown:
        raise ConfigurationError(
            f"unknown request context key(s) {sorted(unknown)}; the keys are "
            f"{', '.join(REQUEST_CONTEXT_KEYS)} (put anything else in metadata=...)"
        )
    return {k: v for k, v in context.items() if v is not None}


class Run:
    """An open run: its ids, name and depth. Set ``output`` to report it in ``on_run_end``."""

    __slots__ = ("depth", "name", "output", "parent_run_id", "run_id", "trace_id")

    def __init__(
        self, name: str, run_id: str, trace_id: str, parent_run_id: str | None, depth: int
    ) -> None:
        self.name = name
        self.run_id = run_id
        self.trace_id = trace_id
        self.parent_run_id = parent_run_id
        self.depth = depth
        self.output: Any = None

    def __repr__(self) -> str:
        return f"Run(name={self.name!r}, run_id={self.run_id!r}, depth={self.depth})"


class request_context:
    """Set request context (``user_id``, ``correlation_id``, ...) for the code inside.

    ``with hookwire.request_context(user_id="u1", request_id=req.id): ...``; also usable as
    ``async with``. Values add to (and override) any context already set.
    """

    __slots__ = ("_extra", "_token")

    def __init__(self, **context: Any) -> None:
        self._extra = _check_context(context)
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
        self._context = _check_context(context) if context else _EMPTY
        self._token: contextvars.Token[dict[str, Any]] | None = None
        self._run_token: contextvars.Token[Run | None] | None = None
        self.run: Run | None = None
        self._start_kw: dict[str, Any] = {}
        self._child: dict[str, Any] = _EMPTY

    # -- shared by the sync and async paths --------------------------------------------------

    def _get_manager(self) -> CallbackManager | None:
        if self._manager is None and self._callbacks is not None:
            from .dispatch import CallbackManager

            self._manager = CallbackManager.ensure(self._callbacks)
        return self._manager

    def _open(self) -> Run:
        parent = _CONTEXT.get()
        run_id = self._run_id or new_id()
        if not parent and not self._context and not self._tags and not self._metadata:
            # An outermost run with nothing to inherit: the dicts below, built directly.
            name = self.name
            self._start_kw = {"trace_id": run_id, "run_id": run_id, "name": name}
            self._child = {"trace_id": run_id, "parent_run_id": run_id, "depth": 1}
            run = self.run = Run(name, run_id, run_id, None, 0)
            return run
        trace_id = parent.get("trace_id") or run_id
        depth = parent.get("depth", 0)
        own = {**parent, **self._context}
        if self._tags:
            own["tags"] = (*parent.get("tags", ()), *self._tags)
        if self._metadata:
            own["metadata"] = {**parent.get("metadata", _EMPTY), **self._metadata}
        own["trace_id"] = trace_id
        # This run's own events: its parent is the enclosing run (already in ``parent``).
        self._start_kw = {**own, "run_id": run_id, "name": self.name}
        child = dict(own)
        child["parent_run_id"] = run_id
        child["depth"] = depth + 1
        self._child = child
        run = Run(self.name, run_id, trace_id, parent.get("parent_run_id"), depth)
        self.run = run
        return run

    def _activate(self, run: Run) -> None:
        # Set only after on_run_start went out, so the run's own start event carries its
        # parent's context rather than its own.
        self._token = _CONTEXT.set(self._child)
        self._run_token = _RUN.set(run)

    def _close(self) -> None:
        if self._token is not None:
            _CONTEXT.reset(self._token)
            self._token = None
        if self._run_token is not None:
            _RUN.reset(self._run_token)
            self._run_token = None

    def _end_kw(self, error: BaseException | None) -> dict[str, Any]:
        kw = dict(self._start_kw)
        if error is not None:
            kw["error"] = error
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
        if manager is not None and self.run is not None:
            manager.on_run_end(self.run.output, **self._end_kw(exc))

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
        if manager is not None and self.run is not None:
            await manager.aon_run_end(self.run.output, **self._end_kw(exc))

    # -- decorator ----------------------------------------------------------------------------

    def _fresh(self, input: Any) -> trace:
        t = trace(
            self.name,
            callbacks=self._manager or self._callbacks,
            input=input,
            tags=self._tags,
            metadata=self._metadata,
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
