import os
import sys

import pytest

# Make tests/llm_server.py and tests/sockets.py importable as top-level
# modules (``from llm_server import ...``) whatever pytest's import mode is.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from llm_server import LLMServer  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "integration: needs a real network server (127.0.0.1 only)")
    config.addinivalue_line("markers", "browser: needs a browser")


@pytest.fixture
def llm_server():
    """A started scripted LLMServer on 127.0.0.1; stopped after the test."""
    server = LLMServer().start()
    try:
        yield server
    finally:
        server.stop()
