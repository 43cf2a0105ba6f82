"""How many requests a batch keeps in flight, and when it sends the next one.

`AdaptiveConcurrency` (``concurrency="auto"``) lets the server drive it:

- **additive increase**: each answer that arrives while the rate-limit headers show room
  for another round raises the limit, by 1 per answer at first (doubling per round
  trip, "slow start"), then by ``1/limit`` per answer (about 1 per round trip);
- **multiplicative decrease**: a 429 or 503 halves it, and so does a window whose
  `x-ratelimit-remaining-*` count falls under the next request's need; at most once per
  round (only an answer to a request sent after the last decrease counts again);
- **waiting for the reset**: the `x-ratelimit-*` headers of each answer are kept as a
  budget (what is left of the requests and tokens windows, less what was sent since),
  and when the next request does not fit, nothing is sent until the window's reset.
  A 429 or 503 that the transport is about to retry stops every sender until that
  retry's time (its ``Retry-After``, else the transport's backoff).

`FixedConcurrency` keeps ``n`` in flight and learns nothing: a rate-limited request
waits its own ``Retry-After`` in the transport's retries, the others go on sending.

Both are thread-safe; every wait is cut into slices so that a stop is seen within
0.1 s. The clock can be passed in, so the rules can be tested without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from .errors import InvalidInputError
from .ratelimits import rate_limit_counts

__all__ = ["AdaptiveConcurrency", "Concurrency", "FixedConcurrency", "Slot"]

#: The limit a batch starts at, and what each congestion signal multiplies it by.
INITIAL_CONCURRENCY: Final = 4
DECREASE: Final = 0.5
#: After a 429 the limit grows about 1 per round trip up to this fraction of where it
#: was at the 429, then 1 per `PROBE_ROUNDS` round trips: a server whose limit was found
#: the hard way is not run into again every window.
PLATEAU: Final = 0.8
#: Before the first signal the limit grows by this per answer (×1.5 per round trip):
#: a 429 reaches the sender a round trip late, so a faster start overshoots further.
SLOW_START_STEP: Final = 0.5
PROBE_ROUNDS: Final = 32
#: Statuses that mean "too many requests": they pause every sender and decrease the limit.
CONGESTION_STATUSES: Final = (429, 503)

_WAIT_SLICE: Final = 0.1
_WINDOWS: Final = ("requests", "tokens")


@dataclass(slots=True)
class Slot:
    """One request in flight: its order of sending and its estimated token need."""

    seq: int
    need: float
    heard: bool = False  # its response's headers were seen


@dataclass(slots=True)
class _Budget:
    """What a window has left, from the newest response seen (`seq`), less what was
    sent since; and when it is whole again (monotonic time, None: not said)."""

    left: float
    reset_at: float | None
    seq: int


@dataclass(slots=True)
class _Stats:
    rate_limited: int = 0  # 429/503 answers
    decreases: int = 0
    waits_for_reset: int = 0
    output_tokens: list[int] = field(default_factory=list)


class Concurrency:
    """The interface a batch uses (see the module docstring): `acquire` a slot before
    sending, report the response's headers with `heard` and each 429/503 the transport
    retries with `congested`, and end it with `done`. `limit` is the number of
    requests allowed in flight now."""

    def __init__(self, max_concurrency: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise InvalidInputError("max_concurrency", f"expected a positive integer, got {max_concurrency!r}")
        self.max_concurrency = max_concurrency
        self.in_flight = 0
        self._clock = clock
        self._cond = threading.Condition()
        self._seq = 0
        self._stats = _Stats()
        self._paused_until = 0.0

    @property
    def limit(self) -> int:
        return self.max_concurrency

    @property
    def rate_limited(self) -> int:
        """How many answers were 429 or 503."""
        return self._stats.rate_limited

    @property
    def output_tokens_per_request(self) -> float:
        """The mean output tokens of the answers seen so far (0 before any)."""
        seen = self._stats.output_tokens
        return sum(seen) / len(seen) if seen else 0.0

    def acquire(self, need: float, stop: threading.Event) -> Slot | None:
        """Wait until a request needing about `need` tokens may be sent; its slot, or
        None once `stop` is set."""
        with self._cond:
            while not stop.is_set():
                now = self._clock()
                wait = self._wait_before_sending(need, now)
                if wait <= 0:
                    self._seq += 1
                    self.in_flight += 1
                    return self._take(Slot(self._seq, need))
                self._cond.wait(min(wait, _WAIT_SLICE))
            return None

    def _wait_before_sending(self, need: float, now: float) -> float:
        if self._paused_until > now:
            return self._paused_until - now
        return _WAIT_SLICE if self.in_flight >= self.limit else 0.0

    def _take(self, slot: Slot) -> Slot:
        return slot

    def heard(self, slot: Slot, headers: Mapping[str, str]) -> None:
        """The response to `slot` arrived with these headers (any status)."""
        slot.heard = True

    def done(self, slot: Slot, *, output_tokens: int | None = None) -> None:
        """`slot`'s request is over: answered, or failed in a way that says nothing
        about the rate (a 400, a broken stream…)."""
        with self._cond:
            self.in_flight -= 1
            if output_tokens is not None:
                self._stats.output_tokens.append(output_tokens)
                del self._stats.output_tokens[:-256]  # a running mean of the recent answers
            self._succeeded(slot)
            self._cond.notify_all()

    def _succeeded(self, slot: Slot) -> None:
        pass

    def congested(self, slot: Slot, delay: float) -> None:
        """`slot`'s request was answered 429 or 503, and the transport will send it
        again in `delay` seconds (its ``Retry-After``, else a backoff)."""
        with self._cond:
            self._stats.rate_limited += 1
            self._congested(slot, delay)
            self._cond.notify_all()

    def _congested(self, slot: Slot, delay: float) -> None:
        pass


class FixedConcurrency(Concurrency):
    """At most `n` requests in flight, whatever the server says."""

    def __init__(self, n: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(n, clock=clock)

    def __repr__(self) -> str:
        return f"FixedConcurrency({self.max_concurrency})"


class AdaptiveConcurrency(Concurrency):
    """AIMD concurrency driven by the server's rate-limit headers (module docstring).
    Pass one instance to several `Client.map` calls (or keep one per worker process)
    to share what it learned."""

    def __init__(self, max_concurrency: int = 64, *, initial: int = INITIAL_CONCURRENCY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(max_concurrency, clock=clock)
        self._limit = float(min(initial, max_concurrency))
        self._slow_start = True
        self._wall = float(max_concurrency)  # the limit at the last decrease
        self._decreased_at = 0  # the last seq sent before the last decrease
        self._budgets: dict[str, _Budget] = {}
        self._unheard: dict[int, Slot] = {}  # sent, headers not seen yet

    @property
    def limit(self) -> int:
        return max(1, int(self._limit))

    @property
    def decreases(self) -> int:
        return self._stats.decreases

    @property
    def waits_for_reset(self) -> int:
        """How many times sending stopped until a window's reset, before any 429."""
        return self._stats.waits_for_reset

    def _wait_before_sending(self, need: float, now: float) -> float:
        wait = super()._wait_before_sending(need, now)
        if wait > 0:
            return wait
        for kind, budget in list(self._budgets.items()):
            if budget.left >= (1.0 if kind == "requests" else need):
                continue
            if budget.reset_at is None or budget.reset_at <= now:
                del self._budgets[kind]  # stale: the window has reset (or never said when)
                continue
            # The next request would run into the wall: wait for the reset, and slow down.
            self._stats.waits_for_reset += 1
            self._paused_until = budget.reset_at
            del self._budgets[kind]
            self._decrease(wall=False)
            return budget.reset_at - now
        return 0.0

    def _take(self, slot: Slot) -> Slot:
        for kind, budget in self._budgets.items():
            budget.left -= 1.0 if kind == "requests" else slot.need
        self._unheard[slot.seq] = slot
        return slot

    def heard(self, slot: Slot, headers: Mapping[str, str]) -> None:
        with self._cond:
            if slot.heard:
                return
            slot.heard = True
            self._unheard.pop(slot.seq, None)
            now = self._clock()
            for kind in _WINDOWS:
                counts = rate_limit_counts(headers, kind)
                budget = self._budgets.get(kind)
                if counts is None or (budget is not None and budget.seq > slot.seq):
                    continue  # nothing said, or a later answer already said more
                # Requests sent after this one may not be counted in it yet: count them.
                later = [s for s in self._unheard.values() if s.seq > slot.seq]
                spent = len(later) if kind == "requests" else sum(s.need for s in later)
                reset_at = None if counts.reset_after is None else now + counts.reset_after
                self._budgets[kind] = _Budget(counts.left - spent, reset_at, slot.seq)
            self._cond.notify_all()

    def done(self, slot: Slot, *, output_tokens: int | None = None) -> None:
        with self._cond:
            self._unheard.pop(slot.seq, None)
        super().done(slot, output_tokens=output_tokens)

    def _succeeded(self, slot: Slot) -> None:
        if not self._headroom():
            return
        if self._slow_start:
            step = SLOW_START_STEP
        elif self._limit < PLATEAU * self._wall:
            step = 1.0 / self._limit  # back towards where the last wall was: about 1 per round trip
        else:
            step = 1.0 / (PROBE_ROUNDS * self._limit)  # near it: probe slowly
        self._limit = min(float(self.max_concurrency), self._limit + step)

    def _headroom(self) -> bool:
        """Whether the windows leave room for one more request per slot (true when the
        server sends no rate-limit headers)."""
        rounds = self._limit + 1
        need = self.output_tokens_per_request
        return all(budget.left >= rounds * (1.0 if kind == "requests" else max(need, 1.0))
                   for kind, budget in self._budgets.items())

    def _congested(self, slot: Slot, delay: float) -> None:
        # Every sender waits with the one that was told to: the wall is the same for all.
        self._paused_until = max(self._paused_until, self._clock() + delay)
        if slot.seq > self._decreased_at:
            self._decrease(wall=True)

    def _decrease(self, *, wall: bool) -> None:
        """Multiply the limit by `DECREASE`, once per round: not again until a request
        sent after this decrease gives a signal. `wall`: a 429 or 503 (not a budget
        seen running out), whose limit the increase then approaches slowly."""
        if self._seq <= self._decreased_at:
            return
        self._slow_start = False
        self._decreased_at = self._seq
        self._stats.decreases += 1
        if wall:
            self._wall = self._limit
        self._limit = max(1.0, self._limit * DECREASE)

    def __repr__(self) -> str:
        return f"AdaptiveConcurrency(limit={self.limit}, max_concurrency={self.max_concurrency})"
