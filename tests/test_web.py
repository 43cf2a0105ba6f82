"""llmx_sync.web: SSE/text bodies, Flask/Django serving them through real WSGI servers, and
the response to a stream that could not be opened (through the frameworks' test clients)."""

from __future__ import annotations

import json
import socket
import socketserver
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
import requests
from django.urls import path
from fake_stream import FakeStream
from llm_server import (
    Disconnect,
    LLMServer,
    Pause,
    Reply,
    Stall,
    chat_chunk,
    error_reply,
    sse_done,
    sse_event,
    text_stream_body,
    tool_call_delta,
)
from sockets import live_threads, wait_for
from stream_helpers import event_of, frames, paced, serving

from llmx_sync.client import Client
from llmx_sync.errors import (
    AuthenticationError,
    ConnectionFailedError,
    InternalServerError,
    InvalidInputError,
    LlmxError,
    RateLimitError,
)
from llmx_sync.events import Completed, OutputTextDelta, ReasoningContentDelta
from llmx_sync.web import (
    django_sse_response,
    django_text_response,
    error_status,
    flask_sse_response,
    flask_text_response,
    sse_response_body,
    text_body,
)

HELLO = [OutputTextDelta("Hel"), OutputTextDelta("lo ✓\n"), Completed("resp-1", None, "stop")]


def no_sdk_threads() -> bool:
    return not live_threads("llmx_sync-")


# --- pure framing ----------------------------------------------------------------------------


def test_sse_body_frames_each_event_and_ends_with_done() -> None:
    stream = FakeStream(list(HELLO))
    body = b"".join(sse_response_body(stream))
    assert body == (
        b'event: output_text.delta\ndata: {"type":"output_text.delta","delta":"Hel"}\n\n'
        + 'event: output_text.delta\ndata: {"type":"output_text.delta","delta":"lo ✓\\n"}\n\n'.encode()
        + b'event: completed\ndata: {"type":"completed","response_id":"resp-1",'
        b'"token_usage":null,"finish_reason":"stop","turn":1}\n\n'
        b"data: [DONE]\n\n"
    )
    assert stream.closed.is_set()
    assert wait_for(no_sdk_threads)


def test_sse_body_turns_an_sdk_error_into_an_error_frame_and_stops() -> None:
    error = RateLimitError(429, "slow down", "req-1")
    stream = FakeStream([OutputTextDelta("a"), error, OutputTextDelta("never sent")])
    frames = list(sse_response_body(stream))
    assert frames[-1] == sse_error_frame("RateLimitError", str(error))
    assert len(frames) == 2
    assert stream.closed.is_set()


def test_sse_body_hides_the_text_of_a_foreign_error_and_raises_it_again() -> None:
    stream = FakeStream([ValueError("secret=sk-123")])
    body = sse_response_body(stream)
    assert next(body) == sse_error_frame("ValueError", "internal error")
    with pytest.raises(ValueError, match="sk-123"):
        next(body)
    assert stream.closed.is_set()


def sse_error_frame(kind: str, message: str) -> bytes:
    data = json.dumps({"type": kind, "message": message}, separators=(",", ":"))
    return f"event: error\ndata: {data}\n\n".encode()


def test_sse_body_sends_heartbeats_while_the_stream_is_silent() -> None:
    stream = FakeStream([OutputTextDelta("a")], stall_after=1)
    body = sse_response_body(stream, heartbeat=0.05)
    assert next(body).startswith(b"event: output_text.delta")
    started = time.monotonic()
    assert [next(body) for _ in range(3)] == [b": keep-alive\n\n"] * 3
    assert 0.1 <= time.monotonic() - started < 2
    body.close()
    assert stream.closed.is_set()
    assert wait_for(no_sdk_threads)


def test_closing_the_sse_body_mid_stream_closes_the_stream() -> None:
    stream = FakeStream(list(HELLO))
    body = sse_response_body(stream)
    next(body)
    body.close()  # what a WSGI server does when the browser went away
    assert stream.closed.is_set()
    assert wait_for(no_sdk_threads)


def test_text_body_yields_only_the_answer_as_utf8() -> None:
    stream = FakeStream([ReasoningContentDelta("hmm"), *HELLO])
    assert list(text_body(stream)) == [b"Hel", "lo ✓\n".encode()]
    assert stream.closed.is_set()


