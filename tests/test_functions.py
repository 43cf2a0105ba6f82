"""`tool()`: FunctionTools from Python functions, their arguments and their output text."""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import pydantic
import pytest

from llmx_sync.errors import InvalidInputError
from llmx_sync.functions import PythonTool, ToolArgumentsError, tool, tool_output_text
from llmx_sync.tools import FunctionTool, build_chat_tools, coerce_tool


class Unit(enum.Enum):
    C = "c"
    F = "f"


@dataclass
class Place:
    city: str
    country: str = "FR"


def get_weather(city: str, days: int = 1, unit: Unit = Unit.C) -> str:
    """Current weather for a city.

    Looks the forecast up in a table.

    Args:
        city: The city name.
        days: How many days ahead.
        unit: Temperature unit.
    """
    return f"{city}: sunny for {days} day(s), 21 {unit.value.upper()}"


def numpy_style(a: int, b: list[str]) -> int:
    """Add things.

    Parameters
    ----------
    a : int
        First number.
    b : list of str
        Some words.
    """
    return a + len(b)


def rest_style(path: str, lines: tuple[int, int] | None = None) -> str:
    """Read a file.

    :param path: Where the file is.
    :param lines: First and last line.
    """
    return path if lines is None else f"{path}:{lines[0]}-{lines[1]}"


def plan(trip: list[Place], mode: Literal["car", "train"]) -> dict[str, Any]:
    return {"stops": [place.city for place in trip], "mode": mode}


def test_the_schema_description_and_name_come_from_the_function() -> None:
    weather = tool(get_weather)
    assert isinstance(weather, PythonTool) and isinstance(weather, FunctionTool)
    assert weather.name == "get_weather"
    assert weather.description == "Current weather for a city.\n\nLooks the forecast up in a table."
    assert weather.parameters == {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "The city name."},
            "days": {"type": "integer", "description": "How many days ahead.", "default": 1},
            "unit": {"type": "string", "enum": ["c", "f"], "description": "Temperature unit.", "default": "c"},
        },
        "required": ["city"],
        "additionalProperties": False,
    }
    assert weather.strict is False  # optional parameters are not strict-compatible


@pytest.mark.parametrize(("fn", "description", "param_docs"), [
    (numpy_style, "Add things.", {"a": "First number.", "b": "Some words."}),
    (rest_style, "Read a file.", {"path": "Where the file is.", "lines": "First and last line."}),
])
def test_numpy_and_rest_docstrings(fn: Any, description: str, param_docs: dict[str, str]) -> None:
    made = tool(fn)
    assert made.description == description
    assert {name: prop["description"] for name, prop in made.parameters["properties"].items()} == param_docs


def test_rest_style_types() -> None:
    assert tool(rest_style).parameters["properties"]["lines"] == {
        "anyOf": [{"type": "array", "prefixItems": [{"type": "integer"}, {"type": "integer"}], "minItems": 2,
                   "maxItems": 2}, {"type": "null"}],
        "description": "First and last line.", "default": None}


def test_decorator_forms() -> None:
    @tool
    def bare(x: int) -> int:
        return x * 2

    @tool(name="renamed", description="Doubles x.", strict=False)
    def with_options(x: int) -> int:
        """Ignored summary."""
        return x * 2

    assert (bare.name, bare.description, bare.strict) == ("bare", "", True)
    assert (with_options.name, with_options.description, with_options.strict) == ("renamed", "Doubles x.", False)
    assert bare(4) == 8 and with_options(x=5) == 10  # still callable like the function
    assert tool(get_weather)("Oslo", days=2) == "Oslo: sunny for 2 day(s), 21 C"


def test_a_python_tool_is_a_slotted_function_tool_the_request_builder_accepts() -> None:
    weather = tool(get_weather)
    assert not hasattr(weather, "__dict__")
    assert weather.to_dict()["name"] == "get_weather"
    assert coerce_tool(weather, 0) is weather
    chat = build_chat_tools([weather], cache_control=False)
    assert chat == [{"type": "function", "function": {"name": "get_weather", "description": weather.description,
                                                      "strict": False, "parameters": weather.parameters}}]


