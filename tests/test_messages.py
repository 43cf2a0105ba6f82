"""Chat Completions messages in (`items_from_messages`, a prompt that is a list of
messages) and out (`ChatResult.to_messages`)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import llmx_sync as llmx
from llmx_sync._jsonrules import is_blank
from llmx_sync.aggregate import ChatResult
from llmx_sync.chat import build_chat_request
from llmx_sync.messages import items_from_messages
from llmx_sync.models import (
    CustomToolCall,
    FunctionCall,
    FunctionCallOutput,
    InputImage,
    InputText,
    Message,
    OutputText,
    Reasoning,
    ReasoningText,
    Refusal,
    ResponseItem,
)
from llmx_sync.prompt import Prompt
from llmx_sync.settings import Quirks, RequestOptions
from llmx_sync.testing import ScriptedServer, answer, call


def body_messages(prompt: Any, quirks: Quirks | None = None) -> list[dict[str, Any]]:
    """The `messages` of the request for `prompt` (a list of messages or of items)."""
    sent: list[dict[str, Any]] = build_chat_request(Prompt(input=prompt), RequestOptions(model="m"), quirks)["messages"]
    return sent


WEATHER_CALL = {"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}


# --- messages in: each shape ------------------------------------------------------------------


def test_each_role_and_shape_becomes_the_items_it_stands_for() -> None:
    messages = [
        {"role": "system", "content": "Be terse."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
        {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA=",
                                                                         "detail": "low"}}]},
        {"role": "assistant", "content": "Let me look.", "tool_calls": [WEATHER_CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "assistant", "content": None, "reasoning": "It needs the tool.",
         "tool_calls": [{"id": "c2", "type": "custom", "custom": {"name": "apply_patch", "input": "*** Begin"}}]},
        {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "done"},
                                                          {"type": "image_url", "image_url": {"url": "u"}}]},
        {"role": "assistant", "content": "Un chat.", "reasoning": "Done."},
    ]
    assert items_from_messages(messages) == [
        Message("system", [InputText("Be terse.")]),
        Message("developer", [InputText("Answer in French.")]),
        Message("user", [InputText("What is this?"), InputImage("data:image/png;base64,AAA=", "low")]),
        Message("assistant", [OutputText("Let me look.")]),
        FunctionCall("get_weather", '{"city":"Paris"}', "call_1"),
        FunctionCallOutput.from_text("call_1", "sunny"),
        Reasoning(content=[ReasoningText("It needs the tool.")]),
        CustomToolCall("c2", "apply_patch", "*** Begin"),
        FunctionCallOutput("c2", llmx.FunctionCallOutputPayload.from_items([InputText("done"), InputImage("u")])),
        Message("assistant", [OutputText("Un chat.")]),
        Reasoning(content=[ReasoningText("Done.")]),
    ]


def test_the_request_sends_the_messages_as_they_were_given() -> None:
    messages = [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "https://x/cat.png", "detail": "high"}}]},
        {"role": "assistant", "content": "Let me look.", "tool_calls": [WEATHER_CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "sunny"}]},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c2", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "c3", "type": "function", "function": {"name": "g", "arguments": "[1]"}}], "reasoning": "Two more."},
        {"role": "tool", "tool_call_id": "c2", "content": "2"},
        {"role": "tool", "tool_call_id": "c3", "content": "3"},
    ]
    assert body_messages(copy.deepcopy(messages)) == messages


def test_what_the_body_writes_in_its_own_form() -> None:
    # A text-only part list is one string (the rule for every message without an image),
    # a message of calls alone gets the provider's content ("" by default, null for OpenAI).
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "Hello, "}, {"type": "text", "text": "there."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Hi."}]},
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [WEATHER_CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    assert [m["content"] for m in body_messages(messages)] == ["Hello, there.", "Hi.", "Weather?", "", "sunny"]
    assert body_messages(messages, Quirks(tool_call_content=None))[3]["content"] is None


def test_an_sdk_answers_dump_with_its_null_fields_is_accepted() -> None:
    # What `ChatCompletionMessage.model_dump()` of the openai SDK gives for an answer.
    dumped = {"content": None, "refusal": None, "role": "assistant", "annotations": [], "audio": None,
              "function_call": None, "tool_calls": [WEATHER_CALL]}
    assert items_from_messages([{"role": "user", "content": "hi"}, dumped])[1:] == [
        FunctionCall("get_weather", '{"city":"Paris"}', "call_1")]


def test_messages_the_openai_sdk_wrote_continue_the_conversation() -> None:
    # What apps do with the official SDK: append the answer's message as it dumps it
    # (with its null fields, `parsed`, the calls' `index` and `parsed_arguments`).
    openai = pytest.importorskip("openai")
    with ScriptedServer(answer("Let me check.", tool_calls=[call("get_weather", {"city": "Paris"})]),
                        answer('{"sky": "sunny"}'), answer("Sunny.")) as server:
        official = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
        messages: list[Any] = [{"role": "user", "content": "Weather?"}]
        with official.chat.completions.stream(model="m", messages=messages) as stream:
            message = stream.get_final_completion().choices[0].message
        official_json = official.chat.completions.create(model="m", messages=messages, stream=True)
        json_text = "".join(chunk.choices[0].delta.content or "" for chunk in official_json if chunk.choices)
        official.close()
        messages += [message.model_dump(),
                     {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "sunny"},
                     {"role": "assistant", "content": json_text, "parsed": json.loads(json_text), "refusal": None}]
        assert items_from_messages([messages[0], message.to_dict()]) == items_from_messages(messages[:2])
        llmx.Client(base_url=server.base_url).stream(messages, model="m").collect()
        sent = server.requests[2].json()["messages"]
    assert sent == [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather",
                                                              "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "assistant", "content": '{"sky": "sunny"}'},
    ]


def test_litellms_dump_of_an_answer_is_accepted() -> None:
    # `litellm.types.utils.Message(...).model_dump()`, as LiteLLM 1.108 writes it.
    dumped = {"content": None, "role": "assistant", "tool_calls": [
        {"function": {"arguments": "{}", "name": "f"}, "id": "c1", "type": "function"}],
        "function_call": None, "provider_specific_fields": None, "reasoning_content": None, "thinking_blocks": None}
    assert items_from_messages([dumped]) == [FunctionCall("f", "{}", "c1")]
    with pytest.raises(llmx.InvalidInputError, match="give the reasoning as 'reasoning'"):
        items_from_messages([{**dumped, "reasoning_content": "hm"}])


def test_a_prompt_client_and_run_all_take_messages() -> None:
    messages = [{"role": "user", "content": "hi"}]
    assert Prompt(input=messages).input == [Message.user("hi")]
    client = llmx.Client(base_url="http://127.0.0.1:9/v1")
    assert client.request_body(messages, model="m")["messages"] == messages
    assert client.request_body(tuple(messages), model="m")["messages"] == messages


@pytest.mark.parametrize(("messages", "where", "problem"), [
    ([{"role": "user", "content": "a"}, Message.user("b")], "input[1]", "got a Message: give a list of messages or"),
    ([{"type": "message", "role": "user", "content": []}, {"role": "user", "content": "b"}], "input[0]",
     "like input[1], got an item of type 'message'"),
    ([{"role": "user", "content": "a"}, {"content": "b"}], "input[1]", "got a dict without 'role'"),
    ([{"role": "critic", "content": "a"}], "input[0].role", "expected one of system, developer, user, assistant"),
    ([{"role": "function", "name": "f", "content": "a"}], "input[0].role", "the deprecated function role"),
    ([{"role": "user", "content": "a", "name": "ann"}], "input[0].name", "a participant's name cannot be kept"),
    ([{"role": "assistant", "content": "a", "audio": {"id": "x"}}], "input[0].audio", "cannot be sent back"),
    ([{"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}}], "input[0].function_call",
     "give tool_calls"),
    ([{"role": "user", "content": "a", "cache_control": {"type": "ephemeral"}}], "input[0].cache_control",
     "not a field of a user message (fields: content)"),
    ([{"role": "user"}], "input[0]", "a user message needs its content"),
    ([{"role": "user", "content": None}], "input[0].content", "expected a string or a list of content parts"),
    ([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}], "input[0].content[0].type",
     "content parts of type 'input_audio' cannot be sent: the parts here are text, image_url"),
    ([{"role": "user", "content": [{"type": "text", "text": "a", "cache_control": {}}]}],
     "input[0].content[0].cache_control", "not a field here"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": "https://x"}]}], "input[0].content[0].image_url",
     "expected an object, got string"),
    ([{"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}],
     "input[0].content[0].type", "the parts here are text, refusal"),
    ([{"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                                            "function": {"name": "f", "arguments": {"a": 1}}}]}],
     "input[0].tool_calls[0].function.arguments", "expected the arguments as JSON text"),
    ([{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}]}],
     "input[0].tool_calls[0].type", "expected 'function' or 'custom', got None"),
    ([{"role": "assistant", "tool_calls": [{**WEATHER_CALL, "index": 1}]}], "input[0].tool_calls[0].index",
     "is 1, but the call is number 0 of the list"),
    ([{"role": "assistant", "tool_calls": [{"id": "c", "type": "custom", "custom": {"name": "f", "input": ""},
                                            "extra": 1}]}], "input[0].tool_calls[0].extra", "not a field here"),
    ([{"role": "assistant", "content": '{"a": 1}', "parsed": {"a": 2}}], "input[0].parsed",
     "is not the JSON value of the text beside it"),
    ([{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {
        "name": "f", "arguments": "{}", "parsed_arguments": {"x": 1}}}]}],
     "input[0].tool_calls[0].function.parsed_arguments", "is not the JSON value of the text beside it"),
    ([{"role": "tool", "content": "a"}], "input[0]", "missing required field 'tool_call_id'"),
    ([{"role": "tool", "tool_call_id": "c"}], "input[0]", "a tool message needs its content"),
    ([{"role": ["user"], "content": "a"}], "input[0].role", "expected one of"),
])
def test_what_the_items_cannot_hold_is_refused_before_any_request(messages: list[Any], where: str,
                                                                   problem: str) -> None:
    with pytest.raises(llmx.InvalidInputError) as caught:
        Prompt(input=messages)
    assert caught.value.where == where
    assert problem in caught.value.problem


def test_a_tool_messages_name_is_checked_against_the_call_it_answers() -> None:
    call = {"role": "assistant", "content": None, "tool_calls": [WEATHER_CALL]}
    named = {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "sunny"}
    assert items_from_messages([call, named])[1] == FunctionCallOutput.from_text("call_1", "sunny")
    with pytest.raises(llmx.InvalidInputError) as caught:
        items_from_messages([call, {**named, "name": "get_time"}])
    assert (caught.value.where, caught.value.problem) == (
        "input[1].name", "'get_time' does not name the function it answers: the call 'call_1' is to 'get_weather'")
    with pytest.raises(llmx.InvalidInputError, match="no tool call before it has the id 'call_1'"):
        items_from_messages([named])


def test_a_refusal_is_kept_and_sent_back_as_the_messages_refusal() -> None:
    for message in ({"role": "assistant", "content": None, "refusal": "I can't help with that."},
                    {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't help with that."}]}):
        items = items_from_messages([{"role": "user", "content": "hi"}, message])
        assert items[1] == Message("assistant", [Refusal("I can't help with that.")])
        assert body_messages(items)[1] == {"role": "assistant", "content": "", "refusal": "I can't help with that."}


def test_a_servers_own_fields_are_kept_and_sent_back_where_they_were() -> None:
    # Gemini's thought signatures (on a call, and on a text answer), OpenRouter's reasoning details.
    signature = {"google": {"thought_signature": "c2lnbmF0dXJl"}}
    details = [{"type": "reasoning.encrypted", "data": "ZW5j", "index": 0}]
    messages = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "", "reasoning_details": details,
         "tool_calls": [{**WEATHER_CALL, "extra_content": signature}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "assistant", "content": "Sunny.", "extra_content": signature},
    ]
    items = items_from_messages(copy.deepcopy(messages))
    assert items[1] == Reasoning(content=[], provider_fields={"reasoning_details": details})
    assert items[2] == FunctionCall("get_weather", '{"city":"Paris"}', "call_1", provider_fields={
        "extra_content": signature})
    assert items[5] == Reasoning(content=[], provider_fields={"extra_content": signature})
    assert body_messages(items) == messages
    with pytest.raises(llmx.InvalidInputError, match=r"input\[1\].tool_calls\[0\].extra: expected"):
        items_from_messages([messages[0], {**messages[1], "tool_calls": [{**WEATHER_CALL, "extra": float("nan")}]}])


# --- messages in: property-based round trips ------------------------------------------------------

words = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12).filter(
    lambda text: not is_blank(text))
json_arguments = st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3).map(json.dumps)
images = st.builds(lambda url, detail: {"type": "image_url", "image_url": {"url": url, **detail}},
                   words, st.just({}) | st.sampled_from(["low", "high", "auto"]).map(lambda d: {"detail": d}))
texts = words.map(lambda text: {"type": "text", "text": text})


signatures = words.map(lambda signature: {"google": {"thought_signature": signature}})
# What rides on an assistant message after the last user message: reasoning, a server's fields.
reasonings = st.fixed_dictionaries({}, optional={
    "reasoning": words, "extra_content": signatures,
    "reasoning_details": st.lists(st.fixed_dictionaries({"type": st.just("reasoning.text"), "text": words}),
                                  min_size=1, max_size=2)})


@st.composite
def user_messages(draw: st.DrawFn, role: str = "user") -> dict[str, Any]:
    """As the body writes it: a string, or parts with at least one image."""
    if draw(st.booleans()):
        return {"role": role, "content": draw(words)}
    parts = draw(st.lists(texts | images, max_size=3))
    return {"role": role, "content": [*parts, draw(images)] if draw(st.booleans()) else [draw(images), *parts]}


@st.composite
def tool_turns(draw: st.DrawFn, ids: list[int], reasoning: bool) -> list[dict[str, Any]]:
    """An assistant message with calls (text before them or not), then their outputs."""
    calls = []
    for _ in range(draw(st.integers(1, 3))):
        ids.append(len(ids))
        call_id = f"call_{ids[-1]}"
        if draw(st.booleans()):
            calls.append({"id": call_id, "type": "function",
                          "function": {"name": draw(words), "arguments": draw(json_arguments)},
                          **draw(st.just({}) | signatures.map(lambda signature: {"extra_content": signature}))})
        else:
            calls.append({"id": call_id, "type": "custom", "custom": {"name": draw(words), "input": draw(words)}})
    message = {"role": "assistant", "content": draw(words | st.just("")), "tool_calls": calls}
    # A custom call is never an anchor: without text, reasoning needs a function call first.
    if reasoning and (message["content"] or calls[0]["type"] == "function"):
        message.update(draw(reasonings))
    outputs = [{"role": "tool", "tool_call_id": c["id"],
                "content": draw(words | st.just("") | st.lists(texts | images, min_size=1, max_size=2))}
               for c in calls]
    return [message, *outputs]


@st.composite
def conversations(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A conversation in the form the request body writes. Reasoning only comes after the
    last user message (the only reasoning a request sends)."""
    messages: list[dict[str, Any]] = []
    if draw(st.booleans()):
        messages.append({"role": draw(st.sampled_from(["system", "developer"])), "content": draw(words)})
    ids: list[int] = []
    turns = draw(st.integers(1, 3))
    for turn in range(turns):
        last = turn == turns - 1
        messages.append(draw(user_messages()))
        for _ in range(draw(st.integers(0, 2))):
            messages += draw(tool_turns(ids, reasoning=last))
        if not last or draw(st.booleans()):
            reply = {"role": "assistant", "content": draw(words)}
            if draw(st.booleans()):
                reply.update(content=draw(words | st.just("")), refusal=draw(words))
            if last:
                reply.update(draw(reasonings))
            messages.append(reply)
    return messages


