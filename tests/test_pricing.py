from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from decimal import Decimal, localcontext
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hookwire import Usage, pricing
from hookwire.errors import InvalidUsageError, PricingError

# genai-prices needs Python 3.11. On 3.10 hookwire knows only the prices it is given; the rest
# of the suite runs there with prices from a HOOKWIRE_PRICES file (tests/conftest.py).
genai_prices = pytest.importorskip("genai_prices", reason="genai-prices needs Python 3.11")


@pytest.fixture(autouse=True)
def _fresh_prices() -> Iterator[None]:
    pricing.clear_prices()
    yield
    pricing.clear_prices()


def genai_cost(model: str, usage: Usage, provider: str | None = None) -> Decimal:
    """The reference: genai-prices' own calculation for the same call."""
    gu = genai_prices.Usage(
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        cache_read_tokens=usage.cached_tokens,
        output_reasoning_tokens=usage.reasoning_tokens,
    )
    return genai_prices.calc_price(gu, model, provider_id=provider).total_price


MODELS = [
    ("gpt-4o", None),
    ("gpt-4o", "openai"),
    ("gpt-4o-mini", "openai"),
    ("gpt-4o-2024-08-06", "openai"),
    ("o3-mini", "openai"),
    ("gpt-4", None),
    ("claude-3-5-sonnet-latest", "anthropic"),
    ("claude-3-5-haiku-latest", "anthropic"),
    ("gemini-1.5-pro", "google"),  # tiered at 128k prompt tokens
    ("gemini-2.5-pro", "google"),  # tiered, with a tiered cache price
    ("deepseek-chat", "deepseek"),
    ("mistral-large-latest", "mistral"),
    ("llama-3.3-70b-versatile", "groq"),
    ("sonar", "perplexity"),  # a per-request fee
    ("sonar-deep-research", "perplexity"),  # a separate reasoning price
    ("claude-opus-4-6", "anthropic"),  # prices that change on a date (conditional)
]

USAGES = [
    Usage(prompt_tokens=0, completion_tokens=0),
    Usage(prompt_tokens=1, completion_tokens=1),
    Usage(prompt_tokens=1000, completion_tokens=500),
    Usage(prompt_tokens=1000, completion_tokens=500, cached_tokens=800),
    Usage(prompt_tokens=1000, completion_tokens=500, cached_tokens=1000, reasoning_tokens=500),
    Usage(prompt_tokens=12_345, completion_tokens=678, cached_tokens=0, reasoning_tokens=300),
    Usage(prompt_tokens=250_000, completion_tokens=8_000, cached_tokens=100_000),
]


@pytest.mark.parametrize(("model", "provider"), MODELS)
@pytest.mark.parametrize("usage", USAGES, ids=lambda u: f"p{u.prompt_tokens}-c{u.cached_tokens}")
def test_cost_matches_genai_prices(model: str, provider: str | None, usage: Usage) -> None:
    got = pricing.cost(model, usage, provider)
    assert isinstance(got, Decimal)
    assert got == genai_cost(model, usage, provider)
    # The second lookup comes from the cache and must agree.
    assert pricing.cost(model, usage, provider) == got


def test_cached_tokens_are_cheaper_where_the_provider_says_so() -> None:
    plain = pricing.cost("gpt-4o", Usage(prompt_tokens=1_000_000, completion_tokens=0))
    cached = pricing.cost(
        "gpt-4o", Usage(prompt_tokens=1_000_000, completion_tokens=0, cached_tokens=1_000_000)
    )
    assert plain == Decimal("2.5")
    assert cached == Decimal("1.25")


def test_reasoning_tokens_priced_separately_where_the_provider_does() -> None:
    u = Usage(prompt_tokens=0, completion_tokens=1_000_000, reasoning_tokens=1_000_000)
    assert pricing.cost("sonar-deep-research", u, "perplexity") == Decimal(3)
    # Where reasoning is not priced apart (OpenAI), it is charged as output.
    assert pricing.cost("o3-mini", u, "openai") == pricing.cost(
        "o3-mini", Usage(prompt_tokens=0, completion_tokens=1_000_000), "openai"
    )


