"""``FileLogCallback``: every event as one JSON line in a file, written off the app thread.

The app thread puts the event's parts on a ``hookwire._workers.BackgroundQueue`` (what the
app could still change, serialised first: ``logschema.snapshot_parts``); the shared
``hookwire-filelog`` worker thread, woken about once per batch, makes the JSON lines
(``hookwire.logschema``, orjson), redacts secrets and appends whole batches with one
``write(2)`` each on a file opened with
``O_APPEND`` (``_LogFile``, which the queue holds: a handler dropped with lines still queued
gets them written, and its file is closed once they are). On Linux and the BSDs a
``write`` to a regular file is applied whole, at the end of the file, under the file's lock,
so lines from several threads, several handlers and several processes never interleave.

Rotation by size (``max_bytes``, ``backup_count``) works across processes: the process that
finds the file full renames ``log -> log.1 -> log.2 ...`` while holding an ``flock`` on
``log.lock``, and every writer checks, before each batch, whether the path still names the
file it has open (and reopens it if not). With rotation on, a batch is written in pieces of at
most ``max_bytes``; a piece that races with a rotation lands whole in the just-renamed file,
so no line is cut or lost (except files shifted past ``backup_count``), and a file can exceed
``max_bytes`` by at most one piece per writing process (or one line longer than that).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import os
import weakref
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import orjson

from .._workers import BackgroundQueue
from ..callpath import Sink
from ..errors import ConfigurationError
from ..events import HOOKS
from ..logschema import (
    IMMUTABLE_TYPES,
    Redactor,
    dumps_record,
    json_default,
    line_from_parts,
    snapshot,
    snapshot_parts,
)
from ..masking import Mask, masked_redactor
from ..sampling import sample
from .base import BaseCallback
from .forwarding import forward_hooks

try:  # POSIX only; without it rotation is still correct within one process.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["FileLogCallback"]

logger = logging.getLogger("hookwire")

# Events the writer turns into lines and writes at a time. Small on purpose: a batch's queued
# events are still in the CPU's caches when their lines are made, and its lines (about 22 KB)
# when they are joined, scanned for secrets and written. Measured (bench/observers.py's
# requests, prebuilt manager): the writer took 5.0 µs an event with 8,192, 3.3 with 256, 2.0
# with 64 (256,000 events/s end to end against 142,000); the app thread's cost did not move.
_BATCH: Final = 64
_LINGER: Final = 0.002  # seconds the writer waits for more events before it sleeps
_OPEN_FLAGS: Final = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)


_IMMUTABLE: Final = IMMUTABLE_TYPES
_immutable: Final = IMMUTABLE_TYPES.issuperset

#: What the app thread queues per event: ``_hookwire_raw``'s arguments, the line's parts.
_Parts = tuple[str, tuple[Any, ...], Any, Any, Mapping[str, Any], dict[str, Any], Any, Any]

_LIVE: weakref.WeakSet[FileLogCallback] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for handler in list(_LIVE):
        try:
            handler.close()
        except Exception:  # pragma: no cover - never spoil interpreter exit
            logger.exception("hookwire: closing %r at exit failed", handler)


class FileLogCallback(BaseCallback):
    """Writes every event to ``log_path`` as JSON Lines (schema: ``hookwire.logschema``).

    Every hook of ``hookwire.events.HOOKS`` is logged, hooks declared later included.
    ``include_prompts=False`` leaves out prompts, tool inputs and memory contents;
    ``include_responses=False`` leaves out answers, tool outputs and memory results (usage,
    cost and timings are always kept): the arguments each ``HookSpec`` names in ``prompts``
    and ``responses``. ``include_tokens=True`` also logs every streamed token (hooks with
    ``HookSpec.streamed``; off by default: the whole answer is in ``llm_end``).

    ``max_bytes`` > 0 rotates the file when the next lines would take it past that size,
    keeping ``backup_count`` older files (``log.1`` is the newest). ``redact`` adds your own
    secret patterns (regular expressions) or a function ``(str) -> str`` to the built-in
    redaction of API keys, bearer tokens and passwords in URLs, which always applies;
    ``mask`` masks personal data in every text value (``hookwire.masking``: a function, or
    ``True`` for ``mask_pii``; by default the process-wide one).

    ``sample_rate`` logs that fraction of traces, whole (``hookwire.sampling``; ``None``, the
    default, logs all); a trace with an error, a retry, a budget refusal or a call over
    ``keep_over_ms`` / ``keep_over_cost`` is logged whole all the same.

    The queue holds at most ``queue_size`` events; when it is full the app waits (nothing is
    lost), or with ``drop_when_full=True`` the event is dropped and counted in ``dropped``.
    ``flush()`` waits until everything queued is on disk (in the OS); ``close()`` also stops
    the writer and closes the file; both happen at exit.
    """

    name = "FileLogCallback"

    def __init__(
        self,
        log_path: str | os.PathLike[str],
        include_prompts: bool = True,
        include_responses: bool = True,
        *,
        include_tokens: bool = False,
        max_bytes: int = 0,
        backup_count: int = 5,
        redact: Iterable[Any] | Callable[[str], str] | None = None,
        mask: Mask = None,
        sample_rate: float | None = None,
        keep_over_ms: float | None = None,
        keep_over_cost: Decimal | float | None = None,
        queue_size: int = 100_000,
        drop_when_full: bool = False,
        fsync: bool = False,
    ) -> None:
        if not isinstance(max_bytes, int) or max_bytes < 0:
            raise ConfigurationError(
                f"max_bytes must be a size in bytes (0 turns rotation off), not {max_bytes!r}"
            )
        if not isinstance(backup_count, int) or backup_count < 0:
            raise ConfigurationError(
                f"backup_count must be a number of old files to keep (>= 0), not {backup_count!r}"
            )
        if not isinstance(queue_size, int) or queue_size <= 0:
            raise ConfigurationError(
                f"queue_size must be a positive number of events, not {queue_size!r}"
            )
        self.log_path = Path(log_path)
        if self.log_path.is_dir():
            raise ConfigurationError(
                f"log_path {self.log_path} is a directory; give a file name, like "
                f"{self.log_path / 'hookwire.jsonl'}"
            )
        self.include_tokens = include_tokens
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        self.fsync = fsync
        self._redactor = masked_redactor(redact, mask)
        self._unserialisable = 0
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the directory of log file {self.log_path}: {exc.strerror or exc}"
            ) from exc
        self._file = _LogFile(self.log_path, max_bytes, backup_count, fsync, self._redactor)
        self.include_prompts = include_prompts
        self.include_responses = include_responses
        try:
            self._file.open()
        except OSError as exc:
            raise ConfigurationError(
                f"cannot open the log file {self.log_path}: {exc.strerror or exc}; "
                "choose a log_path in a writable directory"
            ) from exc
        self._queue: BackgroundQueue[_Parts] = BackgroundQueue(
            f"FileLogCallback({self.log_path})",
            self._file.write_batch,
            maxsize=queue_size,
            drop_when_full=drop_when_full,
            linger=_LINGER,
            max_batch=_BATCH,
            worker="hookwire-filelog",
        )
        self._put = self._queue.put
        if not include_tokens:
            # Leave the streamed hooks un-overridden so the dispatcher never calls them.
            self.ignore_hooks(*(hook for hook, spec in HOOKS.items() if spec.streamed))
        self.sampler = sample(
            self, sample_rate, keep_over_ms=keep_over_ms, keep_over_cost=keep_over_cost
        )
        _LIVE.add(self)

    # The switches are read where the lines are made: on the writer, from the file side.
    @property
    def include_prompts(self) -> bool:
        """Whether prompts, tool inputs and memory contents are logged."""
        return self._file.prompts

    @include_prompts.setter
    def include_prompts(self, value: bool) -> None:
        self._file.prompts = value

    @property
    def include_responses(self) -> bool:
        """Whether answers, tool outputs and memory results are logged."""
        return self._file.responses

    @include_responses.setter
    def include_responses(self, value: bool) -> None:
        self._file.responses = value

    @property
    def written(self) -> int:
        """Lines written since this handler was created."""
        return self._file.written

    @property
    def dropped(self) -> int:
        """Events not in the file: dropped because the queue was full (only with
        ``drop_when_full=True``) or lost to a failed write (a full disk)."""
        return self._queue.dropped + self._file.failed

    @property
    def failed(self) -> int:
        """Events that could not be written (serialisation or I/O errors); they are logged."""
        return (
            self._unserialisable
            + self._file.unserialisable
            + self._file.failed
            + self._queue.failed
        )

    def __repr__(self) -> str:
        return f"FileLogCallback({str(self.log_path)!r})"

    # -- the app thread's side: one append per event ----------------------------------------
    # The hooks (one per entry of HOOKS, made by forward_hooks below) pass their keywords as the
    # whole record (run_id None) when called directly.

    def _hookwire_raw(
        self,
        hook: str,
        args: tuple[Any, ...],
        run_id: Any,
        timestamp: Any,
        ctx: Mapping[str, Any],
        kw: dict[str, Any],
        model: Any,
        provider: Any,
    ) -> None:
        """Queue one event: what ``CallbackManager`` has at hand, without keyword dicts.

        ``CallbackManager`` calls this instead of the ``on_*`` hooks ``forward_hooks`` made; the
        record is what those hooks would have received (see ``line_from_parts``). ``ctx`` and
        ``kw`` are read, never changed: they may be shared with other handlers.
        """
        # The line is made on the writer, a batch at a time: this thread only queues the
        # parts (bench/README.md, observers). What the app may still change after this call
        # (a list of messages it appends the answer to, a tool's input dict) is serialised
        # here, alone; strings, numbers and frozen responses are kept as they are. The run
        # context is immutable by contract (hookwire.context.enter_run). The checks are
        # written out: this runs for every event, and a call or map() per check costs more.
        try:
            for value in args:
                if type(value) not in _IMMUTABLE:
                    args = tuple(map(snapshot, args))
                    break
            if kw and not _immutable(map(type, kw.values())):
                kw = snapshot_parts((), kw)[1]
            if type(model) not in _IMMUTABLE or type(provider) not in _IMMUTABLE:
                model, provider = snapshot(model), snapshot(provider)
        except Exception as exc:
            self._unserialisable += 1
            self._file.warn_once(f"an event ({hook}) could not be serialised: {exc!r}")
            return
        self._put((hook, args, run_id, timestamp, ctx, kw, model, provider))

    # -- draining ---------------------------------------------------------------------------

    def flush(self, timeout: float | None = 10.0) -> bool:  # type: ignore[override]
        """Wait (up to ``timeout`` seconds) until every event queued before this call is
        handled; ``False`` on timeout, or while writes fail (a full disk: those events are
        counted in ``dropped``)."""
        return self.drain(timeout)

    def drain(self, timeout: float | None = 10.0) -> bool:
        """Wait until every event queued before this call is handled; ``False`` on timeout,
        or if the last write failed."""
        return self._queue.flush(timeout) and not self._file.failing

    def close(self) -> None:
        """Flush and close the file. Events after this reopen it."""
        self.shutdown(10.0)

    def shutdown(self, timeout: float | None = 10.0) -> bool:
        """``close()`` with a time limit; ``False`` if the queue was not drained in time."""
        drained = self._queue.close(timeout)
        self._file.close()
        return drained


class _LogFile:
    """The file side, run by the worker: the lines, redaction, rotation and one ``write(2)``
    per batch.

    The queue holds it (not the handler), so lines queued by a handler that is dropped are
    still written, and the file is closed when the last of them is.
    """

    def __init__(
        self, path: Path, max_bytes: int, backup_count: int, fsync: bool, redactor: Redactor
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        self.fsync = fsync
        self.redactor = redactor
        self.prompts = True
        self.responses = True
        self.fd = -1
        self.lock_fd = -1
        self.written = 0
        self.failed = 0
        self.unserialisable = 0
        self.warned = False
        #: Whether the last write failed (a full disk): ``flush()`` says so.
        self.failing = False
        #: Whether the file ends with a piece of a line that could not be cut off.
        self.torn = False

    def __del__(self) -> None:
        # The last of a dropped handler's lines is written: nothing else will use the file.
        try:  # noqa: SIM105 - contextlib itself may be gone late at shutdown
            self.close()
        except Exception:
            pass

    def write_batch(self, events: list[_Parts]) -> None:
        prompts, responses = self.prompts, self.responses
        items: list[bytes] = []
        add = items.append
        for parts in events:
            try:
                add(line_from_parts(*parts, prompts, responses))
            except Exception as exc:
                self.unserialisable += 1
                self.warn_once(f"an event ({parts[0]}) could not be serialised: {exc!r}")
        red = self.redactor
        if red.walks_values:
            items = [line for line in map(self._user_redact, items) if line]
        for chunk in self._chunks(items) if self.max_bytes else (items,):
            if chunk:
                self._write(red.json_bytes(b"".join(chunk)), len(chunk))

    def _chunks(self, items: list[bytes]) -> list[list[bytes]]:
        # With rotation, a batch is written in pieces of at most max_bytes (a longer line is a
        # piece of its own), so that a file outgrows max_bytes by at most one line.
        chunks: list[list[bytes]] = [[]]
        size = 0
        for line in items:
            if size + len(line) > self.max_bytes and chunks[-1]:
                chunks.append([])
                size = 0
            chunks[-1].append(line)
            size += len(line)
        return chunks

    def _user_redact(self, line: bytes) -> bytes:
        try:
            return dumps_record(self.redactor.walk(orjson.loads(line)))
        except Exception as exc:  # a user's redact function failed: drop, never leak
            self.failed += 1
            self.warn_once(f"the redact function failed: {exc!r}; the line was dropped")
            return b""

    def warn_once(self, message: str) -> None:
        if not self.warned:
            self.warned = True
            logger.error(
                "hookwire: FileLogCallback(%s): %s (further failures are counted in .failed)",
                self.path,
                message,
            )
        else:
            logger.debug("hookwire: FileLogCallback(%s): %s", self.path, message)

    def open(self) -> None:
        self.fd = os.open(self.path, _OPEN_FLAGS, 0o600)

    def _reopen(self) -> None:
        fd, self.fd = self.fd, -1
        with contextlib.suppress(OSError):
            os.close(fd)
        self.open()

    def close(self) -> None:
        for name in ("fd", "lock_fd"):
            fd = getattr(self, name, -1)
            if fd >= 0:
                setattr(self, name, -1)
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _write(self, buf: bytes, nlines: int) -> None:
        done = 0
        if self.torn:
            # The cut line a failed write left (another process wrote after it, so it could
            # not be cut off) ends here: a broken line of its own, never glued to ours.
            buf = b"\n" + buf
        try:
            if self.fd < 0:
                self.open()
            if self.max_bytes:
                try:
                    self._maybe_rotate(len(buf))
                except OSError as exc:
                    # Rotation failed (permissions, a full disk): keep writing where we are.
                    self.warn_once(f"rotating {self.path} failed: {exc}")
                    if self.fd < 0:
                        self.open()
            view = memoryview(buf)
            while view:
                # One write(2) per batch: applied whole under the file's lock. Only a full
                # disk or a signal can cut it short; then the rest follows in another write.
                n = os.write(self.fd, view)
                view = view[n:]
                done += n
            if self.fsync:
                os.fsync(self.fd)
        except OSError as exc:
            whole = self._keep_whole_lines(buf, done)
            self.written += whole
            self.failed += nlines - whole
            self.failing = True
            if exc.errno == errno.EBADF:
                self.fd = -1
            self.warn_once(f"writing {nlines - whole} line(s) failed: {exc}")
            return
        self.torn = self.failing = False
        self.written += nlines

    def _keep_whole_lines(self, buf: bytes, done: int) -> int:
        """After a write cut short (a full disk): cut the file back to the end of the last
        whole line, so the next write does not glue its first line onto a piece of one.
        Returns how many of the batch's lines are in the file whole."""
        torn = self.torn
        if done == 0:
            return 0
        written = bytes(buf[:done])
        whole = written.count(b"\n") - (1 if torn else 0)
        piece = done - (written.rfind(b"\n") + 1)
        self.torn = False
        if piece == 0:
            return whole
        try:
            # Our bytes end at our offset (O_APPEND moved it to the end before the write). If
            # the file still ends there, no other writer came after us: cut the piece off.
            # Else that writer's line is already glued on; end the piece with our next write.
            end = os.lseek(self.fd, 0, os.SEEK_CUR)
            if os.fstat(self.fd).st_size == end:
                os.ftruncate(self.fd, end - piece)
                return whole
        except OSError:
            pass
        self.torn = True
        return whole

    def _maybe_rotate(self, incoming: int) -> None:
        try:
            mine = os.fstat(self.fd)
            current = os.stat(self.path)
        except FileNotFoundError:
            # Someone removed or renamed the file without recreating it: start a new one.
            self._reopen()
            return
        if (current.st_ino, current.st_dev) != (mine.st_ino, mine.st_dev):
            # Another process rotated: follow the path to the new file.
            self._reopen()
            mine = os.fstat(self.fd)
        if mine.st_size == 0 or mine.st_size + incoming <= self.max_bytes:
            return
        self._rotate(incoming)

    def _rotate(self, incoming: int) -> None:
        if fcntl is not None and self.lock_fd < 0:
            lock_path = str(self.path) + ".lock"
            self.lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        if fcntl is not None:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
        try:
            # Re-check under the lock: another process may have rotated meanwhile.
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                current = None
            mine = os.fstat(self.fd)
            same = current is not None and (current.st_ino, current.st_dev) == (
                mine.st_ino,
                mine.st_dev,
            )
            if same and mine.st_size > 0 and mine.st_size + incoming > self.max_bytes:
                base = str(self.path)
                if self.backup_count == 0:
                    os.unlink(base)
                else:
                    for i in range(self.backup_count - 1, 0, -1):
                        src = f"{base}.{i}"
                        if os.path.exists(src):
                            os.replace(src, f"{base}.{i + 1}")
                    os.replace(base, f"{base}.1")
            self._reopen()
        finally:
            if fcntl is not None:
                fcntl.flock(self.lock_fd, fcntl.LOCK_UN)


# A manager queues the parts itself (``callpath.Sink``), as ``_hookwire_raw`` would, without
# entering it (a Python frame: about 1,400 instructions of the app thread's event); the
# snapshot is ``logschema.snapshot`` written out, whose fallback ``_hookwire_raw`` keeps.
FileLogCallback._hookwire_raw.__hookwire_sink__ = Sink(  # type: ignore[attr-defined]
    "_queue", IMMUTABLE_TYPES, orjson.dumps, json_default, orjson.Fragment
)

forward_hooks(
    FileLogCallback,
    lambda spec: f"Log ``{spec.name}`` (a line whose ``event`` is ``{spec.event.name}``).",
)
