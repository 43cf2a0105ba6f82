"""HTTP for the SDK: sending a request with retries for transient failures, until a 2xx
response whose body is then read by `body.py`.

`Transport.send` is the retry loop; the rules it applies are small pure functions
(`is_retryable_status`, `parse_retry_after`, `backoff`, `retry_delay`) so that each
can be tested alone.
"""

from __future__ import annotations

import contextlib
import email.utils
import heapq
import http.client
import itertools
import logging
import math
import os
import random
import re
import socket
import ssl
import threading
import time
import types
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from http.cookiejar import DefaultCookiePolicy
from typing import Any, Final, Protocol
from urllib.parse import parse_qsl, urlsplit

import requests
import requests.auth
import requests.sessions
import urllib3
import urllib3.connection
import urllib3.response
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.util.wait import wait_for_read

from .errors import (
    BadRequestError,
    ConnectionFailedError,
    DeadlineExceededError,
    UnexpectedStatusError,
    display_url,
    redact,
    retry_limit_error,
    status_error,
    status_text,
)
from .retry_hooks import retrying

__all__ = [
    "Deadline",
    "ResponseInfo",
    "Transport",
    "backoff",
    "display_url",
    "is_retryable_status",
    "parse_retry_after",
    "request_id",
    "retry_delay",
]

logger = logging.getLogger("llmx_sync")

INITIAL_DELAY_MS = 200
BACKOFF_FACTOR = 2.0
# An error body is read for its message; past this much it is cut and the
# connection closed rather than read to its end.
MAX_ERROR_BODY = 1 << 20

_REQUEST_ID_HEADERS = ("x-request-id", "request-id", "cf-ray")
_SECONDS = re.compile(r"\d+(?:\.\d+)?")


class Random(Protocol):
    def random(self) -> float: ...


# --- the retry rules (pure) --------------------------------------------------


def is_retryable_status(status: int) -> bool:
    """408, 409, 429 and 5xx are retried; every other non-2xx status is final. (`send`
    also raises at once a 5xx whose body refuses the request as malformed, see
    `errors.is_validation_error`: the same request would be refused again.)"""
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


@dataclass(frozen=True, slots=True)
class ResponseInfo:
    """What the server answered, apart from the body: a copy, not the live response."""

    status_code: int
    headers: Mapping[str, str]  # case-insensitive
    request_id: str | None
    url: str

    @classmethod
    def of(cls, response: requests.Response) -> ResponseInfo:
        """The response's status and headers; its URL with query values hidden (``***``)."""
        return cls(status_code=response.status_code, headers=CaseInsensitiveDict(response.headers),
                   request_id=request_id(response.headers), url=display_url(response.url))


def request_id(headers: Mapping[str, str]) -> str | None:
    """``x-request-id``, else ``request-id``, else ``cf-ray`` (case-insensitive mapping)."""
    for name in _REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


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


def _peer_closed(sock: socket.socket) -> bool:
    """Whether the server's close (its FIN, or a TLS close_notify alert before it) is
    waiting to be read on `sock`; never blocks, reads nothing. Anything else waiting (an
    early answer) is not a close."""
    try:
        # Polled first: a socket with a timeout would wait that long in recv, MSG_DONTWAIT or not.
        if not wait_for_read(sock, timeout=0.0):
            return False
        waiting = socket.socket.recv(sock, 1, socket.MSG_PEEK)
    except OSError:  # reset: closed too
        return True
    return not waiting or (isinstance(sock, ssl.SSLSocket) and waiting == _TLS_ALERT)


_TLS_ALERT: Final = b"\x15"  # the content type of a TLS alert record (close_notify)


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


# --- sending -----------------------------------------------------------------

#: Idle connections kept per host: enough for a web app's concurrency (a pool too small
#: makes urllib3 discard connections with a warning each time).
POOL_MAXSIZE: Final = 1024
# Entries of the environment settings' cache (one per URL and session settings) before it
# starts over: a client has one URL, so this is only reached by a process with many.
_SETTINGS_CACHE_SIZE: Final = 64