def test_tiers_apply_above_the_threshold() -> None:
    below = pricing.cost(
        "gemini-1.5-pro", Usage(prompt_tokens=128_000, completion_tokens=0), "google"
    )
    above = pricing.cost(
        "gemini-1.5-pro", Usage(prompt_tokens=128_001, completion_tokens=0), "google"
    )
    assert below == Decimal("1.25") * 128_000 / 1_000_000
    assert above == Decimal("2.5") * 128_001 / 1_000_000


def test_request_fee_is_added_once_per_call() -> None:
    assert pricing.cost("sonar", Usage(), "perplexity") == Decimal("0.012")


@settings(max_examples=150, deadline=None)
@given(
    model=st.sampled_from(MODELS),
    prompt=st.integers(0, 2_000_000),
    completion=st.integers(0, 200_000),
    cached_frac=st.none() | st.floats(0, 1),
    reasoning_frac=st.none() | st.floats(0, 1),
)
def test_cost_matches_genai_prices_for_any_usage(
    model: tuple[str, str | None],
    prompt: int,
    completion: int,
    cached_frac: float | None,
    reasoning_frac: float | None,
) -> None:
    usage = Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=None if cached_frac is None else int(prompt * cached_frac),
        reasoning_tokens=None if reasoning_frac is None else int(completion * reasoning_frac),
    )
    assert pricing.cost(model[0], usage, model[1]) == genai_cost(model[0], usage, model[1])


@settings(max_examples=100, deadline=None)
@given(
    a=st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)),
    b=st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)),
)
def test_cost_is_additive_over_calls(a: tuple[int, int], b: tuple[int, int]) -> None:
    # Exact Decimal money: the cost of two calls is the sum of their costs, to the last digit.
    ua = Usage(prompt_tokens=a[0], completion_tokens=a[1])
    ub = Usage(prompt_tokens=b[0], completion_tokens=b[1])
    ca = pricing.cost("gpt-4o-mini", ua)
    cb = pricing.cost("gpt-4o-mini", ub)
    assert ca is not None
    assert cb is not None
    assert ca + cb == pricing.cost("gpt-4o-mini", ua + ub)


def test_money_ignores_the_applications_decimal_context() -> None:
    usage = Usage(prompt_tokens=123_457, completion_tokens=98_765, cached_tokens=3)
    expected = genai_cost("gpt-4o-mini", usage)
    with localcontext() as ctx:
        ctx.prec = 3
        assert pricing.cost("gpt-4o-mini", usage) == expected


def test_unknown_model_is_none_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    usage = Usage(prompt_tokens=10, completion_tokens=5)
    with caplog.at_level(logging.WARNING, logger="hookwire.pricing"):
        assert pricing.cost("no-such-model-xyz", usage) is None
        assert pricing.cost("no-such-model-xyz", usage) is None
        assert pricing.cost("no-such-model-xyz", usage, "openai") is None
    warnings = [r for r in caplog.records if "no-such-model-xyz" in r.getMessage()]
    assert len(warnings) == 1
    assert "set_price" in warnings[0].getMessage()


def test_an_unknown_model_name_from_a_server_is_warned_about_escaped_cut_and_in_bounds(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pricing, "_warned", set())
    usage = Usage(prompt_tokens=1)
    with caplog.at_level(logging.WARNING, logger="hookwire.pricing"):
        name = "evil\x00\x1b[2J" + "m" * 100_000
        assert pricing.cost(name, usage) is None
    (record,) = caplog.records
    message = record.getMessage()
    assert "\x00" not in message and "\x1b" not in message
    assert len(message) < 1000 and f"(cut; {len(name)} chars)" in message
    caplog.clear()
    # A warning per name, up to a bound: a flood of names is not a flood of log lines.
    with caplog.at_level(logging.WARNING, logger="hookwire.pricing"):
        for i in range(pricing._WARNED_MAX + 50):
            pricing.cost(f"unknown-{i}", usage)
    assert len(caplog.records) == pricing._WARNED_MAX - 1


