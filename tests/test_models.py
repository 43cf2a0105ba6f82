"""Conversation items: the llmx/Codex protocol JSON, read and written exactly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from item_strategies import garbage, items
from reference_cases import reference_case

from llmx_sync._jsonrules import compact_json
from llmx_sync.errors import InvalidInputError
from llmx_sync.models import (
    FunctionCallOutput,
    FunctionCallOutputPayload,
    InputImage,
    InputText,
    Other,
    ResponseItem,
    item_from_dict,
    read_history_jsonl,
)

CANONICAL: dict[str, dict[str, Any]] = {
    "message": {"type": "message", "role": "user",
                "content": [{"type": "input_text", "text": "hi"},
                            {"type": "input_image", "image_url": "data:image/png;base64,AAA"}]},
    "message_with_id": {"type": "message", "role": "assistant",
                        "content": [{"type": "output_text", "text": "hello"}], "id": "msg_1"},
    "reasoning": {"type": "reasoning", "summary": [{"type": "summary_text", "text": "s"}],
                  "content": [{"type": "reasoning_text", "text": "r"}, {"type": "text", "text": "t"}],
                  "encrypted_content": None},
    "reasoning_no_content": {"type": "reasoning", "id": "rs_1", "summary": [], "content": None,
                             "encrypted_content": "gAAA"},
    "local_shell_call": {"type": "local_shell_call", "call_id": "call_1", "status": "completed",
                         "action": {"type": "exec", "command": ["ls", "-l"], "timeout_ms": 1000,
                                    "working_directory": "/tmp", "env": {"A": "1"}, "user": "me"}},
    "local_shell_call_id_only": {"type": "local_shell_call", "call_id": None, "status": "in_progress",
                                 "action": {"type": "exec", "command": ["echo"], "timeout_ms": None,
                                            "working_directory": None, "env": None, "user": None},
                                 "id": "id1"},
    "function_call": {"type": "function_call", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}",
                      "call_id": "call_2"},
    "function_call_with_id": {"type": "function_call", "name": "f", "arguments": "{}", "call_id": "c",
                              "id": "fc_1"},
    "function_call_output": {"type": "function_call_output", "call_id": "call_2", "output": "sunny"},
    "function_call_output_items": {"type": "function_call_output", "call_id": "call_3",
                                   "output": [{"type": "input_text", "text": "caption"},
                                              {"type": "input_image", "image_url": "data:image/png;base64,X"}]},
    "custom_tool_call": {"type": "custom_tool_call", "status": "completed", "call_id": "call_4",
                         "name": "apply_patch", "input": "*** Begin Patch", "id": "ctc_1"},
    "custom_tool_call_minimal": {"type": "custom_tool_call", "call_id": "call_4", "name": "apply_patch",
                                 "input": ""},
    "custom_tool_call_output": {"type": "custom_tool_call_output", "call_id": "call_4", "output": "Done!"},
    "web_search_call": {"type": "web_search_call", "status": "completed",
                        "action": {"type": "search", "query": "weather"}, "id": "ws_1"},
    "web_search_call_other_action": {"type": "web_search_call", "action": {"type": "open_page", "url": "u"}},
    "ghost_snapshot": {"type": "ghost_snapshot",
                       "ghost_commit": {"id": "abc", "parent": None, "preexisting_untracked_files": ["a.txt"],
                                        "preexisting_untracked_dirs": []}},
    "other": {"type": "compaction_summary", "payload": {"nested": [1, 2.5, None]}},
    # A refusal (the Responses item shape), and the fields a server wants back (Gemini's thought
    # signature on a call, OpenRouter's reasoning details).
    "message_refusal": {"type": "message", "role": "assistant",
                        "content": [{"type": "output_text", "text": ""}, {"type": "refusal", "refusal": "No."}]},
    "function_call_provider_fields": {"type": "function_call", "name": "f", "arguments": "{}", "call_id": "c",
                                      "provider_fields": {"extra_content": {"google": {"thought_signature": "s=="}}}},
    "reasoning_provider_fields": {"type": "reasoning", "summary": [], "content": [], "encrypted_content": None,
                                  "provider_fields": {"reasoning_details": [
                                      {"type": "reasoning.encrypted", "data": "e==", "index": 0}]}},
}


@pytest.mark.parametrize("name", sorted(CANONICAL))
def test_canonical_dict_round_trips_exactly(name: str) -> None:
    data = CANONICAL[name]
    item = item_from_dict(data)
    assert item.to_dict() == data
    assert item_from_dict(item.to_dict()) == item


def test_unknown_type_is_other_kept_as_is() -> None:
    data = {"type": "image_generation_call", "result": "…", "size": [1, 2]}
    item = item_from_dict(data)
    assert item == Other(data)
    assert item.to_dict() == data


def test_seed_writes_without_ids_and_content_are_read() -> None:
    # llmx never writes `id` and omits `content` of reasoning without reasoning_text.
    item = item_from_dict({"type": "reasoning", "summary": [], "encrypted_content": None})
    assert item.to_dict() == {"type": "reasoning", "summary": [], "content": None, "encrypted_content": None}


# --- the reference serde cases -------------------------------------------------------


@pytest.mark.parametrize("case_id", ["SD01", "SD02"])
def test_reference_output_payload_serialises_as_plain_string(case_id: str) -> None:
    case = reference_case("serde_cases", case_id)
    value = case["value"]
    payload = FunctionCallOutputPayload(value["output"]["content"], value["output"]["content_items"],
                                        value["output"]["success"])
    assert FunctionCallOutput(value["call_id"], payload).to_dict() == case["expected_json"]


def _payload_from_mcp_result(result: dict[str, Any]) -> FunctionCallOutputPayload:
    """llmx's conversion of an MCP CallToolResult (images make content items), for SD03."""
    items: list[InputText | InputImage] = []
    for block in result["content"]:
        if block["type"] == "text":
            items.append(InputText(block["text"]))
        elif block["type"] == "image":
            data = block["data"]
            url = data if data.startswith("data:") else f"data:{block['mimeType']};base64,{data}"
            items.append(InputImage(url))
    has_image = any(isinstance(item, InputImage) for item in items)
    return FunctionCallOutputPayload(content=compact_json(result["content"]),
                                     content_items=items if has_image else None,
                                     success=not result["isError"])


