"""The Chat Completions request body: every rule of llmx's message conversion, and where we differ."""

from __future__ import annotations

import copy
import json
import logging
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from item_strategies import items
from reference_cases import reference_case

from llmx_sync._jsonrules import RUST_WHITESPACE, is_blank, rust_trim
from llmx_sync.chat.request import (
    anchor_reasoning,
    build_chat_request,
    build_messages,
    is_duplicate_assistant,
    last_emitted_role,
    malformed_calls,
    message_to_chat,
    skipped_outputs,
    truncation_index,
    unanswered_calls,
)
from llmx_sync.errors import InvalidInputError
from llmx_sync.models import (
    CustomToolCall,
    CustomToolCallOutput,
    FunctionCall,
    FunctionCallOutput,
    FunctionCallOutputPayload,
    GhostCommit,
    GhostSnapshot,
    InputImage,
    InputText,
    LocalShellCall,
    LocalShellExecAction,
    Message,
    Other,
    OutputText,
    Reasoning,
    ReasoningContentText,
    ReasoningText,
    ResponseItem,
    WebSearchCall,
    WebSearchSearchAction,
)
from llmx_sync.prompt import Prompt
from llmx_sync.providers import Provider
from llmx_sync.settings import Quirks, RequestOptions, merge_options
from llmx_sync.tools import FreeformTool, FreeformToolFormat, FunctionTool, LocalShellTool

WEATHER = FunctionTool("get_weather", "Weather", {"type": "object", "properties": {"city": {"type": "string"}}})
SHELL_ACTION = LocalShellExecAction(["echo"], timeout_ms=1000)


def user(text: str) -> Message:
    return Message.user(text)


def assistant(text: str) -> Message:
    return Message.assistant(text)


def reasoning(text: str) -> Reasoning:
    return Reasoning(content=[ReasoningText(text)])


def call(call_id: str, arguments: str = "{}", name: str = "f") -> FunctionCall:
    return FunctionCall(name, arguments, call_id)


def output(call_id: str, text: str = "ok") -> FunctionCallOutput:
    return FunctionCallOutput.from_text(call_id, text)


def build(prompt: Prompt, model: Any, provider: Provider | None = None, *, quirks: Quirks | None = None,
          **settings: Any) -> dict[str, Any]:
    """The body for a provider's defaults, then the keyword settings, then its quirks."""
    options = RequestOptions(model=model, **settings)
    if provider is None:
        return build_chat_request(prompt, options, quirks)
    return build_chat_request(prompt, merge_options(provider.defaults, options), provider.quirks)


# llmx sends `content: null` on a tool-call message (as OpenAI documents); the SDK's
# default is "" (see test_conversations.py), so the reference cases use llmx's quirk.
LLMX_QUIRKS = Quirks(tool_call_content=None)


def messages(history: list[ResponseItem], **kwargs: Any) -> list[dict[str, Any]]:
    """The messages sent for `history` (no instructions, so no system message)."""
    result: list[dict[str, Any]] = build(Prompt(input=history), "m", **kwargs)["messages"]
    return result


