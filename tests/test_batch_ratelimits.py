"""`Client.map` against a server that enforces rate limits (tests/ratelimit_server.py,
in a process of its own): 2 000 prompts, no failed item, most of the limit's
throughput, few 429s; with OpenAI-style `x-ratelimit-*` headers and without them.

Throughput is compared with what the limits allow (requests per second admitted by
the server, from its first admission to its last), never with a wall-clock figure.
The limits are fixed windows of 0.5 s holding 80 requests and 4 000 tokens; the
prompts' sizes vary so that either limit can be the one that binds.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from ratelimit_server import Running, running

import llmx_sync as llmx

PROMPTS = 2000
LIMITS = {"requests": 80, "tokens": 4000, "window": 0.5}


def prompts(count: int = PROMPTS) -> list[str]:
    rng = random.Random(21)
    return [("word " * rng.randint(4, 80)) + str(index) for index in range(count)]


def run(url: str, concurrency: int | str) -> tuple[list[llmx.BatchItem], llmx.BatchRun]:
    client = llmx.Client(base_url=url, api_key="sk-test")
    batch = client.map(prompts(), model="m", concurrency=concurrency, progress=False)
    with client:
        items = list(batch)
    return items, batch


def check_items(items: list[llmx.BatchItem]) -> None:
    assert [item.index for item in items] == list(range(PROMPTS))
    failed = [item for item in items if not item.ok]
    assert not failed, failed[:3]
    assert all(item.result is not None and item.result.text.startswith("ok ") for item in items)


def run_auto(server: Running, label: str) -> tuple[float, float, dict[str, Any], llmx.BatchRun]:
    """A batch of `PROMPTS` with auto concurrency: the share of the limit's throughput it
    got, the share of its requests answered 429, the server's counts, the batch."""
    items, batch = run(server.url, "auto")
    stats = server.stats()
    check_items(items)
    ratio = server.rate(stats) / server.limit_rate(stats)
    answered_429 = stats["rejected"] / (stats["admitted"] + stats["rejected"])
    print(f"\n{label}, auto: {ratio:.0%} of the limit's throughput, {stats['rejected']} answered 429 "
          f"({answered_429:.1%}), {batch.summary}, {batch.concurrency!r}")
    return ratio, answered_429, stats, batch


def test_auto_concurrency_follows_the_rate_limit_headers() -> None:
    with running(**LIMITS) as server:
        ratio, answered_429, stats, batch = run_auto(server, "headers")
        assert stats["admitted"] == PROMPTS
        assert ratio >= 0.80
        assert answered_429 < 0.05
        assert batch.summary.rate_limited == stats["rejected"]  # every 429 reached the controller
        # Then fixed concurrency=64 on the same server: the number of 429s it gets, for the record.
        fixed_items, fixed = run(server.url, 64)
        fixed_429 = server.stats()["rejected"] - stats["rejected"]
        print(f"headers, concurrency=64: {fixed_429} answered 429, "
              f"{sum(not item.ok for item in fixed_items)} items failed, {fixed.summary}")
        assert fixed_429 > stats["rejected"]


def test_auto_concurrency_without_headers_follows_retry_after() -> None:
    with running(**LIMITS, headers=False) as server:
        ratio, answered_429, _, _ = run_auto(server, "no headers")
        assert ratio >= 0.70
        assert answered_429 < 0.05


@pytest.mark.parametrize("headers", [True, False])
def test_a_429_pauses_every_sender_until_retry_after(headers: bool) -> None:
    """Fixed concurrency learns nothing; auto pauses all senders at a 429, so a wall costs
    about one 429 per request in flight, not one per sender per retry."""
    with running(requests=10, tokens=100_000, window=0.3, latency=0.02, headers=headers) as server:
        client = llmx.Client(base_url=server.url, api_key="sk-test")
        with client:
            items = list(client.map([f"p{i}" for i in range(40)], model="m", progress=False,
                                    concurrency=llmx.AdaptiveConcurrency(initial=16)))
        stats = server.stats()
        assert all(item.ok for item in items)
        # 40 prompts at 10 per window: 4 windows. Sixteen in flight at the start meet the
        # first wall together; after it, the pause keeps them from meeting the next ones.
        assert stats["rejected"] <= 16 + 3 * 4
