"""Streaming a response to a browser from Flask or Django.

The bodies are plain generators of bytes, so any WSGI framework can serve them.
Their ``finally`` closes the stream: a WSGI server closes the body iterator when
the browser goes away (it notices at the next write that fails), and closing the
stream closes the upstream HTTP request, so no more tokens are generated and
billed for nobody. Flask and Django are imported only by the functions that
build their response objects.

Buffering, as found in the servers' sources: Werkzeug's development server and
``wsgiref`` (Django's ``runserver``) write and flush every item of the body at
once, Werkzeug as an HTTP/1.1 chunk. What does buffer is compression: Django's
``GZipMiddleware`` feeds a streaming body through a gzip compressor without
flushing it, so frames would reach the browser in bursts, or only at the end; it
leaves alone a response that already has a ``Content-Encoding``, hence the empty
one below.
``X-Accel-Buffering: no`` does the same for an nginx in front.

Early errors: ``client.stream(...)`` sends the request and raises (a 401, a refused
connection, a bad setting) before any response exists, which a view would turn into
the framework's HTML 500 page, useless to a browser's ``EventSource`` or ``fetch``.
So the response helpers also take a zero-argument callable that opens the stream
(``flask_sse_response(lambda: client.stream(...))``) and call it themselves: an
`LlmxError` it raises becomes a response in the format the page expects (see
`error_status`), anything else propagates as a bug.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeAlias, assert_never

from ._jsonrules import compact_json
from .errors import InvalidInputError, LlmxError, UnexpectedStatusError
from .events import (
    Completed,
    Created,
    Event,
    FunctionCallArgumentsDelta,
    OutputItemAdded,
    OutputItemDone,
    OutputJsonDelta,
    OutputRejected,
    OutputTextDelta,
    RateLimits,
    ReasoningContentDelta,
    ReasoningSummaryDelta,
    ReasoningSummaryPartAdded,
    RefusalDelta,
    ToolResult,
)
from .settings import SECONDS
from .stream import StreamLike, check_stream_like

if TYPE_CHECKING:
    from django.http import HttpResponseBase
    from flask import Response

__all__ = [
    "StreamLike",
    "StreamSource",
    "django_sse_response",
    "django_text_response",
    "error_status",
    "flask_sse_response",
    "flask_text_response",
    "sse_response_body",
    "text_body",
]

SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"
STREAMING_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    # Browsers otherwise may hold back the first bytes of a text body to sniff its type.
    "X-Content-Type-Options": "nosniff",
    # An empty list of codings: compression middleware (Django's GZipMiddleware)
    # skips responses that declare one, and would otherwise buffer the stream.
    "Content-Encoding": "",
}

#: A stream (`ResponseStream`, `RunStream`), or a zero-argument callable that opens one.
StreamSource: TypeAlias = StreamLike | Callable[[], StreamLike]

HEARTBEAT_FRAME = b": keep-alive\n\n"
DONE_FRAME = b"data: [DONE]\n\n"


def sse_frame(event_type: str, data: Any) -> bytes:
    """One SSE event: ``event: <type>`` and one ``data:`` line of compact JSON."""
    return f"event: {event_type}\ndata: {compact_json(data)}\n\n".encode()


def event_frame(event: Event) -> bytes:
    return sse_frame(event.type, event.to_dict())


def error_frame(error: BaseException) -> bytes:
    """The ``event: error`` frame: the last one of a body whose stream failed, or the only
    one of the response to a stream that could not be opened.

    Only the SDK's own errors are described; their texts carry no secrets. Anything
    else is a bug whose text could hold anything, so the browser gets its class only.
    """
    message = str(error) if isinstance(error, LlmxError) else "internal error"
    return sse_frame("error", {"type": type(error).__name__, "message": message})


def sse_response_body(stream: StreamLike, *, heartbeat: float = 15.0) -> Iterator[bytes]:
    """The stream as Server-Sent Events for a browser.

    One ``event: <event.type>`` frame per event whose ``data`` is `event.to_dict()`
    as compact JSON; a ``: keep-alive`` comment after `heartbeat` seconds without
    an event (keeps proxies from timing out, and lets the server notice a browser
    that went away, which it can only do when a write fails); ``data: [DONE]`` at
    the normal end. An error ends the body with an ``event: error`` frame
    (``{"type": <class name>, "message": ...}``); one that is not an `LlmxError`
    is raised again after it, for the server's log. Closing the generator closes
    the stream.
    """
    _check_heartbeat(heartbeat, stream)
    check_stream_like("stream", stream)
    return _sse_frames(stream, heartbeat)


def _check_heartbeat(heartbeat: float, source: StreamSource) -> None:
    """A heartbeat that is not a number of seconds (finite, above 0, at most a year) is
    refused before a stream is opened (and a stream already open is closed: nothing else
    would)."""
    try:
        SECONDS("heartbeat", heartbeat)
    except InvalidInputError:
        close = getattr(source, "close", None)
        if not callable(source) and callable(close):
            close()
        raise


def _sse_frames(stream: StreamLike, heartbeat: float) -> Iterator[bytes]:
    try:
        while True:
            try:
                event = stream.next_event(timeout=heartbeat)
            except TimeoutError:
                yield HEARTBEAT_FRAME
                continue
            except StopIteration:
                break
            except Exception as error:
                yield error_frame(error)
                if isinstance(error, LlmxError):
                    return
                raise
            yield event_frame(event)
        yield DONE_FRAME
    finally:
        stream.close()


def text_body(stream: StreamLike) -> Iterator[bytes]:
    """Only the answer's text deltas (and a refusal's, which is the answer then), UTF-8 encoded.

    Plain text has no way to carry an error, so one is raised: the server then
    aborts the response and the client sees an incomplete body (with chunked
    encoding). Closing the generator closes the stream.
    """
    check_stream_like("stream", stream)
    return _text_chunks(stream)


def _text_chunks(stream: StreamLike) -> Iterator[bytes]:
    try:
        for event in stream:
            match event:
                case OutputTextDelta(delta=delta) | RefusalDelta(delta=delta):  # a refusal is the answer
                    yield delta.encode()
                case (Created() | OutputItemAdded() | OutputItemDone() | FunctionCallArgumentsDelta()
                      | ReasoningContentDelta() | ReasoningSummaryDelta() | ReasoningSummaryPartAdded()
                      | Completed() | RateLimits() | ToolResult() | OutputJsonDelta() | OutputRejected()):
                    pass  # only the answer's text goes out (a rejected attempt's cannot be taken back)
                case _:
                    assert_never(event)
    finally:
        stream.close()


def error_line(error: LlmxError) -> bytes:
    """``error: <message>`` on one line: what a text response says when the stream could not open."""
    return f"error: {' '.join(str(error).split())}\n".encode()


def error_status(error: LlmxError) -> int:
    """The status of the response to a stream that could not be opened: the upstream's
    own status for a client error (400-499: a 401 stays a 401, a 429 a 429), 400 for
    input the SDK refused before sending anything, else 502 (the model server failed or
    could not be reached: a bad gateway, not a bug of this app)."""
    if isinstance(error, UnexpectedStatusError) and 400 <= error.status <= 499:
        return error.status
    if isinstance(error, InvalidInputError):
        return 400
    return 502


# The body and status of a response: a stream's body with 200, or the whole body of the
# response to a stream that could not be opened.
_Body = tuple[Iterator[bytes] | bytes, int]


def _opened(source: StreamSource, error_body: Callable[[LlmxError], bytes]) -> StreamLike | _Body:
    """The stream (`source` itself, or what calling it returns), or the body and status
    of the response to an `LlmxError` raised while opening it."""
    if not callable(source):
        check_stream_like("source", source)
        return source
    try:
        return source()
    except LlmxError as error:
        return error_body(error), error_status(error)


def _sse_body(source: StreamSource, heartbeat: float) -> _Body:
    _check_heartbeat(heartbeat, source)
    opened = _opened(source, error_frame)
    return opened if isinstance(opened, tuple) else (sse_response_body(opened, heartbeat=heartbeat), 200)


def _text_body(source: StreamSource) -> _Body:
    opened = _opened(source, error_line)
    return opened if isinstance(opened, tuple) else (text_body(opened), 200)


def flask_sse_response(source: StreamSource, *, heartbeat: float = 15.0) -> Response:
    """A Flask response streaming `sse_response_body`. `source` is the stream, or a
    callable that opens it: an `LlmxError` it raises gives a response with `error_status`
    whose body is the one ``event: error`` frame (no ``[DONE]``)."""
    return _flask_response(*_sse_body(source, heartbeat), SSE_CONTENT_TYPE)


def flask_text_response(source: StreamSource) -> Response:
    """A Flask response streaming `text_body`. `source` as in `flask_sse_response`; the
    body of an error response is one line, ``error: <message>``."""
    return _flask_response(*_text_body(source), TEXT_CONTENT_TYPE)


def django_sse_response(source: StreamSource, *, heartbeat: float = 15.0) -> HttpResponseBase:
    """A Django `StreamingHttpResponse` streaming `sse_response_body`; `source` and the
    error response (an `HttpResponse`) as in `flask_sse_response`."""
    return _django_response(*_sse_body(source, heartbeat), SSE_CONTENT_TYPE)


def django_text_response(source: StreamSource) -> HttpResponseBase:
    """A Django `StreamingHttpResponse` streaming `text_body`; `source` and the error
    response as in `flask_text_response`."""
    return _django_response(*_text_body(source), TEXT_CONTENT_TYPE)


def _flask_response(body: Iterator[bytes] | bytes, status: int, content_type: str) -> Response:
    from flask import Response

    # No stream_with_context: the body never touches the request context. Werkzeug
    # passes each item on as it comes and closes the body when the server closes
    # the response.
    return Response(body, status=status, content_type=content_type, headers=STREAMING_HEADERS)


def _django_response(body: Iterator[bytes] | bytes, status: int, content_type: str) -> HttpResponseBase:
    from django.http import HttpResponse, StreamingHttpResponse

    if isinstance(body, bytes):
        return HttpResponse(body, status=status, content_type=content_type, headers=STREAMING_HEADERS)
    return StreamingHttpResponse(body, status=status, content_type=content_type, headers=STREAMING_HEADERS)