def tool_call_message(call_id: str, arguments: str = "{}", name: str = "f") -> dict[str, Any]:
    return {"role": "assistant", "content": "",
            "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]}


def tool_message(call_id: str, content: Any = "ok") -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


# --- the reference payload cases ------------------------------------------------------------


def _reference_messages(case_id: str, **kwargs: Any) -> list[dict[str, Any]]:
    case = reference_case("payload_cases", case_id)
    prompt = Prompt(input=case["input"]["history"], tools=case["input"]["tools"], instructions="system text")
    sent: list[dict[str, Any]] = build(prompt, "gpt-4o", quirks=LLMX_QUIRKS, **kwargs)["messages"]
    assert sent[0] == {"role": "system", "content": "system text"}
    return sent[1:]


@pytest.mark.parametrize("case_id", ["P01", "P02", "P04", "P05", "P06", "P07", "P08"])
def test_reference_payload_case(case_id: str) -> None:
    expected = reference_case("payload_cases", case_id)["expected_messages_after_system"]
    assert _reference_messages(case_id) == expected


def test_reference_p03_unanswered_call_is_left_out_with_its_reasoning() -> None:
    # The call c1 has no output, so by default it (and the reasoning anchored to it) is
    # not sent; the user message before it is (llmx cut off everything from the call on).
    assert _reference_messages("P03") == [{"role": "user", "content": "u1"}]


def test_reference_p03_repo_assertions_hold_when_orphans_are_kept() -> None:
    first_assistant = next(m for m in _reference_messages("P03", orphan_tool_calls="keep")
                           if m["role"] == "assistant")
    assert first_assistant["reasoning"] == "rFunc"
    assert len(first_assistant["tool_calls"]) == 1
    assert first_assistant["tool_calls"][0]["type"] == "function"


def test_reference_i01_system_message_is_the_instructions_exactly() -> None:
    # No apply_patch text is appended, whatever the model: that is the agent's business, not an SDK's.
    for variant in reference_case("instructions_cases", "I01")["variants"]:
        for tools in ([], [WEATHER]):
            prompt = Prompt(input=[user("hi")], tools=tools, instructions="You are a helpful assistant.")
            sent = build(prompt, variant["slug"])
            assert sent["model"] == variant["slug"]
            assert sent["messages"][0] == {"role": "system", "content": "You are a helpful assistant."}


# --- the system message ------------------------------------------------------------------------


def test_no_instructions_no_system_message() -> None:
    assert messages([user("hi")]) == [{"role": "user", "content": "hi"}]


def test_empty_instructions_are_sent_as_given() -> None:
    sent = build(Prompt(input=[user("hi")], instructions=""), "m")["messages"]
    assert sent[0] == {"role": "system", "content": ""}


# --- reasoning pre-scan and anchors: reasoning rides on the assistant message or call beside it ---


def test_last_emitted_role_counts_calls_and_outputs_only() -> None:
    assert last_emitted_role([user("u"), call("c1")]) == "assistant"
    assert last_emitted_role([user("u"), LocalShellCall("c", "completed", SHELL_ACTION)]) == "assistant"
    assert last_emitted_role([call("c1"), output("c1")]) == "tool"
    assert last_emitted_role([user("u"), CustomToolCall("c", "n", "i"), CustomToolCallOutput("c", "o")]) == "user"
    assert last_emitted_role([Message("developer", [InputText("d")]), reasoning("r")]) == "developer"
    assert last_emitted_role([]) is None


def test_no_reasoning_when_the_conversation_ends_with_a_user_message() -> None:
    assert anchor_reasoning([assistant("a"), reasoning("r"), user("u")]) == {}


def test_blank_messages_still_count_for_the_last_role() -> None:
    # As in llmx: a blank user message is not sent, yet it still makes the last role "user".
    history: list[ResponseItem] = [user("u"), assistant("a"), reasoning("r"), user("  ")]
    assert anchor_reasoning(history) == {}
    assert "reasoning" not in messages(history)[1]


def test_reasoning_goes_to_the_previous_assistant_message() -> None:
    assert anchor_reasoning([user("u"), assistant("a"), reasoning("r")]) == {1: "r"}


@pytest.mark.parametrize("anchor", [call("c1"), LocalShellCall("c1", "completed", SHELL_ACTION), assistant("a")],
                         ids=["function_call", "local_shell_call", "assistant_message"])
def test_reasoning_goes_to_the_next_call_or_assistant_message(anchor: ResponseItem) -> None:
    assert anchor_reasoning([user("u"), reasoning("r"), anchor]) == {2: "r"}


def test_previous_assistant_message_wins_over_the_next_anchor() -> None:
    assert anchor_reasoning([user("u"), assistant("a"), reasoning("r"), call("c1")]) == {1: "r"}


def test_custom_tool_calls_and_user_messages_are_not_anchors() -> None:
    assert anchor_reasoning([user("u"), reasoning("r"), CustomToolCall("c1", "n", "i")]) == {}
    assert anchor_reasoning([call("c0"), output("c0"), reasoning("r"), output("c0")]) == {}


def test_reasoning_texts_on_one_anchor_are_joined() -> None:
    # "before" anchors forward to the message, "after" backward to the same message.
    assert anchor_reasoning([user("u"), reasoning("before "), assistant("a"), reasoning("after")]) == {
        2: "before after"}
    both_kinds: list[ResponseItem] = [
        user("u"), Reasoning(content=[ReasoningText("x"), ReasoningContentText("y")]), assistant("a")]
    assert anchor_reasoning(both_kinds) == {2: "xy"}


def test_reasoning_next_to_nothing_is_dropped() -> None:
    # "one" has a user message before it and reasoning after it: no anchor.
    assert anchor_reasoning([user("u"), reasoning("one "), reasoning("two"), assistant("a")]) == {3: "two"}
    assert anchor_reasoning([user("u"), assistant("a"), reasoning("one "), call("c1"), reasoning("two")]) == {
        1: "one "}


def test_reasoning_before_the_last_user_message_is_ignored() -> None:
    assert anchor_reasoning([assistant("a"), reasoning("r"), user("u"), assistant("b")]) == {}


def test_reasoning_without_content_or_with_blank_text_is_ignored() -> None:
    history: list[ResponseItem] = [user("u"), assistant("a"), Reasoning(content=None), Reasoning(content=[]),
                                   reasoning(" \u3000\n")]
    assert anchor_reasoning(history) == {}


def test_reasoning_summary_is_ignored() -> None:
    from llmx_sync.models import SummaryText

    assert anchor_reasoning([user("u"), assistant("a"), Reasoning(summary=[SummaryText("s")])]) == {}


def test_reasoning_is_sent_on_its_anchor_and_nowhere_else() -> None:
    sent = messages([user("u"), reasoning("think"), call("c1"), output("c1"), assistant("done")])
    assert sent == [{"role": "user", "content": "u"}, {**tool_call_message("c1"), "reasoning": "think"},
                    tool_message("c1"), {"role": "assistant", "content": "done"}]


# --- malformed arguments: skip state per call_id (the call and its outputs are left out) -------------


@pytest.mark.parametrize("arguments", ["{}", "null", "1", '"s"', "[1, 2]", " {\"a\": 1} ", "-0", "1e308",
                                       '"\\ud83d\\ude00"'])
def test_arguments_that_are_json_are_sent(arguments: str) -> None:
    assert messages([user("u"), call("c1", arguments), output("c1")])[1] == tool_call_message("c1", arguments)


@pytest.mark.parametrize("arguments", ["", " ", "{", "NaN", "Infinity", "-Infinity", "[NaN]", "1e400", "{} x",
                                       "{'a': 1}", '"\\ud800"', "[" * 128 + "]" * 128])
def test_arguments_that_are_not_json_skip_the_call_and_its_output(arguments: str) -> None:
    assert messages([user("u"), call("c1", arguments), output("c1")]) == [{"role": "user", "content": "u"}]


def test_nesting_up_to_serdes_limit_is_json() -> None:
    deep = "[" * 127 + "]" * 127
    assert malformed_calls([call("c1", deep)]) == set()


def test_skip_state_follows_the_latest_call_with_that_id() -> None:
    history: list[ResponseItem] = [user("u"), call("c1", "{"), output("c1", "first"), call("c1", "{}"),
                                   output("c1", "second")]
    assert malformed_calls(history) == {1}
    assert skipped_outputs(history, {1}) == {2}
    assert messages(history) == [{"role": "user", "content": "u"}, tool_call_message("c1"),
                                 tool_message("c1", "second")]


def test_an_output_without_any_call_is_sent() -> None:
    assert messages([user("u"), output("ghost")]) == [{"role": "user", "content": "u"}, tool_message("ghost")]


# --- orphan calls: only the unanswered call is left out, never the newer messages ---------------------

ORPHAN_HISTORY: list[ResponseItem] = [user("u1"), reasoning("r"), call("c1"), user("u2"), call("c2"), output("c2")]


def test_orphans_drop_leaves_out_only_the_unanswered_call_and_its_reasoning() -> None:
    assert messages(ORPHAN_HISTORY) == [{"role": "user", "content": "u1"}, {"role": "user", "content": "u2"},
                                        tool_call_message("c2"), tool_message("c2")]
    assert messages(ORPHAN_HISTORY, orphan_tool_calls="drop") == messages(ORPHAN_HISTORY)


def test_orphans_truncate_cuts_everything_from_the_first_unanswered_call() -> None:
    assert messages(ORPHAN_HISTORY, orphan_tool_calls="truncate") == [{"role": "user", "content": "u1"}]


def test_orphans_keep_sends_the_unanswered_call() -> None:
    assert messages(ORPHAN_HISTORY, orphan_tool_calls="keep") == [
        {"role": "user", "content": "u1"}, tool_call_message("c1"),
        {"role": "user", "content": "u2"}, tool_call_message("c2"), tool_message("c2")]


def test_reasoning_anchored_to_a_dropped_call_goes_with_it() -> None:
    history: list[ResponseItem] = [user("u"), reasoning("r"), call("c1"), call("c2"), output("c2")]
    assert messages(history) == [{"role": "user", "content": "u"}, tool_call_message("c2"), tool_message("c2")]
    # Kept, c1 joins c2 in one message (consecutive calls are grouped) and the
    # reasoning anchored to c1 rides on the group.
    kept = messages(history, orphan_tool_calls="keep")[1]
    assert kept == {**tool_call_message("c1"), "reasoning": "r"} | {
        "tool_calls": tool_call_message("c1")["tool_calls"] + tool_call_message("c2")["tool_calls"]}


def test_an_output_before_the_call_does_not_answer_it() -> None:
    history: list[ResponseItem] = [user("u"), output("c1"), call("c1")]
    assert unanswered_calls(history, set()) == {2}
    assert truncation_index(history) is None  # llmx looks for an output anywhere
    assert messages(history) == [{"role": "user", "content": "u"}, tool_message("c1")]


def test_a_skipped_output_does_not_answer_a_call() -> None:
    history: list[ResponseItem] = [user("u"), call("c1"), call("c1", "{"), output("c1")]
    assert messages(history) == [{"role": "user", "content": "u"}]
    assert messages(history, orphan_tool_calls="keep") == [{"role": "user", "content": "u"}, tool_call_message("c1")]


def test_other_call_kinds_are_not_orphan_checked() -> None:
    # As in llmx (and reference P04): local shell and custom calls are sent even unanswered.
    history: list[ResponseItem] = [user("u"), LocalShellCall("s1", "completed", SHELL_ACTION),
                                   CustomToolCall("x1", "grep", "pattern"), user("next")]
    sent = messages(history)
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert [entry["id"] for entry in sent[1]["tool_calls"]] == ["s1", "x1"]  # grouped, both sent


def test_unknown_orphan_policy_is_an_error() -> None:
    with pytest.raises(InvalidInputError, match=r"^orphan_tool_calls: expected 'drop' or 'truncate' or 'keep', "
                                                r"got string 'cut'$"):
        messages([user("u")], orphan_tool_calls="cut")


# --- call ids: every call kind uses `call_id`, which its output carries --------------------------------


def test_local_shell_call_id_is_call_id_then_id() -> None:
    def tool_call_id(item: LocalShellCall) -> Any:
        return messages([user("u"), item])[1]["tool_calls"][0]["id"]

    assert tool_call_id(LocalShellCall("call_1", "completed", SHELL_ACTION, id="lsc_1")) == "call_1"
    assert tool_call_id(LocalShellCall(None, "completed", SHELL_ACTION, id="lsc_1")) == "lsc_1"
    assert tool_call_id(LocalShellCall(None, "completed", SHELL_ACTION)) == ""


def test_local_shell_call_message_shape() -> None:
    sent = messages([user("u"), LocalShellCall("call_1", "in_progress", SHELL_ACTION), output("call_1")])
    assert sent[1:] == [
        {"role": "assistant", "content": "",
         "tool_calls": [{"id": "call_1", "type": "local_shell_call", "status": "in_progress",
                         "action": {"type": "exec", "command": ["echo"], "timeout_ms": 1000,
                                    "working_directory": None, "env": None, "user": None}}]},
        tool_message("call_1")]


def test_custom_tool_call_id_is_call_id() -> None:
    sent = messages([user("u"), CustomToolCall("call_9", "apply_patch", "*** Begin Patch", id="ctc_1"),
                     CustomToolCallOutput("call_9", "Done!")])
    assert sent[1:] == [
        {"role": "assistant", "content": "",
         "tool_calls": [{"id": "call_9", "type": "custom",
                         "custom": {"name": "apply_patch", "input": "*** Begin Patch"}}]},
        tool_message("call_9", "Done!")]


# --- duplicate assistant messages: only a repeat of the message just sent -------------------------------


def test_an_assistant_message_repeating_the_previous_one_is_dropped() -> None:
    assert messages([user("u"), assistant("dup"), assistant("dup")]) == [
        {"role": "user", "content": "u"}, {"role": "assistant", "content": "dup"}]


def test_the_same_answer_in_a_later_turn_is_kept() -> None:
    history: list[ResponseItem] = [user("u"), assistant("same"), call("c1"), output("c1"), assistant("same"),
                                   user("again"), assistant("same")]
    assert [m.get("content") for m in messages(history)] == ["u", "same", "ok", "same", "again", "same"]


def test_is_duplicate_assistant() -> None:
    previous = {"role": "assistant", "content": "a"}
    assert is_duplicate_assistant({"role": "assistant", "content": "a"}, previous)
    assert not is_duplicate_assistant({"role": "assistant", "content": "b"}, previous)
    assert not is_duplicate_assistant({"role": "user", "content": "a"}, {"role": "user", "content": "a"})
    assert not is_duplicate_assistant({"role": "assistant", "content": "a"}, {"role": "user", "content": "a"})
    assert not is_duplicate_assistant({"role": "assistant", "content": "a"}, None)
    assert not is_duplicate_assistant(tool_call_message("c1"), tool_call_message("c1"))


def test_a_dropped_message_in_between_does_not_separate_duplicates() -> None:
    # The blank message is never sent, so the second "dup" follows the first directly.
    assert messages([assistant("dup"), user(" "), assistant("dup")]) == [{"role": "assistant", "content": "dup"}]


# --- message content: text, whitespace, images, roles ----------------------------------------------------


def test_text_segments_are_joined_without_separator() -> None:
    message = Message("user", [InputText("a"), OutputText("b"), InputText("c")])
    assert message_to_chat(message) == {"role": "user", "content": "abc"}


def test_rust_trim_is_unicode_white_space_only() -> None:
    assert rust_trim("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u200a\u2028\u2029\u202f\u205f\u3000x ") == "x"
    assert rust_trim("\x1cx\x1f") == "\x1cx\x1f"  # str.strip() would remove these
    assert rust_trim("\u200bx") == "\u200bx"  # zero-width space is not White_Space
    assert is_blank("") and is_blank(" \u3000\n") and not is_blank("\x1c")


def test_rust_whitespace_is_pythons_minus_the_separators() -> None:
    python_space = {chr(c) for c in range(0x110000) if chr(c).isspace()}
    assert set(RUST_WHITESPACE) == python_space - set("\x1c\x1d\x1e\x1f")


def test_blank_messages_are_skipped_per_rust_trim() -> None:
    assert messages([user(" \n\u3000\xa0")]) == []
    assert messages([user("\x1c")]) == [{"role": "user", "content": "\x1c"}]


def test_roles_pass_through() -> None:
    history: list[ResponseItem] = [Message("developer", [InputText("d")]), Message("system", [InputText("s")]),
                                   Message("critic", [InputText("c")])]
    assert [m["role"] for m in messages(history)] == ["developer", "system", "critic"]


def test_user_message_with_an_image_sends_parts() -> None:
    message = Message("user", [InputText("look "), InputText("  "), InputImage("https://x/cat.png"), InputText("!")])
    assert messages([message]) == [{"role": "user", "content": [
        {"type": "text", "text": "look "},
        {"type": "image_url", "image_url": {"url": "https://x/cat.png"}},
        {"type": "text", "text": "!"}]}]


def test_image_only_message_is_sent() -> None:
    assert messages([Message("user", [InputImage("data:image/png;base64,AA")])]) == [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]}]


