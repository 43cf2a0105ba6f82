"""Who hears about the transport's retries: `retrying` is called by `Transport.send`
before it waits to send a request again, and tells

- the callback this thread set with `on_retry` (a batch: a 429 pauses all its senders);
- the listeners of the whole process added with `listen` (telemetry: a span event).

A module of its own, below the transport, so that neither the batch runner nor the
telemetry has to sit under it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

__all__ = ["listen", "on_retry", "retrying"]

#: (attempt, status or None for a connection error, reason in words, delay in seconds)
Listener = Callable[[int, int | None, str, float], None]


class _ThisThread(threading.local):
    callback: Callable[[int | None, float], None] | None = None


_this_thread = _ThisThread()
_listeners: list[Listener] = []


@contextlib.contextmanager
def on_retry(callback: Callable[[int | None, float], None]) -> Iterator[None]:
    """Within the block, in this thread, `callback(status, delay)` is called before each
    retry the transport makes (`status` None for a connection error)."""
    previous, _this_thread.callback = _this_thread.callback, callback
    try:
        yield
    finally:
        _this_thread.callback = previous


def listen(listener: Listener) -> None:
    """Call `listener(attempt, status, reason, delay)` before every retry of the process."""
    _listeners.append(listener)


def retrying(attempt: int, status: int | None, reason: str, delay: float) -> None:
    """The transport's hook: attempt `attempt` failed (`status`, or None for a
    connection error; `reason` in words) and it sends again in `delay` seconds."""
    callback = _this_thread.callback
    if callback is not None:
        callback(status, delay)
    for listener in _listeners:
        listener(attempt, status, reason, delay)
