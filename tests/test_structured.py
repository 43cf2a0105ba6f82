"""Structured output: OutputSchema, the request shape of each mode, and PartialJson."""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict

import pydantic
import pytest

from llmx_sync import structured
from llmx_sync.errors import InvalidInputError, LlmxError, OutputValidationError
from llmx_sync.schema import json_schema
from llmx_sync.structured import UNCHANGED, OutputSchema, PartialJson, response_format_body


@dataclass
class Answer:
    title: str
    items: list[int]
    tone: Literal["dry", "warm"]


@dataclass
class Draft:
    text: str
    score: float = 0.0


class Review(TypedDict):
    stars: int
    comment: NotRequired[str]


class Person(pydantic.BaseModel):
    name: str
    age: int


@dataclass
class Réponse:
    ok: bool


DICT_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "temp": {"type": "number"}},
               "required": ["city", "temp"], "additionalProperties": False}


@pytest.mark.parametrize(("target", "name", "schema", "strict"), [
    (Answer, "Answer", json_schema(Answer, where="Answer"), True),
    (Draft, "Draft", json_schema(Draft, where="Draft"), False),  # score is optional
    (Review, "Review", json_schema(Review, where="Review"), False),
    (Person, "Person", Person.model_json_schema(), False),  # pydantic leaves additionalProperties out
    (DICT_SCHEMA, "output", DICT_SCHEMA, True),
    ({"type": "array", "items": {"type": "integer"}}, "output", {"type": "array", "items": {"type": "integer"}},
     False),
    (Réponse, "R_ponse", json_schema(Réponse, where="Réponse"), True),
])
def test_for_target(target: Any, name: str, schema: dict[str, Any], strict: bool) -> None:
    output = OutputSchema.for_target(target)
    assert (output.name, output.schema, output.strict) == (name, schema, strict)


def test_a_dict_target_is_copied_and_a_name_can_be_given() -> None:
    given = json.loads(json.dumps(DICT_SCHEMA))
    output = OutputSchema.for_target(given, name="weather-1")
    given["properties"]["city"]["type"] = "integer"
    assert output.name == "weather-1" and output.schema == DICT_SCHEMA


@pytest.mark.parametrize(("target", "name", "words"), [
    (list[int], None, "expected a dataclass, a TypedDict, a pydantic model or a JSON Schema dict"),
    (42, None, "expected a dataclass"),
    ({"type": "object", "properties": {"a": {"type": "text"}}}, None, "not a valid JSON Schema"),
    (Answer, "no spaces", "must match"),
    (Answer, "x" * 65, "must match"),
])
def test_for_target_refuses(target: Any, name: str | None, words: str) -> None:
    with pytest.raises(InvalidInputError, match=words):
        OutputSchema.for_target(target, name=name)


@pytest.mark.parametrize(("target", "text", "expected"), [
    (Answer, '{"title": "T", "items": [1, 2], "tone": "dry"}', Answer("T", [1, 2], "dry")),
    (Draft, '{"text": "x"}', Draft("x", 0.0)),
    (Review, ' {"stars": 4}\n', {"stars": 4}),
    (Person, '{"name": "Ann", "age": 40}', Person(name="Ann", age=40)),
    (DICT_SCHEMA, '{"city": "Oslo", "temp": -2.5}', {"city": "Oslo", "temp": -2.5}),
])
def test_parse_gives_the_target_value(target: Any, text: str, expected: Any) -> None:
    parsed = OutputSchema.for_target(target).parse(text)
    assert parsed == expected and type(parsed) is type(expected)


