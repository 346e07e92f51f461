"""``hookwire import LOG.jsonl ... [--rotated] [--db URL]``: load JSONL logs written by
``FileLogCallback`` into the trace store, so that ``hookwire ui`` shows runs recorded before
``TraceStoreCallback`` was on.

Lines are read as ``hookwire.logschema`` defines them (a line that is not one is counted and
skipped), redacted again (a log written with redaction of its own keeps it; the built-in
patterns apply to every line), folded into spans and written a few thousand at a time. The
spans of a run are merged with what the store has, so importing a log that overlaps with
what was recorded live completes the same spans (a retry is counted once more per import).
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Annotated, Any, cast

import typer

from .command import Command, CommandError
from .database import DbOption, database_url, run

__all__ = ["import_logs", "read_records", "register"]

#: Records folded and written per transaction.
CHUNK = 5000


def _open(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return cast("IO[bytes]", gzip.open(path, "rb"))
    return open(path, "rb", buffering=1 << 20)


def _with_rotated(path: Path) -> list[Path]:
    backups = []
    i = 1
    while Path(f"{path}.{i}").exists():
        backups.append(Path(f"{path}.{i}"))
        i += 1
    return [*reversed(backups), path]  # oldest first: starts before their ends


def read_records(path: Path, broken: list[int]) -> Iterator[dict[str, Any]]:
    """The records of one log file, redacted; ``broken[0]`` counts the lines skipped."""
    from ..errors import LogFormatError
    from ..logschema import default_redactor, parse_line

    redactor = default_redactor()
    with _open(path) as f:
        for line in f:
            if not line.strip():
                continue
            try:
                yield parse_line(redactor.json_bytes(line))
            except LogFormatError:
                broken[0] += 1


def import_logs(
    logs: Annotated[
        list[Path],
        typer.Argument(
            metavar="LOG",
            help="JSONL log files written by FileLogCallback (.gz too).",
            show_default=False,
        ),
    ],
    rotated: Annotated[
        bool,
        typer.Option("--rotated", "-r", help="Also read each log's rotated backups (LOG.1, ...)."),
    ] = False,
    db: DbOption = None,
) -> None:
    """Load FileLog JSONL files into the trace store (for hookwire ui)."""
    from ..stores.traces import TraceStore, spans_from_records

    paths = [p for log in logs for p in (_with_rotated(log) if rotated else [log])]
    for path in paths:
        if not path.is_file():
            raise CommandError(f"there is no log file at {path}")
    store = TraceStore.for_url(database_url(db, must_exist=False))
    broken = [0]
    records = spans = 0
    for path in paths:
        chunk: list[dict[str, Any]] = []
        for record in read_records(path, broken):
            chunk.append(record)
            if len(chunk) >= CHUNK:
                patches = spans_from_records(chunk)
                run(store.record(patches))
                records, spans = records + len(chunk), spans + len(patches)
                chunk = []
        if chunk:
            patches = spans_from_records(chunk)
            run(store.record(patches))
            records, spans = records + len(chunk), spans + len(patches)
    note = f"; {broken[0]:,} line(s) were not log records and were skipped" if broken[0] else ""
    typer.echo(f"imported {records:,} event(s) as {spans:,} span write(s){note}")


def register(app: typer.Typer) -> None:
    """Add ``hookwire import`` to ``app``."""
    app.command("import", cls=Command)(import_logs)
