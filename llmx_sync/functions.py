"""Tools made from plain Python functions: `tool(fn)`.

The JSON Schema of the arguments comes from the function's type hints (see
`llmx_sync.schema`), its description and each parameter's from the docstring
(Google, NumPy or reST style). `PythonTool.run(arguments)` turns the model's JSON
arguments into typed keyword arguments, calls the function and returns its output
as text; whatever went wrong with the arguments is a `ToolArgumentsError` whose
message is written for the model.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import inspect
import json
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

from ._jsonrules import check_json_value
from .errors import InvalidInputError, LlmxError, SchemaProblem, list_problems, shorten
from .schema import (
    NO_DEFAULT,
    FieldSpec,
    SchemaMismatch,
    check_json_schema,
    convert_fields,
    is_pydantic_model,
    is_strict_compatible,
    json_schema_problem,
    object_schema,
)
from .tools import FunctionTool

if TYPE_CHECKING:
    import docstring_parser

# What OpenAI accepts as a function name; other servers are at least as lenient.
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_PREVIEW_CHARS = 200


class ToolResultError(LlmxError, TypeError):
    """What a tool returned cannot be sent to the model; the message names its type.

    `value` is what the function returned.
    """

    def __init__(self, value: object, problem: str) -> None:
        self.value = value
        super().__init__(problem)


class ToolArgumentsError(LlmxError, ValueError):
    """The model's arguments for a tool cannot be used; the message says why, for the model.

    `arguments` is the text the model sent, `problem` the reason, e.g.
    ``argument 'days': expected an integer, got "three"``.
    """

    def __init__(self, arguments: str, problem: str) -> None:
        self.arguments = arguments
        self.problem = problem
        super().__init__(problem)


@dataclass(slots=True, kw_only=True)
class PythonTool(FunctionTool):
    """A `FunctionTool` that also holds the function it describes; calling it calls the function.

    `fields` are the declared parameters when the schema came from the type hints
    (arguments are converted to those types); None when `parameters=` was given
    (arguments are validated against that schema and passed as JSON values).
    """

    function: Callable[..., Any]
    fields: tuple[FieldSpec, ...] | None = field(default=None, repr=False)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    def parse_arguments(self, arguments: str) -> dict[str, Any]:
        """The model's JSON arguments as keyword arguments of the function.

        An empty text counts as ``{}``. Raises `ToolArgumentsError`.
        """
        data = _decode_arguments(arguments)
        if self.fields is None:
            problem = json_schema_problem(data, self.parameters)
            if problem is not None:
                raise ToolArgumentsError(arguments, _argument_problem(problem))
            return typing.cast(dict[str, Any], data)
        try:
            return convert_fields(data, self.fields, where="", noun="argument")
        except SchemaMismatch as exc:
            raise ToolArgumentsError(arguments, _argument_problem(exc)) from None

    def run(self, arguments: str) -> str:
        """Parse `arguments`, call the function and return its output as text. An
        ``async def`` function is run to its end with `asyncio.run`, in this thread
        (which must have no event loop running: the tool loop's threads have none).

        Raises `ToolArgumentsError` for bad arguments and `ToolResultError` for a
        result that is not data (see `tool_output_text`); the function's own exceptions
        propagate unchanged.
        """
        result = self.function(**self.parse_arguments(arguments))
        if inspect.iscoroutine(result):
            import asyncio  # here: it imports ssl, which `import llmx_sync` leaves for its first use

            result = asyncio.run(result)
        return tool_output_text(result)


def _preview(text: str) -> str:
    return repr(shorten(text, _PREVIEW_CHARS))


def _decode_arguments(arguments: str) -> Any:
    if not arguments.strip():
        return {}
    try:
        data = json.loads(arguments)
    except json.JSONDecodeError as exc:
        raise ToolArgumentsError(
            arguments, f"arguments are not valid JSON ({exc.msg} at {exc.lineno}:{exc.colno}): {_preview(arguments)}"
        ) from None
    if not isinstance(data, dict):
        raise ToolArgumentsError(arguments, f"arguments must be a JSON object, got {_preview(arguments)}")
    return data


def _argument_problem(exc: SchemaMismatch) -> str:
    """Every problem of the arguments, so the model can fix them all in its next call."""
    return list_problems([SchemaProblem(f"argument '{p.path}'", p.message) if p.path else p
                          for p in exc.problems])


# --- output -----------------------------------------------------------------------


_RESULT_TYPES = ("a str, a number, a bool, None, a list or dict of those, a dataclass, a TypedDict "
                 "or a pydantic model")


def _json_default(value: Any) -> Any:
    """What `json.dumps` writes for the values it does not know: dataclasses and pydantic
    models as objects, Enum members as their values, sets as lists, dates and times in ISO
    8601. Anything else is refused: its ``str()`` would be a repr (a generator, an
    object), which tells the model nothing."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    if is_pydantic_model(type(value)):
        return value.model_dump(mode="json")
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        return list(value)
    if isinstance(value, (datetime.date, datetime.time)):  # datetime is a date
        return value.isoformat()
    raise ToolResultError(value, f"{_a(value)} cannot be sent to the model")


def _a(value: Any) -> str:
    name = type(value).__qualname__
    return f"an {name}" if name[:1].lower() in "aeiou" else f"a {name}"


def tool_output_text(value: Any) -> str:
    """A function's return value as the text sent to the model.

    A string as is, None as ``""``, anything else as compact JSON (dataclasses and
    pydantic models as objects, Enum members as their values, sets as lists, dates and
    times in ISO 8601), non-ASCII kept. Raises `ToolResultError` naming the type of
    anything else (a generator, an object, a coroutine, a float that is not finite, a
    key that is not text, nesting past the recursion limit): its repr is not an answer.
    """
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_json_default,
                          allow_nan=False)
    except ToolResultError as exc:
        where = "" if exc.value is value else f", holding {_a(exc.value)}"
        problem = f"the tool returned {_a(value)}{where}, which is not data the model can read"
    except (TypeError, ValueError, RecursionError) as exc:  # a bad key, NaN, a cycle, nesting
        problem = f"the tool returned {_a(value)} that is not JSON data ({exc})"
    raise ToolResultError(value, f"{problem}; return {_RESULT_TYPES}")


