"""Make an existing ``openai`` client emit hookwire events, without changing the calling code.

::

    import openai
    from hookwire.callbacks import MetricsCallback
    from hookwire.integrations.openai import instrument

    client = instrument(openai.OpenAI(), callbacks=[MetricsCallback()])
    client.chat.completions.create(model="gpt-4o", messages=[...])   # now reported
    client.responses.create(model="gpt-4o", input="...")              # and this
    client.embeddings.create(model="text-embedding-3-small", input="...")

What is reported: every call that reaches the API through the instrumented client (sync
``openai.OpenAI`` or async ``openai.AsyncOpenAI``, Azure's ``AzureOpenAI`` /
``AsyncAzureOpenAI`` as provider ``azure.ai.openai``) to

- chat completions: ``chat.completions.create``, ``parse``, ``stream`` (and their
  ``beta.chat.completions`` forms where the SDK has them);
- the Responses API: ``responses.create`` (streamed or not), ``parse``, ``stream``: text,
  ``function_call`` items as tool calls, usage with cached and reasoning tokens;
- legacy completions: ``completions.create``, streamed or not;
- embeddings: ``embeddings.create``, as ``on_embedding_start`` / ``on_embedding_end`` (an
  ``EmbeddingResponse``: vectors, dimensions, input tokens, cost) / ``on_embedding_error``;

however the call is made: directly, through ``with_raw_response`` or
``with_streaming_response`` (streamed too), on a client derived with ``with_options(...)`` or
``copy()``, or through a wrapper patched onto a resource (instructor's ``patch``, the app's
own), which ``instrument`` keeps. Each LLM call emits ``on_llm_start`` (the messages, prompt
or input, ``invocation_params``, ``stream``), ``on_retry`` for each of the SDK's own retries
(the failed attempt's ``hookwire.errors`` exception, ``delay`` the time the SDK waited), for a
streamed call ``on_llm_new_token`` per piece of text, then ``on_llm_end`` with an
``LLMResponse`` (content, tool calls, finish reason, usage, cost when priced; ``attempts`` the
requests sent) or ``on_llm_error`` with a ``hookwire.errors`` exception followed by
``on_error(stage="llm")``. A ``CallbackAbort`` raised by a start handler (a budget) stops the
call before it is sent. The app still gets exactly what the SDK returns, and the SDK's own
exception when a call fails.

Streams: chat and legacy completion streams ask for usage (``stream_options={"include_usage":
True}``) when the caller did not set ``stream_options``; the extra usage-only chunk this adds
is kept from the caller, so the chunks it sees are the ones it would have seen. A stream the
caller stops reading early (``break``, ``close()``, leaving a ``with`` block, or dropping it)
is closed (its HTTP response too) and reported with ``on_llm_end`` carrying the partial answer
and ``cancelled=True``. A body the app reads itself (``with_streaming_response``) is read as
it passes and reported when it is closed.

Not covered: the SDK's other endpoints (images, audio, files, assistants, realtime, ...) pass
through unreported. Streams read raw (``with_raw_response`` / ``with_streaming_response``
with ``stream=True``) are not asked for usage, so they carry none unless the caller asks for
it. How the client is wrapped, and why there: ``hookwire.integrations.openai.patching``.
"""

from __future__ import annotations

from .patching import instrument, is_instrumented, uninstrument

__all__ = ["instrument", "is_instrumented", "uninstrument"]
