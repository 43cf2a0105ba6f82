"""Error classes and their texts (llmx's wording, `openai`-style class names)."""

from __future__ import annotations

import pytest
from reference_cases import reference_case

from llmx_sync.errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ConnectionFailedError,
    EnvVarError,
    InStreamError,
    InternalServerError,
    InvalidInputError,
    LlmxError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTooLargeError,
    RetryLimitReachedError,
    StreamError,
    StreamIdleTimeoutError,
    UnexpectedStatusError,
    UnprocessableEntityError,
    UnsupportedOperationError,
    retry_limit_error,
    status_error,
    status_text,
)


@pytest.mark.parametrize("case_id", ["E01", "E02"])
def test_reference_error_display(case_id: str) -> None:
    case = reference_case("error_display_cases", case_id)
    error = case["error"]
    assert str(UnexpectedStatusError(error["status"], error["body"], error["request_id"])) == case["expected_display"]


def test_cloudflare_text_needs_403_and_both_words() -> None:
    body = "Cloudflare: you have been blocked"
    assert str(UnexpectedStatusError(401, body)) == f"unexpected status 401 Unauthorized: {body}"
    assert str(UnexpectedStatusError(403, "cloudflare blocked")) == (
        "unexpected status 403 Forbidden: cloudflare blocked")
    assert str(UnexpectedStatusError(403, body)) == (
        "Access blocked by Cloudflare. This usually happens when connecting from a restricted region "
        "(status 403 Forbidden)")


@pytest.mark.parametrize(("status", "text"), [
    (200, "200 OK"), (400, "400 Bad Request"), (401, "401 Unauthorized"), (403, "403 Forbidden"),
    (404, "404 Not Found"), (408, "408 Request Timeout"), (409, "409 Conflict"), (413, "413 Payload Too Large"),
    (418, "418 I'm a teapot"), (422, "422 Unprocessable Entity"), (429, "429 Too Many Requests"),
    (500, "500 Internal Server Error"), (501, "501 Not Implemented"), (502, "502 Bad Gateway"),
    (503, "503 Service Unavailable"), (504, "504 Gateway Timeout"), (203, "203 Non Authoritative Information"),
    (299, "299 <unknown status code>"), (599, "599 <unknown status code>"),
])
def test_status_text_uses_rust_http_reasons(status: int, text: str) -> None:
    assert status_text(status) == text


@pytest.mark.parametrize(("status", "cls"), [
    (400, BadRequestError), (401, AuthenticationError), (403, PermissionDeniedError), (404, NotFoundError),
    (409, ConflictError), (413, RequestTooLargeError), (422, UnprocessableEntityError), (429, RateLimitError),
    (500, InternalServerError), (503, InternalServerError), (599, InternalServerError),
    (408, UnexpectedStatusError), (418, UnexpectedStatusError), (302, UnexpectedStatusError),
])
def test_status_error_picks_the_subclass(status: int, cls: type[UnexpectedStatusError]) -> None:
    error = status_error(status, "body", "req_1")
    assert type(error) is cls
    assert isinstance(error, LlmxError)
    assert (error.status, error.body, error.request_id) == (status, "body", "req_1")
    assert str(error) == f"unexpected status {status_text(status)}: body, request id: req_1"


def test_in_stream_error() -> None:
    error = InStreamError("model overloaded", type="server_error", code=503, param=None)
    assert str(error) == "unexpected status 200 OK: model overloaded"
    assert (error.status, error.message, error.type, error.code, error.param) == (
        200, "model overloaded", "server_error", 503, None)
    assert isinstance(error, UnexpectedStatusError)


def test_retry_limit_error_is_the_status_class_too() -> None:
    # llmx raised only "exceeded retry limit", the server's message on __cause__: now the
    # error of the status (so `except RateLimitError` works) is also a RetryLimitReachedError.
    error = retry_limit_error(status_error(429, '{"error": {"message": "slow down"}}', "req_9"), 5)
    assert isinstance(error, RateLimitError) and isinstance(error, RetryLimitReachedError)
    assert (error.status, error.request_id, error.attempts, error.message) == (429, "req_9", 5, "slow down")
    assert str(error) == ("unexpected status 429 Too Many Requests (retry limit reached after 5 attempts): "
                          "slow down, request id: req_9")
    assert str(retry_limit_error(status_error(503, ""), 1)) == (
        "unexpected status 503 Service Unavailable (retry limit reached after 1 attempt)")


def test_env_var_error() -> None:
    assert str(EnvVarError("KEY")) == "Missing environment variable: `KEY`."
    assert str(EnvVarError("KEY", "Set it.")) == "Missing environment variable: `KEY`. Set it."


def test_stream_errors() -> None:
    assert str(StreamError("Transport error: reset")) == (
        "stream disconnected before completion: Transport error: reset")
    idle = StreamIdleTimeoutError()
    assert isinstance(idle, StreamError)
    assert str(idle) == "stream disconnected before completion: idle timeout waiting for SSE"


def test_other_texts() -> None:
    assert str(UnsupportedOperationError("x")) == "unsupported operation: x"
    assert str(ConnectionFailedError("refused")) == "Connection failed: refused"


def test_invalid_input_is_a_value_error_naming_the_place() -> None:
    error = InvalidInputError("input[2].role", "expected a string, got number")
    assert isinstance(error, ValueError) and isinstance(error, LlmxError)
    assert (error.where, error.problem) == ("input[2].role", "expected a string, got number")
    assert str(error) == "input[2].role: expected a string, got number"
    assert str(InvalidInputError("", "bad")) == "bad"
