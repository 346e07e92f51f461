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

from .context import Run, enter_run, exit_run, hook_context
from .dispatch import CallbackManager, Callbacks
from .errors import ConfigurationError, MaxStepsExceeded
from .events import LLMResponse, Usage
from .ids import new_id
from .llms.base import LLM
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


class _RunTrace(trace):
    """A ``trace`` whose ``on_run_end`` also carries the run's usage, cost and model."""

    #: Set by the runner before the run ends (never mutated in place).
    end_extra: Mapping[str, Any] = {}

    def _get_manager(self) -> CallbackManager | None:
        # The runner always passes its manager: no per-run import or conversion.
        if self._manager is None and self._callbacks is not None:
            self._manager = CallbackManager.ensure(self._callbacks)
        return self._manager

    def _end_kw(self, error: BaseException | None) -> dict[str, Any]:
        if error is None:
            return {**self._start_kw, **self.end_extra}
        kw = super()._end_kw(error)
        kw.update(self.end_extra)
        return kw


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

    def run(self, prompt: str, **context: Any) -> RunResult:
        """Answer ``prompt``; ``context`` sets request context (``user_id=...``, ...)."""
        return self._run_sync(prompt, (), context, self.name)

    async def arun(self, prompt: str, **context: Any) -> RunResult:
        """``run`` for asyncio."""
        result: RunResult | None = None
        async for item in self._aexecute(prompt, (), context, self.name, deliver=False):
            if isinstance(item, RunResult):
                result = item
        assert result is not None
        return result

    def stream(self, prompt: str, **context: Any) -> Iterator[str]:
        """Yield the answer's tokens as they arrive; the full result is then ``last_result``."""
        gen = self._execute(prompt, (), context, self.name, deliver=True)
        try:
            while True:
                yield next(gen)
        except StopIteration:
            return

    async def astream(self, prompt: str, **context: Any) -> AsyncIterator[str]:
        """``stream`` for asyncio."""
        async for item in self._aexecute(prompt, (), context, self.name, deliver=True):
            if isinstance(item, str):
                yield item

    def sub_query(self, prompt: str, *, system: str | None = None) -> str:
        """Ask the model ``prompt`` from inside a run, as a nested run (no tools, no memory).

        Its LLM events carry the outer run's ``trace_id`` and one more level of ``depth``.
        Outside a run it is a run of its own.
        """
        tr = _RunTrace("rlm.sub_query", callbacks=self.callbacks, input=prompt)
        tally = _Tally()
        with tr as run:
            try:
                messages = self._opening(system)
                messages.append({"role": "user", "content": self._check_prompt(prompt)})
                response = self.llm.generate(messages, **self._call_kw(None))
                tally.add(response)
                run.output = response.content
            finally:
                tr.end_extra = tally.end_kw()
        return response.content

    async def asub_query(self, prompt: str, *, system: str | None = None) -> str:
        """``sub_query`` for asyncio."""
        tr = _RunTrace("rlm.sub_query", callbacks=self.callbacks, input=prompt)
        tally = _Tally()
        async with tr as run:
            try:
                messages = self._opening(system)
                messages.append({"role": "user", "content": self._check_prompt(prompt)})
                response = await self.llm.agenerate(messages, **self._call_kw(None))
                tally.add(response)
                run.output = response.content
            finally:
                tr.end_extra = tally.end_kw()
        return response.content

    # -- internals ------------------------------------------------------------------------------

    def _llm_query_tool(self) -> Tool:
        def llm_query(prompt: str) -> str:
            """Ask the language model a sub-question and get its answer as text.

            Args:
                prompt: the self-contained question to ask.
            """
            return self.sub_query(prompt)

        return Tool(llm_query, nested=False)

    def _opening(self, system: str | None = None) -> list[dict[str, Any]]:
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

    def _trace(self, prompt: str, context: Mapping[str, Any], name: str) -> _RunTrace:
        return _RunTrace(name, callbacks=self.callbacks, input=prompt, **context)

    @staticmethod
    def _assistant_message(response: LLMResponse) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "content": response.content or None}
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

    def _recall(self, prompt: str) -> list[str]:
        memory = self.memory
        assert memory is not None
        kind = type(memory).__name__
        try:
            results = memory.search(prompt, self.memory_results)
        except Exception as exc:
            self.callbacks.on_error(exc, stage="memory", memory=kind)
            return []
        self.callbacks.on_memory_recall(prompt, list(results), memory=kind)
        return results

    def _store(self, content: str) -> None:
        memory = self.memory
        assert memory is not None
        kind = type(memory).__name__
        try:
            memory.add(content)
        except Exception as exc:
            self.callbacks.on_error(exc, stage="memory", memory=kind)
            return
        self.callbacks.on_memory_store(content, memory=kind)

    async def _arecall(self, prompt: str) -> list[str]:
        memory = self.memory
        assert memory is not None
        kind = type(memory).__name__
        try:
            results = await memory.asearch(prompt, self.memory_results)
        except Exception as exc:
            await self.callbacks.aon_error(exc, stage="memory", memory=kind)
            return []
        await self.callbacks.aon_memory_recall(prompt, list(results), memory=kind)
        return results

    async def _astore(self, content: str) -> None:
        memory = self.memory
        assert memory is not None
        kind = type(memory).__name__
        try:
            await memory.aadd(content)
        except Exception as exc:
            await self.callbacks.aon_error(exc, stage="memory", memory=kind)
            return
        await self.callbacks.aon_memory_store(content, memory=kind)

    def _begin(
        self, history: Sequence[Mapping[str, Any]], prompt: str, recalled: list[str]
    ) -> list[dict[str, Any]]:
        messages = self._opening()
        if history:
            messages.extend(dict(m) for m in history)
        if recalled:
            messages.append(
                {"role": "system", "content": f"{MEMORY_PREFIX} " + " | ".join(recalled)}
            )
        messages.append({"role": "user", "content": prompt})
        return messages

    def _too_many_steps(self) -> MaxStepsExceeded:
        return MaxStepsExceeded(
            f"{self.name}: the model was still calling tools after max_steps={self.max_steps} "
            "steps; raise max_steps, or check that the tools' results answer the question"
        )

    @staticmethod
    def _exchange(prompt: str, answer: str) -> str:
        return f"User: {prompt}\nAssistant: {answer}"

    def _check_prompt(self, prompt: Any) -> str:
        if not isinstance(prompt, str):
            raise ConfigurationError(
                f"the prompt must be text (str), not {type(prompt).__name__}; "
                "for chat messages use llm.generate(messages=[...])"
            )
        return prompt

    def _execute(
        self,
        prompt: str,
        history: Sequence[Mapping[str, Any]],
        context: Mapping[str, Any],
        name: str,
        deliver: bool,
    ) -> Generator[str, None, RunResult]:
        prompt = self._check_prompt(prompt)
        tr = self._trace(prompt, context, name)
        tally = _Tally()
        with tr as run:
            try:
                recalled = self._recall(prompt) if self.memory is not None else []
                messages = self._begin(history, prompt, recalled)
                kw = self._call_kw(self.tools)
                for step in range(1, self.max_steps + 1):
                    if deliver:
                        response: LLMResponse | None = None
                        for item in self.llm.stream(messages, **kw):
                            if isinstance(item, LLMResponse):
                                response = item
                            else:
                                yield item
                        assert response is not None
                    else:
                        response = self.llm.generate(messages, **kw)
                    if self._answered(step, response, messages, tally):
                        break
                assert response is not None  # max_steps >= 1, so the loop ran
                answer = response.content
                if self.memory is not None:
                    self._store(self._exchange(prompt, answer))
                run.output = answer
            finally:
                tr.end_extra = tally.end_kw()
        result = tally.result(answer, run, messages)
        self.last_result = result
        return result

    def _run_sync(
        self,
        prompt: str,
        history: Sequence[Mapping[str, Any]],
        context: Mapping[str, Any],
        name: str,
    ) -> RunResult:
        """``_execute`` without delivering tokens, as a plain call: the same run and events.

        This is the path of every ``run()``: no generator to create and drive. An outermost
        run with nothing to inherit or merge (no enclosing run or request context, no
        history, no memory: the common ``rlm.run(prompt)``) opens and closes its run itself,
        as ``_RunTrace`` would, without the trace object and its calls; everything else goes
        through ``_run_traced``. Both send the same events with the same keywords
        (tests/test_rlm.py compares them).
        """
        if type(prompt) is not str:
            prompt = self._check_prompt(prompt)
        if (
            context
            or history
            or self.memory is not None
            or hook_context()
            or type(name) is not str
            or not name
        ):
            return self._run_traced(prompt, history, context, name)
        # What trace._open, __enter__ and __exit__ do for an outermost run, written out.
        manager = self.callbacks
        # The keywords go by name where they are known (the dispatchers take run_id as a
        # parameter): a dict built and unpacked per call costs more.
        run_id = new_id()
        run = Run(name, run_id, run_id, None, 0)
        manager.on_run_start(prompt, trace_id=run_id, run_id=run_id, name=name)
        scope = enter_run(run, {"trace_id": run_id, "parent_run_id": run_id, "depth": 1})
        # Made only when the model asks for tools: one answer (the common run) is summed
        # below, as _Tally would sum it.
        tally: _Tally | None = None
        try:
            messages = self._opening()
            messages.append({"role": "user", "content": prompt})
            kw = self._call_kw(self.tools)
            if len(kw) == 1:
                # Only the callbacks to pass: by name (a dict unpacked per call costs more).
                response = self.llm.generate(messages, callbacks=kw["callbacks"])
            else:
                response = self.llm.generate(messages, **kw)
            if response.tool_calls:
                tally = _Tally()
                response = self._steps(messages, tally, kw, response)
            else:
                # _answered for an answer without tool calls.
                messages.append(self._assistant_message(response))
            answer = response.content
            run.output = answer
        except BaseException as exc:
            exit_run(scope)
            # Without a tally nothing was summed yet (the first call failed): _Tally().end_kw().
            failed_kw = {"usage": _NO_USAGE} if tally is None else tally.end_kw()
            manager.on_run_end(
                run.output, trace_id=run_id, run_id=run_id, name=name, error=exc, **failed_kw
            )
            raise
        exit_run(scope)
        if tally is None:
            # _Tally.add of a first response, then its end_kw() and result().
            usage = response.usage
            cost = response.cost
            if cost is not None:
                cost = _ZERO + cost  # as a sum, rounded in the same context
            model = response.model or None
            responses = [response]
        else:
            usage = tally.usage
            cost = tally.total_cost()
            model = tally.model
            responses = tally.responses
        if cost is not None and model is not None:
            manager.on_run_end(
                answer,
                trace_id=run_id,
                run_id=run_id,
                name=name,
                usage=usage,
                cost=cost,
                model=model,
            )
        else:
            end: dict[str, Any] = {"usage": usage}
            if cost is not None:
                end["cost"] = cost
            if model is not None:
                end["model"] = model
            manager.on_run_end(answer, trace_id=run_id, run_id=run_id, name=name, **end)
        result = RunResult(
            answer, usage, cost, run_id, run_id, model, messages, responses, len(responses)
        )
        self.last_result = result
        return result

    def _run_traced(
        self,
        prompt: str,
        history: Sequence[Mapping[str, Any]],
        context: Mapping[str, Any],
        name: str,
    ) -> RunResult:
        """``_run_sync`` for any run: through ``_RunTrace``, with memory, history, context."""
        prompt = self._check_prompt(prompt)
        tr = self._trace(prompt, context, name)
        tally = _Tally()
        with tr as run:
            try:
                recalled = self._recall(prompt) if self.memory is not None else []
                messages = self._begin(history, prompt, recalled)
                answer = self._steps(messages, tally).content
                if self.memory is not None:
                    self._store(self._exchange(prompt, answer))
                run.output = answer
            finally:
                tr.end_extra = tally.end_kw()
        result = tally.result(answer, run, messages)
        self.last_result = result
        return result

    def _steps(
        self,
        messages: list[dict[str, Any]],
        tally: _Tally,
        kw: dict[str, Any] | None = None,
        first: LLMResponse | None = None,
    ) -> LLMResponse:
        """The model calls and tool rounds of a run (not streamed to the caller): the answer.

        ``kw`` are the calls' keywords (``_call_kw``) and ``first`` the first call's answer
        when the caller already made it.
        """
        if kw is None:
            kw = self._call_kw(self.tools)
        generate = self.llm.generate
        # Nothing but the callbacks to pass (no tools, model, retry or parameters): by name,
        # which costs less than a dict unpacked per call.
        callbacks = kw["callbacks"] if len(kw) == 1 else None
        response = first
        step = 1
        while True:
            if response is None:
                if callbacks is not None:
                    response = generate(messages, callbacks=callbacks)
                else:
                    response = generate(messages, **kw)
            # _answered raises on the last step if the model still asks for tools.
            if self._answered(step, response, messages, tally):
                return response
            response = None
            step += 1

    def _answered(
        self, step: int, response: LLMResponse, messages: list[dict[str, Any]], tally: _Tally
    ) -> bool:
        """Record one model answer; run the tools it asks for. True when it is the answer."""
        tally.add(response)
        messages.append(self._assistant_message(response))
        if not response.tool_calls:
            return True
        if step == self.max_steps:
            # No step is left to give the model the tools' results: don't run them.
            error = self._too_many_steps()
            self.callbacks.on_error(error, stage="run")
            raise error
        for call in response.tool_calls:
            output = run_tool(self.tools, call, self.callbacks)
            messages.append(
                {"role": "tool", "tool_call_id": call.id, "name": call.name, "content": output}
            )
        return False

    async def _aexecute(
        self,
        prompt: str,
        history: Sequence[Mapping[str, Any]],
        context: Mapping[str, Any],
        name: str,
        deliver: bool,
    ) -> AsyncIterator[str | RunResult]:
        prompt = self._check_prompt(prompt)
        tr = self._trace(prompt, context, name)
        tally = _Tally()
        async with tr as run:
            try:
                recalled = await self._arecall(prompt) if self.memory is not None else []
                messages = self._begin(history, prompt, recalled)
                kw = self._call_kw(self.tools)
                for step in range(1, self.max_steps + 1):
                    if deliver:
                        response: LLMResponse | None = None
                        async for item in self.llm.astream(messages, **kw):
                            if isinstance(item, LLMResponse):
                                response = item
                            else:
                                yield item
                        assert response is not None
                    else:
                        response = await self.llm.agenerate(messages, **kw)
                    tally.add(response)
                    messages.append(self._assistant_message(response))
                    if not response.tool_calls:
                        break
                    if step == self.max_steps:
                        error = self._too_many_steps()
                        await self.callbacks.aon_error(error, stage="run")
                        raise error
                    for call in response.tool_calls:
                        output = await arun_tool(self.tools, call, self.callbacks)
                        messages.append(
                            {
                                "role": "tool",
                                "tool_call_id": call.id,
                                "name": call.name,
                                "content": output,
                            }
                        )
                assert response is not None  # max_steps >= 1, so the loop ran
                answer = response.content
                if self.memory is not None:
                    await self._astore(self._exchange(prompt, answer))
                run.output = answer
            finally:
                tr.end_extra = tally.end_kw()
        result = tally.result(answer, run, messages)
        self.last_result = result
        yield result

    def __repr__(self) -> str:
        tools = ", ".join(self.tools) or "none"
        return f"RLM(llm={self.llm!r}, tools=[{tools}], memory={type(self.memory).__name__})"
