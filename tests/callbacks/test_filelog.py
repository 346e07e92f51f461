"""FileLogCallback: JSON lines on a background writer, whole lines, rotation, redaction."""

from __future__ import annotations

import contextlib
import copy
import gc
import logging
import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hookwire import CallbackManager, LLMResponse, Usage, trace
from hookwire.callbacks import FileLogCallback
from hookwire.context import hook_context
from hookwire.errors import ConfigurationError, RateLimitError
from hookwire.events import HOOKS
from hookwire.logschema import dumps_record, parse_line, record_from_call


def _read(path: Path) -> list[dict]:
    return [parse_line(line) for line in path.read_bytes().splitlines()]


def _one_call(manager: CallbackManager, prompt: str = "What is 2+2?", answer: str = "4") -> None:
    with trace("rlm", callbacks=manager, user_id="u1"):
        rid = manager.on_llm_start([{"role": "user", "content": prompt}], model="gpt-4o")
        manager.on_llm_end(
            LLMResponse(answer, Usage(7, 1), model="gpt-4o", cost=Decimal("0.0001")),
            run_id=rid,
            model="gpt-4o",
            latency_ms=12.5,
        )


def test_seed_example_writes_jsonl_with_private_mode() -> None:
    callback = FileLogCallback(
        log_path="./logs/rlm.jsonl", include_prompts=True, include_responses=True
    )
    manager = CallbackManager([callback])
    _one_call(manager)
    manager.flush()
    path = Path("logs/rlm.jsonl")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    recs = _read(path)
    assert [r["event"] for r in recs] == ["run_start", "llm_start", "llm_end", "run_end"]
    start, end = recs[1], recs[2]
    assert start["data"]["prompt"] == [{"role": "user", "content": "What is 2+2?"}]
    assert end["data"]["response"]["content"] == "4"
    assert end["data"]["response"]["cost"] == "0.0001"
    assert end["latency_ms"] == 12.5
    assert start["run_id"] == end["run_id"]
    assert end["parent_run_id"] == recs[0]["run_id"] == end["trace_id"]
    assert all(r["user_id"] == "u1" for r in recs)
    callback.close()


