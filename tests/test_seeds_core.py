"""The seed examples that need no LLM, with only their imports changed to hookwire.

The handler classes below are the seed's text (rlm-toolkit-callbacks.md), verbatim but for
the import; they are driven through a CallbackManager as a runner would drive them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from hookwire import CallbackManager, LLMResponse, Usage
from hookwire.callbacks import AsyncBaseCallback, BaseCallback


class LoggingCallback(BaseCallback):
    def on_llm_start(self, prompt, **kwargs):  # type: ignore[no-untyped-def]
        print(f"📤 Отправка: {prompt[:50]}...")

    def on_llm_end(self, response, **kwargs):  # type: ignore[no-untyped-def]
        print(f"📥 Получено: {response.content[:50]}...")

    def on_error(self, error, **kwargs):  # type: ignore[no-untyped-def]
        print(f"❌ Ошибка: {error}")


class DetailedCallback(BaseCallback):
    def __init__(self):  # type: ignore[no-untyped-def]
        self.call_count = 0
        self.total_tokens = 0
        self.errors = []
        self.start_time = None

    def on_llm_start(self, prompt, **kwargs):  # type: ignore[no-untyped-def]
        self.start_time = time.time()
        self.call_count += 1
        print(f"[{self.call_count}] Запуск LLM вызова...")

    def on_llm_end(self, response, **kwargs):  # type: ignore[no-untyped-def]
        duration = time.time() - self.start_time
        tokens = response.usage.total_tokens
        self.total_tokens += tokens
        print(f"[{self.call_count}] Завершено за {duration:.2f}s ({tokens} токенов)")

    def on_tool_start(self, tool_name, tool_input, **kwargs):  # type: ignore[no-untyped-def]
        print(f"🔧 Tool: {tool_name}({tool_input})")

    def on_tool_end(self, tool_name, tool_output, **kwargs):  # type: ignore[no-untyped-def]
        print(f"✅ Результат tool: {tool_output[:100]}...")

    def on_memory_store(self, content, **kwargs):  # type: ignore[no-untyped-def]
        print(f"💾 Сохранено: {content[:50]}...")

    def on_memory_recall(self, query, results, **kwargs):  # type: ignore[no-untyped-def]
        print(f"🔍 Извлечено {len(results)} элементов для: {query}")

    def on_error(self, error, **kwargs):  # type: ignore[no-untyped-def]
        self.errors.append(str(error))
        print(f"❌ Ошибка: {error}")

    def on_retry(self, attempt, max_attempts, error, **kwargs):  # type: ignore[no-untyped-def]
        print(f"🔄 Ретрай {attempt}/{max_attempts}: {error}")

    def summary(self):  # type: ignore[no-untyped-def]
        return {"calls": self.call_count, "tokens": self.total_tokens, "errors": len(self.errors)}


class AsyncLoggingCallback(AsyncBaseCallback):
    async def on_llm_start(self, prompt, **kwargs):  # type: ignore[no-untyped-def]
        await self.log_async(f"Запуск: {prompt[:50]}...")

    async def on_llm_end(self, response, **kwargs):  # type: ignore[no-untyped-def]
        await self.log_async(f"Завершено: {response.content[:50]}...")

    async def log_async(self, message):  # type: ignore[no-untyped-def]
        # The seed posts to an external logging service with aiohttp; tests reach no network,
        # so the subclass below keeps the messages instead.
        raise NotImplementedError


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
