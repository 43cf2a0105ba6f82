"""HTTP for the SDK: sending a request with retries for transient failures, and reading
the body of the 2xx response as it arrives.

`Transport.send` is the retry loop; the rules it applies are small pure functions
(`is_retryable_status`, `parse_retry_after`, `backoff`, `retry_delay`) so that each
can be tested alone. `ResponseBody` hands the body to the stream's reader thread in
pieces of whatever size is available, and lets another thread wake that reader up.
"""

from __future__ import annotations

import email.utils
import http.client
import io
import logging
import math
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from http.cookiejar import DefaultCookiePolicy
from typing import Protocol
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict

from .errors import (
    ConnectionFailedError,
    RetryLimitReachedError,
    StreamError,
    UnexpectedStatusError,
    status_error,
    status_text,
)

__all__ = [
    "ResponseBody",
    "Transport",
    "backoff",
    "is_retryable_status",
    "parse_retry_after",
    "redact_headers",
    "request_id",
    "retry_delay",
    "transport_error",
]

logger = logging.getLogger("llmx_sync")

INITIAL_DELAY_MS = 200
BACKOFF_FACTOR = 2.0
# An error body is read for its message; past this much it is cut and the
# connection closed rather than read to its end.
MAX_ERROR_BODY = 1 << 20
# How much the reader asks the socket for at once: one read takes everything
# that has arrived, up to this.
READ_SIZE = 1 << 14
_MAX_CHUNK_LINE = 4096  # a chunk-size line (with extensions) longer than this is garbage

_REQUEST_ID_HEADERS = ("x-request-id", "request-id", "cf-ray")
_SECRET_HEADER = re.compile(r"auth|key|token|secret|cookie|passw|signature|credential|session", re.IGNORECASE)
_SECONDS = re.compile(r"\d+(?:\.\d+)?")


class Random(Protocol):
    def random(self) -> float: ...


# --- the retry rules (pure) --------------------------------------------------


def is_retryable_status(status: int) -> bool:
    """408, 409, 429 and 5xx are retried; every other non-2xx status is final."""
    return status in (408, 409, 429) or 500 <= status <= 599


def backoff(attempt: int, rng: Random = random) -> float:
    """llmx's backoff in seconds: ``floor(floor(200 * 2**(attempt-1)) * U[0.9, 1.1))`` ms
    (attempt 0 counts as 1)."""
    base_ms = math.floor(INITIAL_DELAY_MS * BACKOFF_FACTOR ** max(attempt - 1, 0))
    return math.floor(base_ms * (0.9 + 0.2 * rng.random())) / 1000.0


