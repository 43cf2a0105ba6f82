"""`ScriptedServer`: a threaded OpenAI-compatible HTTP server on 127.0.0.1 that answers
with the replies it was given, and records the requests it got.

Stdlib only (``http.server.ThreadingHTTPServer``), HTTP/1.1 with keep-alive, bound to
127.0.0.1 on a free port. A `Reply` body is a list of pieces written one at a time:

* ``bytes`` (or ``str``, UTF-8 encoded): sent as it is, one HTTP chunk per piece when
  the body is chunked, with no buffering, so a test controls the exact split points;
* ``Pause(s)``: wait ``s`` seconds before the next piece (noticing a client that leaves
  or the server stopping meanwhile);
* ``Stall()``: stop writing and hold the connection open until the client goes away or
  the server stops;
* ``Disconnect()``: close the socket right there (FIN, no terminating chunk);
  ``Disconnect(reset=True)`` closes it with an RST.

Threads: the accept loop runs in ``scripted-server-accept``, each TCP connection in
``scripted-server-conn-<n>`` (daemon threads, all joined by `ScriptedServer.stop`).
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
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final, Union

__all__ = [
    "CaseInsensitiveDict", "Disconnect", "Pause", "Piece", "RecordedRequest", "Reply", "ScriptedServer", "Stall",
    "json_reply", "text_reply",
]

_POLL_INTERVAL: Final = 0.05  # seconds: how soon a client leaving, or stop(), is noticed


# --- body pieces -------------------------------------------------------------------


@dataclass(frozen=True)
class Pause:
    """Wait `seconds` before writing the next piece."""

    seconds: float


@dataclass(frozen=True)
class Stall:
    """Stop writing; keep the connection open until the client leaves or the server stops."""


@dataclass(frozen=True)
class Disconnect:
    """Close the socket abruptly in the middle of the body (FIN, or RST with `reset`)."""

    reset: bool = False


Piece = Union[bytes, Pause, Stall, Disconnect]
PieceLike = Union[bytes, bytearray, memoryview, str, Pause, Stall, Disconnect]


def _piece(value: Any) -> Piece:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (bytes, Pause, Stall, Disconnect)):
        return value
    raise TypeError(f"unsupported body piece: {value!r} (expected bytes, str, Pause, Stall or Disconnect)")


def _has_header(headers: Mapping[str, str], name: str) -> bool:
    return any(key.lower() == name.lower() for key in headers)


@dataclass
class Reply:
    """One scripted HTTP response.

    * `status`: the HTTP status. A 200 without a Content-Type gets
      ``text/event-stream``.
    * `headers`: response headers.
    * `body`: the pieces (see the module docstring); a lone ``bytes``/``str`` is one
      piece. A list is checked when the reply is made; any other iterable (a
      generator) is read piece by piece while the reply is sent. Empty pieces are
      skipped.
    * `chunked`: ``Transfer-Encoding: chunked`` (the default). Without it: a
      ``Content-Length`` when the body is a list of bytes only, else a body that ends
      when the connection closes. A Content-Length or Transfer-Encoding given in
      `headers` is sent as it is (to script a body shorter than its Content-Length).
    * `close_without_response`: read the request, then close the connection without
      writing a byte.
    * `headers_after`: seconds to wait before the status line (``math.inf``: until the
      client leaves or the server stops), a server slow to answer at all.
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = field(default_factory=list)  # list[Piece] once made, or an iterable read while sending
    chunked: bool = True
    close_without_response: bool = False
    headers_after: float = 0.0

    def __post_init__(self) -> None:
        self.headers = dict(self.headers)
        body = self.body
        if isinstance(body, (bytes, bytearray, memoryview, str)):
            body = [body]
        if isinstance(body, (list, tuple)):
            self.body = [_piece(piece) for piece in body]
        elif not isinstance(body, Iterable):
            raise TypeError(f"unsupported body: {body!r} (expected a list of pieces or an iterable)")
        if self.status == 200 and not _has_header(self.headers, "Content-Type"):
            self.headers["Content-Type"] = "text/event-stream"

    def pieces(self) -> Iterator[Piece]:
        return (_piece(piece) for piece in self.body)


