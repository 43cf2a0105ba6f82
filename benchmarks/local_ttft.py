"""Time to first token and tokens/s from real llama.cpp servers, through llmx_sync and
through the official ``openai`` package.

Starts the bundled SmolLM2-135M model with llama-cpp-python's server (`LocalServer`) and,
when it is built, with llama.cpp's ``llama-server`` (`LlamaServerBinary`), then asks each
the same short question at temperature 0, ``max_tokens`` 64, ``--runs`` times per client
(the two clients alternate, after one warm-up request each). Per client and server:

* ``ttft``: from the call to the first non-empty text delta in the caller's loop;
* ``tok/s``: text deltas after the first, over the time from the first to the last delta
  (llama_cpp.server sends one token per delta; llama-server now and then merges two, e.g.
  while it holds back a possible stop string, so its delta count is a bit lower);
* ``tok/s usage``: the same with the server's ``completion_tokens`` instead of the delta
  count, when the server reports usage (llama-server does; llama_cpp.server never does
  while streaming);
* ``total``: from the call to the end of the stream.

Medians are printed, with the ratio llmx_sync / openai (below 1: llmx_sync is faster for
times, slower for rates), and each server's start-up time (until ``GET /v1/models``
answers). Retries are counted too: llama-server drops a keep-alive connection after a
streamed answer without saying so, and a client that reuses it has to retry.

    python benchmarks/local_ttft.py [--runs 5] [--max-tokens 64] [--no-llama-server]

Needs ``bash scripts/install-local.sh`` (or ``pip install -e '.[local]'``) and
``pip install openai`` (the ``bench`` extra); runs on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

import llmx_sync as llmx  # noqa: E402
from llmx_sync.local import (  # noqa: E402
    LlamaServerBinary,
    LocalDependencyError,
    LocalModelError,
    LocalServer,
)

PROMPT = "Write a short paragraph about rivers."


@dataclass
class Run:
    ttft: float
    total: float
    deltas: int
    gen_seconds: float  # first delta -> last delta
    usage_tokens: int | None

    @property
    def rate(self) -> float | None:
        return (self.deltas - 1) / self.gen_seconds if self.deltas > 1 and self.gen_seconds > 0 else None

    @property
    def usage_rate(self) -> float | None:
        if self.usage_tokens is None or self.usage_tokens < 2 or self.gen_seconds <= 0:
            return None
        return (self.usage_tokens - 1) / self.gen_seconds


def _timed(deltas: Iterator[str], started: float, usage: Callable[[], int | None]) -> Run:
    first = last = None
    count = 0
    for text in deltas:
        if not text:
            continue
        now = time.perf_counter()
        if first is None:
            first = now
        last = now
        count += 1
    ended = time.perf_counter()
    if first is None or last is None:
        raise RuntimeError("the answer had no text")
    return Run(ttft=first - started, total=ended - started, deltas=count, gen_seconds=last - first,
               usage_tokens=usage())


class LlmxRunner:
    name = "llmx_sync"

    def __init__(self, base_url: str, model: str, max_tokens: int) -> None:
        self.client = llmx.Client(base_url=base_url)
        self.model = model
        self.max_tokens = max_tokens

    def run(self) -> Run:
        started = time.perf_counter()
        stream = self.client.stream(PROMPT, model=self.model, temperature=0, max_tokens=self.max_tokens)
        completed: list[llmx.Completed] = []

        def deltas() -> Iterator[str]:
            with stream:
                for event in stream:
                    if isinstance(event, llmx.OutputTextDelta):
                        yield event.delta
                    elif isinstance(event, llmx.Completed):
                        completed.append(event)

        def usage() -> int | None:
            usage = completed[0].token_usage if completed else None
            return usage.output_tokens if usage is not None else None

        return _timed(deltas(), started, usage)

    def close(self) -> None:
        self.client.close()


class OpenAIRunner:
    name = "openai"

    def __init__(self, base_url: str, model: str, max_tokens: int) -> None:
        from openai import OpenAI

        self.client = OpenAI(base_url=base_url, api_key="x")
        self.model = model
        self.max_tokens = max_tokens

    def run(self) -> Run:
        started = time.perf_counter()
        stream = self.client.chat.completions.create(
            model=self.model, messages=[{"role": "user", "content": PROMPT}], stream=True,
            temperature=0, max_tokens=self.max_tokens, stream_options={"include_usage": True},
        )
        tokens: list[int] = []

        def deltas() -> Iterator[str]:
            with stream:
                for chunk in stream:
                    if chunk.usage is not None:
                        tokens.append(chunk.usage.completion_tokens)
                    for choice in chunk.choices:
                        if choice.delta.content:
                            yield choice.delta.content

        return _timed(deltas(), started, lambda: tokens[-1] if tokens else None)

    def close(self) -> None:
        self.client.close()


class RetryCounter(logging.Handler):
    """Counts the retry messages of llmx_sync ("attempt N of M failed") and openai
    ("Retrying request")."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.counts: dict[str, int] = {"llmx_sync": 0, "openai": 0}

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.name.startswith("llmx_sync") and "failed" in message and "retrying" in message:
            self.counts["llmx_sync"] += 1
        elif record.name.startswith("openai") and "Retrying request" in message:
            self.counts["openai"] += 1


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.1f} ms" if unit == "ms" else f"{value:.1f}"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "-"