def test_unknown_provider_is_unknown_not_guessed(caplog: pytest.LogCaptureFixture) -> None:
    # A self-hosted model served by vLLM is not billed at OpenAI's price.
    with caplog.at_level(logging.WARNING, logger="hookwire.pricing"):
        assert pricing.cost("gpt-4o", Usage(prompt_tokens=1), "vllm") is None
    assert "vllm" in caplog.text


def test_the_offline_local_model_is_unpriced_without_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    usage = Usage(prompt_tokens=1000, completion_tokens=1000)
    with caplog.at_level(logging.WARNING, logger="hookwire.pricing"):
        assert pricing.cost("local-echo", usage, "local") is None
    assert caplog.records == []
    pricing.set_price("local-echo", input_mtok=1, output_mtok=1)
    assert pricing.cost("local-echo", usage, "local") == Decimal("0.002")


def test_empty_model_is_unknown() -> None:
    assert pricing.cost("", Usage(prompt_tokens=1)) is None
    assert pricing.price_of("") is None


@pytest.mark.parametrize(
    "usage",
    [
        Usage(prompt_tokens=-1, completion_tokens=0),
        Usage(prompt_tokens=0, completion_tokens=-5),
        Usage(prompt_tokens=1.5, completion_tokens=0),  # type: ignore[arg-type]
        Usage(prompt_tokens=True, completion_tokens=0),
        Usage(prompt_tokens="10", completion_tokens="0", total_tokens=0),  # type: ignore[arg-type]
        Usage(prompt_tokens=10, completion_tokens=0, cached_tokens=-1),
        Usage(prompt_tokens=10, completion_tokens=0, cached_tokens=11),
        Usage(prompt_tokens=10, completion_tokens=5, reasoning_tokens=6),
        Usage(prompt_tokens=10, completion_tokens=5, reasoning_tokens=2.0),  # type: ignore[arg-type]
    ],
)
def test_bad_token_counts_raise_a_named_error(usage: Usage) -> None:
    with pytest.raises(InvalidUsageError) as info:
        pricing.cost("gpt-4o", usage)
    assert isinstance(info.value, ValueError)
    assert "tokens" in str(info.value)
    # ... for unknown models too: bad input is never silently "unknown".
    with pytest.raises(InvalidUsageError):
        pricing.cost("no-such-model-xyz", usage)


@settings(max_examples=50, deadline=None)
@given(st.integers(max_value=-1))
def test_any_negative_count_is_rejected(n: int) -> None:
    with pytest.raises(InvalidUsageError):
        pricing.cost("gpt-4o", Usage(prompt_tokens=n, completion_tokens=0))


def test_set_price_adds_a_model() -> None:
    prices = pricing.set_price("my-finetune", input_mtok="0.30", output_mtok=1.2)
    assert prices.output_mtok == Decimal("1.2")
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=500_000)
    assert pricing.cost("my-finetune", usage) == Decimal("0.9")
    assert pricing.cost("MY-FINETUNE", usage) == Decimal("0.9")


def test_override_wins_over_genai_prices_and_can_be_cleared() -> None:
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=0)
    assert pricing.cost("gpt-4o", usage) == Decimal("2.5")
    pricing.set_price("gpt-4o", input_mtok="2", output_mtok="8")
    assert pricing.cost("gpt-4o", usage) == Decimal(2)
    pricing.clear_prices()
    assert pricing.cost("gpt-4o", usage) == Decimal("2.5")


def test_provider_scoped_override() -> None:
    pricing.set_price("gpt-4o", input_mtok="3", output_mtok="12", provider="azure")
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=0)
    assert pricing.cost("gpt-4o", usage, "azure") == Decimal(3)
    assert pricing.cost("gpt-4o", usage, "openai") == Decimal("2.5")


def test_override_with_cache_and_reasoning_prices_and_currency() -> None:
    pricing.set_price(
        "local-reasoner",
        input_mtok=1,
        output_mtok=2,
        cache_read_mtok="0.1",
        output_reasoning_mtok=4,
        currency="eur",
    )
    usage = Usage(
        prompt_tokens=1_000_000,
        completion_tokens=1_000_000,
        cached_tokens=500_000,
        reasoning_tokens=250_000,
    )
    # 0.5 * 1 + 0.5 * 0.1 + 0.75 * 2 + 0.25 * 4
    assert pricing.cost("local-reasoner", usage) == Decimal("3.05")
    info = pricing.price_of("local-reasoner")
    assert info is not None
    assert info.currency == "EUR"
    assert info.source == "override"


