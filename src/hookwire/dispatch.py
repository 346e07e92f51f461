"""``CallbackManager``: sends events to handlers, fast, in order, and never into the app.

How the hot path stays cheap: whenever the handler list changes, the manager builds, for every
hook, a small function specialised to the handlers that actually override that hook, and sets
it as the method ``on_<hook>`` / ``aon_<hook>`` of the manager's own class (each manager is the
one instance of a subclass made for it, so CPython specialises ``manager.on_<hook>(...)`` as a
method call). A hook no handler overrides is the no-op method inherited from
``CallbackManager``; nothing is formatted, copied or allocated for it. The typed event record
is built only when some handler overrides ``on_event``. A built-in handler whose hook only
queues the event (``FileLogCallback``) is called through its ``_hookwire_raw`` entry point with
the ids, the context and the keywords as they are, so no keyword dict is built for it.

Where handlers run:

- sync handlers run inline, in the caller's thread, also when dispatched from asyncio;
- async handlers are awaited inline by ``aon_*``; from sync code (``on_*``) they run on one
  shared background event loop and the caller waits for them, so order and errors are kept;
- a handler may offer both: a sync ``on_<hook>`` for ``on_*`` dispatch and an
  ``async def aon_<hook>`` that ``aon_*`` dispatch awaits instead (no hop to the background
  loop from sync code, no blocking call on the caller's loop from async code);
- handlers with ``run_in_background = True`` (the ones that do I/O) get their own worker
  thread behind a bounded queue: the caller only enqueues. ``flush()`` / ``close()`` and an
  ``atexit`` hook drain the queues. A full queue blocks (nothing is lost) unless the handler
  sets ``drop_when_full = True``, in which case the event is dropped and counted.

A handler's exception never reaches the caller: it is logged through the ``hookwire`` logger
(with its traceback the first time for each handler and hook, at debug level after that),
counted in ``stats()``, and dispatch goes on. A handler with ``raise_error = True`` has its
exception re-raised instead, and a ``CallbackAbort`` (such as ``BudgetExceeded``) always
reaches the caller of an inline hook.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import functools
import inspect
import itertools
import logging
import os
import threading
import time
import types
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Union

from .context import hook_context
from .errors import CallbackAbort, ConfigurationError
from .events import HOOKS, event_from_call
from .ids import new_id

__all__ = ["CallbackManager", "Callbacks"]

logger = logging.getLogger("hookwire")

#: What ``callbacks=`` accepts everywhere: a list of handlers, a manager, or nothing.
Callbacks = Union["CallbackManager", Sequence[Any], None]

#: Seconds a background worker waits for more events before it sleeps. A producer does not
#: wake a lingering worker (only an idle one), so under steady traffic the worker wakes about
#: once per linger, whatever the number of events: each wake-up costs both threads a GIL
#: hand-over and context switches (about 100 µs of CPU per call in bench/runtime.py with a
#: 2 ms linger, that is, a wake-up per call). ``flush()``/``close()`` cut it short.
_LINGER = 0.02

_START_HOOKS = frozenset({"on_run_start", "on_llm_start", "on_tool_start"})

_INLINE = 0
_AWAIT = 1
_LANE = 2

_now = time.time


def _overrides(handler: Any, hook: str) -> Callable[..., Any] | None:
    """The handler's method for ``hook`` if it does something (base no-ops are marked)."""
    fn = getattr(handler, hook, None)
    if fn is None or not callable(fn):
        return None
    if getattr(fn, "__hookwire_noop__", False):
        return None
    return fn  # type: ignore[no-any-return]


def _async_twin(handler: Any, hook: str) -> Callable[..., Any] | None:
    """The handler's ``aon_<hook>`` coroutine method, if it offers one for async dispatch.

    A handler may implement a hook twice: ``on_<hook>`` for sync dispatch (run in the caller's
    thread) and ``async def aon_<hook>`` for ``aon_*`` dispatch (awaited on the caller's loop),
    so that neither path pays a hop between threads or event loops.
    """
    fn = _overrides(handler, "a" + hook)
    if fn is None or not inspect.iscoroutinefunction(fn):
        return None
    return fn


