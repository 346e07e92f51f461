"""``instrument`` / ``uninstrument``: where the instrumentation sits on an ``openai`` client.

Every API call of the SDK, whatever resource, helper or wrapper made it (``chat.completions``,
``beta.chat.completions.parse``, ``responses.stream``, ``with_raw_response``, instructor's
patched ``create``, ...), goes through one method of the client: ``request(cast_to, options,
stream=..., stream_cls=...)``, which holds the SDK's retry loop and sends each attempt
through ``_send_request(request, stream=...)``. The instrumentation wraps those two methods
on the client object itself (instance attributes, so the class and other clients are
untouched):

- ``request`` is one call: the request's options name the endpoint (``/chat/completions``,
  ``/responses``, ``/completions``, ``/embeddings``; anything else passes through) and
  carry the JSON body, so the start event is told before the first attempt and the end once
  the answer is read;
- ``_send_request`` is one attempt: an attempt after a failed one is an ``on_retry`` of the
  same call (with the time the SDK waited as ``delay``), and the last attempt's HTTP response
  is where the answer is read from (its JSON body, or its stream as the app reads it).
  ``_send_request`` is private to the SDK: when an SDK lacks it, calls are still reported
  (read from the parsed answer), without their retries.

Anthropic's SDK, made by the same generator, has the same ``request``; each of its attempts
goes through ``_attempt_request(options, stream=...)`` instead, which is wrapped the same way
(``attach`` does it for ``hookwire.integrations.anthropic``, with that SDK's ``SDK`` record).

``copy`` and ``with_options`` are wrapped too, so the clients derived from an instrumented
one report to the same handlers. Resources (``client.chat.completions``, ...) are never
touched, so an instance-level patch on them (instructor's, the app's own) keeps working, and
``uninstrument`` puts back exactly the attributes that were on the client before.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

import openai

from ...context import check_request_context
from ...dispatch import CallbackManager, Callbacks
from ...errors import CallbackAbort, ConfigurationError
from ...llms.openai_wire import server_keywords
from .calls import Call, Events, Instrumentation, aemit, emit, failures
from .streams import observe_body, observe_stream

__all__ = ["attach", "detach", "instrument", "is_attached", "is_instrumented", "uninstrument"]

C = TypeVar("C", openai.OpenAI, openai.AsyncOpenAI)

_perf = time.perf_counter
_ATTR = "_hookwire_instrumentation"
_RAW_HEADER = "X-Stainless-Raw-Response"
_ABSENT: Any = object()

#: The call whose request is being sent, for the attempts to count themselves in.
_CURRENT: ContextVar[Call | None] = ContextVar("hookwire_openai_call", default=None)


@dataclass(slots=True, eq=False)
class _Patched:
    """An instrumented client: where it reports, and the attributes it had before."""

    inst: Instrumentation
    saved: dict[str, Any]


def _max_attempts(client: Any, options: Any) -> int:
    try:
        return int(options.get_max_retries(client.max_retries)) + 1
    except Exception:
        retries = getattr(options, "max_retries", None)
        return (retries if isinstance(retries, int) else int(client.max_retries)) + 1


def _prepare(
    inst: Instrumentation, client: Any, options: Any
) -> tuple[Call, Any, dict[str, Any]] | None:
    """The call to report for a request (``None``: not a reported endpoint, or a failure of
    the instrumentation, logged), and its start event's payload and keywords."""
    try:
        endpoint = inst.sdk.endpoints.get(options.url)
        if endpoint is None or str(options.method).lower() != "post":
            return None
        body = options.json_data
        if not isinstance(body, Mapping):
            return None
        headers = options.headers
        raw = headers.get(_RAW_HEADER) if isinstance(headers, Mapping) else None
        hide = False
        asks = body.get("stream") and endpoint.usage_option and raw is None
        if asks and not body.get("stream_options"):
            # Usage comes in a last chunk only when asked for; the app is not shown that
            # chunk, so it sees the chunks it would have seen.
            body = {**body, "stream_options": {"include_usage": True}}
            options.json_data = body
            hide = True
        call = Call(inst, endpoint, body, _max_attempts(client, options), hide)
        payload, kw = call.start_args(body)
    except Exception as exc:
        failures("a request", exc)
        return None
    return call, payload, kw


def _answer(call: Call, result: Any) -> tuple[Any, Events | None]:
    """How ``result`` is read: ``(response, None)`` for a body to observe as it is read,
    ``(None, events)`` for an answer already read (the events it calls for)."""
    response = call.response or getattr(result, "http_response", None)
    if response is None:
        dump = getattr(result, "model_dump_json", None)
        return None, call.completed(dump().encode()) if dump is not None else []
    try:
        body = response.content
    except Exception:  # not read yet: the app reads it
        return (None, []) if response.is_closed else (response, None)
    return None, call.completed(body)


