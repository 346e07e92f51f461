"""Chat history and accounting on one fresh database, through a real run.

Both handlers set up the same database on first use, each on its own event loop; the first
conversation turn and the first ledger row must both be there afterwards.
"""

from __future__ import annotations

from pathlib import Path

from hookwire import RLM, CallbackManager
from hookwire.callbacks.accounting import AccountingCallbackHandler
from hookwire.callbacks.chat_history import ChatHistoryCallbackHandler
from hookwire.stores import engine


def test_history_and_accounting_share_a_fresh_database(tmp_path: Path) -> None:
    for round_ in range(3):
        url = f"sqlite:///{tmp_path}/shared{round_}.db"
        engine._script = None  # both handlers load the migrations, as in a new process
        history = ChatHistoryCallbackHandler(
            user_data={"user_id": "u1", "org_id": "o1"}, database_url=url
        )
        accounting = AccountingCallbackHandler(user_id="u1", database_url=url)
        manager = CallbackManager([history, accounting])
        rlm = RLM.from_local(callbacks=manager)
        answer = rlm.run("Hello, what can you do?")
        assert manager.flush(timeout=30)
        page = history.list_conversations_sync()
        assert len(page.items) == 1
        details = history.get_conversation_details_sync(page.items[0]["id"])
        texts = [m["text"] for m in details["messages"]]
        assert texts == ["Hello, what can you do?", answer.content]
        rows = accounting.summary(by="user")
        assert [(r["user"], r["calls"]) for r in rows] == [("u1", 1)]
        assert manager.stats()["errors_total"] == 0
        manager.close()
