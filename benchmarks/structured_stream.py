"""CPU spent on a streamed JSON answer with ``response_format`` (partial values as it
streams, then the whole answer parsed and validated) and without it (the same text).

The loopback server (its own process) sends a JSON document (a catalog of items: ids,
names, prices, tags, flags, descriptions) of 20 KB, 100 KB, 500 KB and 1 MB in deltas of
``--delta`` characters (5: a token or two), as fast as it can. The client reads the whole
answer with ``for event in stream`` then ``stream.collect()``: with
``response_format=Catalog`` (a dataclass) it gets ``OutputJsonDelta`` events and
``parsed``; without it, only the text. Checked on every run: the text is the document,
and with ``response_format`` the last ``OutputJsonDelta`` is the whole document's value
and ``parsed`` has every item.

Printed per size: this process's CPU seconds (every thread; the server's not counted),
median [min-max] of ``--runs`` runs of each, the ratio (the issue's target: 2x or less),
and how many ``OutputJsonDelta`` events an answer had. A size whose CPU with
``response_format`` would pass ``--max-cpu`` seconds per run (estimated from the size
before it, as if it grew with the square of the size) is skipped, so the script ends
on a version where it still grows that way.

    python benchmarks/structured_stream.py [--sizes 20,100,500,1000] [--runs 5] [--delta 5]
                                           [--max-cpu 60]
"""

from __future__ import annotations

import argparse
import gc
import json
from dataclasses import dataclass

from harness import Figures, LoopbackServer, bodies, chunk, cpu_seconds, describe_machine, http_chunked, usage_chunk


@dataclass
class Item:
    id: int
    name: str
    price: float
    tags: list[str]
    in_stock: bool
    description: str


@dataclass
class Catalog:
    title: str
    items: list[Item]


def document(kilobytes: int) -> str:
    """A catalog's JSON text of about `kilobytes` KB, pretty-printed as models write it."""
    items = []
    size = 0
    while size < kilobytes * 1000:
        i = len(items)
        item = {"id": i, "name": f"Item number {i}", "price": round(3.5 + i * 0.25, 2),
                "tags": ["blue", "large"] if i % 2 else ["red"], "in_stock": i % 3 != 0,
                "description": f"A sturdy thing, \"model {i}\", good for the kitchen and the garden."}
        items.append(item)
        size += len(json.dumps(item, indent=2)) + 4
    return json.dumps({"title": "Everything we sell", "items": items}, indent=2)


def answer_body(kilobytes: int, delta: int) -> bytes:
    text = document(kilobytes)
    chunks = [chunk({"role": "assistant", "content": "", "refusal": None})]
    chunks += [chunk({"content": text[i:i + delta]}) for i in range(0, len(text), delta)]
    chunks += [chunk({}, "stop"), usage_chunk(len(text) // 4)]
    return http_chunked(chunks)


def one_run(client: object, kilobytes: int, structured: bool) -> tuple[float, int]:
    """(CPU seconds, OutputJsonDelta events) of reading the whole answer once."""
    from llmx_sync import Client, OutputJsonDelta

    assert isinstance(client, Client)
    expected = document(kilobytes)
    gc.collect()
    cpu = cpu_seconds()
    stream = client.stream("catalog", model=f"kb{kilobytes}", response_format=Catalog if structured else None)
    last = None
    values = 0
    for event in stream:
        if type(event) is OutputJsonDelta:
            values += 1
            last = event.value
    result = stream.collect()
    cpu = cpu_seconds() - cpu
    if result.text != expected:
        raise SystemExit(f"{kilobytes} KB: the text is not the document")
    if structured:
        if last != json.loads(expected):
            raise SystemExit(f"{kilobytes} KB: the last OutputJsonDelta is not the whole document")
        if not isinstance(result.parsed, Catalog) or len(result.parsed.items) != len(json.loads(expected)["items"]):
            raise SystemExit(f"{kilobytes} KB: parsed is not the catalog")
    return cpu, values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="20,100,500,1000", help="answer sizes in KB, comma-separated")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--delta", type=int, default=5, help="characters per text delta")
    parser.add_argument("--max-cpu", type=float, default=60.0,
                        help="skip a size whose run with response_format would take longer (CPU s)")
    args = parser.parse_args()
    sizes = [int(part) for part in args.sizes.split(",")]

    from llmx_sync import Client

    answer = bodies({f"kb{kb}": (lambda kb=kb: answer_body(kb, args.delta)) for kb in sizes})
    with LoopbackServer(answer) as base_url, Client(base_url=base_url, api_key="x") as client:
        print(f"a JSON answer in {args.delta}-character deltas; CPU s per answer, median [min-max] of "
              f"{args.runs} runs; {describe_machine()}")
        print(f"{'size':>7} {'deltas':>7} {'without':>22} {'with response_format':>24} {'ratio':>6} {'values':>7}")
        previous: tuple[int, float] | None = None
        for kb in sizes:
            deltas = -(-len(document(kb)) // args.delta)
            if previous is not None:
                estimate = previous[1] * (kb / previous[0]) ** 2
                if estimate > args.max_cpu:
                    print(f"{kb:>5}KB {deltas:>7} skipped: about {estimate:.0f} s of CPU per run with "
                          f"response_format, estimated from {previous[0]} KB (--max-cpu {args.max_cpu:g})")
                    continue
            one_run(client, kb, False)  # warm-up: the server builds the body
            without, with_format, values = [], [], 0
            for _ in range(args.runs):
                without.append(one_run(client, kb, False)[0])
                seconds, values = one_run(client, kb, True)
                with_format.append(seconds)
                if seconds > args.max_cpu:
                    break
            plain, shaped = Figures(tuple(without)), Figures(tuple(with_format))
            print(f"{kb:>5}KB {deltas:>7} {plain.show(1, 3):>22} {shaped.show(1, 3):>24} "
                  f"{shaped.median / plain.median:>5.2f}x {values:>7}", flush=True)
            previous = (kb, shaped.median)


if __name__ == "__main__":
    main()