class _ThisThread(threading.local):
    """What the calling thread is doing: `sending` a request of the SDK's (in
    `Transport.send`), whether its last request went out on a socket that had carried a
    request before (`reused`), and whether that request failed before it was fully
    written (`unsent`: the server had closed the connection before its last bytes, or a
    write failed), both set by `_TrackedConnection`."""

    sending = False
    reused = False
    unsent = False
    watch: _Watch | None = None  # the deadline of the request being sent, if it has one


_this_thread = _ThisThread()


class _Watch:
    """One try of a request with a deadline, as the watchdog sees it: when it is due, and
    the connection it went out on (set by `_TrackedConnection`, cleared when the
    connection goes back to the pool)."""

    __slots__ = ("at", "connection", "armed", "fired")

    def __init__(self, at: float) -> None:
        self.at = at
        self.connection: _TrackedConnection | None = None
        self.armed = True
        self.fired = False


class _Watchdog:
    """Shuts down the socket of a request whose deadline passed while it was being sent
    or its response awaited. `requests`' read timeout bounds each ``recv``, so a server
    that trickles its headers (4 bytes/s) would never time out; the body reader keeps
    its own deadline after that.

    One daemon thread per process (``llmx_sync-deadline``), a heap of watches ordered by
    time; the thread starts with the first watch and ends when none has been armed for
    `_WATCHDOG_IDLE` seconds. A watch is disarmed when the try ends, and loses its
    connection when that goes back to the pool, both under the lock the firing takes:
    so a socket is never shut down once the request is over or the pool has it.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """A fresh state (also in a forked child: the parent's thread and lock are not its own)."""
        self._lock = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, _Watch]] = []
        self._order = itertools.count()
        self._armed = 0
        self._thread: threading.Thread | None = None

    def arm(self, at: float) -> _Watch:
        watch = _Watch(at)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="llmx_sync-deadline", daemon=True)
                self._thread.start()
            heap = self._heap
            if len(heap) > 2 * self._armed + 64:  # mostly disarmed watches: drop them
                heap[:] = [entry for entry in heap if entry[2].armed]
                heapq.heapify(heap)
            heapq.heappush(heap, (at, next(self._order), watch))
            self._armed += 1
            if heap[0][2] is watch:
                self._lock.notify()
        return watch

    def disarm(self, watch: _Watch | None) -> bool:
        """End the watch; whether it had fired (the socket was shut down)."""
        if watch is None:
            return False
        with self._lock:
            if watch.armed:
                watch.armed = False
                self._armed -= 1
                if not self._armed:
                    self._lock.notify()  # the thread may end
            return watch.fired

    def release(self, connection: _TrackedConnection) -> None:
        """`connection` goes back to the pool: no watch may shut it down from now on."""
        watch = connection.watch
        if watch is not None:
            with self._lock:
                if watch.connection is connection:
                    watch.connection = None
                connection.watch = None

    def _run(self) -> None:
        lock, heap = self._lock, self._heap
        with lock:
            while True:
                if not self._armed:  # nothing to watch: end unless a watch comes soon
                    heap.clear()
                    lock.wait(_WATCHDOG_IDLE)
                    if not self._armed:
                        self._thread = None
                        return
                    continue
                at, _, watch = heap[0]
                wait = at - time.monotonic()
                if wait > 0:
                    lock.wait(wait)
                    continue
                heapq.heappop(heap)
                if watch.armed:
                    watch.armed, watch.fired = False, True
                    self._armed -= 1
                    connection = watch.connection
                    sock = connection.sock if connection is not None else None
                    if sock is not None:
                        try:  # the base class's method, for TLS too (see body.SocketBodyReader.shutdown)
                            socket.socket.shutdown(sock, socket.SHUT_RDWR)
                        except OSError:
                            pass


# How long the watchdog thread waits for a new watch before it ends.
_WATCHDOG_IDLE: Final = 0.5
_watchdog = _Watchdog()


@contextlib.contextmanager
def _sending() -> Iterator[None]:
    _this_thread.sending = True
    try:
        yield
    finally:
        _this_thread.sending = False


