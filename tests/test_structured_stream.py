"""Structured output that streams, against the scripted server: `client.stream(...,
response_format=X)` and `client.run(..., response_format=X)` for each kind of X and each
`structured_output` mode: the request, the `OutputJsonDelta` events, `collect().parsed`
and `OutputValidationError`."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

import pydantic
import pytest
from llm_server import (
    LLMServer,
    Pause,
    Reply,
    chat_chunk,
    sse_done,
    sse_event,
    text_stream_body,
    tool_call_delta,
)

from llmx_sync import (
    Client,
    Completed,
    FunctionCall,
    Message,
    OutputJsonDelta,
    OutputTextDelta,
    OutputValidationError,
    Prompt,
    Provider,
    ToolResult,
)
from llmx_sync.events import Event
from llmx_sync.response import StructuredOutput
from llmx_sync.structured import OutputSchema


@dataclass
class Forecast:
    city: str
    temperature: float
    sky: Literal["sunny", "cloudy"]
    hours: list[int]


class ForecastDict(TypedDict):
    city: str
    temperature: float
    sky: Literal["sunny", "cloudy"]
    hours: list[int]


class ForecastModel(pydantic.BaseModel):
    city: str
    temperature: float
    sky: Literal["sunny", "cloudy"]
    hours: list[int]


FORECAST_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "temperature": {"type": "number"},
                   "sky": {"enum": ["sunny", "cloudy"]}, "hours": {"type": "array", "items": {"type": "integer"}}},
    "required": ["city", "temperature", "sky", "hours"],
    "additionalProperties": False,
}
FINAL = {"city": "Paris", "temperature": 21.5, "sky": "sunny", "hours": [9, 12, 15]}
TEXT = json.dumps(FINAL)
# Each kind of target, its schema's name, and what a reply of TEXT parses to.
TARGETS = [
    pytest.param(Forecast, "Forecast", Forecast("Paris", 21.5, "sunny", [9, 12, 15]), id="dataclass"),
    pytest.param(ForecastDict, "ForecastDict", FINAL, id="typeddict"),
    pytest.param(ForecastModel, "ForecastModel", ForecastModel(**FINAL), id="pydantic"),  # type: ignore[arg-type]
    pytest.param(FORECAST_SCHEMA, "output", FINAL, id="schema-dict"),
]
MODES = ["json_schema", "json_object", "tools"]


def pieces(text: str, size: int = 6) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


def text_answer(text: str) -> Reply:
    """The JSON written as the answer's text, a few characters per delta."""
    return Reply(body=text_stream_body(pieces(text)))


def call_answer(name: str, text: str) -> Reply:
    """The JSON written as the arguments of a call of `name` (the ``"tools"`` mode)."""
    body = [sse_event(chat_chunk(role="assistant", tool_calls=[tool_call_delta(0, id="call_1", name=name)]))]
    body += [sse_event(chat_chunk(tool_calls=[tool_call_delta(0, arguments=piece)])) for piece in pieces(text)]
    return Reply(body=[*body, sse_event(chat_chunk(finish_reason="tool_calls")), sse_done()])


def answer(mode: str, name: str, text: str) -> Reply:
    return call_answer(name, text) if mode == "tools" else text_answer(text)


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    mode: str = request.param
    return mode


def client_for(server: LLMServer, mode: str) -> Client:
    return Client(Provider("test", base_url=server.url, structured_output=mode))  # type: ignore[arg-type]


@pytest.fixture
def client(llm_server: LLMServer, mode: str) -> Iterator[Client]:
    with client_for(llm_server, mode) as client:
        yield client


def grows_into(partial: Any, final: Any) -> bool:
    """`partial` is `final` as far as it was written: objects with fewer members,
    arrays with fewer elements, strings cut short; numbers and literals whole."""
    if isinstance(partial, dict):
        return (isinstance(final, dict) and partial.keys() <= final.keys()
                and all(grows_into(value, final[key]) for key, value in partial.items()))
    if isinstance(partial, list):
        return (isinstance(final, list) and len(partial) <= len(final)
                and all(grows_into(value, whole) for value, whole in zip(partial, final, strict=False)))
    if isinstance(partial, str):
        return isinstance(final, str) and final.startswith(partial)
    return bool(partial == final)


def assert_values_follow_deltas(events: list[Event], mode: str) -> None:
    """Each value comes right after the delta that made it due, or right before `completed`."""
    kinds = [event.type for event in events]
    delta_kind = "function_call_arguments.delta" if mode == "tools" else "output_text.delta"
    for i, kind in enumerate(kinds):
        if kind == "output_json.delta":
            assert kinds[i - 1] == delta_kind or kinds[i + 1] == "completed", kinds


def json_values(events: list[Event]) -> list[Any]:
    return [event.value for event in events if isinstance(event, OutputJsonDelta)]


def expected_request(mode: str, name: str, schema: dict[str, Any]) -> dict[str, Any]:
    if mode == "json_schema":
        strict = name != "ForecastModel"  # pydantic leaves additionalProperties out: not strict-compatible
        return {"response_format": {"type": "json_schema",
                                    "json_schema": {"name": name, "schema": schema, "strict": strict}}}
    if mode == "json_object":
        return {"response_format": {"type": "json_object", "schema": schema}}
    return {"tool_choice": {"type": "function", "function": {"name": name}}}