def test_a_bound_method_leaves_self_out() -> None:
    class Counter:
        def __init__(self) -> None:
            self.total = 0

        def add(self, amount: int) -> int:
            """Add to the total."""
            self.total += amount
            return self.total

    counter = Counter()
    add = tool(counter.add)
    assert list(add.parameters["properties"]) == ["amount"]
    assert add.run('{"amount": 3}') == "3" and counter.total == 3


def test_annotated_descriptions_win_over_the_docstring() -> None:
    def search(query: Annotated[str, "Words to look for"]) -> str:
        """Search.

        Args:
            query: Older words.
        """
        return query

    assert tool(search).parameters["properties"]["query"] == {"type": "string", "description": "Words to look for"}


def star_args(*names: str) -> None: ...


def star_kwargs(**options: int) -> None: ...


def positional_only(a: int, /) -> None: ...


def unannotated(city) -> None: ...  # type: ignore[no-untyped-def]


def unsupported(city: str, when: set[str]) -> None: ...


def unresolvable(city: Missing) -> None: ...  # type: ignore[name-defined]  # noqa: F821


@pytest.mark.parametrize(("fn", "where", "words"), [
    (star_args, "star_args(names)", "*args and **kwargs"),
    (star_kwargs, "star_kwargs(options)", "*args and **kwargs"),
    (positional_only, "positional_only(a)", "positional-only"),
    (unannotated, "unannotated(city)", "has no type hint"),
    (unsupported, "unsupported(when)", "unsupported type set[str]"),
    (unresolvable, "unresolvable()", "cannot resolve the type hints"),
])
def test_parameters_a_model_cannot_fill_are_refused_by_name(fn: Any, where: str, words: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        tool(fn)
    assert caught.value.where == where
    assert words in caught.value.problem


def test_names_must_be_valid_function_names() -> None:
    with pytest.raises(InvalidInputError, match="pass name="):
        tool(lambda: None)
    with pytest.raises(InvalidInputError, match="must match"):
        tool(get_weather, name="get weather")
    with pytest.raises(InvalidInputError, match="expected a function"):
        tool(42)  # type: ignore[call-overload]


def test_strict_follows_the_schema_unless_given() -> None:
    def all_required(city: str, days: int) -> None: ...

    assert tool(all_required).strict is True
    assert tool(all_required, strict=False).strict is False
    assert tool(get_weather, strict=True).strict is True


# --- arguments ---------------------------------------------------------------------------


def test_parse_arguments_converts_to_the_declared_types() -> None:
    assert tool(get_weather).parse_arguments('{"city": "Paris", "unit": "f"}') == {"city": "Paris", "unit": Unit.F}
    assert tool(plan).parse_arguments('{"trip": [{"city": "Lyon"}], "mode": "train"}') == {
        "trip": [Place("Lyon", "FR")], "mode": "train"}
    assert tool(rest_style).parse_arguments('{"path": "a", "lines": [1, 9]}') == {"path": "a", "lines": (1, 9)}


@pytest.mark.parametrize(("fn", "arguments", "message"), [
    (get_weather, "{city: Paris}",
     "arguments are not valid JSON (Expecting property name enclosed in double quotes at 1:2): '{city: Paris}'"),
    (get_weather, '{"city": "Paris"', "arguments are not valid JSON (Expecting ',' delimiter at 1:17): "
                                      "'{\"city\": \"Paris\"'"),
    (get_weather, '["Paris"]', "arguments must be a JSON object, got '[\"Paris\"]'"),
    (get_weather, '{"city": "Paris", "days": "three"}', "argument 'days': expected an integer, got \"three\""),
    (get_weather, '{"city": "Paris", "days": true}', "argument 'days': expected an integer, got true"),
    (get_weather, '{"city": "Paris", "unit": "k"}', "argument 'unit': expected one of \"c\", \"f\", got \"k\""),
    (get_weather, '{"days": 2}', "missing required argument 'city'"),
    (get_weather, "", "missing required argument 'city'"),
    (get_weather, '{"city": "Paris", "town": "x"}', "unknown argument 'town'; the arguments are: city, days, unit"),
    (plan, '{"trip": [{"city": "Lyon", "zip": 1}], "mode": "car"}',
     "argument 'trip[0]': unknown field 'zip'; the fields are: city, country"),
    (plan, '{"trip": [{"city": 7}], "mode": "car"}', "argument 'trip[0].city': expected a string, got 7"),
])
def test_bad_arguments_are_explained_for_the_model(fn: Any, arguments: str, message: str) -> None:
    with pytest.raises(ToolArgumentsError) as caught:
        tool(fn).parse_arguments(arguments)
    assert str(caught.value) == message
    assert caught.value.arguments == arguments


def test_a_long_bad_text_is_quoted_shortened() -> None:
    arguments = '{"city": ' + "x" * 500
    with pytest.raises(ToolArgumentsError) as caught:
        tool(get_weather).parse_arguments(arguments)
    assert str(caught.value).endswith("x" * 100 + "…'")
    assert len(str(caught.value)) < 300


def test_empty_arguments_count_as_an_empty_object() -> None:
    def now() -> str:
        return "noon"

    assert tool(now).parse_arguments("") == {}
    assert tool(now).parse_arguments("  ") == {}
    assert tool(now).run("") == "noon"


# --- parameters= ------------------------------------------------------------------------------

RAW_SCHEMA = {"type": "object", "properties": {"q": {"type": "string"}, "n": {"type": "integer", "minimum": 1}},
              "required": ["q"], "additionalProperties": False}


def raw_search(**arguments: Any) -> list[Any]:
    return sorted(arguments.items())


def test_a_given_schema_validates_and_passes_plain_json() -> None:
    search = tool(raw_search, parameters=RAW_SCHEMA, description="Search")
    assert search.parameters == RAW_SCHEMA and search.strict is False
    assert search.parse_arguments('{"q": "x", "n": 2}') == {"q": "x", "n": 2}
    assert search.run('{"q": "x"}') == '[["q","x"]]'
    with pytest.raises(ToolArgumentsError, match=r"^argument 'n': 0 is less than the minimum of 1$"):
        search.parse_arguments('{"q": "x", "n": 0}')
    with pytest.raises(ToolArgumentsError, match=r"^'q' is a required property$"):
        search.parse_arguments('{"n": 3}')
    with pytest.raises(ToolArgumentsError, match="not valid JSON"):
        search.parse_arguments("{")
    assert tool(raw_search, parameters={**RAW_SCHEMA, "required": ["q", "n"]}).strict is True


def test_an_invalid_given_schema_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="raw_search: parameters: expected a JSON Schema object, got list"):
        tool(raw_search, parameters=[])  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="not a valid JSON Schema"):
        tool(raw_search, parameters={"type": "object", "properties": {"q": {"type": "text"}}})


