"""The events of one answer: reading the body, a bounded queue, and an iterator.

`EventStream` is the iterator the caller reads (`response.ResponseStream` adds the
views: aggregate, collect, text_stream, snapshot).

The body (a `body.BodyReader`) is turned into events by the wire's parser (a
`wire.WireParser`), one batch per read (an operation per event would cost more than
parsing it). Who reads it: the thread that iterates the stream reads the first batch,
on its first `next()`, so that an open stream nobody reads yet costs no thread and its
first events are handed over at once; a daemon reader thread, started when a second
batch is needed (or at once for `next_event(timeout)`, whose wait may end without an
event), reads the rest ahead of the consumer into a bounded queue. A body that the first
read had whole (a short answer) never needs the thread.
docs/design.md ("Which thread reads") gives the rule and its reasons.

The queue counts each batch as the bytes of body that produced its events (an 8 MB
event counts 8 MB, whichever read completed it), and the reader thread reads only while
fewer than `max_buffered_bytes` are queued; then the socket's buffers fill and TCP holds
the server back. So a paused stream holds at most `max_buffered_bytes` plus one event
(and the socket buffers), whatever the event sizes; until its first batch it holds one
read.

Time: each read waits at most `idle_timeout` since the last bytes arrived or the read
began (SSE keep-alive comments count: a server that pings through a long silent phase
is alive), and never past the request's `deadline` (`DeadlineExceededError`). In the
main thread a read waits in slices, so that a Ctrl-C is seen.

Closing is the part that needs care. `close()`, leaving a ``with`` block, the
stream being garbage collected (after a ``break``), and a ``KeyboardInterrupt`` while
waiting all stop the reading at once, whatever it is doing: blocked in ``recv`` it is
woken by shutting the socket down (`BodyReader.shutdown`), blocked on a full queue
by emptying the queue. The reader holds no reference to the `ResponseStream`, so an
abandoned stream is collected and its finalizer does the stopping.
"""

from __future__ import annotations

import itertools
import math
import os
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Final, Protocol, Union

from .body import BodyReader
from .errors import InvalidInputError, LlmxError, StreamError, StreamIdleTimeoutError
from .events import Event
from .transport import Deadline, ResponseInfo

if TYPE_CHECKING:  # the protocol only: importing wire at run time would pull in every wire
    from .wire import WireParser

__all__ = ["CLOSED_MESSAGE", "DEFAULT_BUFFERED_BYTES", "EventStream", "StreamLike", "check_stream_like"]

#: What a stream closed before its answer was complete says (`StreamError`).
CLOSED_MESSAGE: Final = "the stream was closed before the answer was complete"

#: How much of the body a stream holds when its consumer does not keep up.
DEFAULT_BUFFERED_BYTES: Final = 1 << 20
# Every wait is cut into slices this long, so that a stop flag or a Ctrl-C is seen
# within one slice even where nothing else wakes the waiter.
_WAIT_SLICE: Final = 0.1
# What is read after the turn completed, so the connection can go back to the pool
# (normally just the last chunk's framing): at most this much, for at most this long.
_DRAIN_BYTES: Final = 64 * 1024
_DRAIN_SECONDS: Final = 1.0
# The stream's first read is small: the first events are handed over without waiting
# for a burst of the ones after them to be parsed (time to the first event).
_FIRST_READ: Final = 2048
# How long close() waits for the reader thread (which stops within a read or a wait slice).
_JOIN_TIMEOUT: Final = 1.0

_thread_numbers = itertools.count(1)
_FORKED_MESSAGE: Final = "the stream was opened in another process (before a fork); open a new one in this process"


class _End:
    """Queued after the last batch of a stream that completed."""


_END: Final = _End()
_Item = Union[list[Event], _End, BaseException]


