"""``StreamingCallback``: streamed tokens to a function and to async iterators, once each.

What the caller sees when a stream is retried: the runner restarts a failed stream from the
beginning of the answer, with ``attempt`` + 1 and ``index`` 0 (``docs/events.md``).
``StreamingCallback`` compares the new attempt with the text it already delivered and stays
silent while they agree, then delivers only what is new. So when the retried answer repeats
what was shown (the usual case), the caller sees one seamless stream: nothing repeated and
nothing missing. If the new attempt differs from what was delivered, the text cannot be
patched in place: ``on_reset(attempt)`` is called (and iterators yield ``STREAM_RESET``), then
the new attempt is delivered from its beginning, so the caller can clear what it showed. (A
last attempt that only turns out different at its end, by being shorter, is settled when the
call ends: reset, then the final answer.) After a reset, what follows is the final answer.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable
from typing import Any, Final, Literal

from ..errors import ConfigurationError
from .base import BaseCallback

__all__ = ["STREAM_RESET", "StreamingCallback", "TokenStream"]


class _Reset(str):
    """The type of ``STREAM_RESET``: an empty string, so naive consumers are unaffected."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "STREAM_RESET"


#: Yielded by a ``TokenStream`` when a retried stream diverged from the text already
#: delivered: discard what you showed; the new attempt's text follows from its beginning.
#: It is an empty string, so code that just concatenates tokens keeps working.
STREAM_RESET: Final[str] = _Reset()

_END: Final = object()


class _CallState:
    """Delivery state of one LLM call (one ``run_id``)."""

    __slots__ = ("attempt", "cursor", "parts", "size", "text")

    def __init__(self) -> None:
        self.attempt = 1
        self.cursor = 0  # characters of the current attempt seen so far
        # The text delivered to the caller, as pieces (appending stays O(1) per token);
        # joined into ``text`` only while a retried attempt is compared with it.
        self.parts: list[str] = []
        self.size = 0
        self.text: str | None = None

    def delivered(self) -> str:
        if self.text is None:
            self.text = "".join(self.parts)
            self.parts = [self.text]
        return self.text

    def add(self, piece: str) -> None:
        self.parts.append(piece)
        self.size += len(piece)
        self.text = None

    def replace(self, text: str) -> None:
        self.parts = [text]
        self.size = len(text)
        self.text = text


class TokenStream:
    """An async iterator of one LLM call's tokens (or one run's), for a web handler.

    ``async for token in stream`` yields each token once, and ends when the call (or the
    run, with ``until="run"``) ends or fails; ``error`` then holds the failure, if any, and
    ``text`` everything delivered. Create it (``callback.stream()``) before starting the
    call: it follows the first call that starts after it was created, or the one given by
    ``run_id``.
    """

    def __init__(
        self,
        owner: StreamingCallback,
        until: Literal["llm", "run"],
        run_id: str | None,
    ) -> None:
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._queue: asyncio.Queue[Any] | None = None
        self._owner = owner
        self.until = until
        #: The call (or run) followed, once known.
        self.run_id = run_id
        #: The exception that ended the call, if it failed.
        self.error: BaseException | None = None
        #: The text delivered so far.
        self.text = ""
        self._done = False
        self._pending: list[Any] = []
        self._lock = threading.Lock()

    # producer side (any thread)

    def _push(self, item: Any) -> None:
        with self._lock:
            loop, queue = self._loop, self._queue
            if loop is None or queue is None:
                # Nobody iterates yet: keep the tokens for the first __anext__.
                self._pending.append(item)
                return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            queue.put_nowait(item)
        else:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the consumer's loop is closed: nobody is listening
                self._done = True

    def _token(self, token: str) -> None:
        if token is not STREAM_RESET:
            self.text += token
        else:
            self.text = ""
        self._push(token)

    def _finish(self, error: BaseException | None) -> None:
        if self._done:
            return
        self._done = True
        self.error = error
        self._push(_END)
        self._owner._unsubscribe(self)

    # consumer side

    def __aiter__(self) -> TokenStream:
        return self

    async def __anext__(self) -> str:
        if self._queue is None:
            loop = asyncio.get_running_loop()
            with self._lock:
                self._loop = loop
                self._queue = asyncio.Queue()
                for item in self._pending:
                    self._queue.put_nowait(item)
                self._pending.clear()
        item = await self._queue.get()
        if item is _END:
            # Later calls to __anext__ end at once.
            self._queue.put_nowait(_END)
            raise StopAsyncIteration
        return str(item) if item is not STREAM_RESET else STREAM_RESET

    async def aclose(self) -> None:
        """Stop following the call (tokens after this are not kept)."""
        self._finish(None)


