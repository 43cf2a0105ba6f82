"""A Chat Completions server on 127.0.0.1 that enforces rate limits the way OpenAI's
API describes them, for the batch tests and `benchmarks/batch.py`. Stdlib only; run it
as a script (``python tests/ratelimit_server.py --requests 40 --tokens 2000 --window
0.25``): it prints its port on the first line of stdout and serves until killed.

Limits are fixed windows of `--window` seconds (from the server's start): at most
`--requests` requests and `--tokens` tokens admitted per window. A request costs its
prompt tokens (the characters of its messages' text / 4, at least 1) plus the
completion's (`--completion-tokens`, or `max_tokens` when smaller), counted when it is
admitted, as OpenAI counts ``max_tokens`` up front. A request that does not fit is
answered 429 with ``Retry-After`` (decimal seconds: the time to the window's end) and
an OpenAI-style ``rate_limit_exceeded`` error body.

With ``--headers`` (the default) every answer, 429s included, carries
``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` (resets as Go durations,
``"137ms"``); with ``--no-headers`` none (only the 429s' ``Retry-After``).

An admitted request gets its status and headers at once, then, after `--latency`
seconds (a model generating), an SSE body: the text ``ok <n>``, a finish reason and a
usage chunk with the counts above.

``GET /stats`` returns JSON: ``admitted``, ``rejected``, ``first`` and ``last`` (the
server's monotonic times of the first and last admission), ``tokens`` (admitted), and
``rejections``: ``[window, seconds into it]`` of each 429.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Limits:
    """The fixed-window counters (thread-safe)."""

    def __init__(self, requests: int, tokens: int, window: float) -> None:
        self.requests, self.tokens, self.window = requests, tokens, window
        self.start = time.monotonic()
        self.lock = threading.Lock()
        self.current = -1
        self.used_requests = 0
        self.used_tokens = 0
        self.admitted = 0
        self.rejected = 0
        self.admitted_tokens = 0
        self.first: float | None = None
        self.last: float | None = None
        self.rejections: list[tuple[int, float]] = []  # (window, seconds into it)

    def admit(self, cost: int) -> tuple[bool, dict[str, str], float]:
        """Whether a request of `cost` tokens is admitted, the rate-limit headers, and
        the seconds to the window's end."""
        with self.lock:
            now = time.monotonic()
            elapsed = now - self.start
            window = math.floor(elapsed / self.window)
            if window != self.current:
                self.current, self.used_requests, self.used_tokens = window, 0, 0
            reset = (window + 1) * self.window - elapsed
            ok = self.used_requests + 1 <= self.requests and self.used_tokens + cost <= self.tokens
            if ok:
                self.used_requests += 1
                self.used_tokens += cost
                self.admitted += 1
                self.admitted_tokens += cost
                self.first = now if self.first is None else self.first
                self.last = now
            else:
                self.rejected += 1
                self.rejections.append((window, round(elapsed - window * self.window, 4)))
            millis = f"{max(reset * 1000, 1):.0f}ms"
            headers = {
                "x-ratelimit-limit-requests": str(self.requests),
                "x-ratelimit-remaining-requests": str(self.requests - self.used_requests),
                "x-ratelimit-reset-requests": millis,
                "x-ratelimit-limit-tokens": str(self.tokens),
                "x-ratelimit-remaining-tokens": str(self.tokens - self.used_tokens),
                "x-ratelimit-reset-tokens": millis,
            }
            return ok, headers, reset

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {"admitted": self.admitted, "rejected": self.rejected, "first": self.first, "last": self.last,
                    "tokens": self.admitted_tokens, "rejections": self.rejections}


def prompt_tokens(body: dict[str, Any]) -> int:
    chars = 0
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(part.get("text") or "") for part in content if isinstance(part, dict))
    return max(1, chars // 4)


def make_handler(limits: Limits, *, headers: bool, latency: float, completion_tokens: int) -> type:
    counter = iter(range(1, 1 << 62))
    counter_lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            data = json.dumps(limits.stats()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
            completion = min(completion_tokens, max_tokens) if isinstance(max_tokens, int) else completion_tokens
            prompt = prompt_tokens(body)
            ok, limit_headers, reset = limits.admit(prompt + completion)
            if not ok:
                error = json.dumps({"error": {"message": "Rate limit reached; please try again later.",
                                              "type": "requests", "param": None,
                                              "code": "rate_limit_exceeded"}}).encode()
                self.send_response(429)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(error)))
                self.send_header("Retry-After", f"{reset:.3f}")
                for name, value in limit_headers.items() if headers else ():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(error)
                return
            with counter_lock:
                number = next(counter)
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            for name, value in limit_headers.items() if headers else ():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.flush()
            time.sleep(latency)
            model = body.get("model") or "m"
            base = {"id": f"chatcmpl-{number}", "object": "chat.completion.chunk", "model": model}
            chunks = [
                {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": f"ok {number}"},
                                      "finish_reason": None}]},
                {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                {**base, "choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                                                  "total_tokens": prompt + completion}},
            ]
            payload = b"".join(b"data: " + json.dumps(chunk).encode() + b"\n\n" for chunk in chunks)
            payload += b"data: [DONE]\n\n"
            self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload))
            self.wfile.flush()

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--window", type=float, default=0.25)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--completion-tokens", type=int, default=10)
    parser.add_argument("--headers", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    limits = Limits(args.requests, args.tokens, args.window)
    handler = make_handler(limits, headers=args.headers, latency=args.latency,
                           completion_tokens=args.completion_tokens)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        sys.stdout.flush()


@dataclass
class Running:
    """A server started by `running`: its base URL (with ``/v1``) and its counters."""

    url: str
    requests: int
    tokens: int
    window: float

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url.removesuffix("/v1") + "/stats", timeout=10) as response:
            return json.load(response)

    def limit_rate(self, stats: dict[str, Any]) -> float:
        """Requests per second the limits allow, at the mean cost of the admitted ones."""
        mean_cost = stats["tokens"] / stats["admitted"]
        return min(self.requests, self.tokens / mean_cost) / self.window

    @staticmethod
    def rate(stats: dict[str, Any]) -> float:
        """Requests per second admitted, from the first admission to the last."""
        return (stats["admitted"] - 1) / (stats["last"] - stats["first"])


@contextlib.contextmanager
def running(*, requests: int = 40, tokens: int = 2000, window: float = 0.25, latency: float = 0.05,
            headers: bool = True, completion_tokens: int = 10) -> Iterator[Running]:
    """This server in a process of its own (its own GIL: a client in the test's process
    does not slow it down), killed at the end of the block."""
    args = [sys.executable, __file__, "--requests", str(requests), "--tokens", str(tokens), "--window", str(window),
            "--latency", str(latency), "--completion-tokens", str(completion_tokens),
            "--headers" if headers else "--no-headers"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield Running(f"http://127.0.0.1:{port}/v1", requests, tokens, window)
    finally:
        process.kill()
        process.wait(10)


if __name__ == "__main__":
    main()
