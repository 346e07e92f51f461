"""The seed examples that need no LLM, with only their imports changed to hookwire.

The handler classes are the seed's text (rlm-toolkit-callbacks.md), verbatim but for the
import, kept in seed_examples.py; here they are driven through a CallbackManager as a runner
would drive them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hookwire import CallbackManager, LLMResponse, Usage
from hookwire.callbacks import BaseCallback
from seed_examples import AsyncLoggingCallback, DetailedCallback, LoggingCallback


class KeptAsyncLoggingCallback(AsyncLoggingCallback):
    def __init__(self) -> None:
        self.messages: list[str] = []

    async def log_async(self, message: str) -> None:
        await asyncio.sleep(0)
        self.messages.append(message)


def _one_run(m: CallbackManager) -> None:
    rid = m.on_llm_start("Привет! Расскажи о погоде в Москве сегодня, пожалуйста, подробно")
    m.on_tool_start("weather", {"city": "Moscow"})
    m.on_tool_end("weather", "Snow, -3°C, wind 5 m/s")
    m.on_memory_store("user asked about Moscow weather")
    m.on_memory_recall("weather", ["Moscow: snow"])
    m.on_retry(1, 3, TimeoutError("read timed out"))
    m.on_llm_end(LLMResponse("Сегодня в Москве снег.", usage=Usage(42, 8)), run_id=rid)
    m.on_error(RuntimeError("tool quota reached"))


def test_several_seed_callbacks_combined(capsys: pytest.CaptureFixture[str]) -> None:
    detailed = DetailedCallback()
    m = CallbackManager([LoggingCallback(), detailed])
    _one_run(m)
    _one_run(m)
    out = capsys.readouterr().out
    assert "📤 Отправка: Привет!" in out and "📥 Получено: Сегодня" in out
    assert "🔧 Tool: weather({'city': 'Moscow'})" in out
    assert "🔍 Извлечено 1 элементов для: weather" in out
    assert "🔄 Ретрай 1/3: read timed out" in out
    assert detailed.summary() == {"calls": 2, "tokens": 100, "errors": 2}
    assert m.stats()["errors_total"] == 0


async def test_seed_async_callback_from_async_and_sync_code() -> None:
    cb = KeptAsyncLoggingCallback()
    m = CallbackManager([cb])
    rid = await m.aon_llm_start("Привет!")
    await m.aon_llm_end(LLMResponse("Здравствуйте!"), run_id=rid)
    m.on_llm_start("sync caller")
    assert cb.messages == [
        "Запуск: Привет!...",
        "Завершено: Здравствуйте!...",
        "Запуск: sync caller...",
    ]


def test_seed_async_callback_failure_is_isolated() -> None:
    m = CallbackManager([AsyncLoggingCallback(), DetailedCallback()])
    m.on_llm_start("x")
    assert m.stats()["errors"] == {"AsyncLoggingCallback.on_llm_start": 1}


def test_a_user_hook_in_five_lines() -> None:
    seen: list[Any] = []

    class Tokens(BaseCallback):
        def on_llm_end(self, response, **kwargs):  # type: ignore[no-untyped-def]
            seen.append((kwargs.get("user_id"), response.usage.total_tokens))

    CallbackManager([Tokens()]).on_llm_end(LLMResponse("a", usage=Usage(1, 1)), user_id="u")
    assert seen == [("u", 2)]
