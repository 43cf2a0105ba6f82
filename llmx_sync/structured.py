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
  pinned ``llama-server`` ignores an object ``tool_choice`` ("type must be string")
  and, even with ``"required"`` and a tool-capable template, lets SmolLM2 answer in
  plain text, so it needs one of the other modes.
"""

from __future__ import annotations

import copy
import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import jiter

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
_NUMBER_CHARS = frozenset("0123456789+-.eE")


class PartialJson:
    """Follows a JSON text as it streams: `feed(delta)` gives the value parsed so far.

    Parsing is jiter's partial mode (incomplete strings are kept as far as they go,
    incomplete members left out). The whole text is parsed again at each delta, so
    two cheap checks avoid needless work and keep every value a prefix of the final
    one: whitespace between tokens changes nothing, and a number at the very end may
    still grow (``1`` → ``12``), so it waits for the next delta (or `finish()`).
    Telling both apart from text inside strings only needs to know whether the end of
    the text is inside a string, tracked by following quotes and backslashes.
    """

    __slots__ = ("_data", "_chunks", "_in_string", "_escaped", "_number_held", "_value")

    def __init__(self) -> None:
        self._data = b""
        self._chunks: list[str] = []
        self._in_string = False
        self._escaped = False
        self._number_held = False  # the last delta was not parsed because it ended in a number
        self._value: Any = UNCHANGED

    @property
    def value(self) -> Any:
        """The last value `feed` returned (None before any)."""
        return None if self._value is UNCHANGED else self._value

    @property
    def text(self) -> str:
        """All the text fed so far."""
        return "".join(self._chunks)

    def feed(self, delta: str) -> Any:
        """Add a delta; return the new partial value, or `UNCHANGED` when it is the same."""
        if not delta:
            return UNCHANGED
        was_in_string = self._in_string
        self._chunks.append(delta)
        # Lone surrogates (an emoji split between two deltas' JSON escapes) must not
        # stop the stream: they read as "?" until the final parse of the whole text.
        self._data += delta.encode("utf-8", "replace")
        self._track_strings(delta)
        if not was_in_string and not self._number_held and not delta.strip(_JSON_WHITESPACE):
            return UNCHANGED
        self._number_held = not self._in_string and delta[-1] in _NUMBER_CHARS and self._ends_in_number()
        if self._number_held:
            return UNCHANGED
        return self._parse()

    def finish(self) -> Any:
        """At the end of the text: the value a number held back at its end completes
        (a whole answer that is a number, e.g. ``42``); otherwise `UNCHANGED`."""
        if not self._number_held:
            return UNCHANGED
        self._number_held = False
        return self._parse()

    def _parse(self) -> Any:
        try:
            value = jiter.from_json(self._data, partial_mode="trailing-strings")
        except ValueError:  # e.g. only "-" or leading text so far: the final parse reports real errors
            return UNCHANGED
        if value == self._value:
            return UNCHANGED
        self._value = value
        return value

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

    def _ends_in_number(self) -> bool:
        # The trailing run of number characters is a number when it starts like one;
        # `true`/`false` also end in "e" but their run is just that "e".
        end = len(self._data)
        start = end
        while start > 0 and chr(self._data[start - 1]) in _NUMBER_CHARS:
            start -= 1
        return chr(self._data[start]) in "-0123456789"
