"""Conversation items: the llmx/Codex protocol JSON as dataclasses.

`item_from_dict` reads exactly the JSON that llmx and Codex write (rollout files
included) and `to_dict` writes it back. Two places where llmx loses data are
kept lossless here, so that ``item_from_dict(x.to_dict()) == x`` always holds:
an `id` read on input is written back when present, and unknown item types
(`Other`) or web-search actions keep their original JSON.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Final, Union

from ._jsonrules import check_json_value, compact_json, json_type_name
from .errors import InvalidInputError

logger = logging.getLogger("llmx_sync")

class _Fields:
    """One JSON object being read, able to say where a bad field is."""

    __slots__ = ("data", "where")

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, Mapping):
            raise InvalidInputError(where, f"expected a JSON object, got {json_type_name(data)}")
        self.data = data
        self.where = where

    def at(self, key: str) -> str:
        return f"{self.where}.{key}"

    def _get(self, key: str, required: bool) -> Any:
        if key not in self.data:
            if required:
                kind = self.data.get("type")
                of = f" of {kind!r}" if isinstance(kind, str) else ""
                raise InvalidInputError(self.where, f"missing required field {key!r}{of}")
            return None
        return self.data[key]

    def _typed(self, key: str, value: Any, types: tuple[type, ...], name: str) -> Any:
        if not isinstance(value, types) or isinstance(value, bool) and bool not in types:
            raise InvalidInputError(self.at(key), f"expected {name}, got {json_type_name(value)}")
        return value

    def string(self, key: str) -> str:
        value: str = self._typed(key, self._get(key, True), (str,), "a string")
        return value

    def opt_str(self, key: str) -> str | None:
        value = self._get(key, False)
        return None if value is None else self._typed(key, value, (str,), "a string or null")

    def array(self, key: str, *, required: bool = True) -> list[Any] | None:
        value = self._get(key, required)
        if value is None and not required:
            return None
        result: list[Any] = self._typed(key, value, (list,), "an array")
        return result

    def opt_uint(self, key: str) -> int | None:
        value = self._get(key, False)
        if value is None:
            return None
        self._typed(key, value, (int,), "a non-negative integer or null")
        if value < 0:
            raise InvalidInputError(self.at(key), f"expected a non-negative integer, got {value}")
        result: int = value
        return result

    def str_list(self, key: str, *, required: bool = True) -> list[str] | None:
        values = self.array(key, required=required)
        if values is None:
            return None
        for i, value in enumerate(values):
            self._typed(f"{key}[{i}]", value, (str,), "a string")
        return list(values)

    def opt_object(self, key: str) -> dict[str, Any] | None:
        """A JSON object of plain JSON values, or None."""
        value = self._get(key, False)
        if value is None:
            return None
        self._typed(key, value, (dict,), "an object or null")
        check_json_value(value, self.at(key))
        return dict(value)

    def str_map(self, key: str) -> dict[str, str] | None:
        value = self._get(key, False)
        if value is None:
            return None
        self._typed(key, value, (dict,), "an object of strings or null")
        for k, v in value.items():
            self._typed(f"{key}.{k}", v, (str,), "a string")
        return dict(value)


def _tag(data: Any, where: str) -> tuple[_Fields, str]:
    fields = _Fields(data, where)
    return fields, fields.string("type")


# --- content -----------------------------------------------------------------


@dataclass(slots=True)
class InputText:
    text: str
    type: ClassVar[str] = "input_text"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "input_text", "text": self.text}


@dataclass(slots=True)
class InputImage:
    """An image, by URL (``data:`` URLs too). `detail` (``"low"``, ``"high"``,
    ``"auto"``) is the resolution a model should look at it in; None: the server's."""

    image_url: str
    detail: str | None = None
    type: ClassVar[str] = "input_image"

    def to_dict(self) -> dict[str, Any]:
        data = {"type": "input_image", "image_url": self.image_url}
        if self.detail is not None:
            data["detail"] = self.detail
        return data