def test_assistant_images_are_dropped() -> None:
    # As in llmx: assistant content is always a string.
    assert messages([user("u"), Message("assistant", [InputImage("u"), OutputText("a")])])[1] == {
        "role": "assistant", "content": "a"}
    assert messages([user("u"), Message("assistant", [InputImage("u")])])[1] == {"role": "assistant", "content": ""}


def test_tool_output_content_items_become_parts() -> None:
    payload = FunctionCallOutputPayload.from_items([InputText("caption"), InputImage("data:image/png;base64,X")])
    assert messages([user("u"), call("c1"), FunctionCallOutput("c1", payload)])[2] == tool_message("c1", [
        {"type": "text", "text": "caption"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,X"}}])


def test_consecutive_calls_are_one_assistant_message() -> None:
    # llmx sent one assistant message per call, a shape OpenAI refuses for two calls (each
    # message with tool_calls must be followed by the tool messages answering it).
    sent = messages([user("u"), call("a"), call("b"), output("a"), output("b")])
    grouped = {**tool_call_message("a"),
               "tool_calls": tool_call_message("a")["tool_calls"] + tool_call_message("b")["tool_calls"]}
    assert sent[1:] == [grouped, tool_message("a"), tool_message("b")]


# --- items that are not sent --------------------------------------------------------------------------


def test_dropped_kinds_are_not_sent_and_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    history: list[ResponseItem] = [
        user("u"), reasoning("alone"), WebSearchCall(WebSearchSearchAction("q")),
        GhostSnapshot(GhostCommit("abc")), Other({"type": "compaction", "secret": "s3cr3t"})]
    with caplog.at_level(logging.DEBUG, logger="llmx_sync"):
        assert messages(history) == [{"role": "user", "content": "u"}]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for line in ("input[1]: reasoning item is not sent", "input[2]: web_search_call item is not sent",
                 "input[3]: ghost_snapshot item is not sent", "input[4]: other item is not sent"):
        assert line in logged
    assert "s3cr3t" not in logged


def test_left_out_calls_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="llmx_sync"):
        messages([user("u"), call("c1", "{"), call("c2")])
    logged = [r.getMessage() for r in caplog.records]
    assert "input[1]: function call 'f' (call_id 'c1') has arguments that are not JSON; not sent" in logged
    assert "input[2]: function call 'f' (call_id 'c2') has no output after it; not sent" in logged


# --- the payload (max_tokens a setting, no empty `tools`, usage asked for, cache_control) -----------------


def test_payload_defaults_and_key_order() -> None:
    payload = build(Prompt(input=[user("hi")], tools=[WEATHER], instructions="sys"), "gpt-4o")
    assert list(payload) == ["model", "messages", "stream", "stream_options", "tools", "max_tokens"]
    assert payload["model"] == "gpt-4o"
    assert payload["stream"] is True
    assert payload["stream_options"] == {"include_usage": True}
    assert payload["max_tokens"] == 8192
    assert "cache_control" not in payload["tools"][0]


def test_tools_are_omitted_when_empty() -> None:
    assert "tools" not in build(Prompt(input=[user("hi")]), "m")
    assert "tools" not in build(Prompt(input=[user("hi")], tools=[LocalShellTool()]), "m")


def test_max_tokens_from_provider_and_argument() -> None:
    prompt = Prompt(input=[user("hi")])
    assert build(prompt, "m", Provider(name="p", max_tokens=100))["max_tokens"] == 100
    assert "max_tokens" not in build(prompt, "m", Provider(name="p", max_tokens=None))
    assert build(prompt, "m", Provider(name="p", max_tokens=None), max_tokens=5)["max_tokens"] == 5
    assert "max_tokens" not in build(prompt, "m", max_tokens=None)
    assert build(prompt, "m")["max_tokens"] == 8192  # not given: the default
    # A setting the call names wins over the provider's even when it is None.
    assert "max_tokens" not in build(prompt, "m", Provider(name="p", max_tokens=100), max_tokens=None)


def test_include_usage_from_provider_and_argument() -> None:
    prompt = Prompt(input=[user("hi")])
    assert "stream_options" not in build(prompt, "m", Provider(name="p", include_usage=False))
    assert "stream_options" not in build(prompt, "m", include_usage=False)
    with_usage = build(prompt, "m", Provider(name="p", include_usage=False), include_usage=True)
    assert with_usage["stream_options"] == {"include_usage": True}


def test_cache_control_from_provider_and_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMX_BASE_URL", raising=False)
    prompt = Prompt(input=[user("hi")], tools=[WEATHER, WEATHER])
    litellm = build(prompt, "m", Provider.builtin("litellm"))["tools"]
    assert [t.get("cache_control") for t in litellm] == [None, {"type": "ephemeral"}]
    assert "cache_control" not in build(prompt, "m", Provider.builtin("litellm"),
                                                     cache_control=False)["tools"][-1]
    assert build(prompt, "m", cache_control=True)["tools"][-1]["cache_control"] == {"type": "ephemeral"}


def test_optional_params_are_sent_only_when_given() -> None:
    prompt = Prompt(input=[user("hi")])
    payload = build(prompt, "m", temperature=0.2, top_p=1, tool_choice="auto",
                                 parallel_tool_calls=False, stop=("END",), seed=7)
    assert list(payload)[-6:] == ["temperature", "top_p", "tool_choice", "parallel_tool_calls", "stop", "seed"]
    assert (payload["temperature"], payload["top_p"], payload["tool_choice"], payload["parallel_tool_calls"],
            payload["stop"], payload["seed"]) == (0.2, 1, "auto", False, ["END"], 7)
    assert build(prompt, "m", temperature=0)["temperature"] == 0
    assert "temperature" not in build(prompt, "m")


def test_extra_body_is_merged_last_and_wins() -> None:
    payload = build(Prompt(input=[user("hi")]), "m", temperature=0.5,
                                 extra_body={"top_k": 40, "temperature": 0.1, "stream_options": None})
    assert list(payload)[-2:] == ["temperature", "top_k"]
    assert (payload["top_k"], payload["temperature"], payload["stream_options"]) == (40, 0.1, None)


def test_output_schema_asks_for_structured_output() -> None:
    # llmx refused `output_schema` on Chat Completions; it is sent as `response_format`
    # (the `response_format` setting wins over it).
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
              "additionalProperties": False}
    body = build(Prompt(input=[user("hi")], output_schema=schema), "m")
    assert body["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "output", "schema": schema, "strict": True}}
    other = {"type": "object", "properties": {}}
    assert build(Prompt(input=[user("hi")], output_schema=schema), "m",
                 response_format=other)["response_format"]["json_schema"]["schema"] == other
    # Checked before anything is sent: a missing model, then a malformed item.
    prompt = Prompt(input=[user("hi")], output_schema=schema)
    prompt.input.append({"type": "message", "role": "user", "content": [{"type": "input_text"}]})  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="^model: no model given"):
        build_chat_request(prompt, RequestOptions())


def test_freeform_apply_patch_reformats_shell_outputs_in_the_payload() -> None:
    apply_patch = FreeformTool("apply_patch", "Edit", FreeformToolFormat("grammar", "lark", "start: x"))
    raw = json.dumps({"output": "ok", "metadata": {"exit_code": 0, "duration_seconds": 0.25}})
    prompt = Prompt(input=[user("u"), call("c1", name="shell"), output("c1", raw)], tools=[apply_patch])
    assert build(prompt, "m")["messages"][-1] == tool_message(
        "c1", "Exit code: 0\nWall time: 0.25 seconds\nOutput:\nok")


def test_build_messages_with_instructions() -> None:
    assert build_messages([user("u")], "sys") == [{"role": "system", "content": "sys"},
                                                  {"role": "user", "content": "u"}]


# --- bad input ------------------------------------------------------------------------------------------

BAD_ARGUMENTS: list[tuple[dict[str, Any], str]] = [
    ({"max_tokens": True}, "max_tokens: expected a non-negative integer, got boolean True"),
    ({"max_tokens": -1}, "max_tokens: expected a non-negative integer, got number -1"),
    ({"include_usage": "yes"}, "include_usage: expected True or False, got string 'yes'"),
    ({"cache_control": 1}, "cache_control: expected True or False, got number 1"),
    ({"temperature": float("nan")}, "temperature: expected a finite number, got number nan"),
    ({"top_p": "1"}, "top_p: expected a finite number, got string '1'"),
    ({"tool_choice": {"type": "function", "function": {"name": {1, 2}}}},
     "tool_choice.function.name: expected JSON data, got set"),
    ({"parallel_tool_calls": 1}, "parallel_tool_calls: expected True or False, got number 1"),
    ({"stop": ["a", 1]}, "stop: expected a string or a list of strings, got array ['a', 1]"),
    ({"seed": 1.5}, "seed: expected an integer, got number 1.5"),
    ({"extra_body": {"x": float("inf")}}, "extra_body.x: expected a finite number, got inf (not valid JSON)"),
    ({"extra_body": {1: "x"}}, "extra_body: object keys must be strings, got number 1"),
    ({"extra_body": ["x"]}, "extra_body: expected a dict, got array ['x']"),
    ({"orphan_tool_calls": "nope"}, "orphan_tool_calls: expected 'drop' or 'truncate' or 'keep', got string 'nope'"),
    # (was the `provider` argument: the settings object is what is checked now)
    ({"options": "litellm"}, "options: expected RequestOptions, got str"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_ARGUMENTS)
def test_bad_arguments_are_named(kwargs: dict[str, Any], message: str) -> None:
    prompt = Prompt(input=[user("hi")])
    with pytest.raises(InvalidInputError) as info:
        if "options" in kwargs:
            build_chat_request(prompt, kwargs["options"])
        else:
            build(prompt, "m", **kwargs)
    assert str(info.value) == message


def test_bad_prompt_or_model() -> None:
    with pytest.raises(InvalidInputError, match=r"^prompt: expected a Prompt, got str$"):
        build_chat_request("hi", RequestOptions(model="m"))  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"^model: expected a string, got number 42$"):
        build(Prompt(), 42)
    with pytest.raises(InvalidInputError, match=r"^model: no model given"):
        build(Prompt(), None)


def test_prompt_changed_after_construction_is_checked_again() -> None:
    prompt = Prompt(input=[user("hi")])
    prompt.input.append({"type": "message", "role": "user", "content": [{"type": "input_text"}]})  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"^input\[1\]\.content\[0\]: missing required field 'text'"):
        build(prompt, "m")
    prompt.input[1] = Message("user", "text")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"^input\[1\]: malformed Message"):
        build(prompt, "m")
    prompt.input[1] = user("ok")
    prompt.instructions = ["x"]  # type: ignore[assignment]
    with pytest.raises(InvalidInputError, match=r"^instructions: expected a string or None, got array$"):
        build(prompt, "m")