def test_text_body_raises_errors_so_the_server_aborts_the_response() -> None:
    stream = FakeStream([OutputTextDelta("a"), RateLimitError(429, "slow down")])
    body = text_body(stream)
    assert next(body) == b"a"
    with pytest.raises(RateLimitError):
        next(body)
    assert stream.closed.is_set()


def test_closing_the_text_body_closes_the_stream() -> None:
    stream = FakeStream(list(HELLO))
    body = text_body(stream)
    next(body)
    body.close()
    assert stream.closed.is_set()


# --- Flask and Django apps --------------------------------------------------------------------
# Both serve `/sse` and `/text`, which give the helpers a callable that opens the stream
# from the LLM server named by `?upstream=` (`?heartbeat=` seconds for /sse), and
# `/sse-stream` and `/text-stream`, which open it first and give them the stream.
# `?idle_timeout=` and `?retries=` go to the request; `?bug=1` raises a non-SDK error.
# `/run` streams a tool loop (`client.run`) with `get_weather`.


def open_stream(query: Mapping[str, str]) -> Any:
    if "bug" in query:
        raise RuntimeError("a bug in the view")
    settings: dict[str, Any] = {}
    if "idle_timeout" in query:
        settings["idle_timeout"] = float(query["idle_timeout"])
    if "retries" in query:
        settings["request_max_retries"] = int(query["retries"])
    return Client(base_url=query["upstream"]).stream("Hi", model="test-model", **settings)


def get_weather(city: str) -> str:
    """Current weather of a city."""
    return f"sunny in {city}"


def open_run(query: Mapping[str, str]) -> Any:
    return Client(base_url=query["upstream"]).run("Weather in Paris?", tools=[get_weather], model="test-model")


def heartbeat_of(query: Mapping[str, str]) -> float:
    return float(query.get("heartbeat", "15"))


def flask_app() -> Any:
    from flask import Flask, request

    app = Flask(__name__)

    @app.get("/sse")
    def sse() -> Any:
        return flask_sse_response(lambda: open_stream(request.args), heartbeat=heartbeat_of(request.args))

    @app.get("/text")
    def text() -> Any:
        return flask_text_response(lambda: open_stream(request.args))

    @app.get("/sse-stream")
    def sse_stream() -> Any:
        return flask_sse_response(open_stream(request.args), heartbeat=heartbeat_of(request.args))

    @app.get("/text-stream")
    def text_stream() -> Any:
        return flask_text_response(open_stream(request.args))

    @app.get("/run")
    def run() -> Any:
        return flask_sse_response(lambda: open_run(request.args))

    return app


def django_sse(request: Any) -> Any:
    return django_sse_response(lambda: open_stream(request.GET), heartbeat=heartbeat_of(request.GET))


def django_text(request: Any) -> Any:
    return django_text_response(lambda: open_stream(request.GET))


def django_sse_stream(request: Any) -> Any:
    return django_sse_response(open_stream(request.GET), heartbeat=heartbeat_of(request.GET))


def django_text_stream(request: Any) -> Any:
    return django_text_response(open_stream(request.GET))


def django_run(request: Any) -> Any:
    return django_sse_response(lambda: open_run(request.GET))


urlpatterns = [  # ROOT_URLCONF of django_app()
    path("sse", django_sse), path("text", django_text), path("sse-stream", django_sse_stream),
    path("text-stream", django_text_stream), path("run", django_run),
]


def django_app() -> Any:
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            SECRET_KEY="test", ALLOWED_HOSTS=["127.0.0.1", "testserver"], ROOT_URLCONF=__name__,
            # On purpose: it would buffer the stream if the response let it compress.
            MIDDLEWARE=["django.middleware.gzip.GZipMiddleware"],
        )
        import django

        django.setup()
    from django.core.handlers.wsgi import WSGIHandler

    return WSGIHandler()


# --- through the frameworks' test clients ---------------------------------------------------


def flask_get(route: str, query: Mapping[str, str]) -> tuple[int, str, bytes]:
    """Status, content type and whole body of a GET through Flask's test client (a
    view's unexpected exception is Flask's 500)."""
    response = flask_app().test_client().get(f"/{route}", query_string=dict(query))
    try:
        return response.status_code, response.headers["Content-Type"], response.get_data()
    finally:
        response.close()