class _Buffer:
    """The queue between the reader and the iterator, bounded in bytes of body.

    Each item is queued with its size: a batch's is the number of body bytes fed to the
    parser since the previous batch (what produced its events, however many reads that
    took), the end marker's or an error's 0. `put` never waits; the reader calls
    `wait_for_room` before each read instead, so at most `limit` bytes plus the events of
    one read are queued. One lock and one condition serve both sides: the iterator waits
    only on an empty queue and the reader only on a full one, never both at once.
    """

    __slots__ = ("_items", "_bytes", "_limit", "_changed")

    def __init__(self, limit: int) -> None:
        self._items: deque[tuple[_Item, int]] = deque()
        self._bytes = 0
        self._limit = limit
        self._changed = threading.Condition(threading.Lock())

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def full(self) -> bool:
        return self._bytes >= self._limit

    def empty(self) -> bool:
        return not self._items

    def put(self, item: _Item, size: int = 0) -> None:
        with self._changed:
            self._items.append((item, size))
            self._bytes += size
            self._changed.notify()

    def wait_for_room(self, timeout: float) -> bool:
        """Whether there is room, after waiting at most `timeout` for the iterator to take some."""
        with self._changed:
            if self._bytes >= self._limit:
                self._changed.wait(timeout)
            return self._bytes < self._limit

    def get(self, timeout: float) -> _Item:
        """The next item, waiting at most `timeout`; `queue.Empty` when none came."""
        with self._changed:
            if not self._items:
                self._changed.wait(timeout)
                if not self._items:
                    raise queue.Empty
            item, size = self._items.popleft()
            if size:
                self._bytes -= size
                self._changed.notify()
            return item

    def clear(self) -> None:
        """Drop what is queued (nobody will read it) and wake a reader waiting for room."""
        with self._changed:
            self._items.clear()
            self._bytes = 0
            self._changed.notify_all()


