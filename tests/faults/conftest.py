"""Fixtures of the fault tests.

``run_script``: tests that need a process of their own run a script of ``scripts/`` with the
interpreter running the tests (CI runs the suite under Python 3.10 to 3.13), importing the
hookwire under test. ``small_disk``: a 16 MB file system (a tmpfs, mounted where the tests may
mount one: as root) that a test fills and frees. ``pg_proxy`` (``tests/conftest.py``): a
PostgreSQL that goes down or stops answering."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
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


class SmallDisk:
    """A small tmpfs at ``path``: :meth:`fill` takes its space, :meth:`free` gives it back.

    16 MB: once space is back, SQLite's WAL must have room to grow to its checkpoint (1,000
    pages) or it fills the disk again by itself."""

    SIZE = 16 << 20

    def __init__(self, path: Path) -> None:
        self.path = path
        self._filler = path / ".filler"

    def fill(self, leave: int = 0) -> None:
        """Take every free byte but ``leave``."""
        fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            chunk = b"\0" * 65536
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
            size = os.fstat(fd).st_size
            os.ftruncate(fd, max(size - leave, 0))
        finally:
            os.close(fd)

    def free(self) -> None:
        """Give the space back."""
        self._filler.unlink(missing_ok=True)


def _can_mount() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount") is not None


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """A full disk for a test: a 1 MB tmpfs in ``tmp_path`` (skips where none can be mounted:
    the FileLog test has an ``RLIMIT_FSIZE`` twin that runs anywhere)."""
    path = tmp_path / "disk"
    path.mkdir()
    if not _can_mount():
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SmallDisk.SIZE},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield SmallDisk(path)
    finally:
        # Lazily: a database connection of the test may still hold a file open there.
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
