"""``hookwire import``: a FileLog file from a real run becomes the same traces as
``TraceStoreCallback`` records live."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from hookwire import RLM
from hookwire.callbacks import FileLogCallback
from hookwire.cli import app
from hookwire.stores import runner as store_runner
from hookwire.stores.traces import TraceStore

runner = CliRunner()
SECRET = "sk-abcdefghijklmnopqrstuvwxyz123"


def test_import_a_filelog_file(db_url: str, tmp_path: Path, make_rlm: Callable[..., RLM]) -> None:
    store = TraceStore(db_url)
    store_runner.run_sync(store.prune(max_spans=0))
    log = tmp_path / "hookwire.jsonl"
    handler = FileLogCallback(log)
    rlm = make_rlm([handler])
    rlm.run("first question")
    rlm.run("second question")
    handler.close()
    # a line cut by a crash, and a secret a log written without redaction could hold
    with open(log, "ab") as f:
        f.write(b'{"v": 1, "event": "run_start", "run_id": "cut", "timestamp": 1.0, "data": {"in')
        f.write(b"\n")
        f.write(
            b'{"v": 1, "event": "run_start", "run_id": "leaky", "timestamp": 2.0, '
            b'"data": {"input": "key ' + SECRET.encode() + b'"}}\n'
        )
    packed = tmp_path / "hookwire.jsonl.gz"
    packed.write_bytes(gzip.compress(log.read_bytes()))

    result = runner.invoke(app, ["import", str(packed), "--db", db_url])
    assert result.exit_code == 0, result.output
    assert "1 line(s) were not log records" in result.output
    runs = store_runner.run_sync(store.runs()).items
    assert [r["input_preview"] for r in runs][:2] == ["second question", "first question"]
    assert all(r["status"] == "ok" for r in runs[:2])
    leaky = store_runner.run_sync(store.span("leaky"))
    assert leaky is not None and SECRET not in str(leaky)
    kids = store_runner.run_sync(store.children(runs[0]["trace_id"], runs[0]["span_id"])).items
    assert any(k["kind"] == "llm" and k["output_preview"] for k in kids)

    missing = runner.invoke(app, ["import", str(tmp_path / "nope.jsonl"), "--db", db_url])
    assert missing.exit_code == 1 and "no log file" in missing.output