# --- "not given" (was the NOT_GIVEN sentinel; a RequestOptions now remembers what was named) ----------


def test_not_given_is_a_falsy_singleton_with_a_good_repr() -> None:
    named = RequestOptions(model="m", max_tokens=None)
    assert named.given == {"model", "max_tokens"}
    assert RequestOptions().given == frozenset()
    assert RequestOptions(max_tokens=None) == RequestOptions(max_tokens=None)
    assert RequestOptions(max_tokens=None) != RequestOptions()  # None is a value, not "not given"
    assert repr(named).startswith("RequestOptions(model='m', max_tokens=None,")  # `given` is not a field
    for copied in (copy.deepcopy(named), pickle.loads(pickle.dumps(named))):
        assert copied == named and copied.given == named.given
    assert merge_options(RequestOptions(max_tokens=5), named).max_tokens is None
    assert merge_options(named, RequestOptions(model="n")).max_tokens is None


# --- properties -----------------------------------------------------------------------------------------

CALL_IDS = st.sampled_from(["c1", "c2", "c3", ""])
ARGUMENTS = st.sampled_from(["{}", '{"a": 1}', "null", "1", "", "{", "NaN", "[1e400]"]) | st.text(max_size=5)
HISTORIES = st.lists(items(call_ids=CALL_IDS, arguments=ARGUMENTS), max_size=12)
POLICIES = st.sampled_from(["drop", "truncate", "keep"])


