"""llmx_sync.stream end to end through a real socket: event order, errors, the idle
timeout, backpressure, closing in every way (within a second), and connection reuse."""

from __future__ import annotations

import _thread
import gc
import gzip
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llm_server import (
    Disconnect,
    LLMServer,
    Pause,
    Reply,
    Stall,
    chat_chunk,
    sse_comment,
    sse_done,
    sse_event,
    text_stream_body,
    tool_call_delta,
)
from sockets import open_sockets_to, unread_bytes, wait_for
from streaming_support import RELEASE_TIMEOUT, make_client, reader_threads, released, split_at

from llmx_sync.body import READ_SIZE
from llmx_sync.chat import parse_chat_sse
from llmx_sync.client import Client
from llmx_sync.errors import InStreamError, StreamError, StreamIdleTimeoutError
from llmx_sync.events import (
    Completed,
    Event,
    FunctionCallArgumentsDelta,
    OutputItemAdded,
    OutputItemDone,
    OutputTextDelta,
    RateLimits,
    ReasoningContentDelta,
)
from llmx_sync.models import FunctionCall, Message
from llmx_sync.response import ResponseStream
from llmx_sync.stream import CLOSED_MESSAGE

# Every test here runs on both body readers (the socket fast path and urllib3's public
# API), as CI must; see `body_reader` in conftest.py.
pytestmark = pytest.mark.usefixtures("body_reader")

USAGE = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
TRANSPORT_ERROR = "stream disconnected before completion: Transport error: Error while reading the server response: "


@pytest.fixture(autouse=True)
def no_reader_left() -> Iterator[None]:
    yield
    assert wait_for(lambda: not reader_threads(), RELEASE_TIMEOUT), reader_threads()


@pytest.fixture
def client(llm_server: LLMServer) -> Iterator[Client]:
    with make_client(llm_server) as c:
        yield c


def stalled_after(count: int) -> Reply:
    """`count` text deltas, then nothing: the connection stays open, the turn unfinished."""
    return Reply(body=[sse_event(chat_chunk(f"t{i} ")) for i in range(count)] + [Stall()])


def full_turn_body() -> list[bytes]:
    """Reasoning, text and two parallel tool calls, a trailing usage chunk, [DONE]."""
    return [
        sse_event(chat_chunk(reasoning="think", role="assistant")),
        sse_event(chat_chunk("Hel")),
        sse_event(chat_chunk("lo")),
        sse_event(chat_chunk(tool_calls=[tool_call_delta(0, id="c1", name="f", arguments='{"a"')])),
        sse_event(chat_chunk(tool_calls=[tool_call_delta(1, id="c2", name="g", arguments="{}")])),
        sse_event(chat_chunk(tool_calls=[tool_call_delta(0, arguments=":1}")])),
        sse_event(chat_chunk(finish_reason="tool_calls")),
        sse_event(chat_chunk(usage=USAGE)),
        sse_done(),
    ]


# --- events --------------------------------------------------------------------------------


def test_events_in_order_through_a_socket(llm_server: LLMServer, client: Client) -> None:
    body = full_turn_body()
    llm_server.enqueue(Reply(body=body))
    with client.stream("hi", model="m") as stream:
        events = list(stream)
    assert events == list(parse_chat_sse(body))
    assert [type(e) for e in events] == [
        OutputItemAdded, ReasoningContentDelta, OutputItemAdded, OutputTextDelta, OutputTextDelta,
        FunctionCallArgumentsDelta, FunctionCallArgumentsDelta, FunctionCallArgumentsDelta,
        OutputItemDone, OutputItemDone, OutputItemDone, OutputItemDone, Completed,
    ]
    calls = [e.item for e in events if isinstance(e, OutputItemDone) and isinstance(e.item, FunctionCall)]
    assert [(c.call_id, c.name, c.arguments) for c in calls] == [("c1", "f", '{"a":1}'), ("c2", "g", "{}")]
    assert events[-1] == Completed("chatcmpl-1", events[-1].token_usage, "tool_calls")
    assert events[-1].token_usage is not None and events[-1].token_usage.total_tokens == 7


