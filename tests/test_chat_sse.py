"""ChatSSEParser / parse_chat_sse: the original llmx repository's SSE cases S01-S08 and every
rule of the stream (llmx's order, minus its lost tool calls, usage, items and rate limits)."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from recorded_bodies import RECORDED_DIR, expected, recorded_bodies
from reference_cases import reference_cases

from llmx_sync.aggregate import aggregate, collect
from llmx_sync.chat.parse import TRUNCATED_MESSAGE, ChatSSEParser, parse_chat_sse
from llmx_sync.errors import InStreamError, LlmxError, StreamError
from llmx_sync.events import (
    Completed,
    Event,
    FunctionCallArgumentsDelta,
    OutputItemAdded,
    OutputItemDone,
    OutputTextDelta,
    RateLimits,
    RateLimitSnapshot,
    ReasoningContentDelta,
    TokenUsage,
    event_to_dict,
)
from llmx_sync.models import FunctionCall, Message, OutputText, Reasoning, ReasoningText
from llmx_sync.ratelimits import parse_go_duration


def body(*chunks: Any, done: bool = True) -> bytes:
    """An SSE body: one `data:` event per chunk (dicts as JSON), then `[DONE]`."""
    events = [c if isinstance(c, str) else json.dumps(c) for c in chunks] + (["[DONE]"] if done else [])
    return "".join(f"data: {e}\n\n" for e in events).encode()


def delta(**fields: Any) -> dict[str, Any]:
    return {"choices": [{"delta": fields}]}


def finish(reason: str, **fields: Any) -> dict[str, Any]:
    return {"choices": [{"delta": fields, "finish_reason": reason}]}


def events_and_error(*chunks: bytes, headers: dict[str, str] | None = None,
                     now: float = 1000.0) -> tuple[list[Event], LlmxError | None]:
    events: list[Event] = []
    try:
        for event in parse_chat_sse(chunks, headers=headers, now=lambda: now):
            events.append(event)
    except LlmxError as exc:
        return events, exc
    return events, None


def parse(*chunks: bytes, **kwargs: Any) -> list[Event]:
    events, error = events_and_error(*chunks, **kwargs)
    assert error is None, error
    return events


def done_items(events: list[Event]) -> list[Any]:
    return [e.item for e in events if isinstance(e, OutputItemDone)]


def completed(events: list[Event]) -> Completed:
    assert isinstance(events[-1], Completed), events[-1]
    return events[-1]


# --- the original llmx repository's SSE cases -----------------------------------------------


SEED_CASE_IDS = ["S01", "S02", "S03", "S04", "S05", "S06", "S07", "S08"]
# Where we differ from llmx on purpose (docs/behaviour.md#where-we-differ-from-llmx): llmx
# skipped data that is not JSON (S06) and ended the stream at bytes that are not UTF-8
# (S08, without an event); we decode with replacement and fail on data that is not JSON.
NOT_JSON = "stream disconnected before completion: the server sent an event whose data is not valid JSON"
OUR_OUTCOME = {"S06": f"{NOT_JSON} (Expecting value: line 1 column 1 (char 0)): 'not-json'",
               "S08": f"{NOT_JSON} (Expecting value: line 1 column 1 (char 0)): '\ufffd\ufffd'"}


@functools.cache
def _seed_cases() -> dict[str, dict[str, Any]]:
    return {case["id"]: case for case in reference_cases("sse_cases")}


def seed_case(case_id: str) -> dict[str, Any]:
    return _seed_cases()[case_id]


# The finish_reason of `completed`, which llmx does not report: callers tell a cut-off turn by it.
FINISH_REASONS = {"S01": None, "S02": "stop", "S03": "stop", "S04": "stop", "S05": "tool_calls", "S06": None,
                  "S07": None}


def case_body(case_id: str) -> bytes:
    case = seed_case(case_id)
    return bytes.fromhex(case["body_hex"]) if "body_hex" in case else case["body"].encode()


def reference_form(events: Iterable[Event]) -> list[dict[str, Any]]:
    """Our events in the reference's notation: `output_item_added`, no `id` keys (llmx
    writes empty ids, we omit them), no `finish_reason` and `turn` (checked on their own),
    and without the argument deltas llmx does not have (tested below)."""
    return [_reference_event(e) for e in events if not isinstance(e, FunctionCallArgumentsDelta)]


def _reference_event(event: Event) -> dict[str, Any]:
    data = event_to_dict(event)
    data["type"] = data["type"].replace(".", "_")
    data.pop("finish_reason", None)
    data.pop("turn", None)
    if "item" in data:
        data["item"].pop("id", None)
    return data


def seed_form(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**e, "item": {k: v for k, v in e["item"].items() if k != "id"}} if "item" in e else e for e in events]


def spec_aggregated(streaming: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Our aggregated mode from llmx's streaming sequence: no `output_item.added` (llmx
    forwarded them), no deltas, the reasoning once (llmx sent it twice) with one reasoning_text."""
    result = []
    for event in streaming:
        if event["type"] in ("output_item_added", "output_text_delta", "reasoning_content_delta"):
            continue
        item = event.get("item", {})
        if item.get("type") == "reasoning":
            text = "".join(part["text"] for part in item["content"])
            event = {**event, "item": {**item, "content": [{"type": "reasoning_text", "text": text}]}}
        result.append(event)
    return result


