"""Multi-turn conversations that real servers accept: grouped parallel calls, the content
of tool-call messages, the token-limit name, one choice, calls at one index, JSON
answers, argument deltas, snapshots, and the key of a `Client(base_url=...)`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from llm_server import (
    LLMServer,
    Pause,
    Reply,
    chat_chunk,
    json_reply,
    sse_done,
    sse_event,
    text_stream_body,
    tool_call_delta,
)

from llmx_sync import (
    Client,
    Completed,
    CustomToolCall,
    CustomToolCallOutput,
    FunctionCall,
    FunctionCallArgumentsDelta,
    FunctionCallOutput,
    InStreamError,
    InvalidInputError,
    LocalShellCall,
    LocalShellExecAction,
    Message,
    OutputItemDone,
    OutputTextDelta,
    Prompt,
    Provider,
    Reasoning,
    ReasoningText,
    RequestOptions,
    StreamError,
    aggregate,
    collect,
)
from llmx_sync.chat import ChatJSONParser, ChatSSEParser, build_chat_request, parse_chat_sse
from llmx_sync.chat.parse import completion_as_chunk, is_json_body
from llmx_sync.settings import Quirks

RECORDED_DIR = Path(__file__).resolve().parent / "data" / "recorded"


def user(text: str) -> Message:
    return Message.user(text)


def call(call_id: str, name: str = "f", arguments: str = "{}") -> FunctionCall:
    return FunctionCall(name=name, arguments=arguments, call_id=call_id)


def output(call_id: str, text: str = "ok") -> FunctionCallOutput:
    return FunctionCallOutput.from_text(call_id, text)


def messages(items: list[Any], **options: Any) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = build_chat_request(Prompt(input=items), RequestOptions(model="m", **options),
                                                    Quirks())["messages"]
    return sent


def tool_calls_of(message: dict[str, Any]) -> list[str]:
    return [entry["id"] for entry in message["tool_calls"]]


# --- the content of a tool-call message ---------------------------------------------------------


def test_tool_call_content_is_an_empty_string_by_default() -> None:
    sent = messages([user("hi"), call("c1"), output("c1")])
    assert sent[1] == {"role": "assistant", "content": "", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
    assert Provider("p").quirks.tool_call_content == ""


def test_openai_keeps_null_content_and_uses_max_completion_tokens() -> None:
    openai = Provider.builtin("openai")
    body = build_chat_request(Prompt(input=[user("hi"), call("c1"), output("c1")]),
                              RequestOptions(model="gpt-5", max_tokens=100), openai.quirks)
    assert body["messages"][1]["content"] is None
    assert body["max_completion_tokens"] == 100 and "max_tokens" not in body


def test_max_tokens_param_sends_the_same_value_under_its_name() -> None:
    prompt = Prompt(input=[user("hi")])
    options = RequestOptions(model="m", max_tokens=7)
    assert build_chat_request(prompt, options, Quirks())["max_tokens"] == 7
    renamed = build_chat_request(prompt, options, Quirks(max_tokens_param="max_completion_tokens"))
    assert renamed["max_completion_tokens"] == 7 and "max_tokens" not in renamed
    assert "max_completion_tokens" not in build_chat_request(
        prompt, RequestOptions(model="m", max_tokens=None), Quirks(max_tokens_param="max_completion_tokens"))
    with pytest.raises(InvalidInputError, match=r"^max_tokens_param: expected 'max_tokens' or"):
        Quirks(max_tokens_param="max_output_tokens")  # type: ignore[arg-type]


# --- grouped parallel calls ---------------------------------------------------------------------


def test_consecutive_calls_become_one_assistant_message_followed_by_their_outputs() -> None:
    sent = messages([user("hi"), call("c1"), call("c2"), output("c1"), output("c2")])
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool"]
    assert tool_calls_of(sent[1]) == ["c1", "c2"]
    assert [m["tool_call_id"] for m in sent[2:]] == ["c1", "c2"]


def test_calls_separated_by_an_output_stay_apart() -> None:
    sent = messages([user("hi"), call("c1"), output("c1"), call("c2"), output("c2")])
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "assistant", "tool"]
    assert tool_calls_of(sent[1]) == ["c1"] and tool_calls_of(sent[3]) == ["c2"]


def test_the_text_before_the_calls_is_the_content_of_their_message() -> None:
    # As the server sent the turn: one assistant message (two in a row break chat
    # templates that want the roles to alternate).
    sent = messages([user("hi"), Message.assistant("Let me look."), call("c1"), call("c2"),
                     output("c1"), output("c2")])
    assert len(sent) == 4 and sent[1]["content"] == "Let me look."
    assert tool_calls_of(sent[1]) == ["c1", "c2"]
    # Reasoning anchored to the text and to the calls is joined in order on it.
    sent = messages([user("hi"), Message.assistant("Let me look."), Reasoning(content=[ReasoningText("a")]),
                     Reasoning(content=[ReasoningText("b")]), call("c1"), output("c1")])
    assert (sent[1]["content"], sent[1]["reasoning"], tool_calls_of(sent[1])) == ("Let me look.", "ab", ["c1"])
    # An output between them keeps them apart.
    sent = messages([user("hi"), call("c1"), output("c1"), Message.assistant("Now this."), call("c2"), output("c2")])
    assert [(m["role"], m["content"], tool_calls_of(m) if "tool_calls" in m else None) for m in sent[1:]] == [
        ("assistant", "", ["c1"]), ("tool", "ok", None), ("assistant", "Now this.", ["c2"]), ("tool", "ok", None)]


def test_reasoning_anchored_to_the_first_call_rides_on_the_group() -> None:
    sent = messages([user("hi"), Reasoning(content=[ReasoningText("think")]), call("c1"), call("c2"),
                     output("c1"), output("c2")])
    assert sent[1]["reasoning"] == "think" and tool_calls_of(sent[1]) == ["c1", "c2"]


def test_reasoning_between_grouped_calls_is_joined_in_order() -> None:
    sent = messages([user("hi"), Reasoning(content=[ReasoningText("a")]), call("c1"),
                     Reasoning(content=[ReasoningText("b")]), call("c2"), output("c1"), output("c2")])
    assert len(sent) == 4 and sent[1]["reasoning"] == "ab" and tool_calls_of(sent[1]) == ["c1", "c2"]


def test_an_orphan_call_is_dropped_from_its_group_alone() -> None:
    sent = messages([user("hi"), call("c1"), call("orphan"), call("c3"), output("c1"), output("c3")])
    assert tool_calls_of(sent[1]) == ["c1", "c3"]
    kept = messages([user("hi"), call("c1"), call("orphan"), output("c1")], orphan_tool_calls="keep")
    assert tool_calls_of(kept[1]) == ["c1", "orphan"]


def test_a_call_with_malformed_arguments_is_skipped_with_its_output() -> None:
    sent = messages([user("hi"), call("c1"), call("bad", arguments="{not json"), call("c3"),
                     output("c1"), output("bad"), output("c3")])
    assert tool_calls_of(sent[1]) == ["c1", "c3"]
    assert [m.get("tool_call_id") for m in sent[2:]] == ["c1", "c3"]


def test_shell_and_custom_calls_group_with_function_calls() -> None:
    shell = LocalShellCall(call_id="s1", status="completed", action=LocalShellExecAction(command=["ls"]))
    custom = CustomToolCall(call_id="x1", name="apply_patch", input="*** Begin Patch")
    sent = messages([user("hi"), call("c1"), shell, custom, output("c1"), output("s1"),
                     CustomToolCallOutput(call_id="x1", output="done")])
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool", "tool"]
    assert tool_calls_of(sent[1]) == ["c1", "s1", "x1"]
    assert [entry["type"] for entry in sent[1]["tool_calls"]] == ["function", "local_shell_call", "custom"]


def test_grouped_calls_get_the_provider_content() -> None:
    body = build_chat_request(Prompt(input=[user("hi"), call("c1"), call("c2"), output("c1"), output("c2")]),
                              RequestOptions(model="m"), Quirks(tool_call_content=None))
    assert body["messages"][1]["content"] is None and len(body["messages"][1]["tool_calls"]) == 2


# --- one choice ---------------------------------------------------------------------------------


def sse(*chunks: Any, done: bool = True) -> bytes:
    return b"".join(sse_event(chunk) for chunk in chunks) + (sse_done() if done else b"")


def choice(index: int | None, content: str | None = None, finish_reason: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"delta": {} if content is None else {"content": content},
                             "finish_reason": finish_reason}
    if index is not None:
        entry["index"] = index
    return entry


def test_only_the_choice_with_index_0_is_read() -> None:
    body = sse(chat_chunk(choices=[choice(0, "A1")]), chat_chunk(choices=[choice(1, "second-1")]),
               chat_chunk(choices=[choice(1, "second-2"), choice(0, "A2")]),
               chat_chunk(choices=[choice(1, finish_reason="stop")]),
               chat_chunk(choices=[choice(0, finish_reason="length")]))
    result = collect(parse_chat_sse([body]))
    assert (result.text, result.finish_reason) == ("A1A2", "length")


def test_a_choice_without_index_counts_as_index_0() -> None:
    result = collect(parse_chat_sse([sse(chat_chunk(choices=[choice(None, "hi", "stop")]))]))
    assert (result.text, result.finish_reason) == ("hi", "stop")


def test_n_above_one_is_refused_before_any_io(llm_server: LLMServer) -> None:
    with Client(base_url=llm_server.url) as client, pytest.raises(InvalidInputError) as info:
        client.stream("hi", model="m", extra_body={"n": 2})
    assert info.value.where == "extra_body.n" and "one request per answer" in str(info.value)
    assert llm_server.requests == []
    assert "n" not in build_chat_request(Prompt(input=[user("hi")]), RequestOptions(model="m"), Quirks())
    build_chat_request(Prompt(input=[user("hi")]), RequestOptions(model="m", extra_body={"n": 1}), Quirks())


# --- several calls at one index -----------------------------------------------------------------


def test_a_new_id_at_the_same_index_starts_a_new_call() -> None:
    body = sse(chat_chunk(tool_calls=[tool_call_delta(0, id="a", name="read_file", arguments='{"path": "a.txt"}')]),
               chat_chunk(tool_calls=[tool_call_delta(0, id="b", name="clock", arguments='{"tz": "JST"}')]),
               chat_chunk(finish_reason="tool_calls"))
    calls = collect(parse_chat_sse([body])).tool_calls
    assert [(c.call_id, c.name, c.arguments) for c in calls] == [
        ("a", "read_file", '{"path": "a.txt"}'), ("b", "clock", '{"tz": "JST"}')]


def test_the_same_id_repeated_at_one_index_stays_one_call() -> None:
    body = sse(chat_chunk(tool_calls=[tool_call_delta(0, id="a", name="f", arguments='{"x"')]),
               chat_chunk(tool_calls=[tool_call_delta(0, id="a", name="f", arguments=": 1}")]),
               chat_chunk(finish_reason="tool_calls"))
    calls = collect(parse_chat_sse([body])).tool_calls
    assert [(c.call_id, c.name, c.arguments) for c in calls] == [("a", "f", '{"x": 1}')]


def test_recorded_ollama_body_with_every_call_at_index_0() -> None:
    data = (RECORDED_DIR / "ollama_parallel_tools_index0.sse").read_bytes()
    assert data.count(b'"index":0,"type":"function"') == 2  # the shape this test is about
    result = collect(parse_chat_sse(data[i:i + 100] for i in range(0, len(data), 100)))
    assert [(c.name, json.loads(c.arguments)) for c in result.tool_calls] == [
        ("read_file", {"path": "a.txt"}), ("current_time", {"tz": "JST"})]
    assert len({c.call_id for c in result.tool_calls}) == 2 and result.finish_reason == "tool_calls"


# --- argument deltas ----------------------------------------------------------------------------


def test_argument_deltas_come_as_they_arrive_and_join_to_the_arguments() -> None:
    parser = ChatSSEParser()
    first = parser.feed(sse(chat_chunk(tool_calls=[tool_call_delta(0, id="c1", name="get_weather",
                                                                   arguments='{"ci')]), done=False))
    assert [e for e in first if isinstance(e, FunctionCallArgumentsDelta)] == [
        FunctionCallArgumentsDelta("c1", "get_weather", '{"ci')]
    second = parser.feed(sse(chat_chunk(tool_calls=[tool_call_delta(0, arguments='ty": "Paris"}')]),
                             chat_chunk(finish_reason="tool_calls")))
    deltas = [e for e in first + second if isinstance(e, FunctionCallArgumentsDelta)]
    done = [e.item for e in second if isinstance(e, OutputItemDone)]
    assert "".join(d.delta for d in deltas) == done[0].arguments == '{"city": "Paris"}'  # type: ignore[union-attr]
    assert second.index(deltas[-1]) < second.index(next(e for e in second if isinstance(e, OutputItemDone)))
    assert deltas[-1].to_dict() == {"type": "function_call_arguments.delta", "call_id": "c1",
                                    "name": "get_weather", "delta": 'ty": "Paris"}'}


def test_arguments_before_the_name_wait_for_it() -> None:
    events = list(parse_chat_sse([sse(
        chat_chunk(tool_calls=[tool_call_delta(0, id="c1", arguments='{"a"')]),
        chat_chunk(tool_calls=[tool_call_delta(0, name="f", arguments=": 1}")]),
        chat_chunk(finish_reason="tool_calls"))]))
    deltas = [e for e in events if isinstance(e, FunctionCallArgumentsDelta)]
    assert [(d.call_id, d.name, d.delta) for d in deltas] == [("c1", "f", '{"a": 1}')]


def test_a_call_that_never_got_an_id_still_sends_its_arguments_before_it_ends() -> None:
    events = list(parse_chat_sse([sse(chat_chunk(tool_calls=[{"function": {"name": "f", "arguments": "{}"}}]),
                                      chat_chunk(finish_reason="tool_calls"))]))
    deltas = [e for e in events if isinstance(e, FunctionCallArgumentsDelta)]
    assert [(d.call_id, d.name, d.delta) for d in deltas] == [("", "f", "{}")]


def test_aggregated_mode_drops_argument_deltas_and_streaming_mode_keeps_them() -> None:
    body = sse(chat_chunk(tool_calls=[tool_call_delta(0, id="c1", name="f", arguments="{}")]),
               chat_chunk(finish_reason="tool_calls"))
    assert not any(isinstance(e, FunctionCallArgumentsDelta) for e in aggregate(parse_chat_sse([body])))
    assert any(isinstance(e, FunctionCallArgumentsDelta) for e in aggregate(parse_chat_sse([body]), "streaming"))


# --- a JSON answer to a streaming request ----------------------------------------------------------

COMPLETION = {
    "id": "chatcmpl-9", "object": "chat.completion", "created": 1, "model": "m",
    "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": "Checking.", "reasoning_content": "user wants weather",
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather",
                                                                    "arguments": '{"city": "Paris"}'}},
                       {"id": "c2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]}}],
    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
}


def test_a_json_completion_gives_the_events_of_the_same_streamed_answer() -> None:
    parser = ChatJSONParser()
    body = json.dumps(COMPLETION).encode()
    events = parser.feed(body[:20]) + parser.feed(body[20:]) + parser.finish()
    streamed = list(parse_chat_sse([sse(completion_as_chunk(COMPLETION))]))
    assert events == streamed and parser.done and parser.error is None
    result = collect(events)
    assert (result.text, result.reasoning, result.finish_reason) == ("Checking.", "user wants weather", "tool_calls")
    assert [c.call_id for c in result.tool_calls] == ["c1", "c2"]
    assert result.token_usage is not None and result.token_usage.total_tokens == 15
    assert isinstance(events[-1], Completed) and events[-1].response_id == "chatcmpl-9"


def test_a_json_error_object_with_status_200_is_an_in_stream_error() -> None:
    parser = ChatJSONParser()
    parser.feed(b'{"error": {"message": "model overloaded", "type": "server_error"}}')
    assert parser.finish() == [] and isinstance(parser.error, InStreamError)
    assert parser.error.message == "model overloaded"


def test_a_json_body_that_does_not_parse_is_a_stream_error() -> None:
    parser = ChatJSONParser()
    parser.feed(b'{"choices": [')
    parser.finish()
    assert isinstance(parser.error, StreamError) and "not valid JSON" in str(parser.error)


def test_a_json_body_past_the_limit_fails_without_keeping_it() -> None:
    parser = ChatJSONParser(max_bytes=10)
    assert parser.feed(b"x" * 11) == [] and isinstance(parser.error, StreamError)
    assert parser.finish() == []


@pytest.mark.parametrize(("content_type", "is_json"), [
    ("application/json", True), ("application/json; charset=utf-8", True), ("application/vnd.x+json", True),
    ("text/event-stream", False), ("", False)])
def test_json_content_types(content_type: str, is_json: bool) -> None:
    assert is_json_body({"content-type": content_type} if content_type else {}) is is_json
    assert is_json_body({"Content-Type": content_type} if content_type else {}) is is_json


def test_a_server_that_ignores_stream_true_still_answers(llm_server: LLMServer) -> None:
    llm_server.enqueue(json_reply(COMPLETION))
    with Client(base_url=llm_server.url) as client:
        result = client.stream("weather?", model="m").collect()
    assert result.text == "Checking." and [c.name for c in result.tool_calls] == ["get_weather", "get_time"]
    assert result.token_usage is not None and result.finish_reason == "tool_calls"


# --- snapshots and collect after a view ------------------------------------------------------------


def test_collect_after_text_stream_returns_the_whole_answer(llm_server: LLMServer) -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    llm_server.enqueue(Reply(body=text_stream_body(["Hel", "lo"], usage=usage)))
    with Client(base_url=llm_server.url) as client:
        stream = client.stream("hi", model="m")
        assert "".join(stream.text_stream) == "Hello"
        result = stream.collect()
    assert result.text == "Hello" and result.token_usage is not None and result.token_usage.total_tokens == 5
    assert result.finish_reason == "stop"


def test_snapshot_mid_stream_and_collect_after_a_partial_read(llm_server: LLMServer) -> None:
    first, *rest = text_stream_body(["a", "b", "c"])
    llm_server.enqueue(Reply(body=[first, Pause(0.3), *rest]))  # "a" arrives alone
    with Client(base_url=llm_server.url) as client:
        stream = client.stream("hi", model="m")
        assert stream.snapshot().text == ""
        seen = ""
        for event in stream:
            if isinstance(event, OutputTextDelta):
                seen += event.delta
                if seen == "a":
                    break
        partial = stream.snapshot()
        assert (partial.text, partial.finish_reason) == ("a", None)
        result = stream.collect()
    assert (result.text, result.finish_reason) == ("abc", "stop")


def test_collect_after_an_aggregated_read_keeps_every_item(llm_server: LLMServer) -> None:
    llm_server.enqueue(Reply(body=[sse_event(chat_chunk(tool_calls=[tool_call_delta(0, id="c1", name="f",
                                                                                   arguments="{}")])),
                                   sse_event(chat_chunk(finish_reason="tool_calls")), sse_done()]))
    with Client(base_url=llm_server.url) as client:
        stream = client.stream("hi", model="m")
        items = [e.item for e in stream.aggregate() if isinstance(e, OutputItemDone)]
        result = stream.collect()
    assert result.items == items and [c.call_id for c in result.tool_calls] == ["c1"]


def test_collect_after_close_is_not_reported_as_finished(llm_server: LLMServer) -> None:
    llm_server.enqueue(Reply(body=text_stream_body(["a", "b"])))
    with Client(base_url=llm_server.url) as client:
        stream = client.stream("hi", model="m")
        stream.close()
        with pytest.raises(StreamError, match="closed before the answer was complete"):
            stream.collect()


# --- the key of a Client(base_url=...) -----------------------------------------------------------


def test_client_with_a_base_url_sends_llmx_api_key(llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMX_API_KEY", "sk-llmx")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    llm_server.enqueue(Reply(body=text_stream_body(["x"])), Reply(body=text_stream_body(["y"])))
    with Client(base_url=llm_server.url) as client:
        client.stream("hi", model="m").collect()
    with Client(base_url=llm_server.url, api_key="sk-explicit") as client:
        client.stream("hi", model="m").collect()
    sent = [request.headers.get("Authorization") for request in llm_server.requests]
    assert sent == ["Bearer sk-llmx", "Bearer sk-explicit"]


def test_client_with_a_base_url_and_no_llmx_api_key_sends_no_key(llm_server: LLMServer,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMX_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    llm_server.enqueue(Reply(body=text_stream_body(["x"])))
    with Client(base_url=llm_server.url) as client:
        client.stream("hi", model="m").collect()
    assert llm_server.requests[0].headers.get("Authorization") is None


def test_a_json_body_that_is_not_an_object_is_a_stream_error() -> None:
    parser = ChatJSONParser()
    parser.feed(b"[]")
    assert parser.finish() == [] and isinstance(parser.error, StreamError)
    assert "not a chat.completion object" in str(parser.error)


def test_an_index_that_is_not_an_integer_is_not_the_first_choice() -> None:
    body = sse(chat_chunk(choices=[{"index": 0.0, "delta": {"content": "x"}, "finish_reason": None}]),
               chat_chunk(choices=[{"index": True, "delta": {"content": "y"}, "finish_reason": None}]),
               chat_chunk(choices=[choice(0, "z", "stop")]))
    assert collect(parse_chat_sse([body])).text == "z"


def test_the_local_provider_asks_for_structured_output_as_json_object(monkeypatch: pytest.MonkeyPatch) -> None:
    # llama-cpp-python's server refuses response_format "json_schema" (HTTP 500).
    import llmx_sync.local

    class NoServer:  # the provider's factory, without starting llama.cpp
        base_url = "http://127.0.0.1:9/v1"

        def acquire(self) -> None: ...

        def release(self) -> None: ...

    monkeypatch.setattr(llmx_sync.local, "shared_server", NoServer)
    local = Provider.builtin("local")
    assert (local.quirks.structured_output, local.quirks.tool_call_content, local.defaults.model) == (
        "json_object", "", "local")
    # It forces with the object (which that server honours), and asks for 512 tokens unless
    # a call asks for more: the bundled model may otherwise write on for minutes.
    assert (local.quirks.forced_tool_choice, local.defaults.max_tokens) == ("object", 512)
    with Client(local) as client:
        assert client.request_body("hi")["max_tokens"] == 512
        assert client.request_body("hi", max_tokens=2048)["max_tokens"] == 2048
    assert Provider.builtin("openai").quirks.structured_output == "json_schema"
    # The others leave both open: the client finds them out from the server.
    for name in ("litellm", "oss"):
        quirks = Provider.builtin(name).quirks
        assert (quirks.structured_output, quirks.forced_tool_choice) == (None, None)


def test_structured_output_as_a_tool_is_forced_alone_and_required_beside_other_tools() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
              "additionalProperties": False}
    quirks = Quirks(structured_output="tools")
    alone = build_chat_request(Prompt(input=[user("hi")], output_schema=schema), RequestOptions(model="m"), quirks)
    assert [t["function"]["name"] for t in alone["tools"]] == ["output"]
    assert alone["tool_choice"] == {"type": "function", "function": {"name": "output"}}
    weather = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}
    beside = build_chat_request(Prompt(input=[user("hi")], tools=[weather], output_schema=schema),
                                RequestOptions(model="m"), quirks)
    assert [t["function"]["name"] for t in beside["tools"]] == ["get_weather", "output"]
    assert beside["tool_choice"] == "required"
