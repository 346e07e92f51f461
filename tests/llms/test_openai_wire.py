"""hookwire.llms.openai_wire: SDK exceptions to hookwire.errors, the Retry-After parser,
server-sent events, transport errors, usage."""

from __future__ import annotations

import email.utils
import time

import httpx2
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hookwire import Usage, errors
from hookwire.llms.openai_wire import (
    _retry_after,
    map_openai_error,
    sse_data,
    transport_errors,
    usage_from_json,
)

REQUEST = httpx2.Request("POST", "http://127.0.0.1:1/v1/chat/completions")


def status_error(status: int, headers: dict[str, str] | None = None) -> openai.APIStatusError:
    response = httpx2.Response(status, headers=headers or {}, request=REQUEST)
    classes = {
        400: openai.BadRequestError,
        401: openai.AuthenticationError,
        403: openai.PermissionDeniedError,
        404: openai.NotFoundError,
        409: openai.ConflictError,
        422: openai.UnprocessableEntityError,
        429: openai.RateLimitError,
    }
    cls = classes.get(
        status, openai.InternalServerError if status >= 500 else openai.APIStatusError
    )
    return cls("scripted", response=response, body=None)


#: The hookwire error of each HTTP status the OpenAI SDK raises for (418: any other 4xx).
STATUS_ERRORS: dict[type[errors.LLMError], tuple[int, ...]] = {
    errors.BadRequestError: (400, 404, 418, 422),
    errors.AuthenticationError: (401, 403),
    errors.LLMTimeoutError: (408,),
    errors.RateLimitError: (429,),
    errors.ServerError: (409, 500, 502, 503),
}


@pytest.mark.parametrize(
    ("status", "expected"), [(s, e) for e, statuses in STATUS_ERRORS.items() for s in statuses]
)
def test_status_codes(status: int, expected: type[errors.LLMError]) -> None:
    mapped = map_openai_error(status_error(status), provider="vllm", model="m")
    assert type(mapped) is expected
    assert mapped.status_code == status
    assert mapped.provider == "vllm"
    assert mapped.model == "m"
    assert "vllm (m)" in str(mapped)
    assert isinstance(mapped, errors.TransientLLMError) == (
        status in (408, 409, 429) or status >= 500
    )


def test_retry_after_headers() -> None:
    assert map_openai_error(status_error(429, {"retry-after": "7"})).retry_after == 7.0  # type: ignore[attr-defined]
    assert map_openai_error(status_error(503, {"retry-after-ms": "250"})).retry_after == 0.25  # type: ignore[attr-defined]


def test_connection_timeout_and_other_errors() -> None:
    assert type(map_openai_error(openai.APITimeoutError(request=REQUEST))) is errors.LLMTimeoutError
    conn = map_openai_error(openai.APIConnectionError(request=REQUEST))
    assert type(conn) is errors.LLMConnectionError
    assert "127.0.0.1:1" in str(conn)
    assert type(map_openai_error(ValueError("bad json"))) is errors.MalformedResponseError
    assert type(map_openai_error(openai.OpenAIError("odd"))) is errors.LLMError


def test_retry_after_http_date() -> None:
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    value = _retry_after({"retry-after": future})
    assert value is not None
    assert 25 <= value <= 31
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert _retry_after({"retry-after": past}) == 0.0


@given(st.floats(min_value=0, max_value=1e6, allow_nan=False))
def test_retry_after_seconds(value: float) -> None:
    assert _retry_after({"retry-after": repr(value)}) == pytest.approx(value)


@given(st.text(max_size=30))
def test_retry_after_never_raises_or_goes_negative(text: str) -> None:
    value = _retry_after({"retry-after": text, "retry-after-ms": text})
    assert value is None or value >= 0


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "", "soon", "Wed, 99 Foo 2024"])
def test_retry_after_refuses_nonsense(text: str) -> None:
    assert _retry_after({"retry-after": text}) is None


def test_transport_errors_follow_the_http_library_of_the_response() -> None:
    import httpx

    timeouts, failures = transport_errors(httpx.Response(200))
    assert timeouts == (httpx.TimeoutException,)
    assert httpx.RequestError in failures
    assert issubclass(httpx.ReadTimeout, timeouts)
    assert issubclass(httpx.RemoteProtocolError, failures)
    assert not issubclass(ValueError, failures)


_FIELD_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=20
)


@given(
    events=st.lists(st.lists(_FIELD_TEXT, min_size=1, max_size=3), max_size=6),
    newline=st.sampled_from(["\n", "\r\n"]),
    noise=st.lists(st.sampled_from([": ping", "event: x", "id: 1", "retry: 5", ""]), max_size=3),
)
def test_sse_data_gives_each_events_data(
    events: list[list[str]], newline: str, noise: list[str]
) -> None:
    # Any events (data over one or more lines), with fields, comments and blank lines around:
    # each event's data lines come back joined by "\n", in order, up to [DONE].
    events = [e for e in events if not "\n".join(e).startswith("[DONE]")]
    text = ""
    for lines in events:
        text += newline.join([*noise, *(f"data: {line}" for line in lines)]) + newline + newline
    text += f"data: [DONE]{newline}{newline}data: after{newline}{newline}"
    got = list(sse_data(text.split(newline), http2=False))
    assert got == ["\n".join(lines) for lines in events]


def test_token_counts_that_are_not_finite_integers_are_refused() -> None:
    for bad in (float("inf"), float("nan"), True, [1]):
        with pytest.raises(ValueError):
            usage_from_json({"prompt_tokens": bad})
    assert usage_from_json({"prompt_tokens": 3.0, "completion_tokens": "2"}) == Usage(3, 2)
