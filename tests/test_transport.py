"""llmx_sync.transport: the retry rules (pure), the retry loop (mocked with `responses`
where requests is all there is to it, the real test server where sockets matter),
log redaction, and the chunked-body decoder."""

from __future__ import annotations

import email.utils
import functools
import itertools
import logging
import socket
import threading
import time
from typing import Any

import pytest
import requests
import responses
import urllib3.connection
from hypothesis import given, settings
from hypothesis import strategies as st
from llm_server import (
    Disconnect,
    LLMServer,
    Reply,
    Stall,
    chat_chunk,
    error_reply,
    sse_event,
    text_reply,
    text_stream_body,
)
from streaming_support import make_client, split_at

from llmx_sync import Client
from llmx_sync.body import SocketBodyReader, Urllib3BodyReader, _Dechunker, open_body
from llmx_sync.errors import (
    BadRequestError,
    ConnectionFailedError,
    InternalServerError,
    NotFoundError,
    RateLimitError,
    RetryLimitReachedError,
    UnexpectedStatusError,
)
from llmx_sync.testing import _server as scripted_server
from llmx_sync.transport import (
    Transport,
    backoff,
    closes_after_answer,
    is_retryable_status,
    parse_retry_after,
    request_id,
    retry_delay,
)

URL = "http://llm.test/v1/chat/completions"
SECRET = "sk-test-SECRET-123"


class FixedRandom:
    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


def send(transport: Transport, url: str = URL, **overrides: object) -> requests.Response:
    options: dict[str, object] = dict(
        headers={"Authorization": f"Bearer {SECRET}"}, body=b"{}", max_retries=4, max_retry_delay=60.0,
        connect_timeout=2.0, read_timeout=5.0,
    )
    options.update(overrides)
    return transport.send(url, **options)  # type: ignore[arg-type]


# --- pure rules ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 599])
def test_retryable_statuses(status: int) -> None:
    assert is_retryable_status(status)


@pytest.mark.parametrize("status", [200, 301, 400, 401, 403, 404, 413, 422, 499, 600])
def test_final_statuses(status: int) -> None:
    assert not is_retryable_status(status)


@pytest.mark.parametrize(
    ("attempt", "low_ms", "high_ms"),
    [(0, 180, 219), (1, 180, 219), (2, 360, 439), (3, 720, 879), (4, 1440, 1759), (5, 2880, 3519)],
)
def test_backoff_is_the_seeds_table(attempt: int, low_ms: int, high_ms: int) -> None:
    assert backoff(attempt, FixedRandom(0.0)) == low_ms / 1000
    assert backoff(attempt, FixedRandom(0.999999999)) == high_ms / 1000
    assert low_ms / 1000 <= backoff(attempt) <= high_ms / 1000


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"Retry-After": "1.5"}, 1.5),
        ({"Retry-After": " 0 "}, 0.0),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "12.5"}, 0.0125),
        ({"Retry-After-Ms": "250", "Retry-After": "10"}, 0.25),  # ms wins
        ({"retry-after-ms": "-5", "Retry-After": "2"}, 2.0),  # an unusable ms falls through
        ({"Retry-After": "-1"}, None),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "1e3"}, None),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": ""}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers) == expected


def test_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after({"Retry-After": email.utils.formatdate(now + 30, usegmt=True)}, now=lambda: now) == 30.0
    assert parse_retry_after({"Retry-After": email.utils.formatdate(now - 30, usegmt=True)}, now=lambda: now) is None
    assert parse_retry_after({"Retry-After": "Wed, 99 Foo 2024 99:00:00 GMT"}, now=lambda: now) is None


def test_retry_delay_falls_back_to_the_backoff() -> None:
    assert retry_delay(2, {"Retry-After": "7"}) == 7.0
    assert retry_delay(2, {"Retry-After": "-7"}, rng=FixedRandom(0.5)) == backoff(2, FixedRandom(0.5)) == 0.4
    assert retry_delay(1, {}, rng=FixedRandom(0.0)) == 0.18