class _HideQueryValues(logging.Filter):
    """urllib3 logs each request's target at DEBUG, query string and all (``"POST
    /v1/chat/completions?api-key=... HTTP/1.1" 200``): for the SDK's own requests (the
    thread is in `Transport.send`), the query's values become ``***``. Other requests
    of the process are left as they are."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _this_thread.sending and isinstance(record.args, tuple):
            record.args = tuple(display_url(arg) if isinstance(arg, str) and "?" in arg else arg
                                for arg in record.args)
        return True


logging.getLogger("urllib3.connectionpool").addFilter(_HideQueryValues())


def closes_after_answer(headers: Mapping[str, str]) -> bool:
    """Whether the server closes the connection right after this response without saying
    `Connection: close`: llama.cpp's `llama-server` after every streamed answer (its
    stream ends with the content provider returning false, which ends cpp-httplib's
    keep-alive loop). Reused, such a connection races the server's close."""
    return (headers.get("server", "").startswith("llama.cpp")
            and "text/event-stream" in headers.get("content-type", ""))


class _TrackedConnection(urllib3.connection.HTTPConnection):
    """A connection that counts the requests sent on its current socket, and on a reused
    socket tells whether a request failed before it was fully written (`_ThisThread`).
    `reusable` is False after a response whose server closes the connection anyway: the
    pool then closes it rather than keep it (`_HTTPPool`)."""

    requests_on_socket = 0
    reusable = True
    watch: _Watch | None = None

    def _watched(self) -> None:
        """The request being sent has a deadline: the watchdog may shut this socket down."""
        watch = _this_thread.watch
        if watch is not None:
            watch.connection, self.watch = self, watch

    def connect(self) -> None:
        self._watched()  # before: a TLS handshake that trickles is bounded too
        super().connect()
        self.requests_on_socket = 0

    def request(self, *args: Any, **kwargs: Any) -> None:
        self._watched()
        # No socket yet (a new connection, or one closed since): it connects now, fresh.
        _this_thread.reused = self.sock is not None and self.requests_on_socket > 0
        super().request(*args, **kwargs)
        self.requests_on_socket += 1  # after: a lazy connect() inside restarts the count

    def send(self, data: Any) -> None:
        """Each piece of the request (the headers, then the body). On a reused socket the
        server's close is looked for before each piece: found there, the server closed
        the connection before it could have the whole request."""
        if _this_thread.reused and self.sock is not None and _peer_closed(self.sock):
            _this_thread.unsent = True
            raise http.client.RemoteDisconnected("the server closed the connection before the request was sent")
        try:
            super().send(data)
        except OSError:
            _this_thread.unsent = _this_thread.reused
            raise

    def getresponse(self) -> urllib3.response.BaseHTTPResponse:  # type: ignore[override]
        response = super().getresponse()
        self.reusable = not closes_after_answer(response.headers)
        return response


class _TrackedHTTPSConnection(_TrackedConnection, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.HTTPConnectionPool):
    """A pool of `_TrackedConnection`, its queue of idle connections not pre-filled, that
    closes a connection coming back whose server will close it anyway
    (`closes_after_answer`), so that the next request opens a new one.

    urllib3 fills a new pool's queue with `maxsize` placeholders (None), so that a pool
    with ``block=True`` can count the connections it lent; 1024 of them took about 1.1 ms
    per new client. Our pools never block (a request finding no idle connection makes a
    new one), and to `_get_conn` a placeholder means exactly what an empty queue means:
    no idle connection. So the queue starts empty, with the same capacity: at most
    `maxsize` idle connections are kept, the ones beyond closed with urllib3's warning.
    """

    ConnectionCls = _TrackedConnection

    def __init__(self, host: str, port: int | None = None, **kwargs: Any) -> None:
        maxsize = kwargs.pop("maxsize", 1)
        block = kwargs.get("block", False)
        super().__init__(host, port, maxsize=maxsize if block else 0, **kwargs)
        if not block:
            assert self.pool is not None
            self.pool.maxsize = maxsize  # (read at each put: the queue made unbounded gets its bound)

    def _put_conn(self, conn: Any) -> None:
        if isinstance(conn, _TrackedConnection):
            _watchdog.release(conn)
            if not conn.reusable:
                conn.close()
        super()._put_conn(conn)


class _HTTPSPool(_HTTPPool, urllib3.HTTPSConnectionPool):
    ConnectionCls = _TrackedHTTPSConnection


class _Adapter(HTTPAdapter):
    """requests' adapter, its pools making connections that know whether they were reused."""

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