def django_get(route: str, query: Mapping[str, str], *, raise_request_exception: bool = True
               ) -> tuple[int, str, bytes]:
    """As `flask_get`, through Django's test client (which raises a view's exception
    unless told not to, and then answers 500)."""
    django_app()  # configures Django once
    from django.test import Client as DjangoClient

    response = DjangoClient(raise_request_exception=raise_request_exception).get(f"/{route}", dict(query))
    try:
        body = b"".join(response.streaming_content) if response.streaming else response.content
        return response.status_code, response["Content-Type"], body
    finally:
        response.close()


TEST_CLIENTS: dict[str, Callable[[str, Mapping[str, str]], tuple[int, str, bytes]]] = {
    "flask": flask_get, "django": django_get,
}


def refused_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens there any more


@pytest.fixture
def no_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMX_API_KEY", raising=False)


@pytest.mark.usefixtures("no_api_key")
@pytest.mark.parametrize("framework", sorted(TEST_CLIENTS))
@pytest.mark.parametrize(("failure", "status", "error_type", "message"), [
    pytest.param("auth", 401, "AuthenticationError", "unexpected status 401 Unauthorized: Invalid API key. No API key "
                 "was sent", id="401"),
    pytest.param("invalid", 400, "InvalidInputError", "idle_timeout: expected a finite number of seconds above 0, "
                 "got number 0.0", id="invalid-input"),
    pytest.param("refused", 502, "ConnectionFailedError", "Connection failed: error sending request to {upstream}"
                 "/chat/completions: Connection refused", id="refused"),
])
def test_an_error_opening_the_stream_is_an_sse_error_response(
        framework: str, llm_server: LLMServer, failure: str, status: int, error_type: str, message: str) -> None:
    query = failing_query(failure, llm_server)
    code, content_type, body = TEST_CLIENTS[framework]("sse", query)
    assert (code, content_type) == (status, "text/event-stream; charset=utf-8")
    # One `event: error` frame, the same as a stream failing midway sends; no [DONE].
    kind, data = event_of(body.decode().removesuffix("\n\n"))
    assert (kind, data["type"]) == ("error", error_type)
    assert data["message"].startswith(message.format(upstream=query["upstream"]))
    assert body == sse_error_frame(error_type, data["message"])


@pytest.mark.usefixtures("no_api_key")
@pytest.mark.parametrize("framework", sorted(TEST_CLIENTS))
@pytest.mark.parametrize(("failure", "status", "line"), [
    pytest.param("auth", 401, "error: unexpected status 401 Unauthorized: Invalid API key. No API key was sent",
                 id="401"),
    pytest.param("invalid", 400, "error: idle_timeout: expected a finite number of seconds above 0, got number 0.0\n",
                 id="invalid-input"),
    pytest.param("refused", 502, "error: Connection failed: error sending request to {upstream}/chat/completions: "
                 "Connection refused\n", id="refused"),
])
def test_an_error_opening_the_stream_is_a_one_line_text_response(
        framework: str, llm_server: LLMServer, failure: str, status: int, line: str) -> None:
    query = failing_query(failure, llm_server)
    code, content_type, body = TEST_CLIENTS[framework]("text", query)
    assert (code, content_type) == (status, "text/plain; charset=utf-8")
    text = body.decode()
    assert text.startswith(line.format(upstream=query["upstream"]))
    assert text.endswith("\n") and text.count("\n") == 1


def failing_query(failure: str, upstream: LLMServer) -> dict[str, str]:
    """The query of a request whose stream cannot be opened, for the reason `failure` names."""
    if failure == "auth":
        upstream.enqueue(error_reply(401, "Invalid API key", type="invalid_request_error"))
        return {"upstream": upstream.url}
    if failure == "invalid":
        return {"upstream": upstream.url, "idle_timeout": "0"}
    assert failure == "refused"
    return {"upstream": refused_url(), "retries": "0"}


@pytest.mark.parametrize("route", ["sse", "text"])
def test_another_exception_opening_the_stream_is_the_frameworks_500(route: str, llm_server: LLMServer) -> None:
    query = {"upstream": llm_server.url, "bug": "1"}
    assert flask_get(route, query)[0] == 500
    with pytest.raises(RuntimeError, match="a bug in the view"):
        django_get(route, query)
    assert django_get(route, query, raise_request_exception=False)[0] == 500
    assert llm_server.requests == []


