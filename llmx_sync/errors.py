"""The exception hierarchy. Texts keep the wording of the original llmx code, so that
logs and scripts that match on it keep working."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

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


class ClientClosedError(LlmxError, RuntimeError):
    """The `Client` was closed: it sends no further request (also a `RuntimeError`, what it
    raised before)."""

    def __init__(self, what: str = "send a request") -> None:
        super().__init__(f"the client is closed: it cannot {what}; make a new Client")


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


# --- what an error body says ----------------------------------------------------------

#: How much of a body that is not a JSON error goes into a message.
BODY_EXCERPT = 500


@dataclass(frozen=True)
class ErrorDetails:
    """What a JSON error body says, in the shapes servers use: OpenAI, LiteLLM and vLLM
    send ``{"error": {"message", "type", "code", "param"}}``; Ollama ``{"error": "…"}``;
    FastAPI servers (llama-cpp-python) ``{"detail": "…"}`` or a list of validation
    errors; older vLLM ``{"message": …, "type": …, "code": …}``."""

    message: str | None = None
    code: Any = None
    type: str | None = None
    param: Any = None


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _validation_errors(items: list[Any]) -> str:
    """FastAPI/pydantic validation errors, one ``at loc: msg (input: …)`` each."""
    parts = []
    for item in items:
        if not isinstance(item, dict):
            parts.append(_text(item) or "")
            continue
        loc = ".".join(str(part) for part in item.get("loc") or ())
        text = f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg", ""))
        if "input" in item and not isinstance(item["input"], (dict, list)):
            text += f" (input: {item['input']!r})"
        parts.append(text)
    return "; ".join(parts)


def error_details(body: str) -> ErrorDetails:
    """The message, code, type and param of a JSON error body (all None otherwise)."""
    try:
        data = json.loads(body)
    except ValueError:
        return ErrorDetails()
    if not isinstance(data, dict):
        return ErrorDetails()
    error = data.get("error")
    if isinstance(error, dict):
        message = error.get("message")
        if isinstance(message, list):  # llama-cpp-python puts validation errors here
            message = _validation_errors(message)
        return ErrorDetails(_text(message), error.get("code"), _text(error.get("type")), error.get("param"))
    if isinstance(error, str) and error:
        return ErrorDetails(error)
    detail = data.get("detail")
    if isinstance(detail, list):
        return ErrorDetails(_validation_errors(detail))
    if detail is not None:
        return ErrorDetails(_text(detail))
    if "message" in data:
        return ErrorDetails(_text(data.get("message")), data.get("code"), _text(data.get("type")), data.get("param"))
    return ErrorDetails()


# The text of a pydantic or FastAPI validation error ("1 validation error:", "2 validation
# errors for Model"), as llama-cpp-python's server sends it with a 500.
_VALIDATION_TEXT = re.compile(r"\b\d+ validation errors?\b")


def is_validation_error(body: str) -> bool:
    """Whether an error body refuses the request itself as malformed, so that sending it
    again cannot help: FastAPI's ``{"detail": [{"loc": …, "msg": …}, …]}``, an error of
    type ``invalid_request_error`` (OpenAI's shape, which llama.cpp's server also uses),
    or the text of a pydantic/FastAPI validation error (llama-cpp-python answers a
    request its model refuses with a 500 whose message is that text)."""
    try:
        data = json.loads(body)
    except ValueError:
        return False
    if not isinstance(data, dict):
        return False
    detail = data.get("detail")
    if isinstance(detail, list) and detail and all(isinstance(item, dict) and "loc" in item for item in detail):
        return True
    error = data.get("error")
    fields = error if isinstance(error, dict) else data
    if fields.get("type") == "invalid_request_error":
        return True
    message = error_details(body).message
    return message is not None and _VALIDATION_TEXT.search(message) is not None


_TAG = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]*>", re.IGNORECASE | re.DOTALL)


def shorten(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, with ``…`` where it was cut (for messages)."""
    return text if len(text) <= limit else text[:limit] + "…"


