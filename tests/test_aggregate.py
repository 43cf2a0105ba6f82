"""aggregate() in both modes and collect()."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from llmx_sync.aggregate import ChatResult, aggregate, collect
from llmx_sync.chat import parse_chat_sse
from llmx_sync.errors import InStreamError
from llmx_sync.events import (
    Completed,
    Event,
    OutputItemAdded,
    OutputItemDone,
    OutputTextDelta,
    RateLimits,
    RateLimitSnapshot,
    RateLimitWindow,
    ReasoningContentDelta,
    ReasoningSummaryPartAdded,
    TokenUsage,
)
from llmx_sync.models import FunctionCall, Message, OutputText, Reasoning, ReasoningContentText, ReasoningText


def events_of(*chunks: dict[str, Any]) -> list[Event]:
    data = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return list(parse_chat_sse([data.encode()]))


def delta(**fields: Any) -> dict[str, Any]:
    return {"choices": [{"delta": fields}]}


def call(index: int, call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"index": index, "id": call_id, "function": {"name": name, "arguments": arguments}}


USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
TEXT = events_of({"id": "r1", **delta(content="Hel")}, delta(content="lo"),
                 {"choices": [{"delta": {}, "finish_reason": "stop"}]}, {"choices": [], "usage": USAGE})
REASONING_AND_TEXT = events_of(delta(reasoning="think "), delta(reasoning_content="more"), delta(content="answer"))
PARALLEL_TOOLS = events_of(delta(content="Checking."),
                           delta(tool_calls=[call(0, "c1", "weather", '{"city":'), call(1, "c2", "time", "{}")]),
                           delta(tool_calls=[{"index": 0, "function": {"arguments": '"Oslo"}'}}]),
                           {"choices": [{"delta": {}, "finish_reason": "tool_calls"}]})
COMPLETED_TEXT = Completed("r1", TokenUsage(3, 0, 2, 0, 5), "stop")


def aggregated(events: list[Event]) -> list[Event]:
    return list(aggregate(events, "aggregated"))


def streaming(events: list[Event]) -> list[Event]:
    return list(aggregate(events, "streaming"))


# --- aggregated -------------------------------------------------------------------------------


def test_aggregated_text() -> None:
    assert aggregated(TEXT) == [OutputItemDone(Message("assistant", [OutputText("Hello")])), COMPLETED_TEXT]


def test_aggregated_reasoning_once_then_text() -> None:
    assert aggregated(REASONING_AND_TEXT) == [
        OutputItemDone(Reasoning(content=[ReasoningText("think more")])),
        OutputItemDone(Message("assistant", [OutputText("answer")])),
        Completed("", None, None),
    ]


def test_aggregated_tool_calls() -> None:
    assert aggregated(PARALLEL_TOOLS) == [
        OutputItemDone(Message("assistant", [OutputText("Checking.")])),
        OutputItemDone(FunctionCall("weather", '{"city":"Oslo"}', "c1")),
        OutputItemDone(FunctionCall("time", "{}", "c2")),
        Completed("", None, "tool_calls"),
    ]


def test_aggregated_passes_rate_limits_through() -> None:
    snapshot = RateLimitSnapshot(primary=RateLimitWindow(used_percent=1.0))
    assert aggregated([RateLimits(snapshot), *TEXT])[0] == RateLimits(snapshot)


def test_aggregated_drops_summary_events() -> None:
    assert aggregated([ReasoningSummaryPartAdded(), *TEXT]) == aggregated(TEXT)


def test_message_finished_without_deltas_keeps_all_of_its_text() -> None:
    # llmx kept only the first output_text
    done = OutputItemDone(Message("assistant", [OutputText("a"), OutputText("b")]))
    for mode in ("aggregated", "streaming"):
        assert list(aggregate([done, Completed()], mode)) == [
            OutputItemDone(Message("assistant", [OutputText("ab")])), Completed()]


def test_reasoning_with_text_entries_is_left_as_is() -> None:
    reasoning = Reasoning(content=[ReasoningText("a"), ReasoningContentText("b")])
    assert aggregated([OutputItemDone(reasoning), Completed()])[0] == OutputItemDone(reasoning)


# A producer that, like llmx on "length", ends a turn without output_item.done.
WITHOUT_DONE: list[Event] = [OutputItemAdded(Reasoning(content=[])), ReasoningContentDelta("r"),
                             OutputItemAdded(Message("assistant", [])), OutputTextDelta("a"), OutputTextDelta("b"),
                             Completed("", None, "length")]


def test_deltas_without_a_finished_item_are_rebuilt_at_completed() -> None:
    rebuilt = [OutputItemDone(Reasoning(content=[ReasoningText("r")])),
               OutputItemDone(Message("assistant", [OutputText("ab")]))]
    assert aggregated(WITHOUT_DONE) == [*rebuilt, Completed("", None, "length")]
    assert streaming(WITHOUT_DONE) == [*WITHOUT_DONE[:-1], *rebuilt, WITHOUT_DONE[-1]]


@pytest.mark.parametrize("mode", ["aggregated", "streaming"])
def test_each_turn_is_aggregated_on_its_own(mode: str) -> None:
    turns = [TEXT, WITHOUT_DONE, REASONING_AND_TEXT, WITHOUT_DONE]
    assert list(aggregate(sum(turns, []), mode)) == sum((list(aggregate(t, mode)) for t in turns), [])


# --- streaming --------------------------------------------------------------------------------


def test_streaming_text_forwards_every_event_with_one_output_text() -> None:
    assert streaming(TEXT) == [
        OutputItemAdded(Message("assistant", [])), OutputTextDelta("Hel"), OutputTextDelta("lo"),
        OutputItemDone(Message("assistant", [OutputText("Hello")])), COMPLETED_TEXT,
    ]


def test_streaming_reasoning_and_text_keeps_raw_reasoning() -> None:
    assert streaming(REASONING_AND_TEXT) == REASONING_AND_TEXT


def test_streaming_parallel_tools_in_order() -> None:
    out = streaming(PARALLEL_TOOLS)
    assert out == PARALLEL_TOOLS
    assert [e.item.call_id for e in out if isinstance(e, OutputItemDone) and isinstance(e.item, FunctionCall)] == [
        "c1", "c2"]


def test_streaming_forwards_unknown_events() -> None:
    assert streaming([ReasoningSummaryPartAdded(), *TEXT])[0] == ReasoningSummaryPartAdded()


# --- errors and modes -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["aggregated", "streaming"])
def test_errors_propagate_unchanged_after_the_events_before_them(mode: str) -> None:
    error = InStreamError("boom")

    def failing() -> Iterator[Event]:
        yield OutputItemDone(FunctionCall("f", "{}", "c"))
        raise error

    out: list[Event] = []
    with pytest.raises(InStreamError) as caught:
        for event in aggregate(failing(), mode):
            out.append(event)
    assert caught.value is error
    assert out == [OutputItemDone(FunctionCall("f", "{}", "c"))]


def test_error_from_the_parser_mid_stream() -> None:
    data = b'data: {"choices":[{"delta":{"content":"a"}}]}\n\ndata: {"error":{"message":"overloaded"}}\n\n'
    with pytest.raises(InStreamError, match="overloaded"):
        collect(parse_chat_sse([data]))


def test_bad_mode_is_a_value_error_naming_the_modes() -> None:
    with pytest.raises(ValueError, match="'aggregated' or 'streaming'.*'raw'"):
        aggregate(TEXT, "raw")


# --- collect ----------------------------------------------------------------------------------


def test_collect_text() -> None:
    snapshot = RateLimitSnapshot(secondary=RateLimitWindow(used_percent=2.0))
    assert collect([RateLimits(snapshot), *TEXT]) == ChatResult(
        text="Hello", reasoning="", tool_calls=[], items=[Message("assistant", [OutputText("Hello")])],
        token_usage=TokenUsage(3, 0, 2, 0, 5), finish_reason="stop", response_id="r1", rate_limits=snapshot,
        new_items=[Message("assistant", [OutputText("Hello")])])


def test_collect_reasoning_and_tool_calls() -> None:
    result = collect(REASONING_AND_TEXT[:-1] + PARALLEL_TOOLS)
    assert (result.text, result.reasoning, result.finish_reason) == ("answerChecking.", "think more", "tool_calls")
    assert result.tool_calls == [FunctionCall("weather", '{"city":"Oslo"}', "c1"), FunctionCall("time", "{}", "c2")]
    assert [type(i) for i in result.items] == [Reasoning, Message, Message, FunctionCall, FunctionCall]


def test_collect_without_completed() -> None:
    result = collect([])
    assert (result.items, result.token_usage, result.finish_reason, result.response_id, result.rate_limits) == (
        [], None, None, "", None)
