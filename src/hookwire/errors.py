"""Every exception hookwire raises, under one base class.

The tree::

    HookwireError
    ├── ConfigurationError          bad arguments or settings (also a ValueError)
    ├── HandlerError                a handler with ``raise_error = True`` failed
    ├── CallbackAbort               a handler stops the operation on purpose; always reaches
    │   │                           the caller, whatever the handler's ``raise_error``
    │   └── BudgetExceeded          a usage budget is spent
    ├── LLMError                    a call to a model failed (``__cause__`` keeps the SDK's error)
    │   ├── TransientLLMError       worth retrying
    │   │   ├── RateLimitError      HTTP 429 (``retry_after`` in seconds, when the server said)
    │   │   ├── LLMTimeoutError     the request timed out
    │   │   ├── LLMConnectionError  the connection failed or dropped
    │   │   ├── ServerError         HTTP 5xx
    │   │   └── StreamInterrupted   a stream ended before the model finished its answer
    │   ├── AuthenticationError     HTTP 401/403: check the API key
    │   ├── BadRequestError         HTTP 400/404/422: the request itself is wrong
    │   └── MalformedResponseError  the server answered something that is not the protocol
    ├── ToolError                   a tool failed or was called wrongly
    │   └── ToolNotFoundError
    ├── MaxStepsExceeded            a run's tool loop hit ``max_steps``
    ├── StoreError                  durable storage failed
    │   ├── NotFoundError           a record does not exist (or belongs to someone else)
    │   │   └── ConversationNotFound
    │   ├── MigrationError          the database schema is not at the version this code needs
    │   └── InvalidInputError       a value that storage refuses (also a ValueError)
    │       ├── InvalidSenderError
    │       ├── InvalidMessageTimeError
    │       ├── InvalidNameError
    │       ├── InvalidMetadataError
    │       └── ParentMessageError  the parent message is in another conversation
    ├── PricingError                a price table or a usage figure is wrong
    │   └── InvalidUsageError       negative or non-integer token counts (also a ValueError)
    ├── LogFormatError              a JSONL log line does not follow the schema
    ├── DeliveryError               a sink could not deliver events now: retried
    │   └── DeliveryRefused         the receiver refused them: dead at once, not retried
    └── SignatureError              a webhook's signature does not match (also a ValueError)

Messages say what went wrong and what to do about it.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceeded",
    "CallbackAbort",
    "ConfigurationError",
    "ConversationNotFound",
    "DeliveryError",
    "DeliveryRefused",
    "HandlerError",
    "HookwireError",
    "InvalidInputError",
    "InvalidMessageTimeError",
    "InvalidMetadataError",
    "InvalidNameError",
    "InvalidSenderError",
    "InvalidUsageError",
    "LLMConnectionError",
    "LLMError",
    "LLMTimeoutError",
    "LogFormatError",
    "MalformedResponseError",
    "MaxStepsExceeded",
    "MigrationError",
    "NotFoundError",
    "ParentMessageError",
    "PricingError",
    "RateLimitError",
    "ServerError",
    "SignatureError",
    "StoreError",
    "StreamInterrupted",
    "ToolError",
    "ToolNotFoundError",
    "TransientLLMError",
]


class HookwireError(Exception):
    """Base class of every exception hookwire raises."""


class ConfigurationError(HookwireError, ValueError):
    """An argument or setting is not usable; the message names it and the accepted values."""


class HandlerError(HookwireError):
    """A handler that asked to raise (``raise_error = True``) failed inside a hook.

    ``handler`` is the handler object, ``hook`` the hook's name; ``error`` and ``__cause__``
    are the handler's own exception. Raised to the code that emitted the event for an inline
    hook, and by the manager's next ``flush()`` / ``close()`` for a background hook.
    """

    def __init__(self, handler: object, hook: str, error: BaseException) -> None:
        self.handler = handler
        self.hook = hook
        self.error = error
        super().__init__(
            f"{type(handler).__name__}.{hook} raised {type(error).__name__}: {error} "
            "(the handler has raise_error=True; set it to False to have errors logged instead)"
        )


class CallbackAbort(HookwireError):
    """Raised by a handler to stop the operation being reported.

    It is the one kind of handler exception that always reaches the caller, whatever the
    handler's ``raise_error``: budgets use it to refuse an LLM call before it is made.
    """


class BudgetExceeded(CallbackAbort):
    """A usage budget is at or over its limit; the LLM call was not made."""

    def __init__(
        self,
        message: str,
        *,
        scope: str | None = None,
        key: str | None = None,
        limit: Any = None,
        spent: Any = None,
        period: str | None = None,
    ) -> None:
        super().__init__(message)
        self.scope = scope
        self.key = key
        self.limit = limit
        self.spent = spent
        self.period = period


class LLMError(HookwireError):
    """A call to a language model failed. ``__cause__`` is the provider SDK's exception."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        provider: str | None = None,
        model: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.provider = provider
        self.model = model