def parse_retry_after(headers: Mapping[str, str], *, now: Callable[[], float] = time.time) -> float | None:
    """The delay in seconds a response asks for, or None when it asks for none usable.

    ``retry-after-ms`` wins over ``Retry-After``; ``Retry-After`` is whole or decimal
    seconds, or an HTTP date. Negative, unparsable or past values give None, and the
    caller falls back to the backoff.
    """
    headers = headers if isinstance(headers, CaseInsensitiveDict) else CaseInsensitiveDict(headers)
    millis = headers.get("retry-after-ms")
    if millis is not None:
        value = millis.strip()
        if _SECONDS.fullmatch(value):
            return float(value) / 1000.0
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    if _SECONDS.fullmatch(value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    delay = when.timestamp() - now()
    return delay if delay >= 0 else None


def retry_delay(
    attempt: int,
    headers: Mapping[str, str],
    *,
    now: Callable[[], float] = time.time,
    rng: Random = random,
) -> float:
    """Seconds to wait before retrying after failed attempt number `attempt` (1-based):
    what the server asks for, else the backoff."""
    asked = parse_retry_after(headers, now=now)
    return backoff(attempt, rng) if asked is None else asked


def request_id(headers: Mapping[str, str]) -> str | None:
    """``x-request-id``, else ``request-id``, else ``cf-ray`` (case-insensitive mapping)."""
    for name in _REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers with the values of credentials (Authorization, API keys, tokens,
    cookies ...) replaced by ``***``: what may be logged."""
    return {name: "***" if _SECRET_HEADER.search(name) else value for name, value in headers.items()}


def _origin(url: str) -> str:
    """scheme://host[:port] of `url`: its path and query may hold secrets
    (``query_params`` can carry keys), so errors and logs name only the origin."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    except ValueError:  # e.g. a bad port or IPv6 literal; requests will say so
        return "a malformed URL"


def _error_chain(error: BaseException) -> list[BaseException]:
    """`error` and what it wraps (urllib3 reasons, args, causes), outermost first."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        reason = getattr(current, "reason", None)  # urllib3's MaxRetryError
        nested = [arg for arg in current.args if isinstance(arg, BaseException)]
        if isinstance(reason, BaseException):
            current = reason
        elif nested:
            current = nested[-1]
        else:
            current = current.__cause__ or current.__context__
    return seen


def closed_without_response(error: BaseException) -> bool:
    """The server closed the connection before answering: most often a pooled
    keep-alive connection the server had already dropped (llama.cpp's server does
    this after every streamed answer without saying `Connection: close`)."""
    return any(isinstance(e, http.client.RemoteDisconnected) for e in _error_chain(error))


def describe_connection_error(error: BaseException) -> str:
    """A short reason for a failed attempt, without URLs or object reprs."""
    if isinstance(error, requests.ConnectTimeout):
        return "connect timed out"
    if isinstance(error, requests.ReadTimeout):
        return "timed out waiting for the response"
    seen = _error_chain(error)
    for cause in reversed(seen):
        if isinstance(cause, http.client.RemoteDisconnected):
            return "the server closed the connection without sending a response"
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
    return str(seen[-1]) or type(seen[-1]).__name__


def transport_error(reason: str) -> StreamError:
    """llmx's error for a body that broke while being read, in its wording (the
request-level error wrapped in a stream error)."""
    return StreamError(f"Transport error: Error while reading the server response: {reason}")


# --- sending -----------------------------------------------------------------


class Transport:
    """The HTTP connection pool of a `Client`, with its retry loop (before the body starts only).

    One instance is used by all threads of a process. That is safe because the
    session is used for nothing but ``post``: every header, the body and the timeouts
    go with the call and no session attribute changes after ``__init__``. The
    connection pools underneath are urllib3's, which are thread-safe. Cookies, the one
    piece of state a response could change, are refused, so that nothing one thread's
    response sets rides along on another thread's request. (The warnings about sharing
    a ``requests.Session``, psf/requests#2766 and #1871, are about changing session
    state and about pool eviction under many hosts; ``pool_connections`` covers the
    few hosts a client talks to.)
    """

    def __init__(self, *, pool_connections: int = 8, pool_maxsize: int = 64) -> None:
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=pool_connections, pool_maxsize=pool_maxsize, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        self._session = session

    def close(self) -> None:
        """Close the pooled connections. Responses still being read keep theirs."""
        self._session.close()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def send(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes,
        max_retries: int,
        max_retry_delay: float,
        connect_timeout: float,
        read_timeout: float,
        cancel: threading.Event | None = None,
        rng: Random = random,
    ) -> requests.Response:
        """POST `body` and return the 2xx response, its body not read yet (``stream=True``).

        Retries (at most ``max_retries + 1`` attempts) on a retryable status and on
        connection errors, waiting `retry_delay`; never waits longer than
        `max_retry_delay` (a server asking for more ends the retries). Raises
        `UnexpectedStatusError` (a subclass per status) for a final status,
        `RetryLimitReachedError` from the last status error when the retries are used up,
        and `ConnectionFailedError` when the server cannot be reached. Setting `cancel`
        (a closing client) ends a wait at once with `ConnectionFailedError`.
        """
        origin = _origin(url)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("POST %s headers=%s body=%d bytes", origin, redact_headers(headers), len(body))
        attempt = 0
        stale_retry_left = True
        while True:
            attempt += 1
            if cancel is not None and cancel.is_set():
                raise ConnectionFailedError(f"error sending request to {origin}: the client was closed")
            try:
                response = self._session.post(
                    url, data=body, headers=headers, stream=True, timeout=(connect_timeout, read_timeout)
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                if stale_retry_left and closed_without_response(exc):
                    # Once per request, at once and not counted: the dead connection
                    # is gone from the pool, so the next try gets a live one.
                    stale_retry_left = False
                    attempt -= 1
                    logger.debug("%s closed the connection without answering; sending again", origin)
                    continue
                reason = f"error sending request to {origin}: {describe_connection_error(exc)}"
                delay = backoff(attempt, rng)
                if attempt > max_retries or delay > max_retry_delay:
                    raise ConnectionFailedError(reason) from exc
                _log_retry(attempt, max_retries, reason, delay)
                _sleep(delay, cancel, origin)
                continue
            except requests.RequestException as exc:  # a malformed URL and the like: no retry can help
                # Only the class: the message would quote the URL, query parameters and all.
                raise ConnectionFailedError(f"error sending request to {origin}: {type(exc).__name__}") from exc
            status = response.status_code
            if 200 <= status <= 299:
                return response
            error = _status_error(response)
            if not is_retryable_status(status):
                raise error
            if attempt > max_retries:
                raise RetryLimitReachedError(status, error.request_id) from error
            delay = retry_delay(attempt, response.headers, rng=rng)
            if delay > max_retry_delay:
                logger.info("not retrying: the server asks to wait %.3fs, more than max_retry_delay=%ss",
                            delay, max_retry_delay)
                raise RetryLimitReachedError(status, error.request_id) from error
            _log_retry(attempt, max_retries, status_text(status), delay)
            _sleep(delay, cancel, origin)


def _status_error(response: requests.Response) -> UnexpectedStatusError:
    """The error for a non-2xx response, with its body text; the response is closed
    (its connection back in the pool when the body was read to the end)."""
    try:
        data = response.raw.read(MAX_ERROR_BODY, decode_content=True)
    except Exception:  # as llmx's `text().unwrap_or_default()`: the status is what matters
        data = b""
    finally:
        response.close()
    return status_error(response.status_code, data.decode("utf-8", errors="replace"), request_id(response.headers))


def _log_retry(attempt: int, max_retries: int, reason: str, delay: float) -> None:
    logger.info("attempt %d of %d failed (%s); retrying in %.3fs", attempt, max_retries + 1, reason, delay)


def _sleep(delay: float, cancel: threading.Event | None, origin: str) -> None:
    if cancel is None:
        time.sleep(delay)
    elif cancel.wait(delay):
        raise ConnectionFailedError(f"error sending request to {origin}: the client was closed")


# --- reading the body --------------------------------------------------------


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


class ResponseBody:
    """The body of a streamed response, for one reader thread.

    `read` returns the bytes that have arrived (waiting for at least one), and ``b""``
    once the body has ended; `finish` then gives the connection back to the pool. Any
    thread may call `shutdown` to wake a `read` blocked in ``recv``.

    On the normal path (an ``http.client`` response over a socket, no content coding:
    the client asks for ``Accept-Encoding: identity``) the body is read from the
    connection's buffered reader with ``read1`` and the chunked framing is decoded
    here. urllib3's own readers return at most one HTTP chunk per call, and servers
    send one SSE event per chunk, so a reader thread would wake, parse and hand over
    once per event; this way one read takes all that has arrived. It also lets
    `shutdown` and the return to the pool be ordered under one lock, so a socket can
    never be shut down after another thread took it from the pool. Other responses
    (compressed, or not backed by a socket, like test doubles) are read through
    urllib3's ``read1``.
    """

    def __init__(self, response: requests.Response, *, read_size: int = READ_SIZE) -> None:
        self._response = response
        self._read_size = read_size
        self._lock = threading.Lock()
        self._released = False  # finish() ran: the socket may belong to someone else now
        self._shut = False
        raw = response.raw
        original = getattr(raw, "_original_response", None)
        fp = getattr(original, "fp", None)
        sock = getattr(getattr(fp, "raw", None), "_sock", None)
        coding = response.headers.get("content-encoding", "").strip().lower()
        self._direct = (
            isinstance(original, http.client.HTTPResponse)
            and isinstance(fp, io.BufferedReader)
            and isinstance(sock, socket.socket)
            and coding in ("", "identity")
        )
        self._original: http.client.HTTPResponse | None = original if self._direct else None
        self._fp: io.BufferedReader | None = fp if self._direct else None
        self._sock: socket.socket | None = sock if self._direct else None
        self._will_close = bool(getattr(original, "will_close", True))
        self._dechunker = _Dechunker() if self._direct and getattr(original, "chunked", False) else None
        length = getattr(original, "length", None)
        self._remaining: int | None = length if self._direct and self._dechunker is None else None
        self.complete = self._remaining == 0  # the whole body has been read (at once: Content-Length: 0)

    def read(self) -> bytes:
        """The next bytes of the body, ``b""`` at its end. Raises `TimeoutError` when
        the timeout set by `set_timeout` passes, and `StreamError` (llmx's
        transport error) when the body breaks."""
        if self.complete:
            return b""
        if not self._direct:
            return self._read_urllib3()
        assert self._fp is not None
        while True:
            try:
                data = self._fp.read1(self._read_size)
            except TimeoutError:
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

    def _read_urllib3(self) -> bytes:
        raw = self._response.raw
        try:
            read = raw.read1 if hasattr(raw, "read1") else raw.read
            data = read(self._read_size, decode_content=True)
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise TimeoutError(str(exc)) from exc
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise transport_error(str(exc) or type(exc).__name__) from exc
        self.complete = not data
        return bytes(data)

    def set_timeout(self, seconds: float) -> None:
        """Bound the next `read` (in the reader thread). Without a socket of our own
        the timeout given to `Transport.send` stays in force."""
        if self._sock is not None:
            self._sock.settimeout(seconds)

    def shutdown(self) -> None:
        """Wake a `read` blocked in another thread (it returns ``b""`` or raises) and
        make sure the connection is not reused. Safe from any thread, at any time."""
        with self._lock:
            if self._released or self._shut:
                return
            self._shut = True
            if self._sock is not None:
                try:
                    # The base class's method: SSLSocket.shutdown would also drop the
                    # TLS object under the reader's feet.
                    socket.socket.shutdown(self._sock, socket.SHUT_RDWR)
                except OSError:
                    pass
                return
        shutdown = getattr(self._response.raw, "shutdown", None)
        if shutdown is not None:
            try:
                shutdown()
            except (OSError, RuntimeError, ValueError):  # already released, or no socket
                pass

    def finish(self) -> None:
        """Release the response (in the reader thread, after the last `read`): its
        connection goes back to the pool when the body was read to its end, else it
        is closed."""
        with self._lock:
            self._released = True
            reuse = self._direct and self.complete and not self._shut and not self._will_close
        if reuse:
            assert self._original is not None
            self._original.close()  # http.client's side: lets the connection send again
            self._response.raw.release_conn()
        self._response.close()


def _os_reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return str(error) or type(error).__name__