@pytest.mark.parametrize(("target", "text", "reason"), [
    (Answer, '{"title": "T", "items": [1, "2"], "tone": "dry"}', 'Answer.items[1]: expected an integer, got "2"'),
    (Answer, '{"title": "T", "items": [], "tone": "cold"}', 'Answer.tone: expected one of "dry", "warm", got "cold"'),
    (Answer, '{"title": "T", "items": []}', "Answer: missing required field 'tone'"),
    (Answer, '{"title": "T", "items": [], "tone": "dry"', "not valid JSON (Expecting ',' delimiter at 1:42)"),
    (Answer, "Sure! Here it is", "not valid JSON (Expecting value at 1:1)"),
    (Answer, "", "not valid JSON (Expecting value at 1:1)"),
    (Review, '{"stars": 4, "extra": 1}', "Review: unknown field 'extra'; the fields are: stars, comment"),
    (Person, '{"name": "Ann", "age": "forty"}', "Person.age: Input should be a valid integer"),
    (DICT_SCHEMA, '{"city": "Oslo", "temp": "cold"}', "temp: 'cold' is not of type 'number'"),
    (DICT_SCHEMA, '{"city": "Oslo"}', "'temp' is a required property"),
])
def test_parse_raises_output_validation_error_with_the_text(target: Any, text: str, reason: str) -> None:
    with pytest.raises(OutputValidationError) as caught:
        OutputSchema.for_target(target).parse(text)
    error = caught.value
    assert isinstance(error, LlmxError)
    assert error.text == text
    assert error.reason.startswith(reason)
    assert str(error) == f"the model's output does not match the schema: {error.reason}; output: {text!r}"


def test_the_message_shows_only_the_start_of_a_long_text() -> None:
    text = '{"title": "' + "x" * 1000
    with pytest.raises(OutputValidationError) as caught:
        OutputSchema.for_target(Answer).parse(text)
    assert caught.value.text == text
    assert str(caught.value).endswith(repr(text[:200] + "…"))


# --- request shapes -------------------------------------------------------------------------


def test_json_schema_mode() -> None:
    output = OutputSchema.for_target(Answer)
    assert response_format_body(output, "json_schema") == {"response_format": {"type": "json_schema", "json_schema": {
        "name": "Answer", "schema": output.schema, "strict": True}}}


def test_json_object_mode_carries_the_schema() -> None:
    output = OutputSchema.for_target(Draft)
    assert response_format_body(output, "json_object") == {
        "response_format": {"type": "json_object", "schema": output.schema}}


def test_tools_mode_forces_one_function_whose_parameters_are_the_schema() -> None:
    output = OutputSchema.for_target(Answer)
    body = response_format_body(output, "tools")
    assert body == {
        "tools": [{"type": "function", "function": {
            "name": "Answer", "description": "Give the final answer as the arguments of this function.",
            "strict": True, "parameters": output.schema}}],
        "tool_choice": {"type": "function", "function": {"name": "Answer"}},
    }


def test_the_body_does_not_share_the_schema() -> None:
    output = OutputSchema.for_target(Answer)
    for mode in structured.STRUCTURED_OUTPUT_MODES:
        body = json.dumps(response_format_body(output, mode))
        json.loads(body)  # plain JSON
    body_schema = response_format_body(output, "json_schema")["response_format"]["json_schema"]["schema"]
    body_schema["properties"].clear()
    assert output.schema["properties"]


def test_tools_mode_needs_an_object_and_modes_are_checked() -> None:
    with pytest.raises(InvalidInputError, match="the tools mode needs an object schema"):
        response_format_body(OutputSchema.for_target({"type": "array"}), "tools")
    with pytest.raises(InvalidInputError, match="unknown mode 'xml'; expected one of json_schema, json_object, tools"):
        response_format_body(OutputSchema.for_target(Answer), "xml")  # type: ignore[arg-type]


# --- PartialJson --------------------------------------------------------------------------

DOC = {
    "title": 'Café "quoted" and \\ backslash\nnew line\ttab',
    "count": 12345,
    "ratio": -0.5e-3,
    "big": 1e21,
    "flags": [True, False, None],
    "items": [{"id": 1, "tags": ["a", "bb"]}, {"id": 22, "tags": []}, {}],
    "emoji": "smile 😀 ok",
    "nested": {"deep": [[1, 2], [3], []], "empty": ""},
    "last": 7,
}
TEXTS = {
    "compact": json.dumps(DOC, ensure_ascii=False, separators=(",", ":")),
    "indented": json.dumps(DOC, ensure_ascii=False, indent=2),
    "escaped": json.dumps(DOC),  # \u00e9 and the surrogate pair \ud83d\ude00 get split too
}


