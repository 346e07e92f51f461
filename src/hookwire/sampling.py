"""Sampling whole traces: one decision per trace, the same in every process and handler.

:func:`trace_kept` decides from a hash of the trace id (BLAKE2b, its first 8 bytes as a
fraction of 2^64) compared with the rate, so every handler and every process that sees a
trace keeps it or drops it whole, with no coordination; a trace kept at a rate is kept at any
higher rate. ``sample_rate=0.0`` keeps no trace (unlike Langfuse, whose ``0.0`` keeps
everything), ``1.0`` every one.

Some traces are kept whatever the hash says: those with an error (errors, retries, budget
refusals: the hooks whose arguments include ``error``, and a run that ends with one), and
those with an LLM call or a run whose ``latency_ms`` or ``cost`` reaches a threshold
(``keep_over_ms`` / ``keep_over_cost``). That decision can only come when such an event
arrives, so :class:`TraceSampler` holds the events of a trace the hash leaves out until it is
decided: when an always-kept event arrives, the events held are handed to the handler first,
in order, then the event itself and the rest of the trace; when the trace's outermost run
(or, outside any run, the LLM or tool call) ends without one, they are dropped. At most
``max_held`` events are held per handler; past it the oldest trace's are dropped (counted in
``evicted``), and an always-kept event of that trace is still kept, alone.

:func:`sample` puts a sampler in front of a handler's hooks: the built-in handlers that let
events out (``FileLogCallback``, ``OpenTelemetryCallback``, ``TraceStoreCallback``,
``OutboxCallback``, ``ConsoleCallback``) call it for ``sample_rate=``, and it works on your
own handlers too. A handler without a rate is left as it was: its hooks cost exactly what
they did. ``hookwire.trace(..., sample_rate=r)`` sets the rate of the trace it opens, for the
handlers that sample (any ``sample_rate``, ``1.0`` included): they keep the trace if it is
in the smaller of their rate and the trace's. Accounting, budgets, chat history and
``MetricsCallback`` never sample.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from .callpath import declared_keywords
from .errors import ConfigurationError
from .events import HOOKS

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .callbacks.forwarding import RawParts

__all__ = [
    "TraceSampler",
    "always_kept",
    "check_rate",
    "end_trace_rate",
    "over_threshold",
    "sample",
    "set_trace_rate",
    "trace_kept",
    "trace_rate",
]

logger = logging.getLogger("hookwire")

_SCALE = float(2**64)
#: Traces whose own rate is remembered at once (see ``set_trace_rate``); past it the oldest
#: is forgotten, and its later events follow the handlers' rates alone.
TRACE_RATES_KEPT: Final = 100_000
_TRACE_RATES: OrderedDict[str, float] = OrderedDict()
_TRACE_RATES_LOCK = threading.Lock()


def check_rate(rate: float) -> float:
    """``rate`` if it is a fraction from 0.0 to 1.0; else ``ConfigurationError``."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
        raise ConfigurationError(
            f"sample_rate must be a fraction from 0.0 (no trace) to 1.0 (every trace), not {rate!r}"
        )
    return float(rate)


