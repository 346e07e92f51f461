"""``RLM``: a (recursive) language-model runner that emits every event.

``RLM(llm, callbacks=..., tools=..., memory=..., max_retries=..., system_prompt=...)``, or
``RLM.from_openai("gpt-4o", callbacks=[...])`` / ``RLM.from_local()``. Each ``run`` is a run
(``hookwire.trace`` named ``"rlm"``): ``on_run_start(prompt)``, then memory recall, the model
call(s) and the tool loop, memory store, and ``on_run_end(answer, usage=..., cost=...,
model=...)``; everything inside carries the run's ``parent_run_id`` and ``trace_id``.

The *recursive* part: a run may call the model again from inside itself. With
``sub_queries=True`` the model is offered a built-in ``llm_query(prompt)`` tool; tools may call
``rlm.sub_query(prompt)`` themselves. A sub-query is a nested run (``"rlm.sub_query"``), so its
LLM events have depth 2 and the outer run's ``trace_id``.

A run streams from the model whenever a handler listens for tokens; ``stream()`` /
``astream()`` also yield the answer's tokens to the caller. The result is the same either way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .context import Run
from .dispatch import CallbackManager, Callbacks
from .drain import adrain, drain
from .errors import ConfigurationError, MaxStepsExceeded
from .events import LLMResponse, Usage
from .llms.protocol import LLM
from .llms.retry import RetryPolicy
from .memory import BaseMemory
from .tools import Tool, arun_tool, as_tools, run_tool
from .tracing import trace

__all__ = ["RLM", "RunResult"]

MEMORY_PREFIX = "Relevant memory:"


@dataclass
class RunResult:
    """What a run returned: ``str(result)`` is the answer.

    ``usage`` and ``cost`` are summed over the run's LLM calls (``cost`` is ``None`` when a
    price is unknown); ``messages`` is the conversation as sent to the model, answer
    included; ``responses`` are the LLM calls' responses, in order.
    """

    content: str
    usage: Usage
    cost: Decimal | None
    run_id: str
    trace_id: str
    model: str | None
    messages: list[dict[str, Any]]
    responses: list[LLMResponse] = field(default_factory=list)
    steps: int = 1

    def __str__(self) -> str:
        return self.content

    @property
    def text(self) -> str:
        """The answer (the same as ``content``)."""
        return self.content


_NO_USAGE = Usage()
_ZERO = Decimal(0)


class _Tally:
    """Usage and cost summed over a run's LLM calls."""

    __slots__ = ("cost", "model", "responses", "unknown_cost", "usage")

    def __init__(self) -> None:
        self.usage = _NO_USAGE
        self.cost: Decimal | None = None
        self.unknown_cost = False
        self.model: str | None = None
        self.responses: list[LLMResponse] = []

    def add(self, response: LLMResponse) -> None:
        responses = self.responses
        responses.append(response)
        cost = response.cost
        if len(responses) == 1:
            # The first call's figures are the sums so far (Usage is immutable: shared, not
            # copied).
            self.usage = response.usage
            self.model = response.model or None
            if cost is None:
                self.unknown_cost = True
            else:
                self.cost = _ZERO + cost  # as a sum, rounded in the same context
            return
        self.usage = self.usage + response.usage
        self.model = response.model or self.model
        if cost is None:
            self.unknown_cost = True
        else:
            self.cost = (self.cost or Decimal(0)) + cost

    def total_cost(self) -> Decimal | None:
        return None if self.unknown_cost else self.cost

    def result(self, answer: str, run: Run, messages: list[dict[str, Any]]) -> RunResult:
        """The run's result, from what the tally has summed."""
        # Positional (content, usage, cost, run_id, trace_id, model, messages, responses,
        # steps): keywords to a class cost a dict per call.
        return RunResult(
            answer,
            self.usage,
            None if self.unknown_cost else self.cost,
            run.run_id,
            run.trace_id,
            self.model,
            messages,
            self.responses,
            len(self.responses),
        )

    def end_kw(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"usage": self.usage}
        cost = None if self.unknown_cost else self.cost
        if cost is not None:
            kw["cost"] = cost
        if self.model is not None:
            kw["model"] = self.model
        return kw


