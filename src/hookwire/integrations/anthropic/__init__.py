"""Make an existing ``anthropic`` client emit hookwire events, without changing the calling
code (``pip install 'hookwire[anthropic]'``)::

    import anthropic
    from hookwire.callbacks import MetricsCallback
    from hookwire.integrations.anthropic import instrument

    client = instrument(anthropic.Anthropic(), callbacks=[MetricsCallback()])
    client.messages.create(model="claude-haiku-4-5", max_tokens=256, messages=[...])
    with client.messages.stream(model="claude-haiku-4-5", max_tokens=256, messages=[...]) as s:
        for text in s.text_stream: ...

What is reported: every Messages API call that reaches the API through the instrumented
client (sync ``anthropic.Anthropic`` or async ``anthropic.AsyncAnthropic``, and the clients
derived from it with ``with_options`` or ``copy``): ``messages.create`` (streamed or not),
``messages.stream``, ``messages.parse`` and their ``beta.messages`` forms, also through
``with_raw_response`` / ``with_streaming_response``. Each call emits ``on_llm_start`` (the
messages, after the ``system`` prompt as a ``{"role": "system"}`` message;
``invocation_params``; ``stream``), ``on_retry`` for each of the SDK's own retries (the failed
attempt's ``hookwire.errors`` exception, ``delay`` the time the SDK waited), for a streamed
call ``on_llm_new_token`` per text delta, then ``on_llm_end`` with an ``LLMResponse`` (text,
``tool_use`` blocks as tool calls, ``finish_reason`` Anthropic's ``stop_reason``, usage and
cost; ``attempts`` the requests sent) or ``on_llm_error`` with a ``hookwire.errors`` exception
(an ``error`` event in a stream too: ``overloaded_error`` is a ``ServerError``) followed by
``on_error(stage="llm")``. A ``CallbackAbort`` raised by a start handler (a budget) stops the
call before it is sent. The app gets exactly what the SDK returns, and the SDK's exceptions.

Usage: ``prompt_tokens`` is every input token (``input_tokens`` plus the cache reads and
writes), ``cached_tokens`` the cache reads, ``cache_creation_tokens`` the cache writes; the
cost prices each at its own rate through ``hookwire.pricing`` (genai-prices). A stream left
before ``message_delta`` (the one event that counts the output) is reported ``cancelled``
with an estimated usage.

Not covered: the SDK's other endpoints (token counting, batches, files, models) pass through
unreported; the Bedrock and Vertex clients (``AnthropicBedrock``, ``AnthropicVertex``) are
not instrumented.
"""

from __future__ import annotations

from .patching import instrument, is_instrumented, uninstrument

__all__ = ["instrument", "is_instrumented", "uninstrument"]
