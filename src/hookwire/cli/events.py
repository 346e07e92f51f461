"""``hookwire events``: the outbox of events going out to other systems.

- ``hookwire events status [--json]``: per sink, the events pending, delivered, failing
  (pending after a failed attempt), dead, and the lag (seconds since the oldest pending event
  was written).
- ``hookwire events replay [--dead] [--since WHEN] [--sink NAME]``: deliver events again:
  the dead ones with ``--dead``, else the delivered and the dead ones; ``--since`` as for
  ``hookwire costs`` (``2026-11-01``, ``24h``, ``7d``).
- ``hookwire events purge [--older-than 7d] [--dead]``: delete delivered events (and dead
  ones with ``--dead``) older than that, so the outbox stays small.
- ``hookwire events tail --stream NAME [--redis URL] [--count N]``: the last entries of a
  Redis stream that ``RedisStreamSink`` writes to.
- ``hookwire events relay [--webhook URL --secret-env VAR] [--redis URL --stream NAME]
  [--batch-size N] [--poll SECONDS]``: deliver the outbox until interrupted (or
  ``--until-idle``), as ``hookwire.export.Relay``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from .command import Command, CommandError, new_app
from .costs import parse_when
from .database import DbOption, database_url, run

__all__ = ["purge", "register", "relay", "render_status", "replay", "status", "tail"]


def render_status(rows: list[dict[str, Any]]) -> str:
    """The status rows as a plain table, one line per sink."""
    head = f"{'sink':<24} {'pending':>9} {'delivered':>10} {'failing':>8} {'dead':>7} {'lag':>9}"
    lines = [head]
    for r in rows:
        lines.append(
            f"{r['sink']:<24} {r['pending']:>9} {r['delivered']:>10} {r['failing']:>8} "
            f"{r['dead']:>7} {r['lag']:>8.1f}s"
        )
    return "\n".join(lines)


def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON rows.")] = False,
    db: DbOption = None,
) -> None:
    """Show, per sink, the events pending, delivered, failing and dead, and the lag."""
    from ..stores.outbox import Outbox

    rows = run(Outbox.for_url(database_url(db, must_exist=True)).status())
    if as_json:
        import orjson

        typer.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
    elif not rows:
        typer.echo("The outbox is empty: no OutboxCallback has written to this database.")
    else:
        typer.echo(render_status(rows))


def replay(
    dead: Annotated[
        bool, typer.Option("--dead", help="Only the dead events (else delivered ones too).")
    ] = False,
    since: Annotated[
        datetime | None,
        typer.Option(
            parser=parse_when,
            metavar="WHEN",
            help="Only events written from this time: 2026-11-01, today, 24h, 7d.",
        ),
    ] = None,
    sink: Annotated[str | None, typer.Option(help="Only this sink's events.")] = None,
    db: DbOption = None,
) -> None:
    """Deliver events again (receivers drop the duplicates by event id)."""
    from ..stores.outbox import Outbox

    box = Outbox.for_url(database_url(db, must_exist=True))
    count = run(box.replay(sink=sink, dead_only=dead, since=since))
    which = "dead " if dead else ""
    typer.echo(f"{count} {which}event(s) will be delivered again")


def purge(
    older_than: Annotated[
        datetime,
        typer.Option(
            parser=parse_when, metavar="WHEN", help="Delivered before this time: 7d, 2026-11-01."
        ),
    ] = "7d",  # type: ignore[assignment]  # typer parses the default with parse_when
    dead: Annotated[bool, typer.Option("--dead", help="Dead events too.")] = False,
    db: DbOption = None,
) -> None:
    """Delete delivered events older than --older-than (they can no longer be replayed)."""
    from ..stores.outbox import Outbox

    box = Outbox.for_url(database_url(db, must_exist=True))
    count = run(box.purge(older_than, dead=dead))
    typer.echo(f"{count} event(s) purged")


def tail(
    stream: Annotated[str, typer.Option(help="The stream's name.")] = "hookwire:events",
    redis_url: Annotated[
        str, typer.Option("--redis", help="The Redis server's URL.")
    ] = "redis://127.0.0.1:6379/0",
    count: Annotated[int, typer.Option(help="How many of the last entries.", min=1)] = 10,
) -> None:
    """Print the last entries of a Redis stream, oldest first, one JSON line each."""
    try:
        import redis
    except ImportError:
        raise CommandError(
            "hookwire events tail needs redis-py: pip install 'hookwire[redis]'"
        ) from None
    import orjson

    # decode_responses: a stream's fields are hookwire's own UTF-8 text
    client: Any = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        entries = client.xrevrange(stream, count=count)
    except redis.RedisError as exc:
        raise CommandError(f"cannot read {stream!r} from Redis: {exc}") from exc
    finally:
        client.close()
    for entry_id, fields in reversed(entries):
        item = {**fields, "entry": entry_id}
        typer.echo(orjson.dumps(item).decode())


def relay(
    webhook: Annotated[str | None, typer.Option(help="POST events to this URL.")] = None,
    secret_env: Annotated[
        str, typer.Option(help="The environment variable holding the webhook's secret.")
    ] = "HOOKWIRE_WEBHOOK_SECRET",
    webhook_name: Annotated[str, typer.Option(help="The webhook sink's name.")] = "webhook",
    redis_url: Annotated[
        str | None, typer.Option("--redis", help="XADD events to this Redis server.")
    ] = None,
    stream: Annotated[str, typer.Option(help="The Redis stream.")] = "hookwire:events",
    redis_name: Annotated[str, typer.Option(help="The Redis sink's name.")] = "redis",
    until_idle: Annotated[
        bool, typer.Option("--until-idle", help="Stop once nothing is pending.")
    ] = False,
    batch_size: Annotated[
        int, typer.Option(help="Rows per claim (bigger claims cost less per event).", min=1)
    ] = 1000,
    poll: Annotated[
        float, typer.Option(help="Seconds to wait when nothing is due (the idle latency).", min=0)
    ] = 0.2,
    db: DbOption = None,
) -> None:
    """Deliver the outbox to a webhook and/or a Redis stream, at least once."""
    import os

    from ..export import RedisStreamSink, Relay, WebhookSink
    from ..export.sinks import Sink

    sinks: list[Sink] = []
    if webhook is not None:
        secret = os.environ.get(secret_env, "")
        if not secret:
            raise CommandError(
                f"the webhook's secret is read from ${secret_env}, which is not set; export it "
                "(the receiver checks signatures with the same secret)"
            )
        sinks.append(WebhookSink(webhook, secret, name=webhook_name))
    if redis_url is not None:
        sinks.append(RedisStreamSink(redis_url, stream=stream, name=redis_name))
    if not sinks:
        raise typer.BadParameter("name at least one sink: --webhook URL or --redis URL")
    worker = Relay(sinks, database_url(db, must_exist=True), batch_size=batch_size, poll=poll)
    try:
        worker.run(until_idle=until_idle)
    except KeyboardInterrupt:
        pass
    finally:
        worker.stop()
    counts = worker.counts
    typer.echo(
        f"delivered {counts['delivered']}, retried {counts['retried']}, dead {counts['dead']}"
    )


def register(app: typer.Typer) -> None:
    """Add ``hookwire events`` and its commands to ``app``."""
    group = new_app(help="Events out to other systems: the outbox's state, replays, streams.")
    group.command("status", cls=Command)(status)
    group.command("replay", cls=Command)(replay)
    group.command("purge", cls=Command)(purge)
    group.command("tail", cls=Command)(tail)
    group.command("relay", cls=Command)(relay)
    app.add_typer(group, name="events")
