"""The exception hierarchy. Texts keep the wording of the original llmx code, so that
logs and scripts that match on it keep working."""

from __future__ import annotations

from typing import Any

# Reason phrases of the Rust `http` crate, which llmx prints; several differ
# from Python's `http.HTTPStatus` (413, 418, 422, 203 ...).
_REASONS = {
    100: "Continue", 101: "Switching Protocols", 102: "Processing",
    200: "OK", 201: "Created", 202: "Accepted", 203: "Non Authoritative Information",
    204: "No Content", 205: "Reset Content", 206: "Partial Content", 207: "Multi-Status",
    208: "Already Reported", 226: "IM Used",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Found", 303: "See Other",
    304: "Not Modified", 305: "Use Proxy", 307: "Temporary Redirect", 308: "Permanent Redirect",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 409: "Conflict",
    410: "Gone", 411: "Length Required", 412: "Precondition Failed",
    413: "Payload Too Large", 414: "URI Too Long", 415: "Unsupported Media Type",
    416: "Range Not Satisfiable", 417: "Expectation Failed", 418: "I'm a teapot",
    421: "Misdirected Request", 422: "Unprocessable Entity", 423: "Locked",
    424: "Failed Dependency", 426: "Upgrade Required", 428: "Precondition Required",
    429: "Too Many Requests", 431: "Request Header Fields Too Large",
    451: "Unavailable For Legal Reasons",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout", 505: "HTTP Version Not Supported",
    506: "Variant Also Negotiates", 507: "Insufficient Storage", 508: "Loop Detected",
    510: "Not Extended", 511: "Network Authentication Required",
}


def status_text(status: int) -> str:
    """`429 Too Many Requests`, as the Rust `http` crate displays a status."""
    return f"{status} {_REASONS.get(status, '<unknown status code>')}"


def _request_id_suffix(request_id: str | None) -> str:
    return f", request id: {request_id}" if request_id else ""


class LlmxError(Exception):
    """Base class of every error raised by llmx_sync."""


class InvalidInputError(LlmxError, ValueError):
    """Something the caller gave (an item, a tool, a setting) is malformed.

    `where` says which part was wrong, e.g. ``input[3].content[0].text``.
    """

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}" if where else problem)


class ConfigError(LlmxError, ValueError):
    """A provider configuration cannot be used as given."""


class UnsupportedOperationError(LlmxError):
    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(f"unsupported operation: {message}")


class EnvVarError(LlmxError):
    """A required environment variable is missing or blank."""

    def __init__(self, var: str, instructions: str | None = None) -> None:
        self.var = var
        self.instructions = instructions
        text = f"Missing environment variable: `{var}`."
        if instructions:
            text += f" {instructions}"
        super().__init__(text)


class UnexpectedStatusError(LlmxError):
    """The server answered with a status that is neither success nor retried."""

    def __init__(self, status: int, body: str, request_id: str | None = None) -> None:
        self.status = status
        self.body = body
        self.request_id = request_id
        super().__init__(self._display())

    def _display(self) -> str:
        if self.status == 403 and "Cloudflare" in self.body and "blocked" in self.body:
            return (
                "Access blocked by Cloudflare. This usually happens when connecting from a "
                f"restricted region (status {status_text(403)})"
                + _request_id_suffix(self.request_id)
            )
        return (
            f"unexpected status {status_text(self.status)}: {self.body}"
            + _request_id_suffix(self.request_id)
        )


class BadRequestError(UnexpectedStatusError):
    pass


class AuthenticationError(UnexpectedStatusError):
    pass


class PermissionDeniedError(UnexpectedStatusError):
    pass


class NotFoundError(UnexpectedStatusError):
    pass


class ConflictError(UnexpectedStatusError):
    pass


class RequestTooLargeError(UnexpectedStatusError):
    pass


class UnprocessableEntityError(UnexpectedStatusError):
    pass


class RateLimitError(UnexpectedStatusError):
    pass


class InternalServerError(UnexpectedStatusError):
    pass


_STATUS_ERRORS: dict[int, type[UnexpectedStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: RequestTooLargeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def status_error(status: int, body: str, request_id: str | None = None) -> UnexpectedStatusError:
    """The most specific `UnexpectedStatusError` subclass for `status`."""
    if 500 <= status <= 599:
        cls: type[UnexpectedStatusError] = InternalServerError
    else:
        cls = _STATUS_ERRORS.get(status, UnexpectedStatusError)
    return cls(status, body, request_id)


class InStreamError(UnexpectedStatusError):
    """An error object the server sent inside a 200 stream."""

    def __init__(
        self,
        message: str,
        *,
        type: str | None = None,
        code: Any = None,
        param: Any = None,
        request_id: str | None = None,
    ) -> None:
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        super().__init__(200, message, request_id)


class RetryLimitReachedError(LlmxError):
    def __init__(self, status: int, request_id: str | None = None) -> None:
        self.status = status
        self.request_id = request_id
        super().__init__(
            f"exceeded retry limit, last status: {status_text(status)}"
            + _request_id_suffix(request_id)
        )


class ConnectionFailedError(LlmxError):
    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__(f"Connection failed: {source}")


class StreamError(LlmxError):
    """The response body ended or broke before the turn completed."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(f"stream disconnected before completion: {message}")


class StreamIdleTimeoutError(StreamError):
    def __init__(self, message: str = "idle timeout waiting for SSE") -> None:
        super().__init__(message)

