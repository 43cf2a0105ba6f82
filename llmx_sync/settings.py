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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar

from ._jsonrules import check_json_value, check_unicode, json_type_name
from .errors import InvalidInputError

__all__ = ["MAX_RETRIES", "MAX_SECONDS", "Quirks", "RequestOptions", "as_part", "merge_options", "options_from"]

#: The most retries a request may ask for: more only keeps a web worker waiting.
MAX_RETRIES: Final = 100
#: The longest time any setting may name: longer is a mistake (a number of milliseconds
#: given as seconds), and past about 3e8 s the C calls under the sockets overflow.
MAX_SECONDS: Final = 365 * 24 * 3600.0
_I64: Final = 2**63 - 1  # integers the servers (and llmx's serde) read

Check = Callable[[str, Any], None]
_Part = TypeVar("_Part")


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


def _string(where: str, value: Any) -> None:
    if not isinstance(value, str):
        raise InvalidInputError(where, f"expected a string, got {_describe(value)}")
    check_unicode(where, value)


def at_most(check: Check, limit: float, what: str) -> Check:
    """`check`, then: no more than `limit` (`what` says it in words)."""

    def bounded(where: str, value: Any) -> None:
        check(where, value)
        if value > limit:
            raise InvalidInputError(where, f"expected at most {what}, got {_describe(value)}")

    return bounded


BOOL = rule("True or False", lambda value: isinstance(value, bool))
STRING: Check = _string
COUNT = at_most(rule("a non-negative integer", lambda value: _is_int(value) and value >= 0), _I64, "2**63 - 1")
INTEGER = at_most(rule("an integer", lambda value: _is_int(value) and value >= -_I64 - 1), _I64, "2**63 - 1")
NUMBER = rule("a finite number", _is_finite)
RETRIES = rule(f"an integer from 0 to {MAX_RETRIES}", lambda value: _is_int(value) and 0 <= value <= MAX_RETRIES)
_YEAR = "a year (31536000 seconds): a longer time is a mistake (milliseconds given as seconds?)"
SECONDS = at_most(rule("a finite number of seconds above 0", lambda value: _is_finite(value) and value > 0),
                  MAX_SECONDS, _YEAR)
DELAY = at_most(rule("a finite number of seconds, 0 or more", lambda value: _is_finite(value) and value >= 0),
                MAX_SECONDS, _YEAR)
STOP = rule("a string or a list of strings",
             lambda value: isinstance(value, str) or (isinstance(value, (list, tuple))
                                                      and all(isinstance(s, str) for s in value)))
TOOL_CHOICE = _json_data(rule("'auto', 'none', 'required' or a tool-choice object",
                               lambda value: isinstance(value, (str, Mapping))))
JSON_OBJECT = _json_data(rule("a dict", lambda value: isinstance(value, Mapping)))
def _response_format(where: str, value: Any) -> None:
    """A class, or a schema dict of plain JSON (nesting bounded); checked whole when the
    request is built (`structured.OutputSchema.for_target`)."""
    if not isinstance(value, (type, Mapping)):
        raise InvalidInputError(where, "expected a dataclass, a TypedDict or a pydantic model class, or a JSON "
                                f"Schema dict, got {_describe(value)}")
    if isinstance(value, Mapping):
        check_json_value(value, where)


RESPONSE_FORMAT: Check = _response_format


_TOKEN_CHARS: Final = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def check_header_name(where: str, name: Any) -> None:
    """A header name as HTTP allows it (a token), or `InvalidInputError`."""
    if not isinstance(name, str) or not name or not set(name) <= _TOKEN_CHARS:
        raise InvalidInputError(where, f"{name!r} is not a valid header name")


def check_header_value(where: str, text: Any) -> None:
    """A header value without a line break or NUL (which would split the header, and
    which http.client refuses only after the request started), all Latin-1 (what
    http.client encodes headers in: anything else failed inside the send with a
    `UnicodeEncodeError` quoting the whole header), or `InvalidInputError`. The value is
    never shown, only the position of the character at fault: any header may carry a
    credential."""
    if not isinstance(text, str):
        raise InvalidInputError(where, f"expected a string, got {json_type_name(text)}")
    if any(c in text for c in "\r\n\0"):
        raise InvalidInputError(where, "the value contains a line break or NUL: a key read from a file "
                                "often ends with a newline (strip it)")
    try:
        text.encode("latin-1")
    except UnicodeEncodeError as exc:
        problem = (f"character {exc.start + 1} (U+{ord(text[exc.start]):04X}) cannot be sent in an HTTP header, "
                   "which takes Latin-1 only: a key pasted from a web page or a document often carries an "
                   "invisible character (U+200B is a zero-width space); copy it again or type it")
    else:
        return
    raise InvalidInputError(where, problem)


