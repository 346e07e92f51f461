"""hookwire events from LiteLLM (``pip install 'hookwire[litellm]'``): ``HookwireLogger``, a
LiteLLM ``CustomLogger``::

    import litellm
    from hookwire.callbacks import AccountingCallbackHandler, Budget
    from hookwire.integrations.litellm import HookwireLogger

    accounting = AccountingCallbackHandler(user_id="u42", budgets=Budget("5.00", period="day"))
    litellm.callbacks = [HookwireLogger(callbacks=[accounting])]
    await litellm.acompletion(model="openai/gpt-4o-mini", messages=[...])  # reported, budgeted

Every ``litellm.completion`` / ``acompletion`` (streamed or not; and what calls through them:
the Router, CrewAI, DSPy) is one hookwire LLM call: ``on_llm_start`` (the messages,
``invocation_params``, ``stream``), then ``on_llm_end`` with an ``LLMResponse`` (content, tool
calls, finish reason, usage with cached tokens, cost) or ``on_llm_error`` with a
``hookwire.errors`` exception and ``on_error(stage="llm")``. Events nest under the hookwire
run around the call (``hookwire.trace``), with its request context.

Budgets: a handler raising ``CallbackAbort`` (``AccountingCallbackHandler``'s ``Budget``)
at the start refuses an ``acompletion`` before it is sent (LiteLLM raises the
``BudgetExceeded`` to the caller). LiteLLM's sync ``completion`` has no hook that can stop a
call: a refusal is reported and logged, and the call is sent.

Timing: LiteLLM reports a call's end from a background thread or task just after the call
returned to the app (a stream: after it was read to its end), so ``on_llm_end`` comes a
moment later. Tokens of a stream are not reported one by one (LiteLLM calls its loggers once
a stream ended), and the retries LiteLLM makes itself are not ``on_retry`` events.

LiteLLM fetches its model cost map from the internet when it is imported unless
``LITELLM_LOCAL_MODEL_COST_MAP=True`` is set (hookwire prices calls through genai-prices, and
uses LiteLLM's own cost only for a model it has no price for): set it where the network is
closed or slow.
"""

from __future__ import annotations

from .callback import HookwireLogger

__all__ = ["HookwireLogger"]
