"""N concurrent streams through ONE client in one process (issue #11).

A server process (asyncio: one thread holds thousands of keep-alive connections)
answers every chat request with an answer of its own: the prompt ``stream <i>`` gets
``--chunks`` text chunks ``"<i>.0 " "<i>.1 " ...``, one HTTP chunk per SSE event,
``--pause-ms`` apart, then ``finish_reason: stop``, a usage chunk and ``[DONE]``.
Headers and the role chunk go out at once; the text starts when all N requests of the
run have arrived (at most 30 s later), like a model that starts generating after its
prefill. Without that gate the first streams would be over before the last ones are
sent, and "N concurrent" would be far fewer (the ``overlap`` column checks it).

The default pace (25 chunks, 200 ms apart: 5 s per stream) is slow on purpose: at
N=1000 it is already 5000 events/s into one Python process, and on 2 cores a
thread-per-stream client that falls behind that drowns in GIL hand-overs (system CPU
far above user CPU, streams unfinished at ``--timeout``). A smaller ``--pause-ms``
shows where that happens.

For each N and each client, a fresh process starts N threads; they wait on a barrier,
then each streams ``stream <i>`` and reads it to its end:

* ``llmx``: one shared ``llmx_sync.Client`` with its defaults, ``client.stream(...).collect()``;
* ``openai``: one shared ``openai.OpenAI`` with its defaults, ``chat.completions.create(stream=True)``,
  one thread per stream (skipped when ``openai`` is not installed).

Every stream is checked against the answer that belongs to it: ``ok`` (exactly its
own text and ``finish_reason == "stop"``), ``wrong`` (other text), ``inc`` (a prefix of
its own text, or no ``stop``), ``err`` (an exception), ``hung`` (not finished by
``--timeout``). Measured in that process: ``wall`` from the barrier to the end of the
last stream, ``ramp`` from the barrier to the last stream's headers, peak RSS
(``ru_maxrss``; ``start`` is the RSS after the imports and the client, before the
threads), CPU seconds (user and system), WARNING log records from any logger (urllib3's
"Connection pool is full" among them; ``warnings`` go to logging too) and INFO records
about retries. The parent reads the process's VmRSS and ``Threads:`` in /proc every
10 ms (peak threads; peak RSS when the process has to be killed: a process whose
threads fight over the GIL can take minutes to run its last lines). The server counts
the connections and requests of each run, the most answers in progress at once
(``overlap``) and its own CPU seconds.

Idle streams (a web app holding streams open while the models think): for each N and
client, another fresh process opens N streams from one thread, one after the other,
through one client, while the server holds every answer after its role chunk. With all
N open and silent for a moment, the process's VmRSS and thread count are read; what
grew from the first stream to the Nth, divided by N - 1, is the memory and the threads
per idle stream (the first one pays for what is made once: imports, pools, caches).
Then the server lets the answers go, and each stream is read to its end and checked.

    python benchmarks/concurrency.py [--n 50,200,1000] [--chunks 25] [--pause-ms 200]
                                     [--clients llmx,openai] [--timeout 45] [--no-idle]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import http.client
import importlib.util
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from harness import proc_status

MODEL = "gpt-4o-mini"
# A backlog above the largest N: the barrier starts all connects at once, and a full
# accept queue drops SYNs, which costs a client a 1 s retransmit.
BACKLOG = 4096
GATE_TIMEOUT = 30.0  # the longest an answer waits for the rest of its run's requests
HOLD_TIMEOUT = 300.0  # the longest a held answer waits for GET /open
RESULT_PREFIX = "RESULT "
_PROMPT = re.compile(rb"stream (\d+)")


def expected_text(number: int, chunks: int) -> str:
    return "".join(f"{number}.{k} " for k in range(chunks))


def _raise_nofile() -> None:
    """Each stream holds a socket in the client process and one in the server's."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


# --- the server (its own process) ----------------------------------------------------


def _frame(payload: str) -> bytes:
    """One SSE event as one HTTP chunk."""
    data = f"data: {payload}\n\n".encode()
    return b"%x\r\n%b\r\n" % (len(data), data)


