"""Issue #17, bounds and endings that hold for every input: one test (or a few) per case
the issue measured, against loopback fault servers.

1. a paused consumer holds at most `max_buffered_bytes` plus one event, whatever the
   event sizes;
2. a consumer that only iterates keeps the answer so far, not its events;
3. the total deadline covers response headers trickled in;
4. a stream closed by anyone but its consumer is an error, for the browser too;
5. tools are bounded (`tool_timeout`, the run's `timeout`), `async def` tools are
   awaited, results that are not data are errors;
6. (tests/test_entry_points.py) every public entry point checks its arguments;
7. no secret in an exception's chain, a `base_url`'s query or an echoed error body;
8. at most ``retries + 1`` POSTs, on warm connections too.

Memory is measured as in test_production.py: in a fresh interpreter that runs the
client alone, its peak RSS reset once the client is warm.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from llm_server import LLMServer, Reply, Stall, chat_chunk, error_reply, sse_event, text_stream_body
from sockets import wait_for
from streaming_support import RELEASE_TIMEOUT, reader_threads, released
from test_production import LATE, browser_body, finish_client, start_client

from llmx_sync.client import Client
from llmx_sync.errors import BadRequestError, DeadlineExceededError, StreamError
from llmx_sync.events import OutputTextDelta
from llmx_sync.response import ResponseStream

MiB = 1 << 20
MB = 10**6


@pytest.fixture(autouse=True)
def no_reader_left() -> Iterator[None]:
    yield
    assert wait_for(lambda: not reader_threads(), RELEASE_TIMEOUT), reader_threads()


def settled_bytes_sent(server: LLMServer, timeout: float = 20.0) -> int:
    """What the server has written once it stopped getting further (its writes blocked)."""
    written, deadline = -1, time.monotonic() + timeout
    while written != server.body_bytes_sent and time.monotonic() < deadline:
        written = server.body_bytes_sent
        time.sleep(0.5)
    return written


# --- 1. backpressure counts bytes -----------------------------------------------------------


@pytest.mark.usefixtures("body_reader")
def test_a_paused_consumer_holds_one_large_event_not_a_queue_of_them(llm_server: LLMServer) -> None:
    # Legal 8 MB events (under the 16 MiB max_event_bytes). The queue used to count reads,
    # not bytes: 64 reads' worth of these let the server push 504 MiB into a paused client.
    event = sse_event(chat_chunk("z" * (8 * MB)))
    count = 16
    llm_server.enqueue(Reply(body=text_stream_body(["warm"])),
                       Reply(body=[*[event] * count, *text_stream_body([], finish_reason="stop")]))
    process = start_client(llm_server, "pause")
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 60)
        assert ready and process.stdout.readline() == "paused\n"
        written = settled_bytes_sent(llm_server)
    finally:
        report = finish_client(process, send="go\n", timeout=120)
    # The consumer's batch (its first event), one queued event, the socket buffers.
    assert written < 4 * 8 * MB, written
    # Those two events, and the parser's copies of the one it was reading (issue #16).
    assert report["growth"] < 6 * 8 * MB, report
    assert (report["deltas"], report["chars"], report["completed"]) == (count, count * 8 * MB, True)


# --- 2. what a stream keeps -----------------------------------------------------------------


@pytest.mark.parametrize("delta_chars", [4096, 8])
def test_a_consumer_that_only_iterates_keeps_the_answer_once(llm_server: LLMServer, delta_chars: int) -> None:
    # 4 KiB deltas are one object shared by the event, the parser and the accumulator,
    # never merged while the consumer only iterates (it used to be: twice the answer).
    # Tiny deltas are kept as compact runs, once by the parser and once by the
    # accumulator (one object per delta used to cost 17 times the answer).
    size = 64 * MiB if delta_chars > 8 else 16 * MiB
    event = sse_event(chat_chunk("d" * delta_chars))
    llm_server.enqueue(Reply(body=text_stream_body(["warm"])),
                       Reply(body=[*[event] * (size // delta_chars), *text_stream_body([], finish_reason="stop")]))
    report = finish_client(start_client(llm_server, "whole"), timeout=300)
    assert (report["chars"], report["completed"]) == (size, True)
    limit = 1.3 if delta_chars > 8 else 2.5
    assert report["growth"] < limit * size, report


# --- 4. a stream closed under its consumer ----------------------------------------------------


def two_deltas_then_nothing() -> Reply:
    return Reply(body=[sse_event(chat_chunk("Hel", role="assistant")), sse_event(chat_chunk("lo")), Stall()])


VIEWS: dict[str, Callable[[ResponseStream], object]] = {
    "for loop": lambda stream: [event for event in stream],
    "next_event": lambda stream: [stream.next_event(timeout=30) for _ in range(100)],
    "text_stream": lambda stream: "".join(stream.text_stream),
    "aggregate": lambda stream: list(stream.aggregate()),
    "collect": lambda stream: stream.collect(),
}
CLOSERS: dict[str, Callable[[Client, ResponseStream], None]] = {
    "client.close()": lambda client, stream: client.close(),
    "stream.close()": lambda client, stream: stream.close(),
}


@pytest.mark.usefixtures("body_reader")
@pytest.mark.parametrize("closer", list(CLOSERS))
@pytest.mark.parametrize("view", list(VIEWS))
def test_a_stream_closed_by_another_thread_is_an_error_in_every_view(llm_server: LLMServer, view: str,
                                                                     closer: str) -> None:
    llm_server.enqueue(two_deltas_then_nothing())
    with Client(base_url=llm_server.url) as client:
        stream = client.stream("hi", model="m")
        threading.Timer(0.3, CLOSERS[closer], (client, stream)).start()
        started = time.monotonic()
        with pytest.raises(StreamError, match="closed before the answer was complete"):
            VIEWS[view](stream)
        assert time.monotonic() - started < 0.3 + RELEASE_TIMEOUT
        assert isinstance(stream.error, StreamError) and not stream.completed
        assert stream.snapshot().text == "Hello"  # what came is still there
    assert released(llm_server)


@pytest.mark.usefixtures("body_reader")
def test_the_consumer_closing_its_own_stream_is_not_an_error(llm_server: LLMServer) -> None:
    llm_server.enqueue(two_deltas_then_nothing(), two_deltas_then_nothing())
    with Client(base_url=llm_server.url) as client:
        with client.stream("hi", model="m") as stream:  # leaving the block is the consumer's choice
            for event in stream:
                if isinstance(event, OutputTextDelta):
                    break
        assert list(stream) == [] and stream.error is None
        other = client.stream("hi", model="m")
        seen = []
        for event in other:
            seen.append(event)
            if len(seen) == 2:
                other.close()  # closed in its own loop: the loop ends
        assert len(seen) == 2 and other.error is None
        with pytest.raises(StreamError, match="closed before the answer was complete"):
            other.collect()  # but the answer is not whole
    assert released(llm_server)


@pytest.mark.usefixtures("body_reader")
def test_the_browser_gets_an_error_not_done_when_the_client_closes(llm_server: LLMServer) -> None:
    llm_server.enqueue(two_deltas_then_nothing())
    client = Client(base_url=llm_server.url)
    stream = client.stream("hi", model="m")
    threading.Timer(0.3, client.close).start()  # the app shutting down
    frames = browser_body(stream).split("\n\n")
    assert [frame.split("\n")[0] for frame in frames[:-1]] == [
        "event: output_item.added", "event: output_text.delta", "event: output_text.delta", "event: error"]
    error = json.loads(frames[-2].split("data: ", 1)[1])
    assert error["type"] == "StreamError" and "closed before the answer was complete" in error["message"]
    assert "[DONE]" not in "".join(frames)
    assert released(llm_server)


# --- 3. the deadline covers the headers -------------------------------------------------------


class FaultServer:
    """A bare TCP server on 127.0.0.1 that runs `handle(connection)` for each connection
    in a thread of its own: for answers no HTTP server library would write."""

    def __init__(self, handle: Callable[[socket.socket], None]) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._handle = handle
        self._stop = threading.Event()
        self.accepted_at: list[float] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self.accepted_at.append(time.monotonic())
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            try:
                self._handle(connection)
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        self._listener.close()


def read_request(connection: socket.socket) -> bytes:
    """The request's head and its Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += connection.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += connection.recv(65536)
    return head


