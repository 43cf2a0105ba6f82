"""Structured output that does not fit: every problem listed (`OutputValidationError.errors`),
the model asked again (`max_output_retries`, for `client.stream` and `client.run`), and
`parsed` the same whichever way the answer is collected. Against the scripted server."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

import pydantic
import pytest
from llm_server import LLMServer, Reply, chat_chunk, sse_done, sse_event, text_stream_body, tool_call_delta

import llmx_sync as llmx
from llmx_sync import (
    Client,
    Completed,
    InvalidInputError,
    OutputRejected,
    OutputValidationError,
    Provider,
    ResponseStream,
    RunStream,
    SchemaProblem,
    ToolResult,
)
from llmx_sync.errors import LISTED_PROBLEMS
from llmx_sync.events import Event
from llmx_sync.functions import ToolArgumentsError, tool
from llmx_sync.models import FunctionCall, FunctionCallOutput, Message
from llmx_sync.structured import OutputSchema


@dataclass
class Stop:
    city: str
    nights: int


@dataclass
class Trip:
    title: str
    stops: list[Stop]
    mood: Literal["calm", "wild"]


class TripDict(TypedDict):
    title: str
    stops: list[Stop]
    mood: Literal["calm", "wild"]


class TripModel(pydantic.BaseModel):
    title: str
    stops: list[dict[str, int]]
    mood: Literal["calm", "wild"]

    @pydantic.field_validator("title")
    @classmethod
    def title_is_capitalised(cls, value: str) -> str:  # a check of the kind instructor users write
        if not value[:1].isupper():
            raise ValueError("the title must start with a capital letter")
        return value


TRIP_SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "nights": {"type": "integer"},
                   "tags": {"type": "array", "items": {"type": "string"}}},
    "required": ["title", "nights"],
    "additionalProperties": False,
}

GOOD = {"title": "Tour", "stops": [{"city": "Oslo", "nights": 2}], "mood": "calm"}
BAD = {"title": 3, "stops": [{"city": "Oslo", "nights": "two"}, {"nights": 1, "x": 0}], "mood": "sad"}
# Every problem of BAD, in the order the check meets them.
BAD_PROBLEMS = [
    SchemaProblem("Trip.title", "expected a string, got 3"),
    SchemaProblem("Trip.stops[0].nights", 'expected an integer, got "two"'),
    SchemaProblem("Trip.stops[1]", "unknown field 'x'; the fields are: city, nights"),
    SchemaProblem("Trip.stops[1]", "missing required field 'city'"),
    SchemaProblem("Trip.mood", 'expected one of "calm", "wild", got "sad"'),
]


def pieces(text: str, size: int = 7) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


def text_answer(value: Any) -> Reply:
    text = value if isinstance(value, str) else json.dumps(value)
    return Reply(body=text_stream_body(pieces(text)))


def call_answer(name: str, value: Any, call_id: str = "call_1") -> Reply:
    text = value if isinstance(value, str) else json.dumps(value)
    body = [sse_event(chat_chunk(role="assistant", tool_calls=[tool_call_delta(0, id=call_id, name=name)]))]
    body += [sse_event(chat_chunk(tool_calls=[tool_call_delta(0, arguments=piece)])) for piece in pieces(text)]
    return Reply(body=[*body, sse_event(chat_chunk(finish_reason="tool_calls")), sse_done()])


def client_for(server: LLMServer, mode: str = "json_schema") -> Client:
    return Client(Provider("test", base_url=server.url, structured_output=mode))  # type: ignore[arg-type]


def messages(server: LLMServer, index: int) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = server.requests[index].json()["messages"]
    return result


# --- every problem, listed ---------------------------------------------------------------------


def test_every_problem_of_a_dataclass_answer_is_listed() -> None:
    text = json.dumps(BAD)
    with pytest.raises(OutputValidationError) as caught:
        OutputSchema.for_target(Trip).parse(text)
    error = caught.value
    assert error.errors == BAD_PROBLEMS
    assert error.text == text
    assert error.reason == "; ".join(map(str, BAD_PROBLEMS))
    assert str(error) == f"the model's output does not match the schema: {error.reason}; output: {text!r}"


def test_a_typeddict_lists_the_problems_of_its_nested_dataclasses_too() -> None:
    with pytest.raises(OutputValidationError) as caught:
        OutputSchema.for_target(TripDict).parse(json.dumps(BAD))
    assert [(p.path.replace("TripDict", "Trip"), p.message) for p in caught.value.errors] == BAD_PROBLEMS


def test_every_pydantic_error_is_listed_with_its_location() -> None:
    text = json.dumps({"title": "lowercase", "stops": [{"a": "x"}, 5]})
    with pytest.raises(OutputValidationError) as caught:
        OutputSchema.for_target(TripModel).parse(text)
    assert [(p.path, p.message.split(",")[0]) for p in caught.value.errors] == [
        ("TripModel.title", "Value error"),
        ("TripModel.stops[0].a", "Input should be a valid integer"),
        ("TripModel.stops[1]", "Input should be a valid dictionary"),
        ("TripModel.mood", "Field required"),
    ]
    assert "the title must start with a capital letter" in caught.value.errors[0].message


def test_every_json_schema_error_is_listed() -> None:
    with pytest.raises(OutputValidationError) as caught:
        OutputSchema.for_target(TRIP_SCHEMA).parse('{"title": 1, "tags": ["a", 2, 3], "extra": true}')
    assert caught.value.errors == [
        SchemaProblem("title", "1 is not of type 'string'"),
        SchemaProblem("tags[1]", "2 is not of type 'string'"),
        SchemaProblem("tags[2]", "3 is not of type 'string'"),
        SchemaProblem("", "'nights' is a required property"),
        SchemaProblem("", "Additional properties are not allowed ('extra' was unexpected)"),
    ]


def test_text_that_is_not_json_is_one_problem() -> None:
    with pytest.raises(OutputValidationError) as caught:
        OutputSchema.for_target(Trip).parse("Sure! Here it is")
    assert caught.value.errors == [SchemaProblem("", "not valid JSON (Expecting value at 1:1)")]
    assert caught.value.reason == "not valid JSON (Expecting value at 1:1)"


def test_the_message_names_the_first_problems_and_counts_the_rest() -> None:
    text = json.dumps({"title": "T", "stops": [{"city": i, "nights": 1} for i in range(25)], "mood": "calm"})
    with pytest.raises(OutputValidationError) as caught:
        OutputSchema.for_target(Trip).parse(text)
    error = caught.value
    assert len(error.errors) == 25 and error.errors[24].path == "Trip.stops[24].city"
    assert error.reason.count("expected a string") == 25  # all of them, for code
    assert str(error).count("expected a string") == LISTED_PROBLEMS  # the message stays short
    assert f"; and {25 - LISTED_PROBLEMS} more; output:" in str(error)


def test_tool_arguments_report_every_problem_to_the_model() -> None:
    @tool
    def book(city: str, nights: int, breakfast: bool = False) -> str:
        """Book a room."""
        return "booked"

    with pytest.raises(ToolArgumentsError) as caught:
        book.parse_arguments('{"city": 1, "nights": "two", "pets": 1}')
    assert caught.value.problem == (
        "unknown argument 'pets'; the arguments are: city, nights, breakfast; "
        "argument 'city': expected a string, got 1; argument 'nights': expected an integer, got \"two\"")


# --- client.stream(..., max_output_retries=N) -------------------------------------------------


def test_a_rejected_answer_is_sent_back_and_the_new_attempt_streams(llm_server: LLMServer) -> None:
    llm_server.enqueue(text_answer(BAD), text_answer(GOOD))
    with client_for(llm_server) as client:
        stream = client.stream("Plan a trip", model="m", response_format=Trip, max_output_retries=2)
        assert isinstance(stream, RunStream)
        events = list(stream)
        result = stream.collect()

    kinds = [event.type for event in events]
    rejected = [event for event in events if isinstance(event, OutputRejected)]
    assert [event.turn for event in events if isinstance(event, Completed)] == [1, 2]
    assert len(rejected) == 1 and kinds.index("output_rejected") == kinds.index("completed") + 1
    assert rejected[0].attempt == 1 and rejected[0].text == json.dumps(BAD) and rejected[0].errors == BAD_PROBLEMS
    # The second attempt streamed its own deltas and partial objects.
    after = kinds[kinds.index("output_rejected") + 1:]
    assert after.count("output_text.delta") > 3 and "output_json.delta" in after

    assert result.parsed == Trip("Tour", [Stop("Oslo", 2)], "calm")
    assert result.text == json.dumps(GOOD)
    assert [type(item).__name__ for item in result.history] == ["Message", "Message", "Message", "Message"]
    # What the model saw the second time: its answer, then what is wrong with it.
    question, answer, feedback = messages(llm_server, 1)
    assert question == {"role": "user", "content": "Plan a trip"}
    assert answer == {"role": "assistant", "content": json.dumps(BAD)}
    assert feedback["role"] == "user"
    for problem in BAD_PROBLEMS:
        assert f"- {problem}\n" in feedback["content"]
    assert feedback["content"].endswith("Answer again with only the whole corrected JSON.")
    # The structured output is asked for again, the same way.
    assert llm_server.requests[1].json()["response_format"] == llm_server.requests[0].json()["response_format"]


def test_when_no_attempt_fits_the_iterator_raises_the_last_error(llm_server: LLMServer) -> None:
    llm_server.enqueue(text_answer(BAD), text_answer("not json"), text_answer({**GOOD, "mood": "odd"}))
    with client_for(llm_server) as client:
        stream = client.stream("Plan a trip", model="m", response_format=Trip, max_output_retries=2)
        seen: list[Event] = []
        with pytest.raises(OutputValidationError) as caught:
            for event in stream:
                seen.append(event)
    assert len(llm_server.requests) == 3
    assert [e.attempt for e in seen if isinstance(e, OutputRejected)] == [1, 2]
    assert [e.turn for e in seen if isinstance(e, Completed)] == [1, 2, 3]
    assert caught.value.errors == [SchemaProblem("Trip.mood", 'expected one of "calm", "wild", got "odd"')]
    assert stream.closed


def test_collect_raises_the_last_error_too(llm_server: LLMServer) -> None:
    llm_server.enqueue(text_answer(BAD), text_answer(BAD))
    with client_for(llm_server) as client, pytest.raises(OutputValidationError) as caught:
        client.stream("Plan a trip", model="m", response_format=Trip, max_output_retries=1).collect()
    assert caught.value.errors == BAD_PROBLEMS and len(llm_server.requests) == 2


def test_an_answer_that_fits_at_once_is_asked_for_once(llm_server: LLMServer) -> None:
    llm_server.enqueue(text_answer(GOOD))
    with client_for(llm_server) as client:
        stream = client.stream("Plan a trip", model="m", response_format=Trip, max_output_retries=3)
        events = list(stream)
        assert stream.collect().parsed == Trip("Tour", [Stop("Oslo", 2)], "calm")
    assert not any(isinstance(event, OutputRejected) for event in events)
    assert len(llm_server.requests) == 1


def test_zero_retries_keeps_a_single_streams_behaviour(llm_server: LLMServer) -> None:
    llm_server.enqueue(text_answer(BAD))
    with client_for(llm_server) as client:
        stream = client.stream("Plan a trip", model="m", response_format=Trip, max_output_retries=0)
        events = list(stream)  # iterating does not check the answer: collect() does
        assert events[-1].type == "completed"
        with pytest.raises(OutputValidationError):
            stream.collect()
    assert len(llm_server.requests) == 1


def test_without_the_keyword_stream_returns_one_response_stream(llm_server: LLMServer) -> None:
    llm_server.enqueue(text_answer(GOOD))
    with client_for(llm_server) as client:
        stream = client.stream("Plan a trip", model="m", response_format=Trip)
        assert isinstance(stream, ResponseStream)
        assert stream.collect().parsed == Trip("Tour", [Stop("Oslo", 2)], "calm")


def test_the_tools_mode_answers_the_rejected_call_with_the_problems(llm_server: LLMServer) -> None:
    llm_server.enqueue(call_answer("Trip", BAD), call_answer("Trip", GOOD, call_id="call_2"))
    with client_for(llm_server, "tools") as client:
        stream = client.stream("Plan a trip", model="m", response_format=Trip, max_output_retries=1)
        result = stream.collect()
    assert result.parsed == Trip("Tour", [Stop("Oslo", 2)], "calm")
    second = llm_server.requests[1].json()
    call_message, output = second["messages"][1:]
    assert call_message["tool_calls"][0]["id"] == "call_1"
    assert output["role"] == "tool" and output["tool_call_id"] == "call_1"
    assert output["content"].startswith("error: these arguments do not fit the schema:\n- Trip.title: ")
    assert output["content"].endswith("Call Trip again with the whole corrected answer.")
    assert second["tool_choice"] == {"type": "function", "function": {"name": "Trip"}}
    assert [type(item) for item in result.history] == [Message, FunctionCall, FunctionCallOutput, FunctionCall]


def test_the_tools_mode_shows_arguments_that_are_not_json(llm_server: LLMServer) -> None:
    # Such a call is not sent back (see behaviour.md, malformed arguments): the model is
    # told in a user message what it wrote.
    llm_server.enqueue(call_answer("Trip", '{"title": "Tour", '), call_answer("Trip", GOOD, call_id="call_2"))
    with client_for(llm_server, "tools") as client:
        result = client.stream("Plan a trip", model="m", response_format=Trip, max_output_retries=1).collect()
    assert result.parsed.title == "Tour"
    sent = messages(llm_server, 1)
    assert [m["role"] for m in sent] == ["user", "user"]
    assert "not valid JSON" in sent[1]["content"]
    assert '(The arguments of your call of Trip were: {"title": "Tour", )' in sent[1]["content"]
    assert sent[1]["content"].endswith("Call Trip with the whole corrected answer as its arguments.")


def test_the_tools_mode_without_the_call_is_asked_to_call(llm_server: LLMServer) -> None:
    llm_server.enqueue(text_answer("It is a nice trip."), call_answer("Trip", GOOD))
    with client_for(llm_server, "tools") as client:
        result = client.stream("Plan a trip", model="m", response_format=Trip, max_output_retries=1).collect()
    assert result.parsed.mood == "calm"
    feedback = messages(llm_server, 1)[-1]
    assert feedback["role"] == "user" and "- the model did not call 'Trip' with the answer" in feedback["content"]


def test_a_tool_call_ends_a_stream_with_retries_without_running_it(llm_server: LLMServer) -> None:
    # client.stream runs no tools: the calls are the caller's, as without retries.
    weather = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}
    llm_server.enqueue(call_answer("get_weather", {}))
    with client_for(llm_server) as client:
        prompt = llmx.Prompt(input=[Message.user("Trip?")], tools=[weather])
        stream = client.stream(prompt, model="m", response_format=Trip, max_output_retries=2)
        events = list(stream)
    assert not any(isinstance(event, (ToolResult, OutputRejected)) for event in events)
    assert stream.snapshot().tool_calls[0].name == "get_weather"
    assert len(llm_server.requests) == 1


@pytest.mark.parametrize(("value", "problem"), [
    (-1, "expected a whole number of 0 or more, got -1"),
    (True, "expected a whole number of 0 or more, got True"),
    (1.5, "expected a whole number of 0 or more, got 1.5"),
])
def test_a_bad_retry_count_is_refused_before_any_request(llm_server: LLMServer, value: Any, problem: str) -> None:
    with client_for(llm_server) as client:
        with pytest.raises(InvalidInputError, match=problem):
            client.stream("hi", model="m", response_format=Trip, max_output_retries=value)
        with pytest.raises(InvalidInputError, match=problem):
            client.run("hi", model="m", response_format=Trip, max_output_retries=value)
    assert llm_server.requests == []


def test_retries_without_a_schema_are_refused(llm_server: LLMServer) -> None:
    with client_for(llm_server) as client, pytest.raises(InvalidInputError, match="give response_format too"):
        client.stream("hi", model="m", max_output_retries=2)
    assert llm_server.requests == []


def test_snapshot_follows_the_attempts(llm_server: LLMServer) -> None:
    llm_server.enqueue(text_answer(BAD), text_answer(GOOD))
    with client_for(llm_server) as client:
        stream = client.stream("Plan a trip", model="m", response_format=Trip, max_output_retries=1)
        first = next(event for event in stream if event.type == "output_text.delta")
        partial = stream.snapshot()  # (the events of one read come in one batch: maybe more than one delta)
        assert partial.text.startswith(first.delta) and json.dumps(BAD).startswith(partial.text)
        assert [m.role for m in partial.history] == ["user", "assistant"]
        rejected = next(event for event in stream if isinstance(event, OutputRejected))
        between = stream.snapshot()  # the rejected answer, with the feedback after it in history
        assert between.text == rejected.text
        assert [m.role for m in between.history] == ["user", "assistant", "user"]
        list(stream)
        assert stream.snapshot().text == json.dumps(GOOD)
        assert len(stream.snapshot().history) == 4


def test_closing_during_a_new_attempt_stops_the_run(llm_server: LLMServer) -> None:
    llm_server.enqueue(text_answer(BAD), text_answer(BAD), text_answer(GOOD))
    with client_for(llm_server) as client:
        stream = client.stream("Plan a trip", model="m", response_format=Trip, max_output_retries=5)
        for event in stream:
            if isinstance(event, OutputRejected):
                break
        next(stream)  # the second attempt's request goes out
        stream.close()
        assert list(stream) == []
    assert len(llm_server.requests) == 2


# --- client.run(..., max_output_retries=N) ---------------------------------------------------------


def test_a_run_re_asks_after_its_tools_and_re_asks_do_not_count_as_turns(llm_server: LLMServer) -> None:
    calls: list[str] = []

    def find_city(name: str) -> str:
        """Look a city up."""
        calls.append(name)
        return "Oslo, Norway"

    llm_server.enqueue(call_answer("find_city", {"name": "Oslo"}), text_answer(BAD), text_answer(GOOD))
    with client_for(llm_server) as client:
        run = client.run("Plan a trip", model="m", tools=[find_city], response_format=Trip, max_turns=2,
                         max_output_retries=1)
        events = list(run)
        result = run.collect()
    assert calls == ["Oslo"]
    assert [e.type for e in events if e.type in ("completed", "tool_result", "output_rejected")] == [
        "completed", "tool_result", "completed", "output_rejected", "completed"]
    assert run.turn == 3 and run.reasks == 1
    assert result.parsed == Trip("Tour", [Stop("Oslo", 2)], "calm")
    assert [type(item).__name__ for item in result.history] == [
        "Message", "FunctionCall", "FunctionCallOutput", "Message", "Message", "Message"]


def test_a_run_without_retries_behaves_as_before(llm_server: LLMServer) -> None:
    llm_server.enqueue(text_answer(BAD))
    with client_for(llm_server) as client:
        run = client.run("Plan a trip", model="m", response_format=Trip)
        assert [e.type for e in run][-1] == "completed"
        with pytest.raises(OutputValidationError):
            run.collect()
    assert len(llm_server.requests) == 1


# --- parsed, whichever way the answer is collected --------------------------------------------------


def test_the_module_collect_gives_the_streams_own_result(llm_server: LLMServer) -> None:
    llm_server.enqueue(text_answer(GOOD), text_answer(BAD), text_answer(GOOD), text_answer(GOOD), text_answer(GOOD))
    expected = Trip("Tour", [Stop("Oslo", 2)], "calm")
    with client_for(llm_server) as client:
        assert llmx.collect(client.stream("Trip?", model="m", response_format=Trip)).parsed == expected
        retried = llmx.collect(client.stream("Trip?", model="m", response_format=Trip, max_output_retries=1))
        assert retried.parsed == expected and len(retried.history) == 4
        assert llmx.collect(client.run("Trip?", model="m", response_format=Trip)).parsed == expected
        # A stream read half-way: the whole answer still, as stream.collect() gives it.
        stream = client.stream("Trip?", model="m", response_format=Trip)
        next(iter(stream))
        assert llmx.collect(stream).text == json.dumps(GOOD)


def test_collect_over_plain_events_keeps_only_the_accepted_attempt() -> None:
    events: list[Event] = [
        llmx.OutputTextDelta("{bad"), Completed("r1", None, "stop"),
        OutputRejected("{bad", [SchemaProblem("", "not valid JSON")], 1),
        llmx.OutputTextDelta('{"ok": 1}'), Completed("r2", None, "stop", turn=2),
    ]
    result = llmx.collect(iter(events))
    assert result.text == '{"ok": 1}' and result.response_id == "r2" and result.parsed is None
    # Aggregated mode passes the rejection on, between the attempts.
    assert [e.type for e in llmx.aggregate(events)] == [
        "output_item.done", "completed", "output_rejected", "output_item.done", "completed"]


def test_display_stream_gives_the_same_parsed_value(llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from llmx_sync.notebook import display_stream

    shown: list[str] = []

    class Handle:
        def update(self, obj: Any) -> None:
            shown.append(obj.data)

    monkeypatch.setattr("IPython.display.display", lambda obj, display_id: Handle())
    llm_server.enqueue(text_answer(BAD), text_answer(GOOD))
    with client_for(llm_server) as client:
        result = display_stream(client.stream("Trip?", model="m", response_format=Trip, max_output_retries=1),
                                throttle=0.01)
    assert result.parsed == Trip("Tour", [Stop("Oslo", 2)], "calm")
    assert shown[-1] == json.dumps(GOOD)  # the rejected attempt's text was replaced, not kept above it


def test_output_rejected_to_dict() -> None:
    event = OutputRejected('{"a": 1}', [SchemaProblem("a", "expected a string, got 1")], 2)
    assert llmx.event_to_dict(event) == {"type": "output_rejected", "attempt": 2, "text": '{"a": 1}',
                                         "errors": [{"path": "a", "message": "expected a string, got 1"}]}
