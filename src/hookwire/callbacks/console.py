"""``ConsoleCallback``: a readable live view of what the application does, with ``rich``.

One line per run, LLM call, tool call, memory operation, retry and error, indented by
nesting, and a summary line when a run ends. Colours only on a terminal (and never with
``NO_COLOR`` set); long prompts and answers are shortened to one line; secrets are redacted.
Everything printed, streamed tokens included, goes through ``hookwire.terminal.visible``: an
escape sequence, carriage return or backspace in a prompt, an answer or an error is shown as
``\x1b``, ``\r``, ``\x08`` and never reaches the terminal as a control character.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import OrderedDict
from decimal import Decimal
from typing import IO, Any

import orjson
from rich.console import Console
from rich.text import Text

from ..errors import ConfigurationError
from ..masking import Mask, masked_text
from ..sampling import sample
from ..terminal import visible
from .base import BaseCallback

__all__ = ["ConsoleCallback"]

_MAX_OPEN_RUNS = 10_000

_UNICODE = {
    "run": "▶",
    "run_end": "■",
    "llm": "→",
    "llm_end": "←",
    "tool": "⚙",
    "tool_end": "✓",
    "fail": "✗",
    "memory": "◆",
    "retry": "↻",
    "budget": "⛔",
    "ellipsis": "…",
}
_ASCII = {
    "run": ">",
    "run_end": "#",
    "llm": "->",
    "llm_end": "<-",
    "tool": "*",
    "tool_end": "ok",
    "fail": "x",
    "memory": "+",
    "retry": "~",
    "budget": "!!",
    "ellipsis": "...",
}


def format_cost(cost: Decimal | float | None, currency: str = "USD") -> str:
    """A cost for people: ``$0.0012``; ``?`` when unknown (never ``0`` for unknown)."""
    if cost is None:
        return "$?" if currency == "USD" else f"? {currency}"
    d = Decimal(str(cost))
    text = f"{d:.6f}".rstrip("0").rstrip(".") if d else "0"
    if text in ("0", "-0") and d:
        text = f"{d:.2e}"
    return f"${text}" if currency == "USD" else f"{text} {currency}"


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, (list, tuple)) and prompt:
        last = prompt[-1]
        if isinstance(last, dict):
            content = last.get("content")
            if isinstance(content, list):  # content parts
                content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return str(content if content is not None else last)
        return str(last)
    return str(prompt)


def _s(n: int) -> str:
    return "" if n == 1 else "s"


class _RunState:
    __slots__ = ("calls", "cost", "name", "priced", "start", "tokens")

    def __init__(self, name: str, start: float) -> None:
        self.name = name
        self.start = start
        self.calls = 0
        self.tokens = 0
        self.cost = Decimal(0)
        self.priced = True


class ConsoleCallback(BaseCallback):
    """Prints events as they happen.

    ``verbose=False`` shows runs and errors only. ``show_tokens`` adds token counts (prompt
    -> completion, total) to LLM calls and runs; ``show_cost`` adds their cost (``$?`` when
    the price is unknown). Output goes to ``stream`` (stderr by default); colours are used
    only on a terminal and never when ``NO_COLOR`` is set (``color=True``/``False`` forces
    them on or off). ``max_text`` bounds how much of a prompt or answer is shown.
    ``show_stream=True`` also shows streamed answers live, as they arrive (up to
    ``max_text`` characters; a retried stream starts a new line marked with its attempt).

    Secrets are always redacted; ``mask`` also masks personal data in what is shown
    (``hookwire.masking``: a function, or ``True`` for ``mask_pii``; by default the
    process-wide one). ``sample_rate`` shows that fraction of traces, whole
    (``hookwire.sampling``; ``None``, the default, shows all); a trace with an error, a retry,
    a budget refusal or a call over ``keep_over_ms`` / ``keep_over_cost`` is shown whole all
    the same (its earlier events when that event comes).
    """

    name = "ConsoleCallback"

    def __init__(
        self,
        verbose: bool = True,
        show_tokens: bool = True,
        show_cost: bool = True,
        *,
        stream: IO[str] | None = None,
        max_text: int = 80,
        color: bool | None = None,
        show_stream: bool = False,
        mask: Mask = None,
        sample_rate: float | None = None,
        keep_over_ms: float | None = None,
        keep_over_cost: Decimal | float | None = None,
    ) -> None:
        if not isinstance(max_text, int) or max_text < 10:
            raise ConfigurationError(f"max_text must be at least 10 characters, not {max_text!r}")
        self.verbose = verbose
        self.show_tokens = show_tokens
        self.show_cost = show_cost
        self.max_text = max_text
        file = stream if stream is not None else sys.stderr
        if color is None and os.environ.get("NO_COLOR"):
            color = False  # https://no-color.org: no escape codes at all, not even bold
        self.console = Console(
            file=file,
            force_terminal=color,
            no_color=None if color is None else not color,
            highlight=False,
            markup=False,
            emoji=False,
            soft_wrap=True,
        )
        encoding = (getattr(file, "encoding", None) or "utf-8").lower().replace("-", "")
        self._sym = _UNICODE if encoding in ("utf8", "utf16", "utf32") else _ASCII
        self._runs: OrderedDict[str, _RunState] = OrderedDict()
        self._lock = threading.Lock()
        self._redact = masked_text(mask)
        # The stream being shown live: (run_id, attempt, characters shown).
        self._live: tuple[str, int, int] | None = None
        self.show_stream = show_stream and verbose
        if not self.show_stream:
            self.on_llm_new_token = BaseCallback.on_llm_new_token.__get__(self)  # type: ignore[method-assign]
        if not verbose:
            for hook in (
                "on_llm_start",
                "on_llm_end",
                "on_llm_error",
                "on_tool_start",
                "on_tool_end",
                "on_tool_error",
                "on_memory_store",
                "on_memory_recall",
                "on_retry",
            ):
                setattr(self, hook, getattr(BaseCallback, hook).__get__(self))
            # Runs still need their LLM calls counted for the summary line.
            self.on_llm_end = self._count_llm_end  # type: ignore[method-assign]
        self.sampler = sample(
            self, sample_rate, keep_over_ms=keep_over_ms, keep_over_cost=keep_over_cost
        )

    # -- formatting ---------------------------------------------------------------------------

    def _short(self, value: Any) -> str:
        text = " ".join(str(value).split())
        text = self._redact(text)
        if len(text) <= self.max_text:
            return text
        cut = self.max_text - 1
        return f"{text[:cut]}{self._sym['ellipsis']} (+{len(text) - cut} chars)"

    def _line(self, kwargs: dict[str, Any], extra_indent: int, *parts: tuple[str, str]) -> None:
        depth = int(kwargs.get("depth", 0) or 0) + extra_indent
        text = Text("  " * depth)
        for chunk, style in parts:
            text.append(visible(chunk), style=style or None)
        with self._lock:
            if self._live is not None:
                self._live = None
                self.console.file.write("\n")
            self.console.print(text)

    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        """Show a streamed token (only with ``show_stream=True``)."""
        run_id = str(kwargs.get("run_id"))
        attempt = int(kwargs.get("attempt", 1))
        indent = "  " * (int(kwargs.get("depth", 0) or 0) + 1)
        file = self.console.file
        with self._lock:
            live = self._live
            if live is None or live[0] != run_id or live[1] != attempt:
                if live is not None:
                    file.write("\n")
                again = live is not None and live[0] == run_id
                file.write(indent + (f"(attempt {attempt}) " if again else ""))
                live = (run_id, attempt, 0)
            shown = live[2]
            room = self.max_text - shown
            if room > 0:
                piece = self._redact(token)
                if not piece.isprintable():
                    # One line, as it arrives: line breaks become spaces, tabs stay, every
                    # other control character is shown escaped.
                    piece = visible(piece.replace("\r\n", " ").replace("\n", " "), keep="\t")
                if len(piece) > room:
                    piece = piece[:room] + self._sym["ellipsis"]
                file.write(piece)
                shown += len(piece)
            self._live = (run_id, attempt, shown)
            file.flush()

    def _usage_text(self, usage: Any) -> str:
        if usage is None:
            return ""
        p = getattr(usage, "prompt_tokens", 0)
        c = getattr(usage, "completion_tokens", 0)
        t = getattr(usage, "total_tokens", p + c)
        return f" · tokens {p}→{c} ({t})" if self._sym is _UNICODE else f" | tokens {p}->{c} ({t})"

    def _sep(self) -> str:
        return " · " if self._sym is _UNICODE else " | "

    @staticmethod
    def _json(value: Any) -> str:
        if isinstance(value, (dict, list)):
            try:
                return orjson.dumps(value, default=str).decode()
            except TypeError:
                return str(value)
        return str(value)

    @staticmethod
    def _ms(value: Any) -> str:
        v = float(value)
        return f"{v / 1000:.2f} s" if v >= 1000 else f"{v:.0f} ms"

    # -- runs -------------------------------------------------------------------------------

    def on_run_start(self, input: Any, **kwargs: Any) -> None:
        """Print a run's start."""
        name = str(kwargs.get("name") or "run")
        run_id = kwargs.get("run_id")
        if run_id is not None:
            with self._lock:
                self._runs[run_id] = _RunState(name, kwargs.get("timestamp", time.time()))
                if len(self._runs) > _MAX_OPEN_RUNS:
                    self._runs.popitem(last=False)
        parts: list[tuple[str, str]] = [
            (f"{self._sym['run']} ", "bold cyan"),
            (name, "bold cyan"),
        ]
        if input is not None:
            parts.append((f': "{self._short(_prompt_text(input))}"', ""))
        self._line(kwargs, 0, *parts)

    def on_run_end(self, output: Any, **kwargs: Any) -> None:
        """Print a run's summary: time, LLM calls, tokens, cost."""
        run_id = kwargs.get("run_id")
        with self._lock:
            state = self._runs.pop(run_id, None) if run_id is not None else None
        name = str(kwargs.get("name") or (state.name if state else "run"))
        error = kwargs.get("error")
        sep = self._sep()
        parts: list[tuple[str, str]] = [(f"{self._sym['run_end']} {name} ", "bold cyan")]
        if error is not None:
            parts.append((f"failed: {self._short(self._error_text(error))}", "bold red"))
        else:
            parts.append(("done", "bold green"))
        if state is not None:
            end = kwargs.get("timestamp", time.time())
            parts.append((f" in {self._ms((end - state.start) * 1000)}", ""))
            parts.append((f"{sep}{state.calls} LLM call{_s(state.calls)}", ""))
        usage = kwargs.get("usage")
        if self.show_tokens:
            if usage is not None:
                parts.append((f"{sep}tokens {getattr(usage, 'total_tokens', 0)}", "magenta"))
            elif state is not None:
                parts.append((f"{sep}tokens {state.tokens}", "magenta"))
        if self.show_cost:
            if "cost" in kwargs:
                cost: Decimal | None = kwargs["cost"]
            elif state is not None and state.calls:
                cost = state.cost if state.priced else None
            else:
                cost = None if state is None or state.calls else Decimal(0)
            parts.append((f"{sep}{format_cost(cost)}", "yellow"))
        if error is None and output is not None and self.verbose:
            parts.append((f': "{self._short(output)}"', ""))
        self._line(kwargs, 0, *parts)

    def _count_llm_end(self, response: Any, **kwargs: Any) -> None:
        parent = kwargs.get("parent_run_id")
        if parent is None:
            return
        with self._lock:
            state = self._runs.get(parent)
            if state is None:
                return
            state.calls += 1
            usage = getattr(response, "usage", None)
            state.tokens += int(getattr(usage, "total_tokens", 0) or 0)
            cost = getattr(response, "cost", None)
            if cost is None:
                state.priced = False
            else:
                state.cost += cost

    # -- LLM calls ----------------------------------------------------------------------------

    def on_llm_start(self, prompt: Any, **kwargs: Any) -> None:
        """Print the model and the (shortened) last message of the prompt."""
        model = kwargs.get("model") or "llm"
        stream = " (stream)" if kwargs.get("stream") else ""
        self._line(
            kwargs,
            0,
            (f"{self._sym['llm']} ", "blue"),
            (f"{model}{stream}", "bold blue"),
            (f': "{self._short(_prompt_text(prompt))}"', ""),
        )

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        """Print latency, tokens, cost and the (shortened) answer."""
        self._count_llm_end(response, **kwargs)
        model = kwargs.get("model") or getattr(response, "model", None) or "llm"
        sep = self._sep()
        parts: list[tuple[str, str]] = [
            (f"{self._sym['llm_end']} ", "green"),
            (str(model), "bold green"),
        ]
        if "latency_ms" in kwargs:
            parts.append((f"{sep}{self._ms(kwargs['latency_ms'])}", ""))
        if "ttft_ms" in kwargs:
            parts.append((f" (first token {self._ms(kwargs['ttft_ms'])})", "dim"))
        attempts = kwargs.get("attempts")
        if isinstance(attempts, int) and attempts > 1:
            parts.append((f"{sep}{attempts} attempts", "yellow"))
        if self.show_tokens:
            parts.append((self._usage_text(getattr(response, "usage", None)), "magenta"))
        if self.show_cost:
            cost = getattr(response, "cost", None)
            parts.append(
                (f"{sep}{format_cost(cost, getattr(response, 'currency', 'USD'))}", "yellow")
            )
        content = getattr(response, "content", response)
        tool_calls = getattr(response, "tool_calls", ())
        if tool_calls:
            names = ", ".join(getattr(t, "name", "?") for t in tool_calls)
            parts.append((f"{sep}calls {names}", "cyan"))
        if content:
            parts.append((f': "{self._short(content)}"', ""))
        self._line(kwargs, 0, *parts)

    @staticmethod
    def _error_text(error: Any) -> str:
        if isinstance(error, BaseException):
            return f"{type(error).__name__}: {error}"
        return str(error)

    def _failure(self, kwargs: dict[str, Any], extra_indent: int, label: str, error: Any) -> None:
        """A failure's line: ``label`` in bold red, then the error (a text: as it is)."""
        self._line(
            kwargs, extra_indent, (label, "bold red"), (self._short(self._error_text(error)), "red")
        )

    def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
        """Print a failed LLM call."""
        model = kwargs.get("model") or "llm"
        attempts = kwargs.get("attempts")
        after = f" after {attempts} attempts" if isinstance(attempts, int) and attempts > 1 else ""
        self._failure(kwargs, 0, f"{self._sym['fail']} {model} failed{after}: ", error)

    # -- tools and memory ---------------------------------------------------------------------

    def on_tool_start(self, tool_name: str, tool_input: Any, **kwargs: Any) -> None:
        """Print a tool call and its (shortened) arguments."""
        self._line(
            kwargs,
            1,
            (f"{self._sym['tool']} ", "cyan"),
            (str(tool_name), "bold cyan"),
            (f"({self._short(self._json(tool_input))})", ""),
        )

    def on_tool_end(self, tool_name: str, tool_output: Any, **kwargs: Any) -> None:
        """Print a tool's (shortened) result."""
        latency = f" {self._ms(kwargs['latency_ms'])}" if "latency_ms" in kwargs else ""
        self._line(
            kwargs,
            1,
            (f"{self._sym['tool_end']} ", "green"),
            (str(tool_name), "bold green"),
            (f'{latency}: "{self._short(tool_output)}"', ""),
        )

    def on_tool_error(self, tool_name: str, error: BaseException, **kwargs: Any) -> None:
        """Print a tool's failure."""
        self._failure(kwargs, 1, f"{self._sym['fail']} {tool_name} failed: ", error)

    def on_memory_store(self, content: Any, **kwargs: Any) -> None:
        """Print what was stored."""
        self._line(
            kwargs,
            0,
            (f"{self._sym['memory']} memory store", "magenta"),
            (f': "{self._short(content)}"', ""),
        )

    def on_memory_recall(self, query: Any, results: Any, **kwargs: Any) -> None:
        """Print a memory search and how many results it gave."""
        try:
            n = len(results)
        except TypeError:
            n = 0
        self._line(
            kwargs,
            0,
            (f"{self._sym['memory']} memory recall", "magenta"),
            (f': "{self._short(query)}" {self._sym["llm_end"]} {n} result{_s(n)}', ""),
        )

    # -- retries and errors -------------------------------------------------------------------

    def on_retry(
        self, attempt: int, max_attempts: int, error: BaseException, **kwargs: Any
    ) -> None:
        """Print a retry: which attempt failed, why, and the wait before the next."""
        delay = kwargs.get("delay")
        wait = f" (next in {float(delay):.2f} s)" if delay is not None else ""
        self._line(
            kwargs,
            0,
            (f"{self._sym['retry']} retry {attempt}/{max_attempts}: ", "yellow"),
            (f"{self._short(self._error_text(error))}{wait}", ""),
        )

    def on_error(self, error: BaseException, **kwargs: Any) -> None:
        """Print an error with its stage (always, also when not verbose)."""
        stage = kwargs.get("stage")
        where = f" [{stage}]" if stage else ""
        self._failure(kwargs, 0, f"{self._sym['fail']} error{where}: ", error)

    def on_budget_exceeded(self, error: BaseException, **kwargs: Any) -> None:
        """Print a refused call (always)."""
        self._failure(kwargs, 0, f"{self._sym['budget']} budget exceeded: ", str(error))
