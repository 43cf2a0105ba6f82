"""Parse throughput of the SSE path, against a bare ``split + json.loads`` loop.

Run: ``python benchmarks/parse_throughput.py [chunks]``. Everything happens in memory:
a realistic OpenAI-style body of 20 000 content chunks is built, then timed
(best of several runs) as
  (a) the floor: split on ``b"\\n\\n"`` + ``json.loads`` + reading the delta,
  (a2) the same on the decoded text (``json.loads`` of bytes pays for detecting the encoding),
  (b) `SSEDecoder` alone, fed ~4 KiB reads,
  (c) `ChatSSEParser.feed` over the same reads, then `finish`.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import AnyStr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmx_sync.chat import ChatSSEParser  # noqa: E402
from llmx_sync.sse import SSEDecoder  # noqa: E402

READ_SIZE = 4096
RUNS = 7
WORDS = ["The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", ".", " Über", " naïve", " café",
         "\n\n", " `code`", " 1,234", ' "quoted"', " 東京"]


def _chunk(delta: dict[str, object], finish_reason: str | None = None) -> bytes:
    chunk = {
        "id": "chatcmpl-AbCdEfGhIjKlMnOpQrStUvWxYz012",
        "object": "chat.completion.chunk",
        "created": 1718345013,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_0ba0d124f1",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


def build_body(n_chunks: int) -> bytes:
    parts = [_chunk({"role": "assistant", "content": "", "refusal": None})]
    for i in range(n_chunks):
        # a few tokens per chunk, as servers batch them
        text = "".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(1 + i % 3))
        parts.append(_chunk({"content": text}))
    parts.append(_chunk({}, "stop"))
    usage = {"id": "chatcmpl-AbCdEfGhIjKlMnOpQrStUvWxYz012", "object": "chat.completion.chunk", "created": 1718345013,
             "model": "gpt-4o-mini-2024-07-18", "choices": [],
             "usage": {"prompt_tokens": 12, "completion_tokens": n_chunks, "total_tokens": n_chunks + 12}}
    parts.append(b"data: " + json.dumps(usage, separators=(",", ":")).encode() + b"\n\ndata: [DONE]\n\n")
    return b"".join(parts)


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
        chunk = json.loads(payload)
        choices = chunk["choices"]
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


def best_time(run: Callable[[], int]) -> float:
    best = float("inf")
    for _ in range(RUNS):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    n_chunks = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    body = build_body(n_chunks)
    pieces = reads(body)
    print(f"body: {len(body) / 1e6:.2f} MB, {n_chunks} content chunks, {len(pieces)} reads of {READ_SIZE} bytes")
    floor = best_time(lambda: bare_loop(body, b"\n\n", b"data: ", b"[DONE]"))
    text = body.decode()
    results = {
        "(a) split + json.loads (floor)": floor,
        "(a2) the same on decoded text": best_time(lambda: bare_loop(text, "\n\n", "data: ", "[DONE]")),
        "(b) SSEDecoder": best_time(lambda: decoder_only(pieces)),
        "(c) ChatSSEParser.feed": best_time(lambda: chat_parser(pieces)),
    }
    for name, seconds in results.items():
        print(f"{name:34s} {seconds / n_chunks * 1e6:6.2f} µs/chunk")
    parser = results["(c) ChatSSEParser.feed"]
    print(f"ratio (c)/(a): {parser / floor:.2f}   (c)/(a2): {parser / results['(a2) the same on decoded text']:.2f}")


if __name__ == "__main__":
    main()