# --- client.stream ---------------------------------------------------------------------------


@pytest.mark.parametrize(("target", "name", "expected"), TARGETS)
def test_the_object_streams_then_parses(llm_server: LLMServer, client: Client, mode: str, target: Any,
                                        name: str, expected: Any) -> None:
    llm_server.enqueue(answer(mode, name, TEXT))
    stream = client.stream("Forecast for Paris?", model="m", response_format=target)
    events = list(stream)
    result = stream.collect()

    assert result.parsed == expected and type(result.parsed) is type(expected)
    values = json_values(events)
    assert values and values[-1] == FINAL  # (how many: one per batch at most, see below)
    assert all(grows_into(value, FINAL) for value in values)
    assert all(grows_into(a, b) for a, b in itertools.pairwise(values))
    assert_values_follow_deltas(events, mode)

    body = llm_server.requests[0].json()
    schema = OutputSchema.for_target(target).schema
    for key, value in expected_request(mode, name, schema).items():
        assert body[key] == value
    if mode == "tools":
        (spec,) = body["tools"]
        assert (spec["function"]["name"], spec["function"]["parameters"]) == (name, schema)
        assert "response_format" not in body
    else:
        assert "tools" not in body and "tool_choice" not in body


@pytest.mark.parametrize(("text", "reason"), [
    ('{"city": "Paris", "temperature": 21.5, "sky": "sun', "not valid JSON"),
    ("Sorry, I cannot say.", "not valid JSON (Expecting value at 1:1)"),
    ('{"city": "Paris", "temperature": "warm", "sky": "sunny", "hours": []}', "temperature"),
])
@pytest.mark.parametrize(("target", "name", "expected"), TARGETS)
def test_output_that_does_not_fit_raises_with_the_raw_text(llm_server: LLMServer, client: Client, mode: str,
                                                          target: Any, name: str, expected: Any, text: str,
                                                          reason: str) -> None:
    llm_server.enqueue(answer(mode, name, text))
    with pytest.raises(OutputValidationError) as caught:
        client.stream("Forecast?", model="m", response_format=target).collect()
    assert caught.value.text == text
    assert reason in caught.value.reason


def test_the_tools_mode_without_the_call_says_so(llm_server: LLMServer) -> None:
    llm_server.enqueue(text_answer("It is sunny."))
    with client_for(llm_server, "tools") as client, pytest.raises(OutputValidationError) as caught:
        client.stream("Forecast?", model="m", response_format=Forecast).collect()
    assert caught.value.text == "It is sunny."
    assert caught.value.reason == "the model did not call 'Forecast' with the answer"


def test_the_prompts_output_schema_is_the_same_thing(llm_server: LLMServer, client: Client, mode: str) -> None:
    llm_server.enqueue(answer(mode, "Forecast", TEXT), answer(mode, "Forecast", TEXT))
    prompt = Prompt(input=[Message.user("Forecast?")], output_schema=Forecast)
    from_prompt = client.stream(prompt, model="m").collect()
    from_setting = client.stream("Forecast?", model="m", response_format=Forecast).collect()
    assert from_prompt.parsed == from_setting.parsed == Forecast("Paris", 21.5, "sunny", [9, 12, 15])
    first, second = (request.json() for request in llm_server.requests)
    assert {key: value for key, value in first.items() if key != "messages"} == {
        key: value for key, value in second.items() if key != "messages"}


def test_no_json_events_without_a_response_format(llm_server: LLMServer) -> None:
    llm_server.enqueue(text_answer(TEXT))
    with Client(base_url=llm_server.url) as client:
        stream = client.stream("Forecast?", model="m")
        events = list(stream)
        assert stream.collect().parsed is None
    assert json_values(events) == [] and "".join(e.delta for e in events if e.type == "output_text.delta") == TEXT
    assert "response_format" not in llm_server.requests[0].json()


def test_a_number_at_the_very_end_comes_before_completed(llm_server: LLMServer) -> None:
    llm_server.enqueue(Reply(body=text_stream_body(["4", "2"])))  # 42 might have grown until the end
    with Client(base_url=llm_server.url) as client:
        stream = client.stream("How many?", model="m", response_format={"type": "integer"})
        kinds = [(event.type, getattr(event, "value", None)) for event in stream]
        assert stream.collect().parsed == 42
    assert kinds[-2:] == [("output_json.delta", 42), ("completed", None)]


