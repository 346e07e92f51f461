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


@pytest.fixture
def start_script() -> Callable[..., subprocess.Popen[str]]:
    """Starts a script of ``scripts/`` and returns at once (stdin, stdout and stderr piped,
    text): for tests that drive several processes together."""

    def start(name: str, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(SCRIPTS / name), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )

    return start
