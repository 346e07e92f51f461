"""An app writing chat history, usage rows and a log file until it is killed.

Usage: app_writer.py DATABASE_URL LOG USER. Each turn is a run around an LLM call, recorded by
ChatHistoryCallbackHandler, AccountingCallbackHandler and FileLogCallback. Every 5 turns the
manager is flushed; once flush() returned True, the turns so far are acknowledged: the
script prints one JSON line, ``{"turns": n, "runs": [LLM run ids of those 5 turns]}``.
"""

from __future__ import annotations

import json
import sys

from hookwire import CallbackManager, LLMResponse, Usage
from hookwire.callbacks import ChatHistoryCallbackHandler, FileLogCallback
from hookwire.callbacks.accounting import AccountingCallbackHandler

url, log, user = sys.argv[1:4]
manager = CallbackManager(
    [
        ChatHistoryCallbackHandler(
            user_data={"user_id": user}, conversation_id=user, database_url=url
        ),
        AccountingCallbackHandler(user_id=user, database_url=url),
        FileLogCallback(log),
    ]
)
turn = 0
runs: list[str] = []
while True:
    run_id = manager.on_run_start(f"question {turn}")
    llm = manager.on_llm_start(f"question {turn}", model="gpt-4o", parent_run_id=run_id)
    response = LLMResponse(f"answer {turn}", usage=Usage(12, 7), model="gpt-4o")
    manager.on_llm_end(response, run_id=llm, model="gpt-4o", parent_run_id=run_id)
    manager.on_run_end(f"answer {turn}", run_id=run_id)
    runs.append(llm)
    turn += 1
    if turn % 5 == 0:
        if not manager.flush(30):
            sys.exit("flush() timed out")
        print(json.dumps({"turns": turn, "runs": runs}), flush=True)
        runs = []