def trickle(connection: socket.socket, data: bytes, per_second: float) -> None:
    for byte in data:
        connection.sendall(bytes([byte]))
        time.sleep(1 / per_second)


ANSWER = b"".join(text_stream_body(["ok"]))
TRICKLES: dict[str, Callable[[socket.socket], None]] = {
    # the status line and headers at 4 bytes/s: 20 s of them
    "headers": lambda conn: (read_request(conn), trickle(
        conn, b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-Padding: " + b"p" * 40 + b"\r\n\r\n", 4)),
    # a 500 whose body comes at 4 bytes/s
    "error body": lambda conn: (read_request(conn), conn.sendall(
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"),
        trickle(conn, b'{"error": {"message": "' + b"e" * 70 + b'"}}', 4)),
    # never reads the request: the client's write blocks once the socket buffers are full
    "request unread": lambda conn: time.sleep(30),
}


@pytest.mark.parametrize("case", list(TRICKLES))
def test_the_deadline_covers_a_trickle_before_the_body(case: str) -> None:
    server = FaultServer(TRICKLES[case])
    prompt = "x" * (32 * MiB if case == "request unread" else 10)  # more than the socket buffers hold
    try:
        with Client(base_url=server.url, timeout=3) as client:
            started = time.monotonic()
            with pytest.raises(DeadlineExceededError, match="timeout of 3 s passed"):
                client.stream(prompt, model="m", request_max_retries=0)
            ended = time.monotonic()
    finally:
        server.close()
    # The deadline starts once the body is built (32 MiB of JSON take a while), before
    # the connection is made.
    assert ended - started >= 3 - 0.02
    assert ended - server.accepted_at[0] <= 3 + LATE, ended - server.accepted_at[0]
    assert len(server.accepted_at) == 1


def test_one_watchdog_thread_and_pooled_sockets_are_never_shut_down(llm_server: LLMServer) -> None:
    # Requests with deadlines that end well before them, a 400 among them (its body read
    # whole, so its connection goes back to the pool too): once their deadlines have
    # passed, the one pooled connection still carries the next request.
    llm_server.enqueue(*[Reply(body=text_stream_body(["ok"]))] * 20, error_reply(400, "bad"),
                       Reply(body=text_stream_body(["after"])))
    with Client(base_url=llm_server.url, timeout=0.3) as client:
        for _ in range(20):
            assert client.stream("hi", model="m").collect().text == "ok"
        with pytest.raises(BadRequestError):
            client.stream("hi", model="m")
        time.sleep(0.5)  # every deadline has passed
        assert client.stream("hi", model="m", timeout=5).collect().text == "after"
    assert llm_server.connections_accepted == 1
    assert len([t for t in threading.enumerate() if t.name == "llmx_sync-deadline"]) == 1