def test_request_id_header_order() -> None:
    assert request_id(requests.structures.CaseInsensitiveDict({"cf-ray": "c", "X-Request-Id": "x"})) == "x"
    assert request_id(requests.structures.CaseInsensitiveDict({"cf-ray": "c", "Request-Id": "r"})) == "r"
    assert request_id(requests.structures.CaseInsensitiveDict({"CF-RAY": "c"})) == "c"
    assert request_id(requests.structures.CaseInsensitiveDict({})) is None


def test_debug_log_shows_only_the_sdks_own_header_values(llm_server: LLMServer,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    # A credential can hide in any header (a provider's `X-Env` from env_http_headers):
    # only the values the caller marks as loggable (the SDK's own headers) are shown.
    caplog.set_level(logging.DEBUG, logger="llmx_sync")
    llm_server.enqueue(Reply(body=text_stream_body(["x"])))
    headers = {"Authorization": f"Bearer {SECRET}", "X-Env": SECRET, "Content-Type": "application/json"}
    with Transport() as transport:
        transport.send(f"{llm_server.chat_url}?api-key={SECRET}", headers=headers, body=b"{}", max_retries=0,
                       max_retry_delay=1, connect_timeout=5, read_timeout=5,
                       log_headers={"Content-Type": "application/json"}).close()
    assert SECRET not in caplog.text
    assert "'X-Env': '***'" in caplog.text and "'Content-Type': 'application/json'" in caplog.text
    assert "api-key=***" in caplog.text


def test_urllib3s_request_line_hides_the_query_values_of_the_sdks_requests_only(
        llm_server: LLMServer, caplog: pytest.LogCaptureFixture) -> None:
    # urllib3 logs "POST /path?query HTTP/1.1" at DEBUG: a key in the query would be in it.
    caplog.set_level(logging.DEBUG, logger="urllib3")
    llm_server.default = Reply(body=text_stream_body(["x"]))
    with Transport() as transport:
        send(transport, f"{llm_server.chat_url}?api-key={SECRET}&api-version=1", max_retries=0).close()
    requests.post(f"{llm_server.chat_url}?other=visible", timeout=5).close()  # not the SDK's: left alone
    lines = [r.getMessage() for r in caplog.records if r.name == "urllib3.connectionpool" and "POST" in r.getMessage()]
    assert len(lines) == 2
    assert '"POST /v1/chat/completions?api-key=***&api-version=*** HTTP/1.1" 200' in lines[0]
    assert "?other=visible " in lines[1]
    assert SECRET not in caplog.text


@pytest.mark.parametrize(("host", "error"), [("bad..host", "LocationParseError"), ("%zz", "InvalidURL")])
def test_a_url_that_cannot_be_parsed_is_a_connection_error_that_names_no_secret(
        transport: Transport, host: str, error: str) -> None:
    # urllib3's own error for a host it cannot parse used to escape untyped; both quote the
    # URL. (Nothing is sent: neither gets as far as a connection.)
    with pytest.raises(ConnectionFailedError) as caught:
        send(transport, f"http://user:{SECRET}@{host}/v1/chat/completions")
    assert str(caught.value) == (f"Connection failed: error sending request to http://user:***@{host}"
                                 f"/v1/chat/completions: the URL is not valid ({error})")
    assert caught.value.__cause__ is None and caught.value.__context__ is None  # not even hidden there


# --- the chunked decoder --------------------------------------------------------------------


def chunked(*pieces: bytes, extension: bytes = b"", trailers: bytes = b"") -> bytes:
    body = b"".join(b"%x%b\r\n%b\r\n" % (len(p), extension, p) for p in pieces)
    return body + b"0\r\n" + trailers + b"\r\n"


PAYLOADS = [b"data: {\"a\":1}\n\n", b"\r\n\r\n", b"0\r\n\r\n", b"x" * 300, b"data: [DONE]\n\n"]


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_dechunker_any_split(data: st.DataObject) -> None:
    extension = data.draw(st.sampled_from([b"", b";name=value"]))
    trailers = data.draw(st.sampled_from([b"", b"X-Trailer: 1\r\n"]))
    framed = chunked(*PAYLOADS, extension=extension, trailers=trailers)
    cuts = data.draw(st.sets(st.integers(1, len(framed) - 1), max_size=12))
    decoder = _Dechunker()
    out = b"".join(decoder.feed(piece) for piece in split_at(framed, cuts))
    assert out == b"".join(PAYLOADS)
    assert decoder.done


def test_dechunker_stops_at_the_last_chunk() -> None:
    decoder = _Dechunker()
    assert decoder.feed(chunked(b"abc") + b"garbage after the body") == b"abc"
    assert decoder.done


@pytest.mark.parametrize("framed", [b"zz\r\nabc\r\n", b"-3\r\nabc\r\n", b"1" * 5000])
def test_dechunker_rejects_garbage(framed: bytes) -> None:
    with pytest.raises(ValueError):
        _Dechunker().feed(framed)


# --- the retry loop, requests mocked ----------------------------------------------------------


@pytest.fixture
def mocked() -> responses.RequestsMock:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def transport() -> Transport:
    with Transport() as t:
        yield t


def test_retries_retryable_statuses_then_succeeds(mocked: responses.RequestsMock, transport: Transport) -> None:
    for status in (429, 408, 409, 500, 503):
        mocked.post(URL, status=status, body="busy", headers={"Retry-After": "0"})
    mocked.post(URL, status=200, body=b"data: [DONE]\n\n", content_type="text/event-stream")
    response = send(transport, max_retries=5)
    assert response.status_code == 200
    assert len(mocked.calls) == 6
    response.close()


def test_retry_limit_reached_keeps_the_last_status_error(mocked: responses.RequestsMock, transport: Transport) -> None:
    mocked.post(URL, status=503, body='{"error": "overloaded"}', headers={"Retry-After": "0", "x-request-id": "req-9"})
    with pytest.raises(InternalServerError) as caught:  # the status's class...
        send(transport, max_retries=2)
    assert len(mocked.calls) == 3  # max_retries + 1 attempts
    error = caught.value
    assert isinstance(error, RetryLimitReachedError)  # ... that is also a RetryLimitReachedError
    assert (error.status, error.request_id, error.attempts) == (503, "req-9", 3)
    assert (error.body, error.message) == ('{"error": "overloaded"}', "overloaded")
    assert str(error) == ("unexpected status 503 Service Unavailable (retry limit reached after 3 attempts): "
                          "overloaded, request id: req-9")


def test_zero_retries_means_one_attempt_and_no_retry_limit_error(mocked: responses.RequestsMock,
                                                                  transport: Transport) -> None:
    mocked.post(URL, status=429, body="slow down")
    with pytest.raises(RateLimitError) as caught:
        send(transport, max_retries=0)
    assert len(mocked.calls) == 1
    # No retry was allowed, so none was spent: the status's own error, without "retry limit reached".
    assert not isinstance(caught.value, RetryLimitReachedError)
    assert str(caught.value) == "unexpected status 429 Too Many Requests: slow down"


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(400, BadRequestError), (404, NotFoundError), (418, UnexpectedStatusError), (422, UnexpectedStatusError)],
)
def test_final_status_raises_at_once_with_body_and_request_id(
    mocked: responses.RequestsMock, transport: Transport, status: int, error_type: type[UnexpectedStatusError]
) -> None:
    mocked.post(URL, status=status, body="bad things ✓", headers={"cf-ray": "ray-1"})
    with pytest.raises(error_type) as caught:
        send(transport)
    assert len(mocked.calls) == 1
    assert caught.value.status == status
    assert caught.value.body == "bad things ✓"
    assert caught.value.request_id == "ray-1"
    assert str(caught.value).endswith(": bad things ✓, request id: ray-1")


