"""The seed's built-in handlers, end to end through a runner.

Each example runs as the seed writes it (imports changed to hookwire): offline on
``RLM.from_local`` and online through the real ``openai`` SDK against ``OpenAIServer``.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hookwire import RLM
from hookwire.callbacks import (
    ConsoleCallback,
    FileLogCallback,
    MetricsCallback,
    StreamingCallback,
)
from hookwire.cli import app
from hookwire.logschema import parse_line
from hookwire.report import summarize
from hookwire.testing.openai_server import Drop, ErrorReply, OpenAIServer, Reply


def _fast_retries(rlm: RLM) -> None:
    rlm.llm.retry = rlm.llm.retry.from_retries(2, initial=0, jitter=0)  # type: ignore[attr-defined]


def test_console_callback(make_rlm: Callable[..., RLM], capsys: pytest.CaptureFixture[str]) -> None:
    callback = ConsoleCallback(verbose=True, show_tokens=True, show_cost=True)
    rlm = make_rlm([callback])
    result = rlm.run("Привет!")
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines[0] == '▶ rlm: "Привет!"'
    assert lines[1].startswith("  → gpt-4o")
    llm_end = lines[2]
    assert llm_end.startswith("  ← gpt-4o · ")
    usage = result.usage
    assert f"tokens {usage.prompt_tokens}→{usage.completion_tokens} ({usage.total_tokens})" in (
        llm_end
    )
    assert "$" in llm_end  # a price, or "$?" when unknown: never "$0" for unknown
    if result.cost is None:
        assert "$?" in llm_end
    assert lines[-1].startswith("■ rlm done in ")
    assert "1 LLM call" in lines[-1]
    assert "\x1b[" not in err  # captured, so not a terminal: plain text


def test_streaming_callback(
    make_rlm: Callable[..., RLM], capsys: pytest.CaptureFixture[str]
) -> None:
    def print_token(token: str) -> None:
        print(token, end="", flush=True)

    callback = StreamingCallback(on_token=print_token)
    rlm = make_rlm([callback])
    result = rlm.run("Привет!")
    assert capsys.readouterr().out == str(result)


def test_streaming_is_not_replayed_when_a_stream_is_retried(
    rlm_server: OpenAIServer | None, make_rlm: Callable[..., RLM]
) -> None:
    seen: list[str] = []
    callback = StreamingCallback(on_token=seen.append)
    if rlm_server is None:
        rlm = make_rlm([callback], fail_times=1, failure="stream")
    else:
        answer = "one two three four five"
        rlm_server.script(Drop(after=2, text=answer), Reply(answer))
        rlm = make_rlm([callback])
    _fast_retries(rlm)
    result = rlm.run("count for me")
    assert result.responses[-1].content == str(result)
    assert "".join(seen) == str(result)  # the restarted text is not shown twice


def test_a_retried_stream_that_says_something_else_is_reset(
    openai_server: OpenAIServer,
) -> None:
    # Online only: the local model answers the same text on every attempt.
    seen: list[str] = []
    resets: list[int] = []
    callback = StreamingCallback(on_token=seen.append, on_reset=resets.append)
    openai_server.script(Drop(after=2, text="first try was cut"), Reply("second try is whole"))
    rlm = RLM.from_openai(
        "gpt-4o", callbacks=[callback], base_url=openai_server.base_url, api_key="sk-test"
    )
    _fast_retries(rlm)
    result = rlm.run("hello")
    rlm.llm.close()  # type: ignore[attr-defined]
    assert resets == [2]
    # What the caller shows after the reset is exactly the final answer.
    after_reset = "".join(seen)[len("first try ") :]
    assert after_reset == str(result) == "second try is whole"


def test_metrics_callback(make_rlm: Callable[..., RLM]) -> None:
    callback = MetricsCallback()
    rlm = make_rlm([callback])
    r1 = rlm.run("Запрос 1")
    r2 = rlm.run("Запрос 2")
    metrics = callback.get_metrics()
    print(f"Всего вызовов: {metrics['total_calls']}")
    print(f"Всего токенов: {metrics['total_tokens']}")
    print(f"Средняя латентность: {metrics['avg_latency_ms']}ms")
    assert metrics["total_calls"] == 2
    assert metrics["total_tokens"] == r1.usage.total_tokens + r2.usage.total_tokens
    assert metrics["prompt_tokens"] == r1.usage.prompt_tokens + r2.usage.prompt_tokens
    assert metrics["avg_latency_ms"] > 0
    assert metrics["p95_latency_ms"] is not None
    assert metrics["by_model"]["gpt-4o"]["total_calls"] == 2
    assert metrics["errors"] == 0
    if r1.cost is None:
        assert metrics["total_cost"] is None


def test_metrics_count_retries_and_time_to_first_token(
    rlm_server: OpenAIServer | None, make_rlm: Callable[..., RLM]
) -> None:
    callback = MetricsCallback()
    if rlm_server is None:
        rlm = make_rlm([callback, StreamingCallback()], fail_times=1)
    else:
        rlm_server.script(ErrorReply(429, retry_after=0), Reply("fine"))
        rlm = make_rlm([callback, StreamingCallback()])
    _fast_retries(rlm)
    rlm.run("hello")
    metrics = callback.get_metrics()
    assert metrics["retries"] == 1
    assert metrics["total_calls"] == 1
    assert metrics["streamed_calls"] == 1
    assert metrics["avg_ttft_ms"] is not None


def test_file_log_callback_and_report(
    make_rlm: Callable[..., RLM], monkeypatch: pytest.MonkeyPatch
) -> None:
    callback = FileLogCallback(
        log_path="./logs/rlm.jsonl", include_prompts=True, include_responses=True
    )
    rlm = make_rlm([callback])
    r1 = rlm.run("Запрос 1")
    rlm.run("Запрос 2")
    rlm.callbacks.flush()
    recs = [parse_line(line) for line in Path("logs/rlm.jsonl").read_bytes().splitlines()]
    events = [r["event"] for r in recs]
    assert events.count("run_start") == events.count("run_end") == 2
    assert events.count("llm_start") == events.count("llm_end") == 2
    first_run = [r for r in recs if r.get("trace_id", r["run_id"]) == r1.trace_id]
    assert [r["event"] for r in first_run] == ["run_start", "llm_start", "llm_end", "run_end"]
    llm_end = first_run[2]
    assert llm_end["model"] == "gpt-4o"
    assert llm_end["data"]["response"]["content"] == str(r1)
    assert llm_end["data"]["response"]["usage"]["total_tokens"] == r1.usage.total_tokens
    assert llm_end["latency_ms"] > 0
    text = Path("logs/rlm.jsonl").read_text()
    assert "sk-test-0123456789abcdefghij" not in text  # the API key never reaches the log
    report = summarize(["logs/rlm.jsonl"])
    assert report.groups["gpt-4o"].calls == 2
    assert report.broken == 0
    result = CliRunner().invoke(app, ["report", "logs/rlm.jsonl", "--json"])
    assert result.exit_code == 0, result.output


def test_combined_callbacks(
    make_rlm: Callable[..., RLM], capsys: pytest.CaptureFixture[str]
) -> None:
    callbacks = [
        ConsoleCallback(verbose=True),
        MetricsCallback(),
        FileLogCallback(log_path="./session.jsonl"),
    ]
    rlm = make_rlm(callbacks)
    result = rlm.run("Привет!")
    rlm.callbacks.flush()
    assert "■ rlm done" in capsys.readouterr().err
    assert callbacks[1].get_metrics()["total_calls"] == 1
    lines = Path("session.jsonl").read_bytes().splitlines()
    assert parse_line(lines[-1])["event"] == "run_end"
    assert parse_line(lines[-1])["data"]["output"] == str(result)


async def test_token_iterator_for_a_web_handler(make_rlm: Callable[..., RLM]) -> None:
    callback = StreamingCallback()
    rlm = make_rlm([callback])
    stream = callback.stream()
    task = asyncio.create_task(rlm.arun("stream this please"))
    sse = [f"data: {token}\n\n" async for token in stream]
    result = await task
    aclose = getattr(rlm.llm, "aclose", None)
    if aclose is not None:
        await aclose()  # in the loop that opened its connections
    assert "".join(s[len("data: ") : -2] for s in sse) == str(result)
    assert stream.error is None


def test_report_summarises_the_demo_log(tmp_path: Path) -> None:
    from hookwire.demo import run_demo

    out = io.StringIO()
    run_demo(tmp_path / "demo", out=out)
    report = summarize([tmp_path / "demo" / "hookwire.jsonl"])
    assert report.broken == 0
    (group,) = report.groups.values()
    assert group.calls == 7
    assert group.retries == 1
    assert group.errors == 0
    result = CliRunner().invoke(app, ["report", str(tmp_path / "demo" / "hookwire.jsonl")])
    assert result.exit_code == 0
    assert "local-support" in result.stdout
