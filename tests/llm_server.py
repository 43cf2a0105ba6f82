"""A scripted, threaded OpenAI-compatible HTTP server for streaming tests.

Stdlib only (``http.server.ThreadingHTTPServer``), HTTP/1.1 with keep-alive,
bound to 127.0.0.1 on an ephemeral port.

Typical use::

    with LLMServer() as server:
        server.enqueue(Reply(body=text_stream_body(["Hel", "lo"])))
        ...  # point the SDK at server.url ("http://127.0.0.1:<port>/v1")
        assert server.requests[0].json()["stream"] is True

A ``Reply`` body is a list of pieces written one at a time:

* ``bytes``        -- sent as-is (one HTTP chunk per piece when chunked), no
                      buffering, so tests control the exact split points;
* ``Pause(s)``     -- sleep ``s`` seconds between pieces (notices the client
                      leaving or the server stopping meanwhile);
* ``Stall()``      -- stop writing and hold the connection open until the
                      client goes away or the server is stopped;
* ``Disconnect()`` -- close the socket right there (FIN; no terminating chunk);
  ``Disconnect(reset=True)`` closes with SO_LINGER 0, i.e. sends an RST.

``LLMServer.body_bytes_sent`` counts the body bytes the kernel took from the
server, to the byte, e.g. to see how far a client that stopped reading lets a
server get ahead.

Thread names: the accept loop runs in ``test-llm-server-accept``, each TCP
connection in ``test-llm-server-conn-<n>`` (deliberately not starting with
``llm`` so ``live_threads("llmx")``-style checks on the SDK never see them).
"""

from __future__ import annotations

import collections
import json
import math
import select
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Union

__all__ = [
    "CaseInsensitiveDict",
    "Disconnect",
    "LLMServer",
    "Pause",
    "RecordedRequest",
    "Reply",
    "Stall",
    "chat_chunk",
    "error_reply",
    "json_reply",
    "sse_comment",
    "sse_done",
    "sse_event",
    "text_reply",
    "text_stream_body",
    "tool_call_delta",
]

_POLL_INTERVAL = 0.05  # seconds; upper bound for noticing client EOF / stop()


# --------------------------------------------------------------------------
# Body pieces
# --------------------------------------------------------------------------
# The server recognises pieces by the ``_llm_piece`` class attribute rather
# than by isinstance, so the module still works if it gets imported twice
# (e.g. as ``llm_server`` and as ``tests.llm_server``).


@dataclass(frozen=True)
class Pause:
    """Sleep ``seconds`` before writing the next piece."""

    seconds: float
    _llm_piece = "pause"


@dataclass(frozen=True)
class Stall:
    """Stop writing; keep the connection open until the client leaves or stop()."""

    _llm_piece = "stall"


@dataclass(frozen=True)
class Disconnect:
    """Close the socket abruptly mid-body (FIN, or RST with ``reset=True``)."""

    reset: bool = False
    _llm_piece = "disconnect"


Piece = Union[bytes, Pause, Stall, Disconnect]


def _has_header(headers: dict[str, str], name: str) -> bool:
    name = name.lower()
    return any(k.lower() == name for k in headers)