@settings(max_examples=200, deadline=None)
@given(conversations())
def test_messages_items_body_gives_the_same_messages(messages: list[dict[str, Any]]) -> None:
    items = items_from_messages(copy.deepcopy(messages))
    assert body_messages(items) == messages
    assert items_from_messages(body_messages(items)) == items


@st.composite
def loose_forms(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(a conversation written another way that means the same, the body's form): text
    parts for strings, null for the content of calls alone, tool messages with `name`."""
    messages = draw(conversations())
    loose = copy.deepcopy(messages)
    names = {}
    for message in loose:
        names.update((c["id"], c[c["type"]]["name"]) for c in message.get("tool_calls", ()))
        if message["role"] == "tool" and draw(st.booleans()):
            message["name"] = names[message["tool_call_id"]]
        content = message.get("content")
        if message["role"] != "tool" and isinstance(content, str) and content and draw(st.booleans()):
            cut = draw(st.integers(0, len(content)))
            pieces = [piece for piece in (content[:cut], content[cut:]) if piece]
            message["content"] = [{"type": "text", "text": piece} for piece in pieces]
        elif "tool_calls" in message and content == "" and draw(st.booleans()):
            message["content"] = None
    return loose, messages


@settings(max_examples=200, deadline=None)
@given(loose_forms())
def test_text_part_lists_and_null_content_are_sent_in_the_bodys_form(forms: tuple[list[Any], list[Any]]) -> None:
    loose, body_form = forms
    assert body_messages(loose) == body_form


# --- messages out ----------------------------------------------------------------------------------


def test_to_messages_of_an_answer_and_of_a_run_against_a_server() -> None:
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    question = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Weather in Paris?"}]
    with ScriptedServer(answer("I'll look.", reasoning="Use the tool.",
                               tool_calls=[call("get_weather", {"city": "Paris"})]),
                        answer("Sunny.", reasoning="Got it."), answer("Bye.")) as server:
        client = llmx.Client(base_url=server.base_url)
        run = client.run(question, model="m", tools=[get_weather]).collect()
        added = run.to_messages()
        assert added == [
            {"role": "assistant", "content": "I'll look.", "reasoning": "Use the tool.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather",
                                                                  "arguments": '{"city": "Paris"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny in Paris"},
            {"role": "assistant", "content": "Sunny.", "reasoning": "Got it."},
        ]
        # Appending them continues the conversation exactly as the items would.
        follow_up = [*question, *added, {"role": "user", "content": "Thanks!"}]
        client.stream(follow_up, model="m").collect()
        by_items = client.request_body([*run.history, Message.user("Thanks!")], model="m")["messages"]
        sent = server.requests[2].json()["messages"]
    assert sent == by_items
    assert sent[:2] == question and sent[-1] == {"role": "user", "content": "Thanks!"}


def test_to_messages_of_a_runs_snapshot_is_the_run_so_far() -> None:
    def look(city: str) -> str:
        """Look a city up."""
        return f"{city}: sunny"

    with ScriptedServer(answer(tool_calls=[call("look", {"city": "Oslo"})]), answer("Sunny in Oslo.")) as server:
        with llmx.Client(base_url=server.base_url).run("Oslo?", model="m", tools=[look]) as run:
            for event in run:
                if event.type == "tool_result":
                    break
            assert [m["role"] for m in run.snapshot().to_messages()] == ["assistant", "tool"]
            result = run.collect()
    assert [m["role"] for m in result.to_messages()] == ["assistant", "tool", "assistant"]
    assert run.snapshot().to_messages() == result.to_messages()


def test_to_messages_of_a_stream_is_its_assistant_message_and_of_a_call_has_null_content() -> None:
    with ScriptedServer(answer("Hi there."), answer(tool_calls=[call("f", {}), call("g", {"a": 1})])) as server:
        client = llmx.Client(base_url=server.base_url)
        assert client.stream("hi", model="m").collect().to_messages() == [{"role": "assistant",
                                                                           "content": "Hi there."}]
        calls = client.stream("go", model="m").collect().to_messages()
    assert calls == [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
        {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": '{"a": 1}'}}]}]


# (reasoning, its provider fields, text, refusal, calls: (name, arguments, provider fields)), as a parser makes them.
extra_contents = st.none() | signatures.map(lambda signature: {"extra_content": signature})
answers = st.tuples(st.none() | words, extra_contents, st.none() | words, st.none() | words,
                    st.lists(st.tuples(words, json_arguments, extra_contents), max_size=3),
                    ).filter(lambda a: a[2] is not None or a[3] is not None or a[4])


def answer_items(reasoning: str | None, fields: dict[str, Any] | None, text: str | None, refusal: str | None,
                 calls: list[tuple[str, str, dict[str, Any] | None]], first_id: int) -> list[ResponseItem]:
    """An answer's items in the order the accumulator gives them."""
    items: list[ResponseItem] = []
    if reasoning is not None or fields is not None:
        items.append(Reasoning(content=[] if reasoning is None else [ReasoningText(reasoning)], provider_fields=fields))
    if text is not None or refusal is not None:
        items.append(Message("assistant", [*([OutputText(text)] if text is not None else []),
                                           *([Refusal(refusal)] if refusal is not None else [])]))
    items += [FunctionCall(name, arguments, f"call_{first_id + i}", provider_fields=extra)
              for i, (name, arguments, extra) in enumerate(calls)]
    return items


@settings(max_examples=200, deadline=None)
@given(conversations(), st.lists(answers, min_size=1, max_size=3))
def test_appending_to_messages_sends_what_continuing_from_the_history_sends(
        messages: list[dict[str, Any]], turns: list[Any]) -> None:
    # A run: each turn's answer, then an output per call; the last turn is the answer.
    new_items: list[ResponseItem] = []
    for number, answer_parts in enumerate(turns):
        turn = answer_items(*answer_parts, first_id=100 * number)
        new_items += turn
        new_items += [FunctionCallOutput.from_text(item.call_id, "ok") for item in turn
                      if isinstance(item, FunctionCall)]
    result = ChatResult(text="", reasoning="", tool_calls=[], items=[], token_usage=None, finish_reason=None,
                        response_id="", rate_limits=None, new_items=new_items)
    history = [*items_from_messages(messages), *new_items, Message.user("next")]
    assert body_messages([*messages, *result.to_messages(), {"role": "user", "content": "next"}]) == \
        body_messages(history)


def test_to_messages_read_by_the_openai_sdk_types() -> None:
    # The messages out are what the openai SDK's own request types describe.
    types = pytest.importorskip("openai.types.chat")
    pydantic = pytest.importorskip("pydantic")
    with ScriptedServer(answer("Sure.", tool_calls=[call("f", {"x": 1})])) as server:
        added = llmx.Client(base_url=server.base_url).stream("go", model="m").collect().to_messages()
    message = pydantic.TypeAdapter(types.ChatCompletionMessageParam).validate_python(added[0])
    assert {**message, "tool_calls": list(message["tool_calls"])} == added[0]  # tool_calls is read lazily
