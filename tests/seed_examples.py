"""The seed's handler classes (rlm-toolkit-callbacks.md), verbatim but for the import.

Shared by the tests that run the seed's examples: without an LLM (test_seeds_core) and
through the runners (test_seeds_runtime).
"""

from __future__ import annotations

import time

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
