"""``hookwire demo``: offline on LocalLLM, and against an endpoint given by --base-url."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from hookwire.cli import app
from hookwire.demo import CONVERSATION, build_observers, run_demo
from hookwire.testing.openai_server import OpenAIServer


def test_demo_offline_shows_every_kind_of_event(tmp_path: Path) -> None:
    out = io.StringIO()
    answered = run_demo(tmp_path / "demo", out=out)
    text = out.getvalue()
    assert answered == len(CONVERSATION)
    assert "offline, LocalLLM" in text
    if "ConsoleCallback" in text.splitlines()[1]:  # the built-in console tells the story
        assert "(stream)" in text  # a streamed answer
        assert "⚙ order_status(" in text  # a tool call
        assert "◆ memory store" in text
        assert "← 1 result" in text or "← 2 results" in text
        assert "↻ retry 1/3: RateLimitError" in text  # a transient failure, retried
        assert "✗ warehouse_stock failed" in text  # a handled error
        assert "✗ error [tool]" in text
    else:
        assert "(streaming)" in text  # a streamed answer
        assert "tool order_status(" in text  # a tool call
        assert "memory stored" in text
        assert "memory recalled 1 item(s)" in text or "memory recalled 2 item(s)" in text
        assert "retry attempt 1/3 failed (RateLimitError)" in text  # a transient failure, retried
        assert "warehouse_stock failed" in text  # a handled error
        assert "error (tool)" in text
    assert "You told me: Hello! My order number is ORD-1042." in text  # recalled from memory
    assert (tmp_path / "demo" / "memory.sqlite").exists()


def test_demo_command_exits_0(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--dir", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert "5 turns answered" in result.output


def test_demo_against_an_endpoint(tmp_path: Path) -> None:
    with OpenAIServer() as server:
        result = CliRunner().invoke(
            app,
            [
                "demo",
                "--dir",
                str(tmp_path),
                "--model",
                "gpt-4o-mini",
                "--base-url",
                server.base_url,
                "--api-key",
                "sk-demo",
            ],
        )
        assert result.exit_code == 0, result.output
        assert "openai/gpt-4o-mini" in result.output
        assert len(server.requests) >= len(CONVERSATION)
        assert server.headers[0]["authorization"] == "Bearer sk-demo"
        assert "sk-demo" not in result.output


def test_demo_reports_a_failing_endpoint_and_still_exits_0(tmp_path: Path) -> None:
    with OpenAIServer(api_key="right-key") as server:
        result = CliRunner().invoke(
            app,
            ["demo", "--dir", str(tmp_path), "--base-url", server.base_url, "--api-key", "wrong"],
        )
    assert result.exit_code == 0, result.output
    assert "turn failed: AuthenticationError" in result.output


def test_observers_are_looked_up_lazily(tmp_path: Path) -> None:
    found, notes = build_observers(tmp_path)
    names = {type(o).__name__ for o in found} | {n.split(":")[0] for n in notes}
    assert names == {
        "ConsoleCallback",
        "MetricsCallback",
        "FileLogCallback",
        "ChatHistoryCallbackHandler",
        "AccountingCallbackHandler",
    }


def test_demo_in_a_fresh_process(tmp_path: Path) -> None:
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": str(src)}
    env.pop("OPENAI_API_KEY", None)
    env.pop("OPENAI_BASE_URL", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from hookwire.cli import main; main()",
            "demo",
            "--dir",
            str(tmp_path / "x"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "5 turns answered" in proc.stdout
