"""JSON Schema from Python type hints, and decoded JSON back to those types.

`json_schema(tp)` describes a type to a model; `convert(value, tp)` checks what the
model sent against the same type and builds the Python value (dataclasses from
objects, tuples from arrays, Enum members from their values). Both accept the same
hints: ``str``, ``int``, ``float``, ``bool``, ``None``, ``Any``, ``Optional``/``Union``,
``Literal``, ``Enum`` subclasses, ``list[X]``, ``tuple[X, ...]``, ``tuple[X, Y]``,
``dict[str, X]``, dataclasses, TypedDicts and pydantic v2 models (when pydantic is
installed), each possibly wrapped in ``Annotated[X, "description"]``.

Recursive classes (a dataclass ``Node`` with ``children: list[Node]``) are described
with ``$defs``/``$ref``: the class gets an entry ``#/$defs/Node`` and every use of it
refers there; a recursive root is written out at the root as well, so the root stays
an object schema (what OpenAI and function parameters require).

`is_strict_compatible(schema)` tells whether OpenAI's strict structured outputs would
accept a schema.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
import sys
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal, NamedTuple, NotRequired, Required, Union

from .errors import InvalidInputError, LlmxError, SchemaProblem, list_problems, shorten

_SUPPORTED = ("supported: str, int, float, bool, None, Any, Optional/Union, Literal, Enum, list[X], "
              "tuple[X, ...], tuple[X, Y], dict[str, X], dataclasses, TypedDicts and pydantic models")

# Checked in this order: bool before int, as True is an int in Python but not in JSON.
_JSON_SCALARS: tuple[tuple[type, str], ...] = (
    (bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"), (type(None), "null"))


class SchemaMismatch(LlmxError, ValueError):
    """A JSON value does not fit the declared Python type.

    `where` is the path of the bad value (``Answer.items[0]``, ``trip.stops[1].city``;
    empty for the top level) and `problem` says what is wrong in words a model can
    act on, e.g. ``expected an integer, got "three"``. `problems` lists every problem
    found in the value (`where` and `problem` are the first one's), so that one answer
    to the model can name them all.
    """

    def __init__(self, where: str, problem: str, *, problems: Sequence[SchemaProblem] = ()) -> None:
        self.where = where
        self.problem = problem
        self.problems = list(problems) or [SchemaProblem(where, problem)]
        super().__init__(list_problems(self.problems))

    @classmethod
    def combine(cls, errors: Sequence[SchemaMismatch]) -> SchemaMismatch:
        """One error listing the problems of all of `errors` (not empty), in order."""
        if len(errors) == 1:
            return errors[0]
        problems = [problem for error in errors for problem in error.problems]
        return cls(problems[0].path, problems[0].message, problems=problems)


class _NoDefault(enum.Enum):
    NO_DEFAULT = "no default"


NO_DEFAULT = _NoDefault.NO_DEFAULT


class FieldSpec(NamedTuple):
    """One named member of an object: a dataclass field, a TypedDict key, a parameter."""

    name: str
    hint: Any
    required: bool
    description: str | None = None
    # The Python default, written into the schema when it is plain JSON.
    default: Any = NO_DEFAULT


# --- paths and wording -----------------------------------------------------------


def child_path(where: str, name: str) -> str:
    """``Answer`` + ``items`` -> ``Answer.items``; a top level without a name gives ``items``."""
    return f"{where}.{name}" if where else name


def _preview(value: Any, limit: int = 80) -> str:
    """The value as the model wrote it (JSON), cut to `limit` characters."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return shorten(text, limit)


def _strip_wrappers(tp: Any) -> tuple[Any, str | None]:
    """The type under ``Annotated``/``Required``/``NotRequired``, and an ``Annotated``
    string (the description), if any."""
    description = None
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            texts = [meta for meta in tp.__metadata__ if isinstance(meta, str)]
            description = description or (texts[0] if texts else None)
            tp = tp.__origin__
        elif origin in (Required, NotRequired):
            tp = typing.get_args(tp)[0]
        else:
            return tp, description


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _is_bare_tuple(tp: Any) -> bool:
    # `tuple[()]` has no arguments either, so the bare forms are told apart by identity.
    return tp is tuple or tp is typing.Tuple  # noqa: UP006


def _is_enum(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, enum.Enum)


def _is_dataclass(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def is_pydantic_model(tp: Any) -> bool:
    """Whether `tp` is a pydantic v2 model class.

    A class can only derive from ``BaseModel`` once pydantic has been imported, so
    looking in ``sys.modules`` answers without importing it (pydantic stays optional).
    """
    pydantic = sys.modules.get("pydantic")
    return (pydantic is not None and isinstance(tp, type) and issubclass(tp, pydantic.BaseModel)
            and hasattr(tp, "model_json_schema"))


def is_object_class(tp: Any) -> bool:
    """A dataclass, a TypedDict or a pydantic model: a class written as a JSON object."""
    return _is_dataclass(tp) or typing.is_typeddict(tp) or is_pydantic_model(tp)


def _type_name(tp: Any) -> str:
    return tp.__qualname__ if isinstance(tp, type) else repr(tp)


def _scalar_type_name(value: Any, where: str) -> str:
    for python_type, name in _JSON_SCALARS:
        if isinstance(value, python_type):
            return name
    raise InvalidInputError(where, f"the value {value!r} is not a JSON string, number, boolean or null")


def _enum_schema(values: Sequence[Any], where: str) -> dict[str, Any]:
    names = list(dict.fromkeys(_scalar_type_name(value, where) for value in values))
    return {"type": names[0] if len(names) == 1 else names, "enum": list(values)}


def _type_hints(tp: Any, where: str) -> dict[str, Any]:
    try:
        return typing.get_type_hints(tp, include_extras=True)
    except (NameError, TypeError) as exc:
        raise InvalidInputError(where, f"cannot resolve the type hints of {_type_name(tp)}: {exc}") from None


def _typeddict_required(cls: type, name: str, hint: Any) -> bool:
    # Under `from __future__ import annotations` the class cannot see Required/NotRequired
    # (its annotations are strings), so its __required_keys__ are wrong; the resolved hint says.
    origin = typing.get_origin(hint)
    if origin in (Required, NotRequired):
        return origin is Required
    return name in cls.__required_keys__  # type: ignore[attr-defined]


def class_fields(cls: type, where: str) -> list[FieldSpec]:
    """The members of a dataclass (its ``__init__`` fields) or of a TypedDict."""
    hints = _type_hints(cls, where)
    if typing.is_typeddict(cls):
        return [FieldSpec(name, hint, _typeddict_required(cls, name, hint)) for name, hint in hints.items()]
    specs = []
    for field in dataclasses.fields(cls):
        if not field.init:
            continue  # not settable from the outside, so not part of the JSON shape
        has_default = field.default is not dataclasses.MISSING
        no_default = not has_default and field.default_factory is dataclasses.MISSING
        specs.append(FieldSpec(field.name, hints[field.name], no_default,
                               default=field.default if has_default else NO_DEFAULT))
    return specs


def _plain_default(value: Any) -> Any:
    """`value` as JSON when it is plain JSON data (an Enum member as its value), else
    NO_DEFAULT: a default the model cannot read is better left out of the schema."""
    if value is NO_DEFAULT:
        return NO_DEFAULT
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    if isinstance(value, (list, tuple)):
        items = [_plain_default(item) for item in value]
        return NO_DEFAULT if NO_DEFAULT in items else items
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        members = {key: _plain_default(item) for key, item in value.items()}
        return NO_DEFAULT if NO_DEFAULT in members.values() else members
    return NO_DEFAULT


# --- JSON Schema from hints -------------------------------------------------------


class _SchemaBuilder:
    """Builds the schemas of one document, sharing its ``$defs``."""

    def __init__(self) -> None:
        self.defs: dict[str, Any] = {}
        self._def_names: dict[type, str] = {}
        self._building: list[type] = []  # classes being built, to notice recursion
        self._recursive: set[type] = set()

    def build(self, hint: Any, where: str) -> dict[str, Any]:
        tp, description = _strip_wrappers(hint)
        schema = self._bare(tp, where)
        if description is not None:
            schema = {**schema, "description": description}
        return schema

    def _bare(self, tp: Any, where: str) -> dict[str, Any]:
        if tp is Any:
            return {}
        if tp is None or tp is type(None):
            return {"type": "null"}
        for python_type, name in _JSON_SCALARS:
            if tp is python_type:
                return {"type": name}
        if _is_union(tp):
            return {"anyOf": [self.build(member, where) for member in typing.get_args(tp)]}
        if typing.get_origin(tp) is Literal:
            return _enum_schema(typing.get_args(tp), where)
        if _is_enum(tp):
            return _enum_schema([member.value for member in tp], where)
        if tp is list or typing.get_origin(tp) is list:
            return self._list(tp, where)
        if tp is tuple or typing.get_origin(tp) is tuple:
            return self._tuple(tp, where)
        if tp is dict or typing.get_origin(tp) is dict:
            return self._dict(tp, where)
        if is_object_class(tp):
            return self._class(tp, where)
        raise InvalidInputError(where, f"unsupported type {_type_name(tp)}; {_SUPPORTED}")

    def _list(self, tp: Any, where: str) -> dict[str, Any]:
        args = typing.get_args(tp)
        return {"type": "array", "items": self.build(args[0], f"{where}[*]")} if args else {"type": "array"}

    def _tuple(self, tp: Any, where: str) -> dict[str, Any]:
        args = typing.get_args(tp)
        if _is_bare_tuple(tp):
            return {"type": "array"}
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": self.build(args[0], f"{where}[*]")}
        if args in ((), ((),)):  # tuple[()]: prefixItems may not be empty
            return {"type": "array", "maxItems": 0}
        return {"type": "array", "prefixItems": [self.build(arg, f"{where}[{i}]") for i, arg in enumerate(args)],
                "minItems": len(args), "maxItems": len(args)}

    def _dict(self, tp: Any, where: str) -> dict[str, Any]:
        args = typing.get_args(tp)
        if not args:
            return {"type": "object"}
        if _strip_wrappers(args[0])[0] is not str:
            raise InvalidInputError(where, f"unsupported type {tp!r}: JSON object keys are strings, "
                                           "so only dict[str, X] is supported")
        return {"type": "object", "additionalProperties": self.build(args[1], f"{where}[*]")}

    def _class(self, cls: type, where: str) -> dict[str, Any]:
        if cls in self._building:
            self._recursive.add(cls)
            return {"$ref": f"#/$defs/{self._def_name(cls)}"}
        if is_pydantic_model(cls):
            return self._pydantic(cls, where)
        self._building.append(cls)
        try:
            schema = self.object(class_fields(cls, where), where)
        finally:
            self._building.pop()
        if cls not in self._recursive:
            return schema
        self.defs[self._def_name(cls)] = schema
        return {"$ref": f"#/$defs/{self._def_name(cls)}"}

    def _def_name(self, cls: type) -> str:
        if cls not in self._def_names:
            taken = set(self._def_names.values()) | set(self.defs)
            name, suffix = cls.__name__, 2
            while name in taken:  # two classes of one name, or a pydantic model's entry
                name, suffix = f"{cls.__name__}_{suffix}", suffix + 1
            self._def_names[cls] = name
        return self._def_names[cls]

    def _pydantic(self, cls: type, where: str) -> dict[str, Any]:
        schema: dict[str, Any] = cls.model_json_schema()  # type: ignore[attr-defined]
        for name, definition in schema.pop("$defs", {}).items():
            if self.defs.setdefault(name, definition) != definition:
                raise InvalidInputError(where, f"two different models named {name!r} in one schema; rename one")
        return schema

    def object(self, fields: Sequence[FieldSpec], where: str, *, parameters: bool = False) -> dict[str, Any]:
        properties: dict[str, Any] = {}
        for field in fields:
            prop = self.build(field.hint, f"{where}({field.name})" if parameters else child_path(where, field.name))
            if field.description and "description" not in prop:
                prop["description"] = field.description
            default = _plain_default(field.default)
            if default is not NO_DEFAULT:
                prop["default"] = default
            properties[field.name] = prop
        return {"type": "object", "properties": properties,
                "required": [field.name for field in fields if field.required], "additionalProperties": False}

    def finish(self, schema: dict[str, Any]) -> dict[str, Any]:
        if not self.defs:
            return schema
        if set(schema) == {"$ref"}:  # a recursive root: write it out, keep the root an object
            schema = dict(self.defs[schema["$ref"].rsplit("/", 1)[1]])
        return {**schema, "$defs": self.defs}


def json_schema(tp: Any, *, where: str) -> dict[str, Any]:
    """The JSON Schema of a type hint (see the module docstring for what is supported).

    `where` names the place for errors: an unsupported hint raises
    `InvalidInputError` such as ``Answer.items[*]: unsupported type set[int]; ...``.
    Objects list their non-defaulted members in ``required`` and forbid others
    (``additionalProperties: false``); a plain-JSON default is written as ``default``.
    """
    builder = _SchemaBuilder()
    return builder.finish(builder.build(tp, where))


def object_schema(fields: Sequence[FieldSpec], *, where: str, parameters: bool = False) -> dict[str, Any]:
    """The schema of an object with these members (e.g. a function's parameters).

    With `parameters`, errors name a member as ``where(name)`` (``get_weather(city)``),
    otherwise as ``where.name``.
    """
    builder = _SchemaBuilder()
    return builder.finish(builder.object(fields, where, parameters=parameters))


# --- JSON values to Python values ---------------------------------------------------


def _describe(tp: Any) -> str:
    """What a value of `tp` looks like in JSON, for error messages."""
    tp = _strip_wrappers(tp)[0]
    simple = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
              type(None): "null", None: "null", Any: "any value", list: "an array", tuple: "an array",
              dict: "a JSON object"}
    if isinstance(tp, typing.Hashable) and tp in simple:
        return simple[tp]
    if _is_union(tp):
        return " or ".join(_describe(member) for member in typing.get_args(tp))
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(_preview(value) for value in typing.get_args(tp))
    if _is_enum(tp):
        return "one of " + ", ".join(_preview(member.value) for member in tp)
    if typing.get_origin(tp) in (list, tuple):
        return "an array"
    return "a JSON object"


def _mismatch(value: Any, tp: Any, where: str) -> SchemaMismatch:
    return SchemaMismatch(where, f"expected {_describe(tp)}, got {_preview(value)}")


def _same_json_value(a: Any, b: Any) -> bool:
    # 1 == True in Python; in JSON they differ.
    return bool(a == b) and isinstance(a, bool) == isinstance(b, bool)


def convert(value: Any, tp: Any, *, where: str) -> Any:
    """A decoded-JSON value as the Python type `tp`, checked on the way.

    Booleans are not integers; an integer is accepted for ``float`` (and an integral
    number such as ``3.0`` for ``int``, as JSON Schema's ``integer`` does); arrays
    become tuples where declared; objects become dataclasses (defaults applied),
    TypedDict dicts or pydantic models (``model_validate``); unknown members and
    missing required members are refused. Raises `SchemaMismatch` naming the path.
    """
    tp = _strip_wrappers(tp)[0]
    if tp is Any:
        return value
    if tp is None or tp is type(None):
        if value is None:
            return None
        raise _mismatch(value, tp, where)
    if tp in (str, bool, int, float):
        return _convert_scalar(value, tp, where)
    if _is_union(tp):
        return _convert_union(value, tp, where)
    if typing.get_origin(tp) is Literal:
        for allowed in typing.get_args(tp):
            if _same_json_value(value, allowed):
                return allowed
        raise _mismatch(value, tp, where)
    if _is_enum(tp):
        for member in tp:
            if _same_json_value(value, member.value):
                return member
        raise _mismatch(value, tp, where)
    if tp in (list, tuple) or typing.get_origin(tp) in (list, tuple):
        return _convert_array(value, tp, where)
    if tp is dict or typing.get_origin(tp) is dict:
        return _convert_dict(value, tp, where)
    if is_pydantic_model(tp):
        return _convert_pydantic(value, tp, where)
    if is_object_class(tp):
        return _convert_class(value, tp, where)
    raise InvalidInputError(where, f"unsupported type {_type_name(tp)}; {_SUPPORTED}")


def _convert_all(members: Iterable[tuple[Any, Any, str]]) -> list[Any]:
    """Each ``(value, type, path)`` converted; every member that does not fit is
    reported, in one `SchemaMismatch`, rather than only the first."""
    values: list[Any] = []
    errors: list[SchemaMismatch] = []
    for value, tp, where in members:
        try:
            values.append(convert(value, tp, where=where))
        except SchemaMismatch as exc:
            errors.append(exc)
    if errors:
        raise SchemaMismatch.combine(errors)
    return values


def _convert_scalar(value: Any, tp: type, where: str) -> Any:
    if isinstance(value, bool):
        if tp is bool:
            return value
    elif tp is str and isinstance(value, str):
        return value
    elif tp is float and isinstance(value, (int, float)):
        return float(value)
    elif tp is int and isinstance(value, int):
        return value
    elif tp is int and isinstance(value, float) and value.is_integer():
        return int(value)
    raise _mismatch(value, tp, where)


def _convert_union(value: Any, tp: Any, where: str) -> Any:
    deep_errors = []
    for member in typing.get_args(tp):
        try:
            return convert(value, member, where=where)
        except SchemaMismatch as exc:
            if exc.where != where:
                deep_errors.append(exc)
    # One member had the right shape but a wrong inner value: that error is the useful one.
    if len(deep_errors) == 1:
        raise deep_errors[0]
    raise _mismatch(value, tp, where)


def _convert_array(value: Any, tp: Any, where: str) -> Any:
    if not isinstance(value, list):
        raise _mismatch(value, tp, where)
    args = typing.get_args(tp)
    if _is_bare_tuple(tp):
        return tuple(value)
    if tp is list or typing.get_origin(tp) is list:
        return _convert_all((item, args[0], f"{where}[{i}]") for i, item in enumerate(value)) if args else value
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_convert_all((item, args[0], f"{where}[{i}]") for i, item in enumerate(value)))
    args = () if args == ((),) else args
    if len(value) != len(args):
        raise SchemaMismatch(where, f"expected an array of {len(args)} items, got {len(value)}: {_preview(value)}")
    return tuple(_convert_all((item, arg, f"{where}[{i}]") for i, (item, arg) in enumerate(zip(value, args, strict=True))))