def test_stream_views_and_metadata(llm_server: LLMServer, client: Client) -> None:
    headers = {"x-request-id": "req-42", "x-ratelimit-limit-requests": "100",
               "x-ratelimit-remaining-requests": "75", "x-ratelimit-reset-requests": "1s"}
    for _ in range(3):
        llm_server.enqueue(Reply(headers=headers, body=text_stream_body(["Hel", "lo"], usage=USAGE)))

    stream = client.stream("hi", model="m")
    assert stream.response.status_code == 200
    assert stream.response.request_id == "req-42"
    assert stream.response.headers["X-REQUEST-ID"] == "req-42"
    assert stream.response.url == llm_server.chat_url
    assert list(stream.text_stream) == ["Hel", "lo"]

    aggregated = list(client.stream("hi", model="m").aggregate())
    assert isinstance(aggregated[0], RateLimits) and aggregated[0].snapshot.primary is not None
    assert aggregated[0].snapshot.primary.used_percent == 25.0
    assert [e.type for e in aggregated[1:]] == ["output_item.done", "completed"]
    message = aggregated[1].item
    assert isinstance(message, Message) and message.text == "Hello"

    stream = client.stream("hi", model="m")
    result = stream.collect()
    assert (result.text, result.finish_reason, result.response_id) == ("Hello", "stop", "chatcmpl-1")
    assert result.token_usage is not None and result.token_usage.input_tokens == 5
    assert stream.closed
    assert llm_server.connections_accepted == 1


def test_connection_reused_across_sequential_streams(llm_server: LLMServer, client: Client) -> None:
    for _ in range(3):
        llm_server.enqueue(Reply(body=text_stream_body(["a", "b"], usage=USAGE)))
        with client.stream("hi", model="m") as stream:
            assert [e.type for e in stream][-1] == "completed"
    assert llm_server.connections_accepted == 1
    assert len(llm_server.requests) == 3


def test_a_stream_closed_early_is_not_reused(llm_server: LLMServer, client: Client) -> None:
    llm_server.enqueue(stalled_after(2), Reply(body=text_stream_body(["ok"])))
    with client.stream("hi", model="m") as stream:
        next(stream)
    assert client.stream("hi", model="m").collect().text == "ok"
    assert llm_server.connections_accepted == 2


def test_content_length_and_close_delimited_bodies(llm_server: LLMServer, client: Client) -> None:
    body = text_stream_body(["x", "y"])
    llm_server.enqueue(Reply(body=body, chunked=False),  # Content-Length
                       Reply(body=[*body[:2], Pause(0.01), *body[2:]], chunked=False))  # until the close
    for _ in range(2):
        assert client.stream("hi", model="m").collect().text == "xy"


@pytest.mark.parametrize("chunked", [True, False])
def test_a_body_that_just_ends_is_a_broken_answer(llm_server: LLMServer, client: Client, chunked: bool) -> None:
    # Cleanly ended (the last chunk, or the end of a close-delimited body), yet without a
    # finish_reason or [DONE]: a proxy that lost its upstream. Never `completed`.
    llm_server.enqueue(Reply(body=text_stream_body(["x"], finish_reason=None, done=False), chunked=chunked))
    events: list[Event] = []
    with pytest.raises(StreamError, match="ended before the answer was complete"):
        for event in client.stream("hi", model="m"):
            events.append(event)
    assert [type(e) for e in events] == [OutputItemAdded, OutputTextDelta]


def test_gzip_body_is_read_through_urllib3(llm_server: LLMServer, client: Client) -> None:
    compressed = gzip.compress(b"".join(text_stream_body(["zip", "ped"])))
    llm_server.enqueue(Reply(headers={"Content-Encoding": "gzip"}, body=[compressed[:20], compressed[20:]]))
    assert client.stream("hi", model="m").collect().text == "zipped"


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_split_of_the_bytes_gives_the_same_events(llm_server: LLMServer, client: Client,
                                                      data: st.DataObject) -> None:
    whole = b"".join(full_turn_body())
    pieces = split_at(whole, data.draw(st.sets(st.integers(1, len(whole) - 1), max_size=25)))
    chunked = data.draw(st.booleans())
    llm_server.enqueue(Reply(body=pieces, chunked=chunked))
    assert list(client.stream("hi", model="m")) == list(parse_chat_sse([whole]))


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("reset", [False, True])
def test_server_gone_mid_stream(llm_server: LLMServer, client: Client, reset: bool) -> None:
    llm_server.enqueue(Reply(body=[sse_event(chat_chunk("a")), sse_event(chat_chunk("b")), Disconnect(reset=reset)]))
    seen: list[Event] = []
    with pytest.raises(StreamError) as caught:
        for event in client.stream("hi", model="m"):
            seen.append(event)
    assert [e.delta for e in seen if isinstance(e, OutputTextDelta)] == ["a", "b"]
    assert str(caught.value).startswith(TRANSPORT_ERROR)
    assert not isinstance(caught.value, StreamIdleTimeoutError)


