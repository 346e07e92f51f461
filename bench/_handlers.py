"""No-op handlers the benchmarks time (not a benchmark itself).

Each overrides a set of hooks and does nothing in them, so a case measures the library's own
cost. hookwire calls only the hooks a handler overrides, so which ones it overrides is part
of the case; langchain-core calls every hook on every handler. The ``HW`` and ``LC`` classes
mirror each other: the same events, each library's hook names.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler

from hookwire import AsyncBaseCallback, BaseCallback


class HWLLMNoop(BaseCallback):
    """hookwire: an LLM call's start, tokens and end."""

    def on_llm_start(self, prompt: Any, **kwargs: Any) -> None:
        pass

    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        pass

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        pass


class HWRunNoop(HWLLMNoop):
    """hookwire: runs too (what a chain's runs become through the LangChain bridge)."""

    def on_run_start(self, input: Any, **kwargs: Any) -> None:
        pass

    def on_run_end(self, output: Any, **kwargs: Any) -> None:
        pass


class HWAsyncTokenNoop(AsyncBaseCallback):
    """hookwire, async: tokens only."""

    async def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        pass


class LCLLMNoop(BaseCallbackHandler):
    """langchain-core: a text LLM call's start, tokens and end."""

    def on_llm_start(self, serialized: Any, prompts: Any, **kwargs: Any) -> None:
        pass

    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        pass

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        pass


class LCChainNoop(LCLLMNoop):
    """langchain-core: chains and chat models too. ``on_chat_model_start`` is overridden
    because the base class's raises ``NotImplementedError`` and LangChain then falls back to
    ``on_llm_start`` with the messages turned into text, a cost of its own."""

    def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
        pass

    def on_chain_end(self, outputs: Any, **kwargs: Any) -> None:
        pass

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        pass


class LCAsyncTokenNoop(AsyncCallbackHandler):
    """langchain-core, async: tokens only."""

    async def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        pass


# The per-request case: an app binds handlers to the request's user (as the Arshai seed's
# handlers are bound to a conversation and a request), so three handler classes are
# instantiated per request, each overriding the hooks it needs; both libraries' handlers do
# the same (nothing) on the same events.


class HWRequestLog(BaseCallback):
    def __init__(self, user: str) -> None:
        self.user = user

    def on_run_start(self, input: Any, **kwargs: Any) -> None:
        pass

    def on_run_end(self, output: Any, **kwargs: Any) -> None:
        pass

    def on_llm_start(self, prompt: Any, **kwargs: Any) -> None:
        pass

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        pass


class HWRequestUsage(BaseCallback):
    def __init__(self, user: str) -> None:
        self.user = user

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        pass


class HWRequestStream(BaseCallback):
    def __init__(self, user: str) -> None:
        self.user = user

    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        pass


class LCRequestLog(BaseCallbackHandler):
    def __init__(self, user: str) -> None:
        self.user = user

    def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
        pass

    def on_chain_end(self, outputs: Any, **kwargs: Any) -> None:
        pass

    def on_llm_start(self, serialized: Any, prompts: Any, **kwargs: Any) -> None:
        pass

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        pass


class LCRequestUsage(BaseCallbackHandler):
    def __init__(self, user: str) -> None:
        self.user = user

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        pass


class LCRequestStream(BaseCallbackHandler):
    def __init__(self, user: str) -> None:
        self.user = user

    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        pass