_transports: weakref.WeakSet[Transport] = weakref.WeakSet()


def _forget_connections_after_fork() -> None:
    """In a forked child, no pooled connection of the parent may carry a request: both
    processes would read answers from one socket (each getting parts of the other's).
    The pools are replaced without touching the old connections: closing them here
    could wait on a lock a parent thread held at the fork."""
    for transport in list(_transports):
        transport.reset_pools()
    _watchdog.reset()


os.register_at_fork(after_in_child=_forget_connections_after_fork)


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

    `session` brings the caller's TLS (``verify``, ``cert``), proxies and adapters;
    its ``verify`` and ``proxies`` win over ``REQUESTS_CA_BUNDLE`` and ``HTTPS_PROXY``
    (requests alone lets the environment win). The caller keeps it (`close` leaves it
    open). Redirects are never followed, so neither the prompt nor a credential goes to
    a host the caller did not name. After ``os.fork()`` the child starts with empty
    pools.
    """

    def __init__(self, session: requests.Session | None = None, *, pool_connections: int = 8,
                 pool_maxsize: int = POOL_MAXSIZE) -> None:
        self._owns_session = session is None
        if session is None:
            session = requests.Session()
            adapter = _Adapter(pool_connections=pool_connections, pool_maxsize=pool_maxsize, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        self._session = session
        _transports.add(self)

    @property
    def owns_session(self) -> bool:
        """Whether the session is this transport's own (not a caller's)."""
        return self._owns_session

    def reset_pools(self) -> None:
        """New, empty connection pools (the old connections are left alone)."""
        for adapter in self._session.adapters.values():
            if isinstance(adapter, HTTPAdapter):
                # What requests' own HTTPAdapter.__setstate__ does (unpickling makes new pools).
                settings = vars(adapter)
                adapter.proxy_manager = {}
                adapter.init_poolmanager(settings["_pool_connections"], settings["_pool_maxsize"],
                                         block=settings["_pool_block"])

    def close(self) -> None:
        """Close the pooled connections (of a session this transport made). Responses
        still being read keep theirs."""
        if self._owns_session:
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
        deadline: Deadline | None = None,
        hint: Callable[[UnexpectedStatusError], str | None] | None = None,
        log_headers: Mapping[str, str] | None = None,
        cancel: threading.Event | None = None,
        rng: Random = random,
    ) -> requests.Response:
        """POST `body` and return the 2xx response, its body not read yet (``stream=True``).

        Retries (at most ``max_retries + 1`` attempts) on a retryable status and on
        connection errors, waiting `retry_delay`; never waits longer than
        `max_retry_delay` (a server asking for more ends the retries), nor past
        `deadline`, which also bounds writing the request and waiting for the headers
        as a whole (`_Watchdog`). A request on a pooled connection the server had
        closed before the request was fully written is sent again once, at once and
        uncounted; any other connection closed without an answer is a counted retry.

        Raises `UnexpectedStatusError` (a subclass per status; `hint(error)` may add a
        hint) for a final status (a 5xx refusing the request as malformed is a
        `BadRequestError`, raised at once), the same classes that are also
        `RetryLimitReachedError` when retries were made and spent, `ConnectionFailedError`
        when the server cannot be reached (at once for a certificate it cannot
        verify), and `DeadlineExceededError`. Setting `cancel` (a closing client) ends
        a wait at once with `ConnectionFailedError`. Logs at DEBUG the origin, the
        header names with only the values in `log_headers`, and the body's size
        (urllib3's own DEBUG line for the request shows the query values as ``***``).
        """
        where = display_url(url)
        secrets = request_secrets(url, headers, log_headers or {})
        if logger.isEnabledFor(logging.DEBUG):
            shown = {name: (log_headers or {}).get(name, "***") for name in headers}
            logger.debug("POST %s headers=%s body=%d bytes", where, shown, len(body))
        # With a key of ours, nothing may replace its header: requests would put a ~/.netrc
        # entry for the host in its place, as Basic auth, without a word.
        auth = _AS_SENT if any(name.lower() == "authorization" for name in headers) else None
        attempt = 0
        resend_left = True
        while True:
            attempt += 1
            if cancel is not None and cancel.is_set():
                raise ConnectionFailedError(f"error sending request to {where}: the client was closed")
            connect, read = connect_timeout, read_timeout
            if deadline is not None:
                connect, read = deadline.bound(connect), deadline.bound(read)
            _this_thread.reused = _this_thread.unsent = False
            # Bounds the whole try, headers and an error's body included: requests' timeouts
            # bound each read only.
            watch = _this_thread.watch = _watchdog.arm(deadline.at) if deadline is not None else None
            failure: Exception | None = None
            try:
                with _sending():
                    response = self._post(url, body, headers, (connect, read), auth)
            except (requests.RequestException, urllib3.exceptions.LocationValueError) as exc:
                failure = exc
            finally:
                _this_thread.watch = None
            # Every error below is raised outside the `except` block: requests' errors quote
            # the URL, query values and all, and must not be in any error's context.
            if failure is not None:
                _watchdog.disarm(watch)
                if deadline is not None and deadline.passed():
                    raise deadline.error("while waiting for the server's answer")
                if isinstance(failure, (requests.exceptions.InvalidURL, urllib3.exceptions.LocationValueError)):
                    # (urllib3 raises its own for a host it cannot parse, e.g. an empty DNS label.)
                    # Only the class is named: their messages quote the URL, password and all.
                    raise ConnectionFailedError(
                        f"error sending request to {where}: the URL is not valid ({type(failure).__name__})")
                if not isinstance(failure, (requests.ConnectionError, requests.Timeout)):
                    # A bad header and the like: no retry can help.
                    raise ConnectionFailedError(f"error sending request to {where}: {type(failure).__name__}")
                certificate = certificate_problem(failure)
                if certificate is not None:
                    raise ConnectionFailedError(
                        f"error sending request to {where}: certificate verify failed ({certificate}); to trust "
                        "a private CA, set REQUESTS_CA_BUNDLE or SSL_CERT_FILE to its PEM file, or pass "
                        "Client(session=s) with s.verify = '/path/to/ca.pem'")
                if resend_left and _this_thread.reused and _this_thread.unsent:
                    # Nothing reached the server whole; the dead connection is gone from the
                    # pool, so the next try gets a live one.
                    resend_left = False
                    attempt -= 1
                    logger.debug("%s had closed the pooled connection before the request was written; "
                                 "sending again on a new one", where)
                    continue
                reason = f"error sending request to {where}: {describe_connection_error(failure)}"
                delay = backoff(attempt, rng)
                if attempt > max_retries or delay > max_retry_delay:
                    raise ConnectionFailedError(reason)
                _log_retry(attempt, max_retries, reason, delay)
                retrying(attempt, None, reason, delay)
                _sleep(delay, cancel, where, deadline)
                continue
            status = response.status_code
            if 200 <= status <= 299:
                if not _watchdog.disarm(watch):
                    return response  # the body reader keeps the deadline from here
                # Cut in its headers (http.client takes the end of the socket for their end).
                response.close()
                assert deadline is not None
                raise deadline.error("while waiting for the server's answer")
            try:
                error = _status_error(response, hint, secrets)
            finally:
                cut = _watchdog.disarm(watch)
            if cut:
                assert deadline is not None
                raise deadline.error("while the server's error response was read") from error
            if not is_retryable_status(status) or isinstance(error, BadRequestError):
                raise error  # (a 5xx that refuses the request as malformed is a BadRequestError)
            if attempt > max_retries:
                # "retry limit reached" only when retries were spent: with none allowed the
                # status's own error is the whole story.
                raise retry_limit_error(error, attempt) if attempt > 1 else error
            delay = retry_delay(attempt, response.headers, rng=rng)
            if delay > max_retry_delay:
                logger.info("not retrying: the server asks to wait %.3fs, more than max_retry_delay=%ss",
                            delay, max_retry_delay)
                raise retry_limit_error(error, attempt)
            _log_retry(attempt, max_retries, status_text(status), delay)
            retrying(attempt, status, status_text(status), delay)
            try:
                _sleep(delay, cancel, where, deadline)
            except DeadlineExceededError as exc:
                raise exc from error

    def _post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: tuple[float, float],
              auth: requests.auth.AuthBase | None) -> requests.Response:
        """One POST, its body not read (``stream=True``), redirects not followed, with the
        session's proxies and ``verify`` winning over the environment's.

        What ``Session.post`` does, but with the settings requests reads from the
        environment (proxies, ``no_proxy``, CA bundles) taken from `_request_settings`,
        which reads the environment again only once it has changed: requests scans all of
        it twice per request (about 0.2 ms). A session whose ``post``, ``request`` or
        ``merge_environment_settings`` is not requests' own (an OAuth session adding its
        token, a caching session, an instrumentation's patch) is used through ``post``,
        as it expects."""
        session = self._session
        kind = type(session)
        if not all(map(_requests_own, (kind.post, kind.request, kind.merge_environment_settings))):
            # The session's proxies passed again: given by the session only, the
            # environment's (HTTPS_PROXY...) would win over them (psf/requests#2018).
            return session.post(url, data=body, headers=headers, stream=True, timeout=timeout,
                                allow_redirects=False, verify=_verify_setting(session),
                                proxies=dict(session.proxies), auth=auth)
        prepared = session.prepare_request(requests.Request("POST", url, headers=headers, data=body, auth=auth))
        assert prepared.url is not None
        return session.send(prepared, timeout=timeout, allow_redirects=False,
                            **_request_settings(session, prepared.url))


def _requests_own(method: object) -> bool:
    """Whether `method` is the function requests' `Session` defines: not a subclass's
    override, nor a wrapper patched in its place (its code is elsewhere, or it is no
    plain function)."""
    return (type(method) is types.FunctionType
            and os.path.normcase(method.__code__.co_filename) == os.path.normcase(requests.sessions.__file__))


_settings_lock = threading.Lock()
# os.environ as it was when the cached settings were read from it, and those settings.
_settings_environment: dict[Any, Any] | None = None
_settings_cache: dict[tuple[Any, ...], dict[str, Any]] = {}


def _request_settings(session: requests.Session, url: str) -> dict[str, Any]:
    """What ``session.request`` would pass to ``send`` for a POST to `url` (``stream``,
    ``verify``, ``proxies``, ``cert``), with the session's own ``verify`` and proxies
    winning over the environment's (see `_verify_setting`).

    The answer depends on the URL, those session settings and the environment, and is
    kept until one of them changes: each call compares ``os.environ`` with the copy the
    cache was made from (a dict comparison in C, about a microsecond), so a
    ``HTTPS_PROXY`` set, changed or removed later counts from the next request on.
    Without that mapping to compare (a Python whose ``os.environ`` is made otherwise),
    nothing is cached."""
    global _settings_environment
    environment = getattr(os.environ, "_data", None)
    try:
        key = (url, session.trust_env, session.verify, session.cert, frozenset(session.proxies.items()))
    except TypeError:  # a setting that cannot be a key (a list as cert, say): not cached
        environment = None
    if not isinstance(environment, dict):
        return _merged_settings(session, url)
    with _settings_lock:
        if environment != _settings_environment:
            _settings_environment = dict(environment)
            _settings_cache.clear()
        settings = _settings_cache.get(key)
    if settings is None:
        settings = _merged_settings(session, url)
        with _settings_lock:
            if len(_settings_cache) >= _SETTINGS_CACHE_SIZE:
                _settings_cache.clear()
            if environment == _settings_environment:  # not changed meanwhile
                _settings_cache[key] = settings
    # A copy: requests may change what it is given, and the cache is shared.
    return {**settings, "proxies": dict(settings["proxies"])}


def _merged_settings(session: requests.Session, url: str) -> dict[str, Any]:
    # The session's proxies passed again: given by the session only, the environment's
    # (HTTPS_PROXY...) would win over them (psf/requests#2018).
    return dict(session.merge_environment_settings(url, dict(session.proxies), True, _verify_setting(session), None))


class _AsSent(requests.auth.AuthBase):
    """requests' `auth` that leaves the request as it is (an Authorization header given
    stays the one sent)."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


