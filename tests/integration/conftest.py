"""Module-scoped real servers with the bundled model (each test module starts its own)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from local_support import LLAMA_CPP_SKIP, LLAMA_SERVER_SKIP

from llmx_sync.local import LlamaServerBinary, LocalServer


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    """llama-cpp-python's server."""
    if LLAMA_CPP_SKIP:
        pytest.skip(LLAMA_CPP_SKIP)
    srv = LocalServer(startup_timeout=120)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def llama_server() -> Iterator[LlamaServerBinary]:
    """llama.cpp's own llama-server."""
    if LLAMA_SERVER_SKIP:
        pytest.skip(LLAMA_SERVER_SKIP)
    srv = LlamaServerBinary(startup_timeout=120)
    srv.start()
    yield srv
    srv.stop()