def _convert_dict(value: Any, tp: Any, where: str) -> Any:
    if not isinstance(value, dict):
        raise _mismatch(value, tp, where)
    args = typing.get_args(tp)
    if not args:
        return value
    values = _convert_all((item, args[1], f"{where}[{json.dumps(key, ensure_ascii=False)}]")
                          for key, item in value.items())
    return dict(zip(value, values, strict=True))


def convert_fields(data: Any, fields: Sequence[FieldSpec], *, where: str, noun: str = "field") -> dict[str, Any]:
    """A JSON object as keyword arguments for these members, each converted.

    Unknown and missing required members are refused (`noun` words the message:
    ``unknown argument 'x'; the arguments are: city, days``); members left out stay
    out, so the constructor or function applies its defaults. Every problem is
    reported: the unknown members, the missing ones and each member that does not fit.
    """
    if not isinstance(data, dict):
        raise SchemaMismatch(where, f"expected a JSON object, got {_preview(data)}")
    known = {field.name for field in fields}
    errors = []
    unknown = [key for key in data if key not in known]
    if unknown:
        listed = ", ".join(field.name for field in fields) or "none"
        errors.append(SchemaMismatch(where, f"unknown {_plural(noun, unknown)}; the {noun}s are: {listed}"))
    missing = [field.name for field in fields if field.required and field.name not in data]
    if missing:
        errors.append(SchemaMismatch(where, f"missing required {_plural(noun, missing)}"))
    present = [field for field in fields if field.name in data]
    try:
        values = _convert_all((data[field.name], field.hint, child_path(where, field.name)) for field in present)
    except SchemaMismatch as exc:
        errors.append(exc)
    if errors:
        raise SchemaMismatch.combine(errors)
    return dict(zip((field.name for field in present), values, strict=True))