@dataclass(slots=True)
class OutputText:
    text: str
    type: ClassVar[str] = "output_text"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "output_text", "text": self.text}


@dataclass(slots=True)
class Refusal:
    """The model's refusal to answer, as a part of the assistant message (the Responses
    API's ``{"type": "refusal", "refusal": ...}``); Chat Completions sends it as the
    assistant message's `refusal`."""

    refusal: str
    type: ClassVar[str] = "refusal"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "refusal", "refusal": self.refusal}


ContentItem = Union[InputText, InputImage, OutputText, Refusal]
FunctionCallOutputContentItem = Union[InputText, InputImage]


def _content_item(data: Any, where: str, *, allow_output: bool = True) -> ContentItem:
    fields, kind = _tag(data, where)
    if kind == "input_text":
        return InputText(fields.string("text"))
    if kind == "input_image":
        return InputImage(fields.string("image_url"), fields.opt_str("detail"))
    if kind == "output_text" and allow_output:
        return OutputText(fields.string("text"))
    if kind == "refusal" and allow_output:
        return Refusal(fields.string("refusal"))
    allowed = "input_text, input_image" + (", output_text, refusal" if allow_output else "")
    raise InvalidInputError(fields.at("type"), f"unknown content type {kind!r} (expected {allowed})")


@dataclass(slots=True)
class SummaryText:
    text: str
    type: ClassVar[str] = "summary_text"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "summary_text", "text": self.text}


@dataclass(slots=True)
class ReasoningText:
    text: str
    type: ClassVar[str] = "reasoning_text"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "reasoning_text", "text": self.text}


@dataclass(slots=True)
class ReasoningContentText:
    """A reasoning content entry of type ``text`` (as opposed to ``reasoning_text``)."""

    text: str
    type: ClassVar[str] = "text"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "text", "text": self.text}


ReasoningItemContent = Union[ReasoningText, ReasoningContentText]


def _reasoning_content(data: Any, where: str) -> ReasoningItemContent:
    fields, kind = _tag(data, where)
    if kind == "reasoning_text":
        return ReasoningText(fields.string("text"))
    if kind == "text":
        return ReasoningContentText(fields.string("text"))
    raise InvalidInputError(fields.at("type"), f"unknown reasoning content type {kind!r}")


def _summary(data: Any, where: str) -> SummaryText:
    fields, kind = _tag(data, where)
    if kind != "summary_text":
        raise InvalidInputError(fields.at("type"), f"unknown summary type {kind!r}")
    return SummaryText(fields.string("text"))


# --- items -------------------------------------------------------------------


def _with_id(data: dict[str, Any], item_id: str | None) -> dict[str, Any]:
    if item_id is not None:
        data["id"] = item_id
    return data


def _with_provider_fields(data: dict[str, Any], fields: dict[str, Any] | None) -> dict[str, Any]:
    if fields is not None:
        data["provider_fields"] = dict(fields)
    return data


@dataclass(slots=True)
class Message:
    role: str
    content: list[ContentItem]
    id: str | None = None
    type: ClassVar[str] = "message"

    @classmethod
    def user(cls, text: str) -> Message:
        return cls("user", [InputText(text)])

    @classmethod
    def developer(cls, text: str) -> Message:
        return cls("developer", [InputText(text)])

    @classmethod
    def assistant(cls, text: str) -> Message:
        return cls("assistant", [OutputText(text)])

    @property
    def text(self) -> str:
        """All text segments joined, images and refusals left out."""
        return "".join(c.text for c in self.content if isinstance(c, (InputText, OutputText)))

    @property
    def refusal(self) -> str:
        """The refusal parts joined (``""`` when the model did not refuse)."""
        return "".join(c.refusal for c in self.content if isinstance(c, Refusal))

    def to_dict(self) -> dict[str, Any]:
        data = {"type": "message", "role": self.role, "content": [c.to_dict() for c in self.content]}
        return _with_id(data, self.id)


