"""``hookwire ui [--db URL] [--host 127.0.0.1] [--port 8765] [--token T] [--budget ...]``: the
local dashboard (``hookwire.ui``) on what hookwire recorded: runs and their traces, the
conversations, costs against budgets, health.

It is read-only and serves this machine alone by default. ``--host`` another address (such as
``0.0.0.0``) needs a token: ``--token``, or one is made and printed in the address to open.
``--budget SCOPE[:KEY]=LIMIT[/PERIOD]`` (repeatable) shows spend against that budget.
"""

from __future__ import annotations

from typing import Annotated

import typer

from .command import Command, CommandError
from .database import DbOption, database_url

__all__ = ["register", "ui"]


def ui(
    db: DbOption = None,
    host: Annotated[
        str,
        typer.Option(
            "--host", help="Address to serve on (another than this machine's needs a token)."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port (0: any).")] = 8765,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            help="Require this token (made for you when --host is not this machine).",
            show_default=False,
        ),
    ] = None,
    budget: Annotated[
        list[str] | None,
        typer.Option(
            "--budget",
            help="Show spend against a budget: SCOPE=LIMIT/PERIOD or SCOPE:KEY=LIMIT/PERIOD, "
            "e.g. user=5/month or org:acme=100/day (repeatable).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the dashboard: runs, traces, conversations, costs and health."""
    import secrets

    from ..errors import ConfigurationError
    from ..stores import engine, runner
    from ..ui.api import DashboardApi
    from ..ui.server import DashboardServer, is_loopback
    from ..ui.spend import parse_budget

    try:
        budgets = [parse_budget(b) for b in budget or ()]
    except ConfigurationError as exc:
        raise typer.BadParameter(str(exc), param_hint="--budget") from None
    url = database_url(db, must_exist=True)
    runner.run_sync(engine.ensure_schema(url), timeout=120)
    if not is_loopback(host) and not token:
        token = secrets.token_urlsafe(24)
    try:
        server = DashboardServer(DashboardApi(url, budgets), host, port, token)
    except OSError as exc:
        raise CommandError(
            f"cannot serve on {host}:{port} ({exc.strerror or exc}); choose another --port"
        ) from None
    typer.echo(f"hookwire ui: {engine.redact(url)}")
    typer.echo(f"open {server.url}  (Ctrl+C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def register(app: typer.Typer) -> None:
    """Add ``hookwire ui`` to ``app``."""
    app.command("ui", cls=Command)(ui)
