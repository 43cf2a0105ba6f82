"""llmx_sync.web: SSE/text bodies, and Flask/Django serving them through real WSGI servers."""

from __future__ import annotations

import json
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
from llm_server import Disconnect, LLMServer, Pause, Reply, Stall, sse_event, text_stream_body
from sockets import live_threads, wait_for
from stream_helpers import event_of, frames, paced, serving

from llmx_sync.client import Client
from llmx_sync.errors import RateLimitError
from llmx_sync.events import Completed, OutputTextDelta, ReasoningContentDelta
from llmx_sync.web import (
    django_sse_response,
    django_text_response,
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


# --- Flask and Django behind real WSGI servers ------------------------------------------------
# Both apps serve `/sse` and `/text`, streaming from the LLM server named by `?upstream=`
# (`?heartbeat=` seconds for /sse).


def open_stream(query: Mapping[str, str]) -> Any:
    return Client(base_url=query["upstream"]).stream("Hi", model="test-model")


def heartbeat_of(query: Mapping[str, str]) -> float:
    return float(query.get("heartbeat", "15"))


def flask_app() -> Any:
    from flask import Flask, request

    app = Flask(__name__)

    @app.get("/sse")
    def sse() -> Any:
        return flask_sse_response(open_stream(request.args), heartbeat=heartbeat_of(request.args))

    @app.get("/text")
    def text() -> Any:
        return flask_text_response(open_stream(request.args))

    return app


def django_sse(request: Any) -> Any:
    return django_sse_response(open_stream(request.GET), heartbeat=heartbeat_of(request.GET))


def django_text(request: Any) -> Any:
    return django_text_response(open_stream(request.GET))


urlpatterns = [path("sse", django_sse), path("text", django_text)]  # ROOT_URLCONF of django_app()


def django_app() -> Any:
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            SECRET_KEY="test", ALLOWED_HOSTS=["127.0.0.1"], ROOT_URLCONF=__name__,
            # On purpose: it would buffer the stream if the response let it compress.
            MIDDLEWARE=["django.middleware.gzip.GZipMiddleware"],
        )
        import django

        django.setup()
    from django.core.handlers.wsgi import WSGIHandler

    return WSGIHandler()


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
    with pytest.raises(ValueError, match="heartbeat must be a positive number"):
        sse_response_body(stream, heartbeat=heartbeat)
    assert stream.closed.is_set()