# --- running and output --------------------------------------------------------------------------


def test_run_calls_the_function_with_typed_arguments() -> None:
    assert tool(get_weather).run('{"city": "Paris", "days": 2, "unit": "f"}') == "Paris: sunny for 2 day(s), 21 F"
    assert tool(plan).run('{"trip": [{"city": "Lyon"}, {"city": "Nice"}], "mode": "car"}') == (
        '{"stops":["Lyon","Nice"],"mode":"car"}')


def test_exceptions_of_the_function_propagate() -> None:
    def broken(x: int) -> int:
        raise LookupError(f"no {x}")

    with pytest.raises(LookupError, match="no 3"):
        tool(broken).run('{"x": 3}')


class Weather(pydantic.BaseModel):
    city: str
    temperature: float


@pytest.mark.parametrize(("value", "text"), [
    ("as is", "as is"),
    ("", ""),
    (None, ""),
    (3, "3"),
    (2.5, "2.5"),
    (True, "true"),
    ([1, "é"], '[1,"é"]'),
    ({"a": [1, 2], "b": None}, '{"a":[1,2],"b":null}'),
    ((1, 2), "[1,2]"),
    (Place("Zürich", "CH"), '{"city":"Zürich","country":"CH"}'),
    ([Place("A")], '[{"city":"A","country":"FR"}]'),
    (Weather(city="Oslo", temperature=-3), '{"city":"Oslo","temperature":-3.0}'),
    ({"unit": Unit.F}, '{"unit":"f"}'),
    ({"day": datetime.date(2024, 5, 1)}, '{"day":"2024-05-01"}'),
    ({"ids": frozenset([7])}, '{"ids":[7]}'),
])
def test_tool_output_text(value: Any, text: str) -> None:
    assert tool_output_text(value) == text
