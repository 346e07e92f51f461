"""Streamed answers, read as the app reads them, and their end reported once however they end.

Two ways a streamed answer reaches an app, both observed here:

- the SDK's ``Stream`` / ``AsyncStream`` (``stream=True``, and the ``stream`` helpers built on
  it): each server-sent event is read as the SDK takes it from the body (its
  ``_iter_events``), so token events keep step with the chunks the app receives;
- a body the app reads itself (``with_streaming_response``, a streamed ``with_raw_response``,
  whatever it then calls): the HTTP response's byte stream is teed, and read as it passes.

The end is reported when the HTTP response is closed: the SDK closes it at the stream's end,
and ``close()``, a ``with`` block or a ``for`` loop broken out of do too (the SDK's stream
classes are swapped for subclasses that close on ``break`` and when dropped half-read).
"""

from __future__ import annotations

import asyncio
import functools
import sys
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, NamedTuple

import openai

from ...events import EmbeddingResponse
from .calls import Call, Events, aemit, emit, failures

__all__ = [
    "AsyncObservedStream",
    "ObservedStream",
    "observe_body",
    "observe_stream",
]

_perf = time.perf_counter
_NONE: Events = []


class Observer:
    """One streamed answer being read: the events each of its server-sent events calls for,
    and its end."""

    __slots__ = ("broken", "call", "index", "reader", "reading", "token_kw", "tokens", "ttft")

    def __init__(self, call: Call) -> None:
        self.call = call
        self.reader = call.reader()
        self.tokens = call.inst.manager.listens("on_llm_new_token")
        #: The keywords of every token event but its ``index``, made at the first token.
        self.token_kw: dict[str, Any] | None = None
        self.index = 0
        self.ttft: float | None = None
        self.broken = False
        #: Set while the body is being read: the HTTP library closes a response whose read
        #: failed before the failure reaches the reader, which reports it, not a cut answer.
        self.reading = False

    def event(self, name: str | None, data: str) -> Events:
        """Read one event of a body the app reads itself: its events."""
        if self.broken:
            return _NONE
        try:
            token = self.reader.event(name, data)
        except Exception as exc:
            return self._unreadable(exc)
        return self._token(token) if token else _NONE

    def passed(self, sse: Any) -> Events:
        """Read one of the SDK's server-sent events: its events, or ``HIDDEN``."""
        if self.broken:
            return _NONE
        reader = self.reader
        reader.skip = False
        try:
            token = reader.sse(sse)
        except Exception as exc:
            return self._unreadable(exc)
        if reader.skip:
            return HIDDEN
        return self._token(token) if token else _NONE

    def _unreadable(self, exc: Exception) -> Events:
        # An error event is the reader's to report; anything else stops the reading.
        if self.reader.error is None:
            failures("a stream event", exc)
            self.broken = True
        return _NONE

    def _token(self, token: str) -> Events:
        """A piece of text came: the first one's time, and its token event."""
        if self.ttft is None:
            self.ttft = _perf()
        if not self.tokens:
            return _NONE
        kw = self.token_kw
        if kw is None:
            call = self.call
            kw = self.token_kw = {**call.kw, "attempt": call.attempts or 1}
        index = self.index
        self.index = index + 1
        return [("on_llm_new_token", (token,), {**kw, "index": index})]

    def ended(self, body: bytes | None = None) -> Events:
        """The answer's end: with what came (``cancelled=True`` if it had not finished), or
        its error event; ``body`` is a whole JSON answer read through a tee."""
        call = self.call
        if call.ended:
            return _NONE
        if body is not None:
            return call.completed(body)
        reader = self.reader
        if reader.error is not None:
            return call.failed(reader.error)
        try:
            if call.endpoint.embedding:
                response: Any = EmbeddingResponse(model=call.model, provider=call.inst.provider)
            else:
                response = reader.result()
        except Exception as exc:
            failures("the end of a stream", exc)
            call.ended = True
            return _NONE
        extra: dict[str, Any] = {}
        if self.ttft is not None:
            extra["ttft_ms"] = (self.ttft - call.t0) * 1000.0
        if not reader.done:
            extra["cancelled"] = True
        return call.finished(response, **extra)


