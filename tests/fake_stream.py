"""A stand-in for `ResponseStream`: scripted events, a thread-safe `close()`."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from llmx_sync.events import Event


@dataclass
class FakeStream:
    """Events (or an exception to raise) one after the other, `delay` seconds apart.
    `stall_after=n` blocks the iterator after n steps until `close()`, as a stream
    waiting for a silent server does; a closed stream ends."""

    script: list[Event | BaseException]
    delay: float = 0.0
    stall_after: int | None = None
    closed: threading.Event = field(default_factory=threading.Event)
    _position: int = 0
    _due: float | None = None

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        return self.next_event(None)

    def next_event(self, timeout: float | None = None) -> Event:
        """As `ResponseStream.next_event`: `TimeoutError` when the next step is not
        due within `timeout` (a later call waits for the rest of the delay)."""
        if self._due is None:
            self._due = time.monotonic() + self.delay
        if self._position == self.stall_after:
            if not self.closed.wait(10 if timeout is None else timeout) and timeout is not None:
                raise TimeoutError
        else:
            wait = self._due - time.monotonic()
            if timeout is not None and wait > timeout:
                time.sleep(max(timeout, 0))
                raise TimeoutError
            if wait > 0:
                time.sleep(wait)
        self._due = None
        if self.closed.is_set() or self._position == len(self.script):
            raise StopIteration
        step = self.script[self._position]
        self._position += 1
        if isinstance(step, BaseException):
            raise step
        return step

    def close(self) -> None:
        self.closed.set()
