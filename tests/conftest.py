import os
import sys

import pytest

# Make tests/llm_server.py and tests/sockets.py importable as top-level
# modules (``from llm_server import ...``) whatever pytest's import mode is.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from llm_server import LLMServer  # noqa: E402

from llmx_sync.body import PUBLIC_READER_ENV  # noqa: E402

# The `scripted_server` fixture users get (llmx_sync.testing), also where llmx_sync is not
# installed (its pytest11 entry point, of the same name, then does nothing more).
pytest_plugins = ["pytest_llmx_sync"]

#: The two ways a response body is read (llmx_sync.body): the fast socket path, and
#: urllib3's public API (what LLMX_SYNC_PUBLIC_BODY_READER=1 forces).
BODY_READERS = ("socket", "urllib3")


def pytest_configure(config):
    config.addinivalue_line("markers", "integration: needs a real network server (127.0.0.1 only)")
    config.addinivalue_line("markers", "browser: needs a browser")
    config.addinivalue_line("markers", "socket_reader_only: runs on the socket body reader only (see `body_reader`)")


def pytest_generate_tests(metafunc):
    """Run every test that uses the `body_reader` fixture once per body reader, except
    those marked `socket_reader_only` (they pin what only the fast path does)."""
    if "body_reader" in metafunc.fixturenames:
        socket_only = metafunc.definition.get_closest_marker("socket_reader_only") is not None
        metafunc.parametrize("body_reader", BODY_READERS[:1] if socket_only else BODY_READERS, indirect=True)


@pytest.fixture(autouse=True)
def _llmx_home(tmp_path_factory, monkeypatch):
    """Every test gets an empty llmx home ($LLMX_HOME, inherited by the processes it
    starts), so nothing the CLI saves (conversations, typed lines) reaches the real
    ~/.llmx."""
    home = tmp_path_factory.mktemp("llmx-home")
    monkeypatch.setenv("LLMX_HOME", str(home))
    return home


@pytest.fixture
def body_reader(request, monkeypatch):
    """Which body reader the streams of this test use: ``"socket"`` (the default path) or
    ``"urllib3"`` (``LLMX_SYNC_PUBLIC_BODY_READER=1``). Opt in per module with
    ``pytestmark = pytest.mark.usefixtures("body_reader")``; CI then runs those tests
    both ways inside the one ``python -m pytest``."""
    if request.param == "urllib3":
        monkeypatch.setenv(PUBLIC_READER_ENV, "1")
    else:
        monkeypatch.delenv(PUBLIC_READER_ENV, raising=False)
    return request.param


@pytest.fixture
def llm_server():
    """A started scripted LLMServer on 127.0.0.1; stopped after the test."""
    server = LLMServer().start()
    try:
        yield server
    finally:
        server.stop()