@dataclass
class Reply:
    """One scripted HTTP response.

    * ``status``: HTTP status code.
    * ``headers``: extra response headers. For status 200 a missing
      Content-Type defaults to ``text/event-stream``.
    * ``body``: pieces, see module docstring. ``str`` pieces are UTF-8 encoded;
      a bare ``bytes``/``str`` body is wrapped in a list. Empty pieces are skipped.
    * ``chunked``: ``Transfer-Encoding: chunked`` (default). With ``False``:
      ``Content-Length`` if the body is all bytes, otherwise close-delimited
      (``Connection: close``). A user-supplied Content-Length /
      Transfer-Encoding header is sent as-is and not recomputed (use that
      to script a truncated Content-Length body).
    * ``close_without_response``: read the request, then close the socket
      without writing a single byte.
    * ``headers_after``: seconds to wait before the status line (``math.inf``: until
      the client leaves or the server stops), a server slow to answer at all.
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: list[Piece] = field(default_factory=list)
    chunked: bool = True
    close_without_response: bool = False
    headers_after: float = 0.0

    def __post_init__(self) -> None:
        self.headers = dict(self.headers)
        body: Any = self.body
        if isinstance(body, (bytes, bytearray, memoryview, str)):
            body = [body]
        normalised: list[Piece] = []
        for piece in body:
            if isinstance(piece, str):
                piece = piece.encode("utf-8")
            elif isinstance(piece, (bytearray, memoryview)):
                piece = bytes(piece)
            elif not isinstance(piece, bytes) and getattr(piece, "_llm_piece", None) is None:
                raise TypeError(f"unsupported body piece: {piece!r}")
            normalised.append(piece)
        self.body = normalised
        if self.status == 200 and not _has_header(self.headers, "Content-Type"):
            self.headers["Content-Type"] = "text/event-stream"


def json_reply(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    """A non-streaming JSON reply with Content-Length."""
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    return Reply(status=status, headers=h, body=[json.dumps(obj).encode()], chunked=False)


def text_reply(text: str, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    """A non-streaming text/plain reply with Content-Length."""
    h = {"Content-Type": "text/plain; charset=utf-8"}
    h.update(headers or {})
    return Reply(status=status, headers=h, body=[text.encode()], chunked=False)


def error_reply(
    status: int,
    message: str = "error",
    *,
    type: str = "server_error",
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """An OpenAI-style JSON error: ``{"error": {"message", "type", "param", "code"}}``."""
    return json_reply(
        {"error": {"message": message, "type": type, "param": None, "code": code}},
        status=status,
        headers=headers,
    )


# --------------------------------------------------------------------------
# SSE / OpenAI chunk helpers
# --------------------------------------------------------------------------


def _compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def sse_event(
    data: Union[str, dict, list],
    *,
    event: str | None = None,
    id: str | None = None,
    newline: str = "\n",
) -> bytes:
    """One SSE event: optional ``event:``/``id:`` lines, one ``data:`` line per
    line of ``data`` (dict/list -> compact JSON), terminated by a blank line.
    ``newline`` may be ``"\\r\\n"`` or ``"\\r"`` to test other line endings."""
    text = data if isinstance(data, str) else _compact(data)
    lines = []
    if event is not None:
        lines.append(f"event: {event}")
    if id is not None:
        lines.append(f"id: {id}")
    for line in text.split("\n"):
        lines.append(f"data: {line}")
    return (newline.join(lines) + newline + newline).encode("utf-8")


def sse_comment(text: str = "keep-alive", *, newline: str = "\n") -> bytes:
    """An SSE comment line (``: text``) followed by a blank line."""
    return f": {text}{newline}{newline}".encode()


def sse_done(*, newline: str = "\n") -> bytes:
    """``data: [DONE]`` event."""
    return sse_event("[DONE]", newline=newline)


def tool_call_delta(
    index: int = 0,
    *,
    id: str | None = None,
    name: str | None = None,
    arguments: str | None = None,
    type: str | None = "function",
) -> dict:
    """One element of ``delta.tool_calls`` as OpenAI streams it. ``type`` is only
    included when ``id`` is given (OpenAI sends id/type/name on the first
    fragment and only ``arguments`` afterwards)."""
    d: dict[str, Any] = {"index": index}
    if id is not None:
        d["id"] = id
        if type is not None:
            d["type"] = type
    fn: dict[str, Any] = {}
    if name is not None:
        fn["name"] = name
    if arguments is not None:
        fn["arguments"] = arguments
    if fn:
        d["function"] = fn
    return d


def chat_chunk(
    content: str | None = None,
    *,
    role: str | None = None,
    reasoning: str | None = None,
    reasoning_key: str = "reasoning_content",
    tool_calls: list[dict] | None = None,
    finish_reason: str | None = None,
    usage: dict | None = None,
    id: str = "chatcmpl-1",
    model: str = "test-model",
    created: int = 1700000000,
    index: int = 0,
    choices: list[dict] | None = None,
) -> dict:
    """An OpenAI ``chat.completion.chunk`` dict.

    ``delta`` holds only the given fields (role, content, ``reasoning_key``,
    tool_calls). ``finish_reason`` is always present in the choice (null when
    not given). If ``usage`` is given and nothing else is, the chunk has
    ``"choices": []`` (like OpenAI's final usage chunk with
    ``stream_options.include_usage``); otherwise ``usage`` is added next to
    the choice. ``choices`` overrides the choices list entirely.
    """
    delta: dict[str, Any] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    if reasoning is not None:
        delta[reasoning_key] = reasoning
    if tool_calls is not None:
        delta["tool_calls"] = tool_calls
    chunk: dict[str, Any] = {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
    }
    if choices is not None:
        chunk["choices"] = choices
    elif usage is not None and not delta and finish_reason is None:
        chunk["choices"] = []
    else:
        chunk["choices"] = [{"index": index, "delta": delta, "finish_reason": finish_reason}]
    if usage is not None:
        chunk["usage"] = usage
    return chunk


def text_stream_body(
    tokens: list[str],
    *,
    usage: dict | None = None,
    finish_reason: str | None = "stop",
    id: str = "chatcmpl-1",
    model: str = "test-model",
    done: bool = True,
) -> list[bytes]:
    """Pieces of a plain streamed answer, one SSE event per piece:

    1. one chunk per token: ``delta {"content": tok}`` (the first one also
       carries ``"role": "assistant"``); no tokens -> one role-only chunk;
    2. if ``finish_reason`` is not None: a chunk with ``delta {}`` and that
       finish_reason;
    3. if ``usage``: a usage-only chunk (``choices: []``);
    4. if ``done``: ``data: [DONE]``.
    """
    pieces: list[bytes] = []
    if not tokens:
        pieces.append(sse_event(chat_chunk(role="assistant", content="", id=id, model=model)))
    for i, tok in enumerate(tokens):
        pieces.append(sse_event(chat_chunk(tok, role="assistant" if i == 0 else None, id=id, model=model)))
    if finish_reason is not None:
        pieces.append(sse_event(chat_chunk(finish_reason=finish_reason, id=id, model=model)))
    if usage is not None:
        pieces.append(sse_event(chat_chunk(usage=usage, id=id, model=model)))
    if done:
        pieces.append(sse_done())
    return pieces


# --------------------------------------------------------------------------
# Recorded requests
# --------------------------------------------------------------------------


class CaseInsensitiveDict(MutableMapping):
    """Minimal case-insensitive str->str mapping that remembers original case."""

    def __init__(self, items: Union[Iterable[tuple[str, str]], dict, None] = None) -> None:
        self._store: dict[str, tuple[str, str]] = {}
        if items is not None:
            if isinstance(items, dict):
                items = items.items()
            for k, v in items:
                lk = k.lower()
                if lk in self._store:  # repeated header: join like HTTP does
                    v = f"{self._store[lk][1]}, {v}"
                self._store[lk] = (k, v)

    def __getitem__(self, key: str) -> str:
        return self._store[key.lower()][1]

    def __setitem__(self, key: str, value: str) -> None:
        self._store[key.lower()] = (key, value)

    def __delitem__(self, key: str) -> None:
        del self._store[key.lower()]

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._store.values())

    def __len__(self) -> int:
        return len(self._store)

    def __repr__(self) -> str:
        return f"CaseInsensitiveDict({dict(self.items())!r})"


@dataclass
class RecordedRequest:
    method: str
    path: str  # request target as sent, including the query string
    headers: CaseInsensitiveDict
    body: bytes
    connection_id: int  # 1-based index of the TCP connection it came on
    received_at: float  # time.monotonic() when the body had been read

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def route(self) -> str:
        """The path without the query string."""
        return self.path.split("?", 1)[0]


# --------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------

_CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small pieces must leave immediately
    server_version = "LLMTestServer/1.0"
    sys_version = ""

    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.owner: LLMServer = self.server.owner
        self.conn_id = self.owner._conn_id(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # silence stderr logging
        pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    # -- request ---------------------------------------------------------

    def _read_body(self) -> bytes | None:
        """The request body, or None if the client went away mid-body."""
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            parts = []
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    return None
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while True:  # trailers up to the blank line
                        t = self.rfile.readline(65537)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    return b"".join(parts)
                data = self.rfile.read(size)
                if len(data) < size:
                    return None
                parts.append(data)
                self.rfile.readline(65537)  # CRLF after chunk data
        n = int(self.headers.get("Content-Length") or 0)
        if n <= 0:
            return b""
        data = self.rfile.read(n)
        return data if len(data) == n else None

    def _dispatch(self) -> None:
        owner = self.owner
        try:
            body = self._read_body()
        except _CLIENT_GONE:
            body = None
        if body is None:
            self.close_connection = True
            return
        rec = RecordedRequest(
            method=self.command,
            path=self.path,
            headers=CaseInsensitiveDict(self.headers.items()),
            body=body,
            connection_id=self.conn_id,
            received_at=time.monotonic(),
        )
        owner._record(rec)
        route = rec.route
        if self.command == "POST" and route.endswith("/chat/completions"):
            reply = owner._next_reply(rec)
        elif self.command == "GET" and route.endswith("/models"):
            reply = json_reply(
                {
                    "object": "list",
                    "data": [
                        {"id": m, "object": "model", "created": 0, "owned_by": "llm-server"} for m in owner.models
                    ],
                }
            )
        else:
            reply = error_reply(404, f"no route for {self.command} {route}", type="not_found")
        self._send(reply)

    # -- response --------------------------------------------------------

    def _send(self, reply: Reply) -> None:
        owner = self.owner
        stop = owner._stop_event
        if reply.close_without_response:
            self.close_connection = True
            self._hard_close(reset=False)
            return
        if reply.headers_after and not self._wait(None if reply.headers_after == math.inf else reply.headers_after):
            self.close_connection = True
            return
        pieces = reply.body
        chunked = reply.chunked
        headers = reply.headers
        try:
            self.send_response(reply.status)
            for k, v in headers.items():
                self.send_header(k, v)
            if chunked:
                if not _has_header(headers, "Transfer-Encoding"):
                    self.send_header("Transfer-Encoding", "chunked")
            elif _has_header(headers, "Content-Length"):
                pass
            elif all(type(p) is bytes for p in pieces):
                self.send_header("Content-Length", str(sum(len(p) for p in pieces)))
            else:
                self.send_header("Connection", "close")  # sets close_connection
            self.end_headers()

            sendall = self._sendall
            for p in pieces:
                if type(p) is bytes:
                    if not p:
                        continue
                    if stop.is_set():
                        self.close_connection = True
                        return
                    if chunked:
                        sendall(b"%x\r\n%b\r\n" % (len(p), p))
                    else:
                        sendall(p)
                    continue
                kind = p._llm_piece
                if kind == "pause":
                    if not self._wait(p.seconds):
                        self.close_connection = True
                        return
                elif kind == "stall":
                    self._wait(None)
                    self.close_connection = True
                    return
                elif kind == "disconnect":
                    self.close_connection = True
                    self._hard_close(reset=p.reset)
                    return
            if chunked:
                sendall(b"0\r\n\r\n")
        except _CLIENT_GONE:
            self.close_connection = True
            if not stop.is_set():
                owner._on_client_disconnect()
        except OSError:
            self.close_connection = True
            if not stop.is_set():
                raise

    def _sendall(self, data: bytes) -> None:
        """``sendall`` that counts what the kernel took (`LLMServer.body_bytes_sent`)
        as it takes it, so a writer blocked by a client that stopped reading is counted
        to the byte."""
        view = memoryview(data)
        while view:
            sent = self.connection.send(view)
            self.owner._on_sent(sent)
            view = view[sent:]

    def _wait(self, seconds: float | None) -> bool:
        """Wait ``seconds`` (None: forever) while watching the client.

        Returns True when the time elapsed normally, False when the client went
        away (counted as a client disconnect) or the server is stopping.
        """
        owner = self.owner
        stop = owner._stop_event
        sock = self.connection
        deadline = None if seconds is None else time.monotonic() + seconds
        poller = None
        if hasattr(select, "POLLRDHUP"):
            # POLLRDHUP fires on the peer's FIN even when unread (pipelined)
            # request bytes are pending; HUP/ERR (RST) are always reported.
            poller = select.poll()
            poller.register(sock, select.POLLRDHUP)
        while True:
            if stop.is_set():
                return False
            if deadline is None:
                timeout = _POLL_INTERVAL
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return True
                timeout = min(remaining, _POLL_INTERVAL)
            gone = False
            try:
                if poller is not None:
                    gone = bool(poller.poll(timeout * 1000.0))
                else:
                    r, _, _ = select.select([sock], [], [], timeout)
                    if r:
                        gone = sock.recv(1, socket.MSG_PEEK) == b""
                        if not gone:  # pending data; can't see EOF behind it
                            time.sleep(timeout)
            except (OSError, ValueError):
                gone = True
            if gone:
                if stop.is_set():
                    return False
                owner._on_client_disconnect()
                return False

    def _hard_close(self, reset: bool) -> None:
        sock = self.connection
        try:
            if reset:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.rfile.close()  # drop makefile()'s reference so close() is real
        except Exception:
            pass
        sock.close()
        self.owner._on_close(sock)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # LLMServer.stop() joins threads itself, with a deadline
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, owner: LLMServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self):  # type: ignore[override]
        sock, addr = super().get_request()
        self.owner._on_accept(sock)
        return sock, addr

    def process_request(self, request, client_address) -> None:  # type: ignore[override]
        cid = self.owner._conn_id(request)
        t = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"test-llm-server-conn-{cid}",
            daemon=True,
        )
        self.owner._register_thread(t)
        t.start()

    def close_request(self, request) -> None:  # type: ignore[override]
        try:
            request.close()
        finally:
            self.owner._on_close(request)

    def handle_error(self, request, client_address) -> None:  # type: ignore[override]
        exc = sys.exc_info()[1]
        if isinstance(exc, _CLIENT_GONE):
            return
        if isinstance(exc, OSError) and self.owner._stop_event.is_set():
            return
        self.owner._errors_append("".join(traceback.format_exception(exc)))


# --------------------------------------------------------------------------
# Public server
# --------------------------------------------------------------------------


class LLMServer:
    """Scripted OpenAI-compatible server on 127.0.0.1 (see module docstring).

    Routing: ``POST .../chat/completions`` -> the script (``handler`` if set,
    else the FIFO queue, else ``default``, else a 500 "script ran out" text);
    ``GET .../models`` -> a small model list; anything else -> 404 JSON.
    Every request is recorded in ``requests``.
    """

    def __init__(
        self,
        *replies: Reply,
        default: Reply | None = None,
        handler: Callable[[RecordedRequest], Reply] | None = None,
        models: Iterable[str] = ("test-model",),
    ) -> None:
        self.default: Reply | None = default
        self.handler: Callable[[RecordedRequest], Reply] | None = handler
        self.models: list[str] = list(models)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._queue: collections.deque[Reply] = collections.deque(replies)
        self._requests: list[RecordedRequest] = []
        self._errors: list[str] = []
        self._conns: dict[socket.socket, int] = {}  # open sockets -> connection id
        self._threads: list[threading.Thread] = []
        self._accepted = 0
        self._client_disconnects = 0
        self._body_bytes_sent = 0
        self._stop_event = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    # -- lifecycle ------------------------------------------------------

    def start(self) -> LLMServer:
        if self._httpd is not None:
            return self
        self._httpd = _HTTPServer(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL},
            name="test-llm-server-accept",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 1.0) -> None:
        """Stop accepting, abort all connections (stalled, pausing, idle
        keep-alive, blocked in send) and join all server threads. Idempotent."""
        if self._httpd is None or self._stopped:
            return
        self._stopped = True
        deadline = time.monotonic() + timeout
        self._stop_event.set()
        self._httpd.shutdown()  # returns once serve_forever's loop has exited
        with self._lock:
            socks = list(self._conns)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes recv()/send() in handlers
            except OSError:
                pass
        self._httpd.server_close()
        assert self._thread is not None
        self._thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> LLMServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- addresses ------------------------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("LLMServer not started")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """Base URL including ``/v1`` (what an OpenAI SDK calls base_url)."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def chat_url(self) -> str:
        return f"{self.url}/chat/completions"

    # -- script ---------------------------------------------------------

    def enqueue(self, *replies: Reply) -> None:
        """Append replies; served FIFO to chat/completions requests."""
        with self._lock:
            self._queue.extend(replies)

    @property
    def pending(self) -> int:
        """Replies still queued (not yet served)."""
        with self._lock:
            return len(self._queue)

    def _next_reply(self, rec: RecordedRequest) -> Reply:
        handler = self.handler
        if handler is not None:
            try:
                reply = handler(rec)
            except Exception as exc:  # surface script bugs to the client and in errors
                tb = "".join(traceback.format_exception(exc))
                self._errors_append(tb)
                return text_reply(f"LLMServer handler raised:\n{tb}", status=500)
            if not isinstance(reply, Reply) and type(reply).__name__ != "Reply":
                msg = f"LLMServer handler returned {reply!r}, not a Reply"
                self._errors_append(msg)
                return text_reply(msg, status=500)
            return reply
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        if self.default is not None:
            return self.default
        return text_reply(
            f"LLMServer: script ran out of replies (request #{len(self.requests)}: "
            f"{rec.method} {rec.path}); enqueue() more or set default",
            status=500,
        )

    # -- observations ---------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Snapshot (a copy) of all recorded requests, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def errors(self) -> list[str]:
        """Tracebacks of unexpected server-side exceptions (should stay empty)."""
        with self._lock:
            return list(self._errors)

    @property
    def open_connections(self) -> int:
        """Accepted sockets not yet closed (by either side)."""
        with self._lock:
            return len(self._conns)

    @property
    def connections_accepted(self) -> int:
        """Total TCP connections accepted since start."""
        with self._lock:
            return self._accepted

    @property
    def body_bytes_sent(self) -> int:
        """Bytes of response bodies (chunk framing included, status line and headers
        not) the kernel has accepted from the server since start."""
        with self._lock:
            return self._body_bytes_sent

    @property
    def client_disconnects(self) -> int:
        """Handlers that saw the client go away while writing/pausing/stalling."""
        with self._lock:
            return self._client_disconnects

    def wait_until_no_open_connections(self, timeout: float = 1.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self._conns, timeout)

    def wait_for_client_disconnect(self, n: int = 1, timeout: float = 1.0) -> bool:
        """True once ``client_disconnects >= n`` (within ``timeout`` seconds)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._client_disconnects >= n, timeout)

    def wait_for_requests(self, n: int = 1, timeout: float = 1.0) -> bool:
        """True once at least ``n`` requests have been recorded."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._requests) >= n, timeout)

    # -- internal bookkeeping (called from server threads) --------------

    def _on_accept(self, sock: socket.socket) -> None:
        with self._cond:
            self._accepted += 1
            self._conns[sock] = self._accepted
            self._cond.notify_all()

    def _conn_id(self, sock: socket.socket) -> int:
        with self._lock:
            return self._conns.get(sock, 0)

    def _on_close(self, sock: socket.socket) -> None:
        with self._cond:
            if self._conns.pop(sock, None) is not None:
                self._cond.notify_all()

    def _on_sent(self, count: int) -> None:
        with self._lock:
            self._body_bytes_sent += count

    def _on_client_disconnect(self) -> None:
        with self._cond:
            self._client_disconnects += 1
            self._cond.notify_all()

    def _record(self, rec: RecordedRequest) -> None:
        with self._cond:
            self._requests.append(rec)
            self._cond.notify_all()

    def _errors_append(self, text: str) -> None:
        with self._lock:
            self._errors.append(text)

    def _register_thread(self, t: threading.Thread) -> None:
        with self._lock:
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)