def test_load_prices_from_a_dict() -> None:
    loaded = pricing.load_prices(
        {
            "a-model": {"input_mtok": "1", "output_mtok": "2"},
            "b-model": [
                {"input_mtok": "5", "output_mtok": "5", "provider": "p1"},
                {"input_mtok": "6", "output_mtok": "6", "provider": "p2"},
            ],
        }
    )
    assert len(loaded) == 3
    one = Usage(prompt_tokens=1_000_000)
    assert pricing.cost("a-model", one) == Decimal(1)
    assert pricing.cost("b-model", one, "p1") == Decimal(5)
    assert pricing.cost("b-model", one, "p2") == Decimal(6)


def test_load_prices_from_a_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(
        '[models."my-model"]\ninput_mtok = 0.3\noutput_mtok = "1.20"\ncache_read_mtok = 0.03\n',
        encoding="utf-8",
    )
    pricing.load_prices(path)
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=1_000_000, cached_tokens=1_000_000)
    # TOML floats are read from their text: 0.03, not 0.0299999...
    assert pricing.cost("my-model", usage) == Decimal("1.23")


def test_prices_file_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "prices.toml"
    path.write_text('[models.env-model]\ninput_mtok = "7"\noutput_mtok = "7"\n', encoding="utf-8")
    monkeypatch.setenv("HOOKWIRE_PRICES", str(path))
    pricing.clear_prices()
    assert pricing.cost("env-model", Usage(prompt_tokens=1_000_000)) == Decimal(7)


def test_bad_prices_file_in_the_environment_is_logged_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "prices.toml"
    path.write_text("not toml [", encoding="utf-8")
    monkeypatch.setenv("HOOKWIRE_PRICES", str(path))
    pricing.clear_prices()
    with caplog.at_level(logging.ERROR, logger="hookwire.pricing"):
        assert pricing.cost("gpt-4o", Usage(prompt_tokens=1_000_000)) == Decimal("2.5")
    assert "HOOKWIRE_PRICES" in caplog.text


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"m": {"input_mtok": "1"}}, "needs output_mtok"),
        ({"m": {"input_mtok": "1", "output_mtok": "-1"}}, "from 0 to"),
        ({"m": {"input_mtok": "1", "output_mtok": "1e999999"}}, "from 0 to"),
        ({"m": {"input_mtok": "1", "output_mtok": "abc"}}, "must be a number"),
        ({"m": {"input_mtok": "1", "output_mtok": True}}, "must be a number"),
        ({"m": {"input_mtok": "1", "output_mtok": "NaN"}}, "from 0 to"),
        ({"m": {"input_mtok": "1", "output_mtok": "1", 7: "x"}}, "unknown key"),
        ({"m": {"input_mtok": "1", "output_mtok": [1]}}, "must be a number"),
        ({"m": {"input_mtok": "1", "output_mtok": "1", "inpt_mtok": "1"}}, "unknown key"),
        ({"m": "1.5"}, "must be a table"),
        ({"m": {"input_mtok": "1", "output_mtok": "1", "currency": "dollars"}}, "currency"),
    ],
)
def test_bad_prices_raise_and_set_nothing(data: dict[str, object], message: str) -> None:
    good = {"fine-model": {"input_mtok": "1", "output_mtok": "1"}}
    with pytest.raises(PricingError, match=message):
        pricing.load_prices({**good, **data})
    assert pricing.price_of("fine-model") is None