def _closing_class(cls: type, is_async: bool) -> type:
    """A subclass of an SDK's stream class ``cls`` whose stream closes its response when a
    ``for`` loop over it stops early or when it is dropped half-read (so its end is reported
    then). A subclass of ``cls`` alone (a mixin base would change the instance layout, which
    ``__class__`` assignment refuses)."""
    if is_async:
        aiter = cls.__aiter__  # type: ignore[attr-defined]

        async def __aiter__(self: Any) -> AsyncIterator[Any]:
            try:
                async for item in aiter(self):
                    yield item
            finally:
                await self.close()

        def __adel__(self: Any) -> None:
            # Dropped half-read: close it on the loop it was read on, if that still runs.
            try:
                if not self.response.is_closed:
                    asyncio.get_running_loop().create_task(self.close())
            except Exception:
                pass  # no running loop: the response is left to the garbage collector

        methods: dict[str, Any] = {"__aiter__": __aiter__, "__del__": __adel__}
    else:
        iterate = cls.__iter__  # type: ignore[attr-defined]

        def __iter__(self: Any) -> Iterator[Any]:
            try:
                yield from iterate(self)
            finally:
                self.close()

        def __del__(self: Any) -> None:
            try:
                if not self.response.is_closed:
                    self.close()
            except Exception:
                pass  # never raise from a finalizer

        methods = {"__iter__": __iter__, "__del__": __del__}
    methods["__doc__"] = f"``{cls.__module__}.{cls.__name__}`` that closes when left early."
    return type(f"Observed{cls.__name__}", (cls,), methods)


#: ``openai.Stream`` that closes its response when a ``for`` loop over it stops early or when
#: it is dropped half-read (so its end is reported then).
ObservedStream: type = _closing_class(openai.Stream, False)
#: ``ObservedStream`` for ``openai.AsyncStream``.
AsyncObservedStream: type = _closing_class(openai.AsyncStream, True)

#: An SDK's plain stream class -> its subclass that closes early (made once per class).
_OBSERVED: dict[type, type] = {
    openai.Stream: ObservedStream,
    openai.AsyncStream: AsyncObservedStream,
}


def _observed(cls: type, is_async: bool) -> type:
    found = _OBSERVED.get(cls)
    if found is None:
        found = _OBSERVED[cls] = _closing_class(cls, is_async)
    return found


#: What ``feed`` returns for an item the app is not to see (it calls for no event).
HIDDEN: Events = []


class _Steps(NamedTuple):
    """What a relay does: ``feed`` an item (the events it calls for; ``HIDDEN`` to keep it
    from the app), and the ``end`` of the items."""

    feed: Callable[[Any], Events]
    end: Callable[[], Events]


def _relay(obs: Observer, items: Iterator[Any], steps: _Steps) -> Iterator[Any]:
    """``items`` as the app reads them, through ``steps``; a failure is the call's error."""
    feed, end = steps
    manager = obs.call.inst.manager
    obs.reading = True
    try:
        for item in items:
            obs.reading = False
            events = feed(item)
            if events:
                emit(manager, events)
            if events is not HIDDEN:
                yield item
            obs.reading = True
    except Exception as exc:
        obs.reading = False
        emit(manager, obs.call.failed(exc))
        raise
    finally:
        obs.reading = False
    emit(manager, end())


async def _arelay(obs: Observer, items: AsyncIterator[Any], steps: _Steps) -> AsyncIterator[Any]:
    """``_relay`` for async items."""
    feed, end = steps
    manager = obs.call.inst.manager
    obs.reading = True
    try:
        async for item in items:
            obs.reading = False
            events = feed(item)
            if events is not HIDDEN:
                await aemit(manager, events)
                yield item
            obs.reading = True
    except Exception as exc:
        obs.reading = False
        await aemit(manager, obs.call.failed(exc))
        raise
    finally:
        obs.reading = False
    await aemit(manager, end())


def _closing(obs: Observer, close: Callable[[], None], end: Callable[[], Events]) -> Any:
    """``close``, then the end ``end()`` (unless the close comes from a failed read)."""

    def closing() -> None:
        try:
            close()
        finally:
            if not obs.reading:
                emit(obs.call.inst.manager, end())

    return closing


def _aclosing(obs: Observer, aclose: Callable[[], Any], end: Callable[[], Events]) -> Any:
    """``_closing`` for an async close."""

    async def closing() -> None:
        try:
            await aclose()
        finally:
            if not obs.reading:
                await aemit(obs.call.inst.manager, end())

    return closing


def observe_stream(stream: Any, call: Call) -> None:
    """Report ``stream``'s events as the SDK reads them, and its end when it is closed
    (``stream``: one of the SDK's ``Stream`` / ``AsyncStream``, or a subclass)."""
    obs = Observer(call)
    events_of = stream._iter_events
    steps = _Steps(obs.passed, obs.ended)
    response = stream.response
    cls = type(stream)
    plain = cls in call.inst.sdk.streams
    if hasattr(cls, "__aiter__"):
        stream._iter_events = lambda: _arelay(obs, events_of(), steps)
        response.aclose = _aclosing(obs, response.aclose, obs.ended)
        if plain:
            stream.__class__ = _observed(cls, True)
    else:
        stream._iter_events = lambda: _relay(obs, events_of(), steps)
        response.close = _closing(obs, response.close, obs.ended)
        if plain:
            stream.__class__ = _observed(cls, False)


