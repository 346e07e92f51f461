"""``hookwire db ...`` and ``hookwire history ...``: the database and the chat history in it.

- ``hookwire db upgrade [--db URL]``: apply the schema migrations (any database).
- ``hookwire db current [--db URL]``: the schema revision the database is at.
- ``hookwire history list [--user USER] [--limit N] [--json] [--db URL]``: conversations,
  most recently updated first.
- ``hookwire history show ID [--json] [--db URL]``: one conversation and its messages.

``--db`` defaults to ``HOOKWIRE_DATABASE_URL``, else ``./hookwire.db``. These commands are for
the operator of the database: they see every user's conversations.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import orjson
import typer

from ..errors import ConfigurationError, HookwireError
from . import engine, runner
from .conversations import ConversationStore

__all__ = ["register"]

DB_OPTION = typer.Option(
    None, "--db", help="Database URL (default: HOOKWIRE_DATABASE_URL, else ./hookwire.db)."
)
JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")

db_app = typer.Typer(help="The hookwire database: schema migrations.", no_args_is_help=True)
history_app = typer.Typer(help="Recorded conversations.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the ``db`` and ``history`` command groups to the ``hookwire`` command."""
    app.add_typer(db_app, name="db")
    app.add_typer(history_app, name="history")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def _url(db: str | None, must_exist: bool) -> str:
    try:
        url = engine.resolve_url(db)
    except ConfigurationError as exc:
        raise _fail(str(exc)) from None
    if must_exist and engine.is_sqlite(url):
        from sqlalchemy.engine import make_url

        path = make_url(url).database or ""
        if path and path != ":memory:" and not Path(path).exists():
            raise _fail(
                f"there is no database at {path} (nothing has been recorded there yet); "
                "pass --db URL or set HOOKWIRE_DATABASE_URL"
            )
    return url


def _run(coro: Any) -> Any:
    try:
        return runner.run_sync(coro, timeout=120)
    except HookwireError as exc:
        raise _fail(str(exc)) from None


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def _when(value: _dt.datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


@db_app.command("upgrade")
def db_upgrade(db: str | None = DB_OPTION) -> None:
    """Create or upgrade hookwire's tables to this version's schema."""
    url = _url(db, must_exist=False)
    revision = _run(engine.upgrade(url))
    typer.echo(f"{engine.redact(url)} is at schema revision {revision}")


@db_app.command("current")
def db_current(db: str | None = DB_OPTION) -> None:
    """Print the schema revision of the database, and the one this hookwire needs."""
    url = _url(db, must_exist=True)
    revision = _run(engine.schema_revision(url))
    typer.echo(f"{engine.redact(url)}: {revision or 'no hookwire schema'}")
    typer.echo(f"this hookwire needs: {engine.head_revision()}")


@history_app.command("list")
def history_list(
    user: str | None = typer.Option(None, "--user", help="Only this user's conversations."),
    limit: int = typer.Option(50, "--limit", min=1, max=10_000, help="How many to show."),
    as_json: bool = JSON_OPTION,
    db: str | None = DB_OPTION,
) -> None:
    """Conversations, most recently updated first."""
    store = ConversationStore.for_url(_url(db, must_exist=True))
    page = _run(store.list_conversations(None, limit=limit, user_id=user))
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
            escape(c["id"]),
            escape(c["name"] or ""),
            escape(c["user_id"]) + (" (anonymous)" if c["is_anonymous"] else ""),
            escape(c["org_id"]),
            escape(c["realm"]),
            c["state"],
            str(c["message_count"]),
            _when(c["updated_at"]),
        )
    Console(width=200).print(table)


@history_app.command("show")
def history_show(
    conversation_id: str = typer.Argument(..., metavar="ID", help="The conversation's id."),
    as_json: bool = JSON_OPTION,
    db: str | None = DB_OPTION,
) -> None:
    """One conversation with its messages, in order."""
    store = ConversationStore.for_url(_url(db, must_exist=True))
    details = _run(store.get_conversation_details(None, conversation_id))
    if as_json:
        typer.echo(_json(details))
        return
    from rich.console import Console
    from rich.markup import escape

    console = Console(width=200, highlight=False)
    console.print(f"[bold]{escape(details['name'] or '(unnamed)')}[/bold]  {escape(details['id'])}")
    anon = " (anonymous)" if details["is_anonymous"] else ""
    console.print(
        f"user {escape(details['user_id'])}{anon}  org {escape(details['org_id'] or '-')}  "
        f"realm {escape(details['realm'] or '-')}  agent {escape(details['agent_title'] or '-')}  "
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
            extra.append(m["model"])
        if m["total_tokens"] is not None:
            extra.append(f"{m['total_tokens']} tokens")
        tail = f"  [dim]({escape(', '.join(extra))})[/dim]" if extra else ""
        console.print(
            f"\n[bold]{m['sender']}[/bold] {_when(m['message_time'])}  [dim]{m['id']}[/dim]{tail}"
        )
        console.print(escape(m["text"]))