def _read(call: Call, result: Any, sync: bool) -> Events:
    """After the SDK returned ``result``: a stream or an unread body is observed as the app
    reads it (nothing to send yet); an answer already read gives its end event."""
    try:
        if isinstance(result, call.inst.sdk.streams):
            observe_stream(result, call)
        else:
            response, events = _answer(call, result)
            if response is None:
                return events or []
            observe_body(response, call, not sync)
    except Exception as exc:
        failures("an answer", exc)
    return []


def _sync_request(inst: Instrumentation, client: Any, original: Any) -> Callable[..., Any]:
    def request(cast_to: Any, options: Any, *args: Any, **kwargs: Any) -> Any:
        prepared = _prepare(inst, client, options)
        if prepared is None:
            return original(cast_to, options, *args, **kwargs)
        call, payload, kw = prepared
        manager = inst.manager
        try:
            getattr(manager, call.hooks[0])(payload, **kw)
        except CallbackAbort as abort:
            emit(manager, call.aborted(abort))
            raise
        call.t0 = _perf()
        token = _CURRENT.set(call)
        try:
            result = original(cast_to, options, *args, **kwargs)
        except Exception as exc:
            emit(manager, call.failed(exc))
            raise
        finally:
            _CURRENT.reset(token)
        ended = _read(call, result, True)
        if ended:
            emit(manager, ended)
        return result

    return request


def _async_request(inst: Instrumentation, client: Any, original: Any) -> Callable[..., Any]:
    async def request(cast_to: Any, options: Any, *args: Any, **kwargs: Any) -> Any:
        prepared = _prepare(inst, client, options)
        if prepared is None:
            return await original(cast_to, options, *args, **kwargs)
        call, payload, kw = prepared
        manager = inst.manager
        try:
            await getattr(manager, "a" + call.hooks[0])(payload, **kw)
        except CallbackAbort as abort:
            await aemit(manager, call.aborted(abort))
            raise
        call.t0 = _perf()
        token = _CURRENT.set(call)
        try:
            result = await original(cast_to, options, *args, **kwargs)
        except Exception as exc:
            await aemit(manager, call.failed(exc))
            raise
        finally:
            _CURRENT.reset(token)
        await aemit(manager, _read(call, result, False))
        return result

    return request


def _sent(call: Call, result: Any) -> Any:
    # ``_send_request`` returns the response, ``_attempt_request`` (Anthropic's) the response
    # and the options it was sent with.
    response = result[0] if type(result) is tuple else result
    call.response = response
    if response.status_code >= 400:
        call.attempt_failed(None, response)
    return result


def _sync_send(inst: Instrumentation, client: Any, original: Any) -> Callable[..., Any]:
    def send(request: Any, *args: Any, **kwargs: Any) -> Any:
        call = _CURRENT.get()
        if call is None or call.inst is not inst:
            return original(request, *args, **kwargs)
        retried = call.attempt(_perf())
        if retried:
            emit(inst.manager, retried)
        try:
            response = original(request, *args, **kwargs)
        except Exception as exc:  # a timeout, a broken connection: the SDK may send another
            call.attempt_failed(exc, None)
            raise
        return _sent(call, response)

    return send


def _async_send(inst: Instrumentation, client: Any, original: Any) -> Callable[..., Any]:
    async def send(request: Any, *args: Any, **kwargs: Any) -> Any:
        call = _CURRENT.get()
        if call is not None and call.inst is inst:
            await aemit(inst.manager, call.attempt(_perf()))
            try:
                return _sent(call, await original(request, *args, **kwargs))
            except Exception as exc:
                call.attempt_failed(exc, None)
                raise
        return await original(request, *args, **kwargs)

    return send


def _derive(inst: Instrumentation, client: Any, original: Any) -> Callable[..., Any]:
    def copy(*args: Any, **kwargs: Any) -> Any:
        derived = original(*args, **kwargs)
        try:
            _patch(derived, inst)
        except Exception as exc:
            failures("copy", exc)
        return derived

    copy.__doc__ = getattr(original, "__doc__", None)
    return copy