class StreamingCallback(BaseCallback):
    """Hands each streamed token to ``on_token(token)`` and to ``stream()`` iterators.

    ``on_token`` may be a plain function or a coroutine function; tokens arrive in order,
    each once, also across retries (see the module docstring for what a retried stream
    looks like). ``on_reset(attempt)`` (sync or async) is called when a retried stream
    diverged from what was already delivered. Tokens of concurrent calls are kept apart by
    their ``run_id``.
    """

    name = "StreamingCallback"

    def __init__(
        self,
        on_token: Callable[[str], Any] | None = None,
        *,
        on_reset: Callable[[int], Any] | None = None,
    ) -> None:
        if on_token is not None and not callable(on_token):
            raise ConfigurationError(
                f"on_token must be a function taking the token, not {type(on_token).__name__}"
            )
        if on_reset is not None and not callable(on_reset):
            raise ConfigurationError(
                f"on_reset must be a function taking the attempt, not {type(on_reset).__name__}"
            )
        self.on_token = on_token
        self.on_reset = on_reset
        self._calls: dict[str, _CallState] = {}
        self._streams: list[TokenStream] = []
        self._lock = threading.Lock()
        is_async = inspect.iscoroutinefunction(on_token) or inspect.iscoroutinefunction(on_reset)
        if is_async:
            # The dispatcher awaits it from async code, and runs it on hookwire's background
            # loop (waiting for it, so order holds) from sync code.
            self.on_llm_new_token = self._aon_llm_new_token  # type: ignore[method-assign,assignment]
            self.on_llm_end = self._aon_llm_end  # type: ignore[method-assign,assignment]

    # -- subscriptions ----------------------------------------------------------------------

    def stream(
        self,
        *,
        until: Literal["llm", "run"] = "llm",
        run_id: str | None = None,
    ) -> TokenStream:
        """An async iterator of the next LLM call's tokens (or, ``until="run"``, the next run's).

        Create it before the call starts (or pass the call's or run's ``run_id``); it ends
        when that call (or top-level run) ends or fails.
        """
        if until not in ("llm", "run"):
            raise ConfigurationError(f'until must be "llm" or "run", not {until!r}')
        s = TokenStream(self, until, run_id)
        with self._lock:
            self._streams.append(s)
        return s

    def _unsubscribe(self, s: TokenStream) -> None:
        with self._lock:
            if s in self._streams:
                self._streams.remove(s)

    def _followers(self, kwargs: dict[str, Any]) -> list[TokenStream]:
        if not self._streams:
            return []
        run_id = kwargs.get("run_id")
        trace_id = kwargs.get("trace_id") or run_id
        out = []
        with self._lock:
            for s in self._streams:
                key = run_id if s.until == "llm" else trace_id
                if s.run_id is None:
                    s.run_id = key
                if s.run_id == key:
                    out.append(s)
        return out

    # -- the de-duplication -------------------------------------------------------------------

    def _new_text(self, token: str, kwargs: dict[str, Any]) -> tuple[bool, str]:
        """(reset?, text to deliver) for one token."""
        run_id = kwargs.get("run_id", "")
        attempt = int(kwargs.get("attempt", 1))
        with self._lock:
            st = self._calls.get(run_id)
            if st is None:
                st = self._calls[run_id] = _CallState()
            if attempt > st.attempt:
                st.attempt = attempt
                st.cursor = 0
            elif attempt < st.attempt:
                return False, ""  # a late token of an abandoned attempt
            cursor = st.cursor
            st.cursor = cursor + len(token)
            if cursor >= st.size:  # past what was delivered (always, on a first attempt)
                st.add(token)
                return False, token
            delivered = st.delivered()
            overlap = delivered[cursor : cursor + len(token)]
            if token.startswith(overlap):
                rest = token[len(overlap) :]
                if rest:
                    st.add(rest)
                return False, rest
            # The retried attempt says something else: restart the caller's text.
            text = delivered[:cursor] + token
            st.replace(text)
            return True, text

    def on_llm_start(self, prompt: Any, **kwargs: Any) -> None:
        """Bind waiting iterators to this call."""
        self._followers(kwargs)

    # Delivering text: to the caller's callbacks (a restart first, if any), then to the
    # iterators. ``_adeliver`` mirrors ``_deliver`` for async callbacks.

    def _deliver(self, reset: int, text: str, kwargs: dict[str, Any]) -> None:
        """``reset``: the attempt that restarts the text (``0``: none)."""
        if reset and self.on_reset is not None:
            self.on_reset(reset)
        if text and self.on_token is not None:
            self.on_token(text)
        self._feed(bool(reset), text, kwargs)

    async def _adeliver(self, reset: int, text: str, kwargs: dict[str, Any]) -> None:
        if reset and self.on_reset is not None:
            r = self.on_reset(reset)
            if inspect.isawaitable(r):
                await r
        if text and self.on_token is not None:
            r = self.on_token(text)
            if inspect.isawaitable(r):
                await r
        self._feed(bool(reset), text, kwargs)

    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        """Deliver the new part of ``token``."""
        reset, text = self._new_text(token, kwargs)
        self._deliver(int(kwargs.get("attempt", 1)) if reset else 0, text, kwargs)

    async def _aon_llm_new_token(self, token: str, **kwargs: Any) -> None:
        reset, text = self._new_text(token, kwargs)
        await self._adeliver(int(kwargs.get("attempt", 1)) if reset else 0, text, kwargs)

    def _feed(self, reset: bool, text: str, kwargs: dict[str, Any]) -> None:
        if not self._streams:
            return
        for s in self._followers(kwargs):
            if reset:
                s._token(STREAM_RESET)
            if text:
                s._token(text)

    def _end_call(self, kwargs: dict[str, Any], error: BaseException | None) -> None:
        run_id = kwargs.get("run_id", "")
        with self._lock:
            self._calls.pop(run_id, None)
            ending = [s for s in self._streams if s.until == "llm" and s.run_id == run_id]
        for s in ending:
            s._finish(error)

    def _reconcile(self, response: Any, kwargs: dict[str, Any]) -> str | None:
        """The final answer, if a retried stream delivered something else (else ``None``).

        A last attempt that is shorter than what an earlier attempt delivered cannot be
        caught token by token; the end of the call settles it.
        """
        content = getattr(response, "content", None)
        with self._lock:
            st = self._calls.get(kwargs.get("run_id", ""))
            if st is None or st.attempt == 1 or not isinstance(content, str):
                return None
            if st.size == len(content) and st.delivered() == content:
                return None
            st.replace(content)
            return content

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        """End the iterators following this call (after settling a retried stream)."""
        final = self._reconcile(response, kwargs)
        if final is not None:
            self._deliver(int(kwargs.get("attempts", 0)) or 2, final, kwargs)
        self._end_call(kwargs, None)

    async def _aon_llm_end(self, response: Any, **kwargs: Any) -> None:
        final = self._reconcile(response, kwargs)
        if final is not None:
            await self._adeliver(int(kwargs.get("attempts", 0)) or 2, final, kwargs)
        self._end_call(kwargs, None)

    def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
        """End the iterators following this call, keeping the error."""
        self._end_call(kwargs, error)

    def on_run_start(self, input: Any, **kwargs: Any) -> None:
        """Bind waiting run iterators to this run."""
        if self._streams and "parent_run_id" not in kwargs:
            with self._lock:
                for s in self._streams:
                    if s.until == "run" and s.run_id is None:
                        s.run_id = kwargs.get("run_id")

    def on_run_end(self, output: Any, **kwargs: Any) -> None:
        """End the iterators following this run."""
        if not self._streams:
            return
        run_id = kwargs.get("run_id")
        with self._lock:
            ending = [s for s in self._streams if s.until == "run" and s.run_id == run_id]
        error = kwargs.get("error")
        for s in ending:
            s._finish(error if isinstance(error, BaseException) else None)