def test_prompts_and_responses_can_be_left_out(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    callback = FileLogCallback(path, include_prompts=False, include_responses=False)
    manager = CallbackManager([callback])
    _one_call(manager, prompt="PRIVATE-PROMPT", answer="PRIVATE-ANSWER")
    manager.on_tool_start("search", {"q": "PRIVATE-PROMPT"})
    manager.on_tool_end("search", "PRIVATE-ANSWER")
    manager.flush()
    text = path.read_text()
    assert "PRIVATE" not in text
    end = next(r for r in _read(path) if r["event"] == "llm_end")
    assert end["data"]["response"]["usage"]["total_tokens"] == 8
    callback.close()


def test_tokens_are_only_logged_when_asked(tmp_path: Path) -> None:
    quiet = FileLogCallback(tmp_path / "a.jsonl")
    assert not CallbackManager([quiet]).listens("on_llm_new_token")
    loud = FileLogCallback(tmp_path / "b.jsonl", include_tokens=True)
    manager = CallbackManager([loud])
    manager.on_llm_new_token("Hel", attempt=1, index=0)
    manager.on_llm_new_token("lo", attempt=1, index=1)
    manager.flush()
    recs = _read(tmp_path / "b.jsonl")
    assert [(r["data"]["token"], r["index"]) for r in recs] == [("Hel", 0), ("lo", 1)]
    quiet.close()
    loud.close()


def test_the_prompt_is_logged_as_sent(tmp_path: Path) -> None:
    callback = FileLogCallback(tmp_path / "a.jsonl")
    messages = [{"role": "user", "content": "hi"}]
    callback.on_llm_start(messages, run_id="r", timestamp=1.0)
    messages.append({"role": "assistant", "content": "later"})
    callback.flush()
    assert _read(tmp_path / "a.jsonl")[0]["data"]["prompt"] == [{"role": "user", "content": "hi"}]
    callback.close()


def test_secrets_are_redacted_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    callback = FileLogCallback(path, redact=[r"ACME-\d+"])
    manager = CallbackManager([callback])
    manager.on_llm_start("use sk-abcdefghijklmnopqrstuvwxyz123 and ACME-42", model="m")
    manager.on_tool_start("http", {"headers": {"Authorization": "Bearer abc.def.123456"}})
    manager.on_error(RuntimeError("cannot connect to postgres://app:s3cret@db/x"), stage="tool")
    manager.flush()
    text = path.read_text()
    for secret in ("sk-abcdefghijklmnopqrstuvwxyz123", "ACME-42", "abc.def.123456", "s3cret"):
        assert secret not in text
    assert text.count("[REDACTED]") == 4
    assert len(_read(path)) == 3
    callback.close()


@pytest.mark.parametrize("before", ["\n", "\t", "\r", "\r\n", "\x1b", "\x00"])
def test_filelog_keeps_no_key_or_token_after_a_newline_tab_or_control(
    tmp_path: Path, before: str
) -> None:
    path = tmp_path / "a.jsonl"
    callback = FileLogCallback(path)
    manager = CallbackManager([callback])
    key, token = "sk-proj-abcdefghijklmnop1234", "eyJhbGciOi.JIUzI1NiJ9.abc123"
    manager.on_llm_start(f"my key:{before}{key}{before}Bearer {token}", model="m")
    manager.on_tool_end("http", f"headers{before}Authorization: Bearer\t{token}")
    manager.flush()
    text = path.read_text()
    assert key not in text
    assert token not in text
    assert len(_read(path)) == 2
    callback.close()


def test_filelog_keeps_no_authorization_value_without_a_scheme(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    callback = FileLogCallback(path)
    manager = CallbackManager([callback])
    manager.on_tool_start("http", {"headers": {"Authorization": "abc123def456"}})
    manager.on_tool_end("http", "Authorization: ApiKey a1b2c3d4e5\nok")
    manager.flush()
    text = path.read_text()
    assert "abc123def456" not in text
    assert "a1b2c3d4e5" not in text
    assert _read(path)[0]["data"]["tool_input"] == {"headers": {"Authorization": "[REDACTED]"}}
    assert _read(path)[1]["data"]["tool_output"] == "Authorization: [REDACTED]\nok"
    callback.close()


def test_filelog_keeps_no_secret_from_a_python_repr_of_headers_or_arguments(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a.jsonl"
    callback = FileLogCallback(path)
    manager = CallbackManager([callback])
    secrets = ("Zm9vYmFyYmF6cXV4MTIz", "k-live-123456", "hunter2x", "tok-98765")
    text = (
        f"request failed: headers={{'authorization': '{secrets[0]}'}}, "
        f"kwargs={{'api_key': '{secrets[1]}', 'password': '{secrets[2]}', "
        f"'access_token': '{secrets[3]}'}}"
    )
    manager.on_llm_start(text, model="m")
    manager.on_tool_end("http", text)
    manager.on_error(RuntimeError(text), stage="tool")
    manager.flush()
    written = path.read_text()
    for secret in secrets:
        assert secret not in written
    assert _read(path)[1]["data"]["tool_output"].startswith(
        "request failed: headers={'authorization': '[REDACTED]'}, kwargs={'api_key': "
    )
    callback.close()


def test_many_threads_lines_stay_whole_and_in_order(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    callback = FileLogCallback(path)
    manager = CallbackManager([callback])
    n_threads, per_thread = 8, 1500
    text = "x" * 300  # long lines make torn writes visible

    def work(t: int) -> None:
        for i in range(per_thread):
            manager.on_memory_store(text, metadata={"t": t, "i": i})

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    manager.flush()
    recs = _read(path)
    assert len(recs) == n_threads * per_thread
    seen: dict[int, list[int]] = {}
    for r in recs:
        seen.setdefault(r["metadata"]["t"], []).append(r["metadata"]["i"])
    assert all(v == list(range(per_thread)) for v in seen.values())
    assert callback.written == n_threads * per_thread
    callback.close()


_WRITER = textwrap.dedent(
    """
    import os, sys
    from hookwire.callbacks import FileLogCallback
    path, n, max_bytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    cb = FileLogCallback(path, max_bytes=max_bytes, backup_count=1000)
    for i in range(n):
        cb.on_memory_store("y" * 200, run_id="r", timestamp=1.0,
                           metadata={"pid": os.getpid(), "i": i})
        if i % 50 == 0:
            cb.flush()   # many small batches: many chances to race with a rotation
    # no close(): exit must drain the queue
    """
)


def _spawn(path: Path, n: int, max_bytes: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), str(n), str(max_bytes)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


@pytest.mark.parametrize("max_bytes", [0, 60_000])
def test_several_processes_append_whole_lines_and_rotate(tmp_path: Path, max_bytes: int) -> None:
    path = tmp_path / "shared.jsonl"
    n_procs, per_proc = 4, 1500
    procs = [_spawn(path, per_proc, max_bytes) for _ in range(n_procs)]
    for p in procs:
        assert p.wait(timeout=60) == 0
    files = sorted(tmp_path.glob("shared.jsonl*"))
    files = [f for f in files if not f.name.endswith(".lock")]
    if max_bytes:
        assert len(files) > 3  # it did rotate, several times
    else:
        assert files == [path]
    recs = [r for f in files for r in _read(f)]  # every line of every file parses
    keys = {(r["metadata"]["pid"], r["metadata"]["i"]) for r in recs}
    assert len(recs) == len(keys) == n_procs * per_proc  # nothing lost, nothing twice
    if max_bytes:
        # Each file stays near its bound: at most one batch per writer beyond it.
        assert all(f.stat().st_size < max_bytes + n_procs * 51 * 400 for f in files)


def _log_rotating(path: Path, n: int, max_bytes: int, backup_count: int) -> list[str]:
    """n events, each flushed, into a rotating log; the names of the log files after."""
    callback = FileLogCallback(path, max_bytes=max_bytes, backup_count=backup_count)
    for i in range(n):
        callback.on_memory_store("z" * 100, run_id="r", timestamp=1.0, metadata={"i": i})
        callback.flush()
    callback.close()
    return sorted(p.name for p in path.parent.iterdir() if not p.name.endswith(".lock"))


def test_rotation_keeps_backup_count_files(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    names = _log_rotating(path, 200, max_bytes=2_000, backup_count=2)
    assert names == ["r.jsonl", "r.jsonl.1", "r.jsonl.2"]
    for name in names:
        assert (tmp_path / name).stat().st_size <= 2_000
    newest = _read(path)[-1]["metadata"]["i"]
    assert newest == 199
    older = [r["metadata"]["i"] for r in _read(tmp_path / "r.jsonl.1")]
    assert older == sorted(older)
    assert older[-1] < _read(path)[0]["metadata"]["i"]


def test_rotation_without_backups_starts_afresh(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    assert _log_rotating(path, 50, max_bytes=1_000, backup_count=0) == ["r.jsonl"]
    assert _read(path)[-1]["metadata"]["i"] == 49


def test_a_file_removed_under_the_writer_is_recreated(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    callback = FileLogCallback(path, max_bytes=10_000_000)
    callback.on_memory_store("a", run_id="r", timestamp=1.0)
    callback.flush()
    path.unlink()
    callback.on_memory_store("b", run_id="r", timestamp=1.0)
    callback.flush()
    assert [r["data"]["content"] for r in _read(path)] == ["b"]
    callback.close()


def test_close_then_more_events_reopens(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    callback = FileLogCallback(path)
    manager = CallbackManager([callback])
    manager.on_memory_store("one")
    manager.close()
    manager.on_memory_store("two")
    manager.close()
    assert [r["data"]["content"] for r in _read(path)] == ["one", "two"]


def test_exit_drains_the_queue(tmp_path: Path) -> None:
    path = tmp_path / "exit.jsonl"
    proc = _spawn(path, 3000, 0)
    assert proc.wait(timeout=60) == 0
    assert len(_read(path)) == 3000


def test_write_failures_never_reach_the_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    callback = FileLogCallback(tmp_path / "f.jsonl")

    def full(fd: int, data: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with caplog.at_level(logging.ERROR, logger="hookwire"):
        for _ in range(3):
            callback.on_memory_store("x", run_id="r", timestamp=1.0)
            callback.flush()
    monkeypatch.undo()
    assert callback.failed == 3
    assert sum("No space left" in r.getMessage() for r in caplog.records) == 1  # logged once
    callback.on_memory_store("ok", run_id="r", timestamp=1.0)
    callback.close()
    assert [r["data"]["content"] for r in _read(tmp_path / "f.jsonl")] == ["ok"]


def test_a_write_cut_short_by_a_full_disk_leaves_no_piece_of_a_line_to_glue_onto(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f.jsonl"
    callback = FileLogCallback(path)
    callback.on_memory_store("before", run_id="r", timestamp=1.0)
    assert callback.flush()
    real_write = os.write
    calls: list[int] = []

    def short_then_full(fd: int, data: bytes) -> int:
        # What a filling disk does: the first write(2) takes what fits, the next fails.
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data)[: len(data) // 2 + 7])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", short_then_full)
    for i in range(4):
        callback.on_memory_store(f"lost-{i}" * 20, run_id="r", timestamp=1.0)
    assert not callback.flush()  # False while writes fail
    assert not callback.flush()
    monkeypatch.undo()
    callback.on_memory_store("after", run_id="r", timestamp=1.0)
    assert callback.flush()  # space is back: writing resumes
    callback.close()
    lines = path.read_bytes().splitlines()
    contents = [parse_line(line)["data"]["content"] for line in lines]  # every line whole
    kept = [c for c in contents if c.startswith("lost-")]
    assert contents == ["before", *kept, "after"]
    assert callback.written == 2 + len(kept)
    assert callback.dropped == 4 - len(kept)
    assert callback.failed == 4 - len(kept)
    assert CallbackManager([callback]).stats()["dropped"] == {"FileLogCallback": 4 - len(kept)}


def test_a_cut_line_another_writer_appended_after_is_ended_not_glued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # When the file no longer ends where the cut write ended, the piece cannot be cut off:
    # the next write starts with a newline, so the piece is a broken line of its own.
    path = tmp_path / "f.jsonl"
    callback = FileLogCallback(path)
    real_write = os.write
    calls: list[int] = []

    def short_then_full(fd: int, data: bytes) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            n = real_write(fd, bytes(data)[:10])
            with open(path, "ab") as other:  # another process appends after the piece
                other.write(b'{"other": 1}\n')
            return n
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", short_then_full)
    callback.on_memory_store("lost", run_id="r", timestamp=1.0)
    assert not callback.flush()
    monkeypatch.undo()
    callback.on_memory_store("after", run_id="r", timestamp=1.0)
    assert callback.flush()
    callback.close()
    # (A blank line where the other line had ended already: readers skip blank lines.)
    lines = [line for line in path.read_bytes().splitlines() if line]
    assert len(lines) == 2
    assert lines[0].endswith(b'{"other": 1}')  # the piece and the other line: one broken line
    assert parse_line(lines[1])["data"]["content"] == "after"  # ours starts on a line of its own
    assert callback.dropped == 1


def test_flush_from_many_threads_waits_for_each_threads_own_events(tmp_path: Path) -> None:
    # Every flush() returns only once the events its thread queued before it are in the file,
    # also when flushes from several threads cross in the queue.
    path = tmp_path / "f.jsonl"
    callback = FileLogCallback(path)
    missing: list[str] = []

    def worker(t: int) -> None:
        for round_ in range(20):
            for i in range(25):
                callback.on_memory_store(f"{t}-{round_}-{i}", run_id="r", timestamp=1.0)
            callback.flush()
            # Another thread's batch may be being appended while this one reads: a reader can
            # see part of it (write(2) is whole for other writers, not for readers), so only
            # the lines that end are read.
            done = path.read_bytes().rpartition(b"\n")[0]
            logged = {parse_line(line)["data"]["content"] for line in done.splitlines()}
            missing.extend(
                f"{t}-{round_}-{i}" for i in range(25) if f"{t}-{round_}-{i}" not in logged
            )

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    callback.close()
    assert missing == []
    assert callback.written == 6 * 20 * 25  # flush markers are not lines
    assert len(_read(path)) == 6 * 20 * 25


def test_full_queue_waits_or_drops(tmp_path: Path) -> None:
    gate = threading.Event()

    def slow(text: str) -> str:  # a redact function holding the writer up
        gate.wait(10)
        return text

    callback = FileLogCallback(tmp_path / "q.jsonl", queue_size=3, drop_when_full=True, redact=slow)
    for i in range(50):
        callback.on_memory_store(str(i), run_id="r", timestamp=1.0)
    assert callback.dropped > 0
    gate.set()
    callback.close()
    assert callback.written + callback.dropped == 50


def test_bad_options_are_named() -> None:
    with pytest.raises(ConfigurationError, match="max_bytes"):
        FileLogCallback("x.jsonl", max_bytes=-1)
    with pytest.raises(ConfigurationError, match="backup_count"):
        FileLogCallback("x.jsonl", backup_count=-2)
    with pytest.raises(ConfigurationError, match="queue_size"):
        FileLogCallback("x.jsonl", queue_size=0)


def test_errors_and_retries_are_logged(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    callback = FileLogCallback(path)
    manager = CallbackManager([callback])
    rid = manager.on_llm_start("hi", model="gpt-4o")
    err = RateLimitError("slow down", status_code=429, retry_after=1.0)
    manager.on_retry(1, 3, err, run_id=rid, model="gpt-4o", delay=1.0)
    manager.on_llm_error(err, run_id=rid, model="gpt-4o", attempts=3, latency_ms=50.0)
    manager.on_error(err, stage="llm")
    manager.flush()
    recs = _read(path)
    assert [r["event"] for r in recs] == ["llm_start", "retry", "llm_error", "error"]
    assert recs[1]["data"] == {
        "attempt": 1,
        "max_attempts": 3,
        "error": {"type": "RateLimitError", "message": "slow down", "status_code": 429},
    }
    assert recs[2]["attempts"] == 3
    assert recs[3]["stage"] == "llm"
    callback.close()


def test_an_unusable_path_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="is a directory"):
        FileLogCallback(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigurationError, match="cannot create the directory"):
        FileLogCallback(blocker / "sub" / "log.jsonl")


def test_a_failed_rotation_keeps_logging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r.jsonl"
    callback = FileLogCallback(path, max_bytes=300, backup_count=2)

    def refuse(src: object, dst: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    for i in range(5):
        callback.on_memory_store("z" * 100, run_id="r", timestamp=1.0, metadata={"i": i})
        callback.flush()
    monkeypatch.undo()
    callback.close()
    assert [r["metadata"]["i"] for r in _read(path)] == [0, 1, 2, 3, 4]
    assert callback.written == 5


def test_lines_through_the_manager_match_direct_calls(tmp_path: Path) -> None:
    # CallbackManager hands FileLogCallback the ids, context and keywords as they are
    # (_hookwire_raw); the line must be what the hook, called directly, writes.
    resp = LLMResponse("4", Usage(7, 1), model="gpt-4o", cost=Decimal("0.0001"))
    ctx = {"parent_run_id": "p", "trace_id": "t", "depth": 1, "user_id": "u1"}
    direct = FileLogCallback(tmp_path / "direct.jsonl")
    via = FileLogCallback(tmp_path / "via.jsonl")
    manager = CallbackManager([via])
    kw = {"run_id": "r", "timestamp": 1.5, "model": "gpt-4o", "latency_ms": 3.0, "v": 9}
    manager.on_llm_end(resp, **kw, **ctx, event="x", usage=Usage(1, 2))
    direct.on_llm_end(resp, **kw, **ctx, event="x", usage=Usage(1, 2))
    manager.on_tool_end("search", {"q": "x"}, run_id="r", timestamp=2.0, **ctx)
    direct.on_tool_end("search", {"q": "x"}, run_id="r", timestamp=2.0, **ctx)
    manager.flush()
    direct.flush()
    got, want = _read(tmp_path / "via.jsonl"), _read(tmp_path / "direct.jsonl")
    assert got == want
    assert got[0]["v"] == 1 and got[0]["event"] == "llm_end"
    assert got[0]["usage"] == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    direct.close()
    via.close()


def test_a_subclass_overriding_a_hook_is_called_through_the_manager(tmp_path: Path) -> None:
    class Tagged(FileLogCallback):
        def on_tool_end(self, tool_name: str, tool_output: object, **kwargs: object) -> None:
            super().on_tool_end(tool_name, f"tagged {tool_output}", **kwargs)

    callback = Tagged(tmp_path / "a.jsonl")
    manager = CallbackManager([callback])
    manager.on_tool_end("search", "out")
    manager.on_run_end("done")
    manager.flush()
    recs = _read(tmp_path / "a.jsonl")
    assert recs[0]["data"]["tool_output"] == "tagged out"
    assert recs[1]["data"]["output"] == "done"
    callback.close()


def test_the_prompt_is_logged_as_sent_through_the_manager(tmp_path: Path) -> None:
    callback = FileLogCallback(tmp_path / "a.jsonl")
    manager = CallbackManager([callback])
    messages = [{"role": "user", "content": "hi"}]
    manager.on_llm_start(messages, metadata={"k": 1})
    messages.append({"role": "assistant", "content": "later"})
    manager.flush()
    rec = _read(tmp_path / "a.jsonl")[0]
    assert rec["data"]["prompt"] == [{"role": "user", "content": "hi"}]
    callback.close()


def test_an_llm_end_with_a_dict_among_its_keywords_is_logged_as_sent(tmp_path: Path) -> None:
    callback = FileLogCallback(tmp_path / "a.jsonl")
    manager = CallbackManager([callback])
    metadata = {"tags": ["a"]}
    manager.on_llm_end(LLMResponse("4"), metadata=metadata)
    metadata["tags"].append("later")
    manager.flush()
    assert _read(tmp_path / "a.jsonl")[0]["metadata"] == {"tags": ["a"]}
    callback.close()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files in /proc")
def test_a_dropped_handler_keeps_no_thread_or_file_and_loses_nothing(tmp_path: Path) -> None:
    # The app-per-request pattern: a handler made and dropped per request. Its lines are
    # still written (the queue holds the file, not the handler), then the file is closed, and
    # all handlers share one writer thread.
    def request(i: int) -> None:
        FileLogCallback(tmp_path / f"{i}.jsonl").on_memory_store(str(i), run_id="r", timestamp=1)

    request(0)  # the shared writer thread exists from here on
    FileLogCallback(tmp_path / "warm.jsonl").close()
    gc.collect()
    threads, files = threading.active_count(), len(os.listdir("/proc/self/fd"))
    for i in range(1, 101):
        request(i)
    gc.collect()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        logged = [p for p in tmp_path.glob("*.jsonl") if p.stat().st_size]
        if len(logged) == 101:
            break
        time.sleep(0.01)
    assert sorted(int(parse_line(p.read_bytes())["data"]["content"]) for p in logged) == list(
        range(101)
    )
    deadline = time.monotonic() + 5
    while len(os.listdir("/proc/self/fd")) > files and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.01)
    assert len(os.listdir("/proc/self/fd")) <= files
    assert threading.active_count() <= threads


_JSONISH = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),  # beyond 64 bits too: the snapshot's fallback
        st.floats(),
        st.decimals(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=6), st.integers()), inner, max_size=3),
    ),
    max_leaves=8,
)


def _change(value: object) -> None:
    if isinstance(value, list):
        value.append("changed later")
        for item in value[:-1]:
            _change(item)
    elif isinstance(value, dict):
        for item in list(value.values()):
            _change(item)
        value["changed"] = "later"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    hook=st.sampled_from(sorted(HOOKS)),
    data=st.data(),
    in_run=st.booleans(),
)
def test_property_a_line_through_the_manager_is_the_event_as_emitted(
    tmp_path_factory: pytest.TempPathFactory, hook: str, data: st.DataObject, in_run: bool
) -> None:
    # The manager queues FileLog's event itself (callpath.Sink), snapshotting what the app
    # may change: the line is the reference record of the event as it was, whatever the app
    # changes afterwards.
    args = tuple(data.draw(_JSONISH) for _ in HOOKS[hook].args)
    kw = data.draw(st.dictionaries(st.sampled_from(("latency_ms", "extra", "v")), _JSONISH))
    optional = hook.startswith("on_llm_") and hook != "on_llm_new_token"
    named = {o: data.draw(st.one_of(st.none(), st.text(max_size=5))) for o in ("model", "provider")}
    path = tmp_path_factory.mktemp("sink") / "a.jsonl"
    callback = FileLogCallback(path, include_tokens=True)
    manager = CallbackManager([callback])
    before = copy.deepcopy((args, kw))
    with contextlib.ExitStack() as stack:
        if in_run:
            stack.enter_context(trace("run", callbacks=CallbackManager([]), user_id="u"))
        ctx = hook_context()
        getattr(manager, hook)(
            *args, run_id="r", timestamp=1.5, **kw, **(named if optional else {})
        )
    for value in (*args, *kw.values()):
        _change(value)
    manager.flush()
    args, kw = before
    merged = {"run_id": "r", "timestamp": 1.5, **ctx, **kw}
    merged.update({k: v for k, v in named.items() if optional and v is not None})
    reference = callback._redactor.json_bytes(dumps_record(record_from_call(hook, args, merged)))
    assert path.read_bytes() == reference
    callback.close()