# %-formatted rather than json.dumps'd: at N=1000 the server writes 200k of them on a
# shared CPU, and the content ("<i>.<k> ") never needs escaping.
_CHUNK = ('{"id":"chatcmpl-%d","object":"chat.completion.chunk","created":1741570283,'
          '"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_06737a9306",'
          '"choices":[{"index":0,"delta":%s,"logprobs":null,"finish_reason":%s}]}')
_USAGE = ('{"id":"chatcmpl-%d","object":"chat.completion.chunk","created":1741570283,'
          '"model":"gpt-4o-mini-2024-07-18","choices":[],"usage":{"prompt_tokens":3,'
          '"completion_tokens":%d,"total_tokens":%d}}')
_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
         b"Cache-Control: no-cache\r\n\r\n")


class _Server:
    """The answers, and what the parent asks for between runs: ``GET /run?n=N`` starts
    a run of N requests (its gate opens when the Nth arrives) and resets the counters of
    the last one; ``GET /run?n=N&hold=1`` one whose gate only ``GET /open`` opens; ``GET
    /stats`` reports the counters."""

    def __init__(self, chunks: int, pause: float) -> None:
        self.chunks = chunks
        self.pause = pause
        self.stats: dict[str, float] = {"connections": 0, "requests": 0, "active": 0, "overlap": 0, "cpu": 0.0}
        self.expect = 1
        self.arrived = 0
        self.gate = asyncio.Event()

    def new_run(self, n: int, hold: bool = False) -> None:
        self.expect, self.arrived = (n if not hold else -1), 0
        self.gate = asyncio.Event()
        stats = self.stats
        stats["connections"] = stats["requests"] = 0
        stats["overlap"] = stats["active"]
        stats["cpu"] = time.process_time()

    async def answer(self, writer: asyncio.StreamWriter, number: int) -> None:
        stats = self.stats
        stats["requests"] += 1
        stats["active"] += 1
        stats["overlap"] = max(stats["overlap"], stats["active"])
        try:
            writer.write(_HEAD + _frame(_CHUNK % (number, '{"role":"assistant","content":""}', "null")))
            gate = self.gate
            self.arrived += 1
            if self.arrived == self.expect:
                gate.set()
            try:
                await asyncio.wait_for(gate.wait(), GATE_TIMEOUT if self.expect > 0 else HOLD_TIMEOUT)
            except TimeoutError:
                pass  # some requests never came: go on, the client's counts will say so
            for k in range(self.chunks):
                await asyncio.sleep(self.pause)
                writer.write(_frame(_CHUNK % (number, f'{{"content":"{number}.{k} "}}', "null")))
                await writer.drain()  # a reader that falls behind holds its stream back, as with a real server
            writer.write(_frame(_CHUNK % (number, "{}", '"stop"')) + _frame(_USAGE % (number, self.chunks,
                                                                                      self.chunks + 3))
                         + _frame("[DONE]") + b"0\r\n\r\n")
            await writer.drain()
        finally:
            stats["active"] -= 1

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats["connections"] += 1
        try:
            while True:  # keep-alive: requests one after another on this connection
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b""
                if lines[0].startswith("GET "):
                    report = dict(self.stats)
                    report["cpu"] = time.process_time() - report["cpu"]
                    report["connections"] -= 1  # this one is not the run's
                    data = json.dumps(report).encode()
                    run = re.match(r"GET /run\?n=(\d+)(&hold=1)? ", lines[0])
                    if run:
                        self.new_run(int(run.group(1)), hold=run.group(2) is not None)
                    elif lines[0].startswith("GET /open "):
                        self.gate.set()
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: %d\r\nConnection: close\r\n\r\n%b" % (len(data), data))
                    await writer.drain()
                    return
                match = _PROMPT.search(body)
                await self.answer(writer, int(match.group(1)) if match else -1)
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()


