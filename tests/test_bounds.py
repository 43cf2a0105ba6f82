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
8. (tests/test_transport.py) at most ``retries + 1`` POSTs, on warm connections too, and
   an uncounted resend only for a request not fully written.

Memory is measured as in test_production.py: in a fresh interpreter that runs the
client alone, its peak RSS reset once the client is warm.
"""

from __future__ import annotations

import asyncio
import json
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from llm_server import LLMServer, Reply, Stall, chat_chunk, error_reply, sse_event, text_stream_body
from sockets import wait_for
from streaming_support import RELEASE_TIMEOUT, reader_threads, released
from test_production import (
    API_KEY,
    ENV_HEADER_SECRET,
    HEADER_SECRET,
    LATE,
    QUERY_SECRET,
    SECRETS,
    browser_body,
    fail_with,
    finish_client,
    start_client,
)
from test_runner import (
    PATIENCE,
    Gate,
    answer_reply,
    calls_reply,
    get_weather,
    of_type,
    paris,
    read,
    tool_messages,
)

from llmx_sync.client import Client
from llmx_sync.errors import (
    AuthenticationError,
    BadRequestError,
    DeadlineExceededError,
    InvalidInputError,
    StreamError,
)
from llmx_sync.events import Completed, Event, OutputTextDelta, ToolResult
from llmx_sync.functions import tool
from llmx_sync.providers import Provider
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


def watchdog_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "llmx_sync-deadline"]


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
        # Twenty requests waiting for their headers at once: one watchdog thread for all.
        llm_server.default = Reply(headers_after=0.5, body=text_stream_body(["late"]))
        waiting = [threading.Thread(target=lambda: client.stream("hi", model="m", timeout=5).collect())
                   for _ in range(20)]
        for thread in waiting:
            thread.start()
        assert wait_for(lambda: len(llm_server.requests) == 42)
        assert len(watchdog_threads()) == 1
        for thread in waiting:
            thread.join(PATIENCE)
    assert wait_for(lambda: not watchdog_threads())  # nothing to watch: it ended


# --- 5. tools are bounded, awaited and checked -------------------------------------------------


@pytest.fixture(name="gate")
def a_gate_opened_at_teardown() -> Iterator[Gate]:
    """A tool that blocks until the test ends (the threads it abandoned end then)."""
    gate = Gate()
    yield gate
    gate.opened.set()


def test_a_tool_past_tool_timeout_is_an_error_output_and_the_run_goes_on(
        llm_server: LLMServer, gate: Gate, caplog: pytest.LogCaptureFixture) -> None:
    llm_server.enqueue(calls_reply(("c1", "wait_here", '{"city": "Paris"}'), paris("c2")), answer_reply())
    with Client(base_url=llm_server.url) as client, caplog.at_level("WARNING", logger="llmx_sync"):
        started = time.monotonic()
        run = client.run("Weather?", model="m", tools=[tool(gate.wait_here), get_weather], tool_timeout=0.5)
        events = read(run)
        elapsed = time.monotonic() - started
    late, weather = of_type(events, ToolResult)
    assert late.output == late.error == "error: the tool 'wait_here' timed out after 0.5 s (it did not return in time)"
    assert weather.output == "sunny in Paris for 1 day(s)" and weather.error is None
    assert tool_messages(llm_server, 1) == [late.output, weather.output]  # the model is told
    assert of_type(events, Completed)[-1].turn == 2  # and the run went on
    assert 0.5 <= elapsed < 0.5 + 1.0
    # Abandoned, not stopped (Python cannot), and said so.
    assert gate.entered.is_set() and not gate.returned.is_set()
    (record,) = [r for r in caplog.records if "timed out" in r.getMessage()]
    assert "left running" in record.getMessage() and "abandoned tool thread" in record.getMessage()


def test_parallel_false_goes_on_past_a_tool_that_timed_out(llm_server: LLMServer, gate: Gate) -> None:
    llm_server.enqueue(calls_reply(("c1", "wait_here", '{"city": "Paris"}'), paris("c2")), answer_reply())
    with Client(base_url=llm_server.url) as client:
        run = client.run("Weather?", model="m", tools=[tool(gate.wait_here), get_weather], parallel=False,
                         tool_timeout=0.3)
        late, weather = of_type(read(run), ToolResult)
    assert "timed out after 0.3 s" in late.output
    assert weather.output == "sunny in Paris for 1 day(s)"


def test_the_runs_timeout_covers_its_tools(llm_server: LLMServer, gate: Gate) -> None:
    # `timeout=` bounds the whole run: a tool that hangs used to keep it blocked for ever.
    llm_server.enqueue(calls_reply(("c1", "wait_here", '{"city": "Paris"}')), answer_reply())
    events: list[Event] = []
    with Client(base_url=llm_server.url) as client:
        started = time.monotonic()
        run = client.run("Weather?", model="m", tools=[tool(gate.wait_here)], timeout=1.5)
        with pytest.raises(DeadlineExceededError, match="timeout of 1.5 s passed"):
            while True:
                events.append(run.next_event(timeout=PATIENCE))
        elapsed = time.monotonic() - started
    assert 1.5 - 0.02 <= elapsed <= 1.5 + LATE, elapsed
    (late,) = of_type(events, ToolResult)  # the tool's result first, then the run's end
    assert "timed out after" in late.output
    assert len(llm_server.requests) == 1  # no turn after the deadline


async def fetch_weather(city: str) -> dict[str, str]:
    """The weather, from a service that wants to be awaited.

    Args:
        city: The city.
    """
    await asyncio.sleep(0.01)
    return {"city": city, "sky": "sunny"}


def gives_a_generator(city: str) -> Iterator[str]:
    """Yields instead of returning.

    Args:
        city: The city.
    """
    yield city


def gives_an_object(city: str) -> object:
    """Returns something that is not data.

    Args:
        city: The city.
    """
    return object()


@pytest.mark.filterwarnings("error::RuntimeWarning")  # "coroutine ... was never awaited"
@pytest.mark.parametrize(("function", "output"), [
    (fetch_weather, '{"city":"Paris","sky":"sunny"}'),
    (gives_a_generator, "error: the tool returned a generator, which is not data the model can read; return a "
                        "str, a number, a bool, None, a list or dict of those, a dataclass, a TypedDict or a "
                        "pydantic model"),
    (gives_an_object, "error: the tool returned an object, which is not data the model can read; return a "
                      "str, a number, a bool, None, a list or dict of those, a dataclass, a TypedDict or a "
                      "pydantic model"),
])
def test_async_tools_are_awaited_and_results_that_are_not_data_are_errors(
        llm_server: LLMServer, function: Callable[..., Any], output: str) -> None:
    llm_server.enqueue(calls_reply(("c1", function.__name__, '{"city": "Paris"}')), answer_reply())
    with Client(base_url=llm_server.url) as client:
        (result,) = of_type(read(client.run("Weather?", model="m", tools=[function])), ToolResult)
    assert result.output == output
    assert (result.error is None) == output.startswith("{")
    assert tool_messages(llm_server, 1) == [output]


# --- 7. secrets out of every chain, URL and echoed body ----------------------------------------


def error_chain(error: BaseException) -> Iterator[BaseException]:
    """`error`, its cause and context (hidden or not), theirs, and exceptions in args."""
    seen: set[int] = set()
    todo = [error]
    while todo:
        current = todo.pop()
        if id(current) not in seen:
            seen.add(id(current))
            yield current
            todo += [e for e in (current.__cause__, current.__context__) if e is not None]
            todo += [arg for arg in current.args if isinstance(arg, BaseException)]


@pytest.mark.parametrize("failure", ["refused", "malformed URL", "401", "stream error"])
def test_no_secret_anywhere_in_an_errors_chain(llm_server: LLMServer, failure: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # What an error tracker walks: `ConnectionFailedError.__context__` held requests' error,
    # its message quoting `?api-key=…` (hidden from format_exc() by `from None` only).
    monkeypatch.setenv("LLMX_TEST_ENV_HEADER", ENV_HEADER_SECRET)
    client, error, _ = fail_with(failure, llm_server)
    client.close()
    for link in error_chain(error):
        for text in (repr(link), str(link), *map(repr, link.args)):
            assert not [secret for secret in SECRETS if secret in text], (type(link), text)


def test_a_secret_in_the_base_urls_query_is_hidden_in_reprs_and_messages() -> None:
    url = f"http://127.0.0.1:1/v1?api-key={QUERY_SECRET}"
    provider = Provider("p", url)
    with Client(provider) as client:
        shown = [repr(provider), repr(client), repr(provider.connection)]
    with pytest.raises(InvalidInputError) as caught:
        Provider("p", url + " ")  # (white space: refused, naming the URL)
    shown.append(str(caught.value))
    assert all("api-key=***" in text for text in shown), shown
    assert not [text for text in shown if QUERY_SECRET in text]


def test_an_error_body_that_echoes_a_secret_shows_it_as_stars(llm_server: LLMServer) -> None:
    echo = f"Invalid API key {API_KEY} (header {HEADER_SECRET}, query {QUERY_SECRET})"
    llm_server.enqueue(error_reply(401, echo))
    provider = Provider("p", llm_server.url, api_key=API_KEY, http_headers={"X-Custom": HEADER_SECRET},
                        query_params={"key": QUERY_SECRET})
    with Client(provider) as client, pytest.raises(AuthenticationError) as caught:
        client.stream("hi", model="m")
    error = caught.value
    assert error.message == "Invalid API key *** (header ***, query ***)"
    for text in (error.body, str(error), repr(error)):
        assert "***" in text and not [secret for secret in SECRETS if secret in text], text
    assert llm_server.requests[0].headers["Authorization"] == f"Bearer {API_KEY}"  # (sent as it is)