def test_seed_case_ids_are_all_known() -> None:
    assert sorted(_seed_cases()) == SEED_CASE_IDS


@pytest.mark.parametrize("case_id", [case for case in SEED_CASE_IDS if case not in OUR_OUTCOME])
def test_seed_sse_case(case_id: str) -> None:
    """Raw events equal llmx's *streaming* sequence: we flush reasoning before the message
    (llmx's raw stream has the message first on "stop", S02/S03). Streaming mode equals it
    too; aggregated mode has no added events and the reasoning once."""
    expected = seed_case(case_id)["expected"]
    events, error = events_and_error(case_body(case_id))
    assert reference_form(events) == seed_form(expected["streaming"]["events"])
    assert reference_form(aggregate(events, "streaming")) == seed_form(expected["streaming"]["events"])
    assert reference_form(aggregate(events, "aggregated")) == seed_form(
        spec_aggregated(expected["streaming"]["events"]))
    terminal = expected["streaming"]["terminal_error"]
    if terminal is None:
        assert error is None
        assert completed(events).finish_reason == FINISH_REASONS[case_id]
    else:
        assert isinstance(error, StreamError)
        assert (error.message, str(error)) == (terminal["message"], terminal["display"])


def test_seed_case_s02_raw_order_changed_by_spec() -> None:
    """llmx's raw stream emits the message before the reasoning on "stop"; we flush reasoning,
    then the message, then tool calls, at every end of a turn, as llmx's streaming mode orders them."""
    events = parse(case_body("S02"))
    assert [type(item) for item in done_items(events)] == [Reasoning, Message]


@pytest.mark.parametrize("case_id", sorted(OUR_OUTCOME))
def test_seed_cases_where_we_differ_from_llmx(case_id: str) -> None:
    llmx = seed_case(case_id)["expected"]["streaming"]  # S06: completed; S08: a UTF8 error
    events, error = events_and_error(case_body(case_id))
    assert events == [] and isinstance(error, StreamError) and str(error) == OUR_OUTCOME[case_id]
    assert str(error) != (llmx["terminal_error"] or {}).get("display")


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(SEED_CASE_IDS), st.lists(st.integers(0, 1000), max_size=8))
def test_seed_cases_split_anywhere(case_id: str, cuts: list[int]) -> None:
    data = case_body(case_id)
    bounds = sorted(min(c, len(data)) for c in cuts)
    pieces = [data[a:b] for a, b in zip([0, *bounds], [*bounds, len(data)], strict=True)]
    whole, whole_error = events_and_error(data)
    split, split_error = events_and_error(*pieces)
    assert split == whole
    assert str(split_error) == str(whole_error)


# --- tool calls: told apart by `index`, flushed at every end of a turn ------------------------


def tool_delta(**call: Any) -> dict[str, Any]:
    function = {k: call.pop(k) for k in ("name", "arguments") if k in call}
    return delta(tool_calls=[{**call, "function": function}])