def serve(chunks: int, pause: float, port_out: multiprocessing.connection.Connection) -> None:
    _raise_nofile()

    async def main() -> None:
        state = _Server(chunks, pause)
        server = await asyncio.start_server(state.handle, "127.0.0.1", 0, backlog=BACKLOG)
        port_out.send(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# --- the client side (a fresh process per client and N) -----------------------------------


class _LogCounter(logging.Handler):
    """Counts WARNING+ records by kind and INFO records about retries."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.counts_lock = threading.Lock()
        self.warnings: collections.Counter[str] = collections.Counter()
        self.retries = 0

    def emit(self, record: logging.LogRecord) -> None:
        with self.counts_lock:
            if record.levelno >= logging.WARNING:
                # The template, not the message: one line per kind of warning.
                self.warnings[f"{record.name}: {record.msg}"] += 1
            elif "retry" in record.getMessage().lower():
                self.retries += 1


_imported: list[str] = []  # what was measured, for the report
# A stream's end: reads it to its end, then (text, finish_reason).
Read = Callable[[], tuple[str, str | None]]
# number -> the `Read` of stream ``stream <number>``, returned once the response's headers are in.
Opener = Callable[[int], Read]


def _llmx(base_url: str, timeout: float) -> Opener:
    import llmx_sync
    from llmx_sync import Client

    _imported.append(f"llmx_sync from {os.path.dirname(llmx_sync.__file__)}")
    client = Client(base_url=base_url, api_key="x")

    def open_stream(number: int) -> Read:
        stream = client.stream(f"stream {number}", model=MODEL, idle_timeout=timeout)

        def read() -> tuple[str, str | None]:
            result = stream.collect()
            return result.text, result.finish_reason

        return read

    return open_stream


def _openai(base_url: str, timeout: float) -> Opener:
    import openai
    from openai import OpenAI

    _imported.append(f"openai {openai.__version__}")
    client = OpenAI(base_url=base_url, api_key="x", timeout=timeout)

    def open_stream(number: int) -> Read:
        stream = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": f"stream {number}"}], stream=True)

        def read() -> tuple[str, str | None]:
            parts: list[str] = []
            finish = None
            with stream:
                for chunk in stream:
                    if chunk.choices:
                        parts.append(chunk.choices[0].delta.content or "")
                        finish = chunk.choices[0].finish_reason or finish
            return "".join(parts), finish

        return read

    return open_stream


def _outcome(number: int, chunks: int, read: Callable[[], tuple[str, str | None]]) -> tuple[str, str | None]:
    """("ok" | "wrong" | "inc" | "err", the exception's text for "err") of reading stream `number`."""
    expected = expected_text(number, chunks)
    try:
        text, finish = read()
    except Exception as exc:
        return "err", f"{type(exc).__name__}: {str(exc)[:120]}"
    if text == expected and finish == "stop":
        return "ok", None
    return ("inc" if expected.startswith(text) else "wrong"), None


def worker(name: str, n: int, base_url: str, chunks: int, timeout: float) -> dict[str, Any]:
    _raise_nofile()
    counter = _LogCounter()
    logging.captureWarnings(True)
    root = logging.getLogger()
    root.addHandler(counter)
    root.setLevel(logging.INFO)
    open_stream = {"llmx": _llmx, "openai": _openai}[name](base_url, timeout)
    start_rss_kb, _ = proc_status()

    barrier = threading.Barrier(n + 1, timeout=min(timeout, 60.0))
    outcomes = ["hung"] * n
    answered = [0.0] * n
    ended = [0.0] * n
    errors: collections.Counter[str] = collections.Counter()
    errors_lock = threading.Lock()
    # One event for all: joining N threads one by one costs a GIL hand-over each, and
    # with hundreds of busy threads that alone can take longer than the run.
    left = [n]
    all_ended = threading.Event()

    def one(i: int) -> None:
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            outcomes[i] = "err"
            return  # the run is void: the main thread's barrier broke too
        def read() -> tuple[str, str | None]:
            rest = open_stream(i)
            answered[i] = time.perf_counter()  # a stream that never ends still shows when it began
            return rest()

        outcomes[i], error = _outcome(i, chunks, read)
        if error is not None:
            with errors_lock:
                errors[error] += 1
        ended[i] = time.perf_counter()
        with errors_lock:
            left[0] -= 1
            if not left[0]:
                all_ended.set()

    threads = [threading.Thread(target=one, args=(i,), name=f"bench-{i}", daemon=True) for i in range(n)]
    for thread in threads:
        thread.start()
    usage_before = resource.getrusage(resource.RUSAGE_SELF)
    barrier.wait()
    started = time.perf_counter()
    all_ended.wait(timeout)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with counter.counts_lock, errors_lock:
        return {
            "client": name, "n": n, "timeout": timeout,
            "wall": max(ended) - started if any(ended) else float("nan"),
            "ramp": max(answered) - started if any(answered) else float("nan"),
            "start_rss_mb": start_rss_kb / 1024,
            "peak_rss_mb": usage.ru_maxrss / 1024,
            "user": usage.ru_utime - usage_before.ru_utime, "sys": usage.ru_stime - usage_before.ru_stime,
            "outcomes": dict(collections.Counter(outcomes)),
            "warnings": dict(counter.warnings), "retries": counter.retries, "errors": dict(errors),
            "imported": _imported,
        }


IDLE_SETTLE = 1.0  # seconds the idle streams are left alone before they are measured


def idle_worker(name: str, n: int, base_url: str, port: int, chunks: int, timeout: float) -> dict[str, Any]:
    """Open `n` streams one after the other while the server holds their text; what the
    2nd to the nth cost in memory, threads and CPU while idle; then read them all."""
    _raise_nofile()
    open_stream = {"llmx": _llmx, "openai": _openai}[name](base_url, timeout)
    readers = [open_stream(0)]
    time.sleep(IDLE_SETTLE)
    rss_one, threads_one = proc_status()
    readers += [open_stream(i) for i in range(1, n)]
    time.sleep(IDLE_SETTLE / 2)  # the readers have taken the role chunk and wait in recv
    cpu = time.process_time()
    time.sleep(IDLE_SETTLE / 2)
    idle_cpu = time.process_time() - cpu
    rss_all, threads_all = proc_status()
    _server_get(port, "/open")
    outcomes: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    for i, read in enumerate(readers):
        outcome, error = _outcome(i, chunks, read)
        outcomes[outcome] += 1
        if error is not None:
            errors[error] += 1
    return {"client": name, "n": n, "kb_per_stream": (rss_all - rss_one) / max(n - 1, 1),
            "threads_per_stream": (threads_all - threads_one) / max(n - 1, 1), "threads": threads_all,
            "idle_cpu_ms": idle_cpu * 1e3 / (IDLE_SETTLE / 2), "outcomes": dict(outcomes), "errors": dict(errors),
            "imported": _imported}


# --- the parent: orchestration and the table -----------------------------------------------


def _server_get(port: int, path: str) -> dict[str, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        return dict(json.loads(conn.getresponse().read()))
    finally:
        conn.close()


def _one_alone(port: int, chunks: int) -> float:
    """Seconds for one stream with nothing else running: the server's pacing."""
    _server_get(port, "/run?n=1")
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "stream 7"}], "stream": True})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        start = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
        data = conn.getresponse().read()
        elapsed = time.perf_counter() - start
    finally:
        conn.close()
    if f'"content":"7.{chunks - 1} "'.encode() not in data or b"[DONE]" not in data:
        raise SystemExit("the server's answer is not what the benchmark expects")
    return elapsed


