"""What the benchmark scripts share: the answers a server sends, a loopback server in its
own process, the clients measured side by side, and the statistics.

* Answers: `chunk` is one ``chat.completion.chunk`` as OpenAI sends it, `text_body` a
  whole streamed answer (role chunk, text deltas, finish, usage, ``[DONE]``) as an
  HTTP/1.1 chunked body, one HTTP chunk per SSE event, as OpenAI and llama.cpp send it.
* `LoopbackServer`: a minimal keep-alive HTTP/1.1 server (a thread per connection) in a
  child process, so that its work is not counted in the client's CPU time. What it
  answers is a function of the request's model (and body), given by the script.
* `contenders`: the same streamed request made by llmx_sync, a bare ``requests`` loop,
  a bare ``httpx`` loop and the official ``openai`` SDK, each counting text deltas and
  the time to the first one.
* `Figures`: median and range of repeated measurements.

The scripts are run as ``python benchmarks/<name>.py``: this module is then importable
as ``harness``, and the repository root is put first on ``sys.path`` so that the
llmx_sync measured is the one next to the script.
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.connection
import os
import re
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
sys.path.insert(0, ROOT)

MODEL_ID = "gpt-4o-mini-2024-07-18"
WORDS = ["Hello", " there", ",", " how", " can", " I", " help", " you", " today", "?", " The", " answer",
         " is", " forty", "-two", "."]
HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n")
_MODEL = re.compile(rb'"model":\s*"([^"]*)"')


# --- answers ---------------------------------------------------------------------------


def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    """One ``chat.completion.chunk`` with OpenAI's fields."""
    return {
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", "object": "chat.completion.chunk",
        "created": 1741570283, "model": MODEL_ID, "service_tier": "default",
        "system_fingerprint": "fp_06737a9306",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def usage_chunk(completion_tokens: int) -> dict[str, Any]:
    usage = chunk({})
    usage["choices"] = []
    usage["usage"] = {"prompt_tokens": 12, "completion_tokens": completion_tokens,
                      "total_tokens": 12 + completion_tokens, "prompt_tokens_details": {"cached_tokens": 0},
                      "completion_tokens_details": {"reasoning_tokens": 0}}
    return usage


def sse(chunks: Iterable[dict[str, Any]]) -> bytes:
    """The SSE events of `chunks`, then ``[DONE]``, without HTTP framing."""
    frames = [b"data: " + json.dumps(c, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"
              for c in chunks]
    return b"".join(frames) + b"data: [DONE]\n\n"


def http_chunked(chunks: Iterable[dict[str, Any]]) -> bytes:
    """The chunked-encoded body of `chunks` and ``[DONE]``, one HTTP chunk per SSE event."""
    frames = [b"data: " + json.dumps(c, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"
              for c in chunks]
    frames.append(b"data: [DONE]\n\n")
    return b"".join(b"%x\r\n%b\r\n" % (len(f), f) for f in frames) + b"0\r\n\r\n"


def text_chunks(deltas: Iterable[str]) -> list[dict[str, Any]]:
    """A text answer: the role chunk, one chunk per delta, the finish chunk and usage."""
    out = [chunk({"role": "assistant", "content": "", "refusal": None})]
    out += [chunk({"content": text}) for text in deltas]
    out.append(chunk({}, "stop"))
    out.append(usage_chunk(2 * (len(out) - 2)))
    return out


def word_deltas(count: int) -> list[str]:
    """`count` deltas of two words each."""
    return [WORDS[i % len(WORDS)] + WORDS[(i + 1) % len(WORDS)] for i in range(count)]


def text_body(count: int) -> bytes:
    """A streamed answer of `count` text deltas, ready to send after `HEAD`."""
    return http_chunked(text_chunks(word_deltas(count)))


# --- the loopback server -------------------------------------------------------------------

# model, request body -> the response body (chunked, sent after HEAD)
Answer = Callable[[str, bytes], bytes]


def _serve_connection(conn: socket.socket, answer: Answer) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as real servers do
    reader = conn.makefile("rb")
    try:
        while True:
            length = 0
            line = reader.readline()
            if not line:
                return
            while line not in (b"\r\n", b"\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
                line = reader.readline()
            body = reader.read(length) if length else b""
            match = _MODEL.search(body)
            conn.sendall(HEAD + answer(match.group(1).decode() if match else "", body))
    except OSError:
        return
    finally:
        reader.close()
        conn.close()


def _serve(answer: Answer, port_out: multiprocessing.connection.Connection) -> None:
    listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
    port_out.send(listener.getsockname()[1])
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_serve_connection, args=(conn, answer), daemon=True).start()


class LoopbackServer:
    """``with LoopbackServer(answer) as base_url:`` a server on 127.0.0.1 in a child
    process (forked: `answer` may be any function of the script), answering every POST
    with `HEAD` and ``answer(model, body)``."""

    def __init__(self, answer: Answer) -> None:
        self._answer = answer
        self._process: multiprocessing.process.BaseProcess | None = None

    def __enter__(self) -> str:
        context = multiprocessing.get_context("fork")
        receive, send = context.Pipe(duplex=False)
        self._process = context.Process(target=_serve, args=(self._answer, send), daemon=True)
        self._process.start()
        if not receive.poll(30):
            raise SystemExit("the benchmark server did not start")
        return f"http://127.0.0.1:{receive.recv()}/v1"

    def __exit__(self, *exc_info: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.join(5)


def bodies(table: dict[str, Callable[[], bytes]]) -> Answer:
    """An `Answer` by model name: ``table[model]()``, computed once per model."""
    cache: dict[str, bytes] = {}
    lock = threading.Lock()

    def answer(model: str, body: bytes) -> bytes:
        with lock:
            if model not in cache:
                cache[model] = table[model]()
            return cache[model]

    return answer


# --- the clients --------------------------------------------------------------------------

# (text deltas seen, seconds from `start` to the first one)
Seen = tuple[int, float]


def count_sse_deltas(pieces: Iterable[bytes], start: float) -> Seen:
    """What a bare loop does with a body: split on blank lines, ``json.loads`` each event,
    count the text deltas."""
    deltas = 0
    first = 0.0
    buffer = b""
    for data in pieces:
        buffer += data
        *frames, buffer = buffer.split(b"\n\n")
        for frame in frames:
            if frame.startswith(b"data: ") and frame[6:] != b"[DONE]":
                parsed = json.loads(frame[6:])
                if parsed["choices"] and parsed["choices"][0]["delta"].get("content"):
                    deltas += 1
                    if deltas == 1:
                        first = time.perf_counter() - start
    return deltas, first


def _payload(model: str, prompt: str = "hi") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": prompt}], "stream": True}


@dataclass(frozen=True)
class Contender:
    """One way of making the streamed request: `new(base_url)` makes a client (its
    connection pool empty), ``read(client, base_url, model, start)`` streams one answer
    and returns `Seen`; `close` frees the client."""

    name: str
    new: Callable[[str], Any]
    read: Callable[[Any, str, str, float], Seen]
    close: Callable[[Any], None]


def _bare_new(base_url: str) -> Any:
    import requests

    return requests.Session()


def _bare_read(session: Any, base_url: str, model: str, start: float) -> Seen:
    with session.post(base_url + "/chat/completions", json=_payload(model), stream=True) as response:
        return count_sse_deltas(response.iter_content(chunk_size=None), start)


def _httpx_new(base_url: str) -> Any:
    import httpx

    return httpx.Client()


def _httpx_read(client: Any, base_url: str, model: str, start: float) -> Seen:
    with client.stream("POST", base_url + "/chat/completions", json=_payload(model)) as response:
        return count_sse_deltas(response.iter_raw(), start)


def _llmx_new(base_url: str) -> Any:
    from llmx_sync import Client

    return Client(base_url=base_url, api_key="x")


def _llmx_read(client: Any, base_url: str, model: str, start: float) -> Seen:
    from llmx_sync import OutputTextDelta

    deltas = 0
    first = 0.0
    for event in client.stream("hi", model=model):
        if type(event) is OutputTextDelta:
            deltas += 1
            if deltas == 1:
                first = time.perf_counter() - start
    return deltas, first


def _openai_new(base_url: str) -> Any:
    from openai import OpenAI

    return OpenAI(base_url=base_url, api_key="x", max_retries=0)


def _openai_read(client: Any, base_url: str, model: str, start: float) -> Seen:
    deltas = 0
    first = 0.0
    for part in client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}],
                                               stream=True):
        if part.choices and part.choices[0].delta.content:
            deltas += 1
            if deltas == 1:
                first = time.perf_counter() - start
    return deltas, first


ALL_CONTENDERS = {
    "bare": Contender("bare", _bare_new, _bare_read, lambda session: session.close()),
    "llmx": Contender("llmx", _llmx_new, _llmx_read, lambda client: client.close()),
    "httpx": Contender("httpx", _httpx_new, _httpx_read, lambda client: client.close()),
    "openai": Contender("openai", _openai_new, _openai_read, lambda client: client.close()),
}
_MODULES = {"bare": "requests", "llmx": "llmx_sync", "httpx": "httpx", "openai": "openai"}


def contenders(names: str) -> list[Contender]:
    """The contenders named (comma-separated) whose package is installed; says which are not."""
    import importlib.util

    chosen = []
    for name in names.split(","):
        if name not in ALL_CONTENDERS:
            raise SystemExit(f"unknown client {name!r}; choose among {', '.join(ALL_CONTENDERS)}")
        if importlib.util.find_spec(_MODULES[name]) is None:
            print(f"({name}: {_MODULES[name]} is not installed, skipped; pip install {_MODULES[name]})")
            continue
        chosen.append(ALL_CONTENDERS[name])
    return chosen


# --- figures ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    """Repeated measurements of one thing."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def show(self, scale: float = 1.0, digits: int = 2) -> str:
        """``median [min–max]`` in the unit `scale` turns the values into."""
        low, high = min(self.values) * scale, max(self.values) * scale
        return f"{self.median * scale:.{digits}f} [{low:.{digits}f}-{high:.{digits}f}]"


def ratio(mine: Figures, baseline: Figures) -> str:
    return f"{mine.median / baseline.median:.2f}x" if baseline.median else "-"


def cpu_seconds() -> float:
    """CPU time of this process, every thread counted (user + system)."""
    return time.process_time()


def describe_machine() -> str:
    import llmx_sync

    return (f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; "
            f"llmx_sync from {os.path.relpath(os.path.dirname(llmx_sync.__file__))}")


def interleaved(rounds: int, names: Iterable[str]) -> Iterator[tuple[int, str]]:
    """(round, name) for each round and each name, so that a burst of load on the shared
    machine falls on every contender rather than on one."""
    listed = list(names)
    for number in range(rounds):
        for name in listed:
            yield number, name


def proc_status(pid: int | str = "self") -> tuple[int, int]:
    """(VmRSS in KiB, thread count) of a process; (0, 0) once it is gone."""
    rss = threads = 0
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("Threads:"):
                    threads = int(line.split()[1])
    except OSError:
        pass
    return rss, threads
