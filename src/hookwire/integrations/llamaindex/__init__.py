"""LlamaIndex bridge: LlamaIndex's instrumentation (spans and events) feeds hookwire handlers.

::

    from hookwire.callbacks import MetricsCallback
    from hookwire.integrations.llamaindex import instrument

    instrumentation = instrument([MetricsCallback()], user_id="u42")
    index.as_query_engine().query("...")      # now reported
    instrumentation.uninstrument()

``instrument`` puts an event handler and a span handler on LlamaIndex's root dispatcher
(``llama_index.core.instrumentation``), so everything LlamaIndex instruments is seen, whatever
LLM or embedding integration the app uses:

===============================================  ==========================================
LlamaIndex                                       hookwire
===============================================  ==========================================
a query engine's ``query``, a chat engine's       ``on_run_start`` / ``on_run_end``
``chat`` / ``stream_chat`` (and ``a...``), a      (``kind`` ``"agent"`` for an agent, else
workflow's or an agent's ``run``                  ``"workflow"``; usage and cost summed)
``LLMChatStartEvent`` / ``LLMCompletionStart``    ``on_llm_start`` (messages as dicts)
``LLMChatInProgressEvent`` (a stream)             ``on_llm_new_token``
``LLMChatEndEvent`` / ``LLMCompletionEndEvent``   ``on_llm_end`` with an ``LLMResponse``
a failed LLM span, an ``ExceptionEvent``          ``on_llm_error``
``EmbeddingStartEvent`` / ``EmbeddingEndEvent``   ``on_embedding_start`` / ``_end``
``RetrievalEndEvent``                             ``on_memory_recall(query, [node texts])``
a tool's ``call`` / ``acall``                     ``on_tool_start`` / ``_end`` / ``_error``
===============================================  ==========================================

Other spans (a query engine's inner steps, synthesizers, splitters, ...) are no runs of their
own: what happens inside them hangs under the nearest run. Inside a ``hookwire.trace`` the
outermost LlamaIndex run is a child of the hookwire run. LlamaIndex swallows what its handlers
raise, so a budget cannot refuse a call here (its refusal is told as ``on_budget_exceeded``).
Needs the ``hookwire[llamaindex]`` extra.
"""

from __future__ import annotations

from ..._lazy import missing_extra

try:
    import llama_index.core  # noqa: F401  (the extra's presence, checked once, with a clear error)
except ModuleNotFoundError as exc:  # pragma: no cover - exercised only without the extra
    needs = "hookwire.integrations.llamaindex needs LlamaIndex"
    raise missing_extra(exc, needs, "llamaindex") from exc

from .handlers import LlamaIndexInstrumentation, instrument, uninstrument

__all__ = ["LlamaIndexInstrumentation", "instrument", "uninstrument"]
