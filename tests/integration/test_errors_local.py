"""A request llama-cpp-python's server refuses surfaces the server's own validation message,
at once.

Its RouteErrorHandler answers whatever its pydantic request model rejects with a 500 whose
``{"error": {"message": ...}}`` is the text of FastAPI's validation error (field, message
and input). The same request would be refused again, so it is a `BadRequestError` (its
status still 500) raised after one request, whatever `request_max_retries` says.
"""

from __future__ import annotations

import time

import pytest
from local_support import needs_llama_cpp

from llmx_sync import BadRequestError, Client, RetryLimitReachedError
from llmx_sync.local import LocalServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


@needs_llama_cpp
@pytest.mark.parametrize("retries", [0, 4])
def test_a_request_the_server_refuses_shows_its_validation_message_at_once(server: LocalServer,
                                                                          retries: int) -> None:
    started = time.monotonic()
    with Client(base_url=server.base_url) as client, pytest.raises(BadRequestError) as caught:
        client.stream("hi", model="local", extra_body={"temperature": "hot"}, request_max_retries=retries)
    error = caught.value
    assert not isinstance(error, RetryLimitReachedError)  # nothing was retried
    assert time.monotonic() - started < 3.0  # no backoff waits (0.2 + 0.4 + 0.8 + 1.6 s for 4 retries)
    assert error.status == 500 and error.type == "internal_server_error"
    assert error.message is not None
    for part in ("Input should be a valid number", "temperature", "'hot'"):
        assert part in error.message and part in str(error)
    assert str(error).startswith("unexpected status 500 Internal Server Error: 1 validation error")
    assert "{\"error\"" not in str(error)  # the message, not the JSON body