#: Shorter secrets are not looked for in error bodies: they would match ordinary words.
MIN_SECRET_CHARS = 6


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with each of `secrets` in it replaced by ``***``: a server may echo the key it
    refused ("Invalid API key: sk-…"), and the error's text ends up in logs and tracebacks.
    Longer secrets first, so that ``Bearer sk-…`` goes whole before ``sk-…``."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= MIN_SECRET_CHARS and secret in text:
            text = text.replace(secret, "***")
    return text


def display_url(url: str) -> str:
    """`url` as errors and logs show it: the values of its query parameters (which can
    carry keys) replaced by ``***``, and a password written in it too."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:  # e.g. a bad port or IPv6 literal; requests will say so
        return "<malformed URL>"
    if ":" in host:
        host = f"[{host}]"
    user = f"{parts.username}:***@" if parts.password is not None else (f"{parts.username}@" if parts.username else "")
    netloc = f"{user}{host}" + (f":{port}" if port is not None else "")
    query = urlencode([(name, "***") for name, _ in parse_qsl(parts.query, keep_blank_values=True)],
                      safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def body_excerpt(body: str, limit: int = BODY_EXCERPT) -> str:
    """A body that is not a JSON error, for a message: HTML reduced to its text,
    white space folded, at most `limit` characters."""
    text = body
    if "<" in text and ">" in text and re.search(r"<(html|body|head|title|h1|p|div)\b", text, re.IGNORECASE):
        text = html.unescape(_TAG.sub(" ", text))
    return shorten(" ".join(text.split()), limit)


# --- status errors ----------------------------------------------------------------------


class UnexpectedStatusError(LlmxError):
    """The server answered with a status that is not a success (after any retries).

    `status`, `body` (the raw text), `headers`, `request_id`, and what a JSON error body
    says: `message`, `code`, `type`, `param` (None when absent). `str()` shows the status
    and the server's message (or the start of the body, HTML reduced to text), then a
    `hint` when the SDK can tell what is likely wrong.
    """

    def __init__(self, status: int, body: str, request_id: str | None = None, *,
                 headers: Mapping[str, str] | None = None, hint: str | None = None) -> None:
        self.status = status
        self.body = body
        self.request_id = request_id
        self.headers: Mapping[str, str] = headers if headers is not None else {}
        details = error_details(body)
        self.message: str | None = details.message
        self.code: Any = details.code
        self.type: str | None = details.type
        self.param: Any = details.param
        self.hint = hint
        super().__init__(self._display())

    def _display(self) -> str:
        if self.status == 403 and "Cloudflare" in self.body and "blocked" in self.body:
            text = ("Access blocked by Cloudflare. This usually happens when connecting from a "
                    f"restricted region (status {status_text(403)})")
        else:
            shown = self.message if self.message is not None else body_excerpt(self.body)
            text = f"unexpected status {self._status_words()}" + (f": {shown}" if shown else "")
        text += _request_id_suffix(self.request_id)
        if not self.hint:
            return text
        return text + (" " if text.endswith((".", "…")) else ". ") + self.hint

    def _status_words(self) -> str:
        return status_text(self.status)


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


def status_error_class(status: int, body: str = "") -> type[UnexpectedStatusError]:
    """The most specific `UnexpectedStatusError` subclass for `status`; a 5xx whose body
    refuses the request as malformed (`is_validation_error`) is a `BadRequestError`."""
    if 500 <= status <= 599:
        return BadRequestError if is_validation_error(body) else InternalServerError
    return _STATUS_ERRORS.get(status, UnexpectedStatusError)


def status_error(status: int, body: str, request_id: str | None = None, *,
                 headers: Mapping[str, str] | None = None, hint: str | None = None) -> UnexpectedStatusError:
    """The error of `status` (its most specific class)."""
    return status_error_class(status, body)(status, body, request_id, headers=headers, hint=hint)


class RetryLimitReachedError(LlmxError):
    """The retries were spent (or the server asked to wait longer than allowed).

    When the last try failed with a status, the error raised is ALSO of that status's
    class (`retry_limit_error`): ``except RateLimitError`` and ``except
    RetryLimitReachedError`` both catch a 429 that outlasted the retries. `attempts` is
    how many requests were sent.
    """

    status: int
    request_id: str | None
    attempts: int


class _RetriedStatusError(UnexpectedStatusError, RetryLimitReachedError):
    """A status error that outlasted the retries: its message says so first."""

    def __init__(self, status: int, body: str, request_id: str | None = None, *,
                 headers: Mapping[str, str] | None = None, hint: str | None = None, attempts: int = 1) -> None:
        self.attempts = attempts
        super().__init__(status, body, request_id, headers=headers, hint=hint)

    def _status_words(self) -> str:
        tries = "1 attempt" if self.attempts == 1 else f"{self.attempts} attempts"
        return f"{status_text(self.status)} (retry limit reached after {tries})"


class RetriedStatusError(_RetriedStatusError):
    """A retried status without a class of its own (408) that outlasted the retries."""


class RetriedConflictError(_RetriedStatusError, ConflictError):
    """A 409 that outlasted the retries."""


class RetriedRateLimitError(_RetriedStatusError, RateLimitError):
    """A 429 that outlasted the retries."""


class RetriedInternalServerError(_RetriedStatusError, InternalServerError):
    """A 5xx that outlasted the retries."""


_RETRIED: dict[type[UnexpectedStatusError], type[_RetriedStatusError]] = {
    UnexpectedStatusError: RetriedStatusError,
    ConflictError: RetriedConflictError,
    RateLimitError: RetriedRateLimitError,
    InternalServerError: RetriedInternalServerError,
}


def retry_limit_error(error: UnexpectedStatusError, attempts: int) -> UnexpectedStatusError:
    """`error` as the error of its status that is also a `RetryLimitReachedError`."""
    cls = _RETRIED.get(type(error), RetriedStatusError)
    return cls(error.status, error.body, error.request_id, headers=error.headers, hint=error.hint,
               attempts=attempts)


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
        super().__init__(200, message, request_id)
        self.message = message  # as the server sent them, not parsed from a body
        self.type = type
        self.code = code
        self.param = param


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


class SchemaProblem(NamedTuple):
    """One way a JSON value does not fit a schema: `path` is where (``City.population``,
    ``items[2]``; empty for the whole value), `message` what is wrong there."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


