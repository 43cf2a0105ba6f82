"""Waiting for a stream's next event with a timeout.

A `ResponseStream` iterator blocks until the next event, but a web response wants
to send a heartbeat when nothing came for a while, and a notebook wants to show
the text it is holding back. `TimedEvents` hands the events over from a daemon
thread through a one-slot queue, so the reader never runs ahead of the consumer
(the stream's own queue keeps the backpressure) and `next(timeout)` can give up.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Protocol, Union

from .events import Event

# How often a relay blocked on a full slot looks whether it was closed.
_CLOSE_POLL = 0.05
# How long `close()` waits for the relay thread once the stream is closed.
_JOIN_TIMEOUT = 1.0


class EventStream(Protocol):
    """What the helpers need of a stream: its events, and a thread-safe `close()`."""

    def __iter__(self) -> Iterator[Event]: ...

    def close(self) -> None: ...


class _End:
    """The stream's iterator finished normally."""


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_Handoff = Union[Event, _End, _Failed]


class TimedEvents:
    """The events of `stream`, each awaited with `next(timeout)`."""

    def __init__(self, stream: EventStream) -> None:
        self._stream = stream
        self._slot: queue.Queue[_Handoff] = queue.Queue(maxsize=1)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._relay, name="llmx_sync-relay", daemon=True)
        self._thread.start()

    def next(self, timeout: float | None) -> Event:
        """The next event. Raises `TimeoutError` when none came within `timeout`
        seconds (the stream goes on), `StopIteration` at the end, or the stream's
        own error."""
        try:
            handoff = self._slot.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError from None
        if isinstance(handoff, _End):
            self._slot.put(handoff)  # every later call ends too
            raise StopIteration
        if isinstance(handoff, _Failed):
            raise handoff.error
        return handoff

    def close(self) -> None:
        """Close the stream and wait (bounded) for the relay thread to end."""
        self._closed.set()
        self._stream.close()
        self._thread.join(_JOIN_TIMEOUT)

    def _relay(self) -> None:
        try:
            for event in self._stream:
                if not self._hand_over(event):
                    return
        except BaseException as error:  # handed to the consumer's thread, raised there
            self._hand_over(_Failed(error))
            return
        self._hand_over(_End())

    def _hand_over(self, handoff: _Handoff) -> bool:
        while not self._closed.is_set():
            try:
                self._slot.put(handoff, timeout=_CLOSE_POLL)
                return True
            except queue.Full:
                continue
        return False
