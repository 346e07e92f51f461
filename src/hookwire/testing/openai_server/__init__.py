"""``OpenAIServer``: a small OpenAI-compatible HTTP server for tests, on 127.0.0.1.

It speaks enough of the OpenAI API for the official ``openai`` SDK (and any
other OpenAI-compatible client) to talk to it as it would to the real API, so tests exercise
the real client stack (HTTP, JSON, SSE) without reaching the internet::

    from openai import OpenAI
    from hookwire.testing.openai_server import OpenAIServer, Reply, ToolCallReply, ErrorReply

    with OpenAIServer() as server:
        server.script(ErrorReply(429, retry_after=0), Reply("Paris."))
        client = OpenAI(base_url=server.base_url, api_key="test", max_retries=1)
        answer = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Capital of France?"}]
        )
        assert answer.choices[0].message.content == "Paris."
        assert len(server.requests) == 2

What it serves:

- ``POST /v1/chat/completions``: a JSON ``chat.completion``; with ``"stream": true``, SSE
  ``chat.completion.chunk`` events as the real API sends them (a first chunk with the
  role, one chunk per word, a last chunk with ``finish_reason``, the usage chunk with empty
  ``choices`` when ``stream_options.include_usage`` is set, then ``data: [DONE]``). Tool
  calls are sent whole in JSON mode and as ``delta.tool_calls`` pieces when streaming.
- ``POST /v1/responses`` (the Responses API): a JSON ``response`` (a ``message`` item with
  ``output_text``, ``function_call`` items, a ``reasoning`` item when the reply's usage names
  reasoning tokens; usage as ``input_tokens`` / ``output_tokens`` with their details); with
  ``"stream": true`` its typed SSE events: ``response.created``, ``response.in_progress``,
  ``response.output_item.added``, ``response.content_part.added``, one
  ``response.output_text.delta`` per word (``response.function_call_arguments.delta``
  pieces for a tool call), the ``.done`` events, then ``response.completed`` with the usage.
- ``POST /v1/embeddings``: one deterministic unit vector per input (``dimensions`` long, 8
  by default), as floats or ``encoding_format="base64"``; usage counts the input's words.
- ``POST /v1/completions`` (legacy): a ``text_completion``, or its chunks, ending with a
  usage chunk when ``stream_options.include_usage`` is set and ``data: [DONE]``.
- ``POST /v1/messages``: Anthropic's Messages API, for the ``anthropic`` SDK (``base_url`` is
  ``server.url``): a JSON ``message`` (text, or ``tool_use`` blocks for a ``ToolCallReply``;
  usage as ``input_tokens`` without the cache, ``cache_read_input_tokens``,
  ``cache_creation_input_tokens``, ``output_tokens``); with ``"stream": true`` its SSE events
  as Anthropic sends them (``message_start``, ``content_block_start``, ``ping``, one
  ``content_block_delta`` per word or ``input_json_delta`` piece, ``content_block_stop``,
  ``message_delta`` with the stop reason and usage, ``message_stop``); errors in Anthropic's
  shape (``{"type": "error", "error": {"type": "overloaded_error", ...}}`` for a 529).
- ``GET /v1/models``: one model, so clients that list models work.

What it answers: each request consumes the next item of its *script* (``server.script(...)``
or ``OpenAIServer(script=[...])``), in order, whatever thread or client sends it:

- a ``str`` or ``Reply(text)``: that answer;
- ``ToolCallReply(name, arguments)``: the model asks to call a tool (chat and responses; the
  other endpoints answer it with a 400);
- ``ErrorReply(status, message, retry_after=...)``: an HTTP error with the API's error body
  (429 with a ``Retry-After`` header, 500, 401, 400, ...);
- ``Malformed()``: HTTP 200 whose body (or SSE data line) is not valid JSON;
- ``Drop(after=N)``: the connection is closed without finishing: after ``N`` content chunks
  of a stream, or before any response for a non-streamed call;
- ``Truncated(after=N)``: a stream that ends cleanly (HTTP-wise) after ``N`` content chunks,
  without its end (no ``finish_reason`` nor ``[DONE]``, no ``response.completed``); a JSON
  answer that says it is unfinished (embeddings: a body cut in half);
- ``Raw(body, hold=0)``: HTTP 200 with exactly ``body``: the SSE text of a streamed answer
  (write the events yourself, ``data: {...}`` and a blank line each), the JSON of a plain one;
  ``hold`` keeps a stream's body open that many seconds before it ends. For servers that
  answer oddly: comments, multi-line data, error events, wrong shapes, a body left open.

With the script empty it answers deterministically from the conversation: ``"You said: "``
and the last user message's text, or, right after a tool result, ``"The tool returned: "``
and the result.

What it records: ``server.requests`` is the list of the JSON bodies it received, in order;
``server.headers`` the matching request headers (lower-case names); ``server.peers`` the
client address (host, port) of each, so requests sent over one kept-alive connection share
one. ``server.reset()`` forgets them and empties the script.

Token counts are words: prompt tokens are the words of every message's content (at least
1), completion tokens the chunks of the answer. The server runs in a daemon thread on an
ephemeral port; ``close()`` (or leaving the ``with`` block) stops it.
"""

from .script import (
    Drop,
    ErrorReply,
    Malformed,
    Raw,
    Reply,
    ScriptItem,
    ToolCallReply,
    Truncated,
    split_words,
)
from .server import OpenAIServer, main

__all__ = [
    "Drop",
    "ErrorReply",
    "Malformed",
    "OpenAIServer",
    "Raw",
    "Reply",
    "ScriptItem",
    "ToolCallReply",
    "Truncated",
    "main",
    "split_words",
]
