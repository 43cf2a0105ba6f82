"""Client-side socket / thread accounting for tests (Linux, /proc based).

Everything here looks at *this process* only, so it is meant for tests where
the SDK client runs in the test process (the LLMServer may run in the same
process too: its accepted sockets have the server port as their *local* port,
so they are never counted by ``open_sockets_to``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["TcpSocket", "live_threads", "open_sockets_to", "sockets_to", "unread_bytes", "wait_for"]

# /proc/net/tcp "st" column (include/net/tcp_states.h)
TCP_STATES = {
    "01": "ESTABLISHED",
    "02": "SYN_SENT",
    "03": "SYN_RECV",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "07": "CLOSE",
    "08": "CLOSE_WAIT",
    "09": "LAST_ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
    "0C": "NEW_SYN_RECV",
}
_NOT_OPEN = {"TIME_WAIT", "CLOSE"}


@dataclass(frozen=True)
class TcpSocket:
    fd: int
    inode: int
    local_port: int
    remote_port: int
    state: str  # e.g. "ESTABLISHED", "CLOSE_WAIT"
    rx_queue: int = 0  # bytes received and not yet read by the process


def _own_socket_fds() -> dict[int, int]:
    """inode -> fd for every socket fd of this process."""
    out: dict[int, int] = {}
    base = "/proc/self/fd"
    for name in os.listdir(base):
        try:
            target = os.readlink(f"{base}/{name}")
        except OSError:  # fd closed meanwhile (or the listdir fd itself)
            continue
        if target.startswith("socket:["):
            out[int(target[8:-1])] = int(name)
    return out


def _port(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1], 16)


def _tcp_rows() -> list[list[str]]:
    """The rows of /proc/net/tcp and /proc/net/tcp6, split into columns."""
    rows: list[list[str]] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows += [line.split() for line in f.readlines()[1:]]
        except FileNotFoundError:
            continue
    return rows


def sockets_to(port: int) -> list[TcpSocket]:
    """TCP sockets (IPv4 and IPv6) owned by this process whose remote port is
    ``port``, in any state that still appears in /proc/net/tcp{,6}."""
    fds = _own_socket_fds()
    found: list[TcpSocket] = []
    for parts in _tcp_rows():
        if len(parts) < 10:
            continue
        inode = int(parts[9])
        if inode == 0 or inode not in fds or _port(parts[2]) != port:
            continue
        found.append(
            TcpSocket(
                fd=fds[inode],
                inode=inode,
                local_port=_port(parts[1]),
                remote_port=port,
                state=TCP_STATES.get(parts[3].upper(), parts[3]),
                rx_queue=int(parts[4].split(":")[1], 16),  # tx_queue:rx_queue
            )
        )
    return found


def unread_bytes(port: int) -> int:
    """Bytes that arrived on our sockets to `port` and sit unread in the kernel."""
    return sum(s.rx_queue for s in sockets_to(port))


def open_sockets_to(port: int) -> int:
    """Number of this process's TCP sockets connected to remote ``port`` whose
    fd still exists, excluding CLOSE / TIME_WAIT rows (ESTABLISHED, CLOSE_WAIT,
    FIN_WAIT*, ... all count as open)."""
    return sum(1 for s in sockets_to(port) if s.state not in _NOT_OPEN)


def wait_for(predicate: Callable[[], object], timeout: float = 1.0, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until truthy; False if ``timeout`` seconds pass first.
    The predicate is always evaluated at least once, and once more at the end."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return bool(predicate())
        time.sleep(interval)


def live_threads(name_prefix: str) -> list[threading.Thread]:
    """Alive threads of this process whose name starts with ``name_prefix``."""
    return [t for t in threading.enumerate() if t.name.startswith(name_prefix) and t.is_alive()]