_Wrapper = Callable[[Instrumentation, Any, Any], Callable[..., Any]]
# One of ``_send_request`` (openai's) and ``_attempt_request`` (Anthropic's) is wrapped: the
# first the client has, so an SDK with both does not count each attempt twice.
_ATTEMPTS = ("_send_request", "_attempt_request")
_SYNC: dict[str, _Wrapper] = {
    "request": _sync_request,
    "_send_request": _sync_send,
    "_attempt_request": _sync_send,
    "copy": _derive,
    "with_options": _derive,
}
_ASYNC: dict[str, _Wrapper] = {
    "request": _async_request,
    "_send_request": _async_send,
    "_attempt_request": _async_send,
    "copy": _derive,
    "with_options": _derive,
}


def _patch(client: Any, inst: Instrumentation) -> None:
    """Wrap ``client``'s methods (those it has) for ``inst``; keep what was on the instance."""
    own = client.__dict__
    saved: dict[str, Any] = {}
    is_async = inspect.iscoroutinefunction(getattr(type(client), "request", None))
    wrappers = _ASYNC if is_async else _SYNC
    attempts = [n for n in _ATTEMPTS if getattr(client, n, None) is not None][1:]
    for name, wrap in wrappers.items():
        current = getattr(client, name, None)
        if current is None or name in attempts:
            continue
        saved[name] = own.get(name, _ABSENT)
        wrapper = wrap(inst, client, current)
        wrapper.__wrapped__ = current  # type: ignore[attr-defined]
        own[name] = wrapper
    own[_ATTR] = _Patched(inst, saved)


def instrument(
    client: C,
    callbacks: Callbacks = None,
    *,
    provider: str | None = None,
    **context: Any,
) -> C:
    """Make ``client`` (an ``openai.OpenAI`` or ``openai.AsyncOpenAI``, Azure's included) emit
    hookwire events for the calls it makes; returns the same client.

    ``callbacks``: the hookwire handlers (a list or a ``CallbackManager``). ``provider``: the
    provider name events carry: ``"openai"``, or ``"azure.ai.openai"`` for ``AzureOpenAI``
    clients, by default; say ``"vllm"``, ``"ollama"``, ... for another OpenAI-compatible
    server, so prices and metrics are told apart. ``**context``: request context for every
    event (``user_id``, ``org_id``, ...), added to what ``hookwire.trace`` /
    ``hookwire.request_context`` set around the call. Instrumenting an instrumented client
    again replaces its callbacks, provider and context (for the clients derived from it with
    ``with_options`` or ``copy`` too).
    """
    if not isinstance(client, (openai.OpenAI, openai.AsyncOpenAI)):
        raise ConfigurationError(
            f"instrument() takes an openai.OpenAI or openai.AsyncOpenAI client, not "
            f"{type(client).__name__}"
        )
    manager = CallbackManager.ensure(callbacks)
    ctx = check_request_context(context)
    if provider is None:
        azure = (openai.AzureOpenAI, openai.AsyncAzureOpenAI)
        provider = "azure.ai.openai" if isinstance(client, azure) else "openai"
    attach(client, Instrumentation(manager, provider, ctx, server_keywords(client.base_url)))
    return client


def attach(client: Any, inst: Instrumentation) -> None:
    """Make ``client`` (of the SDK ``inst.sdk`` names) report to ``inst``: what ``instrument``
    does once it has checked its arguments. A client already attached keeps its wrappers and
    reports to ``inst``'s manager, provider and context from now on."""
    existing: _Patched | None = client.__dict__.get(_ATTR)
    if existing is not None:
        old = existing.inst
        old.manager, old.provider, old.context = inst.manager, inst.provider, inst.context
        return
    _patch(client, inst)


def uninstrument(client: openai.OpenAI | openai.AsyncOpenAI) -> None:
    """Undo ``instrument(client)``: the client's attributes are again exactly what they were
    (an instance-level patch made before ``instrument`` included). A client that is not
    instrumented is left as it is; clients derived from it stay instrumented."""
    detach(client)


def detach(client: Any) -> None:
    """Undo ``attach(client, ...)`` (``uninstrument`` for any SDK's client)."""
    patched: _Patched | None = client.__dict__.pop(_ATTR, None)
    if patched is None:
        return
    for name, before in patched.saved.items():
        if before is _ABSENT:
            client.__dict__.pop(name, None)
        else:
            client.__dict__[name] = before


def is_instrumented(client: openai.OpenAI | openai.AsyncOpenAI) -> bool:
    """Whether ``instrument`` was applied to ``client`` (or to the client it was derived
    from) and not undone."""
    return is_attached(client)


def is_attached(client: Any) -> bool:
    """Whether ``attach`` was applied to ``client`` (or to the client it was derived from)
    and not undone."""
    return _ATTR in client.__dict__
