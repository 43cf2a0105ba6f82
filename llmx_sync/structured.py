"""Structured output: the schema a reply must follow, its request shapes, and parsing.

`OutputSchema.for_target(X)` describes a dataclass, a TypedDict, a pydantic model or
a JSON Schema dict; `response_format_body(schema, mode)` gives the request keys for
one of three ways of asking a server for it; `OutputSchema.parse(text)` checks the
reply and builds the value; `PartialJson` follows a reply as it streams.

Which mode a server needs (the local servers checked with the bundled SmolLM2 model):

- ``"json_schema"`` (OpenAI's structured outputs): OpenAI, vLLM, Ollama, LiteLLM
  and llama.cpp's ``llama-server``, which turns ``json_schema.schema`` into a
  grammar. llama-cpp-python's server refuses it: its request model only takes
  ``"text"`` or ``"json_object"`` (a validation error, sent as HTTP 500).
- ``"json_object"`` with the schema inside ``response_format``: llama-cpp-python's
  server (a grammar from ``response_format.schema``; any JSON when the schema cannot
  be turned into one) and ``llama-server`` (the same). OpenAI documents no schema
  in this mode (only "valid JSON", with a prompt that says JSON): use
  ``"json_schema"`` there.
- ``"tools"``: a forced call of a function whose parameters are the schema, for
  servers that constrain tool arguments but lack response formats. The object then
  arrives as the call's arguments, not as text; the schema's root must be an object.
  llama-cpp-python's server builds a grammar from the named tool's parameters; the
  pinned ``llama-server`` ignores an object ``tool_choice`` ("type must be string"),
  so the call is forced there with ``"required"`` (see `negotiation.py`), which its
  grammar lets SmolLM2 put off with text until ``max_tokens``: it needs one of the
  other modes.

With no mode set by the provider, the client tries them in the order of
`STRUCTURED_OUTPUT_MODES` until the server accepts one (`negotiation.py`).
"""

from __future__ import annotations

import copy
import enum
import json
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import jiter

from ._jsonrules import check_json_value
from .errors import InvalidInputError, OutputValidationError
from .schema import (
    SchemaMismatch,
    check_json_schema,
    convert,
    is_object_class,
    is_strict_compatible,
    json_schema,
    json_schema_problem,
)
from .tools import FunctionTool, chat_function_tool

# OpenAI's rule for json_schema names and function names.
SCHEMA_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")

StructuredOutputMode = Literal["json_schema", "json_object", "tools"]
STRUCTURED_OUTPUT_MODES: tuple[StructuredOutputMode, ...] = ("json_schema", "json_object", "tools")