#: Fields of an assistant message (and of its stream's deltas) that a server wants back,
#: unchanged, on the next turn's assistant message: OpenRouter's ``reasoning_details``
#: (signed or encrypted reasoning, streamed in pieces) and Gemini's ``extra_content`` (its
#: thought signature on a text answer). They are kept on the turn's `Reasoning` item,
#: whose text rides on that message.
MESSAGE_PROVIDER_FIELDS: Final = ("reasoning_details", "extra_content")


@dataclass(slots=True)
class Reasoning:
    """The model's reasoning. `provider_fields` holds what a server sent about it beyond
    the protocol and wants back unchanged on the next turn's assistant message
    (`MESSAGE_PROVIDER_FIELDS`: OpenRouter's ``reasoning_details``, Gemini's
    ``extra_content`` with its thought signature)."""

    summary: list[SummaryText] = field(default_factory=list)
    content: list[ReasoningItemContent] | None = None
    encrypted_content: str | None = None
    id: str = ""
    provider_fields: dict[str, Any] | None = None
    type: ClassVar[str] = "reasoning"

    @property
    def text(self) -> str:
        return "".join(c.text for c in self.content or ())

    def to_dict(self) -> dict[str, Any]:
        # llmx omits `content` when it holds no reasoning_text entry; writing it
        # keeps `text` entries, and llmx reads either form.
        data: dict[str, Any] = {"type": "reasoning"}
        if self.id:
            data["id"] = self.id
        data["summary"] = [s.to_dict() for s in self.summary]
        data["content"] = None if self.content is None else [c.to_dict() for c in self.content]
        data["encrypted_content"] = self.encrypted_content
        return _with_provider_fields(data, self.provider_fields)


LOCAL_SHELL_STATUSES = ("completed", "in_progress", "incomplete")


@dataclass(slots=True)
class LocalShellExecAction:
    command: list[str]
    timeout_ms: int | None = None
    working_directory: str | None = None
    env: dict[str, str] | None = None
    user: str | None = None
    type: ClassVar[str] = "exec"

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "exec",
            "command": list(self.command),
            "timeout_ms": self.timeout_ms,
            "working_directory": self.working_directory,
            "env": None if self.env is None else dict(self.env),
            "user": self.user,
        }


def _local_shell_action(data: Any, where: str) -> LocalShellExecAction:
    fields, kind = _tag(data, where)
    if kind != "exec":
        raise InvalidInputError(fields.at("type"), f"unknown local shell action {kind!r} (expected 'exec')")
    command = fields.str_list("command")
    assert command is not None
    return LocalShellExecAction(
        command=command,
        timeout_ms=fields.opt_uint("timeout_ms"),
        working_directory=fields.opt_str("working_directory"),
        env=fields.str_map("env"),
        user=fields.opt_str("user"),
    )


@dataclass(slots=True)
class LocalShellCall:
    call_id: str | None
    status: str
    action: LocalShellExecAction
    id: str | None = None
    type: ClassVar[str] = "local_shell_call"

    def to_dict(self) -> dict[str, Any]:
        data = {"type": "local_shell_call", "call_id": self.call_id, "status": self.status,
                "action": self.action.to_dict()}
        return _with_id(data, self.id)


#: The fields of a ``tool_calls`` entry (streamed or not) that the protocol defines; any
#: other one (Gemini's ``extra_content``) is the server's, kept in the `FunctionCall`'s
#: `provider_fields` and sent back.
TOOL_CALL_FIELDS: Final = frozenset({"index", "id", "type", "function"})


@dataclass(slots=True)
class FunctionCall:
    """A call of a function tool. `provider_fields` holds the fields a server sent on
    the call beyond the protocol's (Gemini's ``extra_content`` with its thought
    signature): they go back unchanged on the next turn's ``tool_calls`` entry."""

    name: str
    arguments: str
    call_id: str
    id: str | None = None
    provider_fields: dict[str, Any] | None = None
    type: ClassVar[str] = "function_call"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": "function_call", "name": self.name, "arguments": self.arguments,
                                "call_id": self.call_id}
        return _with_provider_fields(_with_id(data, self.id), self.provider_fields)