@pytest.mark.parametrize("framework", sorted(TEST_CLIENTS))
def test_a_stream_given_directly_still_streams(framework: str, llm_server: LLMServer) -> None:
    get_ = TEST_CLIENTS[framework]
    llm_server.enqueue(Reply(body=text_stream_body(TOKENS)), Reply(body=text_stream_body(TOKENS)))
    code, _, body = get_("sse-stream", {"upstream": llm_server.url})
    *events, done = body.decode().removesuffix("\n\n").split("\n\n")
    assert (code, done) == (200, "data: [DONE]")
    assert [data["delta"] for kind, data in map(event_of, events) if kind == "output_text.delta"] == TOKENS
    code, _, text = get_("text-stream", {"upstream": llm_server.url})
    assert (code, text.decode()) == (200, "".join(TOKENS))


@pytest.mark.parametrize("framework", sorted(TEST_CLIENTS))
def test_a_tool_loop_streams_every_turn_and_the_tool_results(framework: str, llm_server: LLMServer) -> None:
    llm_server.enqueue(
        Reply(body=[sse_event(chat_chunk(role="assistant", tool_calls=[
                        tool_call_delta(0, id="call_1", name="get_weather", arguments='{"city": "Paris"}')])),
                    sse_event(chat_chunk(finish_reason="tool_calls")), sse_done()]),
        Reply(body=text_stream_body(["Sunny."])),
    )
    code, _, body = TEST_CLIENTS[framework]("run", {"upstream": llm_server.url})
    *frames_, done = body.decode().removesuffix("\n\n").split("\n\n")
    assert (code, done) == (200, "data: [DONE]")
    events = [event_of(frame) for frame in frames_]
    assert ("tool_result", {"type": "tool_result", "call_id": "call_1", "name": "get_weather",
                            "output": "sunny in Paris", "error": None}) in events
    assert [data["turn"] for kind, data in events if kind == "completed"] == [1, 2]
    assert len(llm_server.requests) == 2


@pytest.mark.parametrize(("error", "status"), [
    (AuthenticationError(401, ""), 401),
    (RateLimitError(429, ""), 429),
    (InternalServerError(503, ""), 502),
    (InvalidInputError("prompt", "expected a Prompt"), 400),
    (ConnectionFailedError("refused"), 502),
    (LlmxError("anything else"), 502),
])
def test_error_status(error: LlmxError, status: int) -> None:
    assert error_status(error) == status


def test_a_bad_heartbeat_is_refused_before_the_stream_is_opened() -> None:
    opened: list[FakeStream] = []

    def open_fake() -> FakeStream:
        opened.append(FakeStream(list(HELLO)))
        return opened[-1]

    with pytest.raises(ValueError, match="^heartbeat: expected a finite number of seconds above 0"):
        flask_sse_response(open_fake, heartbeat=0)
    with pytest.raises(ValueError, match="^heartbeat: expected a finite number of seconds above 0"):
        django_sse_response(open_fake, heartbeat=-1)
    assert opened == []


# --- behind real WSGI servers -----------------------------------------------------------------


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietWSGIRequestHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def werkzeug_server(app: Any) -> Any:
    from werkzeug.serving import make_server as make_werkzeug_server

    return make_werkzeug_server("127.0.0.1", 0, app, threaded=True)


def wsgiref_server(app: Any) -> Any:
    return make_server("127.0.0.1", 0, app, server_class=ThreadingWSGIServer, handler_class=QuietWSGIRequestHandler)


SERVERS: dict[str, Callable[[], Any]] = {
    "flask": lambda: werkzeug_server(flask_app()),
    "django": lambda: wsgiref_server(django_app()),
}


@pytest.fixture(params=sorted(SERVERS))
def web(request: pytest.FixtureRequest) -> Iterator[str]:
    """The base URL of the Flask or the Django app, served on 127.0.0.1."""
    with serving(SERVERS[request.param]()) as url:
        yield url


@contextmanager
def get(url: str, route: str, upstream: LLMServer, **params: Any) -> Iterator[requests.Response]:
    with requests.Session() as session:
        response = session.get(f"{url}/{route}", params={"upstream": upstream.url, **params},
                               stream=True, timeout=5)
        try:
            yield response
        finally:
            response.close()


TOKENS = ["Streaming ", "one token ", "at a time."]


