"""Fork: a child starts clean, and a multiprocessing child drains what it queued."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

RunScript = Callable[..., subprocess.CompletedProcess[str]]


def test_a_forked_child_starts_clean_and_the_parent_goes_on(run_script: RunScript) -> None:
    result = run_script("fork_clean.py")
    assert result.returncode == 0, result.stderr
    child, parent = (json.loads(line) for line in result.stdout.splitlines())
    assert child == {
        "pending_at_start": 0,  # none of the parent's items
        "threads_at_start": 1,  # no thread of the parent's
        "flushed": True,
        "handled": ["child 0", "child 1"],
        "new_loop": True,
    }
    assert parent == {"flushed": True, "handled": [f"parent {i}" for i in range(5)]}


def test_a_multiprocessing_fork_child_drains_before_it_ends(
    run_script: RunScript, tmp_path: Path
) -> None:
    out = tmp_path / "out.txt"
    result = run_script("fork_mp.py", str(out))
    assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines()
    assert [line for line in lines if line.startswith("child")] == [f"child {i}" for i in range(50)]
    assert lines.count("parent") == 1  # the parent's item, handled by the parent only