@settings(max_examples=300, deadline=None)
@given(HISTORIES, POLICIES, st.none() | st.text(max_size=5))
def test_any_history_builds_a_json_payload(history: list[ResponseItem], policy: str,
                                           instructions: str | None) -> None:
    payload = build(Prompt(input=history, instructions=instructions), "m",
                                 orphan_tool_calls=policy)  # type: ignore[arg-type]
    json.dumps(payload, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(HISTORIES)
def test_with_drop_every_function_call_sent_has_a_tool_output_after_it(history: list[ResponseItem]) -> None:
    sent = build(Prompt(input=history), "m")["messages"]
    for index, message in enumerate(sent):
        for tool_call in message.get("tool_calls", []):
            if tool_call["type"] == "function":
                assert any(later.get("role") == "tool" and later["tool_call_id"] == tool_call["id"]
                           for later in sent[index + 1:]), (tool_call, sent)


def test_tool_call_content_is_the_providers_string_or_null() -> None:
    history = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
        {"type": "function_call", "name": "get_weather", "arguments": "{}", "call_id": "c1"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
    ]
    prompt = Prompt(input=history)
    default = build(prompt, "m")
    openai_like = build(prompt, "m", Provider(name="openai", tool_call_content=None))
    assert [m["content"] for m in default["messages"] if "tool_calls" in m] == [""]
    assert [m["content"] for m in openai_like["messages"] if "tool_calls" in m] == [None]
    # only tool-call messages change
    assert [m for m in openai_like["messages"] if "tool_calls" not in m] == \
        [m for m in default["messages"] if "tool_calls" not in m]