def test_a_server_asking_for_too_long_ends_the_retries(mocked: responses.RequestsMock, transport: Transport) -> None:
    mocked.post(URL, status=429, body="come back tomorrow", headers={"Retry-After": "3600"})
    started = time.monotonic()
    with pytest.raises(RateLimitError) as caught:
        send(transport, max_retry_delay=60.0)
    assert time.monotonic() - started < 1.0
    assert len(mocked.calls) == 1
    assert isinstance(caught.value, RetryLimitReachedError)
    assert caught.value.body == "come back tomorrow"


def test_cancel_ends_a_retry_wait(mocked: responses.RequestsMock, transport: Transport) -> None:
    mocked.post(URL, status=503, headers={"Retry-After": "30"})
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(ConnectionFailedError, match="the client was closed"):
        send(transport, cancel=cancel)
    assert time.monotonic() - started < 2.0


def test_retries_are_logged_at_info_without_secrets(
    mocked: responses.RequestsMock, transport: Transport, caplog: pytest.LogCaptureFixture
) -> None:
    mocked.post(URL, status=429, headers={"Retry-After": "0"})
    mocked.post(URL, status=200, body=b"", content_type="text/event-stream")
    url = URL + f"?api-key={SECRET}"
    with caplog.at_level(logging.DEBUG, logger="llmx_sync"):
        send(transport, url, headers={"Authorization": f"Bearer {SECRET}", "api-key": SECRET}).close()
    retries = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(retries) == 1
    assert "attempt 1 of 5" in retries[0].getMessage() and "429 Too Many Requests" in retries[0].getMessage()
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG and "POST" in r.getMessage()]
    assert debug and "'Authorization': '***'" in debug[0]
    assert SECRET not in caplog.text