def test_parallel_tool_calls_by_index() -> None:
    events = parse(body(
        delta(tool_calls=[{"index": 0, "id": "call_a", "type": "function", "function": {"name": "f", "arguments": ""}},
                          {"index": 1, "id": "call_b", "type": "function", "function": {"name": "g", "arguments": "{"}}]),
        tool_delta(index=0, arguments='{"x":'),
        tool_delta(index=1, id="call_b", name="h", arguments="}"),  # repeated id: the first name stays
        tool_delta(index=0, arguments="1}"),
        finish("tool_calls"),
    ))
    assert done_items(events) == [FunctionCall("f", '{"x":1}', "call_a"), FunctionCall("g", "{}", "call_b")]
    assert completed(events).finish_reason == "tool_calls"


def test_tool_calls_without_index_split_on_a_new_id() -> None:
    events = parse(body(
        tool_delta(name="f", arguments="{"),        # no id yet: the next id becomes its id
        tool_delta(id="call_a", arguments="}"),
        tool_delta(id="", arguments=""),            # "" counts as absent
        tool_delta(id="call_b", name="g", arguments="[]"),
        tool_delta(arguments=""),
        finish("tool_calls"),
    ))
    assert done_items(events) == [FunctionCall("f", "{}", "call_a"), FunctionCall("g", "[]", "call_b")]


def test_repeated_id_and_name_keep_their_first_value() -> None:
    # llama-cpp-python repeats id and name in every delta
    chunks = [tool_delta(index=0, id="call_1", name="get_weather", arguments=part)
              for part in ['{"city"', ': "Paris"', "}"]]
    events = parse(body(*chunks, finish("tool_calls")))
    assert done_items(events) == [FunctionCall("get_weather", '{"city": "Paris"}', "call_1")]


def test_stop_with_a_pending_tool_call_flushes_it() -> None:
    events = parse(body(delta(content="Let me check."), tool_delta(index=0, id="c", name="f", arguments="{}"),
                        finish("stop")))
    assert done_items(events) == [Message("assistant", [OutputText("Let me check.")]), FunctionCall("f", "{}", "c")]
    assert completed(events).finish_reason == "stop"


def test_done_without_finish_reason_flushes_everything() -> None:
    events = parse(body(delta(reasoning="r"), delta(content="t"), tool_delta(index=0, id="c", name="f", arguments="{}")))
    assert done_items(events) == [Reasoning(content=[ReasoningText("r")]), Message("assistant", [OutputText("t")]),
                                  FunctionCall("f", "{}", "c")]
    assert completed(events) == Completed("", None, None)


def test_tool_call_entries_that_are_not_objects_are_ignored() -> None:
    events = parse(body(delta(tool_calls=["junk", None]), finish("stop")))
    assert done_items(events) == []


# --- ends of a turn: every ending flushes, a trailing usage chunk is read ---------------------


def test_length_flushes_reasoning_and_message() -> None:
    events = parse(body(delta(reasoning="think"), delta(content="cut sh"), finish("length")))
    assert done_items(events) == [Reasoning(content=[ReasoningText("think")]), Message("assistant", [OutputText("cut sh")])]
    assert completed(events).finish_reason == "length"


def test_body_end_without_done_or_finish_reason_is_a_broken_answer() -> None:
    # A proxy may end a failed upstream stream cleanly (a last chunk, or closing a
    # close-delimited body): without a finish_reason or [DONE] the answer is cut, and
    # must not be reported as complete. The deltas before come first.
    events, error = events_and_error(body(delta(content="a"), delta(content="b"), done=False))
    assert [type(e) for e in events] == [OutputItemAdded, OutputTextDelta, OutputTextDelta]
    assert isinstance(error, StreamError) and "ended before the answer was complete" in str(error)


def test_done_without_finish_reason_completes_with_finish_reason_none() -> None:
    events = parse(body(delta(content="a"), delta(content="b")))
    assert done_items(events) == [Message("assistant", [OutputText("a"), OutputText("b")])]
    assert completed(events) == Completed("", None, None)


def test_body_end_after_finish_reason_without_done() -> None:
    events = parse(body(delta(content="a"), finish("stop"), done=False))
    assert [type(e) for e in events] == [OutputItemAdded, OutputTextDelta, OutputItemDone, Completed]
    assert completed(events).finish_reason == "stop"