def _plural(noun: str, names: Sequence[str]) -> str:
    """``field 'a'``, or ``fields 'a', 'b'``."""
    return f"{noun}{'s' if len(names) > 1 else ''} {', '.join(map(repr, names))}"


def _convert_class(value: Any, cls: type, where: str) -> Any:
    kwargs = convert_fields(value, class_fields(cls, where), where=where)
    if typing.is_typeddict(cls):
        return kwargs
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:  # e.g. a check in __post_init__
        raise SchemaMismatch(where, str(exc)) from None


def _pydantic_location(where: str, loc: Sequence[Any]) -> str:
    for part in loc:
        where = f"{where}[{part}]" if isinstance(part, int) else child_path(where, str(part))
    return where


def _convert_pydantic(value: Any, cls: type, where: str) -> Any:
    try:
        return cls.model_validate(value)  # type: ignore[attr-defined]
    except sys.modules["pydantic"].ValidationError as exc:
        raise SchemaMismatch.combine([
            SchemaMismatch(_pydantic_location(where, error["loc"]), f"{error['msg']}, got {_preview(error.get('input'))}")
            for error in exc.errors()]) from None


# --- validation against a JSON Schema dict ----------------------------------------


# jsonschema is imported by the two functions that use it, when first called: importing it
# takes 40 ms, and seconds where the Jupyter server's packages are installed (it then loads
# rfc3987_syntax, which builds a grammar), so `import llmx_sync` would pay that for every
# script, CLI call and notebook kernel, structured output or not.