def _schema_name(class_name: str) -> str:
    """A class name as a valid schema name: non-ASCII letters replaced, cut to 64 characters."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", class_name)[:64]


@dataclass(frozen=True, slots=True)
class OutputSchema:
    """What the model's reply must be: a JSON Schema, its name, and how to build the value.

    `target` is the class replies become (None for a JSON Schema dict, whose replies
    stay plain JSON values).
    """

    name: str
    schema: dict[str, Any]
    strict: bool
    target: type | None = field(default=None, repr=False)

    @classmethod
    def for_target(cls, target: Any, *, name: str | None = None) -> OutputSchema:
        """The output schema of a dataclass, a TypedDict, a pydantic model or a JSON Schema dict.

        `name` defaults to the class name (``"output"`` for a dict) and must match
        ``^[a-zA-Z0-9_-]{1,64}$``. Raises `InvalidInputError`.
        """
        if isinstance(target, Mapping):
            check_json_value(target, "response_format")  # plain JSON, nesting bounded (before the deep copy)
            schema = copy.deepcopy(dict(target))
            check_json_schema(schema, where="response_format")
            output_name, target_class = name or "output", None
        elif is_object_class(target):
            schema = json_schema(target, where=target.__name__)
            output_name, target_class = name or _schema_name(target.__name__), target
        else:
            raise InvalidInputError("response_format", "expected a dataclass, a TypedDict, a pydantic model or a "
                                                       f"JSON Schema dict, got {target!r}")
        if not SCHEMA_NAME.match(output_name):
            raise InvalidInputError("response_format", f"the name {output_name!r} must match {SCHEMA_NAME.pattern}")
        return cls(output_name, schema, is_strict_compatible(schema), target_class)

    def parse(self, text: str) -> Any:
        """The reply as the target's value (an instance, or the JSON value for a dict schema).

        Raises `OutputValidationError` with the text and every problem found.
        """
        try:
            return self._parse(text)
        except RecursionError:  # json.loads, the validator and the converters recurse
            problem = "nested too deep to read"
        raise OutputValidationError(text, problem)

    def _parse(self, text: str) -> Any:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise OutputValidationError(text, f"not valid JSON ({exc.msg} at {exc.lineno}:{exc.colno})") from None
        if self.target is None:
            problem = json_schema_problem(value, self.schema)
            if problem is not None:
                raise OutputValidationError(text, problem.problems)
            return value
        try:
            return convert(value, self.target, where=self.target.__name__)
        except SchemaMismatch as exc:
            raise OutputValidationError(text, exc.problems) from None


def requested_output(output_schema: Any, response_format: Any) -> OutputSchema | None:
    """The structured output a request asks for: its `response_format` setting, else the
    prompt's `output_schema` (llmx's name for it), else None."""
    target = response_format if response_format is not None else output_schema
    return None if target is None else OutputSchema.for_target(target)


# --- request shapes --------------------------------------------------------------------


def response_format_body(schema: OutputSchema, mode: StructuredOutputMode) -> dict[str, Any]:
    """The request body keys that ask for `schema` in `mode` (see the module docstring).

    ``"tools"`` gives ``tools`` (one entry, to append to the request's own tools) and
    ``tool_choice`` naming it.
    """
    if mode == "json_schema":
        return {"response_format": {"type": "json_schema", "json_schema": {
            "name": schema.name, "schema": copy.deepcopy(schema.schema), "strict": schema.strict}}}
    if mode == "json_object":
        return {"response_format": {"type": "json_object", "schema": copy.deepcopy(schema.schema)}}
    if mode == "tools":
        if schema.schema.get("type") != "object":
            raise InvalidInputError("response_format", "the tools mode needs an object schema "
                                                       "(function arguments are a JSON object)")
        answer = FunctionTool(schema.name, "Give the final answer as the arguments of this function.",
                              schema.schema, schema.strict)
        return {"tools": [chat_function_tool(answer)],
                "tool_choice": {"type": "function", "function": {"name": schema.name}}}
    raise InvalidInputError("structured_output", f"unknown mode {mode!r}; expected one of "
                                                 + ", ".join(STRUCTURED_OUTPUT_MODES))


# --- streaming -----------------------------------------------------------------------------


class _Unchanged(enum.Enum):
    UNCHANGED = "unchanged"


UNCHANGED = _Unchanged.UNCHANGED
_JSON_WHITESPACE = " \t\n\r"
_NUMBER_CHARS = "0123456789+-.eE"
# When a parse is worth its cost (see PartialJson): once the text grew by this fraction
# since the last parse, or once this many times what the last parse took has passed.
_GROWTH = 1 / 8
_PATIENCE = 20.0


class PartialJson:
    """Follows a JSON text as it streams: `feed(delta)` adds to it, `parse()` gives the
    value parsed so far, and `due()` says whether a parse now is worth its cost.

    Parsing is jiter's partial mode (incomplete strings are kept as far as they go,
    incomplete members left out), and it reads the whole text again each time, so how
    often it runs decides what following a long answer costs. `due()` is false when
    nothing arrived since the last parse that could change the value: whitespace between
    tokens, or a number at the very end, which may still grow (``1`` → ``12``) and waits
    for what follows it (or for `finish()`); so each value is a prefix of the final one.
    Otherwise it is true once the text has grown by an eighth since the last parse (the
    parses of a long text then cost about nine parses of the whole, however it was cut
    into deltas), or once the time since the last parse is twenty times what that parse
    took (a slow stream gets a value at each call, whatever its length, and parsing
    takes at most about 5 % of the time). Telling whitespace and numbers apart from text
    inside strings only needs to know whether the end of the text is inside a string,
    tracked by following quotes and backslashes.
    """

    __slots__ = ("_chunks", "_size", "_in_string", "_escaped", "_run_first", "_number_held", "_changed", "_value",
                 "_next_size", "_parsed_at", "_parse_cost", "_clock")

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._chunks: list[str] = []
        self._size = 0  # characters fed
        self._in_string = False
        self._escaped = False
        self._run_first = ""  # the first of the number characters the text ends with ("" if none)
        self._number_held = False  # the text ends in a number, outside a string
        self._changed = False  # something that may change the value arrived since the last parse
        self._value: Any = UNCHANGED
        self._next_size = 0  # the size at which growth alone makes a parse due
        self._parsed_at = 0.0
        self._parse_cost = math.inf  # (no parse yet: only growth counts)
        self._clock = clock

    @property
    def value(self) -> Any:
        """The last value `parse` returned (None before any)."""
        return None if self._value is UNCHANGED else self._value

    @property
    def text(self) -> str:
        """All the text fed so far."""
        return "".join(self._chunks)

    def feed(self, delta: str) -> None:
        """Add a delta of the text."""
        if not delta:
            return
        was_in_string = self._in_string
        self._chunks.append(delta)
        self._size += len(delta)
        self._track_strings(delta)
        if was_in_string or delta.strip(_JSON_WHITESPACE):
            self._changed = True
        # The trailing run of number characters is a number when it starts like one;
        # `true`/`false` also end in "e" but their run is just that "e". The run may span
        # several deltas: its first character is kept, not looked for again.
        rest = delta.rstrip(_NUMBER_CHARS)
        if rest:
            self._run_first = delta[len(rest)] if len(rest) < len(delta) else ""
        elif not self._run_first:
            self._run_first = delta[0]
        self._number_held = not self._in_string and self._run_first != "" and self._run_first in "-0123456789"

    def due(self) -> bool:
        """Whether to parse now (see the class docstring)."""
        if not self._changed or self._number_held:
            return False
        return (self._size >= self._next_size
                or self._clock() - self._parsed_at > _PATIENCE * self._parse_cost)

    def parse(self) -> Any:
        """The value of the text so far, or `UNCHANGED` when nothing that could change it
        arrived since the last parse, or when it is not JSON yet (leading prose, a lone
        ``-``: the final parse of the whole text reports real errors)."""
        if not self._changed:
            return UNCHANGED
        started = self._clock()
        text = "".join(self._chunks)
        self._chunks = [text]
        self._changed = False
        self._next_size = self._size + math.ceil(self._size * _GROWTH)
        try:
            # Lone surrogates (an emoji split between two deltas' JSON escapes) must not
            # stop the stream: they read as "?" until the final parse of the whole text.
            value = jiter.from_json(text.encode("utf-8", "replace"), partial_mode="trailing-strings")
        except ValueError:
            value = UNCHANGED
        self._parsed_at = self._clock()
        self._parse_cost = self._parsed_at - started
        if value is not UNCHANGED:
            self._value = value
        return value

    def finish(self) -> Any:
        """At the end of the text: its whole value when anything arrived since the last
        parse (a number held back at the end among it), so the last value is exact;
        otherwise `UNCHANGED`."""
        self._number_held = False
        return self.parse()

    def _track_strings(self, delta: str) -> None:
        in_string, escaped = self._in_string, self._escaped
        for char in delta:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = in_string
            elif char == '"':
                in_string = not in_string
        self._in_string, self._escaped = in_string, escaped