def _run_worker(name: str, n: int, port: int, args: argparse.Namespace, idle: bool = False) -> dict[str, Any] | str:
    """Run one (client, N) in a fresh process, reading its RSS and thread count from
    outside meanwhile; its result, or why there is none. `idle`: `idle_worker`."""
    command = [sys.executable, os.path.abspath(__file__), "--worker", name, "--n", str(n), "--port", str(port),
               "--chunks", str(args.chunks), "--timeout", str(args.timeout)] + (["--idle"] if idle else [])
    peak_rss_kb = peak_threads = 0
    # Files, not pipes: a worker printing many tracebacks must not block on a full pipe.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        start = time.monotonic()
        deadline = start + args.timeout + 30  # the worker's own deadline, plus its start-up and exit
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                rss, threads = proc_status(proc.pid)
                peak_rss_kb, peak_threads = max(peak_rss_kb, rss), max(peak_threads, threads)
                time.sleep(0.01)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
        sampled = f"peak RSS {peak_rss_kb / 1024:.1f} MB and {peak_threads} threads (read from outside)"
        if time.monotonic() >= deadline:
            return f"killed after {time.monotonic() - start:.0f} s without a result; {sampled}"
        out.seek(0)
        err.seek(0)
        for line in out:
            if line.startswith(RESULT_PREFIX):
                result = dict(json.loads(line[len(RESULT_PREFIX):]))
                result["peak_rss_mb"] = max(result.get("peak_rss_mb", 0), peak_rss_kb / 1024)
                result["peak_threads"] = peak_threads
                return result
        tail = (err.read().strip().splitlines() or ["no output"])[-1]
        return f"exit {proc.returncode}: {tail}; {sampled}"


