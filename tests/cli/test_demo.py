"""``hookwire demo``: offline by default, against an endpoint given by --base-url."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from hookwire.cli import app
from hookwire.demo import CONVERSATION
from hookwire.testing.openai_server import OpenAIServer

runner = CliRunner()


def test_demo_command_exits_0(tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", "--dir", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert "5 turns answered" in result.output


def test_demo_against_an_endpoint(tmp_path: Path) -> None:
    with OpenAIServer() as server:
        result = runner.invoke(
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
        result = runner.invoke(
            app,
            ["demo", "--dir", str(tmp_path), "--base-url", server.base_url, "--api-key", "wrong"],
        )
    assert result.exit_code == 0, result.output
    assert "turn failed: AuthenticationError" in result.output


def test_a_directory_that_cannot_be_made_is_an_error(tmp_path: Path) -> None:
    taken = tmp_path / "a-file"
    taken.write_text("")
    result = runner.invoke(app, ["demo", "--dir", str(taken)])
    assert result.exit_code == 1
    assert result.stderr == f"hookwire demo: error: File exists: {taken}\n"


def test_demo_in_a_fresh_process(tmp_path: Path) -> None:
    src = Path(__file__).resolve().parents[2] / "src"
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
