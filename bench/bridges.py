"""The LangChain bridge's cost: a chain with hookwire's handler next to a plain LangChain one.

Run from the repository root::

    PYTHONPATH=src .venv/bin/python bench/bridges.py            # full run
    PYTHONPATH=src .venv/bin/python bench/bridges.py --quick    # fewer iterations

The same LCEL chain (``ChatPromptTemplate | GenericFakeChatModel | StrOutputParser``) runs
with, as its only callback:

- ``LangChain no-op``: a ``BaseCallbackHandler`` whose chain, chat-model and token hooks do
  nothing;
- ``hookwire bridge``: ``HookwireCallbackHandler([noop])``, where ``noop`` is a hookwire
  handler whose run, LLM and token hooks do nothing; every LangChain event is turned into a
  hookwire event (ids, parents, messages as dicts, ``LLMResponse`` with usage) and dispatched.

``invoke`` is one chain run (4 LangChain runs, of which the prompt and the parser are no
hookwire runs; 1 LLM call); ``stream`` adds 9 streamed tokens. The
cases take turns, round after round, and each figure is a case's best round, in microseconds
per chain call. The target (issue 7) is the bridge <= 1.2x the LangChain no-op handler.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable
from typing import Any

try:
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
except ImportError:  # pragma: no cover - the bench extra installs it
    sys.exit("bench/bridges.py needs langchain-core: pip install -e '.[bench]'")

from _handlers import HWRunNoop, LCChainNoop
from _timing import best_of, print_ratios, quick_flag
from hookwire.integrations.langchain import HookwireCallbackHandler

ANSWER = AIMessage(
    content="Paris is the capital and largest city of France.",
    usage_metadata={"input_tokens": 20, "output_tokens": 9, "total_tokens": 29},
    response_metadata={"model_name": "gpt-4o", "finish_reason": "stop"},
)


def chain() -> Any:
    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{q}")])
    model = GenericFakeChatModel(messages=itertools.repeat(ANSWER))
    return prompt | model | StrOutputParser()


def case(mode: str, handler: Any) -> Callable[[], None]:
    c = chain()
    config = {"callbacks": [handler]}
    inputs = {"q": "Capital of France?"}
    if mode == "invoke":
        return lambda: c.invoke(inputs, config=config)  # type: ignore[no-any-return]

    def stream() -> None:
        for _ in c.stream(inputs, config=config):
            pass

    return stream


def main() -> None:
    number, repeat = (10, 20) if quick_flag(__doc__) else (10, 400)

    rows = []
    for mode in ("invoke", "stream"):
        t = best_of(
            {
                "langchain": case(mode, LCChainNoop()),
                "hookwire": case(mode, HookwireCallbackHandler([HWRunNoop()])),
            },
            number,
            repeat,
        )
        rows.append((mode, t["langchain"], t["hookwire"]))

    print_ratios(
        f"LangChain chain per call, best of {repeat} rounds of {number} (µs per call)",
        ("chain", "LangChain no-op", "hookwire bridge"),
        rows,
        "<= 1.2x",
    )


if __name__ == "__main__":
    main()
