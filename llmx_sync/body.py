"""Reading a streamed response body as it arrives, for one reader thread.

A `BodyReader` hands the body over in pieces of whatever size has arrived (`read`),
lets the reader bound each wait (`set_timeout`), lets any other thread wake a reader
blocked in ``recv`` (`shutdown`), and gives the connection back to the pool when the
body was read to its end (`finish`). `open_body` picks one of two implementations:

- `SocketBodyReader`, the normal path: an ``http.client`` response over a socket with
  no content coding (the client asks for ``Accept-Encoding: identity``). It reads the
  connection's buffered reader with ``read1`` and decodes the chunked framing itself.
  urllib3's own readers return at most one HTTP chunk per call, and servers send one
  SSE event per chunk, so a reader thread would wake, parse and hand over once per
  event; this way one read takes all that has arrived (measured: 5.7 µs per event
  against 14.7 µs). It also orders `shutdown` and the return to the pool under one
  lock, so a socket can never be shut down after another thread took it from the pool.
  It reaches below urllib3's public API (``_original_response``, ``fp.raw._sock``),
  which is why the other path exists.
- `Urllib3BodyReader`, urllib3's public API (``read1``, ``shutdown``,
  ``release_conn``): compressed bodies, responses not backed by a socket (test
  doubles), and every body when ``LLMX_SYNC_PUBLIC_BODY_READER=1`` (CI runs the
  streaming tests once that way, so both paths stay correct).
"""

from __future__ import annotations

import http.client
import io
import os
import socket
import threading
from typing import Final, Protocol

import requests
import urllib3.exceptions

from .errors import StreamError

__all__ = ["READ_SIZE", "BodyReader", "SocketBodyReader", "Urllib3BodyReader", "open_body", "transport_error"]

# How much the reader asks the socket for at once: one read takes everything
# that has arrived, up to this.
READ_SIZE: Final = 1 << 14
_MAX_CHUNK_LINE: Final = 4096  # a chunk-size line (with extensions) longer than this is garbage
#: Set to 1 to read every body through urllib3's public API.
PUBLIC_READER_ENV: Final = "LLMX_SYNC_PUBLIC_BODY_READER"


def transport_error(reason: str) -> StreamError:
    """llmx's error for a body that broke while being read, in its wording (the
request-level error wrapped in a stream error)."""
    return StreamError(f"Transport error: Error while reading the server response: {reason}")


class BodyReader(Protocol):
    """The body of one streamed response, as the stream's reader thread uses it."""

    @property
    def complete(self) -> bool:
        """The whole body has been read."""

    @property
    def resumable(self) -> bool:
        """A `read` cut by its timeout may be called again: nothing was lost."""

    def read(self, size: int = 0) -> bytes:
        """The next bytes of the body (at most `size` off the wire when given), ``b""``
        at its end. Raises `TimeoutError` when the timeout set by `set_timeout` passes,
        and `StreamError` when the body breaks."""

    def set_timeout(self, seconds: float) -> None:
        """Bound the next `read` (called in the reader thread)."""

    def shutdown(self) -> None:
        """Wake a `read` blocked in another thread (it returns ``b""`` or raises) and
        make sure the connection is not reused. Safe from any thread, at any time."""

    def finish(self) -> None:
        """Release the response (in the reader thread, after the last `read`): its
        connection goes back to the pool when the body was read to its end, else it
        is closed."""


def open_body(response: requests.Response, *, read_size: int = READ_SIZE) -> BodyReader:
    """The reader for `response`: `SocketBodyReader` when it can be used, else
    `Urllib3BodyReader`."""
    if os.environ.get(PUBLIC_READER_ENV) != "1":
        fast = SocketBodyReader.of(response, read_size=read_size)
        if fast is not None:
            return fast
    return Urllib3BodyReader(response, read_size=read_size)


class _Dechunker:
    """Incremental decoder of HTTP/1.1 chunked framing (RFC 9112 §7.1)."""

    __slots__ = ("_left", "_line", "_trailers", "done")

    def __init__(self) -> None:
        self._left = 0  # bytes of chunk data still to come
        self._line = b""  # an unfinished size or trailer line
        self._trailers = False  # the last chunk was seen; lines up to a blank one follow
        self.done = False

    @property
    def in_trailers(self) -> bool:
        return self._trailers

    def feed(self, data: bytes) -> bytes:
        """The payload in `data`; raises ValueError for bytes that are not chunked framing."""
        if self._line:
            data = self._line + data
            self._line = b""
        out: list[bytes] = []
        pos, end = 0, len(data)
        while pos < end and not self.done:
            if self._left:
                stop = min(pos + self._left, end)
                out.append(data[pos:stop])
                self._left -= stop - pos
                pos = stop
                continue
            eol = data.find(b"\n", pos)
            if eol < 0:
                if end - pos > _MAX_CHUNK_LINE:
                    raise ValueError("chunk header line too long")
                self._line = data[pos:]
                break
            line = data[pos:eol]
            pos = eol + 1
            if line == b"\r" or not line:  # the CRLF that ends a chunk's data
                self.done = self._trailers
            elif not self._trailers:  # a size line; int() ignores the CR around it
                size = int(line, 16) if b";" not in line else int(line.split(b";", 1)[0], 16)
                if size < 0:
                    raise ValueError("negative chunk size")
                self._left = size
                self._trailers = size == 0
        return out[0] if len(out) == 1 else b"".join(out)


