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


@pytest.fixture
def run_script() -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(name: str, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
        }
        return subprocess.run(
            [sys.executable, str(SCRIPTS / name), *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )

    return run
