"""Shared bits of test_transport.py, test_stream.py and test_client.py."""

from __future__ import annotations

import itertools

from llm_server import LLMServer
from sockets import live_threads, open_sockets_to, wait_for

from llmx_sync.client import Client
from llmx_sync.providers import Provider

READER_PREFIX = "llmx_sync-reader-"
# A closed stream's thread and socket are gone within a second (the promise to callers).
RELEASE_TIMEOUT = 1.0


def reader_threads() -> list[object]:
    return list(live_threads(READER_PREFIX))


def released(server: LLMServer, timeout: float = RELEASE_TIMEOUT) -> bool:
    """No reader thread alive and no socket of ours to `server` open, within `timeout`."""
    return wait_for(lambda: not reader_threads(), timeout) and wait_for(
        lambda: open_sockets_to(server.port) == 0, timeout
    )


def split_at(data: bytes, cuts: set[int]) -> list[bytes]:
    """`data` cut at the given offsets."""
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def make_client(server: LLMServer, **provider_settings: object) -> Client:
    return Client(Provider(name="test", base_url=server.url, **provider_settings))  # type: ignore[arg-type]
