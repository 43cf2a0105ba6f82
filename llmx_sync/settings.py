"""Request settings and server quirks, each declared once with its default and its rule.

`RequestOptions` holds every per-request setting: what goes into the request body
(model, sampling, tools, usage), how it is sent (retries, timeouts, headers). A
`Provider` carries one as its defaults, a `Client.stream` call may pass another and
keyword overrides; `merge_options` lays them over each other in one place, and a
setting counts as given only where the caller named it. That is what lets a call's
``max_tokens=None`` (leave it out) win over a provider's 8192 without a sentinel value.

`Quirks` are what a server needs different from the protocol's letter (the `content`
of a tool-call message, the name of the token limit, how structured output and a
forced tool are asked for).

Every value is checked when the object is made, so bad settings fail before any I/O
with an `InvalidInputError` naming the setting.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from ._jsonrules import check_json_value, json_type_name
from .errors import InvalidInputError

__all__ = ["MAX_RETRIES", "Quirks", "RequestOptions", "merge_options", "options_from"]

#: The most retries a request may ask for: more only keeps a web worker waiting.
MAX_RETRIES: Final = 100

Check = Callable[[str, Any], None]


# --- the rules -----------------------------------------------------------------------


def _describe(value: Any) -> str:
    return f"{json_type_name(value)} {value!r}"


def rule(expected: str, test: Callable[[Any], bool]) -> Check:
    """A check that raises `InvalidInputError(where, "expected <expected>, got …")`."""

    def check(where: str, value: Any) -> None:
        if not test(value):
            raise InvalidInputError(where, f"expected {expected}, got {_describe(value)}")

    return check


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def optional(check: Check) -> Check:
    def optional(where: str, value: Any) -> None:
        if value is not None:
            check(where, value)

    return optional


def choice(*allowed: str) -> Check:
    return rule(" or ".join(map(repr, allowed)), lambda value: value in allowed)


def _json_data(check: Check) -> Check:
    """`check`, then: plain JSON data all the way down (it is sent as JSON)."""

    def json_data(where: str, value: Any) -> None:
        check(where, value)
        check_json_value(value, where)

    return json_data


BOOL = rule("True or False", lambda value: isinstance(value, bool))
STRING = rule("a string", lambda value: isinstance(value, str))
COUNT = rule("a non-negative integer", lambda value: _is_int(value) and value >= 0)
INTEGER = rule("an integer", _is_int)
NUMBER = rule("a finite number", _is_finite)
RETRIES = rule(f"an integer from 0 to {MAX_RETRIES}", lambda value: _is_int(value) and 0 <= value <= MAX_RETRIES)
SECONDS = rule("a finite number of seconds above 0", lambda value: _is_finite(value) and value > 0)
DELAY = rule("a finite number of seconds, 0 or more", lambda value: _is_finite(value) and value >= 0)
STOP = rule("a string or a list of strings",
             lambda value: isinstance(value, str) or (isinstance(value, (list, tuple))
                                                      and all(isinstance(s, str) for s in value)))
TOOL_CHOICE = _json_data(rule("'auto', 'none', 'required' or a tool-choice object",
                               lambda value: isinstance(value, (str, Mapping))))
JSON_OBJECT = _json_data(rule("a dict", lambda value: isinstance(value, Mapping)))
# Checked whole when the request is built (`structured.OutputSchema.for_target`).
RESPONSE_FORMAT = rule("a dataclass, a TypedDict or a pydantic model class, or a JSON Schema dict",
                        lambda value: isinstance(value, (type, Mapping)))


_TOKEN_CHARS: Final = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def check_header_name(where: str, name: Any) -> None:
    """A header name as HTTP allows it (a token), or `InvalidInputError`."""
    if not isinstance(name, str) or not name or not set(name) <= _TOKEN_CHARS:
        raise InvalidInputError(where, f"{name!r} is not a valid header name")


def check_header_value(where: str, text: Any) -> None:
    """A header value without a line break or NUL (which would split the header, and
    which http.client refuses only after the request started), or `InvalidInputError`.
    The value is never shown: any header may carry a credential."""
    if not isinstance(text, str):
        raise InvalidInputError(where, f"expected a string, got {json_type_name(text)}")
    if any(c in text for c in "\r\n\0"):
        raise InvalidInputError(where, "the value contains a line break or NUL: a key read from a file "
                                "often ends with a newline (strip it)")


def check_headers(where: str, value: Any) -> None:
    if not isinstance(value, Mapping):
        raise InvalidInputError(where, f"expected a dict of header names to values, got {_describe(value)}")
    for name, text in value.items():
        check_header_name(where, name)
        check_header_value(f"{where}[{name!r}]", text)


def setting(default: Any, check: Check) -> Any:
    return field(default=default, metadata={"check": check})


def validate_fields(obj: Any) -> None:
    for spec in dataclasses.fields(obj):
        spec.metadata["check"](spec.name, getattr(obj, spec.name))


# --- request options -------------------------------------------------------------------

OrphanToolCalls = Literal["drop", "truncate", "keep"]


@dataclass(frozen=True, kw_only=True)
class RequestOptions:
    """Every per-request setting, with the SDK's defaults.

    Body: `model`; `max_tokens` (None leaves it out); `temperature`, `top_p`, `stop`,
    `seed`, `tool_choice`, `parallel_tool_calls` (sent when not None);
    `include_usage` (ask for a final usage chunk); `cache_control` (a prompt-caching
    breakpoint on the last tool); `response_format` (structured output: a dataclass,
    TypedDict or pydantic model class, or a JSON Schema dict); `orphan_tool_calls` (what happens to a function call
    with no output after it: ``"drop"`` it alone, ``"truncate"`` everything from it on
    as llmx did, ``"keep"`` it); `extra_body` (merged into the body last, so its keys
    win). Sending: `extra_headers` (sent last, so they win), `subagent` (the
    ``x-openai-subagent`` header), `request_max_retries` and `max_retry_delay`
    (the longest wait between tries a server may ask for), `connect_timeout`,
    `idle_timeout` (seconds allowed between two reads of the body) and `timeout` (the
    request's total time: retries, waiting for headers and the whole body; None: no
    limit).

    Only the settings named when it is made count as given (`given`): merging lays
    those, and only those, over another `RequestOptions`.
    """

    model: str | None = setting(None, optional(STRING))
    max_tokens: int | None = setting(8192, optional(COUNT))
    temperature: float | None = setting(None, optional(NUMBER))
    top_p: float | None = setting(None, optional(NUMBER))
    stop: str | Sequence[str] | None = setting(None, optional(STOP))
    seed: int | None = setting(None, optional(INTEGER))
    tool_choice: str | Mapping[str, Any] | None = setting(None, optional(TOOL_CHOICE))
    parallel_tool_calls: bool | None = setting(None, optional(BOOL))
    include_usage: bool = setting(True, BOOL)
    cache_control: bool = setting(False, BOOL)
    orphan_tool_calls: OrphanToolCalls = setting("drop", choice("drop", "truncate", "keep"))
    response_format: Any = setting(None, optional(RESPONSE_FORMAT))
    extra_body: Mapping[str, Any] | None = setting(None, optional(JSON_OBJECT))
    extra_headers: Mapping[str, str] | None = setting(None, optional(check_headers))
    subagent: str | None = setting(None, optional(STRING))
    request_max_retries: int = setting(4, RETRIES)
    max_retry_delay: float = setting(60.0, DELAY)
    connect_timeout: float = setting(10.0, SECONDS)
    idle_timeout: float = setting(300.0, SECONDS)
    timeout: float | None = setting(None, optional(SECONDS))

    # Which settings the caller named: `__new__` sees the same keywords as `__init__`,
    # and keeping them out of the dataclass fields keeps them out of __init__,
    # __repr__ and __eq__.
    def __new__(cls, **given: Any) -> RequestOptions:
        self = super().__new__(cls)
        object.__setattr__(self, "_given", frozenset(given))
        return self

    def __post_init__(self) -> None:
        validate_fields(self)

    @property
    def given(self) -> frozenset[str]:
        """The names of the settings given when this object was made (or merged)."""
        given: frozenset[str] = self.__dict__["_given"]
        return given


#: The names of every setting, for error messages and for sorting keyword arguments.
OPTION_NAMES: Final = frozenset(spec.name for spec in dataclasses.fields(RequestOptions))


def options_from(settings: Mapping[str, Any]) -> RequestOptions:
    """`RequestOptions(**settings)`, with an unknown name reported as an
    `InvalidInputError` that lists the known ones (rather than a bare TypeError)."""
    unknown = sorted(set(settings) - OPTION_NAMES)
    if unknown:
        raise InvalidInputError(unknown[0], f"unknown setting (known: {', '.join(sorted(OPTION_NAMES))})")
    return RequestOptions(**settings)


def merge_options(*layers: RequestOptions | None) -> RequestOptions:
    """The layers laid over each other in order: each one's given settings replace
    what the layers before it said. The SDK's defaults are under them all."""
    values: dict[str, Any] = {}
    for layer in layers:
        if layer is not None:
            values.update((name, getattr(layer, name)) for name in layer.given)
    return RequestOptions(**values)