_HEADER = (f"{'client':<7} {'N':>5} {'wall s':>7} {'ramp s':>6} {'peak RSS':>8} {'start':>6} {'threads':>7} "
           f"{'ok/wrong/inc/err/hung':>22} {'warnings':>8} {'retries':>7} {'conns':>5} {'reqs':>5} {'overlap':>7} "
           f"{'user s':>6} {'sys s':>6} {'srv cpu':>7}")


def _row(result: dict[str, Any], server: dict[str, float]) -> str:
    out = result["outcomes"]
    verdict = "/".join(str(out.get(kind, 0)) for kind in ("ok", "wrong", "inc", "err", "hung"))
    # With streams still running at the deadline, the run took longer than that.
    wall = f">{result['timeout']:.0f}" if out.get("hung") else f"{result['wall']:.2f}"
    return (f"{result['client']:<7} {result['n']:>5} {wall:>7} {result['ramp']:>6.2f} "
            f"{result['peak_rss_mb']:>8.1f} {result['start_rss_mb']:>6.1f} {result['peak_threads']:>7} "
            f"{verdict:>22} {sum(result['warnings'].values()):>8} {result['retries']:>7} "
            f"{server['connections']:>5.0f} {server['requests']:>5.0f} {server['overlap']:>7.0f} "
            f"{result['user']:>6.1f} {result['sys']:>6.1f} {server['cpu']:>7.1f}")


