"""Time to the first text delta of a streamed answer, side by side: llmx_sync, a bare
``requests`` loop, a bare ``httpx`` loop and the official ``openai`` SDK.

A loopback server in its own process sends answers of 50, 500, 2 000 and 20 000 text
chunks (one HTTP chunk per SSE event, as fast as it can). Each client streams each
answer and the time from the call to the first text delta in the caller's loop is
taken, two ways:

* ``fresh``: a new client for each request, its creation counted (a script, a
  notebook cell, a CLI call: the connection pool is made and the connection opened);
* ``reused``: one client whose connection is already open (a web app, a tool loop).

Every answer is read to its end (and the count of deltas checked), so that the next
request finds the connection back in the pool. The clients take turns within each
round, so that a burst of load on the machine falls on all of them. Printed: median
[min-max] in ms over ``--runs`` rounds, and each median over the bare ``requests``
loop's (the issue's target: 1.15x or less).

    python benchmarks/first_event.py [--chunks 50,500,2000,20000] [--runs 9]
                                     [--clients bare,llmx,httpx,openai]
"""

from __future__ import annotations

import argparse
import gc
import time

from harness import Contender, Figures, LoopbackServer, bodies, contenders, describe_machine, ratio, text_body


def measure(contender: Contender, client: object | None, base_url: str, chunks: int) -> float:
    """Seconds to the first delta of one answer of `chunks` deltas; a new client when `client` is None."""
    gc.collect()  # a collection of the previous run's garbage must not land in this one
    start = time.perf_counter()
    own = client is None
    if own:
        client = contender.new(base_url)
    try:
        deltas, first = contender.read(client, base_url, f"n{chunks}", start)
    finally:
        if own:
            contender.close(client)
    if deltas != chunks:
        raise SystemExit(f"{contender.name}: saw {deltas} text deltas, expected {chunks}")
    return first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", default="50,500,2000,20000", help="answer sizes in text chunks, comma-separated")
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--clients", default="bare,llmx,httpx,openai", help="bare comes first: it is the baseline")
    args = parser.parse_args()
    sizes = [int(part) for part in args.chunks.split(",")]
    chosen = contenders(args.clients)
    answer = bodies({f"n{n}": (lambda n=n: text_body(n)) for n in sizes})

    with LoopbackServer(answer) as base_url:
        print(f"time to the first text delta, ms: median [min-max] of {args.runs} rounds; {describe_machine()}")
        reused = {c.name: c.new(base_url) for c in chosen}
        results: dict[tuple[str, str, int], Figures] = {}
        try:
            for n in sizes:
                for c in chosen:  # warm-up: imports, the server's body, the reused connection
                    measure(c, None, base_url, n)
                    measure(c, reused[c.name], base_url, n)
                fresh: dict[str, list[float]] = {c.name: [] for c in chosen}
                kept: dict[str, list[float]] = {c.name: [] for c in chosen}
                for _ in range(args.runs):
                    for c in chosen:
                        fresh[c.name].append(measure(c, None, base_url, n))
                        kept[c.name].append(measure(c, reused[c.name], base_url, n))
                for c in chosen:
                    results["fresh", c.name, n] = Figures(tuple(fresh[c.name]))
                    results["reused", c.name, n] = Figures(tuple(kept[c.name]))
        finally:
            for c in chosen:
                c.close(reused[c.name])

    base = chosen[0].name
    for mode in ("fresh", "reused"):
        print(f"\n{mode} client" + ("" if mode == "fresh" else " (connection already open)"))
        print(f"{'client':<8}" + "".join(f"{f'{n} chunks':>26}" for n in sizes))
        for c in chosen:
            cells = []
            for n in sizes:
                mine = results[mode, c.name, n]
                cells.append(f"{mine.show(1e3)} {ratio(mine, results[mode, base, n]):>6}")
            print(f"{c.name:<8}" + "".join(f"{cell:>26}" for cell in cells))
    print(f"\n(ratios: each median over {base}'s in the same round)")


if __name__ == "__main__":
    main()