def test_truncated_content_length_body(llm_server: LLMServer, client: Client, body_reader: str) -> None:
    body = [sse_event(chat_chunk("a")), Disconnect()]
    llm_server.enqueue(Reply(headers={"Content-Length": "10000"}, body=body, chunked=False))
    seen: list[Event] = []
    # Each reader words the reason its own way: ours counts the bytes, urllib3 names IncompleteRead.
    reason = {"socket": "with 9829 bytes of the body unread",
              "urllib3": r"IncompleteRead\(171 bytes read, 9829 more expected\)"}[body_reader]
    with pytest.raises(StreamError, match=reason) as caught:
        for event in client.stream("hi", model="m"):
            seen.append(event)
    assert [e.type for e in seen] == ["output_item.added", "output_text.delta"]
    assert str(caught.value).startswith(TRANSPORT_ERROR)


def test_error_in_the_stream_after_its_events(llm_server: LLMServer, client: Client) -> None:
    llm_server.enqueue(
        Reply(body=[sse_event(chat_chunk("a")), sse_event({"error": {"message": "boom", "code": "x"}}), sse_done()]),
        Reply(body=text_stream_body(["ok"])),
    )
    seen: list[Event] = []
    with pytest.raises(InStreamError) as caught:
        for event in client.stream("hi", model="m"):
            seen.append(event)
    assert [e.type for e in seen] == ["output_item.added", "output_text.delta"]
    assert str(caught.value) == "unexpected status 200 OK: boom"
    # The rest of the body was read, so the connection went back to the pool.
    assert client.stream("hi", model="m").collect().text == "ok"
    assert llm_server.connections_accepted == 1


def test_an_empty_body_is_an_error(llm_server: LLMServer, client: Client) -> None:
    llm_server.enqueue(Reply(body=[]))
    with pytest.raises(StreamError, match="without sending any event"):
        list(client.stream("hi", model="m"))


# --- the idle timeout ------------------------------------------------------------------------


@pytest.mark.parametrize("keep_alive", [False, True])
def test_idle_timeout(llm_server: LLMServer, client: Client, keep_alive: bool) -> None:
    filler: list[bytes | Pause] = [Pause(0.05), sse_comment()] * 40 if keep_alive else []
    llm_server.enqueue(Reply(body=[sse_event(chat_chunk("a")), *filler, Stall()]))
    seen: list[Event] = []
    started = time.monotonic()
    with pytest.raises(StreamIdleTimeoutError) as caught:
        for event in client.stream("hi", model="m", idle_timeout=0.4):
            seen.append(event)
    elapsed = time.monotonic() - started
    assert [e.type for e in seen] == ["output_item.added", "output_text.delta"]
    assert str(caught.value) == "stream disconnected before completion: idle timeout waiting for SSE"
    # Keep-alive comments are life: the 2 s of pings keep the stream open past its idle
    # timeout, which then counts from the last ping.
    alive = 2.0 if keep_alive else 0.0
    assert alive + 0.4 <= elapsed < alive + 0.4 + 0.5
    assert released(llm_server)


def test_events_restart_the_idle_timer(llm_server: LLMServer, client: Client) -> None:
    body: list[bytes | Pause] = []
    for token in ["a", "b", "c", "d"]:
        body += [Pause(0.2), sse_event(chat_chunk(token))]
    llm_server.enqueue(Reply(body=[*body, sse_event(chat_chunk(finish_reason="stop")), sse_done()]))
    assert client.stream("hi", model="m", idle_timeout=0.5).collect().text == "abcd"


def test_idle_timeout_defaults_to_the_providers(llm_server: LLMServer) -> None:
    llm_server.enqueue(stalled_after(1))
    with make_client(llm_server, idle_timeout=0.3) as client, pytest.raises(StreamIdleTimeoutError):
        list(client.stream("hi", model="m"))


# --- backpressure ----------------------------------------------------------------------------


