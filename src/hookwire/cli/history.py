"""``hookwire history``: the conversations recorded by ``ChatHistoryCallbackHandler``.

- ``hookwire history list [--user USER] [--limit N] [--json] [--db URL]``: conversations,
  most recently updated first.
- ``hookwire history show ID [--json] [--db URL]``: one conversation and its messages.

These commands are for the operator of the database: they see every user's conversations.
"""

from __future__ import annotations

import datetime as _dt
from typing import Annotated, Any

import orjson
import typer

from ..terminal import visible
from .command import Command, new_app
from .database import DbOption, database_url, run

__all__ = ["list_conversations", "register", "show_conversation"]

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def _when(value: _dt.datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def list_conversations(
    user: Annotated[
        str | None, typer.Option("--user", help="Only this user's conversations.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=10_000, help="How many to show.")
    ] = 50,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Conversations, most recently updated first."""
    from ..stores.conversations import ConversationStore

    store = ConversationStore.for_url(database_url(db, must_exist=True))
    page = run(store.list_conversations(None, limit=limit, user_id=user))
    if as_json:
        typer.echo(_json({"conversations": page.items, "next_cursor": page.next_cursor}))
        return
    if not page.items:
        typer.echo("no conversations" + (f" for user {user!r}" if user else ""))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table("id", "name", "user", "org", "realm", "state", "messages", "updated (UTC)")
    for c in page.items:
        table.add_row(
            escape(visible(c["id"])),
            escape(visible(c["name"] or "")),
            escape(visible(c["user_id"])) + (" (anonymous)" if c["is_anonymous"] else ""),
            escape(visible(c["org_id"])),
            escape(visible(c["realm"])),
            c["state"],
            str(c["message_count"]),
            _when(c["updated_at"]),
        )
    Console(width=200).print(table)


def show_conversation(
    conversation_id: Annotated[
        str, typer.Argument(metavar="ID", help="The conversation's id.", show_default=False)
    ],
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """One conversation with its messages, in order."""
    from ..stores.conversations import ConversationStore

    store = ConversationStore.for_url(database_url(db, must_exist=True))
    details = run(store.get_conversation_details(None, conversation_id))
    if as_json:
        typer.echo(_json(details))
        return
    from rich.console import Console
    from rich.markup import escape

    console = Console(width=200, highlight=False)

    def shown(value: str) -> str:
        return escape(visible(value))

    console.print(f"[bold]{shown(details['name'] or '(unnamed)')}[/bold]  {shown(details['id'])}")
    anon = " (anonymous)" if details["is_anonymous"] else ""
    console.print(
        f"user {shown(details['user_id'])}{anon}  org {shown(details['org_id'] or '-')}  "
        f"realm {shown(details['realm'] or '-')}  agent {shown(details['agent_title'] or '-')}  "
        f"state {details['state']}  messages {details['message_count']}"
    )
    console.print(
        f"created {_when(details['created_at'])}  updated {_when(details['updated_at'])} (UTC)"
    )
    for m in details["messages"]:
        extra = []
        if m["parent_message_id"]:
            extra.append(f"reply to {m['parent_message_id']}")
        if m["model"]:
            extra.append(visible(m["model"]))
        if m["total_tokens"] is not None:
            extra.append(f"{m['total_tokens']} tokens")
        tail = f"  [dim]({escape(', '.join(extra))})[/dim]" if extra else ""
        console.print(
            f"\n[bold]{m['sender']}[/bold] {_when(m['message_time'])}  "
            f"[dim]{shown(m['id'])}[/dim]{tail}"
        )
        console.print(escape(visible(m["text"], keep="\n\t")))


def register(app: typer.Typer) -> None:
    """Add ``hookwire history`` and its commands to ``app``."""
    group = new_app(help="Recorded conversations.")
    group.command("list", cls=Command)(list_conversations)
    group.command("show", cls=Command)(show_conversation)
    app.add_typer(group, name="history")