def check_json_schema(schema: Any, *, where: str) -> None:
    """Raise `InvalidInputError` unless `schema` is a valid JSON Schema object."""
    import jsonschema.exceptions
    import jsonschema.validators

    if not isinstance(schema, dict):
        raise InvalidInputError(where, f"expected a JSON Schema object, got {type(schema).__name__}")
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        raise InvalidInputError(where, f"not a valid JSON Schema: {exc.message}") from None


def json_schema_problem(value: Any, schema: Mapping[str, Any]) -> SchemaMismatch | None:
    """Why `value` does not validate against `schema` (every error, in the order the
    validator met them), or None."""
    import jsonschema.exceptions
    import jsonschema.validators

    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = []
    for found in validator.iter_errors(value):
        # Under anyOf/oneOf the error's context holds each branch's errors: the most
        # relevant of them says more than "is not valid under any of the given schemas".
        error = jsonschema.exceptions.best_match([found])
        assert error is not None  # (best_match of one error is that error or one of its context)
        where = ""
        for part in error.absolute_path:
            where = f"{where}[{part}]" if isinstance(part, int) else child_path(where, str(part))
        errors.append(SchemaMismatch(where, error.message))
    return SchemaMismatch.combine(errors) if errors else None


# --- OpenAI strict mode --------------------------------------------------------------