# --- the retry loop against a real server ---------------------------------------------------

# The tests below that depend on how the body is read (which reader, the connection going
# back to the pool) run on both body readers, the socket fast path and urllib3's public
# API, as CI must; see `body_reader` in conftest.py. The pure tests above and the timing
# of retry waits do not depend on it, so running them twice would prove nothing.
both_body_readers = pytest.mark.usefixtures("body_reader")


def _gaps(server: LLMServer) -> list[float]:
    times = [r.received_at for r in server.requests]
    return [b - a for a, b in itertools.pairwise(times)]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "300", "Retry-After": "5"}, 0.3),
        ({"Retry-After": "0.4"}, 0.4),
        ({"Retry-After": "1"}, 1.0),
    ],
)
def test_retry_after_is_honoured(llm_server: LLMServer, headers: dict[str, str], expected: float) -> None:
    llm_server.enqueue(error_reply(429, "slow down", headers=headers), Reply(body=text_stream_body(["ok"])))
    with make_client(llm_server) as client:
        assert client.stream("hi", model="m").collect().text == "ok"
    (gap,) = _gaps(llm_server)
    assert expected - 0.02 <= gap <= expected + 0.5


@both_body_readers
def test_the_body_reader_follows_the_environment(llm_server: LLMServer, body_reader: str) -> None:
    # (what makes the `body_reader` runs differ: LLMX_SYNC_PUBLIC_BODY_READER=1 or not)
    llm_server.enqueue(Reply(body=text_stream_body(["o", "k"])))
    expected = {"socket": SocketBodyReader, "urllib3": Urllib3BodyReader}[body_reader]
    with make_client(llm_server) as client, client.stream("hi", model="m") as stream:
        assert type(stream._reader._body) is expected  # noqa: SLF001
        assert "".join(stream.text_stream) == "ok"


# Socket path only: taking every HTTP chunk that has arrived in one read is what that path
# is for; urllib3's public API returns one HTTP chunk per read by design (see body.py).
@pytest.mark.socket_reader_only
@both_body_readers
def test_one_read_takes_every_event_that_arrived(llm_server: LLMServer, body_reader: str) -> None:
    events = [sse_event(chat_chunk(f"t{i}")) for i in range(50)]  # 50 HTTP chunks, < READ_SIZE in all
    expected = b"".join(events)
    llm_server.enqueue(Reply(body=[*events, Stall()]))
    with Transport() as transport:
        response = send(transport, llm_server.chat_url)
        body = open_body(response)
        try:
            assert isinstance(body, SocketBodyReader)
            time.sleep(0.3)  # all of it is in our socket's receive buffer by now
            received, reads = b"", 0
            while len(received) < len(expected) and reads < len(events):
                body.set_timeout(2.0)
                received += body.read()
                reads += 1
            assert received == expected
            assert reads <= 2  # what http.client buffered with the headers, then the rest at once
        finally:
            body.shutdown()
            body.finish()


