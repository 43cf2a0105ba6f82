"""A batch of prompts against a rate-limited server: `Client.map` with
``concurrency="auto"`` against fixed 8, 64 and 256, and against the loop users write by
hand (a ``ThreadPoolExecutor`` of ``client.stream(...).collect()``), side by side.

The server is tests/ratelimit_server.py in a process of its own: fixed windows of
``--window`` seconds holding ``--requests`` requests and ``--tokens`` tokens, a 429
with ``Retry-After`` (and OpenAI's ``x-ratelimit-*`` headers, unless ``--no-headers``)
for a request that does not fit, answers ``--latency`` seconds after their headers.
Each run gets a fresh server. Prompts vary in size (4 to 80 words) so that either
limit can bind.

For each client: wall time, the throughput the server admitted (from its first
admission to its last) as a fraction of what the limits allow at the prompts' mean
cost (the baseline, measured in the same run), how many requests were answered 429
and their share of all requests, and how many items failed (the transport gives up
after ``request_max_retries``).

    python benchmarks/batch.py [--prompts 2000] [--requests 80 --tokens 4000 --window 0.5]
                               [--latency 0.05] [--no-headers] [--clients auto,8,64,256,pool]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from ratelimit_server import running  # noqa: E402

import llmx_sync as llmx  # noqa: E402


def prompts(count: int) -> list[str]:
    rng = random.Random(21)
    return [("word " * rng.randint(4, 80)) + str(index) for index in range(count)]


def by_hand(client: llmx.Client, given: list[str], workers: int) -> int:
    """The loop users write today: a thread pool, each thread retrying on its own."""

    def one(prompt: str) -> bool:
        try:
            client.stream(prompt, model="m").collect()
            return True
        except llmx.LlmxError:
            return False

    with ThreadPoolExecutor(workers) as pool:
        return sum(not ok for ok in pool.map(one, given))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=80)
    parser.add_argument("--tokens", type=int, default=4000)
    parser.add_argument("--window", type=float, default=0.5)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--headers", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--clients", default="auto,8,64,256,pool",
                        help="auto, a fixed number, or pool (a hand-written ThreadPoolExecutor of 64)")
    args = parser.parse_args()
    given = prompts(args.prompts)
    print(f"{args.prompts} prompts; limits: {args.requests} requests and {args.tokens} tokens per {args.window} s "
          f"window; {'x-ratelimit-* headers and ' if args.headers else ''}Retry-After; latency {args.latency} s")
    print(f"{'client':<14} {'wall s':>7} {'rate/s':>7} {'limit/s':>7} {'× limit':>7} {'429s':>6} {'429 %':>6} "
          f"{'failed':>6}")
    for name in args.clients.split(","):
        with running(requests=args.requests, tokens=args.tokens, window=args.window, latency=args.latency,
                     headers=args.headers) as server:
            client = llmx.Client(base_url=server.url, api_key="sk-bench")
            started = time.monotonic()
            with client:
                if name == "pool":
                    label, failed = "ThreadPool(64)", by_hand(client, given, 64)
                else:
                    concurrency: int | str = name if name == "auto" else int(name)
                    label = f"map({name})"
                    failed = sum(not item.ok for item in
                                 client.map(given, model="m", concurrency=concurrency, progress=False))
            wall = time.monotonic() - started
            stats = server.stats()
        sent = stats["admitted"] + stats["rejected"]
        rate, limit = server.rate(stats), server.limit_rate(stats)
        print(f"{label:<14} {wall:>7.1f} {rate:>7.1f} {limit:>7.1f} {rate / limit:>7.2f} {stats['rejected']:>6} "
              f"{100 * stats['rejected'] / sent:>5.1f}% {failed:>6}", flush=True)


if __name__ == "__main__":
    main()