#: At most this many problems are spelt out in a message (the rest are counted).
LISTED_PROBLEMS = 10


def list_problems(problems: Sequence[SchemaProblem], limit: int = LISTED_PROBLEMS) -> str:
    """The problems on one line, ``; ``-separated, the first `limit` of them and how many
    more there are."""
    listed = "; ".join(map(str, problems[:limit]))
    more = len(problems) - limit
    return listed + (f"; and {more} more" if more > 0 else "")


class OutputValidationError(LlmxError):
    """The model's structured output is not JSON or does not match the requested schema.

    `text` is the whole output as received; `errors` lists every problem found (a
    `SchemaProblem`: its path and what is wrong there), in the order the check met
    them; `reason` is all of them on one line.
    """

    def __init__(self, text: str, reason: str | Sequence[SchemaProblem]) -> None:
        self.text = text
        self.errors = [SchemaProblem("", reason)] if isinstance(reason, str) else list(reason)
        self.reason = list_problems(self.errors, len(self.errors))
        shown = shorten(text, 200)
        super().__init__(f"the model's output does not match the schema: {list_problems(self.errors)}; "
                         f"output: {shown!r}")


class MaxTurnsExceededError(LlmxError):
    """A `client.run` loop made `max_turns` model calls and the model still asked for
    tools. `history` holds every item of the run (the last tools' outputs included),
    to continue from with a larger `max_turns`."""

    def __init__(self, max_turns: int, history: list[Any]) -> None:
        self.max_turns = max_turns
        self.history = history
        super().__init__(f"the model still called tools after max_turns={max_turns} turns; "
                         "raise max_turns, or continue from the error's `history`")


class DeadlineExceededError(LlmxError):
    """The request's total `timeout` (retries, waiting for headers and reading the whole
    body) passed before the answer was complete."""

    def __init__(self, timeout: float, what: str) -> None:
        self.timeout = timeout
        super().__init__(f"the request's timeout of {timeout:g} s passed {what}")