_AS_SENT: Final = _AsSent()


class Deadline:
    """The end of a request's total time (`RequestOptions.timeout`), on the monotonic clock."""

    __slots__ = ("timeout", "at")

    def __init__(self, timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self.at = clock() + timeout

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def passed(self) -> bool:
        return self.remaining() <= 0

    def error(self, what: str) -> DeadlineExceededError:
        return DeadlineExceededError(self.timeout, what)

    def bound(self, seconds: float) -> float:
        """`seconds`, cut to the time left; raises `DeadlineExceededError` when none is
        (it is called as a request is about to be sent)."""
        remaining = self.remaining()
        if remaining <= 0:
            raise self.error("before the request was sent")
        return min(seconds, remaining)


def _verify_setting(session: requests.Session) -> str | bool | None:
    """The ``verify`` of each request: the session's own when it has one (a CA bundle,
    or False), which requests would otherwise let ``REQUESTS_CA_BUNDLE`` replace
    (psf/requests#3829); else ``SSL_CERT_FILE`` (what OpenSSL and Python's `ssl` read)
    when neither ``REQUESTS_CA_BUNDLE`` nor ``CURL_CA_BUNDLE`` (what requests reads) is
    set. None leaves it to requests."""
    if session.verify is not True:
        return session.verify
    if not session.trust_env:
        return None
    if os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE"):
        return None
    return os.environ.get("SSL_CERT_FILE") or None


def certificate_problem(error: BaseException) -> str | None:
    """The verification failure's reason when `error` is a TLS certificate that could
    not be verified (retrying cannot help), else None."""
    for cause in _error_chain(error):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause.verify_message or str(cause)
    return None


def request_secrets(url: str, headers: Mapping[str, str], shown: Mapping[str, str]) -> set[str]:
    """What must not come back in an error's text: every header value that is not one of
    the `shown` (the SDK's own), the token of an ``Authorization`` value, and the URL's
    query values and password."""
    own = {name.lower() for name in shown}
    values = {value for name, value in headers.items() if name.lower() not in own}
    tokens = {value.split(" ", 1)[1] for value in values if " " in value}  # Bearer <key>
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # the request cannot have gone out
        return values | tokens
    query = {value for _, value in parse_qsl(parts.query, keep_blank_values=True)}
    return values | tokens | query | ({password} if password else set())


def _status_error(response: requests.Response, hint: Callable[[UnexpectedStatusError], str | None] | None,
                  secrets: Iterable[str] = ()) -> UnexpectedStatusError:
    """The error for a non-2xx response, with its body text (`secrets` in it replaced by
    ``***``) and a hint; the response is closed (its connection back in the pool when the
    body was read to the end)."""
    try:
        data = response.raw.read(MAX_ERROR_BODY, decode_content=True)
    except Exception:  # as llmx's `text().unwrap_or_default()`: the status is what matters
        data = b""
    finally:
        response.close()
    status, headers = response.status_code, CaseInsensitiveDict(response.headers)
    text = redact(data.decode("utf-8", errors="replace"), secrets)
    error = status_error(status, text, request_id(headers), headers=headers)
    extra = redirect_hint(status, headers.get("location")) if 300 <= status <= 399 else None
    extra = extra or (hint(error) if hint is not None else None)
    return error if extra is None else status_error(status, text, error.request_id, headers=headers, hint=extra)


def redirect_hint(status: int, location: str | None) -> str:
    """Why a 3xx fails, and what to do: redirects are not followed (the prompt and the
    credentials would go to another host; a 301/302 would even turn the POST into a GET)."""
    target = f" to {display_url(location)}" if location else ""
    return (f"The server redirects{target}; llmx_sync does not follow redirects, so that the prompt and "
            "credentials never go to another host: set base_url to the address the server redirects to")


def _log_retry(attempt: int, max_retries: int, reason: str, delay: float) -> None:
    logger.info("attempt %d of %d failed (%s); retrying in %.3fs", attempt, max_retries + 1, reason, delay)


def _sleep(delay: float, cancel: threading.Event | None, where: str, deadline: Deadline | None) -> None:
    """Wait `delay` seconds before a retry. A wait that would end past the deadline is
    not started (`DeadlineExceededError` at once); setting `cancel` ends it."""
    if deadline is not None and deadline.remaining() <= delay:
        raise deadline.error(f"before the next try (it was due in {delay:.3g} s)")
    if cancel is None:
        time.sleep(delay)
    elif cancel.wait(delay):
        raise ConnectionFailedError(f"error sending request to {where}: the client was closed")