class _Reader:
    """The reading side: body -> parser -> events, in the caller's thread or in a thread
    of its own (see the module).

    It knows the queue and the body, never the `ResponseStream`, so that an abandoned
    stream can be collected while its thread runs. One thread at a time reads the body:
    the caller's (`read_here`) until `start` hands the body to the reader thread, for
    good. `stop` may come from any thread at any time; the lock orders it with a read in
    the caller's thread, so that the body is finished exactly once, by the thread that
    holds it (or by `stop` when nobody does).
    """

    def __init__(self, body: BodyReader, parser: WireParser, events: _Buffer,
                 idle_timeout: float, deadline: Deadline | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._body = body
        self._parser = parser
        self._queue = events
        self._idle_timeout = idle_timeout
        self._deadline = deadline
        self._clock = clock
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._busy = False  # the caller's thread is reading
        self._released = False  # body.finish() ran (or another process owns the body)
        self._outcome: _End | BaseException | None = None  # the turn is over: what ends the stream
        self._draining = False  # the turn is over; the body is read only to reuse the connection
        self._pid = os.getpid()  # a forked child never reads or releases its parent's body
        self.thread: threading.Thread | None = None
        self._read_size = _FIRST_READ  # then the body's own

    def stop(self) -> None:
        """Make the reading end soon and release its connection. Any thread; never blocks."""
        with self._lock:
            self._stopping.set()
            idle = self.thread is None and not self._busy  # nobody holds the body: release it here
        if not self._draining:  # a drain ends by itself, and may still save the connection
            self._body.shutdown()
        self._queue.clear()  # wakes a wait for room; what was queued is not wanted any more
        if idle:
            self._release()

    def forked(self) -> bool:
        """Whether this is a forked child of the process that opened the stream."""
        return os.getpid() != self._pid

    def _release(self) -> None:
        """`body.finish()`, once, in the process that opened the body."""
        with self._lock:
            if self._released:
                return
            self._released = True
        if os.getpid() == self._pid:
            self._body.finish()

    # -- in the caller's thread -----------------------------------------------------

    def read_here(self) -> _Item | None:
        """The next batch, or what ends the stream, read in the calling thread; None once
        stopped. An exception of the reading (a bug) is returned like a stream error;
        a `KeyboardInterrupt` propagates (the caller closes the stream)."""
        if self.forked():
            return StreamError(_FORKED_MESSAGE)
        with self._lock:
            if self._stopping.is_set():
                return None
            self._busy = True
        # In the main thread the wait is cut into slices, between which Python sees a
        # Ctrl-C (a signal may land in another thread and leave recv blocked, and
        # `_thread.interrupt_main` sends none). Elsewhere `stop` wakes the read.
        wait_slice = _WAIT_SLICE if threading.current_thread() is threading.main_thread() else math.inf
        item: _Item | None = None
        try:
            item = self._next_item(wait_slice)[0]
        except Exception as exc:  # a bug, not a stream error: raised like one
            item = self._outcome = exc
        finally:
            with self._lock:
                self._busy = False
                stopped = self._stopping.is_set()
            ended = type(item) is not list and item is not None
            # Released as soon as the body is read to its end, before the last events
            # are handed over: a consumer that stops there still leaves the connection
            # to the pool. (A KeyboardInterrupt leaves it to close().)
            if stopped or ended or (self._outcome is not None and self._body.complete):
                self._release()
        return None if stopped else item

    def can_read_here(self) -> bool:
        """Whether `read_here` may serve the calling thread: its reads must be cut into
        slices in the main thread, which only a resumable body allows."""
        return self._body.resumable or threading.current_thread() is not threading.main_thread()

    def start(self) -> None:
        """Hand the body over to a reader thread, which reads on ahead of the caller
        into the queue (after the first batch, or for `next_event` with a timeout).
        Once only; not while stopped."""
        if self.thread is not None or self._stopping.is_set():
            return
        if self.forked():  # the body is the parent's: a thread here would take its bytes
            self._queue.put(StreamError(_FORKED_MESSAGE))
            return
        if self._released:  # the caller's thread read the turn to its end already
            self._queue.put(self._outcome if self._outcome is not None else _END)
            self._outcome = _END  # (queued once)
            return
        self.thread = threading.Thread(target=self._run, name=f"llmx_sync-reader-{next(_thread_numbers)}",
                                       daemon=True)
        self.thread.start()

    # -- in the reader thread -------------------------------------------------------

    def _run(self) -> None:
        put, full = self._queue.put, self._queue.full
        try:
            while True:
                if full() and not self._wait_for_room():
                    outcome: _End | BaseException = _END
                    break
                item, fed = self._next_item(math.inf)
                if not isinstance(item, list):
                    outcome = item
                    break
                put(item, fed)
        except BaseException as exc:  # a bug, not a stream error: raise it in the consumer's thread
            outcome = exc
        finally:
            self._release()
        # Queued after the release: when the iterator ends, the connection is back in
        # the pool, so the caller's next request can reuse it.
        if not self._stopping.is_set():
            self._queue.put(outcome)

    def _wait_for_room(self) -> bool:
        """Wait until the iterator has taken enough for the queue to have room
        (backpressure), in slices; False when stopped."""
        wait, stopping = self._queue.wait_for_room, self._stopping.is_set
        while not stopping():
            if wait(_WAIT_SLICE):
                return True
        return False

    # -- either -----------------------------------------------------------------------

    def _next_item(self, wait_slice: float) -> tuple[_Item, int]:
        """Read until the body gives events or the turn is over. Returns the events and
        the body bytes that produced them (what the batch counts in the queue), or what
        ends the stream: `_END` or the stream's error. Each read waits at most
        `wait_slice` at a time (the body must be resumable when that is finite).

        Each call starts a new idle period: the time between calls is the consumer's
        (or a wait for room in the queue), not the server's idleness."""
        if self._outcome is not None:
            if not self._body.complete and not self._stopping.is_set():
                self._drain()
            return self._outcome, 0
        body, parser, clock, idle = self._body, self._parser, self._clock, self._idle_timeout
        stopping = self._stopping.is_set
        total = self._deadline.at if self._deadline is not None else math.inf
        idle_until = clock() + idle
        fed = 0
        while True:
            remaining = min(idle_until, total) - clock()
            if remaining <= 0:
                return self._timed_out(total), 0
            body.set_timeout(min(remaining, wait_slice))
            try:
                data = body.read(self._read_size)
            except TimeoutError:
                if wait_slice < remaining:
                    continue  # a slice passed, not the timeout
                return self._timed_out(total), 0
            except StreamError as exc:
                return exc, 0
            if stopping():
                return _END, 0  # (nobody reads it)
            self._read_size = 0
            fed += len(data)
            events = parser.feed(data) if data else parser.finish()
            # Any bytes are a sign of life (keep-alive comments too).
            idle_until = clock() + idle
            if parser.done:
                self._outcome = parser.error or _END
                if not events:
                    return self._next_item(wait_slice)
            if events:
                return events, fed

    def _timed_out(self, total: float) -> LlmxError:
        if self._deadline is not None and self._clock() >= total:
            return self._deadline.error("while the answer was streaming")
        return StreamIdleTimeoutError()

    def _drain(self) -> None:
        """Read what follows the turn's end (normally the last chunk's framing), so
        that the connection can go back to the pool."""
        self._draining = True
        if self._stopping.is_set():
            return
        body = self._body
        deadline = self._clock() + min(self._idle_timeout, _DRAIN_SECONDS)
        budget = _DRAIN_BYTES
        while budget > 0 and not body.complete:
            remaining = deadline - self._clock()
            if remaining <= 0:
                return
            body.set_timeout(remaining)
            try:
                budget -= len(body.read())
            except (TimeoutError, StreamError):
                return


class StreamLike(Protocol):
    """What the web and notebook helpers need of a stream (`EventStream` is one)."""

    def __iter__(self) -> Iterator[Event]: ...

    def next_event(self, timeout: float | None = None) -> Event: ...

    def close(self) -> None: ...


def check_stream_like(where: str, value: object) -> None:
    """`InvalidInputError` naming `where` unless `value` has what `StreamLike` says."""
    if not all(callable(getattr(value, name, None)) for name in ("__iter__", "next_event", "close")):
        raise InvalidInputError(where, "expected a stream (what client.stream() or client.run() returns), "
                                f"got {type(value).__name__}")


class EventStream:
    """The events of one streamed answer: iterate over it, once.

    Use it as a context manager, or call `close()`, to stop early; a stream dropped
    half-read (``break``) is closed when garbage collected. Errors (`StreamError`,
    `StreamIdleTimeoutError`, `InStreamError`) are raised by the iterator after the
    events that came before them, and kept in `error`. A stream its consumer closed
    (the thread that closed it is the one iterating) ends at once; one closed by
    another thread (`client.close()` at shutdown, a watchdog) before its answer was
    complete raises `StreamError` (`CLOSED_MESSAGE`), so a cut answer never looks
    whole. `on_batch` (called in the caller's thread) sees every batch of events as
    the iterator takes it from the queue, whatever reads them, and may add to it.
    """

    def __init__(self, body: BodyReader, parser: WireParser, info: ResponseInfo, *, idle_timeout: float,
                 deadline: Deadline | None = None, max_buffered_bytes: int = DEFAULT_BUFFERED_BYTES,
                 on_batch: Callable[[list[Event]], list[Event]] | None = None) -> None:
        self.response = info
        self._queue = _Buffer(max_buffered_bytes)
        try:
            self._reader = _Reader(body, parser, self._queue, idle_timeout, deadline)
        except BaseException:
            body.finish()
            raise
        self._on_batch = on_batch
        self._first = True  # the first batch is still to be read, in the caller's thread
        self._batch: Iterator[Event] = iter(())
        self._finished = False
        self._closed_by: threading.Thread | None = None  # who closed it before it finished
        self.completed = False  # the answer arrived whole
        self.error: BaseException | None = None  # what ended it, when it failed
        # Holds the reader, not self: the stream stays collectable.
        self._finalizer = weakref.finalize(self, self._reader.stop)

    # -- iteration ------------------------------------------------------------

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> Event:
        event = next(self._batch, None)
        if event is None:
            event = self._next_batch(None)
        return event

    def next_event(self, timeout: float | None = None) -> Event:
        """The next event, waiting at most `timeout` seconds (None: no limit).

        Raises `TimeoutError` when none came in time (the stream goes on: call
        again), `StopIteration` at the end, or the stream's error. This is what a
        web response needs to send heartbeats while the model is silent.
        """
        event = next(self._batch, None)
        if event is None:
            event = self._next_batch(None if timeout is None else time.monotonic() + timeout)
        return event

    def _next_batch(self, deadline: float | None) -> Event:
        if self._finished:
            self._raise_if_cut()
            raise StopIteration
        reader = self._reader
        if self._first and deadline is None and reader.can_read_here():
            self._first = False  # the rest is the reader thread's (design.md, "Which thread reads")
            try:
                item = reader.read_here()
            except BaseException:  # KeyboardInterrupt while reading: nobody will read on
                self.close()
                raise
        else:
            self._first = False
            reader.start()  # (no thread when the first read had the whole body)
            item = self._wait(deadline)
        if item is None:  # closed by another thread
            self._raise_if_cut()
            raise StopIteration
        if type(item) is list:
            if self._on_batch is not None:
                item = self._on_batch(item)
            self._batch = batch = iter(item)
            return next(batch)  # batches are never empty
        self._finished = True
        if isinstance(item, BaseException):
            self.error = item
            raise item
        self.completed = True
        raise StopIteration

    def _raise_if_cut(self) -> None:
        """`StreamError` (once) when the stream was closed before its end by a thread
        other than the one iterating: the consumer did not choose to stop there."""
        closer = self._closed_by
        if (closer is not None and closer is not threading.current_thread() and self.error is None
                and not self.completed):
            self.error = StreamError(CLOSED_MESSAGE)
            raise self.error

    def _wait(self, deadline: float | None) -> _Item | None:
        """The next queued item, or None once `close()` was called from another thread;
        waits in slices so that Ctrl-C and `close()` are noticed promptly.
        `TimeoutError` once `deadline` passed."""
        get = self._queue.get
        try:
            while True:
                wait = _WAIT_SLICE
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                    if wait <= 0:
                        raise TimeoutError("no event within the timeout")
                try:
                    return get(timeout=wait)
                except queue.Empty:
                    if self._finished:
                        return None
                    thread = self._reader.thread
                    if (thread is None or not thread.is_alive()) and self._queue.empty():
                        if self._reader.forked():  # (the thread was the parent's)
                            return StreamError(_FORKED_MESSAGE)
                        return StreamError("the reader thread ended without a result")
        except TimeoutError:
            raise
        except BaseException:  # KeyboardInterrupt while waiting: nobody will read on
            self.close()
            raise

    # -- closing --------------------------------------------------------------

    def close(self) -> None:
        """Stop reading and release the connection. Idempotent, from any thread; waits
        (at most a second) for the reader thread to end. Closed from a thread other than
        the one iterating, before the answer was complete, the iterator raises
        `StreamError` (see the class)."""
        if not self._finished and self._closed_by is None:
            self._closed_by = threading.current_thread()
        self._finished = True
        self._batch = iter(())
        self._finalizer()  # stops the reader, once
        thread = self._reader.thread
        if thread is not None and thread is not threading.current_thread() and thread.is_alive():
            thread.join(_JOIN_TIMEOUT)

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<{type(self).__name__} {state} status={self.response.status_code} request_id={self.response.request_id!r}>"