@dataclass(slots=True)
class FunctionCallOutputPayload:
    """A tool's result: plain text, or content items (text and images).

    `success` is kept in memory but, as in llmx, never written to JSON.
    """

    content: str
    content_items: list[FunctionCallOutputContentItem] | None = None
    success: bool | None = None

    @classmethod
    def from_items(cls, items: list[FunctionCallOutputContentItem]) -> FunctionCallOutputPayload:
        return cls(content=compact_json([i.to_dict() for i in items]), content_items=list(items))

    def to_json(self) -> str | list[dict[str, Any]]:
        if self.content_items is not None:
            return [i.to_dict() for i in self.content_items]
        return self.content

    @classmethod
    def from_json(cls, value: Any, where: str) -> FunctionCallOutputPayload:
        if isinstance(value, str):
            return cls(content=value)
        if isinstance(value, list):
            items = [_content_item(v, f"{where}[{i}]", allow_output=False) for i, v in enumerate(value)]
            return cls.from_items(items)  # type: ignore[arg-type]
        raise InvalidInputError(where, f"expected a string or an array of content items, got {json_type_name(value)}")


@dataclass(slots=True)
class FunctionCallOutput:
    call_id: str
    output: FunctionCallOutputPayload
    type: ClassVar[str] = "function_call_output"

    @classmethod
    def from_text(cls, call_id: str, text: str) -> FunctionCallOutput:
        return cls(call_id, FunctionCallOutputPayload(text))

    def to_dict(self) -> dict[str, Any]:
        return {"type": "function_call_output", "call_id": self.call_id, "output": self.output.to_json()}


@dataclass(slots=True)
class CustomToolCall:
    call_id: str
    name: str
    input: str
    status: str | None = None
    id: str | None = None
    type: ClassVar[str] = "custom_tool_call"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": "custom_tool_call"}
        if self.status is not None:
            data["status"] = self.status
        data.update(call_id=self.call_id, name=self.name, input=self.input)
        return _with_id(data, self.id)


@dataclass(slots=True)
class CustomToolCallOutput:
    call_id: str
    output: str
    type: ClassVar[str] = "custom_tool_call_output"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "custom_tool_call_output", "call_id": self.call_id, "output": self.output}


@dataclass(slots=True)
class WebSearchSearchAction:
    query: str
    type: ClassVar[str] = "search"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "search", "query": self.query}


@dataclass(slots=True)
class OtherWebSearchAction:
    """A web-search action of a kind this SDK does not know; its JSON is kept as is."""

    data: dict[str, Any] = field(default_factory=lambda: {"type": "other"})
    type: ClassVar[str] = "other"

    def to_dict(self) -> dict[str, Any]:
        return dict(self.data)


WebSearchAction = Union[WebSearchSearchAction, OtherWebSearchAction]


def _web_search_action(data: Any, where: str) -> WebSearchAction:
    fields, kind = _tag(data, where)
    if kind == "search":
        return WebSearchSearchAction(fields.string("query"))
    return OtherWebSearchAction(dict(fields.data))


@dataclass(slots=True)
class WebSearchCall:
    action: WebSearchAction
    status: str | None = None
    id: str | None = None
    type: ClassVar[str] = "web_search_call"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": "web_search_call"}
        if self.status is not None:
            data["status"] = self.status
        data["action"] = self.action.to_dict()
        return _with_id(data, self.id)


@dataclass(slots=True)
class GhostCommit:
    id: str
    parent: str | None = None
    preexisting_untracked_files: list[str] = field(default_factory=list)
    preexisting_untracked_dirs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "parent": self.parent,
            "preexisting_untracked_files": list(self.preexisting_untracked_files),
            "preexisting_untracked_dirs": list(self.preexisting_untracked_dirs),
        }


@dataclass(slots=True)
class GhostSnapshot:
    ghost_commit: GhostCommit
    type: ClassVar[str] = "ghost_snapshot"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "ghost_snapshot", "ghost_commit": self.ghost_commit.to_dict()}