def test_retry_after_date_is_honoured(llm_server: LLMServer) -> None:
    # An HTTP date has whole seconds: two seconds ahead is between one and two from now.
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    llm_server.enqueue(error_reply(503, headers={"Retry-After": when}), Reply(body=text_stream_body(["ok"])))
    with make_client(llm_server) as client:
        assert client.stream("hi", model="m").collect().text == "ok"
    (gap,) = _gaps(llm_server)
    assert 0.9 <= gap <= 2.6


def test_without_retry_after_the_backoff_applies(llm_server: LLMServer) -> None:
    llm_server.enqueue(text_reply("oops", status=500), text_reply("oops", status=502),
                       Reply(body=text_stream_body(["ok"])))
    with make_client(llm_server) as client:
        assert client.stream("hi", model="m").collect().text == "ok"
    first, second = _gaps(llm_server)
    assert 0.18 <= first <= 0.22 + 0.3
    assert 0.36 <= second <= 0.44 + 0.3


@both_body_readers
def test_a_retried_response_goes_back_to_the_pool(llm_server: LLMServer) -> None:
    llm_server.enqueue(error_reply(503, headers={"Retry-After": "0"}), error_reply(429, headers={"Retry-After": "0"}),
                       Reply(body=text_stream_body(["ok"])))
    with make_client(llm_server) as client:
        assert client.stream("hi", model="m").collect().text == "ok"
    assert len(llm_server.requests) == 3
    assert llm_server.connections_accepted == 1


@both_body_readers
def test_close_without_response_is_retried(llm_server: LLMServer) -> None:
    llm_server.enqueue(Reply(close_without_response=True), Reply(body=text_stream_body(["ok"])))
    with make_client(llm_server) as client:
        assert client.stream("hi", model="m").collect().text == "ok"
    assert len(llm_server.requests) == 2


def answer_then_close(text: str, *, reset: bool) -> Reply:
    """A whole answer, then the connection closed without a word, as llama-server does
    after every streamed answer (FIN, or RST with `reset`)."""
    body = b"".join(text_stream_body([text]))
    return Reply(headers={"Content-Length": str(len(body))}, body=[body, Disconnect(reset=reset)], chunked=False)


@both_body_readers
@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_a_pooled_connection_closed_before_the_request_is_sent_again_at_once_without_counting(
        llm_server: LLMServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, reset: bool) -> None:
    # The server's close arrives after urllib3 took the connection from the pool (it
    # found it alive: made sure here, the race llama-server loses now and then) but
    # before the request is written: nothing of it reached the server.
    caplog.set_level("INFO", logger="llmx_sync")
    monkeypatch.setattr(urllib3.connection.HTTPConnection, "is_connected", property(lambda conn: conn.sock is not None))
    llm_server.enqueue(answer_then_close("first", reset=reset), Reply(body=text_stream_body(["ok"])))
    with make_client(llm_server, request_max_retries=0) as client:
        assert client.stream("hi", model="m").collect().text == "first"
        assert llm_server.wait_until_no_open_connections()  # the close is on its way to the client
        started = time.monotonic()
        assert client.stream("hi", model="m").collect().text == "ok"
        assert time.monotonic() - started < 0.15  # no backoff wait
    assert [r.connection_id for r in llm_server.requests] == [1, 2]  # nothing went out on the dead one
    assert not [r for r in caplog.records if r.levelname == "INFO"]  # no counted retry


@pytest.mark.parametrize(("server", "content_type", "closes"), [
    ("llama.cpp", "text/event-stream", True),
    ("llama.cpp", "application/json; charset=utf-8", False),  # a whole answer: the connection stays
    ("uvicorn", "text/event-stream", False),
])
def test_which_servers_close_after_an_answer(server: str, content_type: str, closes: bool) -> None:
    headers = requests.structures.CaseInsensitiveDict({"Server": server, "Content-Type": content_type})
    assert closes_after_answer(headers) is closes


