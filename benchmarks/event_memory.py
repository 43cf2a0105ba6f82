"""What one huge event costs in memory while it is parsed: the peak RSS growth of a fresh
interpreter that streams it through `Client.stream()` from a loopback server in another
process, as a multiple of the event's size on the wire.

Run: ``python benchmarks/event_memory.py [MiB]`` (14.3 by default). One line per body kind
(an SSE event, a non-streamed JSON answer) and text (ASCII, JSON escapes, Latin-1, CJK,
emoji: Python keeps these in 1, 1, 1, 2 and 4 bytes a character). The figure includes
the answer the stream keeps for `collect()` (1x); Linux only (``/proc/self/status``).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIB = 1 << 20
TEXTS = {"ascii": "x", "escapes": "ab\n", "latin-1": "é", "cjk": "東", "emoji": "😀"}

CLIENT = """
import json, sys
from llmx_sync import Client

def status(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))

with Client(base_url=sys.argv[1], max_event_bytes=int(sys.argv[2])) as client:
    client.stream("small", model="small").collect()  # imports, threads, the connection
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # forget the peak so far
    before = status("VmRSS")
    chars = sum(len(getattr(event, "delta", "")) for event in client.stream("big", model="big"))
    print(json.dumps({"chars": chars, "peak": status("VmHWM") - before}))
"""


def body(kind: str, text: str) -> tuple[bytes, str]:
    if kind == "json":
        answer = {"id": "c", "object": "chat.completion",
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}
        return json.dumps(answer, ensure_ascii=False).encode(), "application/json"
    chunk = {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]}
    end = b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
    return b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + b"\n\n" + end, "text/event-stream"


def serve(big: bytes, content_type: str, port_out: Connection) -> None:
    small, _ = body("sse" if content_type == "text/event-stream" else "json", "hi")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            payload = big if json.loads(self.rfile.read(int(self.headers["Content-Length"])))["model"] == "big" \
                else small
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port_out.send(server.server_address[1])
    server.serve_forever()


def measure(kind: str, text: str) -> tuple[int, int]:
    """(the body's bytes, the client's peak RSS growth in bytes)."""
    payload, content_type = body(kind, text)
    receive, send = multiprocessing.Pipe(duplex=False)
    server = multiprocessing.Process(target=serve, args=(payload, content_type, send), daemon=True)
    server.start()
    try:
        url = f"http://127.0.0.1:{receive.recv()}/v1"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        run = subprocess.run([sys.executable, "-c", CLIENT, url, str(len(payload) + MIB)], env=env,
                             capture_output=True, text=True, check=True, timeout=300)
        report = json.loads(run.stdout)
        assert report["chars"] == len(text), report
        return len(payload), report["peak"]
    finally:
        server.kill()


def main() -> None:
    size = int(float(sys.argv[1]) * MIB) if len(sys.argv) > 1 else int(14.3 * MIB)
    print(f"{'body':5s} {'text':8s} {'event MiB':>9s} {'peak MiB':>9s} {'x event':>8s}")
    for kind in ("sse", "json"):
        for name, unit in TEXTS.items():
            text = unit * (size // len(unit.encode()))
            wire, peak = measure(kind, text)
            print(f"{kind:5s} {name:8s} {wire / MIB:9.1f} {peak / MIB:9.1f} {peak / wire:8.2f}")


if __name__ == "__main__":
    main()
