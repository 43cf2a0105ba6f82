"""How fast a streamed answer goes from a loopback socket to a ``for`` loop.

A server process sends an answer of 20 000 ``chat.completion.chunk`` events (a few
tokens each, one HTTP chunk per event, as OpenAI and llama.cpp send them) as fast as
it can, then a usage chunk and ``[DONE]``. Three clients read it:

* ``bare``: ``requests`` + split on blank lines + ``json.loads``, the floor;
* ``llmx_sync``: ``for event in client.stream(...)``, with the reader thread;
* ``openai``: ``OpenAI(...).chat.completions.create(stream=True)`` (if installed).

Each is run several times; the medians are printed with the ratio to the floor.
"first" is the time from the call to the first text delta in the loop, on a short
answer (10 chunks), median of 200.

    python benchmarks/stream_throughput.py [--chunks 20000] [--runs 7]

To see where the time goes in both threads (cProfile sees only the main one):

    py-spy record -f raw -o profile.txt -- python benchmarks/stream_throughput.py --runs 20
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

MODEL = "gpt-4o-mini"
# Time to first event is measured on short answers, many times: on the long one it
# mostly measures how the server's bulk write and the client share the CPUs.
SHORT_MODEL = "short"
SHORT_CHUNKS = 10
SHORT_RUNS = 200
WORDS = ["Hello", " there", ",", " how", " can", " I", " help", " you", " today", "?", " The", " answer",
         " is", " forty", "-two", "."]


# --- the server (its own process) ----------------------------------------------------


def _chunk(delta: dict[str, str | None], finish_reason: str | None = None) -> dict[str, object]:
    return {
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", "object": "chat.completion.chunk",
        "created": 1741570283, "model": "gpt-4o-mini-2024-07-18", "service_tier": "default",
        "system_fingerprint": "fp_06737a9306",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def build_body(chunks: int) -> bytes:
    """The whole chunked-encoded response body, one HTTP chunk per SSE event."""
    events = [_chunk({"role": "assistant", "content": "", "refusal": None})]
    events += [_chunk({"content": WORDS[i % len(WORDS)] + WORDS[(i + 1) % len(WORDS)]}) for i in range(chunks)]
    events.append(_chunk({}, "stop"))
    usage = _chunk({})
    usage["choices"] = []
    usage["usage"] = {"prompt_tokens": 12, "completion_tokens": chunks * 2, "total_tokens": 12 + chunks * 2,
                      "prompt_tokens_details": {"cached_tokens": 0},
                      "completion_tokens_details": {"reasoning_tokens": 0}}
    frames = [f"data: {json.dumps(e, separators=(',', ':'))}\n\n".encode() for e in [*events, usage]]
    frames.append(b"data: [DONE]\n\n")
    return b"".join(b"%x\r\n%b\r\n" % (len(f), f) for f in frames) + b"0\r\n\r\n"


def serve(chunks: int, port_out: multiprocessing.connection.Connection) -> None:
    bodies = {MODEL: build_body(chunks), SHORT_MODEL: build_body(SHORT_CHUNKS)}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # as real servers do; else a delayed ACK holds the body back

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(bodies[request["model"]])

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port_out.send(server.server_address[1])
    server.serve_forever()


# --- the clients -------------------------------------------------------------------------


Run = Callable[[str], tuple[int, float]]  # model -> (text deltas seen, time to the first one)


def bare_client(base_url: str) -> Run:
    import requests

    session = requests.Session()
    def run(model: str) -> tuple[int, float]:
        payload = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True}
        start = time.perf_counter()
        first = 0.0
        deltas = 0
        with session.post(base_url + "/chat/completions", json=payload, stream=True) as response:
            buffer = b""
            for data in response.iter_content(chunk_size=None):
                buffer += data
                *frames, buffer = buffer.split(b"\n\n")
                for frame in frames:
                    if frame.startswith(b"data: ") and frame[6:] != b"[DONE]":
                        chunk = json.loads(frame[6:])
                        if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                            deltas += 1
                            if deltas == 1:
                                first = time.perf_counter() - start
        return deltas, first

    return run


def llmx_client(base_url: str) -> Run:
    from llmx_sync.client import Client
    from llmx_sync.events import OutputTextDelta

    client = Client(base_url=base_url)

    def run(model: str) -> tuple[int, float]:
        start = time.perf_counter()
        first = 0.0
        deltas = 0
        for event in client.stream("hi", model=model):
            if type(event) is OutputTextDelta:
                deltas += 1
                if deltas == 1:
                    first = time.perf_counter() - start
        return deltas, first

    return run


def openai_client(base_url: str) -> Run | None:
    try:
        from openai import OpenAI
    except ImportError:
        return None
    client = OpenAI(base_url=base_url, api_key="x", max_retries=0)

    def run(model: str) -> tuple[int, float]:
        start = time.perf_counter()
        first = 0.0
        deltas = 0
        for chunk in client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}],
                                                    stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                deltas += 1
                if deltas == 1:
                    first = time.perf_counter() - start
        return deltas, first

    return run


# --- measuring ---------------------------------------------------------------------------


def measure(name: str, run: Run, chunks: int, runs: int) -> tuple[float, float]:
    """(median seconds per long answer, median time to the first delta of a short one);
    checks that every run saw all the chunks."""
    run(MODEL)  # warm-up: imports, connection, caches
    totals, firsts = [], []
    for _ in range(runs):
        start = time.perf_counter()
        deltas, _ = run(MODEL)
        totals.append(time.perf_counter() - start)
        if deltas != chunks:
            raise SystemExit(f"{name}: saw {deltas} text deltas, expected {chunks}")
    for _ in range(SHORT_RUNS):
        deltas, first = run(SHORT_MODEL)
        firsts.append(first)
        if deltas != SHORT_CHUNKS:
            raise SystemExit(f"{name}: saw {deltas} text deltas, expected {SHORT_CHUNKS}")
    return statistics.median(totals), statistics.median(firsts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    receive, send = multiprocessing.Pipe(duplex=False)
    server = multiprocessing.Process(target=serve, args=(args.chunks, send), daemon=True)
    server.start()
    try:
        base_url = f"http://127.0.0.1:{receive.recv()}/v1"
        clients: list[tuple[str, Run | None]] = [
            ("bare", bare_client(base_url)),
            ("llmx_sync", llmx_client(base_url)),
            ("openai", openai_client(base_url)),
        ]
        print(f"{args.chunks} chunks, median of {args.runs} runs, Python {sys.version.split()[0]}")
        print(f"{'client':<10} {'events/s':>12} {'us/chunk':>9} {'x bare':>7} {'first (ms)':>11} {'vs bare':>9}")
        floor: tuple[float, float] | None = None
        for name, run in clients:
            if run is None:
                print(f"{name:<10} (not installed)")
                continue
            total, first = measure(name, run, args.chunks, args.runs)
            floor = floor or (total, first)
            print(f"{name:<10} {args.chunks / total:>12,.0f} {total / args.chunks * 1e6:>9.2f} "
                  f"{total / floor[0]:>7.2f} {first * 1e3:>11.2f} {(first - floor[1]) * 1e3:>+8.2f}ms")
    finally:
        server.terminate()
        server.join(5)


if __name__ == "__main__":
    main()
