"""Exit while the database is down: chat history and accounting retry until the exit's time
runs out, then give up (logged), and the process ends; also when the turns are queued so
late (WHEN=late: from an atexit function that runs after hookwire's drain) that the exiting
thread handles them itself, where a retry that never gave up would never let it end.

Usage: exit_outage.py WHEN (``main`` or ``late``). EXIT_TIMEOUT is 1 s here. Prints ``ready
<monotonic time>`` just before the exit begins.
"""

from __future__ import annotations

import atexit
import sys
import time

when = sys.argv[1]
URL = "postgresql+asyncpg://postgres@127.0.0.1:1/nowhere"  # nothing listens on port 1


def turns() -> None:
    for i in range(3):
        run_id = manager.on_run_start(f"question {i}")
        llm = manager.on_llm_start("question", model="gpt-4o", parent_run_id=run_id)
        response = LLMResponse(f"answer {i}", usage=Usage(12, 7), model="gpt-4o")
        manager.on_llm_end(response, run_id=llm, model="gpt-4o", parent_run_id=run_id)
        manager.on_run_end(f"answer {i}", run_id=run_id)


if when == "late":
    atexit.register(turns)  # registered first, so it runs last

from hookwire import CallbackManager, LLMResponse, Usage, _workers  # noqa: E402 - on purpose
from hookwire.callbacks import ChatHistoryCallbackHandler  # noqa: E402
from hookwire.callbacks.accounting import AccountingCallbackHandler  # noqa: E402

_workers.EXIT_TIMEOUT = 1.0
manager = CallbackManager(
    [
        ChatHistoryCallbackHandler(
            user_data={"user_id": "u"}, conversation_id="c", database_url=URL
        ),
        AccountingCallbackHandler(user_id="u", database_url=URL),
    ]
)
if when == "main":
    turns()
print("ready", time.monotonic(), flush=True)