def json_reply(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Reply:
    """A JSON response with a Content-Length (not streamed)."""
    return Reply(status=status, headers={"Content-Type": "application/json", **(headers or {})},
                 body=[json.dumps(obj).encode()], chunked=False)


def text_reply(text: str, status: int = 200, headers: Mapping[str, str] | None = None) -> Reply:
    """A ``text/plain`` response with a Content-Length (not streamed)."""
    return Reply(status=status, headers={"Content-Type": "text/plain; charset=utf-8", **(headers or {})},
                 body=[text.encode()], chunked=False)


def error_json(status: int, message: str, type: str, code: str | None = None) -> Reply:
    return json_reply({"error": {"message": message, "type": type, "param": None, "code": code}}, status=status)


# --- recorded requests ----------------------------------------------------------------


class CaseInsensitiveDict(MutableMapping[str, str]):
    """Request headers: a str -> str mapping whose keys ignore case and keep the case
    they were sent in; a repeated header's values are joined with ``", "``."""

    def __init__(self, items: Iterable[tuple[str, str]] | Mapping[str, str] | None = None) -> None:
        self._store: dict[str, tuple[str, str]] = {}
        pairs = items.items() if isinstance(items, Mapping) else items or ()
        for key, value in pairs:
            previous = self._store.get(key.lower())
            self._store[key.lower()] = (key, value if previous is None else f"{previous[1]}, {value}")

    def __getitem__(self, key: str) -> str:
        return self._store[key.lower()][1]

    def __setitem__(self, key: str, value: str) -> None:
        self._store[key.lower()] = (key, value)

    def __delitem__(self, key: str) -> None:
        del self._store[key.lower()]

    def __iter__(self) -> Iterator[str]:
        return (key for key, _ in self._store.values())

    def __len__(self) -> int:
        return len(self._store)

    def __repr__(self) -> str:
        return f"CaseInsensitiveDict({dict(self.items())!r})"


@dataclass
class RecordedRequest:
    """A request the server received."""

    method: str
    path: str  # the request target as sent, query string included
    headers: CaseInsensitiveDict
    body: bytes
    connection_id: int  # 1-based number of the TCP connection it came on
    received_at: float  # time.monotonic() once its body had been read

    def json(self) -> Any:
        """The body, parsed as JSON."""
        return json.loads(self.body)

    @property
    def route(self) -> str:
        """The path without the query string."""
        return self.path.split("?", 1)[0]


# --- HTTP plumbing ----------------------------------------------------------------------

_CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small pieces must leave at once
    server_version = "ScriptedServer/1.0"
    sys_version = ""

    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.owner: ScriptedServer = self.server.owner
        self.conn_id = self.owner._conn_id(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # no log lines on stderr
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

    # -- the request ------------------------------------------------------------------

    def _read_body(self) -> bytes | None:
        """The request body, or None if the client went away in the middle of it."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts: list[bytes] = []
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    return None
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):  # trailers
                        pass
                    return b"".join(parts)
                data = self.rfile.read(size)
                if len(data) < size:
                    return None
                parts.append(data)
                self.rfile.readline(65537)  # the CRLF after the chunk's data
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0:
            return b""
        data = self.rfile.read(length)
        return data if len(data) == length else None

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except _CLIENT_GONE:
            body = None
        if body is None:
            self.close_connection = True
            return
        request = RecordedRequest(method=self.command, path=self.path,
                                  headers=CaseInsensitiveDict(self.headers.items()), body=body,
                                  connection_id=self.conn_id, received_at=time.monotonic())
        self.owner._record(request)
        self._send(self.owner._route(request))

    # -- the response -----------------------------------------------------------------

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
        chunked, headers = reply.chunked, reply.headers
        try:
            # A scripted `Server` header replaces the stdlib's own (clients tell servers apart
            # by it: llama.cpp's llama-server sends `Server: llama.cpp`).
            server = [value for key, value in headers.items() if key.lower() == "server"]
            self.send_response_only(reply.status)
            self.send_header("Server", server[0] if server else self.version_string())
            self.send_header("Date", self.date_time_string())
            for key, value in headers.items():
                if key.lower() != "server":
                    self.send_header(key, value)
            if chunked:
                if not _has_header(headers, "Transfer-Encoding"):
                    self.send_header("Transfer-Encoding", "chunked")
            elif _has_header(headers, "Content-Length"):
                pass
            elif isinstance(reply.body, list) and all(type(piece) is bytes for piece in reply.body):
                self.send_header("Content-Length", str(sum(len(piece) for piece in reply.body)))
            else:
                self.send_header("Connection", "close")  # the body ends with the connection
            self.end_headers()

            for piece in reply.pieces():
                if type(piece) is bytes:
                    if not piece:
                        continue
                    if stop.is_set():
                        self.close_connection = True
                        return
                    self._sendall(b"%x\r\n%b\r\n" % (len(piece), piece) if chunked else piece)
                elif isinstance(piece, Pause):
                    if not self._wait(piece.seconds):
                        self.close_connection = True
                        return
                elif isinstance(piece, Stall):
                    self._wait(None)
                    self.close_connection = True
                    return
                elif isinstance(piece, Disconnect):
                    self.close_connection = True
                    self._hard_close(reset=piece.reset)
                    return
            if chunked:
                self._sendall(b"0\r\n\r\n")
        except _CLIENT_GONE:
            self.close_connection = True
            if not stop.is_set():
                owner._on_client_disconnect()
        except OSError:
            self.close_connection = True
            if not stop.is_set():
                raise

    def _sendall(self, data: bytes) -> None:
        """``sendall`` that counts what the kernel took (`ScriptedServer.body_bytes_sent`)
        as it takes it, so a writer blocked by a client that stopped reading is counted to
        the byte."""
        view = memoryview(data)
        while view:
            sent = self.connection.send(view)
            self.owner._on_sent(sent)
            view = view[sent:]

    def _wait(self, seconds: float | None) -> bool:
        """Wait `seconds` (None: for ever) while watching the client: True when the time
        passed, False when the client went away (counted) or the server is stopping."""
        owner = self.owner
        stop = owner._stop_event
        sock = self.connection
        deadline = None if seconds is None else time.monotonic() + seconds
        poller = None
        if hasattr(select, "POLLRDHUP"):
            # POLLRDHUP reports the peer's FIN even when unread (pipelined) request bytes
            # are pending; HUP and ERR (an RST) are always reported.
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
                    readable, _, _ = select.select([sock], [], [], timeout)
                    if readable:
                        gone = sock.recv(1, socket.MSG_PEEK) == b""
                        if not gone:  # pending data hides a FIN behind it
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
            self.rfile.close()  # drop makefile()'s reference, so that close() really closes
        except Exception:
            pass
        sock.close()
        self.owner._on_close(sock)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # ScriptedServer.stop() joins the threads itself, with a deadline
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, owner: ScriptedServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        self.owner._on_accept(sock)
        return sock, address

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(target=self.process_request_thread, args=(request, client_address),
                                  name=f"scripted-server-conn-{self.owner._conn_id(request)}", daemon=True)
        self.owner._register_thread(thread)
        thread.start()

    def close_request(self, request: Any) -> None:
        try:
            request.close()
        finally:
            self.owner._on_close(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if exc is None or isinstance(exc, _CLIENT_GONE):
            return
        if isinstance(exc, OSError) and self.owner._stop_event.is_set():
            return
        self.owner._errors_append("".join(traceback.format_exception(exc)))


# --- the server ------------------------------------------------------------------------


class ScriptedServer:
    """A scripted OpenAI-compatible server on 127.0.0.1, for tests.

    ``POST …/chat/completions`` gets the next scripted reply: ``handler(request)`` when a
    handler is set, else the next of the queued replies (`replies`, then `enqueue`),
    else `default`, else a 500 saying the script ran out. ``GET …/models`` lists
    `models`; anything else is a 404. Every request is recorded in `requests`.

    A context manager: ``with ScriptedServer(answer("Hi")) as server:`` starts it, and
    leaving the block stops it (every connection closed, every thread joined).
    `base_url` is what a client needs (``http://127.0.0.1:<port>/v1``).
    """

    def __init__(self, *replies: Reply, default: Reply | None = None,
                 handler: Callable[[RecordedRequest], Reply] | None = None,
                 models: Iterable[str] = ("test-model",)) -> None:
        self.default = default
        self.handler = handler
        self.models = list(models)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._queue: collections.deque[Reply] = collections.deque(replies)
        self._requests: list[RecordedRequest] = []
        self._errors: list[str] = []
        self._conns: dict[socket.socket, int] = {}  # open sockets -> connection number
        self._threads: list[threading.Thread] = []
        self._accepted = 0
        self._client_disconnects = 0
        self._body_bytes_sent = 0
        self._stop_event = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> ScriptedServer:
        """Start serving (in daemon threads); a started server is left as it is."""
        if self._httpd is not None:
            return self
        self._httpd = _HTTPServer(self)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": _POLL_INTERVAL},
                                        name="scripted-server-accept", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 1.0) -> None:
        """Stop accepting, end every connection (stalled, pausing, idle keep-alive, blocked
        in a write) and join every thread, within about `timeout` seconds. Idempotent."""
        if self._httpd is None or self._stopped:
            return
        self._stopped = True
        deadline = time.monotonic() + timeout
        self._stop_event.set()
        self._httpd.shutdown()  # returns once serve_forever's loop has ended
        with self._lock:
            sockets = list(self._conns)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes recv() and send() in the handlers
            except OSError:
                pass
        self._httpd.server_close()
        assert self._thread is not None
        self._thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- addresses ----------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the ScriptedServer is not started: use it in a `with` block, or call start()")
        port: int = self._httpd.server_address[1]
        return port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``: the `base_url` of a client."""
        return f"http://127.0.0.1:{self.port}/v1"

    url = base_url  # the name the project's own tests use

    @property
    def chat_url(self) -> str:
        return f"{self.base_url}/chat/completions"

    # -- the script ---------------------------------------------------------------------

    def enqueue(self, *replies: Reply) -> None:
        """Add replies, given to chat completion requests in order."""
        with self._lock:
            self._queue.extend(replies)

    @property
    def pending(self) -> int:
        """How many queued replies have not been given yet."""
        with self._lock:
            return len(self._queue)

    def _route(self, request: RecordedRequest) -> Reply:
        route = request.route
        if request.method == "POST" and route.endswith("/chat/completions"):
            return self._next_reply(request)
        if request.method == "GET" and route.endswith("/models"):
            return json_reply({"object": "list", "data": [
                {"id": model, "object": "model", "created": 0, "owned_by": "scripted-server"}
                for model in self.models]})
        return error_json(404, f"no route for {request.method} {route}", "not_found")

    def _next_reply(self, request: RecordedRequest) -> Reply:
        handler = self.handler
        if handler is not None:
            try:
                reply = handler(request)
            except Exception as exc:  # a bug in the test's script: tell the client, keep it in `errors`
                trace = "".join(traceback.format_exception(exc))
                self._errors_append(trace)
                return text_reply(f"ScriptedServer handler raised:\n{trace}", status=500)
            if not isinstance(reply, Reply):
                message = f"ScriptedServer handler returned {reply!r}, not a Reply"
                self._errors_append(message)
                return text_reply(message, status=500)
            return reply
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        if self.default is not None:
            return self.default
        return text_reply(f"ScriptedServer: the script ran out of replies (request #{len(self.requests)}: "
                          f"{request.method} {request.path}); enqueue() more or set a default", status=500)

    # -- what happened ------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in order (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def errors(self) -> list[str]:
        """Tracebacks of exceptions raised on the server's side (a bug in a handler, say)."""
        with self._lock:
            return list(self._errors)

    @property
    def open_connections(self) -> int:
        """Connections accepted and not yet closed (by either side)."""
        with self._lock:
            return len(self._conns)

    @property
    def connections_accepted(self) -> int:
        """Connections accepted since the start."""
        with self._lock:
            return self._accepted

    @property
    def body_bytes_sent(self) -> int:
        """Bytes of response bodies (chunk framing included, status lines and headers not)
        the kernel has taken from the server since the start."""
        with self._lock:
            return self._body_bytes_sent

    @property
    def client_disconnects(self) -> int:
        """How often a client went away while the server wrote, paused or stalled."""
        with self._lock:
            return self._client_disconnects

    def wait_until_no_open_connections(self, timeout: float = 1.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self._conns, timeout)

    def wait_for_client_disconnect(self, n: int = 1, timeout: float = 1.0) -> bool:
        """True once `client_disconnects` reaches `n` (waiting at most `timeout` seconds)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._client_disconnects >= n, timeout)

    def wait_for_requests(self, n: int = 1, timeout: float = 1.0) -> bool:
        """True once `n` requests have been recorded (waiting at most `timeout` seconds)."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._requests) >= n, timeout)

    # -- bookkeeping, called from the server's threads ---------------------------------

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

    def _record(self, request: RecordedRequest) -> None:
        with self._cond:
            self._requests.append(request)
            self._cond.notify_all()

    def _errors_append(self, text: str) -> None:
        with self._lock:
            self._errors.append(text)

    def _register_thread(self, thread: threading.Thread) -> None:
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
