"""Parse throughput of the SSE path, against a bare ``split + json.loads`` loop, and
what each stage of the parser costs per chunk.

Run: ``python benchmarks/parse_throughput.py [chunks]``. Everything happens in memory:
a realistic OpenAI-style body of 20 000 content chunks (a few tokens each, some of them
not ASCII) is built, then timed (the best CPU time of 15 runs, the stages taking turns) as

  (a) the floor: split on ``b"\\n\\n"`` + ``json.loads`` + reading the delta,
  (a2) the same on the decoded text (``json.loads`` of bytes pays for detecting the encoding),
  (b) `SSEDecoder` alone, fed ~4 KiB reads,
  (j) `_jsonrules.loads_chunk` alone, on each event's data (what (c) calls per chunk),
  (j2) ``json.loads`` alone on the same strings, for comparison,
  (c) `ChatSSEParser.feed` over the same reads, then `finish`.

(c) - (b) - (j) is what the Chat Completions rules themselves take (reading the chunk's
fields, making the events).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import AnyStr

from harness import chunk, sse, usage_chunk

from llmx_sync._jsonrules import loads_chunk
from llmx_sync.chat import ChatSSEParser
from llmx_sync.sse import SSEDecoder

READ_SIZE = 4096
RUNS = 15
WORDS = ["The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", ".", " Über", " naïve", " café",
         "\n\n", " `code`", " 1,234", ' "quoted"', " 東京"]


def build_body(n_chunks: int) -> bytes:
    chunks = [chunk({"role": "assistant", "content": "", "refusal": None})]
    for i in range(n_chunks):
        # a few tokens per chunk, as servers batch them
        chunks.append(chunk({"content": "".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(1 + i % 3))}))
    chunks += [chunk({}, "stop"), usage_chunk(n_chunks)]
    return sse(chunks)


def reads(body: bytes) -> list[bytes]:
    return [body[i:i + READ_SIZE] for i in range(0, len(body), READ_SIZE)]


def bare_loop(body: AnyStr, separator: AnyStr, prefix: AnyStr, done: AnyStr) -> int:
    count = 0
    for frame in body.split(separator):
        if not frame.startswith(prefix):
            continue
        payload = frame[len(prefix):]
        if payload == done:
            break
        parsed = json.loads(payload)
        choices = parsed["choices"]
        if choices and choices[0]["delta"].get("content"):
            count += 1
    return count


def decoder_only(pieces: list[bytes]) -> int:
    decoder = SSEDecoder()
    count = 0
    for piece in pieces:
        count += len(decoder.feed(piece))
    decoder.finish()
    return count


def chat_parser(pieces: list[bytes]) -> int:
    parser = ChatSSEParser()
    count = 0
    for piece in pieces:
        count += len(parser.feed(piece))
    count += len(parser.finish())
    assert parser.error is None
    return count


def each(loads: Callable[[str], object], data: list[str]) -> int:
    for text in data:
        loads(text)
    return len(data)


def best_times(runs: dict[str, Callable[[], int]], rounds: int = RUNS) -> dict[str, float]:
    """The best CPU time of each (this thread's: time spent waiting for a CPU on a
    shared machine does not count), over `rounds` rounds in which each runs once in turn."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.thread_time()
            run()
            best[name] = min(best[name], time.thread_time() - start)
    return best


def main() -> None:
    n_chunks = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    body = build_body(n_chunks)
    pieces = reads(body)
    text = body.decode()
    data = [event.data for event in SSEDecoder().feed(body) if event.data != "[DONE]"]
    print(f"body: {len(body) / 1e6:.2f} MB, {n_chunks} content chunks, {len(pieces)} reads of {READ_SIZE} bytes")
    results = best_times({
        "(a) split + json.loads (floor)": lambda: bare_loop(body, b"\n\n", b"data: ", b"[DONE]"),
        "(a2) the same on decoded text": lambda: bare_loop(text, "\n\n", "data: ", "[DONE]"),
        "(b) SSEDecoder": lambda: decoder_only(pieces),
        "(j) loads_chunk alone": lambda: each(loads_chunk, data),
        "(j2) json.loads alone": lambda: each(json.loads, data),
        "(c) ChatSSEParser.feed": lambda: chat_parser(pieces),
    })
    for name, seconds in results.items():
        print(f"{name:34s} {seconds / n_chunks * 1e6:6.2f} µs/chunk")
    parser, floor = results["(c) ChatSSEParser.feed"], results["(a) split + json.loads (floor)"]
    rules = parser - results["(b) SSEDecoder"] - results["(j) loads_chunk alone"]
    print(f"{'(c) - (b) - (j): the chat rules':34s} {rules / n_chunks * 1e6:6.2f} µs/chunk")
    print(f"ratio (c)/(a): {parser / floor:.2f}   (c)/(a2): {parser / results['(a2) the same on decoded text']:.2f}")


if __name__ == "__main__":
    main()