def test_a_slow_consumer_holds_the_reader_back(llm_server: LLMServer) -> None:
    count = 3000
    tokens = [f"token-{i:05d} " + "x" * 200 for i in range(count)]  # ~0.8 MB, one HTTP chunk each
    llm_server.enqueue(Reply(body=text_stream_body(tokens)))
    with make_client(llm_server) as big_buffers:
        pass
    client = Client(big_buffers.provider, max_buffered_bytes=3 * READ_SIZE)
    with client, client.stream("hi", model="m") as stream:
        first = stream.next_event(timeout=30)  # with a timeout: the reader thread reads ahead
        assert isinstance(first, OutputItemAdded)
        time.sleep(0.5)  # the reader fills the queue, then waits
        # At most the limit, plus what one read added before the reader saw it full.
        queued = stream._queue.queued_bytes  # noqa: SLF001
        assert 3 * READ_SIZE <= queued < 4 * READ_SIZE
        # The rest stays in the kernel (and the server), not in memory of ours.
        assert unread_bytes(llm_server.port) > 0
        texts = [e.delta for e in stream if isinstance(e, OutputTextDelta)]
    assert texts == tokens


# --- which thread reads ------------------------------------------------------------------------


def paced_tokens(count: int) -> tuple[list[str], Reply]:
    """`count` text deltas, each its own read (a pause before each)."""
    tokens = [f"p{i} " for i in range(count)]
    body: list[bytes | Pause] = []
    for piece in text_stream_body(tokens):
        body += [piece, Pause(0.02)]
    return tokens, Reply(body=body)


def test_a_for_loop_reads_its_first_batch_itself_and_the_rest_through_one_reader_thread(
        llm_server: LLMServer, client: Client, body_reader: str) -> None:
    # (In the main thread a read must be cut into slices, to see a Ctrl-C: urllib3's
    # reader cannot resume a read cut short, so it reads in a reader thread there.)
    tokens, reply = paced_tokens(8)
    llm_server.enqueue(reply)
    texts: list[str] = []
    threads_per_event: list[int] = []
    with client.stream("hi", model="m") as stream:
        assert reader_threads() == []  # an open stream nobody reads costs no thread
        for event in stream:
            threads_per_event.append(len(reader_threads()))
            if isinstance(event, OutputTextDelta):
                texts.append(event.delta)
    assert texts == tokens
    if body_reader == "socket":
        assert threads_per_event[0] == 0  # the first batch: read by the loop's own thread
    assert max(threads_per_event) == 1 and threads_per_event[-1] == 1  # then one reader thread
    assert stream.completed
    assert wait_for(lambda: not reader_threads())
    assert wait_for(lambda: open_sockets_to(llm_server.port) == 1)  # the connection went back to the pool


def test_a_short_answer_that_the_first_read_has_whole_starts_no_thread(llm_server: LLMServer, client: Client,
                                                                      body_reader: str) -> None:
    # One write of a few hundred bytes, with a Content-Length: the first read takes it all.
    llm_server.enqueue(Reply(body=[b"".join(text_stream_body(["Hel", "lo"]))], chunked=False))
    threads_per_event: list[int] = []
    with client.stream("hi", model="m") as stream:
        for _event in stream:
            threads_per_event.append(len(reader_threads()))
    assert stream.completed
    assert stream.collect().text == "Hello"
    if body_reader == "socket":
        assert set(threads_per_event) == {0}
    assert wait_for(lambda: open_sockets_to(llm_server.port) == 1)


def test_next_event_with_a_timeout_reads_through_the_reader_thread_from_the_start(
        llm_server: LLMServer, client: Client) -> None:
    # Its wait may end without an event (a heartbeat is due): a read in the caller's
    # thread could not be left half done, so the reader thread reads from the first event.
    tokens, reply = paced_tokens(8)
    llm_server.enqueue(reply)
    texts: list[str] = []
    threads_per_event: list[int] = []
    with client.stream("hi", model="m") as stream:
        while True:
            try:
                event = stream.next_event(timeout=30)
            except StopIteration:
                break
            threads_per_event.append(len(reader_threads()))
            if isinstance(event, OutputTextDelta):
                texts.append(event.delta)
    assert texts == tokens  # in order, none lost
    assert threads_per_event[0] == 1 and max(threads_per_event) == 1
    assert stream.completed
    assert wait_for(lambda: not reader_threads())
    assert wait_for(lambda: open_sockets_to(llm_server.port) == 1)  # the connection went back to the pool