Msg = dict[str, Any]

#: What the run loop asks its driver to do (the first item says what; see ``RLM._perform``):
#: ``(_LLM, messages, keywords)`` call the model; ``(_TOOL, tools, call)`` run a tool;
#: ``(_MEMORY, memory, method, args)`` call the memory (``a`` + method when async);
#: ``(_EMIT, hook, args, keywords)`` send an event to the runner's callbacks.
_Op = tuple[Any, ...]
#: ``(_DONE, answer, messages)`` ends the run.
_LLM, _TOOL, _MEMORY, _EMIT, _DONE = "llm", "tool", "memory", "emit", "done"

_EMPTY: Mapping[str, Any] = {}
_SUB_QUERY = "rlm.sub_query"


@dataclass(slots=True, eq=False)
class _Job:
    """What one run is asked: its prompt, history, request context, name, system prompt and
    tools (``None`` for a sub-query: no tools, no memory, the first answer is the answer)."""

    prompt: str
    history: Sequence[Mapping[str, Any]]
    context: Mapping[str, Any]
    name: str
    system: str | None
    tools: Mapping[str, Tool] | None = None


class RLM:
    """A model runner with callbacks, tools, memory, retries and streaming.

    ``llm`` is any ``hookwire.llms.LLM`` (``OpenAIClient``, ``LocalLLM``, ...). ``callbacks``
    (a list of handlers or a ``CallbackManager``) receive every event of every run.
    ``tools`` are ``@hookwire.tool`` functions (or plain typed functions); ``max_steps``
    bounds the tool loop (``MaxStepsExceeded``). ``memory`` is recalled before the model call
    and stores each exchange. ``max_retries`` overrides the client's retry count.
    ``system_prompt`` opens every conversation. ``sub_queries=True`` offers the model the
    built-in ``llm_query`` tool. Other keywords (``temperature=...``) go with every call.
    """

    def __init__(
        self,
        llm: LLM,
        *,
        callbacks: Callbacks = None,
        tools: Sequence[Any] = (),
        memory: BaseMemory | None = None,
        max_retries: int | None = None,
        system_prompt: str | None = None,
        max_steps: int = 8,
        model: str | None = None,
        name: str = "rlm",
        sub_queries: bool = False,
        memory_results: int = 3,
        **params: Any,
    ) -> None:
        if not hasattr(llm, "generate") or not hasattr(llm, "agenerate"):
            raise ConfigurationError(
                f"llm must be a hookwire LLM client (OpenAIClient, LocalLLM, ...), not {llm!r}"
            )
        if not isinstance(max_steps, int) or max_steps < 1:
            raise ConfigurationError(f"max_steps must be an int >= 1, not {max_steps!r}")
        self.llm = llm
        self.callbacks = CallbackManager.ensure(callbacks)
        self.memory = memory
        self.system_prompt = system_prompt
        self.max_steps = max_steps
        self.model = model
        self.name = name
        self.memory_results = memory_results
        self.params = params
        self.retry = RetryPolicy.from_retries(max_retries) if max_retries is not None else None
        tool_list = list(tools)
        if sub_queries:
            tool_list.append(self._llm_query_tool())
        self.tools: dict[str, Tool] = as_tools(tool_list)
        #: The result of the last finished run (also after ``stream()``).
        self.last_result: RunResult | None = None

    # -- constructors ---------------------------------------------------------------------------

    @classmethod
    def from_openai(
        cls,
        model: str = "gpt-4o-mini",
        *,
        callbacks: Callbacks = None,
        api_key: str | None = None,
        base_url: str | None = None,
        organization: str | None = None,
        tools: Sequence[Any] = (),
        memory: BaseMemory | None = None,
        max_retries: int = 2,
        system_prompt: str | None = None,
        max_steps: int = 8,
        sub_queries: bool = False,
        **client_options: Any,
    ) -> RLM:
        """An RLM on an OpenAI-compatible server (``OPENAI_API_KEY`` / ``OPENAI_BASE_URL``
        are used when ``api_key`` / ``base_url`` are not given). ``client_options`` go to
        ``OpenAIClient`` (``timeout``, ``provider``, ``temperature``, ...)."""
        from .llms import OpenAIClient

        llm = OpenAIClient(
            api_key=api_key,
            organization=organization,
            base_url=base_url,
            model=model,
            max_retries=max_retries,
            **client_options,
        )
        return cls(
            llm,
            callbacks=callbacks,
            tools=tools,
            memory=memory,
            system_prompt=system_prompt,
            max_steps=max_steps,
            sub_queries=sub_queries,
        )

    @classmethod
    def from_local(
        cls,
        model: str = "local-echo",
        *,
        callbacks: Callbacks = None,
        rules: Sequence[tuple[str, str]] = (),
        fail_times: int = 0,
        failure: str = "rate_limit",
        token_delay: float = 0.0,
        tools: Sequence[Any] = (),
        memory: BaseMemory | None = None,
        max_retries: int = 2,
        system_prompt: str | None = None,
        max_steps: int = 8,
        sub_queries: bool = False,
    ) -> RLM:
        """An RLM on the offline ``LocalLLM`` (no network; see ``hookwire.llms.local``)."""
        from .llms import LocalLLM

        llm = LocalLLM(
            model,
            rules=rules,
            fail_times=fail_times,
            failure=failure,
            token_delay=token_delay,
            max_retries=max_retries,
        )
        return cls(
            llm,
            callbacks=callbacks,
            tools=tools,
            memory=memory,
            system_prompt=system_prompt,
            max_steps=max_steps,
            sub_queries=sub_queries,
        )

    # -- public API -----------------------------------------------------------------------------

    def run(
        self, prompt: str, *, history: Sequence[Mapping[str, Any]] = (), **context: Any
    ) -> RunResult:
        """Answer ``prompt``; ``context`` sets request context (``user_id=...``, ...).

        ``history`` is the conversation so far (chat message dicts), sent before the prompt.
        """
        job = _Job(self._check_prompt(prompt), history, context, self.name, None, self.tools)
        return drain(self._drive(job, deliver=False), RunResult)

    async def arun(
        self, prompt: str, *, history: Sequence[Mapping[str, Any]] = (), **context: Any
    ) -> RunResult:
        """``run`` for asyncio."""
        job = _Job(self._check_prompt(prompt), history, context, self.name, None, self.tools)
        return await adrain(self._adrive(job, deliver=False), RunResult)

    def stream(
        self, prompt: str, *, history: Sequence[Mapping[str, Any]] = (), **context: Any
    ) -> Iterator[str]:
        """Yield the answer's tokens as they arrive; the full result is then ``last_result``."""
        job = _Job(self._check_prompt(prompt), history, context, self.name, None, self.tools)
        for item in self._drive(job, deliver=True):
            if type(item) is str:
                yield item

    async def astream(
        self, prompt: str, *, history: Sequence[Mapping[str, Any]] = (), **context: Any
    ) -> AsyncIterator[str]:
        """``stream`` for asyncio."""
        job = _Job(self._check_prompt(prompt), history, context, self.name, None, self.tools)
        async for item in self._adrive(job, deliver=True):
            if type(item) is str:
                yield item

    def sub_query(self, prompt: str, *, system: str | None = None) -> str:
        """Ask the model ``prompt`` from inside a run, as a nested run (no tools, no memory).

        Its LLM events carry the outer run's ``trace_id`` and one more level of ``depth``.
        Outside a run it is a run of its own.
        """
        job = _Job(prompt, (), _EMPTY, _SUB_QUERY, system)
        return drain(self._drive(job, deliver=False), RunResult).content

    async def asub_query(self, prompt: str, *, system: str | None = None) -> str:
        """``sub_query`` for asyncio."""
        job = _Job(prompt, (), _EMPTY, _SUB_QUERY, system)
        return (await adrain(self._adrive(job, deliver=False), RunResult)).content

    # -- the run loop -----------------------------------------------------------------------------

    def _loop(self, job: _Job, tally: _Tally) -> Generator[_Op, Any, None]:
        """One run: memory recall, model calls and tool rounds, memory store; its last step
        is ``(_DONE, answer, messages)``.

        It does no I/O: it yields each step as an ``_Op`` and the driver (``_drive``, sync, or
        ``_adrive``, async) performs it and sends back its outcome, or throws in its exception.
        """
        prompt = self._check_prompt(job.prompt)
        memory = None if job.tools is None else self.memory  # a sub-query has none
        recalled: list[str] = []
        if memory is not None:
            found = yield from self._memory_op(memory, "search", (prompt, self.memory_results))
            recalled = found or []
        messages = self._opening(job.system)
        if job.history:
            messages.extend(dict(m) for m in job.history)
        if recalled:
            messages.append(
                {"role": "system", "content": f"{MEMORY_PREFIX} " + " | ".join(recalled)}
            )
        messages.append({"role": "user", "content": prompt})
        llm_op = (_LLM, messages, self._call_kw(job.tools))
        step = 1
        while True:
            response: LLMResponse = yield llm_op
            tally.add(response)
            messages.append(self._assistant_message(response))
            if not response.tool_calls or job.tools is None:
                break
            if step == self.max_steps:
                # No step is left to give the model the tools' results: don't run them.
                error = self._too_many_steps()
                yield (_EMIT, "on_error", (error,), {"stage": "run"})
                raise error
            for call in response.tool_calls:
                output = yield (_TOOL, job.tools, call)
                messages.append(
                    {"role": "tool", "tool_call_id": call.id, "name": call.name, "content": output}
                )
            step += 1
        answer = response.content
        if memory is not None:
            yield from self._memory_op(memory, "add", (f"User: {prompt}\nAssistant: {answer}",))
        yield (_DONE, answer, messages)

    @staticmethod
    def _memory_op(
        memory: BaseMemory, method: str, args: tuple[Any, ...]
    ) -> Generator[_Op, Any, list[str] | None]:
        """``memory.search(query, k)`` (its results) or ``memory.add(content)``, with its event;
        a failure is an ``on_error(stage="memory")`` and ``None``: memory never fails a run."""
        kind = type(memory).__name__
        try:
            found = yield (_MEMORY, memory, method, args)
        except Exception as exc:
            yield (_EMIT, "on_error", (exc,), {"stage": "memory", "memory": kind})
            return None
        if method == "search":
            yield (_EMIT, "on_memory_recall", (args[0], list(found)), {"memory": kind})
            return found  # type: ignore[no-any-return]
        yield (_EMIT, "on_memory_store", args, {"memory": kind})
        return None

    # -- its drivers: the same steps, sync and async (mirrors, name for name) ---------------------

    def _drive(self, job: _Job, deliver: bool) -> Iterator[str | RunResult]:
        """Run ``job`` in a ``trace``, performing the loop's steps: yields the answer's tokens
        (when ``deliver``), then the result."""
        tr = trace(job.name, callbacks=self.callbacks, input=job.prompt, **job.context)
        tally = _Tally()
        with tr as run:
            try:
                loop = self._loop(job, tally)
                op: _Op = next(loop)
                while op[0] is not _DONE:
                    try:
                        if op[0] is _LLM and deliver:
                            outcome: Any = None
                            for item in self.llm.stream(op[1], **op[2]):
                                if type(item) is str:
                                    yield item
                                else:
                                    outcome = item
                        else:
                            outcome = self._perform(op)
                    except GeneratorExit:
                        raise
                    except BaseException as exc:
                        op = loop.throw(exc)
                    else:
                        op = loop.send(outcome)
                _, answer, messages = op
                next(loop, None)  # the loop's end: it returns, nothing to raise
                run.output = answer
            finally:
                run.end_keywords = tally.end_kw()
        yield self._finished(job, tally.result(answer, run, messages))

    async def _adrive(self, job: _Job, deliver: bool) -> AsyncIterator[str | RunResult]:
        """``_drive`` for asyncio: yields the tokens (when ``deliver``), then the result."""
        tr = trace(job.name, callbacks=self.callbacks, input=job.prompt, **job.context)
        tally = _Tally()
        async with tr as run:
            try:
                loop = self._loop(job, tally)
                op: _Op = next(loop)
                while op[0] is not _DONE:
                    try:
                        if op[0] is _LLM and deliver:
                            outcome: Any = None
                            async for item in self.llm.astream(op[1], **op[2]):
                                if type(item) is str:
                                    yield item
                                else:
                                    outcome = item
                        else:
                            outcome = await self._aperform(op)
                    except GeneratorExit:
                        raise
                    except BaseException as exc:
                        op = loop.throw(exc)
                    else:
                        op = loop.send(outcome)
                _, answer, messages = op
                next(loop, None)  # the loop's end: it returns, nothing to raise
                run.output = answer
            finally:
                run.end_keywords = tally.end_kw()
        yield self._finished(job, tally.result(answer, run, messages))

    def _perform(self, op: _Op) -> Any:
        kind = op[0]
        if kind is _LLM:
            return self.llm.generate(op[1], **op[2])
        if kind is _TOOL:
            return run_tool(op[1], op[2], self.callbacks)
        if kind is _MEMORY:
            return getattr(op[1], op[2])(*op[3])
        return getattr(self.callbacks, op[1])(*op[2], **op[3])

    async def _aperform(self, op: _Op) -> Any:
        kind = op[0]
        if kind is _LLM:
            return await self.llm.agenerate(op[1], **op[2])
        if kind is _TOOL:
            return await arun_tool(op[1], op[2], self.callbacks)
        if kind is _MEMORY:
            return await getattr(op[1], "a" + op[2])(*op[3])
        return await getattr(self.callbacks, "a" + op[1])(*op[2], **op[3])

    def _finished(self, job: _Job, result: RunResult) -> RunResult:
        if job.tools is not None:  # a run, not a sub-query
            self.last_result = result
        return result

    # -- internals ------------------------------------------------------------------------------

    def _llm_query_tool(self) -> Tool:
        def llm_query(prompt: str) -> str:
            """Ask the language model a sub-question and get its answer as text.

            Args:
                prompt: the self-contained question to ask.
            """
            return self.sub_query(prompt)

        return Tool(llm_query, nested=False)

    def _opening(self, system: str | None = None) -> list[Msg]:
        text = system if system is not None else self.system_prompt
        return [{"role": "system", "content": text}] if text else []

    def _call_kw(self, tools: Mapping[str, Tool] | None) -> dict[str, Any]:
        kw: dict[str, Any] = dict(self.params)
        kw["callbacks"] = self.callbacks
        if self.model is not None:
            kw["model"] = self.model
        if self.retry is not None:
            kw["retry"] = self.retry
        if tools:
            kw["tools"] = list(tools.values())
        return kw

    @staticmethod
    def _assistant_message(response: LLMResponse) -> Msg:
        msg: Msg = {"role": "assistant", "content": response.content or None}
        if response.tool_calls:
            msg["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in response.tool_calls
            ]
        return msg

    def _too_many_steps(self) -> MaxStepsExceeded:
        return MaxStepsExceeded(
            f"{self.name}: the model was still calling tools after max_steps={self.max_steps} "
            "steps; raise max_steps, or check that the tools' results answer the question"
        )

    def _check_prompt(self, prompt: Any) -> str:
        if not isinstance(prompt, str):
            raise ConfigurationError(
                f"the prompt must be text (str), not {type(prompt).__name__}; "
                "for chat messages use llm.generate(messages=[...])"
            )
        return prompt

    def __repr__(self) -> str:
        tools = ", ".join(self.tools) or "none"
        return f"RLM(llm={self.llm!r}, tools=[{tools}], memory={type(self.memory).__name__})"