@dataclass(slots=True)
class Other:
    """An item of a type this SDK does not know. Kept (and written back) as is;
    never sent to the model."""

    data: dict[str, Any] = field(default_factory=lambda: {"type": "other"})
    type: ClassVar[str] = "other"

    def to_dict(self) -> dict[str, Any]:
        return dict(self.data)


ResponseItem = Union[
    Message, Reasoning, LocalShellCall, FunctionCall, FunctionCallOutput, CustomToolCall,
    CustomToolCallOutput, WebSearchCall, GhostSnapshot, Other,
]


# --- reading -----------------------------------------------------------------


def _message(f: _Fields) -> Message:
    content = f.array("content")
    assert content is not None
    return Message(
        role=f.string("role"),
        content=[_content_item(c, f"{f.at('content')}[{i}]") for i, c in enumerate(content)],
        id=f.opt_str("id"),
    )


def _reasoning(f: _Fields) -> Reasoning:
    summary = f.array("summary")
    assert summary is not None
    content = f.array("content", required=False)
    return Reasoning(
        summary=[_summary(s, f"{f.at('summary')}[{i}]") for i, s in enumerate(summary)],
        content=None if content is None
        else [_reasoning_content(c, f"{f.at('content')}[{i}]") for i, c in enumerate(content)],
        encrypted_content=f.opt_str("encrypted_content"),
        id=f.opt_str("id") or "",
        provider_fields=f.opt_object("provider_fields"),
    )


def _local_shell_call(f: _Fields) -> LocalShellCall:
    status = f.string("status")
    if status not in LOCAL_SHELL_STATUSES:
        raise InvalidInputError(f.at("status"), f"unknown status {status!r} (expected one of {', '.join(LOCAL_SHELL_STATUSES)})")
    if "action" not in f.data:
        f.string("action")  # raises the missing-field error
    return LocalShellCall(
        call_id=f.opt_str("call_id"),
        status=status,
        action=_local_shell_action(f.data["action"], f.at("action")),
        id=f.opt_str("id"),
    )


def _function_call(f: _Fields) -> FunctionCall:
    return FunctionCall(name=f.string("name"), arguments=f.string("arguments"), call_id=f.string("call_id"),
                        id=f.opt_str("id"), provider_fields=f.opt_object("provider_fields"))


def _function_call_output(f: _Fields) -> FunctionCallOutput:
    call_id = f.string("call_id")
    if "output" not in f.data:
        f.string("output")
    return FunctionCallOutput(call_id, FunctionCallOutputPayload.from_json(f.data["output"], f.at("output")))


def _custom_tool_call(f: _Fields) -> CustomToolCall:
    return CustomToolCall(call_id=f.string("call_id"), name=f.string("name"), input=f.string("input"),
                          status=f.opt_str("status"), id=f.opt_str("id"))


def _custom_tool_call_output(f: _Fields) -> CustomToolCallOutput:
    return CustomToolCallOutput(call_id=f.string("call_id"), output=f.string("output"))


def _web_search_call(f: _Fields) -> WebSearchCall:
    if "action" not in f.data:
        f.string("action")
    return WebSearchCall(action=_web_search_action(f.data["action"], f.at("action")),
                         status=f.opt_str("status"), id=f.opt_str("id"))


def _ghost_snapshot(f: _Fields) -> GhostSnapshot:
    if "ghost_commit" not in f.data:
        f.string("ghost_commit")
    g = _Fields(f.data["ghost_commit"], f.at("ghost_commit"))
    return GhostSnapshot(GhostCommit(
        id=g.string("id"),
        parent=g.opt_str("parent"),
        preexisting_untracked_files=g.str_list("preexisting_untracked_files", required=False) or [],
        preexisting_untracked_dirs=g.str_list("preexisting_untracked_dirs", required=False) or [],
    ))