def check_headers(where: str, value: Any) -> None:
    if not isinstance(value, Mapping):
        raise InvalidInputError(where, f"expected a dict of header names to values, got {_describe(value)}")
    for name, text in value.items():
        check_header_name(where, name)
        check_header_value(f"{where}[{name!r}]", text)


def setting(default: Any, check: Check) -> Any:
    return field(default=default, metadata={"check": check})


def validate_fields(obj: Any, names: Iterable[str] | None = None) -> None:
    """Check the fields of `obj` named in `names` (None: every field) with their checks."""
    for spec in dataclasses.fields(obj):
        if names is None or spec.name in names:
            spec.metadata["check"](spec.name, getattr(obj, spec.name))


def check_keywords(cls: type, args: tuple[Any, ...], names: Iterable[str]) -> None:
    """`InvalidInputError` for what the dataclass `cls`'s ``__init__`` would refuse with a
    bare `TypeError`: a positional argument, or a name that is none of its fields."""
    if args:
        raise InvalidInputError(cls.__name__, f"takes keyword arguments only, got {len(args)} positional")
    known = {spec.name for spec in dataclasses.fields(cls)}
    unknown = sorted(set(names) - known)
    if unknown:
        raise InvalidInputError(unknown[0], f"unknown setting of {cls.__name__} (known: {', '.join(sorted(known))})")


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
    subagent: str | None = setting(None, optional(check_header_value))  # sent as a header
    request_max_retries: int = setting(4, RETRIES)
    max_retry_delay: float = setting(60.0, DELAY)
    connect_timeout: float = setting(10.0, SECONDS)
    idle_timeout: float = setting(300.0, SECONDS)
    timeout: float | None = setting(None, optional(SECONDS))

    # Which settings the caller named: `__new__` sees the same keywords as `__init__`,
    # and keeping them out of the dataclass fields keeps them out of __init__,
    # __repr__ and __eq__.
    def __new__(cls, *args: Any, **given: Any) -> RequestOptions:
        check_keywords(cls, args, given)
        self = super().__new__(cls)
        object.__setattr__(self, "_given", frozenset(given))
        return self

    def __post_init__(self) -> None:
        # The settings not given are the defaults above, valid by construction; every
        # request makes two of these (its keywords, then the merged layers).
        validate_fields(self, self.given)

    @property
    def given(self) -> frozenset[str]:
        """The names of the settings given when this object was made (or merged)."""
        given: frozenset[str] = self.__dict__["_given"]
        return given


#: The names of every setting, for error messages and for sorting keyword arguments.
OPTION_NAMES: Final = frozenset(spec.name for spec in dataclasses.fields(RequestOptions))


def options_from(settings: Mapping[str, Any]) -> RequestOptions:
    """`RequestOptions(**settings)`: an unknown name is an `InvalidInputError` that lists
    the known ones (rather than a bare TypeError), and so is a name that is not text."""
    names = [name for name in settings if not isinstance(name, str)]
    if names:
        raise InvalidInputError("options", f"setting names must be strings, got {names[0]!r}")
    return RequestOptions(**settings)


def as_part(cls: type[_Part], where: str, value: Any) -> _Part:
    """`value` as one of a provider's or a request's parts (`RequestOptions`, `Quirks`,
    `Connection`): the part itself, or a dict of its fields made into one (checked as
    always); anything else is an `InvalidInputError` naming `where`."""
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise InvalidInputError(where, f"expected {cls.__name__} or a dict of its fields, got {_describe(value)}")
    if not all(isinstance(name, str) for name in value):
        raise InvalidInputError(where, f"the names of a {cls.__name__} dict must be strings")
    try:
        return cls(**value)
    except InvalidInputError as exc:  # named as the caller wrote it: defaults.timeout
        error = InvalidInputError(f"{where}.{exc.where}", exc.problem)
    raise error


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

    def __new__(cls, *args: Any, **given: Any) -> Quirks:
        check_keywords(cls, args, given)
        return super().__new__(cls)

    def __post_init__(self) -> None:
        validate_fields(self)


QUIRK_NAMES: Final = frozenset(spec.name for spec in dataclasses.fields(Quirks))
