"""Fault tests that need a process of their own: each runs a script of ``scripts/`` with the
interpreter running the tests (CI runs the suite under Python 3.10 to 3.13), importing the
hookwire under test."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import hookwire

SCRIPTS = Path(__file__).parent / "scripts"
SRC = Path(hookwire.__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }


@pytest.fixture
def run_script() -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(name: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(SCRIPTS / name), *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=_env(),
        )

    return run


def _together(name: str, runs: list[tuple[str, ...]], timeout: float = 90) -> list[str]:
    procs = [
        subprocess.Popen(
            [sys.executable, str(SCRIPTS / name), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for args in runs
    ]
    try:
        # Each prints "ready" once set up, then waits for a line: all start at once.
        said = [(p.stdout.readline() if p.stdout else "").strip() for p in procs]
        assert said == ["ready"] * len(procs), [p.stderr.read() for p in procs if p.stderr]
        for p in procs:
            if p.stdin is not None:
                p.stdin.write("go\n")
                p.stdin.flush()
        last = []
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            assert p.returncode == 0, err
            last.append(out.strip().splitlines()[-1])
        return last
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate(timeout=30)  # and its pipes closed


@pytest.fixture
def run_together() -> Callable[[str, list[tuple[str, ...]]], list[str]]:
    """Runs a script of ``scripts/`` in several processes (one per tuple of arguments), which
    start their work together: each prints ``ready``, then waits for a line on stdin. Returns
    the last line each printed (its exit status must be 0)."""
    return _together