def _accepting(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` itself if it takes ``**kwargs``; else a wrapper passing only what it declares.

    Resolved once at registration (as pluggy does), so a five-line handler written as
    ``def on_llm_end(self, response)`` works instead of failing on every call.
    """
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return fn
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return fn
    names = frozenset(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    if inspect.iscoroutinefunction(fn):

        async def afiltered(*args: Any, **kw: Any) -> Any:
            return await fn(*args, **{k: v for k, v in kw.items() if k in names})

        return afiltered

    def filtered(*args: Any, **kw: Any) -> Any:
        return fn(*args, **{k: v for k, v in kw.items() if k in names})

    return filtered


class _Entry:
    """One handler's method for one hook, with how to call it."""

    __slots__ = (
        "fn",
        "handler",
        "hook",
        "is_async",
        "kind",
        "lane",
        "raise_error",
        "raw",
        "wants_event",
    )

    def __init__(
        self,
        handler: Any,
        hook: str,
        fn: Callable[..., Any],
        wants_event: bool,
        lane: _Lane | None,
    ) -> None:
        self.handler = handler
        self.hook = hook
        self.is_async = inspect.iscoroutinefunction(fn)
        self.fn = _accepting(fn)
        self.wants_event = wants_event
        self.raise_error = bool(getattr(handler, "raise_error", False))
        self.lane = lane
        self.kind = _LANE if lane is not None else (_AWAIT if self.is_async else _INLINE)
        # A built-in handler whose hook only queues the event (FileLogCallback) is handed the
        # parts the dispatcher already has instead (see _raw_entry).
        self.raw = _raw_entry(handler, fn) if self.kind == _INLINE and not wants_event else None


def _raw_entry(handler: Any, fn: Callable[..., Any]) -> Callable[..., Any] | None:
    """The handler's ``_hookwire_raw`` if ``fn`` is a hook that only forwards to it.

    ``_hookwire_raw(hook, args, run_id, timestamp, ctx, kw, model, provider)`` takes the
    payload tuple, the ids, the run context and the extra keywords as they are (``ctx`` and
    ``kw`` to be read, never changed): the handler gets the same information as through its
    hook, without the dispatcher building a keyword dict for it. Only hooks marked
    ``__hookwire_raw__`` qualify, so a subclass that overrides one is called normally.
    """
    if not getattr(fn, "__hookwire_raw__", False):
        return None
    raw = getattr(handler, "_hookwire_raw", None)
    return raw if callable(raw) else None


# -- the shared background event loop, for async handlers called from sync code ---------------


class _BackgroundLoop:
    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        loop = cls._loop
        if loop is not None and cls._thread is not None and cls._thread.is_alive():
            return loop
        with cls._lock:
            if cls._loop is None or cls._thread is None or not cls._thread.is_alive():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="hookwire-async-handlers", daemon=True
                )
                thread.start()
                cls._loop, cls._thread = loop, thread
            return cls._loop

    @classmethod
    def in_loop_thread(cls) -> bool:
        return cls._thread is not None and threading.current_thread() is cls._thread


def _run_on_background_loop(fn: Callable[..., Any], args: tuple[Any, ...], kw: Any) -> Any:
    if _BackgroundLoop.in_loop_thread():
        raise RuntimeError(
            "an async handler was dispatched synchronously from hookwire's own background loop; "
            "use the aon_* methods from async handlers"
        )
    future = asyncio.run_coroutine_threadsafe(fn(*args, **kw), _BackgroundLoop.get())
    return future.result()


def _optional_keywords(hook: str) -> tuple[str, ...]:
    # Keywords nearly every call of these hooks carries: taking them as named parameters lets
    # the common call reach handlers without building a keyword dict (see _generate). Not for
    # the public token hook: each named parameter costs a bare token dispatch a test per call
    # (four cost it 4 %); clients get a dispatcher of their own (_CLIENT_TOKEN_KEYWORDS).
    if hook.startswith("on_llm_") and hook != "on_llm_new_token":
        return ("model", "provider")
    return ()


#: What a client passes with every token. ``CallbackManager`` builds a second token dispatcher
#: taking them as parameters (``_client_on_llm_new_token``): that spares the dispatcher's own
#: ``**kw`` dict and CPython's by-value compare of each of its keys with every parameter name.
_CLIENT_TOKEN_KEYWORDS = ("model", "provider", "attempt", "index")


@functools.lru_cache(maxsize=2048)
def _compiled(source: str, filename: str) -> types.CodeType:
    # Managers with handlers of the same kinds write the same source (the handlers are names
    # in the function's globals, not in its text): compiling is most of what building a
    # manager costs, so each text is compiled once.
    return compile(source, filename, "exec")


def _generate_nop(hook: str, *, is_async: bool, method: bool = False) -> Callable[..., Any]:
    """A do-nothing hook with the hook's own signature: calling it packs no tuple or dict for
    the usual arguments, so a hook no handler listens to costs about one plain call. With
    ``method``, it takes the manager first, positional-only (a method)."""
    params = ("_manager, /, " if method else "") + "".join(f"{a}, " for a in HOOKS[hook].args)
    ret = "run_id if run_id is not None else new_id()" if hook in _START_HOOKS else "None"
    source = (
        f"{'async ' if is_async else ''}def {'a' if is_async else ''}{hook}"
        f"({params}run_id=None, timestamp=None, **kw):\n    return {ret}\n"
    )
    ns: dict[str, Any] = {"new_id": new_id}
    exec(compile(source, f"<hookwire no-op {hook}>", "exec"), ns)
    return ns[("a" if is_async else "") + hook]  # type: ignore[no-any-return]


def _generate(
    hook: str,
    entries: tuple[_Entry, ...],
    report: Callable[..., None],
    *,
    is_async: bool,
    optional: tuple[str, ...] | None = None,
    method: bool = False,
) -> Callable[..., Any]:
    """Write the dispatch function of one hook for these handlers, and compile it.

    The generated function takes the hook's payload by name, ``run_id``, ``timestamp`` (and on
    LLM hooks ``model`` and ``provider``) as named parameters and anything else as ``**kw``.
    Handlers are called one after another, unrolled. When there is no run context and no
    other keyword, each handler is called with plain keyword arguments, without building a
    dict: that is what keeps a token well under a microsecond. ``optional`` replaces the
    hook's usual named keywords (the clients' token dispatcher takes four). With ``method``
    it takes the manager first, positional-only, and becomes a method of the manager's class.
    """
    args = HOOKS[hook].args
    params = "".join(f"{a}, " for a in args)
    payload = "(" + params + ")"
    if optional is None:
        optional = _optional_keywords(hook)
    ns: dict[str, Any] = {
        "new_id": new_id,
        "now": _now,
        "get": hook_context,
        "report": report,
        "make_event": event_from_call,
        "bg": _run_on_background_loop,
        "hook": hook,
    }
    for i, e in enumerate(entries):
        ns[f"fn{i}"] = e.fn
        ns[f"e{i}"] = e
        ns[f"lane{i}"] = e.lane
        ns[f"raw{i}"] = e.raw
    # The merged keyword dict is only needed by handlers that are not called raw.
    need_kw = any(e.raw is None for e in entries)
    # Raw handlers take model and provider by name and the rest in ``kw``; a hook with other
    # named optional keywords (tokens) gives them all back to raw handlers in one dict, in
    # the order a client passes them (the order of a log line's fields).
    fold = any(o not in ("model", "provider") for o in optional) and any(
        e.raw is not None for e in entries
    )
    raw_opt = ", ".join(o if o in optional and not fold else "None" for o in ("model", "provider"))
    raw_kw = "rkw" if fold else "kw"
    need_full = any(
        e.kind == _LANE or e.wants_event or (e.kind == _AWAIT and not is_async) for e in entries
    )
    need_event = any(e.wants_event for e in entries)
    aw = "await " if is_async else ""

    def calls(kwpart: str, indent: str) -> list[str]:
        out: list[str] = []
        for i, e in enumerate(entries):
            if e.raw is not None:
                call = f"raw{i}(hook, {payload}, run_id, timestamp, ctx, {raw_kw}, {raw_opt})"
            elif e.kind == _LANE:
                a, k = ("(event,)", "{}") if e.wants_event else (payload, "full")
                call = f"{aw}lane{i}.{'aput' if is_async else 'put'}(e{i}, {a}, {k})"
            elif e.kind == _AWAIT and not is_async:
                a, k = ("(event,)", "{}") if e.wants_event else (payload, "full")
                call = f"bg(fn{i}, {a}, {k})"
            elif e.wants_event:
                call = f"{aw if e.kind == _AWAIT else ''}fn{i}(event)"
            else:
                call = f"{aw if e.kind == _AWAIT else ''}fn{i}({params}{kwpart})"
            out += [
                f"{indent}try:",
                f"{indent}    {call}",
                f"{indent}except Exception as exc:",
                f"{indent}    report(e{i}, exc)",
            ]
        return out

    opt_params = "".join(f"{o}=None, " for o in optional)
    lines = [
        f"{'async ' if is_async else ''}def {'a' if is_async else ''}{hook}"
        f"({'_manager, /, ' if method else ''}{params}run_id=None, timestamp=None, "
        f"{opt_params}**kw):",
        "    if timestamp is None:",
        "        timestamp = now()",
        "    if run_id is None:",
        "        run_id = new_id()",
        "    ctx = get()",
    ]
    # General path: run context and/or extra keywords, merged with the ids into one dict
    # (caller wins over the context) that every handler gets as its keywords: one dict built
    # per event, not one for the merge and another for the ids at each call. Raw handlers get
    # ``ctx`` and ``kw`` as they are instead.
    general: list[str] = []
    if need_kw:
        general.append("        mkw = {'run_id': run_id, 'timestamp': timestamp, **ctx, **kw}")
        general += [f"        if {o} is not None:\n            mkw[{o!r}] = {o}" for o in optional]
    if fold:
        general.append("        rkw = {**kw}")
        general += [f"        if {o} is not None:\n            rkw[{o!r}] = {o}" for o in optional]
    if need_full:
        general.append("        full = mkw")
    if need_event:
        general.append(f"        event = make_event(hook, {payload}, full)")
    general += calls("**mkw", "        ")
    lines.append("    if ctx or kw:")
    lines += general

    # Fast paths, chosen by nested tests on which optional keywords were given.
    def fast(remaining: tuple[str, ...], given: tuple[str, ...], indent: str) -> list[str]:
        if remaining:
            o, rest = remaining[0], remaining[1:]
            return [
                f"{indent}if {o} is None:",
                *fast(rest, given, indent + "    "),
                f"{indent}else:",
                *fast(rest, (*given, o), indent + "    "),
            ]
        out: list[str] = []
        if fold:
            out.append(f"{indent}rkw = {{" + ", ".join(f"{o!r}: {o}" for o in given) + "}")
        if need_full:
            out.append(
                f"{indent}full = {{'run_id': run_id, 'timestamp': timestamp"
                + "".join(f", {o!r}: {o}" for o in given)
                + "}"
            )
        if need_event:
            out.append(f"{indent}event = make_event(hook, {payload}, full)")
        kwpart = "run_id=run_id, timestamp=timestamp" + "".join(f", {o}={o}" for o in given)
        return out + calls(kwpart, indent)

    lines.append("    else:")
    lines += fast(optional, (), "        ")
    lines.append("    return run_id" if hook in _START_HOOKS else "    return None")
    source = "\n".join(lines)
    exec(_compiled(source, f"<hookwire dispatch {hook}>"), ns)
    fn: Callable[..., Any] = ns[("a" if is_async else "") + hook]
    fn.__hookwire_source__ = source  # type: ignore[attr-defined]
    return fn


# -- worker lanes for run_in_background handlers --------------------------------------------------


_LANES: weakref.WeakSet[_Lane] = weakref.WeakSet()


class _Lane:
    """A bounded FIFO with one worker thread, for one background handler.

    The producer side is a ``deque.append`` plus a flag check; the worker sleeps on an
    ``Event`` only when the queue is empty, so a busy lane costs no wake-ups.
    """

    def __init__(self, manager: CallbackManager, handler: Any) -> None:
        self._manager_ref = weakref.ref(manager)
        self.name = _handler_name(handler)
        self.maxsize = int(getattr(handler, "queue_size", 10_000))
        if self.maxsize <= 0:
            raise ConfigurationError(
                f"{self.name}.queue_size must be a positive number of events, not {self.maxsize!r}"
            )
        self.drop = bool(getattr(handler, "drop_when_full", False))
        self._dq: collections.deque[tuple[_Entry, tuple[Any, ...], dict[str, Any]]] = (
            collections.deque()
        )
        self._wake = threading.Event()
        self._idle = True
        self._put_lock = threading.Lock()
        self._last_submitted = 0
        self.done = 0
        self._dropped = itertools.count(1)
        self.dropped = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = False
        self._start_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        _LANES.add(self)

    def _reset_in_child(self) -> None:
        """In a forked child: the events queued in the parent are the parent's to handle (it
        goes on), the worker thread is not here, and a lock its threads held stays held."""
        self._dq = collections.deque()
        self._wake = threading.Event()
        self._idle = True
        self._put_lock = threading.Lock()
        self._last_submitted = 0
        self.done = 0
        self._cond = threading.Condition()
        self._thread = None
        self._stop = False
        self._start_lock = threading.Lock()
        self._loop = None  # the parent's; its worker's loop cannot run here

    # producer side

    def _ensure_worker(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop = False
                self._thread = threading.Thread(
                    target=self._work, name=f"hookwire-{self.name}", daemon=True
                )
                self._thread.start()

    def _full(self) -> bool:
        return self._last_submitted - self.done >= self.maxsize

    def put(self, entry: _Entry, args: tuple[Any, ...], kw: dict[str, Any]) -> None:
        if self._last_submitted - self.done >= self.maxsize:
            if self.drop:
                self.dropped = next(self._dropped)
                return
            if threading.current_thread() is not self._thread:
                self._wake.set()  # a lingering worker would not look before its linger ends
                while self._full() and self._thread is not None and self._thread.is_alive():
                    time.sleep(0.0005)
        with self._put_lock:
            # Appending and counting together, so flush() never waits for less than was queued.
            self._dq.append((entry, args, kw))
            self._last_submitted += 1
        # The worker is started after the append, so it finds the event on its first look
        # (it starts awake, lingering, and would not look again before its linger ends).
        thread = self._thread
        if thread is None or not thread.is_alive():
            self._ensure_worker()
        elif self._idle:
            self._wake.set()

    async def aput(self, entry: _Entry, args: tuple[Any, ...], kw: dict[str, Any]) -> None:
        if not self.drop:
            if self._full():
                self._wake.set()
            # Polling, not an Event: the worker is a thread, and a full queue is the rare case.
            while self._full() and self._thread is not None and self._thread.is_alive():  # noqa: ASYNC110
                await asyncio.sleep(0.0005)
        self.put(entry, args, kw)

    # worker side

    def _work(self) -> None:
        dq = self._dq
        lingered = False
        # Awake from the start (put() starts the thread after queueing its event), so that
        # the first linger is a real one.
        self._idle = False
        self._wake.clear()
        while True:
            while dq:
                entry, args, kw = dq.popleft()
                self._call(entry, args, kw)
                self.done += 1
                if not dq:
                    with self._cond:
                        self._cond.notify_all()
                lingered = False
            if self._stop:
                return
            if not lingered:
                # Wait a while before sleeping: the events that come meanwhile (the rest of
                # this call and run, the next calls) are handled in one wake-up, and the app
                # thread does not pay for waking the worker once per event. flush() and
                # close() (and a full queue) set _wake to end the wait early.
                lingered = True
                self._wake.wait(_LINGER)
                self._wake.clear()
                continue
            lingered = False
            self._idle = True
            self._wake.clear()
            if dq or self._stop:
                self._idle = False
                continue
            self._wake.wait()
            self._wake.clear()  # else the next linger would end at once
            self._idle = False

    def _call(self, entry: _Entry, args: tuple[Any, ...], kw: dict[str, Any]) -> None:
        try:
            if entry.is_async:
                if self._loop is None:
                    self._loop = asyncio.new_event_loop()
                self._loop.run_until_complete(entry.fn(*args, **kw))
            else:
                entry.fn(*args, **kw)
        except Exception as exc:
            manager = self._manager_ref()
            if manager is not None:
                manager._report(entry, exc, reraise=False)

    @property
    def pending(self) -> int:
        return self._last_submitted - self.done

    def flush(self, timeout: float | None) -> bool:
        target = self._last_submitted
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self.done < target:
                if self._thread is None or not self._thread.is_alive():
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._wake.set()
                self._cond.wait(0.05 if remaining is None else min(remaining, 0.05))
        return True

    def close(self, timeout: float | None) -> bool:
        drained = self.flush(timeout)
        self._stop = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(0.5 if timeout is None else min(timeout, 0.5))
        self._thread = None
        if self._loop is not None and (thread is None or not thread.is_alive()):
            self._loop.close()
            self._loop = None
        return drained


def _handler_name(handler: Any) -> str:
    return str(getattr(handler, "name", None) or type(handler).__name__)


_NOPS: dict[str, Callable[..., Any]] = {h: _generate_nop(h, is_async=False) for h in HOOKS}
_ANOPS: dict[str, Callable[..., Any]] = {h: _generate_nop(h, is_async=True) for h in HOOKS}

_MANAGERS: weakref.WeakSet[CallbackManager] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    _BackgroundLoop._lock = threading.Lock()
    _BackgroundLoop._loop = _BackgroundLoop._thread = None
    for lane in list(_LANES):
        lane._reset_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _drain_at_exit() -> None:
    for manager in list(_MANAGERS):
        try:
            manager.close(timeout=10.0)
        except Exception:  # pragma: no cover - never let a handler spoil interpreter exit
            logger.exception("hookwire: draining handlers at exit failed")


class CallbackManager:
    """Dispatches events to a list of handlers.

    ``manager.on_llm_start(prompt, **kw)`` and every other hook of ``BaseCallback`` dispatch
    synchronously; ``await manager.aon_llm_start(prompt, **kw)`` and so on dispatch from
    asyncio. Keywords the caller does not give are filled in: ``run_id`` (a new id),
    ``timestamp`` (``time.time()``), and the run and request context of ``hookwire.trace``
    (only the keys that have a value); keywords the caller gives win over the context and are
    passed on as given. Start hooks (``on_run_start``,
    ``on_llm_start``, ``on_tool_start``) return the run id they used; pass it as ``run_id=`` to
    the matching end hook.
    """

    # Declared for type checkers and documentation. At import, _install_class_nops replaces
    # each with a no-op taking the hook's own parameters; a manager's own class overrides the
    # hooks its handlers listen to with dispatchers (see the module docstring).
    def on_run_start(self, input: Any, **kwargs: Any) -> str:
        """A run began."""
        raise NotImplementedError  # pragma: no cover - replaced at import

    def on_run_end(self, output: Any, **kwargs: Any) -> None:
        """A run ended."""

    def on_llm_start(self, prompt: Any, **kwargs: Any) -> str:
        """An LLM call is about to be sent."""
        raise NotImplementedError  # pragma: no cover - replaced at import

    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        """A streamed token arrived."""

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        """An LLM call returned."""

    def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
        """An LLM call failed."""

    def on_tool_start(self, tool_name: str, tool_input: Any, **kwargs: Any) -> str:
        """A tool is about to run."""
        raise NotImplementedError  # pragma: no cover - replaced at import

    def on_tool_end(self, tool_name: str, tool_output: Any, **kwargs: Any) -> None:
        """A tool returned."""

    def on_tool_error(self, tool_name: str, error: BaseException, **kwargs: Any) -> None:
        """A tool raised."""

    def on_memory_store(self, content: Any, **kwargs: Any) -> None:
        """Something was stored in memory."""

    def on_memory_recall(self, query: Any, results: Any, **kwargs: Any) -> None:
        """Memory was searched."""

    def on_retry(
        self, attempt: int, max_attempts: int, error: BaseException, **kwargs: Any
    ) -> None:
        """A failed call will be retried."""

    def on_error(self, error: BaseException, **kwargs: Any) -> None:
        """A failure happened."""

    def on_budget_exceeded(self, error: BaseException, **kwargs: Any) -> None:
        """A budget refused an LLM call."""

    async def aon_run_start(self, input: Any, **kwargs: Any) -> str:
        """A run began (async)."""
        raise NotImplementedError  # pragma: no cover - replaced at import

    async def aon_run_end(self, output: Any, **kwargs: Any) -> None:
        """A run ended (async)."""

    async def aon_llm_start(self, prompt: Any, **kwargs: Any) -> str:
        """An LLM call is about to be sent (async)."""
        raise NotImplementedError  # pragma: no cover - replaced at import

    async def aon_llm_new_token(self, token: str, **kwargs: Any) -> None:
        """A streamed token arrived (async)."""

    async def aon_llm_end(self, response: Any, **kwargs: Any) -> None:
        """An LLM call returned (async)."""

    async def aon_llm_error(self, error: BaseException, **kwargs: Any) -> None:
        """An LLM call failed (async)."""

    async def aon_tool_start(self, tool_name: str, tool_input: Any, **kwargs: Any) -> str:
        """A tool is about to run (async)."""
        raise NotImplementedError  # pragma: no cover - replaced at import

    async def aon_tool_end(self, tool_name: str, tool_output: Any, **kwargs: Any) -> None:
        """A tool returned (async)."""

    async def aon_tool_error(self, tool_name: str, error: BaseException, **kwargs: Any) -> None:
        """A tool raised (async)."""

    async def aon_memory_store(self, content: Any, **kwargs: Any) -> None:
        """Something was stored in memory (async)."""

    async def aon_memory_recall(self, query: Any, results: Any, **kwargs: Any) -> None:
        """Memory was searched (async)."""

    async def aon_retry(
        self, attempt: int, max_attempts: int, error: BaseException, **kwargs: Any
    ) -> None:
        """A failed call will be retried (async)."""

    async def aon_error(self, error: BaseException, **kwargs: Any) -> None:
        """A failure happened (async)."""

    async def aon_budget_exceeded(self, error: BaseException, **kwargs: Any) -> None:
        """A budget refused an LLM call (async)."""

    # -- construction -----------------------------------------------------------------------

    def __new__(cls, *args: Any, **kwargs: Any) -> CallbackManager:
        # (Any arguments: a subclass of yours may take others in its __init__.)
        # Each manager is the one instance of a class of its own, a subclass of the class
        # asked for, same name: its dispatchers are methods of that class. CPython specialises
        # a method call on an instance (no lookup in the instance's dict first) when the name
        # is a method of the class and no instance stores it, which saves about a tenth of a
        # token's dispatch; a hook nobody listens to is the inherited no-op method.
        if "_hookwire_own" in cls.__dict__:
            # type(manager)(...): a new manager of the same public class, with its own class
            # (not an instance of this one, so Python does not run __init__ again).
            return cls.__bases__[0](*args, **kwargs)  # type: ignore[no-any-return]
        own = type(
            cls.__name__,
            (cls,),
            {
                "__slots__": (),
                "__module__": cls.__module__,
                "__qualname__": cls.__qualname__,
                "__doc__": cls.__doc__,
                "_hookwire_own": True,
            },
        )
        return object.__new__(own)

    def __init__(self, handlers: Iterable[Any] = ()) -> None:
        self._handlers: list[Any] = []
        for h in handlers:
            self._check(h)
            self._handlers.append(h)
        self._start()

    def _start(self) -> None:
        """Make the manager's own machinery (worker lanes, lock, error counts, dispatchers)
        for its handlers: at construction, and for a copy (``_restore``)."""
        self._lanes: dict[int, _Lane] = {}
        self._lock = threading.RLock()
        self._errors: collections.Counter[tuple[str, str]] = collections.Counter()
        self._logged: set[tuple[int, str]] = set()
        self._listening: frozenset[str] = frozenset()
        self._rebuild()
        _MANAGERS.add(self)

    def __reduce__(self) -> tuple[Any, ...]:
        # A copy (copy, deepcopy, pickle) is a new manager of the same public class with the
        # same handlers and attributes (a subclass's own too), and its own dispatchers, lock,
        # worker lanes and error counts: nothing of this one's machinery is shared or copied.
        state = {k: v for k, v in vars(self).items() if k not in _RUNTIME}
        return (_restore, (type(self).__bases__[0], state))

    @classmethod
    def ensure(cls, callbacks: Callbacks) -> CallbackManager:
        """``callbacks`` as a manager: a manager is returned as is, a list is wrapped."""
        if isinstance(callbacks, CallbackManager):
            return callbacks
        if callbacks is None:
            return cls()
        if isinstance(callbacks, (str, bytes)) or not isinstance(callbacks, Iterable):
            raise ConfigurationError(
                f"callbacks must be a list of handlers or a CallbackManager, not "
                f"{type(callbacks).__name__}; wrap a single handler in a list: callbacks=[handler]"
            )
        return cls(callbacks)

    @staticmethod
    def _check(handler: Any) -> None:
        if isinstance(handler, type):
            raise ConfigurationError(
                f"{handler.__name__} is a class; pass an instance: {handler.__name__}()"
            )
        for h in (*HOOKS, "on_event"):
            twin = _overrides(handler, "a" + h)
            if twin is not None and not inspect.iscoroutinefunction(twin):
                raise ConfigurationError(
                    f"{type(handler).__name__}.a{h} must be a coroutine function (async def): "
                    f"it is what aon_* dispatch awaits; put a sync implementation in {h}"
                )
        hooks = (*HOOKS, "on_event")
        if not any(_overrides(handler, h) or _async_twin(handler, h) for h in hooks) and not (
            hasattr(handler, "on_event")
        ):
            raise ConfigurationError(
                f"{type(handler).__name__} has no hook methods; subclass "
                "hookwire.BaseCallback and override on_llm_start, on_llm_end, ..."
            )

    @property
    def handlers(self) -> tuple[Any, ...]:
        """The handlers, in dispatch order."""
        return tuple(self._handlers)

    def add(self, handler: Any) -> Any:
        """Append ``handler`` (it is called after the others); returns it, so it can decorate."""
        self._check(handler)
        with self._lock:
            self._handlers.append(handler)
            self._rebuild()
        return handler

    def remove(self, handler: Any) -> None:
        """Remove ``handler`` after draining its background queue, if it has one."""
        with self._lock:
            try:
                self._handlers.remove(handler)
            except ValueError:
                raise ConfigurationError(
                    f"{_handler_name(handler)} is not one of this manager's handlers"
                ) from None
            lane = self._lanes.pop(id(handler), None)
            self._rebuild()
        if lane is not None:
            lane.close(timeout=10.0)

    def copy(self) -> CallbackManager:
        """A new manager with the same handlers."""
        return type(self)(self._handlers)

    def merged(self, other: Callbacks) -> CallbackManager:
        """A new manager with this one's handlers followed by ``other``'s (no duplicates)."""
        extra = CallbackManager.ensure(other).handlers
        seen = {id(h) for h in self._handlers}
        return type(self)([*self._handlers, *(h for h in extra if id(h) not in seen)])

    def listens(self, hook: str) -> bool:
        """Whether some handler does something on ``hook`` (for example ``on_llm_new_token``)."""
        return hook in self._listening

    def __len__(self) -> int:
        return len(self._handlers)

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        names = ", ".join(_handler_name(h) for h in self._handlers)
        return f"CallbackManager([{names}])"

    # -- building the per-hook functions ----------------------------------------------------

    def _lane_for(self, handler: Any) -> _Lane:
        lane = self._lanes.get(id(handler))
        if lane is None:
            lane = self._lanes[id(handler)] = _Lane(self, handler)
        return lane

    def _rebuild(self) -> None:
        own = type(self)
        listening = set()
        live = {id(h) for h in self._handlers}
        for key in [k for k in self._lanes if k not in live]:
            self._lanes.pop(key).close(timeout=10.0)
        for hook in HOOKS:
            # Sync dispatch calls on_<hook> (else the handler's aon_<hook>); async dispatch
            # prefers aon_<hook> when the handler offers one (see _async_twin).
            entries: list[_Entry] = []
            aentries: list[_Entry] = []
            for h in self._handlers:
                background = bool(getattr(h, "run_in_background", False))
                lane = self._lane_for(h) if background else None
                for name, wants_event in ((hook, False), ("on_event", True)):
                    fn = _overrides(h, name)
                    afn = _async_twin(h, name)
                    if fn is None and afn is None:
                        continue
                    sync_fn = fn if fn is not None else afn
                    async_fn = afn if afn is not None else fn
                    assert sync_fn is not None and async_fn is not None
                    entry = _Entry(h, hook, sync_fn, wants_event, lane)
                    entries.append(entry)
                    aentries.append(
                        entry
                        if async_fn is sync_fn
                        else _Entry(h, hook, async_fn, wants_event, lane)
                    )
            if entries:
                listening.add(hook)
            sync_entries, async_entries = tuple(entries), tuple(aentries)
            if entries:
                setattr(own, hook, self._build(hook, sync_entries, is_async=False, method=True))
                setattr(
                    own, "a" + hook, self._build(hook, async_entries, is_async=True, method=True)
                )
            else:  # nobody listens: the inherited no-op method answers
                for name in (hook, "a" + hook):
                    if name in own.__dict__:
                        delattr(own, name)
            if hook == "on_llm_new_token":
                # The clients' own token dispatchers (see _CLIENT_TOKEN_KEYWORDS): the same
                # handlers, keywords and order as on_llm_new_token / aon_llm_new_token.
                self._client_on_llm_new_token = self._build(
                    hook, sync_entries, is_async=False, optional=_CLIENT_TOKEN_KEYWORDS
                )
                self._client_aon_llm_new_token = self._build(
                    hook, async_entries, is_async=True, optional=_CLIENT_TOKEN_KEYWORDS
                )
        self._listening = frozenset(listening)

    def _build(
        self,
        hook: str,
        entries: tuple[_Entry, ...],
        *,
        is_async: bool,
        optional: tuple[str, ...] | None = None,
        method: bool = False,
    ) -> Callable[..., Any]:
        if not entries:
            return (_ANOPS if is_async else _NOPS)[hook]
        return _generate(
            hook, entries, self._report, is_async=is_async, optional=optional, method=method
        )

    # -- errors -----------------------------------------------------------------------------

    def _report(self, entry: _Entry, exc: Exception, reraise: bool = True) -> None:
        """Count and log a handler's failure; re-raise it if the handler or the error asks."""
        if reraise and isinstance(exc, CallbackAbort):
            raise exc
        name = _handler_name(entry.handler)
        key = (id(entry.handler), entry.hook)
        with self._lock:
            self._errors[(name, entry.hook)] += 1
            first = key not in self._logged
            self._logged.add(key)
        if first:
            logger.error(
                "hookwire: handler %s failed in %s (further failures of this handler and hook "
                "are logged at debug level and counted in CallbackManager.stats())",
                name,
                entry.hook,
                exc_info=exc,
            )
        else:
            logger.debug("hookwire: handler %s failed in %s: %r", name, entry.hook, exc)
        if reraise and entry.raise_error:
            raise exc

    def stats(self) -> dict[str, Any]:
        """Counters: handler errors by ``"Handler.hook"``, and per background handler, the
        events queued now and the events dropped because its queue was full."""
        with self._lock:
            errors = {f"{n}.{h}": c for (n, h), c in self._errors.items()}
            lanes = list(self._lanes.values())
        return {
            "handlers": len(self._handlers),
            "errors": errors,
            "errors_total": sum(errors.values()),
            "queued": {lane.name: lane.pending for lane in lanes},
            "dropped": {lane.name: lane.dropped for lane in lanes},
        }

    # -- draining ---------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every background handler has handled what was queued before this call.

        Returns ``False`` if ``timeout`` (seconds) ran out first. Handlers with a ``flush()``
        method of their own (files, stores) are flushed after their queue is drained.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        ok = True
        for lane in list(self._lanes.values()):
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            ok = lane.flush(remaining) and ok
        for h in list(self._handlers):
            hflush = getattr(h, "flush", None)
            if callable(hflush) and not getattr(hflush, "__hookwire_noop__", False):
                try:
                    hflush()
                except Exception as exc:
                    logger.warning("hookwire: %s.flush() failed: %r", _handler_name(h), exc)
        return ok

    def close(self, timeout: float | None = 10.0) -> bool:
        """Drain the background queues, stop their workers, and close handlers that have a
        ``close()``. The manager stays usable: workers restart on the next event."""
        ok = True
        deadline = None if timeout is None else time.monotonic() + timeout
        for lane in list(self._lanes.values()):
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            ok = lane.close(remaining) and ok
        for h in list(self._handlers):
            hclose = getattr(h, "close", None)
            if callable(hclose) and not getattr(hclose, "__hookwire_noop__", False):
                try:
                    hclose()
                except Exception as exc:
                    logger.warning("hookwire: %s.close() failed: %r", _handler_name(h), exc)
        return ok


#: A manager's own machinery (what ``_start`` and ``_rebuild`` make), left out of a copy's
#: state and made afresh for the copy (see ``CallbackManager.__reduce__``).
_RUNTIME = frozenset(
    {
        "_lanes",
        "_lock",
        "_errors",
        "_logged",
        "_listening",
        "_client_on_llm_new_token",
        "_client_aon_llm_new_token",
    }
)


def _restore(cls: type[CallbackManager], state: dict[str, Any]) -> CallbackManager:
    manager = CallbackManager.__new__(cls)
    manager.__dict__.update(state)
    manager._handlers = list(manager._handlers)
    manager._start()
    return manager


def _install_class_nops() -> None:
    # The declared hooks above document the API; the class gets do-nothing methods with the
    # hooks' own parameters (start hooks still return a run id), used by every instance for
    # the hooks none of its handlers listens to.
    for hook in HOOKS:
        for name, is_async in ((hook, False), ("a" + hook, True)):
            declared = CallbackManager.__dict__[name]
            fn = _generate_nop(hook, is_async=is_async, method=True)
            fn.__doc__ = declared.__doc__
            fn.__qualname__ = f"CallbackManager.{name}"
            fn.__module__ = __name__
            setattr(CallbackManager, name, fn)


_install_class_nops()
