"""The per-hook call path: the functions a ``CallbackManager`` runs for each hook.

A manager's handler set has a *shape*: for each handler, its class and how it is run (inline,
awaited, in the background, raising). Everything slow is resolved once per shape, when the
first manager of that shape is built: which handlers override which hooks, how each is called,
and a dispatch function per hook, written as Python source and compiled. Managers of a shape
seen before (the usual case: handlers built per request from the same classes) reuse all of it
and only store their handlers, so building one costs a few microseconds.

Why generated source: a dispatch function is the loop over the hook's handlers, unrolled, with
the handler calls written out. CPython then calls each handler with plain keyword arguments,
without a loop, a list or a keyword dict per event, and an event nobody handles costs one
inherited no-op call. The functions are methods of the manager's class (see ``dispatch``); they
read the handlers from the manager (``_manager._handlers``), so the same code serves every
manager of a shape. Each source is registered with ``linecache``, so a traceback through a
dispatcher shows its lines, and kept as ``fn.__hookwire_source__``.

A handler whose hooks only queue the event (``FileLogCallback``) may declare a ``Sink``: its
dispatchers then append the event's parts to the handler's queue themselves, and the handler
is entered only when they cannot (a full queue, a value to copy that its snapshot refuses).

What a generated dispatcher does, for ``on_llm_end`` with one plain handler::

    def on_llm_end(_manager, /, response, run_id=None, timestamp=None, model=None,
                   provider=None, **kw):
        hs = _manager._handlers
        if timestamp is None:
            timestamp = now()
            if run_id is None:
                run_id = ...               # ids.id_at, written out
        elif run_id is None:
            run_id = new_id()
        ctx = get()
        if kw:                             # extra keywords: one merged dict
            mkw = {'run_id': run_id, 'timestamp': timestamp, **ctx, **kw}
            ...model / provider added when given...
            try:
                fn0(hs[0], response, **mkw)
            except Exception as exc:
                _manager._report(e0, exc)
        elif ctx:                          # inside a run: keywords by name, **ctx
            ...one branch per combination of the optional keywords given...
        else:                              # the bare call: keywords by name
            ...the same branches, without ctx...
        return None
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import linecache
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from .context import hook_context
from .events import HOOKS, event_from_call
from .ids import id_parts, new_id

__all__ = [
    "Entry",
    "Plan",
    "Sink",
    "declared_keywords",
    "handler_entries",
    "no_op",
    "overrides",
    "write_dispatcher",
]

# How an entry is called.
INLINE = "inline"  # a sync function, in the caller's thread
AWAIT = "await"  # a coroutine function: awaited by aon_*, run on the background loop by on_*
QUEUE = "queue"  # put on the handler's background queue


def overrides(handler: Any, name: str) -> Callable[..., Any] | None:
    """The handler's method ``name`` if it does something (base no-ops are marked)."""
    fn = getattr(handler, name, None)
    if fn is None or not callable(fn) or getattr(fn, "__hookwire_noop__", False):
        return None
    return fn  # type: ignore[no-any-return]