def test_trailing_usage_after_finish_reason_lands_in_completed() -> None:
    parser = ChatSSEParser()
    first = parser.feed(body(delta(content="hi"), finish("stop"), done=False))
    assert [type(e) for e in first] == [OutputItemAdded, OutputTextDelta, OutputItemDone]  # no `completed` yet
    rest = parser.feed(body({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}))
    assert rest == [Completed("", TokenUsage(5, 0, 2, 0, 7), "stop")]
    assert parser.done and parser.error is None


def test_only_usage_errors_and_done_count_after_the_finish_reason() -> None:
    events = parse(body(delta(content="a"), finish("stop"), delta(content="late"),
                        tool_delta(index=0, id="c", name="f", arguments="{}"), finish("length")))
    assert done_items(events) == [Message("assistant", [OutputText("a")])]
    assert completed(events).finish_reason == "stop"
    _, error = events_and_error(body(finish("stop"), {"error": {"message": "late failure"}}))
    assert isinstance(error, InStreamError) and error.message == "late failure"


def test_order_within_a_chunk_is_content_reasoning_tool_calls_finish() -> None:
    chunk = {"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": "{}"}}],
                                    "reasoning": "r", "content": "t"},
                          "finish_reason": "tool_calls"}]}
    events = parse(body(chunk))
    assert [type(e) for e in events] == [OutputItemAdded, OutputTextDelta, OutputItemAdded, ReasoningContentDelta,
                                         FunctionCallArgumentsDelta, OutputItemDone, OutputItemDone, OutputItemDone,
                                         Completed]
    assert [type(i) for i in done_items(events)] == [Reasoning, Message, FunctionCall]


def test_empty_finish_reason_is_not_a_finish() -> None:
    events = parse(body({"choices": [{"delta": {"content": "a"}, "finish_reason": ""}]}, delta(content="b")))
    assert done_items(events) == [Message("assistant", [OutputText("a"), OutputText("b")])]


# --- usage ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13,
          "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 2}},
         TokenUsage(10, 4, 3, 2, 13)),
        ({"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13,
          "prompt_tokens_details": None, "completion_tokens_details": {"reasoning_tokens": 2.0}},
         TokenUsage(10, 0, 3, 0, 13)),
        ({"prompt_tokens": -1, "completion_tokens": 2**63 - 1, "total_tokens": 0}, TokenUsage(-1, 0, 2**63 - 1, 0, 0)),
        ({"prompt_tokens": 10.0, "completion_tokens": 3, "total_tokens": 13}, None),
        ({"prompt_tokens": True, "completion_tokens": 3, "total_tokens": 13}, None),
        ({"prompt_tokens": 2**63, "completion_tokens": 3, "total_tokens": 13}, None),
        ({"prompt_tokens": "10", "completion_tokens": 3, "total_tokens": 13}, None),
        ({"prompt_tokens": 10, "completion_tokens": 3}, None),
        ("10", None),
    ],
)
def test_usage_fields(usage: Any, expected: TokenUsage | None) -> None:
    assert completed(parse(body({"choices": [], "usage": usage}))).token_usage == expected


def test_later_usage_replaces_earlier_and_invalid_usage_keeps_it() -> None:
    first = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    second = {"prompt_tokens": 1, "completion_tokens": 5, "total_tokens": 6}
    events = parse(body({"usage": first}, {"usage": second}, {"usage": {"prompt_tokens": 1.5}}))
    assert completed(events).token_usage == TokenUsage(1, 0, 5, 0, 6)


# --- errors (only a non-null `error` ends the stream) and the empty body ----------------------


def test_error_object_ends_the_stream_after_the_events_before_it() -> None:
    error_chunk = {"error": {"message": "overloaded", "type": "server_error", "code": 529, "param": None}}
    events, error = events_and_error(body(delta(content="partial"), error_chunk, delta(content="never")))
    assert [type(e) for e in events] == [OutputItemAdded, OutputTextDelta]
    assert isinstance(error, InStreamError)
    assert (error.status, error.message, error.type, error.code, error.param) == (200, "overloaded", "server_error",
                                                                                  529, None)
    assert str(error) == "unexpected status 200 OK: overloaded"