# What OpenAI's strict structured outputs accept (its "supported schemas" guide).
# prefixItems (fixed tuples), additionalProperties schemas (dict[str, X]), default,
# allOf/oneOf/not and string/object length limits are refused there.
_STRICT_KEYWORDS = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "anyOf", "enum", "const",
    "description", "title", "$defs", "definitions", "$ref", "pattern", "format", "multipleOf",
    "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum", "minItems", "maxItems"})
_STRICT_TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})
_STRICT_FORMATS = frozenset({"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6",
                             "uuid"})
_STRICT_MAX_DEPTH = 10
_STRICT_MAX_PROPERTIES = 5000
_REF = re.compile(r"^#(/(\$defs|definitions)/[^/]+)?$")


class _StrictCheck:
    def __init__(self) -> None:
        self.properties = 0

    def node(self, schema: Any, path: str, depth: int) -> str | None:
        if not isinstance(schema, dict):
            return f"{path}: a schema must be an object, got {_preview(schema)}"
        unknown = [key for key in schema if key not in _STRICT_KEYWORDS]
        if unknown:
            return f"{path}: keyword {unknown[0]!r} is not supported"
        if "$ref" in schema:
            return self._ref(schema, path)
        if not {"type", "anyOf", "enum", "const"} & schema.keys():
            return f"{path}: every schema needs a type"
        types_ = schema.get("type")
        types_ = types_ if isinstance(types_, list) else [types_] if types_ is not None else []
        if any(name not in _STRICT_TYPES for name in types_):
            return f"{path}: unknown type {_preview(schema['type'])}"
        if "format" in schema and schema["format"] not in _STRICT_FORMATS:
            return f"{path}: format {schema['format']!r} is not supported"
        if "object" in types_ or "properties" in schema:
            problem = self._object(schema, path, depth)
            if problem:
                return problem
        return self._children(schema, path, depth)

    @staticmethod
    def _ref(schema: dict[str, Any], path: str) -> str | None:
        if len(schema) > 1:
            return f"{path}: $ref cannot have sibling keywords"
        if not isinstance(schema["$ref"], str) or not _REF.match(schema["$ref"]):
            return f"{path}: $ref must point into this schema (#/$defs/...)"
        return None

    def _object(self, schema: dict[str, Any], path: str, depth: int) -> str | None:
        if depth > _STRICT_MAX_DEPTH:
            return f"{path}: objects nest deeper than {_STRICT_MAX_DEPTH} levels"
        if schema.get("additionalProperties") is not False:
            return f"{path}: objects need additionalProperties: false"
        properties = schema.get("properties", {})
        if not isinstance(properties, dict):
            return f"{path}: properties must be an object"
        if set(schema.get("required", [])) != set(properties):
            return f"{path}: every property must be listed in required"
        self.properties += len(properties)
        if self.properties > _STRICT_MAX_PROPERTIES:
            return f"more than {_STRICT_MAX_PROPERTIES} properties in all"
        for name, prop in properties.items():
            problem = self.node(prop, f"{path}.properties.{name}", depth + 1)
            if problem:
                return problem
        return None

    def _children(self, schema: dict[str, Any], path: str, depth: int) -> str | None:
        subschemas: list[tuple[Any, str]] = []
        if "items" in schema:
            subschemas.append((schema["items"], f"{path}.items"))
        for i, variant in enumerate(schema.get("anyOf", [])):
            subschemas.append((variant, f"{path}.anyOf[{i}]"))
        for key in ("$defs", "definitions"):
            subschemas += [(definition, f"{path}.{key}.{name}") for name, definition in schema.get(key, {}).items()]
        for subschema, subpath in subschemas:
            problem = self.node(subschema, subpath, depth)
            if problem:
                return problem
        return None


def strict_incompatibility(schema: Mapping[str, Any]) -> str | None:
    """Why OpenAI's strict mode would refuse `schema` (the first reason), or None.

    The rules: the root is an object schema (not ``anyOf``); every object has
    ``additionalProperties: false`` and lists every property in ``required``;
    every schema has a type (so ``Any`` is out); only the supported keywords
    and string formats appear; ``$ref`` points into the document and stands
    alone; at most 10 levels of nested objects and 5000 properties.
    """
    if not isinstance(schema, dict) or schema.get("type") != "object":
        return "#: the root must be an object schema (type: object)"
    if "anyOf" in schema:
        return "#: the root cannot be anyOf"
    return _StrictCheck().node(schema, "#", 1)


def is_strict_compatible(schema: Mapping[str, Any]) -> bool:
    """Whether OpenAI's strict structured outputs would accept `schema`."""
    return strict_incompatibility(schema) is None
