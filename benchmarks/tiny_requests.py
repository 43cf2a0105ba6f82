"""Tiny streamed requests on kept-alive connections, as a tool loop or a busy web app
makes them: requests per second and CPU microseconds per request, for llmx_sync, a
bare ``requests`` loop, a bare ``httpx`` loop and the official ``openai`` SDK.

The loopback server (its own process) answers each request with a one-delta answer
(role chunk, ``"ok"``, finish chunk, usage, ``[DONE]``). Each client is made once and
warmed up; then ``--requests`` requests are made one after another (``sequential``),
and the same number spread over 8 threads sharing the client (``8 threads``). CPU is
this process's (every thread; the server's is not counted). The clients take turns in
each round. Printed: median [min-max] over ``--runs`` rounds, and each median over the
bare ``requests`` loop's (the issue's target: at least 1.00x in requests/s).

    python benchmarks/tiny_requests.py [--requests 400] [--runs 7] [--threads 8]
                                       [--clients bare,llmx,httpx,openai]
"""

from __future__ import annotations

import argparse
import gc
import threading
import time

from harness import Contender, Figures, LoopbackServer, bodies, contenders, cpu_seconds, describe_machine, text_body

MODEL = "n1"


def one_round(contender: Contender, client: object, base_url: str, requests: int, threads: int) -> tuple[float, float]:
    """(requests/s, CPU seconds per request) of `requests` requests over `threads` threads."""
    failures: list[str] = []

    def work(count: int) -> None:
        for _ in range(count):
            deltas, _ = contender.read(client, base_url, MODEL, 0.0)
            if deltas != 1:
                failures.append(f"{contender.name}: saw {deltas} text deltas, expected 1")

    shares = [requests // threads + (1 if i < requests % threads else 0) for i in range(threads)]
    gc.collect()
    cpu, wall = cpu_seconds(), time.perf_counter()
    if threads == 1:
        work(requests)
    else:
        workers = [threading.Thread(target=work, args=(share,)) for share in shares]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    if failures:
        raise SystemExit(failures[0])
    return requests / wall, cpu / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400, help="requests per round and client")
    parser.add_argument("--runs", type=int, default=7, help="rounds")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--clients", default="bare,llmx,httpx,openai", help="bare comes first: it is the baseline")
    args = parser.parse_args()
    chosen = contenders(args.clients)

    with LoopbackServer(bodies({MODEL: lambda: text_body(1)})) as base_url:
        print(f"{args.requests} tiny streamed requests per round, {args.runs} rounds; {describe_machine()}")
        clients = {c.name: c.new(base_url) for c in chosen}
        rates: dict[tuple[int, str], list[float]] = {}
        cpus: dict[tuple[int, str], list[float]] = {}
        try:
            for c in chosen:
                one_round(c, clients[c.name], base_url, 50, args.threads)  # warm-up: connections, caches
            for _ in range(args.runs):
                for threads in (1, args.threads):
                    for c in chosen:
                        rate, cpu = one_round(c, clients[c.name], base_url, args.requests, threads)
                        rates.setdefault((threads, c.name), []).append(rate)
                        cpus.setdefault((threads, c.name), []).append(cpu)
        finally:
            for c in chosen:
                c.close(clients[c.name])

    base = chosen[0].name
    for threads in (1, args.threads):
        print(f"\n{'sequential' if threads == 1 else f'{threads} threads, one shared client'}")
        print(f"{'client':<8} {'requests/s':>24} {'x ' + base:>7} {'CPU us/request':>24} {'x ' + base:>7}")
        base_rate = Figures(tuple(rates[threads, base])).median
        base_cpu = Figures(tuple(cpus[threads, base])).median
        for c in chosen:
            rate, cpu = Figures(tuple(rates[threads, c.name])), Figures(tuple(cpus[threads, c.name]))
            print(f"{c.name:<8} {rate.show(1, 0):>24} {rate.median / base_rate:>6.2f}x "
                  f"{cpu.show(1e6, 0):>24} {cpu.median / base_cpu:>6.2f}x")


if __name__ == "__main__":
    main()