@pytest.mark.parametrize(
    ("value", "message"),
    [("quota exceeded", "quota exceeded"), ({"type": "x"}, "Unknown error"), ({"message": 3}, "Unknown error"),
     (42, "Unknown error"), ("", "Unknown error")],
)
def test_error_message_forms(value: Any, message: str) -> None:
    _, error = events_and_error(body({"error": value}))
    assert isinstance(error, InStreamError) and error.message == message


def test_null_error_is_not_an_error() -> None:
    events = parse(body({"error": None, "choices": [{"delta": {"content": "ok"}}]}))
    assert done_items(events) == [Message("assistant", [OutputText("ok")])]


def test_parser_returns_nothing_after_an_error() -> None:
    parser = ChatSSEParser()
    assert parser.feed(body({"error": "boom"}, delta(content="x"))) == []
    assert isinstance(parser.error, InStreamError) and parser.done
    assert parser.feed(body(delta(content="y"))) == [] and parser.finish() == []


@pytest.mark.parametrize("data", [b"", b": keep-alive\n\n", b"\n\n\n", b"data: unterminated"])
def test_body_without_any_event_is_an_error(data: bytes) -> None:
    events, error = events_and_error(data)
    assert events == []
    assert isinstance(error, StreamError)
    assert str(error) == "stream disconnected before completion: the server closed the stream without sending any event"


def test_bytes_that_are_not_utf8_are_replaced_and_the_answer_goes_on() -> None:
    text = b'data: {"choices":[{"delta":{"content":"Gr\xfc\xdfe \xe2\x82"}}]}\n\n'
    events = parse(b": \xff\xfe comment\n\n" + text + body(delta(content="!"), finish("stop")))
    assert done_items(events) == [Message("assistant", [OutputText("Gr\ufffd\ufffde \ufffd"), OutputText("!")])]


def test_a_cut_line_at_the_end_is_dropped_and_the_answer_is_cut() -> None:
    events, error = events_and_error(body(delta(content="a"), done=False) + b"data: \xe2\x82")
    assert [type(e) for e in events] == [OutputItemAdded, OutputTextDelta]
    assert isinstance(error, StreamError) and str(error).endswith(TRUNCATED_MESSAGE)


# --- reasoning, also from `delta.reasoning_content` -------------------------------------------


def reasoning_texts(*chunks: Any) -> list[str]:
    return [e.delta for e in parse(body(*chunks)) if isinstance(e, ReasoningContentDelta)]


def test_reasoning_content() -> None:
    assert reasoning_texts(delta(reasoning_content="a"), delta(reasoning_content="b")) == ["a", "b"]


def test_delta_reasoning_wins_over_reasoning_content() -> None:
    assert reasoning_texts(delta(reasoning="r", reasoning_content="rc"), delta(reasoning="", reasoning_content="rc2"),
                           delta(reasoning={"text": "", "content": "c"})) == ["r", "rc2", "c"]


def test_message_reasoning_as_the_seed() -> None:
    # an object's `text` wins when it is a string, even an empty one
    assert reasoning_texts({"choices": [{"message": {"reasoning": {"text": "", "content": "c"}}}]},
                           {"choices": [{"message": {"reasoning": {"content": "c2"}}}]},
                           {"choices": [{"message": {"reasoning": "s"}}]}) == ["c2", "s"]


# --- identity, snapshots, JSON --------------------------------------------------------------


def test_response_id_is_the_first_chunk_id() -> None:
    events = parse(body({"choices": []}, {"id": "", "choices": []}, {"id": "chatcmpl-1", "choices": []},
                        {"id": "chatcmpl-2", "choices": []}))
    assert completed(events).response_id == "chatcmpl-1"


def test_added_items_are_fresh_snapshots() -> None:
    events = parse(body(delta(reasoning="r"), delta(content="a"), delta(content="b")))
    added = [e.item for e in events if isinstance(e, OutputItemAdded)]
    assert added == [Reasoning(content=[]), Message("assistant", [])]
    assert done_items(events) == [Reasoning(content=[ReasoningText("r")]),
                                  Message("assistant", [OutputText("a"), OutputText("b")])]


