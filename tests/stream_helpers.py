"""Helpers of the web tests: an upstream that writes slowly, a WSGI server in a thread,
and reading a streamed SSE response as a browser would, frame by frame as the bytes arrive."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
from llm_server import Pause


def paced(pieces: list[bytes], pause: float) -> list[Any]:
    """The body pieces with a pause after each one, as a model writing tokens."""
    return [step for piece in pieces for step in (piece, Pause(pause))]


@contextmanager
def serving(server: Any) -> Iterator[str]:
    """Serve a WSGI server (Werkzeug's or wsgiref's) in a thread; yields its base URL."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(2)


def frames(response: requests.Response) -> Iterator[tuple[float, str]]:
    """Each SSE frame (or comment) with the time it arrived."""
    buffer = b""
    while chunk := response.raw.read1(65536):  # whatever has arrived, without waiting for more
        buffer += chunk
        *complete, buffer = buffer.split(b"\n\n")
        for frame in complete:
            yield time.monotonic(), frame.decode()
    assert buffer == b"", "the body ended inside a frame"


def event_of(frame: str) -> tuple[str, Any]:
    """(event type, decoded data) of an ``event:``/``data:`` frame."""
    event_line, data_line = frame.split("\n")
    assert event_line.startswith("event: ") and data_line.startswith("data: "), frame
    return event_line[len("event: "):], json.loads(data_line[len("data: "):])


def streamed_text(response: requests.Response) -> str:
    """The text deltas of a whole SSE body, which must end with ``[DONE]``."""
    received = [frame for _, frame in frames(response)]
    assert received[-1] == "data: [DONE]", received[-3:]
    events = [event_of(frame) for frame in received[:-1] if not frame.startswith(":")]
    return "".join(data["delta"] for kind, data in events if kind == "output_text.delta")