def test_bad_price_files(tmp_path: Path) -> None:
    with pytest.raises(PricingError, match="does not exist"):
        pricing.load_prices(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[models\n", encoding="utf-8")
    with pytest.raises(PricingError, match="not valid TOML"):
        pricing.load_prices(bad)


def _unusable(tmp_path: Path, kind: str) -> tuple[Path, str]:
    if kind == "not UTF-8":
        path = tmp_path / "latin1.toml"
        path.write_bytes('[models."café"]\ninput_mtok = "1"\n'.encode("latin-1"))
        return path, "is not UTF-8 text"
    if kind == "a directory":
        path = tmp_path / "prices.d"
        path.mkdir()
        return path, "is a directory"
    # Unreadable: a path through a file (root reads any file whatever its mode).
    (tmp_path / "plain").write_text("x", encoding="utf-8")
    return tmp_path / "plain" / "prices.toml", "cannot be read"


@pytest.mark.parametrize("kind", ["not UTF-8", "a directory", "unreadable"])
def test_a_non_utf8_directory_or_unreadable_price_file_is_a_pricing_error(
    tmp_path: Path, kind: str
) -> None:
    path, message = _unusable(tmp_path, kind)
    with pytest.raises(PricingError, match=message):
        pricing.load_prices(path)


@pytest.mark.parametrize("kind", ["not UTF-8", "a directory", "unreadable"])
def test_hookwire_prices_naming_a_bad_file_is_an_error_that_says_so(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path, message = _unusable(tmp_path, kind)
    monkeypatch.setenv("HOOKWIRE_PRICES", str(path))
    pricing.clear_prices()
    with caplog.at_level(logging.ERROR, logger="hookwire.pricing"):
        # The call is still priced from genai-prices: a price file never stops it.
        assert pricing.cost("gpt-4o", Usage(prompt_tokens=1_000_000)) == Decimal("2.5")
    [record] = [r for r in caplog.records if r.name == "hookwire.pricing"]
    assert record.levelno == logging.ERROR
    assert "HOOKWIRE_PRICES" in record.getMessage()
    assert message in record.getMessage()
    assert "Fix the file or unset HOOKWIRE_PRICES" in record.getMessage()


_TOML_VALUE = st.one_of(
    st.sampled_from(
        ['"0.5"', "1", "0.25", "-1", "nan", "inf", "1e400", '"1e999999999"', "true", '"abc"']
    ),
    st.sampled_from(["[1, 2]", '{input_mtok = "1"}', "1979-05-27T07:32:00Z", '""', "99" * 20]),
    st.integers().map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)
_TOML_KEY = st.sampled_from(
    ["input_mtok", "output_mtok", "cache_read_mtok", "provider", "currency", "junk", '"ü"']
)
_TOML = st.lists(
    st.tuples(
        st.sampled_from(['[models."m"]', "[models.m2]", "[[models.m3]]", "[other]", "", "models"]),
        st.lists(st.tuples(_TOML_KEY, _TOML_VALUE), max_size=4),
    ),
    max_size=3,
).map(
    lambda tables: "\n".join(
        head + "\n" + "\n".join(f"{k} = {v}" for k, v in pairs) for head, pairs in tables
    ).encode()
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(content=st.one_of(_TOML, st.binary(max_size=200), st.text(max_size=100).map(str.encode)))
def test_property_any_price_file_loads_or_is_a_pricing_error(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "prices.toml"
    path.write_bytes(content)
    try:
        prices = pricing.load_prices(path)
    except PricingError:
        return
    finally:
        pricing.clear_prices()
    for p in prices:
        assert 0 <= p.input_mtok <= 10**9
        assert 0 <= p.output_mtok <= 10**9


def test_estimate_is_the_worst_case() -> None:
    worst = pricing.estimate("gpt-4o", 1000, 500)
    assert worst == pricing.cost("gpt-4o", Usage(prompt_tokens=1000, completion_tokens=500))
    # Reasoning dearer than output: the worst case prices all output as reasoning.
    pricing.set_price("r", input_mtok=1, output_mtok=1, output_reasoning_mtok=5)
    assert pricing.estimate("r", 0, 1_000_000) == Decimal(5)
    assert pricing.estimate("no-such-model-xyz", 1, 1) is None
    with pytest.raises(InvalidUsageError):
        pricing.estimate("gpt-4o", -1, 1)


def test_an_estimate_asked_again_follows_new_prices_and_still_checks_its_counts() -> None:
    pricing.set_price("est", input_mtok=1, output_mtok=2)
    assert pricing.estimate("est", 1_000_000, 1_000_000) == Decimal(3)
    assert pricing.estimate("est", 1_000_000, 1_000_000) == Decimal(3)  # answered again
    pricing.set_price("est", input_mtok=10, output_mtok=20)
    assert pricing.estimate("est", 1_000_000, 1_000_000) == Decimal(30)
    pricing.estimate("est", 1, 1)
    with pytest.raises(InvalidUsageError):
        pricing.estimate("est", True, 1)  # equal to 1 as a key, but not a count
    pricing.clear_prices()
    assert pricing.estimate("est", 1_000_000, 1_000_000) is None


def test_model_prices_cost_checks_usage() -> None:
    prices = pricing.price_of("gpt-4o")
    assert prices is not None
    assert prices.source == "genai-prices"
    assert prices.provider_id == "openai"
    assert prices.cost(Usage(prompt_tokens=1_000_000)) == Decimal("2.5")
    with pytest.raises(InvalidUsageError):
        prices.cost(Usage(prompt_tokens=-1))


def test_without_genai_prices_only_the_users_prices_are_known(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # genai-prices needs Python 3.11; on 3.10 hookwire installs without it.
    monkeypatch.setitem(sys.modules, "genai_prices.data_snapshot", None)
    monkeypatch.setattr(pricing, "_no_database_warned", False)
    with caplog.at_level(logging.WARNING, logger="hookwire"):
        assert pricing.cost("gpt-4o", Usage(1000, 1000)) is None
        assert pricing.cost("gpt-4o-mini", Usage(1000, 1000)) is None
    assert (
        sum("genai-prices package is not installed" in r.getMessage() for r in caplog.records) == 1
    )
    pricing.set_price("gpt-4o", input_mtok=2, output_mtok=8)
    assert pricing.cost("gpt-4o", Usage(1_000_000, 1_000_000)) == Decimal(10)


def test_a_genai_prices_release_without_the_lookup_gives_unknown_costs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # hookwire reads genai-prices' snapshot API; a release that changed it must not make
    # every call fail, only leave the costs it would have priced unknown.
    import genai_prices.data_snapshot as snapshot_module

    class ChangedSnapshot:
        pass

    monkeypatch.setattr(snapshot_module, "get_snapshot", lambda: ChangedSnapshot())
    monkeypatch.setattr(pricing, "_incompatible_warned", False)
    with caplog.at_level(logging.WARNING, logger="hookwire"):
        assert pricing.cost("gpt-4o", Usage(1000, 1000)) is None
        assert pricing.cost("gpt-4o-mini", Usage(1000, 1000)) is None
    assert sum("does not have the lookup" in r.getMessage() for r in caplog.records) == 1


def test_cache_writes_are_priced_at_the_cache_write_rate() -> None:
    pricing.set_price(
        "cache-writer",
        input_mtok="1",
        output_mtok="5",
        cache_read_mtok="0.1",
        cache_write_mtok="1.25",
    )
    usage = Usage(1000, 10, cached_tokens=600, cache_creation_tokens=300)
    # 100 fresh, 600 read, 300 written, 10 out.
    assert pricing.cost("cache-writer", usage) == Decimal("0.000585")
    assert usage.to_dict()["cache_creation_tokens"] == 300
    assert (usage + Usage(1, 1)).cache_creation_tokens == 300
    # Without a cache-write price, writes cost the input price.
    pricing.set_price("plain-writer", input_mtok="1", output_mtok="5")
    plain = Usage(1000, 0, cache_creation_tokens=300)
    assert pricing.cost("plain-writer", plain) == Decimal("0.001")
    # A worst case reserves a prompt written to the cache when that is dearer.
    assert pricing.estimate("cache-writer", 1000, 0) == Decimal("0.00125")
    with pytest.raises(InvalidUsageError, match="cache_creation_tokens"):
        pricing.cost("cache-writer", Usage(100, 0, cached_tokens=60, cache_creation_tokens=50))