# --- server quirks ---------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Quirks:
    """What a server needs that differs from the protocol's letter.

    `tool_call_content`: the `content` of an assistant message that only carries tool
    calls. ``""`` by default: llama-cpp-python's server answers 500 to null, and a
    LiteLLM proxy drops a null `content` (a chat template that reads it then fails
    after the 200, and the stream is an empty answer); every server we know accepts
    the empty string. None sends JSON null, as OpenAI documents (the `openai` built-in
    does).

    `max_tokens_param`: the name the token limit is sent under. OpenAI's current
    models refuse ``max_tokens`` ("Use 'max_completion_tokens' instead"); most other
    servers know only ``max_tokens``.

    `structured_output`: how a `response_format` is asked for (see `structured.py`):
    ``"json_schema"`` (OpenAI's structured outputs; vLLM, Ollama, LiteLLM,
    llama-server), ``"json_object"`` with the schema in `response_format`
    (llama-cpp-python's server, llama-server), or ``"tools"`` (a forced function call
    whose arguments are the object). None (the default): ``"json_schema"``, and when
    the server refuses it, the next mode that it accepts, remembered by the client.

    `forced_tool_choice`: how `tool_choice` forcing one named function is sent:
    ``"object"`` (``{"type": "function", "function": {"name": …}}``, as OpenAI
    documents; llama-cpp-python forces only with it) or ``"required"`` with that
    function alone in `tools` (for servers whose `tool_choice` takes only a string:
    llama.cpp's llama-server ignores the object). None (the default): the object,
    unless the server identifies itself as llama-server, which the client remembers.
    """

    tool_call_content: str | None = setting("", optional(STRING))
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = setting(
        "max_tokens", choice("max_tokens", "max_completion_tokens"))
    structured_output: Literal["json_schema", "json_object", "tools"] | None = setting(
        None, optional(choice("json_schema", "json_object", "tools")))
    forced_tool_choice: Literal["object", "required"] | None = setting(
        None, optional(choice("object", "required")))

    def __post_init__(self) -> None:
        validate_fields(self)


QUIRK_NAMES: Final = frozenset(spec.name for spec in dataclasses.fields(Quirks))