def test_close_from_another_thread_wakes_a_read_in_a_worker_thread(llm_server: LLMServer,
                                                                   client: Client) -> None:
    # Outside the main thread the read is not cut into slices: close() wakes it by
    # shutting the socket down.
    llm_server.enqueue(stalled_after(1))
    stream = client.stream("hi", model="m")
    outcome: dict[str, object] = {}

    def consume() -> None:
        try:
            for _ in stream:
                pass
            outcome["ended"] = "quietly"
        except StreamError as exc:
            outcome["ended"] = str(exc)

    worker = threading.Thread(target=consume)
    worker.start()
    time.sleep(0.3)  # the worker is blocked in recv now
    assert worker.is_alive()
    stream.close()
    worker.join(RELEASE_TIMEOUT + 5)
    assert not worker.is_alive()
    assert outcome == {"ended": str(StreamError(CLOSED_MESSAGE))}
    assert released(llm_server)


# --- closing ---------------------------------------------------------------------------------


def test_close_while_the_reader_is_in_recv(llm_server: LLMServer, client: Client) -> None:
    llm_server.enqueue(stalled_after(2))
    stream = client.stream("hi", model="m")
    assert isinstance(next(stream), OutputItemAdded)
    time.sleep(0.1)  # the reader is blocked in recv now
    started = time.monotonic()
    stream.close()
    assert time.monotonic() - started < RELEASE_TIMEOUT
    assert released(llm_server)
    assert llm_server.wait_for_client_disconnect()
    assert list(stream) == []  # a closed stream ends at once
    stream.close()  # idempotent


def test_close_from_another_thread_while_the_consumer_waits(llm_server: LLMServer, client: Client) -> None:
    llm_server.enqueue(stalled_after(1))
    stream = client.stream("hi", model="m")
    threading.Timer(0.2, stream.close).start()
    started = time.monotonic()
    events: list[Event] = []
    with pytest.raises(StreamError, match="closed before the answer was complete"):  # cut, not ended
        events.extend(stream)
    assert time.monotonic() - started < 0.2 + RELEASE_TIMEOUT
    assert [e.type for e in events] == ["output_item.added", "output_text.delta"]
    assert released(llm_server)
    assert list(stream) == []  # raised once, as any stream error


def test_close_while_the_reader_waits_on_a_full_queue(llm_server: LLMServer) -> None:
    body: list[bytes | Pause] = []
    for i in range(50):
        body += [sse_event(chat_chunk(f"t{i}")), Pause(0.01)]
    llm_server.enqueue(Reply(body=[*body, Stall()]))
    with make_client(llm_server) as template:
        pass
    with Client(template.provider, max_buffered_bytes=1024) as client:  # full after one event
        stream = client.stream("hi", model="m")
        assert stream.next_event(timeout=30) is not None  # with a timeout: the reader thread reads ahead
        assert wait_for(lambda: stream._queue.full(), 2.0)  # noqa: SLF001
        time.sleep(0.1)
        stream.close()
        assert released(llm_server)


def test_leaving_with_on_an_exception_in_the_consumer(llm_server: LLMServer, client: Client) -> None:
    llm_server.enqueue(stalled_after(3))
    with pytest.raises(ZeroDivisionError), client.stream("hi", model="m") as stream:
        for _ in stream:
            1 / 0  # noqa: B018
    assert released(llm_server)


def test_exception_in_a_bare_for_loop(llm_server: LLMServer, client: Client) -> None:
    llm_server.enqueue(stalled_after(3))

    def consume() -> None:
        for _ in client.stream("hi", model="m"):
            raise ValueError("consumer bug")

    with pytest.raises(ValueError, match="consumer bug"):
        consume()
    assert released(llm_server)


def test_break_and_garbage_collection(llm_server: LLMServer, client: Client) -> None:
    llm_server.enqueue(stalled_after(3))
    for event in client.stream("hi", model="m"):
        if isinstance(event, OutputTextDelta):
            break
    gc.collect()
    assert released(llm_server)


def test_an_abandoned_stream_in_a_cycle_is_collected(llm_server: LLMServer, client: Client) -> None:
    llm_server.enqueue(stalled_after(3))
    holder: dict[str, object] = {}
    holder["stream"] = client.stream("hi", model="m")
    holder["self"] = holder  # a cycle: only the collector frees it
    next(iter(holder["stream"]))  # type: ignore[call-overload]
    del holder
    gc.collect()
    assert released(llm_server)


def test_keyboard_interrupt_while_waiting(llm_server: LLMServer, client: Client) -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("KeyboardInterrupt goes to the main thread")
    llm_server.enqueue(stalled_after(2))
    stream = client.stream("hi", model="m")
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        for _ in stream:
            pass
    assert time.monotonic() - started < 0.3 + RELEASE_TIMEOUT
    assert stream.closed
    assert released(llm_server)