@both_body_readers
def test_a_llama_server_connection_is_not_reused_after_a_streamed_answer(
        llm_server: LLMServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    # llama-server closes the connection after every streamed answer; reused, the
    # connection would race its close (and lose 1 request in 10 under load).
    caplog.set_level("DEBUG", logger="llmx_sync")
    monkeypatch.setattr(scripted_server._Handler, "server_version", "llama.cpp")
    monkeypatch.setattr(urllib3.connection.HTTPConnection, "is_connected", property(lambda conn: conn.sock is not None))
    llm_server.enqueue(answer_then_close("first", reset=False), Reply(body=text_stream_body(["ok"])))
    with make_client(llm_server, request_max_retries=0) as client:
        assert client.stream("hi", model="m").collect().text == "first"
        assert client.stream("hi", model="m").collect().text == "ok"
    assert [r.connection_id for r in llm_server.requests] == [1, 2]
    assert "sending again" not in caplog.text  # a new connection from the start, not a resend


@both_body_readers
@pytest.mark.parametrize("retries", [0, 2, 4])
def test_a_warm_client_sends_a_request_the_server_read_retries_plus_one_times(llm_server: LLMServer,
                                                                              retries: int) -> None:
    # The server reads the whole request, then closes without answering, on a pooled
    # connection too: it may have billed each one, so no uncounted resend.
    llm_server.enqueue(Reply(body=text_stream_body(["warm"])))
    llm_server.default = Reply(close_without_response=True)
    with make_client(llm_server) as client:
        assert client.stream("hi", model="m").collect().text == "warm"
        with pytest.raises(ConnectionFailedError, match="closed the connection without sending a response"):
            client.stream("hi", model="m", request_max_retries=retries)
    assert len(llm_server.requests) == 1 + retries + 1
    assert llm_server.requests[1].connection_id == 1  # the first try did go out on the warm connection


def test_close_without_response_every_time(llm_server: LLMServer) -> None:
    # Fresh connections that close unanswered are counted retries: each request may be
    # billed, so exactly retries + 1 are sent.
    llm_server.default = Reply(close_without_response=True)
    with make_client(llm_server, request_max_retries=1) as client, pytest.raises(ConnectionFailedError) as caught:
        client.stream("hi", model="m")
    assert len(llm_server.requests) == 2
    assert "closed the connection without sending a response" in str(caught.value)


def test_connection_refused_after_retries(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="llmx_sync"), Transport() as transport:
        with pytest.raises(ConnectionFailedError) as caught:
            send(transport, f"http://127.0.0.1:{port}/v1/chat/completions?key={SECRET}", max_retries=2)
    elapsed = time.monotonic() - started
    where = f"http://127.0.0.1:{port}/v1/chat/completions?key=***"  # the URL, its query values hidden
    assert str(caught.value) == f"Connection failed: error sending request to {where}: Connection refused"
    assert 0.18 + 0.36 <= elapsed < 0.22 + 0.44 + 1.0
    assert [r.getMessage().split(";")[0] for r in caplog.records] == [
        f"attempt 1 of 3 failed (error sending request to {where}: Connection refused)",
        f"attempt 2 of 3 failed (error sending request to {where}: Connection refused)",
    ]
    assert SECRET not in caplog.text


def test_timeout_waiting_for_the_response_is_a_connection_error(llm_server: LLMServer) -> None:
    def slow(request: object) -> Reply:
        time.sleep(0.5)
        return Reply(body=text_stream_body(["late"]))

    llm_server.handler = slow
    with Transport() as transport, pytest.raises(ConnectionFailedError, match="timed out waiting for the response"):
        send(transport, llm_server.chat_url, max_retries=0, read_timeout=0.2)


# --- the pool and the environment ---------------------------------------------------------------


def test_a_new_pool_holds_only_idle_connections_and_keeps_its_size(llm_server: LLMServer,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    # urllib3 would fill the queue with `maxsize` placeholders; ours starts empty and still
    # keeps at most `pool_maxsize` idle connections, closing the others with urllib3's warning.
    caplog.set_level(logging.WARNING, logger="urllib3")
    streams = 4
    all_open = threading.Barrier(streams, timeout=30)

    def answer(request: object) -> Reply:
        all_open.wait()  # four connections at once
        return Reply(body=text_stream_body(["ok"]))

    llm_server.handler = answer
    transport = Transport(pool_maxsize=2)
    pools = transport._session.get_adapter(llm_server.url).poolmanager.pools
    with Client(base_url=llm_server.url, transport=transport) as client:
        texts: list[str] = []
        threads = [threading.Thread(target=lambda: texts.append(client.stream("hi", model="m").collect().text))
                   for _ in range(streams)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert texts == ["ok"] * streams
        (pool,) = [pools[key] for key in pools.keys()]
        assert pool.pool is not None and (pool.pool.qsize(), pool.pool.maxsize) == (2, 2)
        idle = [pool.pool.get_nowait() for _ in range(2)]
        assert all(connection is not None for connection in idle)  # connections, not placeholders
        for connection in idle:
            pool.pool.put(connection)  # (closed with the client)
    new_pool = type(pool)("127.0.0.1", llm_server.port, maxsize=1024)
    assert new_pool.pool is not None and (new_pool.pool.qsize(), new_pool.pool.maxsize) == (0, 1024)
    assert [r.getMessage() for r in caplog.records] == [
        "Connection pool is full, discarding connection: 127.0.0.1. Connection pool size: 2"] * 2


def test_a_proxy_set_in_the_environment_later_counts_from_the_next_request(llm_server: LLMServer,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    llm_server.default = Reply(body=text_stream_body(["direct"]))
    proxy = LLMServer(default=Reply(body=text_stream_body(["proxied"]))).start()  # a forward proxy, as it answers
    try:
        with make_client(llm_server) as client:
            texts = [client.stream("hi", model="m").collect().text]
            monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
            texts.append(client.stream("hi", model="m").collect().text)
            monkeypatch.setenv("no_proxy", "127.0.0.1")
            texts.append(client.stream("hi", model="m").collect().text)
            monkeypatch.delenv("no_proxy")
            texts.append(client.stream("hi", model="m").collect().text)
            monkeypatch.delenv("HTTP_PROXY")
            texts.append(client.stream("hi", model="m").collect().text)
    finally:
        proxy.stop()
    assert texts == ["direct", "proxied", "direct", "proxied", "direct"]
    assert [r.path for r in proxy.requests] == [llm_server.chat_url] * 2


def test_the_environment_is_read_again_only_once_it_changed(llm_server: LLMServer,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []
    environ_proxies = requests.sessions.get_environ_proxies

    def counted(url: str, no_proxy: str | None = None) -> dict[str, str]:
        reads.append(url)
        return environ_proxies(url, no_proxy=no_proxy)

    monkeypatch.setattr(requests.sessions, "get_environ_proxies", counted)
    llm_server.default = Reply(body=text_stream_body(["ok"]))
    with make_client(llm_server) as client:
        for _ in range(3):
            client.stream("hi", model="m").collect()
        assert reads == [llm_server.chat_url]
        monkeypatch.setenv("LLMX_TEST_SOMETHING_ELSE", "1")  # any change: requests' rules read many names
        client.stream("hi", model="m").collect()
        assert reads == [llm_server.chat_url] * 2


def test_a_session_with_its_own_request_method_is_used_through_it(llm_server: LLMServer) -> None:
    # An OAuth or caching session does its work in `request`: it must not be bypassed.
    class TokenSession(requests.Session):
        def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
            kwargs["headers"] = {**(kwargs.get("headers") or {}), "X-Token": "token-1"}
            return super().request(method, url, *args, **kwargs)

    llm_server.default = Reply(body=text_stream_body(["ok"]))
    with TokenSession() as session, Client(base_url=llm_server.url, session=session) as client:
        assert client.stream("hi", model="m").collect().text == "ok"
    assert llm_server.requests[0].headers["X-Token"] == "token-1"


def test_a_patched_session_request_is_used(llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # Instrumentations wrap requests' methods in place; the SDK's own session goes through them too.
    original = requests.Session.request

    @functools.wraps(original)
    def traced(self: requests.Session, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs["headers"] = {**(kwargs.get("headers") or {}), "X-Trace": "trace-1"}
        return original(self, method, url, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "request", traced)
    llm_server.default = Reply(body=text_stream_body(["ok"]))
    with make_client(llm_server) as client:
        assert client.stream("hi", model="m").collect().text == "ok"
    assert llm_server.requests[0].headers["X-Trace"] == "trace-1"