def bench_server(label: str, server: LocalServer, runs: int, max_tokens: int, counter: RetryCounter) -> None:
    assert server.model_id is not None
    runners = [LlmxRunner(server.base_url, server.model_id, max_tokens)]
    try:
        runners.append(OpenAIRunner(server.base_url, server.model_id, max_tokens))
    except ImportError:
        print("  (the openai package is not installed: `pip install openai`; llmx_sync only)")
    before = dict(counter.counts)
    results: dict[str, list[Run]] = {r.name: [] for r in runners}
    try:
        for runner in runners:  # warm-up: the first request of a prompt fills the KV cache
            runner.run()
        for _ in range(runs):
            for runner in runners:  # alternating, so that drift hits both alike
                results[runner.name].append(runner.run())
    finally:
        for runner in runners:
            runner.close()

    print(f"\n{label}: {server.base_url}  (start-up {server.startup_seconds:.2f} s, model {server.model_id})")
    header = f"  {'client':<10} {'ttft':>10} {'total':>10} {'deltas':>7} {'tok/s':>8} {'tok/s usage':>12} {'retries':>8}"
    print(header)
    medians: dict[str, dict[str, float | None]] = {}
    for name, rs in results.items():
        m = {
            "ttft": _median([r.ttft for r in rs]),
            "total": _median([r.total for r in rs]),
            "deltas": _median([float(r.deltas) for r in rs]),
            "rate": _median([r.rate for r in rs]),
            "usage_rate": _median([r.usage_rate for r in rs]),
        }
        medians[name] = m
        retries = counter.counts[name] - before[name]
        print(f"  {name:<10} {_fmt(m['ttft'], 'ms'):>10} {_fmt(m['total'], 'ms'):>10} "
              f"{_fmt(m['deltas'], ''):>7} {_fmt(m['rate'], ''):>8} {_fmt(m['usage_rate'], ''):>12} {retries:>8}")
    if "openai" in medians:
        a, b = medians["llmx_sync"], medians["openai"]
        print(f"  {'ratio':<10} {_ratio(a['ttft'], b['ttft']):>10} {_ratio(a['total'], b['total']):>10} "
              f"{'':>7} {_ratio(a['rate'], b['rate']):>8} {_ratio(a['usage_rate'], b['usage_rate']):>12}"
              "   (llmx_sync / openai)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--no-llama-server", action="store_true", help="only llama-cpp-python's server")
    args = parser.parse_args()

    counter = RetryCounter()
    for name in ("llmx_sync", "openai"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        logger.addHandler(counter)
        logger.propagate = False  # counted, not printed

    print(f"prompt {PROMPT!r}, temperature 0, max_tokens {args.max_tokens}, {args.runs} runs per client "
          f"(medians), Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    servers: list[tuple[str, Callable[[], LocalServer]]] = [("llama_cpp.server", LocalServer)]
    if not args.no_llama_server:
        servers.append(("llama-server", LlamaServerBinary))
    for label, factory in servers:
        server = factory()
        try:
            server.start()
        except (LocalDependencyError, LocalModelError) as exc:
            print(f"\n{label}: skipped ({exc})")
            continue
        try:
            bench_server(label, server, args.runs, args.max_tokens, counter)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
