"""A request llama-cpp-python's server refuses surfaces the server's own validation message.

Its RouteErrorHandler answers whatever its pydantic request model rejects with a 500 whose
``{"error": {"message": ...}}`` is the text of FastAPI's validation error (field, message
and input); before issue #10 that arrived as "exceeded retry limit, last status: 500".
"""

from __future__ import annotations

import pytest
from local_support import needs_llama_cpp

from llmx_sync import Client, InternalServerError, RetryLimitReachedError
from llmx_sync.local import LocalServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


@needs_llama_cpp
def test_a_request_the_server_refuses_shows_its_validation_message(server: LocalServer) -> None:
    with Client(base_url=server.base_url) as client, pytest.raises(InternalServerError) as caught:
        client.stream("hi", model="local", extra_body={"temperature": "hot"}, request_max_retries=0)
    error = caught.value
    assert isinstance(error, RetryLimitReachedError) and error.attempts == 1  # type: ignore[attr-defined]
    assert error.status == 500 and error.type == "internal_server_error"
    assert error.message is not None
    for part in ("Input should be a valid number", "temperature", "'hot'"):
        assert part in error.message and part in str(error)
    assert str(error).startswith("unexpected status 500 Internal Server Error (retry limit reached after 1 attempt): ")
    assert "{\"error\"" not in str(error)  # the message, not the JSON body
