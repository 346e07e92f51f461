"""Every Python example in the README runs, against the local OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import gc
import re
import textwrap
import warnings
from pathlib import Path

import pytest

from hookwire.testing import OpenAIServer

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)

# Names an example uses from an earlier one in the README.
PRELUDE = """
from hookwire.callbacks import BaseCallback

class LoggingCallback(BaseCallback):
    def on_llm_end(self, response, **kwargs):
        print("ended:", response.content)
"""


def test_the_readme_has_examples() -> None:
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(
    index: int, openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    code = BLOCKS[index]
    # Top-level ``await`` (as in a notebook) runs in a coroutine; a block that starts its own
    # loop with asyncio.run does not need one.
    if re.search(r"^[^#\n]*\bawait\b", code, re.M) and "asyncio.run(" not in code:
        code = "async def _main():\n" + textwrap.indent(code, "    ") + "\nasyncio.run(_main())\n"
    if "LoggingCallback()" in code and "class LoggingCallback" not in code:
        code = PRELUDE + code
    namespace: dict[str, object] = {"asyncio": asyncio}
    exec(compile(code, f"README.md example {index}", "exec"), namespace)
    # The examples, like most applications, leave their HTTP clients to the garbage collector;
    # collect them here, so their ResourceWarnings are not blamed on a later test.
    namespace.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
