"""The seeds' runner examples with only their imports changed to hookwire.

Each runs offline (``LocalLLM`` through ``RLM.from_local``) and through the real ``openai`` SDK
against the local test server (``OPENAI_BASE_URL``). The built-in handlers come from other
modules of hookwire; an example whose handler is not in this build is skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import hookwire.callbacks
from hookwire import RLM
from seed_examples import DetailedCallback


def builtin(name: str) -> Any:
    try:
        return getattr(hookwire.callbacks, name)
    except (ImportError, AttributeError):
        pytest.skip(f"{name} is not part of this build")


def test_detailed_callback(
    make_rlm: Callable[..., RLM], capsys: pytest.CaptureFixture[str]
) -> None:
    cb = DetailedCallback()
    rlm = make_rlm([cb])
    rlm.run("Запрос 1")
    rlm.run("Запрос 2")
    assert cb.summary()["calls"] == 2
    assert cb.summary()["tokens"] > 0
    assert cb.summary()["errors"] == 0
    assert "Запуск LLM вызова" in capsys.readouterr().out


def test_detailed_callback_with_tools_memory_and_retry(capsys: pytest.CaptureFixture[str]) -> None:
    from hookwire import tool
    from hookwire.memory import InMemoryMemory

    @tool
    def weather_report(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    cb = DetailedCallback()
    rlm = RLM.from_local(
        callbacks=[cb], tools=[weather_report], memory=InMemoryMemory(), fail_times=1
    )
    rlm.llm.retry = rlm.llm.retry.from_retries(2, initial=0, jitter=0)  # type: ignore[attr-defined]
    rlm.run('weather report for "Oslo"')
    out = capsys.readouterr().out
    assert "🔧 Tool: weather_report({'city': 'Oslo'})" in out
    assert "✅ Результат tool: sunny in Oslo..." in out
    assert "💾 Сохранено:" in out
    assert "🔍 Извлечено 0 элементов для:" in out
    assert "🔄 Ретрай 1/3:" in out


def test_console_callback(make_rlm: Callable[..., RLM]) -> None:
    ConsoleCallback = builtin("ConsoleCallback")
    callback = ConsoleCallback(verbose=True, show_tokens=True, show_cost=True)
    rlm = make_rlm([callback])
    assert str(rlm.run("Привет!"))


def test_streaming_callback(make_rlm: Callable[..., RLM]) -> None:
    StreamingCallback = builtin("StreamingCallback")
    seen: list[str] = []

    def print_token(token):  # type: ignore[no-untyped-def]
        seen.append(token)
        print(token, end="", flush=True)

    callback = StreamingCallback(on_token=print_token)
    rlm = make_rlm([callback])
    result = rlm.run("Привет!")
    assert "".join(seen) == str(result)


def test_metrics_callback(make_rlm: Callable[..., RLM]) -> None:
    MetricsCallback = builtin("MetricsCallback")
    callback = MetricsCallback()
    rlm = make_rlm([callback])
    rlm.run("Запрос 1")
    rlm.run("Запрос 2")
    metrics = callback.get_metrics()
    assert metrics["total_calls"] == 2
    assert metrics["total_tokens"] > 0
    assert metrics["avg_latency_ms"] >= 0


def test_file_log_and_combined(make_rlm: Callable[..., RLM], tmp_path: Path) -> None:
    ConsoleCallback = builtin("ConsoleCallback")
    MetricsCallback = builtin("MetricsCallback")
    FileLogCallback = builtin("FileLogCallback")
    callbacks = [
        ConsoleCallback(verbose=True),
        MetricsCallback(),
        FileLogCallback(log_path=str(tmp_path / "session.jsonl")),
    ]
    rlm = make_rlm(callbacks)
    rlm.run("Привет!")
    rlm.callbacks.flush()
    assert (tmp_path / "session.jsonl").read_text(encoding="utf-8").strip()