# --- building a tool -----------------------------------------------------------------


def _description(doc: docstring_parser.Docstring) -> str:
    return "\n\n".join(part for part in (doc.short_description, doc.long_description) if part)


def _signature_fields(fn: Callable[..., Any], where: str, doc: docstring_parser.Docstring) -> tuple[FieldSpec, ...]:
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except (NameError, TypeError) as exc:
        raise InvalidInputError(f"{where}()", f"cannot resolve the type hints: {exc}") from None
    descriptions = {param.arg_name: param.description for param in doc.params}
    fields = []
    for param in inspect.signature(fn).parameters.values():
        place = f"{where}({param.name})"
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise InvalidInputError(place, "*args and **kwargs cannot be described to a model; "
                                           "declare each parameter by name, or pass parameters=")
        if param.kind is param.POSITIONAL_ONLY:
            raise InvalidInputError(place, "a positional-only parameter cannot be given by name from JSON arguments")
        if param.name not in hints:
            raise InvalidInputError(place, f"has no type hint; annotate it (e.g. `{param.name}: str`)")
        no_default = param.default is param.empty
        fields.append(FieldSpec(param.name, hints[param.name], no_default, descriptions.get(param.name),
                                NO_DEFAULT if no_default else param.default))
    return tuple(fields)


def _build(fn: Callable[..., Any], name: str | None, description: str | None,
           parameters: dict[str, Any] | None, strict: bool | None) -> PythonTool:
    if not callable(fn):
        raise InvalidInputError("tool", f"expected a function, got {type(fn).__name__}")
    fn_name = getattr(fn, "__name__", None)
    tool_name = name if name is not None else fn_name
    if not isinstance(tool_name, str) or not TOOL_NAME.match(tool_name):
        raise InvalidInputError(f"tool({fn_name or type(fn).__name__})",
                                f"the tool name {tool_name!r} must match {TOOL_NAME.pattern}; pass name=")
    if description is not None and not isinstance(description, str):
        raise InvalidInputError(f"{tool_name}: description", f"expected a string, got {type(description).__name__}")
    if strict is not None and not isinstance(strict, bool):
        raise InvalidInputError(f"{tool_name}: strict", f"expected True, False or None, got {strict!r}")
    import docstring_parser  # when the first tool is made (10 ms at import time otherwise)

    doc = docstring_parser.parse(inspect.getdoc(fn) or "")
    fields: tuple[FieldSpec, ...] | None = None
    if parameters is None:
        fields = _signature_fields(fn, fn_name or tool_name, doc)
        parameters = object_schema(fields, where=fn_name or tool_name, parameters=True)
    else:
        check_json_value(parameters, f"{tool_name}: parameters")  # plain JSON, nesting bounded
        check_json_schema(parameters, where=f"{tool_name}: parameters")
    return PythonTool(
        name=tool_name,
        description=_description(doc) if description is None else description,
        parameters=parameters,
        strict=is_strict_compatible(parameters) if strict is None else strict,
        function=fn,
        fields=fields,
    )


@overload
def tool(fn: Callable[..., Any], *, name: str | None = None, description: str | None = None,
         parameters: dict[str, Any] | None = None, strict: bool | None = None) -> PythonTool: ...


@overload
def tool(fn: None = None, *, name: str | None = None, description: str | None = None,
         parameters: dict[str, Any] | None = None,
         strict: bool | None = None) -> Callable[[Callable[..., Any]], PythonTool]: ...


def tool(fn: Callable[..., Any] | None = None, *, name: str | None = None, description: str | None = None,
         parameters: dict[str, Any] | None = None,
         strict: bool | None = None) -> PythonTool | Callable[[Callable[..., Any]], PythonTool]:
    """A `PythonTool` from a function: ``@tool``, ``@tool(name=...)`` or ``tool(fn)``.

    - `name`: defaults to the function's ``__name__``.
    - `description`: defaults to the docstring's summary and long description;
      each parameter's description comes from the docstring's parameter section.
    - `parameters`: a JSON Schema that replaces the one built from the type hints;
      arguments are then validated with it and passed as plain JSON values (the
      function's signature is not inspected).
    - `strict`: defaults to whether OpenAI's strict mode accepts the schema (every
      parameter required, only supported keywords).

    Every parameter needs a type hint; ``*args``, ``**kwargs`` and positional-only
    parameters, or unsupported hints, raise `InvalidInputError` naming the
    parameter, e.g. ``get_weather(when): unsupported type set[str]; ...``.
    """
    def build(function: Callable[..., Any]) -> PythonTool:
        return _build(function, name, description, parameters, strict)

    return build if fn is None else build(fn)