class SocketBodyReader:
    """`BodyReader` reading the connection's buffered reader directly (see the module)."""

    def __init__(self, response: requests.Response, original: http.client.HTTPResponse, fp: io.BufferedReader,
                 sock: socket.socket, *, read_size: int = READ_SIZE) -> None:
        self._response = response
        self._original = original
        self._fp = fp
        self._sock = sock
        self._read_size = read_size
        self._lock = threading.Lock()
        self._released = False  # finish() ran: the socket may belong to someone else now
        self._shut = False
        self._pid = os.getpid()  # a forked child shares the socket: it must never shut it down
        self._will_close = bool(original.will_close)
        self._dechunker = _Dechunker() if original.chunked else None
        self._remaining: int | None = original.length if self._dechunker is None else None
        self.complete = self._remaining == 0  # (at once: Content-Length: 0)
        self.resumable = isinstance(fp.raw, socket.SocketIO)

    @classmethod
    def of(cls, response: requests.Response, *, read_size: int = READ_SIZE) -> SocketBodyReader | None:
        """The fast reader for `response`, or None when it is not an ``http.client``
        response over a socket with an identity coding."""
        original = getattr(response.raw, "_original_response", None)
        fp = getattr(original, "fp", None)
        sock = getattr(getattr(fp, "raw", None), "_sock", None)
        coding = response.headers.get("content-encoding", "").strip().lower()
        if (isinstance(original, http.client.HTTPResponse) and isinstance(fp, io.BufferedReader)
                and isinstance(sock, socket.socket) and coding in ("", "identity")):
            return cls(response, original, fp, sock, read_size=read_size)
        return None

    def read(self, size: int = 0) -> bytes:
        if self.complete:
            return b""
        size = size or self._read_size
        while True:
            try:
                data = self._fp.read1(size)
            except TimeoutError:
                # Nothing was taken from the socket or the buffer (the dechunker keeps its
                # state), so the read may be tried again; the socket's file object
                # refuses that after any timeout unless told otherwise.
                self._fp.raw._timeout_occurred = False  # type: ignore[attr-defined]
                raise
            except (OSError, ValueError) as exc:
                raise transport_error(_os_reason(exc)) from exc
            if self._dechunker is not None:
                if not data:
                    if not self._dechunker.in_trailers:
                        raise transport_error("the connection closed before the end of the chunked body")
                    self.complete = True  # some servers leave out the blank line after the last chunk
                    return b""
                try:
                    data = self._dechunker.feed(data)
                except ValueError as exc:
                    raise transport_error(f"invalid chunked encoding ({exc})") from exc
                self.complete = self._dechunker.done
            elif self._remaining is not None:
                if not data:
                    raise transport_error(f"the connection closed with {self._remaining} bytes of the body unread")
                data = data[: self._remaining]
                self._remaining -= len(data)
                self.complete = self._remaining == 0
            elif not data:  # delimited by the connection's end
                self.complete = True
            if data or self.complete:
                return data

    def set_timeout(self, seconds: float) -> None:
        self._sock.settimeout(seconds)

    def shutdown(self) -> None:
        with self._lock:
            if self._released or self._shut or os.getpid() != self._pid:
                return
            self._shut = True
            try:
                # The base class's method: SSLSocket.shutdown would also drop the
                # TLS object under the reader's feet.
                socket.socket.shutdown(self._sock, socket.SHUT_RDWR)
            except OSError:
                pass

    def finish(self) -> None:
        with self._lock:
            self._released = True
            reuse = self.complete and not self._shut and not self._will_close
        if reuse:
            self._original.close()  # http.client's side: lets the connection send again
            self._response.raw.release_conn()
        self._response.close()


class Urllib3BodyReader:
    """`BodyReader` through urllib3's public API. Its `read` returns at most one HTTP
    chunk; the timeout of each read is the one given to `Transport.send`, narrowed by
    `set_timeout` when the connection exposes its socket."""

    def __init__(self, response: requests.Response, *, read_size: int = READ_SIZE) -> None:
        self._response = response
        self._read_size = read_size
        self._lock = threading.Lock()
        self._released = False  # finish() ran: the socket may belong to someone else now
        self._pid = os.getpid()  # a forked child shares the socket: it must never shut it down
        self.complete = False
        # http.client's readers may lose a partly read chunk-size line to a timeout.
        self.resumable = False

    def read(self, size: int = 0) -> bytes:
        if self.complete:
            return b""
        raw = self._response.raw
        try:
            read = raw.read1 if hasattr(raw, "read1") else raw.read
            data = read(size or self._read_size, decode_content=True)
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise TimeoutError(str(exc)) from exc
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise transport_error(str(exc) or type(exc).__name__) from exc
        self.complete = not data
        return bytes(data)

    def set_timeout(self, seconds: float) -> None:
        sock = getattr(getattr(self._response.raw, "connection", None), "sock", None)
        if isinstance(sock, socket.socket):
            sock.settimeout(seconds)

    def shutdown(self) -> None:
        shutdown = getattr(self._response.raw, "shutdown", None)
        with self._lock:
            if self._released or shutdown is None or os.getpid() != self._pid:
                return
            try:
                shutdown()
            except (OSError, RuntimeError, ValueError):  # no socket (any more)
                pass

    def finish(self) -> None:
        with self._lock:
            self._released = True
        self._response.close()


def _os_reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return str(error) or type(error).__name__
