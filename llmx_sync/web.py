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
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._jsonrules import compact_json
from .errors import LlmxError
from .events import Event, OutputTextDelta
from .stream import StreamLike

if TYPE_CHECKING:
    from django.http import StreamingHttpResponse
    from flask import Response

__all__ = [
    "StreamLike",
    "django_sse_response",
    "django_text_response",
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

HEARTBEAT_FRAME = b": keep-alive\n\n"
DONE_FRAME = b"data: [DONE]\n\n"


def sse_frame(event_type: str, data: Any) -> bytes:
    """One SSE event: ``event: <type>`` and one ``data:`` line of compact JSON."""
    return f"event: {event_type}\ndata: {compact_json(data)}\n\n".encode()


def event_frame(event: Event) -> bytes:
    return sse_frame(event.type, event.to_dict())


def error_frame(error: BaseException) -> bytes:
    """The ``event: error`` frame for an error raised after the headers went out.

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
    if not heartbeat > 0:
        stream.close()
        raise ValueError(f"heartbeat must be a positive number of seconds, got {heartbeat!r}")
    return _sse_frames(stream, heartbeat)


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
    """Only the answer's text deltas, UTF-8 encoded.

    Plain text has no way to carry an error, so one is raised: the server then
    aborts the response and the client sees an incomplete body (with chunked
    encoding). Closing the generator closes the stream.
    """
    try:
        for event in stream:
            if isinstance(event, OutputTextDelta):
                yield event.delta.encode()
    finally:
        stream.close()


def flask_sse_response(stream: StreamLike, *, heartbeat: float = 15.0) -> Response:
    """A Flask response streaming `sse_response_body`."""
    return _flask_response(sse_response_body(stream, heartbeat=heartbeat), SSE_CONTENT_TYPE)


def flask_text_response(stream: StreamLike) -> Response:
    """A Flask response streaming `text_body`."""
    return _flask_response(text_body(stream), TEXT_CONTENT_TYPE)


def django_sse_response(stream: StreamLike, *, heartbeat: float = 15.0) -> StreamingHttpResponse:
    """A Django `StreamingHttpResponse` streaming `sse_response_body`."""
    return _django_response(sse_response_body(stream, heartbeat=heartbeat), SSE_CONTENT_TYPE)


def django_text_response(stream: StreamLike) -> StreamingHttpResponse:
    """A Django `StreamingHttpResponse` streaming `text_body`."""
    return _django_response(text_body(stream), TEXT_CONTENT_TYPE)


def _flask_response(body: Iterator[bytes], content_type: str) -> Response:
    from flask import Response

    # No stream_with_context: the body never touches the request context. Werkzeug
    # passes each item on as it comes and closes the body when the server closes
    # the response.
    return Response(body, content_type=content_type, headers=STREAMING_HEADERS)


def _django_response(body: Iterator[bytes], content_type: str) -> StreamingHttpResponse:
    from django.http import StreamingHttpResponse

    return StreamingHttpResponse(body, content_type=content_type, headers=STREAMING_HEADERS)