def test_reference_sd03_image_outputs_serialise_as_array() -> None:
    case = reference_case("serde_cases", "SD03")
    payload = _payload_from_mcp_result(case["mcp_call_tool_result"])
    assert payload.success is case["expected_payload"]["success"]
    assert [item.to_dict() for item in payload.content_items or []] == case["expected_payload"]["content_items"]
    output = FunctionCallOutput("call1", payload).to_dict()["output"]
    assert output == case["expected_payload"]["content_items"]


def test_reference_sd04_array_payload_reads_into_items() -> None:
    case = reference_case("serde_cases", "SD04")
    item = item_from_dict({"type": "function_call_output", "call_id": "c", "output": case["input_json"]})
    assert isinstance(item, FunctionCallOutput)
    expected = case["expected_payload"]
    assert item.output.content == expected["content"]
    assert [i.to_dict() for i in item.output.content_items or []] == expected["content_items"]
    assert item.output.success is expected["success"]


# --- bad input --------------------------------------------------------------------------

BAD_ITEMS = [
    ({"type": "function_call", "name": "f", "arguments": "{}", "call_id": "c", "provider_fields": []},
     "input[3].provider_fields: expected an object or null, got array"),
    ({"type": "reasoning", "summary": [], "provider_fields": {"x": float("nan")}},
     "input[3].provider_fields.x: expected a finite number, got nan (not valid JSON)"),
    ({"type": "message", "role": "assistant", "content": [{"type": "refusal", "refusal": 1}]},
     "input[3].content[0].refusal: expected a string, got number"),
    ({"type": "message", "role": "user"}, "input[3]: missing required field 'content' of 'message'"),
    ({"type": "message", "role": 1, "content": []}, "input[3].role: expected a string, got number"),
    ({"type": "message", "role": "user", "content": [{"type": "input_text", "text": 5}]},
     "input[3].content[0].text: expected a string, got number"),
    ({"type": "message", "role": "user", "content": [{"type": "bogus"}]},
     "input[3].content[0].type: unknown content type 'bogus' (expected input_text, input_image, output_text, refusal)"),
    ({"type": "message", "role": "user", "content": "hi"}, "input[3].content: expected an array, got string"),
    ({"type": "local_shell_call", "call_id": None, "status": "completed",
      "action": {"type": "exec", "command": ["ls"], "timeout_ms": True}},
     "input[3].action.timeout_ms: expected a non-negative integer or null, got boolean"),
    ({"type": "function_call_output", "call_id": "c", "output": 5},
     "input[3].output: expected a string or an array of content items, got number"),
    ({"type": "reasoning", "content": []}, "input[3]: missing required field 'summary' of 'reasoning'"),
    ({"type": 5}, "input[3].type: expected a string, got number"),
    ([], "input[3]: expected a JSON object, got array"),
]