def _idle_table(ns: list[int], names: list[str], port: int, args: argparse.Namespace) -> None:
    print("\nidle streams: N open at once, silent; from the 1st to the Nth stream, per stream: RSS growth and "
          "threads; the process's CPU while they are all idle")
    print(f"{'client':<7} {'N':>5} {'KB/stream':>9} {'threads/stream':>14} {'threads':>7} {'idle CPU ms/s':>13} "
          f"{'ok/wrong/inc/err':>17}", flush=True)
    idle: dict[tuple[str, int], dict[str, Any]] = {}
    for n in ns:
        for name in names:
            _server_get(port, f"/run?n={n}&hold=1")
            result = _run_worker(name, n, port, args, idle=True)
            if isinstance(result, str):
                print(f"{name:<7} {n:>5} {result}", flush=True)
                continue
            out = result["outcomes"]
            verdict = "/".join(str(out.get(kind, 0)) for kind in ("ok", "wrong", "inc", "err"))
            print(f"{name:<7} {n:>5} {result['kb_per_stream']:>9.1f} {result['threads_per_stream']:>14.2f} "
                  f"{result['threads']:>7} {result['idle_cpu_ms']:>13.1f} {verdict:>17}", flush=True)
            for kind, count in sorted(result["errors"].items(), key=lambda item: -item[1])[:3]:
                print(f"  {count} x {kind!r}")
            idle[name, n] = result
    pairs = [n for n in ns if ("llmx", n) in idle and ("openai", n) in idle]
    if pairs:
        print("llmx_sync / openai, idle: " + ", ".join(
            f"N={n} {idle['llmx', n]['kb_per_stream'] / idle['openai', n]['kb_per_stream']:.2f}x memory"
            for n in pairs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", default="50,200,1000", help="concurrent streams, comma-separated")
    parser.add_argument("--chunks", type=int, default=25, help="text chunks per answer")
    parser.add_argument("--pause-ms", type=float, default=200.0, help="server pause before each text chunk")
    parser.add_argument("--clients", default="llmx,openai")
    parser.add_argument("--timeout", type=float, default=45.0,
                        help="seconds the streams of one (client, N) run may take; later ones count as hung")
    parser.add_argument("--no-idle", action="store_true", help="skip the idle streams' memory and threads")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--idle", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    ns = [int(part) for part in args.n.split(",") if part]

    if args.worker:
        base_url = f"http://127.0.0.1:{args.port}/v1"
        if args.idle:
            report = idle_worker(args.worker, ns[0], base_url, args.port, args.chunks, args.timeout)
        else:
            report = worker(args.worker, ns[0], base_url, args.chunks, args.timeout)
        print(RESULT_PREFIX + json.dumps(report), flush=True)
        os._exit(0)  # hung daemon threads must not hold the exit

    _raise_nofile()
    names = [name for name in args.clients.split(",") if name]
    if set(names) - {"llmx", "openai"}:
        parser.error("--clients takes llmx and/or openai")
    if "openai" in names and importlib.util.find_spec("openai") is None:
        print("openai is not installed (pip install openai): skipped")
        names.remove("openai")
    receive, send = multiprocessing.Pipe(duplex=False)
    server = multiprocessing.Process(target=serve, args=(args.chunks, args.pause_ms / 1000, send), daemon=True)
    server.start()
    try:
        if not receive.poll(30):
            raise SystemExit("the server did not start")
        port = receive.recv()
        alone = _one_alone(port, args.chunks)
        print(f"{args.chunks} chunks per answer, {args.pause_ms:g} ms apart: one stream alone takes {alone:.2f} s; "
              f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f} at start "
              "(1-min average of runnable threads: earlier runs of this script count too)")
        print("RSS in MB (start: after the imports and the client); user/sys: the client's CPU seconds; "
              "conns/reqs/overlap/srv cpu: the server's count")
        print(_HEADER, flush=True)
        results: dict[tuple[str, int], dict[str, Any]] = {}
        notes: list[str] = []
        measured: list[str] = []
        for n in ns:
            for name in names:
                _server_get(port, f"/run?n={n}")
                result = _run_worker(name, n, port, args)
                counts = _server_get(port, "/stats")
                if isinstance(result, str):
                    print(f"{name:<7} {n:>5} {result}", flush=True)
                    continue
                results[name, n] = result
                measured += [what for what in result["imported"] if what not in measured]
                print(_row(result, counts), flush=True)
                for kind, count in sorted(result["warnings"].items(), key=lambda item: -item[1])[:3]:
                    notes.append(f"  {name} N={n}: {count} x warning {kind[:150]!r}")
                for kind, count in sorted(result["errors"].items(), key=lambda item: -item[1])[:3]:
                    notes.append(f"  {name} N={n}: {count} x {kind!r}")
        print("measured: " + ", ".join(measured))
        if notes:
            print("logged or raised:")
            print("\n".join(notes))
        # Ratios only where both runs finished every stream: otherwise "wall" is a lower bound.
        pairs = [n for n in ns if all((name, n) in results and not results[name, n]["outcomes"].get("hung")
                                      for name in ("llmx", "openai"))]
        if pairs:
            print("llmx_sync / openai:")
            print(f"{'N':>5} {'wall':>6} {'peak RSS':>8} {'RSS growth':>10} {'threads':>7} {'CPU':>6} {'sys CPU':>7}")
            for n in pairs:
                mine, theirs = results["llmx", n], results["openai", n]
                grew = (mine["peak_rss_mb"] - mine["start_rss_mb"]) / (theirs["peak_rss_mb"] - theirs["start_rss_mb"])
                cpu = (mine["user"] + mine["sys"]) / (theirs["user"] + theirs["sys"])
                print(f"{n:>5} {mine['wall'] / theirs['wall']:>6.2f} "
                      f"{mine['peak_rss_mb'] / theirs['peak_rss_mb']:>8.2f} {grew:>10.2f} "
                      f"{mine['peak_threads'] / theirs['peak_threads']:>7.2f} {cpu:>6.2f} "
                      f"{mine['sys'] / theirs['sys'] if theirs['sys'] else float('nan'):>7.2f}")
        if not args.no_idle:
            _idle_table(ns, names, port, args)
    finally:
        server.terminate()
        server.join(5)


if __name__ == "__main__":
    main()
