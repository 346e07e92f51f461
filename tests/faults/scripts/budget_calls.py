"""One of several processes spending one budget at once, through the real call engine
(``OpenAIClient`` against the test's ``OpenAIServer``). Some calls are cancelled mid-way, as a
client that disconnects cancels its request.

Arguments: database URL, base URL of the server, user, limit, calls, stagger (seconds over
which the calls start), seed. Prints ``ready``, waits for a line on stdin (every process
starts together), then prints one JSON line: the outcome of each call (``made``, ``refused``
``cancelled`` or ``unchecked``: a check that could not reach the database in time, which stops
the call, as ``fail_open=False`` says; the test measures the budget, so it gives a check far more
time than an app would).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys

from hookwire.callbacks.accounting import AccountingCallbackHandler, Budget
from hookwire.errors import BudgetExceeded
from hookwire.llms import OpenAIClient

url, base_url, user, limit = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
calls, stagger, rng = int(sys.argv[5]), float(sys.argv[6]), random.Random(sys.argv[7])
PROMPT = [{"role": "user", "content": " ".join(["word"] * 20)}]
MAX_TOKENS = 64  # the server answers "You said: " and the prompt: 22 tokens

accounting = AccountingCallbackHandler(
    user_id=user,
    database_url=url,
    budgets=[Budget(limit, period=None, scope="user")],
    fail_open=False,
    check_timeout=60,
)
llm = OpenAIClient(api_key="sk-test", base_url=base_url, callbacks=[accounting], max_retries=0)


async def call(start: float, cancel_after: float | None) -> str:
    await asyncio.sleep(start)
    task = asyncio.ensure_future(llm.agenerate(PROMPT, model="gpt-4o", max_tokens=MAX_TOKENS))
    if cancel_after is not None:
        asyncio.get_running_loop().call_later(cancel_after, task.cancel)
    try:
        await task
    except BudgetExceeded as exc:
        return "refused" if exc.__cause__ is None else "unchecked"
    except asyncio.CancelledError:
        return "cancelled"
    return "made"


async def main() -> list[str]:
    await accounting.asummary()  # the database opened before the start
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    plan = [
        (rng.uniform(0, stagger), rng.uniform(0, 0.02) if rng.random() < 0.2 else None)
        for _ in range(calls)
    ]
    try:
        return list(await asyncio.gather(*(call(s, c) for s, c in plan)))
    finally:
        await llm.aclose()


outcomes = asyncio.run(main())
assert accounting.flush(60)
print(json.dumps(outcomes), flush=True)