@pytest.mark.parametrize(("data", "reason"), [
    ('{"choices":[{"delta":{"content":"bad","x":NaN}}]}', "not valid JSON (NaN is not valid JSON"),
    ('{"choices":[{"delta":{"content":"bad","x":Infinity}}]}', "not valid JSON (Infinity is not valid JSON"),
    ('{"choices":[{"delta":{"content":"bad","x":-Infinity}}]}', "not valid JSON (-Infinity is not valid JSON"),
    ('{"choices":[{"delta":{"content":"bad"}}]} x', "not valid JSON (Extra data"),
    ('{"choices":[{"delta":{"content":"cut', "not valid JSON (Unterminated string"),
    ("garbage", "not valid JSON (Expecting value"),
    ("[1, 2]", "JSON but not a chunk object"), ('"text"', "JSON but not a chunk object"),
    ("1", "JSON but not a chunk object")])
def test_data_that_is_not_a_json_chunk_is_an_error_quoting_it(data: str, reason: str) -> None:
    # llmx skipped such data silently: an answer lost its middle and still completed.
    events, error = events_and_error(body(delta(content="Hello"), data, delta(content=" world"), finish("stop")))
    assert [type(e) for e in events] == [OutputItemAdded, OutputTextDelta]
    assert isinstance(error, StreamError)
    assert str(error).startswith(f"stream disconnected before completion: the server sent an event whose data is "
                                 f"{reason}") and str(error).endswith(f": {data!r}")


def test_a_long_data_line_is_quoted_cut_to_200_characters() -> None:
    _, error = events_and_error(body("<html>" + "x" * 5000))
    assert isinstance(error, StreamError) and str(error).endswith(f": {'<html>' + 'x' * 194 + '…'!r}")


@pytest.mark.parametrize("data", ["", " ", "\t", "\n"])
def test_blank_data_is_passed_over(data: str) -> None:
    events = parse(body(delta(content="a"), data, delta(content="b"), finish("stop")))
    assert done_items(events) == [Message("assistant", [OutputText("a"), OutputText("b")])]


def test_whitespace_around_chunk_json_and_done_is_accepted() -> None:
    # Rust's trim strips Unicode White_Space such as U+3000 around [DONE]
    data = 'data:  {"choices":[{"delta":{"content":"a"}}]} \n\ndata:  [DONE]\u3000 \n\n'.encode()
    assert done_items(parse(data)) == [Message("assistant", [OutputText("a")])]


def test_bytes_after_done_are_ignored() -> None:
    parser = ChatSSEParser()
    events = parser.feed(body(delta(content="a")) + b"data: garbage\n\n")
    assert isinstance(events[-1], Completed) and parser.done
    assert parser.feed(body(delta(content="late"))) == [] and parser.finish() == []


def test_parse_chat_sse_stops_pulling_chunks_once_done() -> None:
    pulled = []

    def chunks() -> Iterator[bytes]:
        for piece in (body(delta(content="a")), b"never"):
            pulled.append(piece)
            yield piece

    assert isinstance(list(parse_chat_sse(chunks()))[-1], Completed)
    assert pulled == [body(delta(content="a"))]


# --- rate limits from the response headers (llmx never sent them) -------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("0", 0.0), ("0s", 0.0), (".5s", 0.5),
     ("1.5h", 5400.0), ("300us", 0.0003), ("7µs", 7e-6), ("2ns", 2e-9), (" 59s ", 59.0),
     ("", None), ("5", None), ("-1s", None), ("1d", None), ("s", None), ("1s2", None)],
)
def test_go_durations(text: str, seconds: float | None) -> None:
    if seconds is None:
        assert parse_go_duration(text) is None
    else:
        assert parse_go_duration(text) == pytest.approx(seconds)


OPENAI_HEADERS = {
    "X-RateLimit-Limit-Requests": "500", "x-ratelimit-remaining-requests": "499", "x-ratelimit-reset-requests": "120ms",
    "x-ratelimit-limit-tokens": "200000", "x-ratelimit-remaining-tokens": "150000", "x-ratelimit-reset-tokens": "6m0s",
    "Content-Type": "text/event-stream", "Authorization": "Bearer secret",
}


def first_snapshot(events: list[Event]) -> RateLimitSnapshot:
    assert isinstance(events[0], RateLimits), events
    return events[0].snapshot


