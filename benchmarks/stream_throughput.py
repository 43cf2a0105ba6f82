"""How fast a streamed answer goes from a loopback socket to a ``for`` loop.

A server process sends an answer of 20 000 ``chat.completion.chunk`` events (a few
tokens each, one HTTP chunk per event, as OpenAI and llama.cpp send them) as fast as
it can, then a usage chunk and ``[DONE]``. The clients read it:

* ``bare``: ``requests`` + split on blank lines + ``json.loads``, the floor;
* ``llmx``: ``for event in client.stream(...)``, with the reader thread;
* ``httpx``: the same bare loop on ``httpx`` (if installed);
* ``openai``: ``OpenAI(...).chat.completions.create(stream=True)`` (if installed).

Each reads the long answer ``--runs`` times, the clients taking turns; printed: events/s
and µs per chunk, median [min-max], with each median over the floor's, and the CPU time
per chunk of this process (every thread; the server's not counted), which a busy
machine disturbs much less than the wall clock. "first" is the
time from the call to the first text delta in the loop, on a short answer (10 chunks),
median of 200 (`first_event.py` measures it at every size, fresh and reused).

    python benchmarks/stream_throughput.py [--chunks 20000] [--runs 7] [--clients bare,llmx,httpx,openai]

To see where the time goes in both threads (cProfile sees only the main one):

    py-spy record -f raw -o profile.txt -- python benchmarks/stream_throughput.py --runs 20
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

from harness import Figures, LoopbackServer, bodies, contenders, cpu_seconds, describe_machine, interleaved, text_body

# Time to first event is measured on short answers, many times: on the long one it
# mostly measures how the server's bulk write and the client share the CPUs.
SHORT_CHUNKS = 10
SHORT_RUNS = 200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--clients", default="bare,llmx,httpx,openai", help="bare comes first: it is the floor")
    args = parser.parse_args()
    chosen = contenders(args.clients)
    answer = bodies({"long": lambda: text_body(args.chunks), "short": lambda: text_body(SHORT_CHUNKS)})

    with LoopbackServer(answer) as base_url:
        clients = {c.name: c.new(base_url) for c in chosen}
        totals: dict[str, list[float]] = {c.name: [] for c in chosen}
        cpus: dict[str, list[float]] = {c.name: [] for c in chosen}
        firsts: dict[str, float] = {}
        try:
            for c in chosen:  # warm-up: imports, connection, caches
                c.read(clients[c.name], base_url, "long", time.perf_counter())
            for _, name in interleaved(args.runs, clients):
                contender = next(c for c in chosen if c.name == name)
                gc.collect()
                cpu, start = cpu_seconds(), time.perf_counter()
                deltas, _ = contender.read(clients[name], base_url, "long", start)
                totals[name].append(time.perf_counter() - start)
                cpus[name].append(cpu_seconds() - cpu)
                if deltas != args.chunks:
                    raise SystemExit(f"{name}: saw {deltas} text deltas, expected {args.chunks}")
            for c in chosen:
                seen = [c.read(clients[c.name], base_url, "short", time.perf_counter()) for _ in range(SHORT_RUNS)]
                if any(deltas != SHORT_CHUNKS for deltas, _ in seen):
                    raise SystemExit(f"{c.name}: an answer did not have {SHORT_CHUNKS} text deltas")
                firsts[c.name] = statistics.median(first for _, first in seen)
        finally:
            for c in chosen:
                c.close(clients[c.name])

    print(f"{args.chunks} chunks, median [min-max] of {args.runs} runs; {describe_machine()}")
    print(f"{'client':<8} {'events/s':>26} {'us/chunk':>20} {'x floor':>7} {'CPU us/chunk':>20} {'x floor':>7} "
          f"{'first (ms)':>11} {'vs floor':>9}")
    floor = chosen[0].name
    for c in chosen:
        total, cpu = Figures(tuple(totals[c.name])), Figures(tuple(cpus[c.name]))
        rate = Figures(tuple(args.chunks / t for t in totals[c.name]))
        print(f"{c.name:<8} {rate.show(1, 0):>26} {total.show(1e6 / args.chunks):>20} "
              f"{total.median / Figures(tuple(totals[floor])).median:>7.2f} {cpu.show(1e6 / args.chunks):>20} "
              f"{cpu.median / Figures(tuple(cpus[floor])).median:>7.2f} {firsts[c.name] * 1e3:>11.2f} "
              f"{(firsts[c.name] - firsts[floor]) * 1e3:>+8.2f}ms")


if __name__ == "__main__":
    main()
