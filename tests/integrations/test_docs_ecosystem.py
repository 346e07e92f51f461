"""The examples of docs/ecosystem.md run and print what the page says they print."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "ecosystem.md"
SRC = Path(__file__).resolve().parents[2] / "src"


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def expected_output(block: str) -> list[str]:
    """The ``# ...`` comment lines right after each ``print(...)``, continuation lines joined."""
    out: list[str] = []
    after_print = False
    for line in block.splitlines():
        stripped = line.strip()
        if stripped.startswith("print("):
            after_print = True
        elif after_print and stripped.startswith("# "):
            text = stripped[2:]
            if out and out[-1].endswith(","):
                out[-1] += " " + text
            else:
                out.append(text)
        else:
            after_print = False
    return out


@pytest.mark.parametrize("index", range(len(blocks())))
def test_example_runs_as_documented(index: int) -> None:
    code = blocks()[index]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    # A subprocess: the OpenTelemetry example sets the process-wide tracer provider.
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0, proc.stderr
    got = [" ".join(line.split()) for line in proc.stdout.splitlines()]
    want = [" ".join(line.split()) for line in expected_output(code)]
    assert len(got) == len(want), (got, want)
    for g, w in zip(got, want, strict=True):
        if "<" in w:  # a placeholder such as <the id of the invoke_agent span>
            assert g.split()[0] == w.split()[0]
        else:
            assert g == w
