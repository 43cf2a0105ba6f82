"""Record a real server's streamed answers, and replay them offline.

`Recorder` is a `ScriptedServer` that forwards every request to a real server and
streams the answer back as it arrives, noting when each piece came; on `stop()` (the
end of its ``with`` block) it writes the chat completion exchanges to a JSON file.
`Recording.load(path).replies()` gives them back as `Reply` objects for a
`ScriptedServer`, with the recorded timing (``realtime=True``) or at full speed.

The file holds, per exchange, the request's method, path (without its query string)
and body, and the response's status, headers and body pieces with their times. No
request header is written, so neither is a key; nor is ``Set-Cookie``.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import requests

from ._server import Disconnect, Pause, Piece, RecordedRequest, Reply, ScriptedServer, error_json

__all__ = ["Exchange", "Recorder", "Recording"]

FORMAT: Final = "llmx_sync recording 1"
_READ_SIZE: Final = 64 * 1024
# Not forwarded to the real server: HTTP/1.1 hop-by-hop headers, and what requests sets itself.
_REQUEST_HEADERS_NOT_FORWARDED: Final = frozenset({
    "host", "content-length", "connection", "keep-alive", "transfer-encoding", "te", "upgrade",
    "proxy-authorization", "proxy-connection", "accept-encoding"})
# Not recorded or sent back: the body's framing is the scripted server's own, and a cookie is a secret.
_RESPONSE_HEADERS_DROPPED: Final = frozenset({
    "content-length", "transfer-encoding", "content-encoding", "connection", "keep-alive", "set-cookie", "date",
    "server"})


def _is_chat(method: str, route: str) -> bool:
    return method == "POST" and route.endswith("/chat/completions")


@dataclass
class Exchange:
    """One recorded request and its answer.

    `request` is the request's body (parsed JSON, or the text when it is not JSON);
    `chunks` the response body as it arrived: ``(seconds after the request, bytes)``;
    `headers_after` the seconds until the response's headers came; `complete` is False
    when the body was cut short (the client left, or the connection failed), in which
    case a replay closes the connection after the last piece.
    """

    method: str
    path: str
    request: Any
    status: int
    headers: dict[str, str]
    headers_after: float
    chunks: list[tuple[float, bytes]] = field(default_factory=list)
    complete: bool = True

    def reply(self, *, realtime: bool = False) -> Reply:
        """This answer as a `Reply`: at full speed, or with the recorded pauses."""
        body: list[Piece] = []
        previous = self.headers_after
        for at, data in self.chunks:
            if realtime and at > previous:
                body.append(Pause(at - previous))
            body.append(data)
            previous = max(previous, at)
        if not self.complete:
            body.append(Disconnect())
        return Reply(status=self.status, headers=dict(self.headers), body=body,
                     headers_after=self.headers_after if realtime else 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "request": {"method": self.method, "path": self.path, "body": self.request},
            "response": {"status": self.status, "headers": self.headers, "headers_after": round(self.headers_after, 6),
                         "complete": self.complete, "chunks": [_chunk_to_dict(at, data) for at, data in self.chunks]},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Exchange:
        request, response = data["request"], data["response"]
        return cls(method=request["method"], path=request["path"], request=request["body"],
                   status=response["status"], headers=dict(response["headers"]),
                   headers_after=float(response["headers_after"]), complete=bool(response.get("complete", True)),
                   chunks=[_chunk_from_dict(chunk) for chunk in response["chunks"]])


def _chunk_to_dict(at: float, data: bytes) -> dict[str, Any]:
    try:  # readable in the file when it is text; a piece that splits a UTF-8 character is not
        return {"at": round(at, 6), "text": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"at": round(at, 6), "base64": base64.b64encode(data).decode("ascii")}


def _chunk_from_dict(chunk: dict[str, Any]) -> tuple[float, bytes]:
    data = chunk["text"].encode("utf-8") if "text" in chunk else base64.b64decode(chunk["base64"])
    return float(chunk["at"]), data


@dataclass
class Recording:
    """The exchanges of a recording file, in the order they happened."""

    exchanges: list[Exchange] = field(default_factory=list)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Recording:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise ValueError(f"{os.fspath(path)!r} is not a recording made by llmx_sync.testing.Recorder")
        return cls([Exchange.from_dict(exchange) for exchange in document["exchanges"]])

    def save(self, path: str | os.PathLike[str]) -> None:
        document = {"format": FORMAT, "exchanges": [exchange.to_dict() for exchange in self.exchanges]}
        Path(path).write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")

    def replies(self, *, realtime: bool = False) -> list[Reply]:
        """The answers, in order, for ``ScriptedServer(*recording.replies())``."""
        return [exchange.reply(realtime=realtime) for exchange in self.exchanges]

    @property
    def requests(self) -> list[Any]:
        """The request bodies, in order, to compare with what a replay receives."""
        return [exchange.request for exchange in self.exchanges]


class Recorder(ScriptedServer):
    """A `ScriptedServer` that forwards every request to the server at `upstream` (its
    base URL, e.g. ``http://127.0.0.1:8080/v1``) and streams the answers back as they
    arrive. Its chat completion exchanges are written to `path` when it stops.

    Point a client at ``recorder.base_url`` instead of the real server; the client's
    headers (its key) are forwarded but not recorded. `timeout` bounds each wait for the
    real server (connecting: at most 10 s).
    """

    def __init__(self, upstream: str, path: str | os.PathLike[str], *, timeout: float = 300.0) -> None:
        super().__init__()
        self.upstream = upstream.rstrip("/")
        self.path = Path(path)
        self.recording = Recording()
        self._timeout = timeout
        self._session = requests.Session()
        self._session.trust_env = False  # what the client sent, to where it was sent
        self._open: set[requests.Response] = set()
        self._saved = False

    def _route(self, request: RecordedRequest) -> Reply:
        target = request.path.removeprefix("/v1") if request.path.startswith("/v1") else request.path
        headers = {key: value for key, value in request.headers.items()
                   if key.lower() not in _REQUEST_HEADERS_NOT_FORWARDED}
        headers["Accept-Encoding"] = "identity"  # record the bytes as they were streamed
        sent = time.monotonic()
        try:
            response = self._session.request(request.method, self.upstream + target, data=request.body,
                                             headers=headers, stream=True, allow_redirects=False,
                                             timeout=(min(10.0, self._timeout), self._timeout))
        except requests.RequestException as exc:
            self._errors_append(f"Recorder: {request.method} {request.route} failed: {_reason(exc)}")
            return error_json(502, f"Recorder: the real server did not answer: {_reason(exc)}", "bad_gateway")
        headers_after = time.monotonic() - sent
        kept = {key: value for key, value in response.headers.items()
                if key.lower() not in _RESPONSE_HEADERS_DROPPED}
        exchange = None
        if _is_chat(request.method, request.route):
            exchange = Exchange(request.method, request.route, _body(request.body), response.status_code, kept,
                                headers_after)
            with self._lock:  # in the order the requests came
                self.recording.exchanges.append(exchange)
        return Reply(status=response.status_code, headers=kept, body=self._relay(response, sent, exchange))

    def _relay(self, response: requests.Response, sent: float, exchange: Exchange | None) -> Iterator[Piece]:
        with self._lock:
            self._open.add(response)
        raw = response.raw
        read = raw.read1 if hasattr(raw, "read1") else raw.read
        complete = False
        try:
            while True:
                data = read(_READ_SIZE, decode_content=True)
                if not data:
                    complete = True
                    return
                if exchange is not None:
                    exchange.chunks.append((time.monotonic() - sent, data))
                yield data
        except Exception as exc:  # the real server's connection failed: the client's is cut too
            self._errors_append(f"Recorder: reading the answer failed: {_reason(exc)}")
            yield Disconnect()
        finally:
            response.close()
            with self._lock:
                self._open.discard(response)
            if exchange is not None:
                exchange.complete = complete

    def stop(self, timeout: float = 1.0) -> None:
        """Stop serving (answers still streaming are cut) and write the recording."""
        with self._lock:
            responses = list(self._open)
        for response in responses:  # wake handlers blocked reading the real server
            shutdown = getattr(response.raw, "shutdown", None)
            if shutdown is not None:
                shutdown()
        super().stop(timeout)
        self._session.close()
        if not self._saved:
            self._saved = True
            self.recording.save(self.path)

    def __enter__(self) -> Recorder:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _reason(error: BaseException) -> str:
    """Why a request to the real server failed, without the URL (requests' and urllib3's
    messages quote it, and a URL may carry a key): the OS's reason when there is one."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return f"{type(error).__name__} ({seen.strerror})"
        seen = seen.__cause__ or seen.__context__
    return type(error).__name__


def _body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", errors="replace")