_READERS: dict[str, Callable[[_Fields], ResponseItem]] = {
    "message": _message,
    "reasoning": _reasoning,
    "local_shell_call": _local_shell_call,
    "function_call": _function_call,
    "function_call_output": _function_call_output,
    "custom_tool_call": _custom_tool_call,
    "custom_tool_call_output": _custom_tool_call_output,
    "web_search_call": _web_search_call,
    "ghost_snapshot": _ghost_snapshot,
}


def item_from_dict(data: Mapping[str, Any], *, index: int | None = None) -> ResponseItem:
    """Read one protocol item. `index` (its place in a history) goes into error texts.

    Raises `InvalidInputError` (a `ValueError`) naming the field, e.g.
    ``input[2].content[0].text: expected a string, got number``.
    """
    where = "item" if index is None else f"input[{index}]"
    fields, kind = _tag(data, where)
    reader = _READERS.get(kind)
    if reader is None:
        logger.debug("%s: unknown item type %r kept as Other", where, kind)
        check_json_value(data, where)  # kept and written back as it is: plain JSON, nesting bounded
        return Other(dict(data))
    return reader(fields)


def items_from_dicts(data: Iterable[Any]) -> list[ResponseItem]:
    return [item_from_dict(d, index=i) for i, d in enumerate(data)]


def coerce_item(value: Any, index: int) -> ResponseItem:
    """An item, or a dict read as one (so a history may mix both)."""
    if isinstance(value, Mapping):
        return item_from_dict(value, index=index)
    if isinstance(value, _ITEM_CLASSES):
        return value
    raise InvalidInputError(f"input[{index}]", f"expected an item or a dict, got {type(value).__name__}")


_ITEM_CLASSES = (Message, Reasoning, LocalShellCall, FunctionCall, FunctionCallOutput, CustomToolCall,
                 CustomToolCallOutput, WebSearchCall, GhostSnapshot, Other)

# Record types of a Codex/llmx rollout file that carry no conversation item.
_ROLLOUT_NON_ITEMS = {"session_meta", "event_msg", "turn_context", "compacted"}


def _file_lines(path: str | os.PathLike[str]) -> list[str]:
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        problem = f"cannot read {str(path)!r}: {exc.strerror or exc}"
    except UnicodeDecodeError as exc:
        problem = f"{str(path)!r} is not UTF-8 text ({exc.reason})"
    raise InvalidInputError("source", problem)


def _json_line(line: str, lineno: int) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        problem = f"not valid JSON: {exc}"
    except RecursionError:
        problem = "not valid JSON: nested too deep"
    raise InvalidInputError(f"line {lineno}", problem)


def read_history_jsonl(source: str | Path | Iterable[str]) -> list[ResponseItem]:
    """Read a JSONL history: one protocol item per line, or a Codex/llmx rollout
    (``{"type": "response_item", "payload": {...}}`` lines; its other records are skipped)."""
    lines: Iterable[str]
    if isinstance(source, (str, os.PathLike)):
        lines = _file_lines(source)
    elif isinstance(source, (bytes, Mapping)) or not isinstance(source, Iterable):
        raise InvalidInputError("source", f"expected a file path or lines of text, got {type(source).__name__}")
    else:
        lines = source
    items: list[ResponseItem] = []
    for lineno, line in enumerate(lines, start=1):
        if not isinstance(line, str):
            raise InvalidInputError(f"line {lineno}", f"expected a line of text, got {type(line).__name__}")
        if not line.strip():
            continue
        record = _json_line(line, lineno)
        if not isinstance(record, dict):
            raise InvalidInputError(f"line {lineno}", f"expected a JSON object, got {json_type_name(record)}")
        kind = record.get("type")
        if kind == "response_item" and "payload" in record:
            record = record["payload"]
        elif kind in _ROLLOUT_NON_ITEMS or kind is None:
            logger.debug("history line %d: skipped rollout record %r", lineno, kind or "meta")
            continue
        try:
            items.append(item_from_dict(record, index=len(items)))
        except InvalidInputError as exc:
            raise InvalidInputError(f"line {lineno}: {exc.where}", exc.problem) from None
    return items