@pytest.mark.parametrize(("data", "message"), BAD_ITEMS)
def test_bad_item_names_the_field(data: Any, message: str) -> None:
    with pytest.raises(ValueError) as info:
        item_from_dict(data, index=3)
    assert isinstance(info.value, InvalidInputError)
    assert str(info.value) == message


def test_bad_item_without_index_says_item() -> None:
    with pytest.raises(InvalidInputError, match=r"^item: missing required field 'role' of 'message'$"):
        item_from_dict({"type": "message", "content": []})


# --- history files ---------------------------------------------------------------------


def test_read_history_jsonl_bare_items(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text(json.dumps(CANONICAL["message"]) + "\n\n" + json.dumps(CANONICAL["function_call"]) + "\n",
                    encoding="utf-8")
    assert [i.to_dict() for i in read_history_jsonl(path)] == [CANONICAL["message"], CANONICAL["function_call"]]


def test_read_history_jsonl_codex_rollout() -> None:
    lines = [
        {"timestamp": "2025-11-16T10:00:00Z", "type": "session_meta", "payload": {"id": "s", "cwd": "/"}},
        {"timestamp": "2025-11-16T10:00:01Z", "type": "turn_context", "payload": {"model": "gpt-5"}},
        {"timestamp": "2025-11-16T10:00:02Z", "type": "response_item", "payload": CANONICAL["message"]},
        {"timestamp": "2025-11-16T10:00:03Z", "type": "event_msg", "payload": {"type": "token_count"}},
        {"timestamp": "2025-11-16T10:00:04Z", "type": "response_item", "payload": CANONICAL["reasoning"]},
    ]
    history = read_history_jsonl(json.dumps(line) for line in lines)
    assert [i.to_dict() for i in history] == [CANONICAL["message"], CANONICAL["reasoning"]]


def test_read_history_jsonl_names_the_bad_line() -> None:
    lines = [json.dumps(CANONICAL["message"]), json.dumps({"type": "message", "role": "user", "content": [1]})]
    with pytest.raises(InvalidInputError, match=r"^line 2: input\[1\]\.content\[0\]: expected a JSON object"):
        read_history_jsonl(lines)


def test_read_history_jsonl_rejects_text_that_is_not_json() -> None:
    with pytest.raises(InvalidInputError, match=r"^line 1: not valid JSON"):
        read_history_jsonl(["{"])


# --- properties ------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(items())
def test_every_item_round_trips(item: ResponseItem) -> None:
    data = item.to_dict()
    assert item_from_dict(data) == item
    assert item_from_dict(data).to_dict() == data
    json.dumps(data, allow_nan=False)


@settings(max_examples=500, deadline=None)
@given(garbage)
def test_garbage_is_an_item_or_invalid_input(data: Any) -> None:
    try:
        item = item_from_dict(data, index=0)
    except InvalidInputError as exc:
        assert str(exc).startswith("input[0]")
    else:
        assert item.to_dict()["type"] == data["type"]
