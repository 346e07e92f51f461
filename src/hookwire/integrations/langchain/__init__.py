"""LangChain bridge: a LangChain callback handler that feeds hookwire handlers.

::

    from hookwire.callbacks import MetricsCallback
    from hookwire.integrations.langchain import HookwireCallbackHandler

    metrics = MetricsCallback()
    chain.invoke({"question": "..."}, config={"callbacks": [HookwireCallbackHandler([metrics])]})

LangChain events become hookwire events, with LangChain's run ids (as strings) and parents:

========================================  ================================================
LangChain                                 hookwire
========================================  ================================================
``on_chain_start`` / ``on_chain_end``     ``on_run_start`` / ``on_run_end`` (``kind``
                                          ``"agent"`` for a LangGraph graph or an
                                          ``AgentExecutor``, else ``"workflow"``; input
                                          and output as text; the usage and cost summed
                                          over the run's LLM calls); nothing for prompts
                                          and parsers unless ``prompts_and_parsers=True``
``on_chat_model_start``, ``on_llm_start``  ``on_llm_start`` (messages as OpenAI-style dicts)
``on_llm_new_token``                      ``on_llm_new_token`` (``attempt``, ``index``)
``on_llm_end``                            ``on_llm_end`` with an ``LLMResponse`` (usage from
                                          ``usage_metadata``, cost when priced)
``on_llm_error``                          ``on_llm_error`` (a ``hookwire.errors`` exception)
``on_retry``                              ``on_retry``
``on_tool_start`` / ``_end`` / ``_error``  ``on_tool_start`` / ``_end`` / ``_error``
``on_retriever_end``                      ``on_memory_recall(query, [page contents])``
========================================  ================================================

One failure is reported once with ``on_error`` (``stage`` ``"llm"``, ``"tool"``, ``"memory"``,
``"run"`` or ``"budget"``, with the error ``on_llm_error`` carried). The request context
(``user_id``, ``conversation_id``, ...) comes from ``hookwire.trace`` /
``hookwire.request_context`` around the LangChain call, from the handler's own keywords, and
from LangChain's ``config={"metadata": {...}}``, the last one winning. Inside a
``hookwire.trace`` the outermost LangChain run is a child of the hookwire run.

A hookwire handler that raises ``CallbackAbort`` (a budget) from ``on_llm_start`` stops the
LangChain call: ``on_budget_exceeded`` and ``on_error(stage="budget")`` are emitted and the
exception reaches the caller (without LangChain's warning about a failing callback). Any other
failure, in the bridge or in a handler, is logged and never reaches the app. Needs the
``hookwire[langchain]`` extra.
"""

from __future__ import annotations

from ..._lazy import missing_extra

try:
    import langchain_core  # noqa: F401  (the extra's presence, checked once, with a clear error)
except ModuleNotFoundError as exc:  # pragma: no cover - exercised only without the extra
    needs = "hookwire.integrations.langchain needs LangChain"
    raise missing_extra(exc, needs, "langchain") from exc

from .convert import openai_messages
from .handlers import AsyncHookwireCallbackHandler, HookwireCallbackHandler

__all__ = ["AsyncHookwireCallbackHandler", "HookwireCallbackHandler", "openai_messages"]
