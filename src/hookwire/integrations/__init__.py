"""Bridges that make other ecosystems emit hookwire events.

- ``hookwire.integrations.langchain``: ``HookwireCallbackHandler`` (and
  ``AsyncHookwireCallbackHandler``), LangChain callback handlers that feed hookwire handlers
  (``hookwire[langchain]``);
- ``hookwire.integrations.openai``: ``instrument(client, callbacks=[...])`` /
  ``uninstrument(client)`` for an existing ``openai.OpenAI`` or ``openai.AsyncOpenAI`` client;
- ``hookwire.integrations.llamaindex``: ``instrument(callbacks=[...])``, handlers on LlamaIndex's
  instrumentation dispatcher (``hookwire[llamaindex]``);
- ``hookwire.integrations.openai_agents``: ``HookwireTracingProcessor``, an OpenAI Agents SDK
  tracing processor (``hookwire[agents]``);
- ``hookwire.integrations.otel``: ``HookwireSpanProcessor``, an OpenTelemetry span processor
  that turns any instrumentation's GenAI and OpenInference spans into hookwire events
  (``hookwire[otel]``).

Each bridge imports its framework, so import the submodule you use; this package imports
nothing.
"""

from __future__ import annotations

__all__: list[str] = []
