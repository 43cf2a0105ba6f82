"""Tools the model may call: Responses-style specs and their Chat form.

`to_dict()` writes the Responses-API JSON that llmx and Codex store, which is also
what `tool_from_dict` reads. `build_chat_tools` turns a list of tools into the
`tools` array of a Chat Completions request.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Union

from ._jsonrules import as_array, check_json_value, json_type_name
from .errors import InvalidInputError
from .models import _Fields

logger = logging.getLogger("llmx_sync")

# What a function tool without `parameters` takes: nothing.
EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


@dataclass(slots=True)
class FunctionTool:
    """A function the model may call with JSON arguments.

    `parameters` is the caller's JSON Schema, kept as given. llmx narrows it to
    a typed subset (boolean/string/number/array/object), which would reject the
    `enum`, `anyOf`, `integer`, `default` ... that real tools use; the server is
    the one that interprets the schema, so it is only checked to be a JSON object.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    strict: bool = False
    type: ClassVar[str] = "function"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "function", "name": self.name, "description": self.description,
                "strict": self.strict, "parameters": copy.deepcopy(self.parameters)}


@dataclass(slots=True)
class LocalShellTool:
    type: ClassVar[str] = "local_shell"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "local_shell"}


@dataclass(slots=True)
class WebSearchTool:
    type: ClassVar[str] = "web_search"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "web_search"}


@dataclass(slots=True)
class FreeformToolFormat:
    type: str
    syntax: str
    definition: str

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "syntax": self.syntax, "definition": self.definition}


@dataclass(slots=True)
class FreeformTool:
    """A tool that takes free text in a grammar (the Responses API's `custom` tool)."""

    name: str
    description: str
    format: FreeformToolFormat
    type: ClassVar[str] = "custom"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "custom", "name": self.name, "description": self.description,
                "format": self.format.to_dict()}


ToolSpec = Union[FunctionTool, LocalShellTool, WebSearchTool, FreeformTool]

_TOOL_CLASSES = (FunctionTool, LocalShellTool, WebSearchTool, FreeformTool)


# --- reading -----------------------------------------------------------------


def _optional_bool(fields: _Fields, key: str) -> bool:
    value = fields.data.get(key, False)
    if not isinstance(value, bool):
        raise InvalidInputError(fields.at(key), f"expected true or false, got {json_type_name(value)}")
    return value


def _parameters(fields: _Fields) -> dict[str, Any]:
    if "parameters" not in fields.data:
        return copy.deepcopy(EMPTY_PARAMETERS)
    value = fields.data["parameters"]
    if not isinstance(value, dict):
        raise InvalidInputError(fields.at("parameters"),
                                f"expected a JSON Schema object, got {json_type_name(value)}")
    check_json_value(value, fields.at("parameters"))
    return value


def _function_tool(fields: _Fields) -> FunctionTool:
    # Also accept the Chat Completions form that openai-python users already have:
    # {"type": "function", "function": {"name": ..., "parameters": ...}}.
    if "function" in fields.data and "name" not in fields.data:
        fields = _Fields(fields.data["function"], fields.at("function"))
    return FunctionTool(
        name=fields.string("name"),
        description=fields.opt_str("description") or "",
        parameters=_parameters(fields),
        strict=_optional_bool(fields, "strict"),
    )


def _freeform_tool(fields: _Fields) -> FreeformTool:
    if "format" not in fields.data:
        fields.string("format")  # raises the missing-field error
    fmt = _Fields(fields.data["format"], fields.at("format"))
    return FreeformTool(
        name=fields.string("name"),
        description=fields.opt_str("description") or "",
        format=FreeformToolFormat(fmt.string("type"), fmt.string("syntax"), fmt.string("definition")),
    )


def tool_from_dict(data: Mapping[str, Any], *, index: int | None = None) -> ToolSpec:
    """Read a tool from its Responses-style JSON (as llmx and Codex write it).

    `description` and `strict` may be left out (`""`, `False`), and so may a
    function's `parameters` (no arguments). Raises `InvalidInputError` naming the
    field, e.g. ``tools[1].parameters: expected a JSON Schema object, got array``.
    """
    fields = _Fields(data, "tool" if index is None else f"tools[{index}]")
    kind = fields.string("type")
    if kind == "function":
        return _function_tool(fields)
    if kind == "custom":
        return _freeform_tool(fields)
    if kind == "local_shell":
        return LocalShellTool()
    if kind == "web_search":
        return WebSearchTool()
    raise InvalidInputError(fields.at("type"),
                            f"unknown tool type {kind!r} (expected function, custom, local_shell or web_search)")


def coerce_tool(value: Any, index: int) -> ToolSpec:
    """A tool, or a dict read as one; a tool object is checked field by field, so a
    bad value is reported as ``tools[i]...`` here rather than failing later."""
    if isinstance(value, Mapping):
        return tool_from_dict(value, index=index)
    if not isinstance(value, _TOOL_CLASSES):
        raise InvalidInputError(f"tools[{index}]", f"expected a tool or a dict, got {type(value).__name__}")
    try:
        data = value.to_dict()
    except (AttributeError, TypeError) as exc:
        raise InvalidInputError(f"tools[{index}]", f"malformed {type(value).__name__}: {exc}") from None
    tool_from_dict(data, index=index)
    return value


# --- the Chat Completions form -------------------------------------------------


def chat_function_tool(tool: FunctionTool) -> dict[str, Any]:
    """`{"type": "function", "function": {name, description, strict, parameters}}`."""
    return {"type": "function", "function": {"name": tool.name, "description": tool.description,
                                             "strict": tool.strict,
                                             "parameters": copy.deepcopy(tool.parameters)}}


def build_chat_tools(tools: Iterable[ToolSpec | Mapping[str, Any]], *, cache_control: bool,
                     checked: bool = False) -> list[dict[str, Any]]:
    """The `tools` array of a Chat Completions request.

    Only function tools exist in Chat Completions, so the other kinds are left out
    (as in llmx; each is logged at DEBUG). With `cache_control`, the last tool
    carries `"cache_control": {"type": "ephemeral"}` (a prompt-caching breakpoint
    for LiteLLM/Anthropic). `checked`: the tool objects were checked already
    (`prompt.checked_parts`), so they are not checked field by field again.
    """
    chat_tools: list[dict[str, Any]] = []
    for index, value in enumerate(as_array(tools, "tools")):
        tool = value if checked and isinstance(value, _TOOL_CLASSES) else coerce_tool(value, index)
        if isinstance(tool, FunctionTool):
            chat_tools.append(chat_function_tool(tool))
        else:
            name = tool.name if isinstance(tool, FreeformTool) else tool.type
            logger.debug("tools[%d]: %s tool %r left out (Chat Completions takes function tools only)",
                         index, tool.type, name)
    if cache_control and chat_tools:
        chat_tools[-1]["cache_control"] = {"type": "ephemeral"}
    return chat_tools