def trace_kept(trace_id: str, rate: float) -> bool:
    """Whether the trace ``trace_id`` is in the sample at ``rate`` (the same answer in every
    process)."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    digest = hashlib.blake2b(trace_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE < rate


def always_kept(hook: str) -> bool:
    """Whether ``hook``'s events are kept by every sample: those carrying an error (errors,
    retries, budget refusals)."""
    spec = HOOKS.get(hook)
    return spec is not None and "error" in spec.args


#: Per hook: (always kept, ends a run), read for every event of a trace left out.
_KINDS: dict[str, tuple[bool, bool]] = {}


def _kind(hook: str) -> tuple[bool, bool]:
    spec = HOOKS.get(hook)
    kind = (always_kept(hook), spec is not None and spec.ends_run)
    if spec is not None:  # a hook declared later is added when first seen
        _KINDS[hook] = kind
    return kind


def over_threshold(
    kw: Mapping[str, Any],
    latency_ms: float | None,
    cost: Decimal | float | None,
    response: Any = None,
) -> bool:
    """Whether an event's ``latency_ms`` or ``cost`` keyword (or its ``response``'s
    ``cost``) is at or over its threshold."""
    if latency_ms is not None:
        latency = kw.get("latency_ms")
        if isinstance(latency, (int, float)) and latency >= latency_ms:
            return True
    if cost is not None:
        spent = kw.get("cost")
        if spent is None and response is not None:
            spent = getattr(response, "cost", None)
        if isinstance(spent, (int, float, Decimal)) and spent >= cost:
            return True
    return False


def set_trace_rate(trace_id: str, rate: float) -> None:
    """Sample the trace ``trace_id`` at ``rate`` (at most) in every handler that samples, until
    :func:`end_trace_rate`. ``hookwire.trace(sample_rate=...)`` calls both."""
    rate = check_rate(rate)
    with _TRACE_RATES_LOCK:
        _TRACE_RATES[trace_id] = rate
        if len(_TRACE_RATES) > TRACE_RATES_KEPT:
            _TRACE_RATES.popitem(last=False)


def end_trace_rate(trace_id: str) -> None:
    """Forget the rate :func:`set_trace_rate` gave ``trace_id``."""
    with _TRACE_RATES_LOCK:
        _TRACE_RATES.pop(trace_id, None)


def trace_rate(trace_id: str) -> float | None:
    """The rate set for ``trace_id`` by :func:`set_trace_rate`, if any."""
    return _TRACE_RATES.get(trace_id)


_Item = tuple[Any, ...]  # what was held, as the handler gave it
#: Decisions a sampler remembers (traces open at once, with room to spare).
_DECISIONS_KEPT: Final = 4096


class TraceSampler:
    """The sampling gate of one handler: :meth:`admit` (or :meth:`admit_parts`) says whether an
    event goes through now, and hands each held event to ``replay(item)`` when its trace turns
    out kept, ``item`` being what was held: ``(hook, args, kw)``, or the parts given to
    ``admit_parts`` (see the module docstring)."""

    __slots__ = (
        "_decided",
        "_held",
        "_kept",
        "_lock",
        "evicted",
        "held",
        "keep_over_cost",
        "keep_over_ms",
        "max_held",
        "rate",
        "replay",
        "replaying",
    )

    def __init__(
        self,
        rate: float,
        replay: Callable[[tuple[Any, ...]], Any],
        *,
        keep_over_ms: float | None = None,
        keep_over_cost: Decimal | float | None = None,
        max_held: int = 10_000,
    ) -> None:
        if not isinstance(max_held, int) or max_held < 0:
            raise ConfigurationError(f"max_held must be a number of events >= 0, not {max_held}")
        self.rate = check_rate(rate)
        self.replay = replay
        self.keep_over_ms = keep_over_ms
        self.keep_over_cost = keep_over_cost
        self.max_held = max_held
        #: Events held now, waiting for their trace's decision.
        self.held = 0
        #: Events dropped from the hold because it was full.
        self.evicted = 0
        #: Whether held events are being handed over now (a handler may use the events' own
        #: times then, rather than the clock's).
        self.replaying = False
        self._lock = threading.Lock()
        self._held: OrderedDict[str, list[_Item]] = OrderedDict()
        self._kept: OrderedDict[str, None] = OrderedDict()  # left out by the hash, then kept
        self._decided: dict[str, bool] = {}

    def __repr__(self) -> str:
        return f"TraceSampler(rate={self.rate}, held={self.held})"

    def in_sample(self, trace_id: str) -> bool:
        """Whether the hash keeps ``trace_id`` at this sampler's rate (and the trace's own)."""
        decided = self._decided
        kept = decided.get(trace_id)
        if kept is not None:
            return kept
        rate = self.rate
        own = _TRACE_RATES.get(trace_id)
        if own is not None and own < rate:
            rate = own
        kept = trace_kept(trace_id, rate)
        if len(decided) >= _DECISIONS_KEPT:
            decided.clear()  # a cache: a trace seen again is hashed again, to the same answer
        decided[trace_id] = kept
        return kept

    def admit(self, hook: str, args: tuple[Any, ...], kw: dict[str, Any]) -> bool:
        """Whether the event goes to the handler now. ``False``: it is held or dropped."""
        tid = kw.get("trace_id") or kw.get("run_id")
        if tid is None:
            return True
        tid = tid if type(tid) is str else str(tid)
        if self.in_sample(tid):
            return True
        return self._decide(tid, hook, args, kw, kw.get("run_id"), (hook, args, kw))

    def admit_parts(self, *parts: Unpack[RawParts]) -> bool:
        """``admit`` for an event given as a ``CallbackManager`` hands it to
        ``_hookwire_raw`` (``hookwire.callbacks.forwarding``); ``ctx`` and ``kw`` are only
        read, and held as they are."""
        hook, args, run_id, _, ctx, kw, _, _ = parts
        tid = kw.get("trace_id") or ctx.get("trace_id") or run_id or kw.get("run_id")
        if tid is None:
            return True
        tid = tid if type(tid) is str else str(tid)
        if self.in_sample(tid):
            return True
        return self._decide(tid, hook, args, kw, run_id or kw.get("run_id"), parts)

    def _decide(
        self,
        tid: str,
        hook: str,
        args: tuple[Any, ...],
        kw: Mapping[str, Any],
        run_id: Any,
        item: tuple[Any, ...],
    ) -> bool:
        """A trace the hash leaves out: keep the event (and hand over the trace's held ones),
        hold it, or drop the trace at its end."""
        kind = _KINDS.get(hook)
        if kind is None:
            kind = _kind(hook)
        ends = kind[1] and run_id == tid
        keep = (
            kind[0]
            or kw.get("error") is not None
            or (
                (self.keep_over_ms is not None or self.keep_over_cost is not None)
                and over_threshold(
                    kw,
                    self.keep_over_ms,
                    self.keep_over_cost,
                    args[0] if kind[1] and args else None,
                )
            )
        )
        with self._lock:
            if keep or tid in self._kept:
                held = self._held.pop(tid, ())
                self.held -= len(held)
                if ends:
                    self._kept.pop(tid, None)
                else:
                    self._kept[tid] = None
                    if len(self._kept) > max(self.max_held, 1):
                        self._kept.popitem(last=False)
            else:
                if ends:
                    self.held -= len(self._held.pop(tid, ()))
                elif self.max_held:
                    self._hold(tid, item)
                return False
        if held:
            self._hand_over(held)
        return True

    def _hold(self, tid: str, item: _Item) -> None:
        items = self._held.get(tid)
        if items is None:
            items = self._held[tid] = []
        items.append(item)
        self.held += 1
        while self.held > self.max_held and self._held:
            _, dropped = self._held.popitem(last=False)
            self.held -= len(dropped)
            self.evicted += len(dropped)

    def _hand_over(self, items: list[_Item]) -> None:
        self.replaying = True
        try:
            for item in items:
                try:
                    self.replay(item)
                except Exception:
                    logger.exception("hookwire: a held event (%s) failed when handed over", item[0])
        finally:
            self.replaying = False


def sample(
    handler: Any,
    rate: float | None,
    *,
    keep_over_ms: float | None = None,
    keep_over_cost: Decimal | float | None = None,
    max_held: int = 10_000,
) -> TraceSampler | None:
    """Put a :class:`TraceSampler` at ``rate`` in front of every hook ``handler`` overrides
    (call it last in ``__init__``, after ``ignore_hooks``, before the handler is given to a
    manager); ``None`` if ``rate`` is ``None`` (the handler is left untouched). The hooks are
    set on the instance, so a manager calls them instead of the class's. A handler whose
    hooks are coroutines is refused (``ConfigurationError``).
    """
    if rate is None:
        return None
    if _forwards_all(handler):
        return _sample_parts(handler, rate, keep_over_ms, keep_over_cost, max_held)
    originals: dict[str, Callable[..., Any]] = {}
    for hook, spec in HOOKS.items():
        fn = getattr(handler, hook, None)
        if fn is None or getattr(fn, "__hookwire_noop__", False):
            # The sampler must still see what keeps a trace (errors) and what ends one (to
            # let its held events go), even where the handler itself does not listen.
            if always_kept(hook) or spec.ends_run:
                originals[hook] = _ignore
            continue
        if inspect.iscoroutinefunction(fn):
            raise ConfigurationError(
                f"{type(handler).__name__}.{hook} is a coroutine: sample() takes synchronous "
                "handlers (BaseCallback); sample in your own async hooks with TraceSampler"
            )
        originals[hook] = _caller(fn)

    def replay(item: tuple[Any, ...]) -> Any:
        hook, args, kw = item
        own = getattr(handler, "_hookwire_replay", None)
        if own is not None:
            return own(originals[hook], args, kw)
        return originals[hook](*args, **kw)

    sampler = TraceSampler(
        rate,
        replay,
        keep_over_ms=keep_over_ms,
        keep_over_cost=keep_over_cost,
        max_held=max_held,
    )
    for hook, fn in originals.items():
        setattr(handler, hook, _gate(sampler, hook, fn))
    return sampler


def _ignore(*args: Any, **kw: Any) -> None:
    return None


def _caller(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn``, or for a hook without ``**kwargs`` a function giving it only the keywords it
    declares (as a manager would); the gate itself reads the trace's ids from all of them."""
    names = declared_keywords(fn)
    if names is None:
        return fn

    def call(*args: Any, **kw: Any) -> Any:
        return fn(*args, **{k: v for k, v in kw.items() if k in names})

    return call


def _gate(sampler: TraceSampler, hook: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    admit = sampler.admit

    def gated(*args: Any, **kw: Any) -> Any:
        if admit(hook, args, kw):
            return fn(*args, **kw)
        return None

    return gated


# A handler whose hooks all hand their event to ``_hookwire_raw`` (FileLog, the trace store,
# the outbox) is gated there instead, in a subclass made once per class: the manager then
# still calls ``_hookwire_raw`` with the parts it has at hand. Gating its hooks one by one, as
# other handlers are, was measured at 1.6x the app thread's instructions per event at
# sample_rate=0.5 (bench/sampling.py): every event went through keyword dicts again.
_PARTS_CLASSES: dict[type, type] = {}
_PARTS_LOCK = threading.Lock()


def _forwards_all(handler: Any) -> bool:
    raw = inspect.getattr_static(type(handler), "_hookwire_raw", None)
    if not inspect.isfunction(raw):
        return False
    for hook in HOOKS:
        fn = getattr(handler, hook, None)
        if fn is None or getattr(fn, "__hookwire_noop__", False):
            continue
        if hook in getattr(handler, "__dict__", ()) or not getattr(fn, "__hookwire_raw__", False):
            return False
    return True


def _sample_parts(
    handler: Any,
    rate: float,
    keep_over_ms: float | None,
    keep_over_cost: Decimal | float | None,
    max_held: int,
) -> TraceSampler:
    cls = type(handler)
    with _PARTS_LOCK:
        sub = _PARTS_CLASSES.get(cls)
        if sub is None:
            sub = _PARTS_CLASSES[cls] = _parts_class(cls)
    base_raw = inspect.getattr_static(cls, "_hookwire_raw")

    def replay(item: tuple[Any, ...]) -> Any:
        return base_raw(handler, *item)

    sampler = TraceSampler(
        rate,
        replay,
        keep_over_ms=keep_over_ms,
        keep_over_cost=keep_over_cost,
        max_held=max_held,
    )
    handler._hookwire_sampler = sampler
    handler.__class__ = sub
    return sampler


def _parts_class(cls: type) -> type:
    base_raw = inspect.getattr_static(cls, "_hookwire_raw")

    def _hookwire_raw(self: Any, *parts: Unpack[RawParts]) -> None:
        if self._hookwire_sampler.admit_parts(*parts):
            base_raw(self, *parts)

    ns = {
        "_hookwire_raw": _hookwire_raw,
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__doc__": cls.__doc__,
    }
    return type(cls.__name__, (cls,), ns)
