"""The rules of `concurrency.AdaptiveConcurrency` and `FixedConcurrency`, on a fake clock."""

from __future__ import annotations

import threading

import pytest

from llmx_sync.concurrency import DECREASE, AdaptiveConcurrency, FixedConcurrency
from llmx_sync.ratelimits import RateLimitCounts, rate_limit_counts

NEVER = threading.Event()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def headers(requests_left: int, tokens_left: int, reset: str = "1s") -> dict[str, str]:
    return {"x-ratelimit-limit-requests": "100", "x-ratelimit-remaining-requests": str(requests_left),
            "x-ratelimit-reset-requests": reset, "x-ratelimit-limit-tokens": "10000",
            "x-ratelimit-remaining-tokens": str(tokens_left), "x-ratelimit-reset-tokens": reset}


def test_rate_limit_counts_read_openai_headers() -> None:
    assert rate_limit_counts(headers(7, 900, "6m0s"), "requests") == RateLimitCounts(100, 7, 360.0)
    assert rate_limit_counts(headers(7, 900, "20ms"), "tokens") == RateLimitCounts(10000, 900, 0.02)
    assert rate_limit_counts({"X-RateLimit-Limit-Requests": "5", "X-RateLimit-Remaining-Requests": "2"},
                             "requests") == RateLimitCounts(5, 2, None)
    assert rate_limit_counts({"x-ratelimit-limit-requests": "0", "x-ratelimit-remaining-requests": "0"},
                             "requests") is None
    assert rate_limit_counts({"x-ratelimit-remaining-requests": "2"}, "requests") is None


def test_slow_start_then_additive_increase() -> None:
    limit = AdaptiveConcurrency(64, initial=4, clock=Clock())
    slots = [limit.acquire(10, NEVER) for _ in range(4)]
    for slot in slots:
        assert slot is not None
        limit.done(slot)
    assert limit.limit == 6  # +0.5 per answer before the first signal
    slot = limit.acquire(10, NEVER)
    assert slot is not None
    limit.congested(slot, 0.0)
    assert limit._limit == pytest.approx(6 * DECREASE)
    limit.done(slot)  # (its retry was answered)
    after = limit._limit
    for _ in range(10):
        slot = limit.acquire(10, NEVER)
        assert slot is not None
        limit.done(slot)
    assert after < limit._limit < after + 3  # about one per round trip now


def test_a_429_decreases_once_per_round_and_pauses_every_sender() -> None:
    clock = Clock()
    limit = AdaptiveConcurrency(64, initial=8, clock=clock)
    slots = [limit.acquire(1, NEVER) for _ in range(8)]
    assert all(slots)
    for slot in slots[:5]:  # five answers of the same round are 429s: one decrease
        assert slot is not None
        limit.congested(slot, 2.0)
    assert limit.limit == 4 and limit.decreases == 1 and limit.rate_limited == 5
    for slot in slots:
        assert slot is not None
        limit.done(slot)
    stop = threading.Event()
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(limit.acquire(1, stop)))
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive()  # paused: 2 s on the fake clock have not passed
    clock.now += 2.0
    waiter.join(2)
    assert got and got[0] is not None
    later = got[0]
    limit.congested(later, 0.0)  # a request sent after the decrease: decreases again
    assert limit.decreases == 2


def with_budget(clock: Clock, requests_left: int, tokens_left: int, reset: str) -> AdaptiveConcurrency:
    """A concurrency that heard these counts from its first answer, that answer still in flight."""
    limit = AdaptiveConcurrency(64, initial=10, clock=clock)
    first = limit.acquire(100, NEVER)
    assert first is not None
    limit.heard(first, headers(requests_left=requests_left, tokens_left=tokens_left, reset=reset))
    return limit


def waits(limit: AdaptiveConcurrency, need: float) -> bool:
    """Whether `acquire(need)` is still waiting after 0.3 s (then stopped)."""
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    slot = limit.acquire(need, stop)
    timer.join()
    return slot is None


def test_the_budget_waits_for_the_reset_instead_of_running_into_the_wall() -> None:
    clock = Clock()
    limit = with_budget(clock, requests_left=2, tokens_left=5000, reset="3s")
    assert limit.acquire(100, NEVER) is not None
    assert limit.acquire(100, NEVER) is not None
    assert waits(limit, 100)  # the requests window is used up: waits for its reset
    assert limit.waits_for_reset == 1 and limit.decreases == 1
    clock.now += 3.0
    assert limit.acquire(100, NEVER) is not None  # reset: sending again


def test_the_tokens_budget_counts_each_requests_need() -> None:
    limit = with_budget(Clock(), requests_left=50, tokens_left=250, reset="1s")
    assert limit.acquire(100, NEVER) is not None
    assert limit.acquire(100, NEVER) is not None
    stop = threading.Event()
    stop.set()
    assert limit.acquire(100, stop) is None and limit.waits_for_reset == 0  # stopped before looking
    assert waits(limit, 100)  # 250 - 2 × 100 left: the next 100 does not fit
    assert limit.waits_for_reset == 1


def test_requests_sent_after_an_answer_are_counted_against_its_remaining() -> None:
    limit = AdaptiveConcurrency(64, initial=10, clock=Clock())
    early = limit.acquire(1, NEVER)
    later = [limit.acquire(1, NEVER) for _ in range(3)]
    assert early is not None and all(later)
    limit.heard(early, headers(requests_left=5, tokens_left=5000))
    assert limit._budgets["requests"].left == 2  # 5, less the 3 sent since whose answers are unheard
    newer = later[0]
    assert newer is not None
    limit.heard(newer, headers(requests_left=99, tokens_left=5000))  # a later answer says more
    assert limit._budgets["requests"].left == 99 - 2
    limit.heard(early, headers(requests_left=1, tokens_left=5000))  # heard already: ignored
    older = limit.acquire(1, NEVER)
    assert older is not None and limit._budgets["requests"].left == 96


def test_no_increase_without_headroom() -> None:
    limit = AdaptiveConcurrency(64, initial=4, clock=Clock())
    slot = limit.acquire(1, NEVER)
    assert slot is not None
    limit.heard(slot, headers(requests_left=3, tokens_left=5000))
    limit.done(slot)
    assert limit.limit == 4


def test_fixed_concurrency_keeps_n_in_flight_and_learns_nothing() -> None:
    limit = FixedConcurrency(2, clock=Clock())
    a, b = limit.acquire(1, NEVER), limit.acquire(1, NEVER)
    assert a is not None and b is not None
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    assert limit.acquire(1, stop) is None  # two in flight: the third waits
    limit.congested(a, 5.0)
    assert limit.limit == 2 and limit.rate_limited == 1
    limit.done(a)
    assert limit.acquire(1, NEVER) is not None  # no pause: the transport waits for the one told to
