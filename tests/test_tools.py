"""Tool specs (the Responses-style JSON llmx stores) and the Chat Completions `tools` array."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from llmx_sync.errors import InvalidInputError
from llmx_sync.tools import (
    FreeformTool,
    FreeformToolFormat,
    FunctionTool,
    LocalShellTool,
    WebSearchTool,
    build_chat_tools,
    coerce_tool,
    tool_from_dict,
)

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "City name"},
        "unit": {"type": "string", "enum": ["c", "f"]},
        "days": {"type": "integer", "minimum": 1},
        "when": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    },
    "required": ["city"],
    "additionalProperties": False,
}
WEATHER = FunctionTool("get_weather", "Weather for a city", WEATHER_SCHEMA, strict=True)
APPLY_PATCH = FreeformTool("apply_patch", "Edit files", FreeformToolFormat("grammar", "lark", "start: patch"))

RESPONSES_JSON: list[tuple[Any, dict[str, Any]]] = [
    (WEATHER, {"type": "function", "name": "get_weather", "description": "Weather for a city", "strict": True,
               "parameters": WEATHER_SCHEMA}),
    (LocalShellTool(), {"type": "local_shell"}),
    (WebSearchTool(), {"type": "web_search"}),
    (APPLY_PATCH, {"type": "custom", "name": "apply_patch", "description": "Edit files",
                   "format": {"type": "grammar", "syntax": "lark", "definition": "start: patch"}}),
]


@pytest.mark.parametrize(("tool", "data"), RESPONSES_JSON, ids=["function", "local_shell", "web_search", "custom"])
def test_to_dict_is_the_responses_json(tool: Any, data: dict[str, Any]) -> None:
    assert tool.to_dict() == data
    assert list(tool.to_dict()) == list(data)


@pytest.mark.parametrize(("tool", "data"), RESPONSES_JSON, ids=["function", "local_shell", "web_search", "custom"])
def test_tool_from_dict_reads_it_back(tool: Any, data: dict[str, Any]) -> None:
    assert tool_from_dict(data) == tool


def test_function_tool_optional_fields_have_defaults() -> None:
    tool = tool_from_dict({"type": "function", "name": "now"})
    assert tool == FunctionTool("now", "", {"type": "object", "properties": {}}, strict=False)


def test_chat_completions_form_is_accepted() -> None:
    data = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                             "strict": True, "parameters": WEATHER_SCHEMA}}
    assert tool_from_dict(data) == WEATHER


def test_parameters_keep_the_callers_json_schema() -> None:
    # enum, anyOf, integer and minimum are outside llmx's typed subset.
    tool = tool_from_dict(RESPONSES_JSON[0][1])
    assert isinstance(tool, FunctionTool)
    assert tool.parameters == WEATHER_SCHEMA


BAD_TOOLS = [
    ({"type": "function"}, "tools[2]: missing required field 'name' of 'function'"),
    ({"type": "function", "name": 7}, "tools[2].name: expected a string, got number"),
    ({"type": "function", "name": "f", "strict": "yes"}, "tools[2].strict: expected true or false, got string"),
    ({"type": "function", "name": "f", "parameters": []},
     "tools[2].parameters: expected a JSON Schema object, got array"),
    ({"type": "function", "name": "f", "parameters": {"properties": {"x": {"default": float("nan")}}}},
     "tools[2].parameters.properties.x.default: expected a finite number, got nan (not valid JSON)"),
    ({"type": "function", "function": "f"}, "tools[2].function: expected a JSON object, got string"),
    ({"type": "custom", "name": "p"}, "tools[2]: missing required field 'format' of 'custom'"),
    ({"type": "custom", "name": "p", "format": {"type": "grammar", "syntax": "lark"}},
     "tools[2].format: missing required field 'definition' of 'grammar'"),
    ({"type": "code_interpreter"},
     "tools[2].type: unknown tool type 'code_interpreter' (expected function, custom, local_shell or web_search)"),
    ({"name": "f"}, "tools[2]: missing required field 'type'"),
    ("get_weather", "tools[2]: expected a JSON object, got string"),
]


@pytest.mark.parametrize(("data", "message"), BAD_TOOLS)
def test_bad_tool_names_the_field(data: Any, message: str) -> None:
    with pytest.raises(ValueError) as info:
        tool_from_dict(data, index=2)
    assert isinstance(info.value, InvalidInputError)
    assert str(info.value) == message


def test_bad_tool_without_index_says_tool() -> None:
    with pytest.raises(InvalidInputError, match=r"^tool: missing required field 'type'$"):
        tool_from_dict({})


def test_coerce_tool_checks_tool_objects_too() -> None:
    with pytest.raises(InvalidInputError, match=r"^tools\[1\]\.parameters: expected a JSON Schema object"):
        coerce_tool(FunctionTool("f", "d", "not a schema"), 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"^tools\[1\]: malformed FreeformTool"):
        coerce_tool(FreeformTool("p", "d", "grammar"), 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"^tools\[1\]: expected a tool or a dict, got int$"):
        coerce_tool(5, 1)


# --- the Chat form -------------------------------------------------------------------------


def test_function_tools_are_wrapped_for_chat() -> None:
    assert build_chat_tools([WEATHER], cache_control=False) == [
        {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                          "strict": True, "parameters": WEATHER_SCHEMA}},
    ]


def test_other_tool_kinds_are_left_out_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    other = FunctionTool("other", "", {"type": "object", "properties": {}})
    with caplog.at_level(logging.DEBUG, logger="llmx_sync"):
        chat = build_chat_tools([LocalShellTool(), WEATHER, WebSearchTool(), APPLY_PATCH, other], cache_control=False)
    assert [t["function"]["name"] for t in chat] == ["get_weather", "other"]
    dropped = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert dropped == [
        "tools[0]: local_shell tool 'local_shell' left out (Chat Completions takes function tools only)",
        "tools[2]: web_search tool 'web_search' left out (Chat Completions takes function tools only)",
        "tools[3]: custom tool 'apply_patch' left out (Chat Completions takes function tools only)",
    ]


def test_cache_control_goes_on_the_last_function_tool_only() -> None:
    other = FunctionTool("other", "", {"type": "object", "properties": {}})
    chat = build_chat_tools([WEATHER, other, LocalShellTool()], cache_control=True)
    assert "cache_control" not in chat[0]
    assert chat[1]["cache_control"] == {"type": "ephemeral"}
    assert list(chat[1]) == ["type", "function", "cache_control"]


def test_no_cache_control_unless_asked() -> None:
    assert all("cache_control" not in t for t in build_chat_tools([WEATHER, WEATHER], cache_control=False))


def test_no_tools_give_an_empty_list() -> None:
    assert build_chat_tools([], cache_control=True) == []
    assert build_chat_tools([LocalShellTool()], cache_control=True) == []


def test_chat_tools_accept_dicts_and_name_bad_ones() -> None:
    assert build_chat_tools([RESPONSES_JSON[0][1]], cache_control=False)[0]["function"]["name"] == "get_weather"
    with pytest.raises(InvalidInputError, match=r"^tools\[1\]\.type: unknown tool type 'nope'"):
        build_chat_tools([WEATHER, {"type": "nope"}], cache_control=False)
    with pytest.raises(InvalidInputError, match=r"^tools: expected a list, got string$"):
        build_chat_tools("get_weather", cache_control=False)  # type: ignore[arg-type]


def test_chat_tools_do_not_share_the_callers_schema() -> None:
    chat = build_chat_tools([WEATHER], cache_control=False)
    chat[0]["function"]["parameters"]["properties"].clear()
    assert WEATHER.parameters == WEATHER_SCHEMA
    assert WEATHER_SCHEMA["properties"]
