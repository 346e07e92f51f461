"""Sampling whole traces: :func:`trace_kept` decides once per trace, the same way in every
process, and :func:`always_kept` names the events no sampling drops.

The decision is a hash of the trace id (BLAKE2b, its first 8 bytes as a fraction of 2^64)
compared with the rate, so every handler and every process that sees a trace keeps it or
drops it whole, with no coordination. ``sample_rate=0.0`` keeps no trace (unlike Langfuse,
whose ``0.0`` keeps everything), ``1.0`` every one. Events carrying an error (errors, retries,
budget refusals: the hooks whose arguments include ``error``), and events over a latency or
cost threshold, are kept whatever the trace's fate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from .errors import ConfigurationError
from .events import HOOKS

__all__ = ["always_kept", "check_rate", "over_threshold", "trace_kept"]

_SCALE = float(2**64)


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


def over_threshold(
    kw: Mapping[str, Any], latency_ms: float | None, cost: Decimal | float | None
) -> bool:
    """Whether an event's ``latency_ms`` or ``cost`` keyword is at or over its threshold."""
    if latency_ms is not None:
        latency = kw.get("latency_ms")
        if isinstance(latency, (int, float)) and latency >= latency_ms:
            return True
    if cost is not None:
        spent = kw.get("cost")
        if isinstance(spent, (int, float, Decimal)) and spent >= cost:
            return True
    return False
