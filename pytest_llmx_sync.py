"""The pytest plugin of llmx_sync (registered through the ``pytest11`` entry point): the
``scripted_server`` fixture, a started `llmx_sync.testing.ScriptedServer`.

pytest loads this module in every run of every project installed beside llmx_sync, so
it imports nothing but pytest: the SDK is imported when a test uses the fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from llmx_sync.testing import ScriptedServer


@pytest.fixture
def scripted_server() -> Iterator[ScriptedServer]:
    """A started `llmx_sync.testing.ScriptedServer` on 127.0.0.1 (``.base_url``,
    ``.enqueue(answer(...))``, ``.requests``), stopped after the test. The test fails if
    something raised on the server's side (a handler of yours, say)."""
    from llmx_sync.testing import ScriptedServer

    with ScriptedServer() as server:
        yield server
    if server.errors:
        pytest.fail("the scripted server raised:\n" + "\n".join(server.errors), pytrace=False)