def declared_keywords(fn: Callable[..., Any]) -> frozenset[str] | None:
    """The keyword names ``fn`` takes, or ``None`` if it takes ``**kwargs`` (or cannot say)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def _unbound(handler: Any, name: str, is_async: bool, own: bool) -> Callable[..., Any]:
    """What to call, with the handler as first argument, to call ``handler.<name>``.

    The class's plain function when there is one (no bound method is made per call); for a
    hook set on the instance, a static or class method, or a callable object, a caller that
    looks the attribute up on the handler it is given. A hook that does not take
    ``**kwargs`` is given only the keywords it declares (resolved here, once per shape, as
    pluggy does at registration), so a five-line ``def on_llm_end(self, response)`` works.
    """
    found = None if own else inspect.getattr_static(type(handler), name, None)
    fn: Callable[..., Any] | None = found if inspect.isfunction(found) else None
    names = declared_keywords(fn or getattr(handler, name))
    if fn is not None and names is None:
        return fn

    def target(h: Any) -> Callable[..., Any]:
        return getattr(h, name) if fn is None else functools.partial(fn, h)

    def pick(kw: dict[str, Any]) -> dict[str, Any]:
        return kw if names is None else {k: v for k, v in kw.items() if k in names}

    if is_async:

        async def acall(h: Any, *args: Any, **kw: Any) -> Any:
            return await target(h)(*args, **pick(kw))

        return acall

    def call(h: Any, *args: Any, **kw: Any) -> Any:
        return target(h)(*args, **pick(kw))

    return call


class Sink(NamedTuple):
    """How a dispatcher may queue a raw handler's event itself, with no call into the handler.

    Declared as ``_hookwire_raw.__hookwire_sink__`` by a handler whose ``_hookwire_raw`` only
    queues ``(hook, args, run_id, timestamp, ctx, kw, model, provider)`` on a
    ``hookwire._workers.BackgroundQueue`` (``FileLogCallback``). On the function, so a subclass
    that overrides ``_hookwire_raw`` (the sampler's) is called as before. The dispatcher then
    appends that tuple to the queue where it stands (``BackgroundQueue.put`` written out):
    entering a Python function costs about 1,400 instructions, more than the rest of the
    event's queueing (bench/README.md, observers). What the app could change later is
    snapshotted first; anything else (a full queue, extra keywords of mutable types, a value
    the snapshot refuses) goes to ``_hookwire_raw`` as before, which decides.
    """

    #: The handler's attribute holding its ``BackgroundQueue``.
    queue: str
    #: Types queued as they are (their values cannot change).
    immutable: frozenset[type]
    #: A value of another type, as it is now: ``wrap(dumps(value, default=default))`` (the
    #: handler's snapshot, in C calls: a Python function would cost the frame this saves; a
    #: ``functools.partial`` for the keyword was measured 300 ns slower). Raising sends the
    #: event to ``_hookwire_raw``.
    dumps: Callable[..., Any]
    default: Callable[[Any], Any]
    wrap: Callable[[Any], Any]


class Entry:
    """One handler's method for one hook, and how it is called.

    ``pos`` is the handler's place in the manager's handler tuple; ``fn`` takes the handler
    first. ``raw`` is the handler class's ``_hookwire_raw`` when the hook only forwards to it
    (see ``dispatch``): it is then called with the dispatcher's parts instead of keywords;
    ``sink`` is its ``Sink`` when it declares one.
    """

    __slots__ = (
        "fn",
        "hook",
        "is_async",
        "kind",
        "name",
        "pos",
        "raise_error",
        "raw",
        "sink",
        "wants_event",
    )

    def __init__(
        self,
        pos: int,
        name: str,
        hook: str,
        fn: Callable[..., Any],
        *,
        is_async: bool,
        wants_event: bool,
        background: bool,
        raise_error: bool,
        raw: Callable[..., Any] | None,
    ) -> None:
        self.pos = pos
        self.name = name
        self.hook = hook
        self.fn = fn
        self.is_async = is_async
        self.wants_event = wants_event
        self.kind = QUEUE if background else (AWAIT if is_async else INLINE)
        self.raise_error = raise_error
        self.raw = raw if self.kind == INLINE and not wants_event else None
        self.sink: Sink | None = getattr(self.raw, "__hookwire_sink__", None)

    def call(self, handler: Any, args: tuple[Any, ...], kw: dict[str, Any]) -> Any:
        """Call the entry's function now (a queued event, on the worker)."""
        return self.fn(handler, *args, **kw)


def handler_name(handler: Any) -> str:
    """The name a handler goes by in logs and stats."""
    return str(getattr(handler, "name", None) or type(handler).__name__)


def _raw_method(handler: Any, name: str) -> Callable[..., Any] | None:
    # Only hooks marked ``__hookwire_raw__`` qualify, so a subclass that overrides one is
    # called normally.
    if not getattr(getattr(handler, name, None), "__hookwire_raw__", False):
        return None
    raw = inspect.getattr_static(type(handler), "_hookwire_raw", None)
    return raw if inspect.isfunction(raw) else None


def in_background(handler: Any, hook: str) -> bool:
    """Whether ``handler`` asks for ``hook`` to run on its background queue:
    ``run_in_background`` is ``True`` (every hook) or a collection of hook names."""
    rb = getattr(handler, "run_in_background", False)
    if rb is True or rb is False or rb is None:
        return bool(rb)
    if isinstance(rb, str):
        return rb == hook
    return hook in rb


def handler_entries(
    pos: int, handler: Any, hook: str, own: frozenset[str]
) -> tuple[list[Entry], list[Entry]]:
    """The entries of ``handler`` for ``hook``: for sync dispatch, and for async dispatch.

    Sync dispatch calls ``on_<hook>`` (else the handler's ``aon_<hook>``); async dispatch
    prefers ``aon_<hook>`` when the handler offers one (a coroutine function), so neither path
    pays a hop between threads or event loops. A handler's ``on_event`` receives every hook
    as a typed record. ``own`` names the hooks set on the handler instance itself.
    """
    sync: list[Entry] = []
    asy: list[Entry] = []
    background = in_background(handler, hook)
    raise_error = bool(getattr(handler, "raise_error", False))
    name = handler_name(handler)
    for method, wants_event in ((hook, False), ("on_event", True)):
        fn = overrides(handler, method)
        afn = overrides(handler, "a" + method)
        if afn is not None and not inspect.iscoroutinefunction(afn):
            afn = None
        if fn is None and afn is None:
            continue
        for attr, target in (
            (method if fn is not None else "a" + method, sync),
            ("a" + method if afn is not None else method, asy),
        ):
            bound = getattr(handler, attr)
            is_async = inspect.iscoroutinefunction(bound)
            entry = Entry(
                pos,
                name,
                hook,
                _unbound(handler, attr, is_async, attr in own),
                is_async=is_async,
                wants_event=wants_event,
                background=background,
                raise_error=raise_error,
                raw=None if attr in own else _raw_method(handler, attr),
            )
            target.append(entry)
    return sync, asy


class Plan:
    """The entries of every hook for one shape of handler set, sync and async."""

    __slots__ = ("aentries", "entries", "listening")

    def __init__(self, handlers: Sequence[Any], owns: Sequence[frozenset[str]]) -> None:
        self.entries: dict[str, tuple[Entry, ...]] = {}
        self.aentries: dict[str, tuple[Entry, ...]] = {}
        for hook in HOOKS:
            sync: list[Entry] = []
            asy: list[Entry] = []
            for pos, h in enumerate(handlers):
                s, a = handler_entries(pos, h, hook, owns[pos])
                sync += s
                asy += a
            if sync:
                self.entries[hook] = tuple(sync)
                self.aentries[hook] = tuple(asy)
        self.listening = frozenset(self.entries)


# -- writing the dispatchers ---------------------------------------------------------------------


def _optional_keywords(hook: str) -> tuple[str, ...]:
    # Keywords nearly every call of these hooks carries: taken as named parameters, the common
    # call reaches handlers without a keyword dict being built.
    if hook.startswith("on_llm_") and hook != "on_llm_new_token":
        return ("model", "provider")
    return ()


def _signature(hook: str, is_async: bool, optional: tuple[str, ...]) -> str:
    args = "".join(f"{a}, " for a in HOOKS[hook].args)
    opt = "".join(f"{o}=None, " for o in optional)
    return (
        f"{'async ' if is_async else ''}def {'a' if is_async else ''}{hook}"
        f"(_manager, /, {args}run_id=None, timestamp=None, {opt}**kw):"
    )


def no_op(hook: str, *, is_async: bool) -> Callable[..., Any]:
    """A do-nothing method with the hook's own signature (a start hook still returns an id):
    what a manager answers for a hook none of its handlers listens to. Calling it packs no
    tuple or dict for the usual arguments, so it costs about one plain call."""
    ret = "run_id if run_id is not None else new_id()" if HOOKS[hook].starts_run else "None"
    source = f"{_signature(hook, is_async, ())}\n    return {ret}\n"
    return _compile(source, hook, {"new_id": new_id}, "no-op")


@functools.lru_cache(maxsize=1024)
def _code(source: str, filename: str) -> Any:
    # Shapes that differ only in their handlers' classes write the same text: compiled once.
    return compile(source, filename, "exec")


def _compile(source: str, hook: str, ns: dict[str, Any], what: str) -> Callable[..., Any]:
    digest = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()[:12]
    filename = f"<hookwire {what} {hook} {digest}>"
    # A traceback through the function shows its lines (as dataclasses' generated methods do);
    # no modification time, so linecache.checkcache keeps the entry.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(_code(source, filename), ns)
    fn: Callable[..., Any] = ns[("a" if source.startswith("async") else "") + hook]
    fn.__hookwire_source__ = source  # type: ignore[attr-defined]
    return fn


def _sink_put(
    i: int, e: Entry, call: str, argnames: Sequence[str], tail: Sequence[str], with_kw: bool
) -> list[str]:
    """The statements queueing entry ``i``'s event on its sink (``Sink``), with ``call`` (to
    its ``_hookwire_raw``) where they cannot. ``tail``: model and provider, each a name or
    ``None`` (known not given); ``with_kw``: the app passed extra keywords."""
    assert e.sink is not None

    def snap(name: str) -> str:  # written out: an immutable value costs a type check
        return f"({name} if type({name}) in imm{i} else wrap{i}(dumps{i}({name}, default=dft{i})))"

    parts = ", ".join(
        [
            "hook",
            "(" + "".join(f"{snap(a)}, " for a in argnames) + ")",
            "run_id, timestamp, ctx, kw",
            *(o if o == "None" else snap(o) for o in tail),
        ]
    )
    check = []
    if with_kw:
        # Queued as they are only when all immutable, else _hookwire_raw copies them. A loop:
        # ``issuperset(map(type, ...))`` builds a set and a map, about 120 ns more for one.
        check = [
            "for v in kw.values():",
            f"    if type(v) not in imm{i}:",
            "        q = None",
            "        break",
        ]
    return [
        f"q = hs[{e.pos}].{e.sink.queue}",
        *check,
        f"if {'q is not None and ' if with_kw else ''}len(items := q.items) < q.maxsize:",
        "    try:",
        f"        parts = ({parts})",
        "    except Exception:",
        f"        {call}",
        "    else:",
        "        items.append(parts)",
        "        if not q.scheduled:",
        "            q.schedule()",
        "else:",
        f"    {call}",
    ]


def _call(i: int, e: Entry, is_async: bool, payload: str, kwpart: str, raw: str) -> str:
    """The statement that calls entry ``i``."""
    handler = f"hs[{e.pos}]"
    # Queued and background-loop calls take the arguments as a tuple and a dict.
    args, kwargs = ("(event,)", "{}") if e.wants_event else (payload, "full")
    if e.raw is not None:
        return f"raw{i}({handler}, hook, {payload}, run_id, timestamp, ctx, {raw})"
    if e.kind == QUEUE:
        aw = "await " if is_async else ""
        return f"{aw}_manager.{'_aenqueue' if is_async else '_enqueue'}(e{i}, {args}, {kwargs})"
    if e.kind == AWAIT and not is_async:
        return f"bg(fn{i}, ({handler}, *{args}), {kwargs})"
    aw = "await " if e.kind == AWAIT else ""
    if e.wants_event:
        return f"{aw}fn{i}({handler}, event)"
    return f"{aw}fn{i}({handler}, {payload[1:-1]}{kwpart})"


def write_dispatcher(
    hook: str,
    entries: tuple[Entry, ...],
    *,
    is_async: bool,
    bg: Callable[..., Any],
) -> Callable[..., Any]:
    """The dispatch method of ``hook`` for these entries (see the module docstring).

    ``bg`` runs a coroutine function on the background loop and waits (an async
    handler called from sync code).
    """
    optional = _optional_keywords(hook)
    argnames = HOOKS[hook].args
    payload = "(" + "".join(f"{a}, " for a in argnames) + ")"
    next_n, id_cell, id_tails, fresh_id = id_parts()
    ns: dict[str, Any] = {
        "new_id": new_id,
        "next_n": next_n,
        "id_cell": id_cell,
        "id_tails": id_tails,
        "fresh_id": fresh_id,
        "now": time.time,
        "get": hook_context,
        "make_event": event_from_call,
        "bg": bg,
        "hook": hook,
    }
    for i, e in enumerate(entries):
        ns[f"fn{i}"], ns[f"e{i}"], ns[f"raw{i}"] = e.fn, e, e.raw
        if e.sink is not None:
            _, ns[f"imm{i}"], ns[f"dumps{i}"], ns[f"dft{i}"], ns[f"wrap{i}"] = e.sink
    # What the calls need besides the payload: the merged keyword dict (plain handlers), the
    # keywords as one dict (queued, background-loop and on_event handlers: ``full``), the
    # typed record (on_event). Raw handlers take model and provider by name and the rest in
    # ``kw``.
    need_kw = any(e.raw is None for e in entries)
    raw_tail = "kw, " + ", ".join(o if o in optional else "None" for o in ("model", "provider"))
    need_full = any(
        e.kind == QUEUE or e.wants_event or (e.kind == AWAIT and not is_async) for e in entries
    )
    need_event = any(e.wants_event for e in entries)

    def calls(kwpart: str, indent: str, given: tuple[str, ...] | None = None) -> list[str]:
        # ``given``: the optional keywords known to be given (None: unknown, extra keywords).
        out: list[str] = []
        for i, e in enumerate(entries):
            body = [_call(i, e, is_async, payload, kwpart, raw_tail)]
            if e.sink is not None:
                tail = [o if given is None or o in given else "None" for o in optional]
                tail += ["None"] * (2 - len(tail))
                body = _sink_put(i, e, body[0], argnames, tail, given is None)
            out += [
                f"{indent}try:",
                *(f"{indent}    {line}" for line in body),
                f"{indent}except Exception as exc:",
                f"{indent}    _manager._report(e{i}, exc)",
            ]
        return out

    lines = [
        _signature(hook, is_async, optional),
        "    hs = _manager._handlers",
        "    if timestamp is None:",
        "        timestamp = now()",
        "        if run_id is None:",
        # ids.id_at written out: a call would be a Python frame on every start event.
        "            n = next_n()",
        "            end, hi, prefix = id_cell[0]",
        "            if timestamp < end and n >> 12 == hi:",
        "                run_id = prefix + id_tails[n & 0xFFF]",
        "            else:",
        "                run_id = fresh_id(n, timestamp)",
        "    elif run_id is None:",
        "        run_id = new_id()",
        "    ctx = get()",
        "    if kw:",
    ]
    # Extra keywords: merged with the ids and the run context into one dict (the caller wins
    # over the context) that every plain handler gets as its keywords.
    if need_kw:
        lines.append("        mkw = {'run_id': run_id, 'timestamp': timestamp, **ctx, **kw}")
        lines += [f"        if {o} is not None:\n            mkw[{o!r}] = {o}" for o in optional]
    if need_full:
        lines.append("        full = mkw")
    if need_event:
        lines.append(f"        event = make_event(hook, {payload}, full)")
    lines += calls("**mkw", "        ")

    # No extra keywords: one branch per combination of the optional keywords given, each
    # calling the handlers with exactly those keywords by name, plus the run context's
    # unpacked into the call inside a run (no dict is merged first: the handler's own
    # ``**kwargs`` is the one dict made per call).
    def bare(
        remaining: tuple[str, ...], given: tuple[str, ...], indent: str, in_run: bool
    ) -> list[str]:
        if remaining:
            o, rest = remaining[0], remaining[1:]
            return [
                f"{indent}if {o} is None:",
                *bare(rest, given, indent + "    ", in_run),
                f"{indent}else:",
                *bare(rest, (*given, o), indent + "    ", in_run),
            ]
        out: list[str] = []
        if need_full:
            pairs = "".join(f", {o!r}: {o}" for o in given)
            ctx = ", **ctx" if in_run else ""
            out.append(f"{indent}full = {{'run_id': run_id, 'timestamp': timestamp{ctx}{pairs}}}")
        if need_event:
            out.append(f"{indent}event = make_event(hook, {payload}, full)")
        kwpart = "run_id=run_id, timestamp=timestamp" + "".join(f", {o}={o}" for o in given)
        return out + calls(kwpart + (", **ctx" if in_run else ""), indent, given)

    lines.append("    elif ctx:")
    lines += bare(optional, (), "        ", True)
    lines.append("    else:")
    lines += bare(optional, (), "        ", False)
    lines.append("    return run_id" if HOOKS[hook].starts_run else "    return None")
    return _compile("\n".join(lines) + "\n", hook, ns, "dispatch")
