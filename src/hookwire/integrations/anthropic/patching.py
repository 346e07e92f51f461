"""``instrument`` / ``uninstrument`` for an ``anthropic`` client.

Anthropic's SDK is made by the same generator as openai's: every API call goes through the
client's ``request(cast_to, options, stream=..., stream_cls=...)``, each attempt of its retry
loop through ``_attempt_request(options, stream=...)``, and a streamed answer is a ``Stream``
/ ``AsyncStream`` read through ``_iter_events``. So the openai instrumentation's parts are
used as they are (``hookwire.integrations.openai.patching.attach``, its calls and streams),
with this SDK's record: the Messages endpoint, its stream classes and its errors.
"""

from __future__ import annotations

from typing import Any, TypeVar

import anthropic

from ...context import check_request_context
from ...dispatch import CallbackManager, Callbacks
from ...errors import ConfigurationError
from ...llms.openai_wire import server_keywords
from .._common import to_hookwire_error
from ..openai.calls import SDK, Instrumentation
from ..openai.patching import attach, detach, is_attached
from .messages import MESSAGES

__all__ = ["ANTHROPIC", "instrument", "is_instrumented", "uninstrument"]

C = TypeVar("C", anthropic.Anthropic, anthropic.AsyncAnthropic)


def _attempt_error(exc: BaseException | None, response: Any) -> BaseException:
    """The SDK's exception for a failed attempt: its own (``_attempt_request`` raises typed
    errors for timeouts and broken connections), or one for an HTTP error ``response`` (its
    body is left unread: the SDK closes it before retrying)."""
    if exc is not None:
        return exc
    return anthropic.APIStatusError(f"HTTP {response.status_code}", response=response, body=None)


def _map_error(exc: BaseException, *, provider: str, model: str | None) -> BaseException:
    return to_hookwire_error(exc, provider=provider, model=model)


#: The ``anthropic`` SDK: the Messages endpoint (``beta.messages`` too).
ANTHROPIC = SDK(
    {"/v1/messages": MESSAGES, "/v1/messages?beta=true": MESSAGES},
    (anthropic.Stream, anthropic.AsyncStream),
    _map_error,
    _attempt_error,
)


def instrument(
    client: C,
    callbacks: Callbacks = None,
    *,
    provider: str | None = None,
    **context: Any,
) -> C:
    """Make ``client`` (an ``anthropic.Anthropic`` or ``anthropic.AsyncAnthropic``) emit
    hookwire events for the messages it creates; returns the same client.

    ``callbacks``: the hookwire handlers (a list or a ``CallbackManager``). ``provider``: the
    provider name events carry (and prices are looked up at), ``"anthropic"`` by default.
    ``**context``: request context for every event (``user_id``, ``org_id``, ...), added to
    what ``hookwire.trace`` / ``hookwire.request_context`` set around the call.
    Instrumenting an instrumented client again replaces its callbacks, provider and context
    (for the clients derived from it with ``with_options`` or ``copy`` too).
    """
    if not isinstance(client, (anthropic.Anthropic, anthropic.AsyncAnthropic)):
        raise ConfigurationError(
            f"instrument() takes an anthropic.Anthropic or anthropic.AsyncAnthropic client, "
            f"not {type(client).__name__} (for an openai client use "
            "hookwire.integrations.openai.instrument)"
        )
    manager = CallbackManager.ensure(callbacks)
    ctx = check_request_context(context)
    server = server_keywords(client.base_url)
    attach(client, Instrumentation(manager, provider or "anthropic", ctx, server, ANTHROPIC))
    return client


def uninstrument(client: anthropic.Anthropic | anthropic.AsyncAnthropic) -> None:
    """Undo ``instrument(client)``: the client's attributes are again exactly what they were.
    A client that is not instrumented is left as it is; clients derived from it stay
    instrumented."""
    detach(client)


def is_instrumented(client: anthropic.Anthropic | anthropic.AsyncAnthropic) -> bool:
    """Whether ``instrument`` was applied to ``client`` (or to the client it was derived
    from) and not undone."""
    return is_attached(client)