def test_rate_limits_are_the_first_event() -> None:
    events = parse(body(delta(content="a")), headers=OPENAI_HEADERS, now=1000.5)
    snapshot = first_snapshot(events)
    assert snapshot.primary is not None and snapshot.secondary is not None
    assert (snapshot.primary.used_percent, snapshot.primary.window_minutes, snapshot.primary.resets_at) == (
        pytest.approx(0.2), None, 1000)
    assert (snapshot.secondary.used_percent, snapshot.secondary.resets_at) == (25.0, 1360)
    assert snapshot.headers == {k: v for k, v in OPENAI_HEADERS.items() if k.lower().startswith("x-ratelimit-")}
    assert sum(isinstance(e, RateLimits) for e in events) == 1


def test_rate_limit_window_that_does_not_parse_is_skipped() -> None:
    headers = {**OPENAI_HEADERS, "x-ratelimit-reset-tokens": "soon"}
    snapshot = first_snapshot(parse(body(), headers=headers))
    assert snapshot.primary is not None and snapshot.secondary is None
    headers = {"x-ratelimit-limit-tokens": "0", "x-ratelimit-remaining-tokens": "0",
               "x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "x"}
    assert not any(isinstance(e, RateLimits) for e in parse(body(), headers=headers))


def test_rate_limit_window_without_reset_has_no_resets_at() -> None:
    headers = {"x-ratelimit-limit-tokens": "100", "x-ratelimit-remaining-tokens": "75"}
    snapshot = first_snapshot(parse(body(), headers=headers))
    assert snapshot.primary is None and snapshot.secondary is not None
    assert (snapshot.secondary.used_percent, snapshot.secondary.resets_at) == (25.0, None)


def test_no_rate_limit_headers_no_event() -> None:
    assert not any(isinstance(e, RateLimits) for e in parse(body(), headers={"content-type": "text/event-stream"}))


def test_rate_limits_come_before_an_empty_body_error() -> None:
    events, error = events_and_error(b"", headers=OPENAI_HEADERS)
    assert [type(e) for e in events] == [RateLimits] and isinstance(error, StreamError)


# --- recorded real-server bodies ------------------------------------------------------------


# The bodies recorded here (the source-derived ones are checked against `expected.json`
# in test_server_shapes.py).
RECORDED = [path for path in recorded_bodies() if path.name not in expected()]


@functools.cache
def _recorded_requests() -> dict[str, Any]:
    path = RECORDED_DIR / "requests.json"
    requests: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    return requests


def _tool_call_keys(data: bytes) -> set[Any]:
    """One key per tool call in a raw body: its id (llama.cpp servers send it in the
    first or in every delta of a call; Ollama gives every call its own id at index 0),
    else its `index`."""
    chunks = [json.loads(line[6:]) for line in data.decode().splitlines() if line.startswith("data: {")]
    calls = [call for chunk in chunks for choice in chunk.get("choices", [])
             for call in choice.get("delta", {}).get("tool_calls") or ()]
    ids = {call["id"] for call in calls if call.get("id")}
    return ids or {call["index"] for call in calls}


@pytest.mark.parametrize("path", RECORDED, ids=[p.name for p in RECORDED])
def test_recorded_body(path: Path) -> None:
    data = path.read_bytes()
    request = _recorded_requests().get(path.name, {})
    events = parse_chat_sse(data[i:i + 4096] for i in range(0, len(data), 4096))
    if not data.strip():  # e.g. llama-cpp-python's empty 200 answer to tool_choice="auto"
        with pytest.raises(StreamError, match="without sending any event"):
            collect(events)
        return
    result = collect(events)
    assert result.response_id and result.finish_reason
    if request.get("stream_options", {}).get("include_usage"):
        assert result.token_usage is not None  # sent after the finish_reason chunk, which llmx never read
    keys = _tool_call_keys(data)
    if keys:  # one FunctionCall per call, its name once (not "get_weatherget_weather")
        assert len(result.tool_calls) == len(keys), result.tool_calls
        tool_names = {tool["function"]["name"] for tool in request.get("tools", [])}
        for call in result.tool_calls:
            assert call.name and call.name in (tool_names or {call.name}) and call.call_id
            assert isinstance(json.loads(call.arguments), dict)
    else:
        assert result.text and not result.tool_calls
