"""JSON Schema from type hints, JSON values to typed Python values, and OpenAI strictness."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NotRequired, Optional, Required, TypedDict, Union

import jsonschema
import pydantic
import pytest

from llmx_sync.errors import InvalidInputError
from llmx_sync.schema import (
    FieldSpec,
    SchemaMismatch,
    convert,
    convert_fields,
    is_strict_compatible,
    json_schema,
    json_schema_problem,
    object_schema,
    strict_incompatibility,
)


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclass
class Point:
    x: float
    y: float


@dataclass
class Stop:
    city: str
    days: int = 1
    tags: list[str] = field(default_factory=list)


@dataclass
class Trip:
    stops: list[Stop]
    color: Color
    note: Annotated[str | None, "Anything to remember"] = None
    computed: int = field(default=0, init=False)


@dataclass
class Checked:
    size: int

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError("size must be at least 0")


@dataclass
class Node:
    name: str
    children: list[Node]


@dataclass
class Forest:
    trees: list[Node]


class Movie(TypedDict):
    title: str
    year: NotRequired[int]


class Partial(TypedDict, total=False):
    rating: float
    title: Required[str]


@dataclass
class Later:
    when: UnknownName  # type: ignore[name-defined]  # noqa: F821


STR, INT, NUM, BOOL, NULL = ({"type": name} for name in ("string", "integer", "number", "boolean", "null"))

STOP = {"type": "object", "properties": {"city": STR, "days": {**INT, "default": 1}, "tags": {"type": "array",
        "items": STR}}, "required": ["city"], "additionalProperties": False}
NODE = {"type": "object", "properties": {"name": STR, "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}},
        "required": ["name", "children"], "additionalProperties": False}

SCHEMAS: list[tuple[Any, dict[str, Any]]] = [
    (str, STR), (int, INT), (float, NUM), (bool, BOOL), (None, NULL), (type(None), NULL), (Any, {}),
    (Optional[int], {"anyOf": [INT, NULL]}),  # noqa: UP045 (typing.Optional is another object than X | None)
    (int | None, {"anyOf": [INT, NULL]}),
    (Union[str, int, None], {"anyOf": [STR, INT, NULL]}),
    (Literal["c", "f"], {"type": "string", "enum": ["c", "f"]}),
    (Literal[1, 2], {"type": "integer", "enum": [1, 2]}),
    (Literal[True], {"type": "boolean", "enum": [True]}),
    (Literal["a", 1, None], {"type": ["string", "integer", "null"], "enum": ["a", 1, None]}),
    (Color, {"type": "string", "enum": ["red", "blue"]}),
    (Level, {"type": "integer", "enum": [1, 2]}),
    (list[int], {"type": "array", "items": INT}),
    (list, {"type": "array"}),
    (tuple[str, ...], {"type": "array", "items": STR}),
    (tuple[int, str], {"type": "array", "prefixItems": [INT, STR], "minItems": 2, "maxItems": 2}),
    (tuple[()], {"type": "array", "maxItems": 0}),
    (tuple, {"type": "array"}),
    (dict[str, float], {"type": "object", "additionalProperties": NUM}),
    (dict, {"type": "object"}),
    (Annotated[int, "How many"], {**INT, "description": "How many"}),
    (Point, {"type": "object", "properties": {"x": NUM, "y": NUM}, "required": ["x", "y"],
             "additionalProperties": False}),
    (Trip, {"type": "object", "properties": {
        "stops": {"type": "array", "items": STOP},
        "color": {"type": "string", "enum": ["red", "blue"]},
        "note": {"anyOf": [STR, NULL], "description": "Anything to remember", "default": None},
    }, "required": ["stops", "color"], "additionalProperties": False}),
    (Movie, {"type": "object", "properties": {"title": STR, "year": INT}, "required": ["title"],
             "additionalProperties": False}),
    (Partial, {"type": "object", "properties": {"rating": NUM, "title": STR}, "required": ["title"],
               "additionalProperties": False}),
    (Node, {**NODE, "$defs": {"Node": NODE}}),
    (Forest, {"type": "object", "properties": {"trees": {"type": "array", "items": {"$ref": "#/$defs/Node"}}},
              "required": ["trees"], "additionalProperties": False, "$defs": {"Node": NODE}}),
]


@pytest.mark.parametrize(("hint", "expected"), SCHEMAS, ids=[repr(hint) for hint, _ in SCHEMAS])
def test_json_schema_matches_the_hand_written_one(hint: Any, expected: dict[str, Any]) -> None:
    schema = json_schema(hint, where="X")
    assert schema == expected
    jsonschema.validators.validator_for(schema).check_schema(schema)


def test_a_recursive_schema_validates_nested_values() -> None:
    schema = json_schema(Node, where="Node")
    good = {"name": "a", "children": [{"name": "b", "children": [{"name": "c", "children": []}]}]}
    assert json_schema_problem(good, schema) is None
    problem = json_schema_problem({"name": "a", "children": [{"name": "b", "children": [{"name": 3}]}]}, schema)
    assert problem is not None and problem.where.startswith("children[0].children[0]")


@pytest.mark.parametrize(("hint", "where", "words"), [
    (set[int], "f(x)", "unsupported type set[int]"),
    (Point | set[str], "f(x)", "unsupported type set[str]"),
    (list[bytes], "Answer.items", "Answer.items[*]: unsupported type bytes"),
    (dict[int, str], "f(x)", "only dict[str, X]"),
    (object, "f(x)", "unsupported type object"),
    (Later, "Later", "cannot resolve the type hints"),
    (Literal[b"x"], "f(x)", "not a JSON string, number, boolean or null"),
])
def test_unsupported_hints_name_the_place_and_what_is_supported(hint: Any, where: str, words: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        json_schema(hint, where=where)
    assert words in str(caught.value)
    assert str(caught.value).startswith(where)
    if "unsupported type" in words and "dict" not in words:
        assert "supported: str, int" in str(caught.value)


def test_a_callable_hint_is_refused() -> None:
    from collections.abc import Callable
    with pytest.raises(InvalidInputError, match="unsupported type"):
        json_schema(Callable[[int], int], where="f(g)")


def _linked_node_class() -> type:
    """Another recursive class named Node (from elsewhere, as two modules could have)."""
    cls = dataclasses.make_dataclass("Node", [("label", int), ("next", Any)])
    cls.__annotations__["next"] = cls | None
    return cls


OtherNode = _linked_node_class()


@dataclass
class Pair:
    tree: Node
    chain: OtherNode  # type: ignore[valid-type]


def test_two_recursive_classes_of_one_name_get_two_defs() -> None:
    schema = json_schema(Pair, where="Pair")
    assert schema["properties"] == {"tree": {"$ref": "#/$defs/Node"}, "chain": {"$ref": "#/$defs/Node_2"}}
    assert schema["$defs"]["Node"] == NODE
    assert schema["$defs"]["Node_2"]["properties"]["next"] == {"anyOf": [{"$ref": "#/$defs/Node_2"}, NULL]}
    value = {"tree": {"name": "a", "children": []}, "chain": {"label": 1, "next": {"label": 2, "next": None}}}
    assert json_schema_problem(value, schema) is None
    assert convert(value, Pair, where="Pair").chain.next.label == 2


@dataclass
class Inner:
    bad: set[int]


@dataclass
class Outer:
    inner: list[Inner]


def test_a_nested_unsupported_field_names_the_field_path() -> None:
    with pytest.raises(InvalidInputError) as caught:
        json_schema(Outer, where="Outer")
    assert caught.value.where == "Outer.inner[*].bad"


def test_object_schema_names_parameters_as_calls() -> None:
    fields = [FieldSpec("city", str, True, "The city"), FieldSpec("unit", Color, False, default=Color.BLUE),
              FieldSpec("at", Point, False, default=Point(0, 0)),
              FieldSpec("sizes", tuple[int, ...], False, default=(1, 2)),
              FieldSpec("where", list[Point], False, default=[Point(0, 0)]),
              FieldSpec("extra", dict[str, Any], False, default={"a": [None, Color.RED]}),
              FieldSpec("other", dict[str, Any], False, default={"a": Point(0, 0)})]
    schema = object_schema(fields, where="get_weather", parameters=True)
    assert schema == {"type": "object", "properties": {
        "city": {**STR, "description": "The city"},
        "unit": {"type": "string", "enum": ["red", "blue"], "default": "blue"},  # an Enum default as its value
        "at": json_schema(Point, where="Point"),  # a default that is not plain JSON is left out
        "sizes": {"type": "array", "items": INT, "default": [1, 2]},
        "where": {"type": "array", "items": json_schema(Point, where="Point")},
        "extra": {"type": "object", "additionalProperties": {}, "default": {"a": [None, "red"]}},
        "other": {"type": "object", "additionalProperties": {}},
    }, "required": ["city"], "additionalProperties": False}
    with pytest.raises(InvalidInputError) as caught:
        object_schema([FieldSpec("when", set[str], True)], where="get_weather", parameters=True)
    assert caught.value.where == "get_weather(when)"


# --- pydantic (a test dependency; optional for the package) ---------------------------


class Address(pydantic.BaseModel):
    street: str
    number: int


class Person(pydantic.BaseModel):
    name: str
    address: Address


@dataclass
class Letter:
    to: Person


def test_a_pydantic_model_uses_its_own_schema() -> None:
    assert json_schema(Person, where="Person") == Person.model_json_schema()


def test_a_pydantic_model_inside_a_dataclass_shares_the_defs() -> None:
    own = Person.model_json_schema()
    schema = json_schema(Letter, where="Letter")
    assert schema["properties"]["to"] == {key: value for key, value in own.items() if key != "$defs"}
    assert schema["$defs"] == own["$defs"]
    assert json_schema_problem({"to": {"name": "Ann", "address": {"street": "Main", "number": 1}}}, schema) is None


OtherAddress = pydantic.create_model("Address", postcode=(str, ...))


class Parcel(pydantic.BaseModel):
    to: OtherAddress  # type: ignore[valid-type]


@dataclass
class Mail:
    letter: Person
    parcel: Parcel


def test_two_pydantic_models_of_one_name_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="two different models named 'Address' in one schema"):
        json_schema(Mail, where="Mail")


def test_convert_builds_a_pydantic_model_and_reports_the_path() -> None:
    person = convert({"name": "Ann", "address": {"street": "Main", "number": 1}}, Person, where="Person")
    assert isinstance(person, Person) and person.address.number == 1
    with pytest.raises(SchemaMismatch) as caught:
        convert({"to": {"name": "Ann", "address": {"street": "Main", "number": "one"}}}, Letter, where="Letter")
    assert caught.value.where == "Letter.to.address.number"
    assert 'got "one"' in caught.value.problem


# --- convert ---------------------------------------------------------------------------

CONVERSIONS: list[tuple[Any, Any, Any]] = [
    (str, "x", "x"), (int, 3, 3), (int, 3.0, 3), (float, 3, 3.0), (float, 2.5, 2.5), (bool, False, False),
    (None, None, None), (Any, {"a": [1]}, {"a": [1]}),
    (Optional[int], None, None), (Optional[int], 4, 4), (Union[int, str], "4", "4"),  # noqa: UP045 (typing.Optional is another object than X | None)
    (Literal["c", "f"], "f", "f"), (Literal[1, True], True, True), (Color, "blue", Color.BLUE), (Level, 2, Level.HIGH),
    (list[int], [1, 2], [1, 2]), (list, [1, "a"], [1, "a"]),
    (tuple[int, ...], [1, 2], (1, 2)), (tuple[int, str], [1, "a"], (1, "a")), (tuple, [1], (1,)),
    (dict[str, float], {"a": 1}, {"a": 1.0}), (dict, {"a": 1}, {"a": 1}),
    (Annotated[int, "n"], 5, 5),
    (Point, {"x": 1, "y": 2.5}, Point(1.0, 2.5)),
    (Stop, {"city": "Paris"}, Stop("Paris", 1, [])),
    (Movie, {"title": "Up"}, {"title": "Up"}),
    (Movie, {"title": "Up", "year": 2009}, {"title": "Up", "year": 2009}),
    (Node, {"name": "a", "children": [{"name": "b", "children": []}]}, Node("a", [Node("b", [])])),
]


@pytest.mark.parametrize(("hint", "value", "expected"), CONVERSIONS, ids=[repr(c) for c in CONVERSIONS])
def test_convert_gives_the_declared_type(hint: Any, value: Any, expected: Any) -> None:
    result = convert(value, hint, where="v")
    assert result == expected
    assert type(result) is type(expected)


def test_convert_applies_dataclass_defaults_and_nested_types() -> None:
    trip = convert({"stops": [{"city": "Rome", "tags": ["sea"]}], "color": "red"}, Trip, where="Trip")
    assert trip == Trip([Stop("Rome", 1, ["sea"])], Color.RED)
    assert trip.note is None and trip.computed == 0


MISMATCHES: list[tuple[Any, Any, str, str]] = [
    (int, "three", "v", 'expected an integer, got "three"'),
    (int, True, "v", "expected an integer, got true"),
    (int, 2.5, "v", "expected an integer, got 2.5"),
    (float, False, "v", "expected a number, got false"),
    (bool, 1, "v", "expected true or false, got 1"),
    (str, None, "v", "expected a string, got null"),
    (None, 0, "v", "expected null, got 0"),
    (Optional[int], "x", "v", 'expected an integer or null, got "x"'),  # noqa: UP045 (typing.Optional is another object than X | None)
    (Literal["c", "f"], "k", "v", 'expected one of "c", "f", got "k"'),
    (Literal[1], True, "v", "expected one of 1, got true"),
    (Color, "green", "v", 'expected one of "red", "blue", got "green"'),
    (list[int], [1, "2"], "v[1]", 'expected an integer, got "2"'),
    (list[int], {"a": 1}, "v", 'expected an array, got {"a": 1}'),
    (tuple[int, str], [1], "v", "expected an array of 2 items, got 1: [1]"),
    (tuple[()], [1], "v", "expected an array of 0 items, got 1: [1]"),
    (dict[str, int], {"a b": "x"}, 'v["a b"]', 'expected an integer, got "x"'),
    (dict[str, int], [], "v", "expected a JSON object, got []"),
    (Point, [1, 2], "v", "expected a JSON object, got [1, 2]"),
    (Point, {"x": 1}, "v", "missing required field 'y'"),
    (Point, {"x": 1, "y": 2, "z": 3}, "v", "unknown field 'z'; the fields are: x, y"),
    (Trip, {"stops": [{"city": 3}], "color": "red"}, "v.stops[0].city", "expected a string, got 3"),
    (Trip, {"stops": [], "color": "red", "computed": 1}, "v", "unknown field 'computed'"),
    (Optional[Point], {"x": 1, "y": "2"}, "v.y", 'expected a number, got "2"'),  # noqa: UP045 (typing.Optional is another object than X | None)
    (Movie, {"year": 2009}, "v", "missing required field 'title'"),
    (Checked, {"size": -1}, "v", "size must be at least 0"),
    (int, "x" * 200, "v", 'expected an integer, got "' + "x" * 79 + "…"),
    (list[int], {1, 2}, "v", "expected an array, got {1, 2}"),  # not JSON: shown as Python
]


@pytest.mark.parametrize(("hint", "value", "where", "problem"), MISMATCHES, ids=[repr(m[:2])[:60] for m in MISMATCHES])
def test_convert_refuses_with_the_path_and_the_problem(hint: Any, value: Any, where: str, problem: str) -> None:
    with pytest.raises(SchemaMismatch) as caught:
        convert(value, hint, where="v")
    assert caught.value.where == where
    assert caught.value.problem.startswith(problem)
    assert str(caught.value) == f"{where}: {caught.value.problem}"


def test_convert_refuses_an_unsupported_hint_as_a_programming_error() -> None:
    with pytest.raises(InvalidInputError):
        convert([1], set[int], where="v")


def test_convert_fields_words_the_noun_and_keeps_absent_optionals_out() -> None:
    fields = [FieldSpec("city", str, True), FieldSpec("days", int, False, default=1)]
    assert convert_fields({"city": "Oslo"}, fields, where="", noun="argument") == {"city": "Oslo"}
    with pytest.raises(SchemaMismatch, match="^unknown argument 'when'; the arguments are: city, days$"):
        convert_fields({"city": "Oslo", "when": 1}, fields, where="", noun="argument")
    with pytest.raises(SchemaMismatch) as caught:
        convert_fields({"city": "Oslo", "days": "2"}, fields, where="", noun="argument")
    assert (caught.value.where, caught.value.problem) == ("days", 'expected an integer, got "2"')


def test_a_dataclass_with_a_non_init_field_is_written_without_it() -> None:
    assert "computed" in {f.name for f in dataclasses.fields(Trip)}
    assert "computed" not in json_schema(Trip, where="Trip")["properties"]


# --- strictness ----------------------------------------------------------------------------

STRICT_OBJECT = {"type": "object", "properties": {"a": STR}, "required": ["a"], "additionalProperties": False}


def _obj(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


@pytest.mark.parametrize("schema", [
    STRICT_OBJECT,
    _obj(),
    _obj(a={"anyOf": [STR, NULL]}, b={"type": ["string", "null"]}, c={"type": "string", "enum": ["x"]}),
    _obj(items={"type": "array", "items": _obj(n={"type": "integer", "minimum": 0})}),
    _obj(when={"type": "string", "format": "date-time", "description": "d", "title": "t"}),
    json_schema(Point, where="Point"),
    json_schema(Node, where="Node"),
    _obj(ref={"$ref": "#/$defs/P"}) | {"$defs": {"P": json_schema(Point, where="P")}},
])
def test_strict_compatible_schemas(schema: dict[str, Any]) -> None:
    assert strict_incompatibility(schema) is None
    assert is_strict_compatible(schema)


@pytest.mark.parametrize(("schema", "reason"), [
    ({"type": "array", "items": STR}, "#: the root must be an object schema"),
    ({"anyOf": [STRICT_OBJECT, NULL]}, "#: the root must be an object schema"),
    ({**STRICT_OBJECT, "anyOf": [STRICT_OBJECT]}, "#: the root cannot be anyOf"),
    ({"type": "object", "properties": {"a": STR}, "required": ["a"]}, "#: objects need additionalProperties: false"),
    ({**STRICT_OBJECT, "required": []}, "#: every property must be listed in required"),
    (json_schema(Stop, where="Stop"), "#: every property must be listed in required"),
    (_obj(a={"type": "object"}), "#.properties.a: objects need additionalProperties: false"),
    (_obj(a={"type": "object", "additionalProperties": STR}), "#.properties.a: objects need additionalProperties"),
    (_obj(a={}), "#.properties.a: every schema needs a type"),
    (_obj(a={**STR, "default": "x"}), "#.properties.a: keyword 'default' is not supported"),
    (_obj(a={**STR, "minLength": 2}), "#.properties.a: keyword 'minLength' is not supported"),
    (_obj(a={"allOf": [STR]}), "keyword 'allOf' is not supported"),
    (_obj(a={"oneOf": [STR]}), "keyword 'oneOf' is not supported"),
    (_obj(a={"type": "array", "prefixItems": [STR]}), "keyword 'prefixItems' is not supported"),
    (_obj(a={**STR, "format": "uri"}), "format 'uri' is not supported"),
    (_obj(a={"type": "text"}), "unknown type"),
    (_obj(a={"$ref": "#/$defs/P", "description": "x"}), "$ref cannot have sibling keywords"),
    (_obj(a={"$ref": "other.json#/P"}), "$ref must point into this schema"),
    (_obj(a={"type": "array", "items": _obj(b={"type": "object"})}), "#.properties.a.items.properties.b"),
    (_obj(a={"anyOf": [STR, {"type": "object"}]}), "#.properties.a.anyOf[1]: objects need"),
    (_obj() | {"$defs": {"P": {"type": "object"}}}, "#.$defs.P: objects need"),
    (_obj(a=True), "#.properties.a: a schema must be an object"),
    ({"type": "object", "properties": [], "additionalProperties": False}, "#: properties must be an object"),
])
def test_strict_incompatible_schemas_say_why(schema: dict[str, Any], reason: str) -> None:
    assert reason in (strict_incompatibility(schema) or "")
    assert not is_strict_compatible(schema)


def test_strict_limits_on_nesting_and_property_count() -> None:
    nested: dict[str, Any] = STRICT_OBJECT
    for _ in range(9):
        nested = _obj(inner=nested)
    assert is_strict_compatible(nested)  # 10 levels
    assert "deeper than 10 levels" in (strict_incompatibility(_obj(inner=nested)) or "")
    wide = _obj(**{f"p{i}": STR for i in range(5000)})
    assert is_strict_compatible(wide)
    assert "more than 5000 properties" in (strict_incompatibility(_obj(extra=STR, more=wide)) or "")
