"""Rate limits from response headers: ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``
(OpenAI's names; LiteLLM passes them on) as a `RateLimitSnapshot`, and the Go durations
(``6m0s``, ``20ms``) their reset headers are written in. Pure."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .events import RateLimitSnapshot, RateLimitWindow

__all__ = ["RateLimitCounts", "parse_go_duration", "rate_limit_counts", "rate_limit_snapshot"]

_GO_DURATION = re.compile(r"(?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+")
_GO_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_SECONDS_PER_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float | None:
    """Seconds in a Go `time.Duration` string (`1s`, `6m0s`, `20ms`, `1h2m3.5s`), or None."""
    text = text.strip()
    if text == "0":
        return 0.0
    if not _GO_DURATION.fullmatch(text):
        return None
    return sum(float(number) * _SECONDS_PER_UNIT[unit] for number, unit in _GO_DURATION_PART.findall(text))


def _header_count(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _rate_limit_window(headers: Mapping[str, str], kind: str, now: float) -> RateLimitWindow | None:
    """One window from lower-cased headers; None when it is absent or does not parse
    (a missing reset only leaves `resets_at` unset)."""
    limit = _header_count(headers.get(f"x-ratelimit-limit-{kind}"))
    remaining = _header_count(headers.get(f"x-ratelimit-remaining-{kind}"))
    reset = headers.get(f"x-ratelimit-reset-{kind}")
    reset_seconds = None if reset is None else parse_go_duration(reset)
    if not limit or remaining is None or (reset is not None and reset_seconds is None):
        return None
    return RateLimitWindow(
        used_percent=100.0 * (limit - remaining) / limit,
        resets_at=None if reset_seconds is None else int(now + reset_seconds),
    )


def rate_limit_snapshot(headers: Mapping[str, str], now: Callable[[], float]) -> RateLimitSnapshot | None:
    """The `x-ratelimit-*` headers as a snapshot (requests window primary, tokens secondary),
    or None when neither window is there and parses."""
    raw = {name: value for name, value in headers.items() if name.lower().startswith("x-ratelimit-")}
    if not raw:
        return None
    lowered = {name.lower(): value for name, value in raw.items()}
    received_at = now()
    primary = _rate_limit_window(lowered, "requests", received_at)
    secondary = _rate_limit_window(lowered, "tokens", received_at)
    if primary is None and secondary is None:
        return None
    return RateLimitSnapshot(primary=primary, secondary=secondary, headers=raw)


@dataclass(frozen=True, slots=True)
class RateLimitCounts:
    """One window's numbers as sent: what is `left` of its `limit`, and the seconds
    until it is whole again (`reset_after`, None without a reset header)."""

    limit: float
    left: float
    reset_after: float | None


def rate_limit_counts(headers: Mapping[str, str], kind: str) -> RateLimitCounts | None:
    """The ``requests`` or ``tokens`` window of `headers` (any case) as counts, or None
    when it is absent or does not parse (a reset that does not parse leaves it unset).
    The batch runner's budget reads these: the snapshot's percentages lose the counts."""
    lowered = {name.lower(): value for name, value in headers.items() if name[:2] in ("x-", "X-")}
    limit = _header_count(lowered.get(f"x-ratelimit-limit-{kind}"))
    left = _header_count(lowered.get(f"x-ratelimit-remaining-{kind}"))
    if not limit or left is None:
        return None
    reset = lowered.get(f"x-ratelimit-reset-{kind}")
    return RateLimitCounts(limit, left, None if reset is None else parse_go_duration(reset))