class TransientLLMError(LLMError):
    """A failure that may go away if the same call is made again (hookwire retries these)."""

    retry_after: float | None = None


class RateLimitError(TransientLLMError):
    """The provider refused the call for now (HTTP 429)."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class LLMTimeoutError(TransientLLMError):
    """The request took longer than the client's timeout."""


class LLMConnectionError(TransientLLMError):
    """The connection to the model's server failed or was dropped."""


class ServerError(TransientLLMError):
    """The model's server failed (HTTP 5xx)."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class StreamInterrupted(TransientLLMError):
    """A streamed answer stopped before the model finished it; the partial text is kept."""

    def __init__(self, message: str, *, partial: str = "", **kw: Any) -> None:
        super().__init__(message, **kw)
        self.partial = partial


class AuthenticationError(LLMError):
    """The provider did not accept the credentials (HTTP 401/403): check the API key."""


class BadRequestError(LLMError):
    """The provider refused the request as malformed (HTTP 400/404/422): retrying won't help."""


class MalformedResponseError(LLMError):
    """The server's answer is not valid OpenAI protocol (bad JSON, missing fields)."""


class ToolError(HookwireError):
    """A tool failed, or was called with arguments that do not fit its signature."""


class ToolNotFoundError(ToolError):
    """The model asked for a tool that the run was not given."""


class MaxStepsExceeded(HookwireError):
    """A run's tool loop reached ``max_steps`` without a final answer."""


class StoreError(HookwireError):
    """Durable storage failed; nothing already stored is lost."""


class NotFoundError(StoreError, LookupError):
    """The record does not exist, or belongs to another user or org (which is not revealed)."""


class ConversationNotFound(NotFoundError):
    """No conversation with that id is visible to this handler's user, org and realm."""


class MigrationError(StoreError):
    """The database schema is older or newer than this hookwire; run ``hookwire db upgrade``."""


class InvalidInputError(StoreError, ValueError):
    """A value that storage refuses; the message says which and what is accepted."""


class InvalidSenderError(InvalidInputError):
    """A sender outside the allowed set: ``end_user``, ``assistant``, ``system``, ``tool``."""


class InvalidMessageTimeError(InvalidInputError):
    """A ``message_time`` that is neither a datetime nor an ISO 8601 string."""


class InvalidNameError(InvalidInputError):
    """A conversation name that is empty or too long."""


class InvalidMetadataError(InvalidInputError):
    """Metadata that cannot be stored as JSON."""


class ParentMessageError(InvalidInputError):
    """A ``parent_message_id`` that does not exist in the same conversation."""


class PricingError(HookwireError):
    """A price table is malformed, or a usage figure cannot be priced."""


class InvalidUsageError(PricingError, ValueError):
    """Token counts must be non-negative integers."""


class LogFormatError(HookwireError, ValueError):
    """A JSONL log line that is not valid JSON or does not follow hookwire's log schema."""


class DeliveryError(HookwireError):
    """A sink could not deliver a batch of events now; the relay tries again later.

    ``retry_after``: seconds the receiver asked to wait (``Retry-After``), when it said."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeliveryRefused(DeliveryError):
    """The receiver refused the events themselves (an HTTP 4xx other than 408 and 429): they
    are marked dead at once, with ``response`` (what it answered) kept; fix the receiver or
    the events, then ``hookwire events replay --dead``."""

    def __init__(self, message: str, *, response: str | None = None) -> None:
        super().__init__(message)
        self.response = response


class SignatureError(HookwireError, ValueError):
    """A webhook request's signature is missing, malformed, too old or does not match the
    body and the shared secret: the request did not come from the sender (or was altered)."""