def test_a_closing_client_closes_its_open_streams(llm_server: LLMServer) -> None:
    llm_server.enqueue(stalled_after(1), stalled_after(1))
    client = make_client(llm_server)
    streams = [client.stream("hi", model="m"), client.stream("hi", model="m")]
    client.close()
    assert all(s.closed for s in streams)
    assert released(llm_server)
    with pytest.raises(RuntimeError, match="closed"):
        client.stream("hi", model="m")


def test_a_finished_stream_leaves_its_connection_pooled_only(llm_server: LLMServer, client: Client) -> None:
    llm_server.enqueue(Reply(body=text_stream_body(["a"])))
    assert client.stream("hi", model="m").collect().text == "a"
    assert wait_for(lambda: not reader_threads())
    assert open_sockets_to(llm_server.port) == 1  # the pooled connection
    client.close()
    assert wait_for(lambda: open_sockets_to(llm_server.port) == 0)


# --- TLS --------------------------------------------------------------------------------------


@pytest.fixture
def tls_server(llm_server: LLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LLMServer:
    """`llm_server` speaking HTTPS with a self-signed certificate the client trusts."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=30)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    # The accept loop reads the listening socket anew for every connection.
    llm_server._httpd.socket = context.wrap_socket(llm_server._httpd.socket, server_side=True)  # type: ignore[union-attr]  # noqa: SLF001
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    return llm_server


def test_tls_reuse_close_in_recv_and_idle_timeout(tls_server: LLMServer) -> None:
    with Client(base_url=tls_server.url.replace("http://", "https://")) as client:
        for _ in range(2):
            tls_server.enqueue(Reply(body=text_stream_body(["Hel", "lo"])))
            assert client.stream("hi", model="m").collect().text == "Hello"
        assert tls_server.connections_accepted == 1

        tls_server.enqueue(stalled_after(1))
        stream = client.stream("hi", model="m")
        next(stream)
        time.sleep(0.1)  # blocked in the TLS read now
        stream.close()
        assert released(tls_server)

        tls_server.enqueue(Reply(body=[sse_event(chat_chunk("a")), *[Pause(0.05), sse_comment()] * 40, Stall()]))
        started = time.monotonic()
        with pytest.raises(StreamIdleTimeoutError):
            list(client.stream("hi", model="m", idle_timeout=0.4))
        assert 2.4 <= time.monotonic() - started < 2.9  # the pings kept it alive


# --- many threads ----------------------------------------------------------------------------


def test_fifty_concurrent_streams_through_one_client(llm_server: LLMServer, client: Client) -> None:
    def reply(request: object) -> Reply:
        prompt = request.json()["messages"][-1]["content"]  # type: ignore[attr-defined]
        return Reply(body=[sse_event(chat_chunk(prompt)), Pause(0.2), *text_stream_body([" done"])])

    llm_server.handler = reply
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            results[n] = client.stream(f"n{n}", model="m").collect().text
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors
    assert results == {n: f"n{n} done" for n in range(50)}
    assert 1 <= llm_server.connections_accepted <= 50


def test_a_stream_is_a_plain_iterator(llm_server: LLMServer, client: Client) -> None:
    llm_server.enqueue(Reply(body=text_stream_body(["a"])))
    stream = client.stream("hi", model="m")
    assert isinstance(stream, ResponseStream)
    assert iter(stream) is stream
    assert "ResponseStream open status=200" in repr(stream)
    assert next(stream).type == "output_item.added"
    assert [e.type for e in stream] == ["output_text.delta", "output_item.done", "completed"]
    with pytest.raises(StopIteration):
        next(stream)


def test_next_event_times_out_and_the_stream_goes_on(llm_server: LLMServer, client: Client) -> None:
    llm_server.enqueue(Reply(body=[sse_event(chat_chunk("a")), Pause(0.6), sse_event(chat_chunk("b")), sse_done()]))
    with client.stream("hi", model="m") as stream:
        assert isinstance(stream.next_event(timeout=5), OutputItemAdded)
        assert stream.next_event(timeout=5) == OutputTextDelta("a")
        with pytest.raises(TimeoutError):
            stream.next_event(timeout=0.1)
        rest = [stream.next_event(timeout=5) for _ in range(3)]
        assert rest[0] == OutputTextDelta("b")
        assert isinstance(rest[-1], Completed)
        with pytest.raises(StopIteration):
            stream.next_event(timeout=5)