def _extends(partial: Any, final: Any) -> bool:
    """Whether `partial` can grow into `final`: only the last member of each container
    (and a trailing string) may still be incomplete."""
    if isinstance(final, dict):
        if not isinstance(partial, dict) or list(partial) != list(final)[:len(partial)]:
            return False
        if not partial:
            return True
        *done, last = partial
        return all(partial[key] == final[key] for key in done) and _extends(partial[last], final[last])
    if isinstance(final, list):
        if not isinstance(partial, list) or len(partial) > len(final):
            return False
        if not partial:
            return True
        last = len(partial) - 1
        return partial[:last] == final[:last] and _extends(partial[last], final[last])
    if isinstance(final, str):
        return isinstance(partial, str) and final.startswith(partial)
    return type(partial) is type(final) and partial == final


def _splits(text: str) -> list[tuple[str, list[str]]]:
    cases = [(f"every {size}", [text[i:i + size] for i in range(0, len(text), size)]) for size in range(1, 9)]
    rng = random.Random(13)
    for round_ in range(4):
        cuts = sorted(rng.sample(range(1, len(text)), 40))
        cases.append((f"random {round_}", [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]))
    return cases


class Clock:
    """A clock that moves only when told: with it, only the growth of the text makes a
    parse due (the time since the last parse is never more than twenty times its cost)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def follow(deltas: list[str], *, slow: bool = False) -> list[tuple[int, Any]]:
    """Feed `deltas` as `StructuredOutput.follow` does with one delta per batch: parse
    when due, then finish; `slow`: a second passes between two deltas. (size of the text
    at each value, value)."""
    clock = Clock()
    partial = PartialJson(clock)
    values: list[tuple[int, Any]] = []
    size = 0
    for delta in deltas:
        partial.feed(delta)
        size += len(delta)
        clock.now += 1.0 if slow else 0.0
        if partial.due():
            value = partial.parse()
            if value is not UNCHANGED:
                assert partial.value is value
                values.append((size, value))
    value = partial.finish()
    if value is not UNCHANGED:
        values.append((size, value))
    assert partial.text == "".join(deltas)
    return values


@pytest.mark.parametrize("text_kind", TEXTS)
@pytest.mark.parametrize("slow", [False, True], ids=["fast", "slow"])
def test_every_partial_value_is_consistent_with_the_final_one(text_kind: str, slow: bool) -> None:
    text = TEXTS[text_kind]
    for split_name, deltas in _splits(text):
        values = [value for _, value in follow(deltas, slow=slow)]
        for value in values:
            assert _extends(value, DOC), (split_name, value)
        for previous, value in itertools.pairwise(values):
            assert _extends(previous, value), (split_name, previous, value)
        assert values[-1] == DOC, split_name  # the last value is the whole text's
        if slow:  # a value at nearly every delta: it does stream
            assert len(values) >= min(len(deltas) // 4, 10), split_name


def test_parses_come_at_geometric_sizes_when_only_the_text_grows() -> None:
    # A fast stream of tiny batches: one character each, the clock standing still.
    text = json.dumps({"items": [DOC] * 40}, ensure_ascii=False)
    sizes = [size for size, _ in follow(list(text))]
    assert sizes[-1] == len(text)
    for before, after in itertools.pairwise(sizes[:-1]):
        assert after >= before * 9 / 8
    assert sum(sizes) <= 10 * len(text)  # parsing it all costs less than ten parses of the whole
    assert 20 <= len(sizes) <= 90


def test_a_slow_stream_gets_a_value_once_twenty_parse_times_have_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    real = structured.jiter.from_json

    def one_millisecond(data: bytes, **options: Any) -> Any:
        clock.now += 0.001
        return real(data, **options)

    monkeypatch.setattr(structured.jiter, "from_json", one_millisecond)
    partial = PartialJson(clock)
    partial.feed('{"text": "' + "x" * 1000)
    assert partial.due() and partial.parse() == {"text": "x" * 1000}
    partial.feed("y")  # far less than an eighth more
    assert not partial.due()
    clock.now += 0.019
    assert not partial.due()
    clock.now += 0.002  # 21 ms since a parse that took 1 ms
    assert partial.due() and partial.parse() == {"text": "x" * 1000 + "y"}


def test_whitespace_and_unfinished_numbers_do_not_make_a_parse_due(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    real = structured.jiter.from_json

    def counting(data: bytes, **options: Any) -> Any:
        calls.append(data)
        return real(data, **options)

    def step(delta: str) -> Any:
        partial.feed(delta)
        clock.now += 1.0  # time alone makes a parse due: only what arrived decides
        return partial.parse() if partial.due() else UNCHANGED

    monkeypatch.setattr(structured.jiter, "from_json", counting)
    clock = Clock()
    partial = PartialJson(clock)
    assert step('{"a": "x') == {"a": "x"}
    assert step("  ") == {"a": "x  "}  # inside a string, whitespace is content
    assert step('",') == {"a": "x  "} and len(calls) == 3  # (no comparison with the last value)
    assert step("\n  ") is UNCHANGED and len(calls) == 3  # between tokens: not parsed
    assert step('"n": 1') is UNCHANGED and len(calls) == 3  # 1 may become 12
    assert step("2") is UNCHANGED and len(calls) == 3
    assert step(" ") == {"a": "x  ", "n": 12}  # the number has ended
    assert step("\t") is UNCHANGED and len(calls) == 4
    assert step(', "t": tr') == {"a": "x  ", "n": 12}  # an unfinished literal is left out
    assert step("ue}") == {"a": "x  ", "n": 12, "t": True}
    assert step("") is UNCHANGED and partial.finish() is UNCHANGED and len(calls) == 6


def test_a_number_ending_in_e_is_held_but_true_is_not() -> None:
    assert follow(["[1e", "2, true"]) == [(10, [100.0, True])]
    partial = PartialJson(Clock())
    partial.feed("[1e")
    assert not partial.due()
    partial.feed("2, true")
    assert partial.due()


def test_a_number_split_over_deltas_is_held_until_it_ends() -> None:
    partial = PartialJson(Clock())
    for delta in ["[-", "1", "2.", "5e", "+", "3"]:
        partial.feed(delta)
        assert not partial.due(), delta
    partial.feed("]")
    assert partial.due() and partial.parse() == [-12.5e3]


def test_finish_gives_the_whole_value_once() -> None:
    partial = PartialJson(Clock())
    partial.feed("4")
    partial.feed("2")
    assert not partial.due()  # 42 may still grow
    assert partial.finish() == 42 and partial.value == 42
    assert partial.finish() is UNCHANGED  # once
    closed = PartialJson(Clock())
    closed.feed("[4")
    closed.feed("2]")
    assert closed.parse() == [42]
    assert closed.finish() is UNCHANGED  # nothing since


def test_text_that_is_not_json_yet_gives_no_value() -> None:
    partial = PartialJson(Clock())
    assert partial.value is None
    partial.feed("Sure, here")
    assert partial.parse() is UNCHANGED
    partial.feed(' it is: {"a": 1}')
    assert partial.parse() is UNCHANGED
    assert partial.value is None
    assert partial.text == 'Sure, here it is: {"a": 1}'


def test_a_null_root_is_a_value() -> None:
    assert follow(["nul", "l", " "]) == [(4, None)]


def test_a_lone_surrogate_does_not_stop_the_stream() -> None:
    partial = PartialJson(Clock())
    partial.feed('{"e": "a\ud83d')
    assert partial.parse() == {"e": "a?"}
    partial.feed('\ude00b"}')
    assert partial.parse() == {"e": "a??b"}
    assert partial.text == '{"e": "a\ud83d\ude00b"}'