def test_a_slow_stream_gets_a_value_for_each_batch(llm_server: LLMServer, client: Client, mode: str) -> None:
    # A model writing its JSON over a second: each group of deltas arrives as a batch of its own.
    groups = [pieces(TEXT)[i:i + 2] for i in range(0, len(pieces(TEXT)), 2)]
    if mode == "tools":
        body = [sse_event(chat_chunk(role="assistant", tool_calls=[tool_call_delta(0, id="c1", name="Forecast")]))]
        for group in groups:
            body += [sse_event(chat_chunk(tool_calls=[tool_call_delta(0, arguments=piece)])) for piece in group]
            body.append(Pause(0.05))
        body += [sse_event(chat_chunk(finish_reason="tool_calls")), sse_done()]
    else:
        body = [sse_event(chat_chunk(role="assistant", content=""))]
        for group in groups:
            body += [sse_event(chat_chunk(content=piece)) for piece in group]
            body.append(Pause(0.05))
        body += [sse_event(chat_chunk(finish_reason="stop")), sse_done()]
    llm_server.enqueue(Reply(body=body))
    stream = client.stream("Forecast?", model="m", response_format=Forecast)
    events = list(stream)
    assert stream.collect().parsed == Forecast("Paris", 21.5, "sunny", [9, 12, 15])
    values = json_values(events)
    assert len(values) >= len(groups) - 2 and values[-1] == FINAL  # (a group whose end is a number waits)
    assert all(grows_into(a, b) for a, b in itertools.pairwise(values))
    assert_values_follow_deltas(events, mode)


def text_batches(*batches: list[str]) -> list[list[Event]]:
    """Batches of text deltas as the iterator hands them to `StructuredOutput.follow`,
    the last one ending the answer."""
    out: list[list[Event]] = [[OutputTextDelta(delta) for delta in batch] for batch in batches]
    out[-1] += [Completed("r1")]
    return out


def test_at_most_one_value_per_batch_and_the_last_is_exact() -> None:
    output = StructuredOutput(OutputSchema.for_target(Forecast), "json_schema")
    text_pieces = pieces(TEXT, 2)
    first, second = text_pieces[:20], text_pieces[20:]
    events = [event for batch in text_batches(first, second) for event in output.follow(batch)]
    kinds = [event.type for event in events]
    assert kinds == ["output_text.delta"] * 20 + ["output_json.delta"] + ["output_text.delta"] * len(second) + [
        "output_json.delta", "completed"]
    assert TEXT[:40] == '{"city": "Paris", "temperature": 21.5, "'
    assert json_values(events) == [{"city": "Paris", "temperature": 21.5}, FINAL]


def test_the_end_of_the_answer_completes_a_number_held_back() -> None:
    output = StructuredOutput(OutputSchema.for_target({"type": "integer"}), "json_schema")
    assert output.follow([OutputTextDelta("4")]) == [OutputTextDelta("4")]  # 4 may still grow
    assert output.follow([OutputTextDelta("2")]) == [OutputTextDelta("2")]
    assert output.follow([Completed("r1")]) == [OutputJsonDelta(42), Completed("r1")]


def test_a_batch_of_whitespace_gives_no_value() -> None:
    output = StructuredOutput(OutputSchema.for_target(Forecast), "json_schema")
    assert json_values(output.follow([OutputTextDelta('{"city": "Paris"')])) == [{"city": "Paris"}]
    assert output.follow([OutputTextDelta("\n  ")]) == [OutputTextDelta("\n  ")]
    assert output.follow([OutputTextDelta("}"), Completed("r1")]) == [
        OutputTextDelta("}"), OutputJsonDelta({"city": "Paris"}), Completed("r1")]


# --- client.run --------------------------------------------------------------------------------


def city_of_the_day() -> str:
    """The city to give the forecast for."""
    return "Paris"


def test_a_run_uses_its_tools_then_gives_the_object(llm_server: LLMServer, client: Client, mode: str) -> None:
    lookup = Reply(body=[
        sse_event(chat_chunk(role="assistant", tool_calls=[
            tool_call_delta(0, id="c1", name="city_of_the_day", arguments="{}")])),
        sse_event(chat_chunk(finish_reason="tool_calls")), sse_done()])
    llm_server.enqueue(lookup, answer(mode, "Forecast", TEXT))
    run = client.run("Forecast for the city of the day?", model="m", tools=[city_of_the_day],
                     response_format=Forecast)
    events = list(run)
    result = run.collect()

    assert result.parsed == Forecast("Paris", 21.5, "sunny", [9, 12, 15])
    assert [event.output for event in events if isinstance(event, ToolResult)] == ["Paris"]
    assert json_values(events)[-1] == FINAL
    assert run.turn == 2 and len(llm_server.requests) == 2
    for request in llm_server.requests:  # every turn asks for the object
        body = request.json()
        assert ("Forecast" in [spec["function"]["name"] for spec in body["tools"]]) == (mode == "tools")
        assert ("response_format" in body) == (mode != "tools")
    if mode == "tools":  # the answer's call ends the run: it is not a tool to run
        assert isinstance(result.history[-1], FunctionCall) and result.history[-1].name == "Forecast"


def test_a_run_whose_answer_does_not_fit_raises(llm_server: LLMServer, client: Client, mode: str) -> None:
    text = '{"city": "Paris"}'
    llm_server.enqueue(answer(mode, "Forecast", text))
    with pytest.raises(OutputValidationError) as caught:
        client.run("Forecast?", model="m", response_format=Forecast).collect()
    assert caught.value.text == text and "missing required field" in caught.value.reason
    assert len(llm_server.requests) == 1