def test_frames_reach_the_browser_while_the_model_still_writes(web: str, llm_server: LLMServer) -> None:
    llm_server.enqueue(Reply(body=paced(text_stream_body(TOKENS), 0.3)))
    with get(web, "sse", llm_server) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert response.headers["Cache-Control"] == "no-cache"
        assert response.headers["X-Accel-Buffering"] == "no"
        assert "gzip" not in response.headers.get("Content-Encoding", "")  # Django's GZipMiddleware left it alone
        received = list(frames(response))

    assert received[-1][1] == "data: [DONE]"
    events = [(at, *event_of(frame)) for at, frame in received[:-1]]
    deltas = [(at, data["delta"]) for at, kind, data in events if kind == "output_text.delta"]
    assert [delta for _, delta in deltas] == TOKENS
    # The upstream pauses 0.3 s after each token: had anything buffered the body, the
    # deltas would have arrived together at the end.
    assert deltas[-1][0] - deltas[0][0] >= 0.45
    assert events[-1][1:] == ("completed", {"type": "completed", "response_id": "chatcmpl-1",
                                            "token_usage": None, "finish_reason": "stop", "turn": 1})


@pytest.mark.parametrize("upstream_after_first_token", ["generating", "stalled"])
def test_a_browser_going_away_closes_the_upstream_request(web: str, llm_server: LLMServer,
                                                           upstream_after_first_token: str) -> None:
    first, *rest = text_stream_body([f"token{i} " for i in range(200)])
    # Stalled: only the heartbeat writes to the browser, and so finds it gone.
    after = paced(rest, 0.05) if upstream_after_first_token == "generating" else [Stall()]
    llm_server.enqueue(Reply(body=[first, *after]))
    with get(web, "sse", llm_server, heartbeat=0.1) as response:
        kinds = (event_of(frame)[0] for _, frame in frames(response))
        assert "output_text.delta" in kinds  # read up to the first token, then leave
    assert llm_server.wait_for_client_disconnect(timeout=1.0)
    assert llm_server.wait_until_no_open_connections(timeout=1.0)
    assert wait_for(no_sdk_threads)


@pytest.mark.parametrize(("failure", "error_type", "message"), [
    pytest.param(sse_event({"error": {"message": "model overloaded", "type": "server_error"}}), "InStreamError",
                 "unexpected status 200 OK: model overloaded", id="error-object"),
    pytest.param(Disconnect(), "StreamError", "stream disconnected before completion", id="disconnect"),
])
def test_an_upstream_error_ends_the_body_with_an_error_event(web: str, llm_server: LLMServer, failure: Any,
                                                              error_type: str, message: str) -> None:
    llm_server.enqueue(Reply(body=[text_stream_body(["partial"])[0], failure]))
    with get(web, "sse", llm_server) as response:
        events = [event_of(frame) for _, frame in frames(response)]
    assert ("output_text.delta", {"type": "output_text.delta", "delta": "partial"}) in events[:-1]
    kind, data = events[-1]
    assert kind == "error"
    assert data["type"] == error_type
    assert data["message"].startswith(message)


def test_heartbeats_keep_the_connection_alive_while_the_model_is_quiet(web: str, llm_server: LLMServer) -> None:
    first, *rest = text_stream_body(["thinking...", " done"])
    llm_server.enqueue(Reply(body=[first, Pause(0.55), *rest]))
    with get(web, "sse", llm_server, heartbeat=0.1) as response:
        received = [frame for _, frame in frames(response)]
    kinds = ["heartbeat" if frame == ": keep-alive" else frame.split("\n")[0] for frame in received]
    first_delta = kinds.index("event: output_text.delta")
    second_delta = kinds.index("event: output_text.delta", first_delta + 1)
    assert kinds[first_delta + 1:second_delta].count("heartbeat") >= 3
    assert set(kinds[first_delta + 1:second_delta]) == {"heartbeat"}
    assert kinds[-1] == "data: [DONE]"


def test_the_text_body_streams_only_the_answer(web: str, llm_server: LLMServer) -> None:
    llm_server.enqueue(Reply(body=paced(text_stream_body(TOKENS), 0.3)))
    with get(web, "text", llm_server) as response:
        assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
        arrivals = []
        while chunk := response.raw.read1(65536):
            arrivals.append((time.monotonic(), chunk))
    assert b"".join(chunk for _, chunk in arrivals).decode() == "".join(TOKENS)
    assert arrivals[-1][0] - arrivals[0][0] >= 0.45


@pytest.mark.parametrize("heartbeat", [0, -1.0])
def test_a_heartbeat_that_is_not_positive_is_refused_at_once(heartbeat: float) -> None:
    stream = FakeStream(list(HELLO))
    with pytest.raises(ValueError, match="^heartbeat: expected a finite number of seconds above 0"):
        sse_response_body(stream, heartbeat=heartbeat)
    assert stream.closed.is_set()