class _SSESplitter:
    """Splits a body's bytes into server-sent events: ``(event, data)`` pairs."""

    __slots__ = ("buffer", "data", "name")

    def __init__(self) -> None:
        self.buffer = b""
        self.name: str | None = None
        self.data: list[str] = []

    def feed(self, part: bytes) -> list[tuple[str | None, str]]:
        out: list[tuple[str | None, str]] = []
        lines = (self.buffer + part).split(b"\n")
        self.buffer = lines.pop()
        for raw in lines:
            line = raw.rstrip(b"\r").decode("utf-8", "replace")
            if not line:
                if self.data:
                    out.append((self.name, "\n".join(self.data)))
                self.name, self.data = None, []
            elif line.startswith("data:"):
                self.data.append(line[6:] if line.startswith("data: ") else line[5:])
            elif line.startswith("event:"):
                self.name = line[6:].strip()
        return out


class _Body:
    """What a tee does with the bytes of one body: split events, or keep a JSON answer."""

    __slots__ = ("decoder", "events", "json", "obs")

    def __init__(self, obs: Observer, sse: bool, encoding: str) -> None:
        self.obs = obs
        self.events = _SSESplitter() if sse else None
        self.json = bytearray()
        # Raw bytes are read before the HTTP library decodes them: gzip and deflate here.
        self.decoder = zlib.decompressobj(47) if encoding in ("gzip", "deflate") else None

    def feed(self, part: bytes) -> Events:
        """Read one piece of the body as it passes to the app (never raising into it)."""
        if self.obs.broken:
            return _NONE
        try:
            if self.decoder is not None:
                part = self.decoder.decompress(part)
            if self.events is None:
                self.json += part
                return _NONE
            out: Events = []
            for name, data in self.events.feed(part):
                out += self.obs.event(name, data)
        except Exception as exc:
            failures("a body", exc)
            self.obs.broken = True
            return _NONE
        return out

    def whole(self) -> Events:
        """The body was read to its end: the answer."""
        if self.events is None:
            return self.obs.ended(bytes(self.json))
        return self.obs.ended()

    def cut(self) -> Events:
        """The body was closed before its end: what came."""
        return self.obs.ended()


def _body(response: Any, call: Call) -> _Body | None:
    headers = response.headers
    encoding = str(headers.get("content-encoding", "identity")).lower()
    if encoding not in ("identity", "gzip", "deflate"):
        failures("a body", ValueError(f"unreadable content-encoding {encoding!r}"))
        return None
    sse = "text/event-stream" in str(headers.get("content-type", ""))
    return _Body(Observer(call), sse, encoding)


_BASES: dict[tuple[str, bool], type | None] = {}


def _base(response: Any, is_async: bool) -> type | None:
    """The byte stream class of ``response``'s HTTP library (``httpx2``, or ``httpx``)."""
    module = type(response).__module__.partition(".")[0]
    key = (module, is_async)
    if key not in _BASES:
        found = getattr(
            sys.modules.get(module), "AsyncByteStream" if is_async else "SyncByteStream", None
        )
        _BASES[key] = found if isinstance(found, type) else None
    return _BASES[key]


_TEES: dict[type, type] = {}


def _init(self: Any, parts: Callable[[], Any], close: Callable[[], Any]) -> None:
    self.parts = parts
    self.closer = close


def _tee(base: type, is_async: bool, parts: Callable[[], Any], close: Callable[[], Any]) -> Any:
    """A byte stream of ``base``'s library whose iteration is ``parts()`` and whose close is
    ``close()`` (one class per library, made once)."""
    cls = _TEES.get(base)
    if cls is None:
        methods: dict[str, Any] = {"__init__": _init}
        if is_async:
            methods["__aiter__"] = lambda self: self.parts()
            methods["aclose"] = lambda self: self.closer()
        else:
            methods["__iter__"] = lambda self: self.parts()
            methods["close"] = lambda self: self.closer()
        cls = _TEES[base] = type("TeedByteStream", (base,), methods)
    return cls(parts, close)


def observe_body(response: Any, call: Call, is_async: bool) -> None:
    """Tee the unread body of ``response``: its answer is read as the app reads it."""
    base = _base(response, is_async)
    body = _body(response, call)
    if base is None or body is None:
        return
    obs, inner = body.obs, response.stream
    relay, closing = (_arelay, _aclosing) if is_async else (_relay, _closing)
    parts = functools.partial(relay, obs, inner, _Steps(body.feed, body.whole))
    close = inner.aclose if is_async else inner.close
    response.stream = _tee(base, is_async, parts, closing(obs, close, body.cut))
