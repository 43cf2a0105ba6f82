"""Chat Completions messages as conversation items.

A prompt may be the ``messages`` list that tutorials, apps and the other SDKs use:
``[{"role": "user", "content": "hi"}, …]``. `items_from_messages` reads each message
into the items it stands for (a message, reasoning, function calls, a function output),
so that the request sends the messages as they were given (see
``docs/behaviour.md#messages-in``). `ChatResult.to_messages()` is the way back.

Every field is read or refused: nothing given is dropped without a word. What the items
cannot hold (a participant's ``name``, ``audio``, the deprecated ``function_call``,
content parts other than text and images) raises `InvalidInputError` naming it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Final

from ._jsonrules import as_array, check_json_value, is_blank, json_type_name
from .errors import InvalidInputError
from .models import (
    MESSAGE_PROVIDER_FIELDS,
    TOOL_CALL_FIELDS,
    ContentItem,
    CustomToolCall,
    FunctionCall,
    FunctionCallOutput,
    FunctionCallOutputContentItem,
    FunctionCallOutputPayload,
    InputImage,
    InputText,
    Message,
    OutputText,
    Reasoning,
    ReasoningText,
    Refusal,
    ResponseItem,
)

__all__ = ["ROLES", "is_chat_message", "items_from_messages"]

ROLES: Final = ("system", "developer", "user", "assistant", "tool")

# The fields of each role that become items ...
_FIELDS: Final[dict[str, frozenset[str]]] = {
    "system": frozenset({"role", "content"}),
    "developer": frozenset({"role", "content"}),
    "user": frozenset({"role", "content"}),
    # `reasoning` is not OpenAI's: it is where this SDK sends reasoning back (see
    # `to_messages`), as vLLM, llama.cpp and LiteLLM read it.
    # `parsed` (the openai SDK's reading of structured output) repeats the content: it is
    # checked against it, not kept twice. A server's own fields (`MESSAGE_PROVIDER_FIELDS`)
    # are kept on the reasoning item, which sends them back on this message.
    "assistant": frozenset({"role", "content", "tool_calls", "refusal", "reasoning", "parsed",
                            *MESSAGE_PROVIDER_FIELDS}),
    # A tool message's `name` (many tutorials write one) is the called function's: it is
    # checked against the call, which carries it, and not kept twice.
    "tool": frozenset({"role", "content", "tool_call_id", "name"}),
}
# ... and the ones that cannot be kept: accepted when null or empty (as an SDK's
# `model_dump()` of an answer writes them), refused otherwise, with what to do.
_NOT_KEPT: Final[dict[str, str]] = {
    "name": "a participant's name cannot be kept in the conversation's items; leave it out",
    "audio": "an audio answer cannot be sent back; leave it out",
    "function_call": "the deprecated function_call cannot be sent; give tool_calls",
    "annotations": "annotations belong to an answer, not to a request; leave them out",
    # What LiteLLM's `Message.model_dump()` adds.
    "reasoning_content": "give the reasoning as 'reasoning', the field it is sent back in",
    "thinking_blocks": "thinking blocks cannot be sent back; leave them out",
    "provider_specific_fields": "a provider's own fields cannot be sent back; leave them out",
}


def is_chat_message(value: Any) -> bool:
    """A Chat Completions message: a dict with a ``role`` and no ``type`` (an item's
    dict always has a ``type``)."""
    return isinstance(value, Mapping) and "role" in value and "type" not in value


def items_from_messages(messages: Iterable[Mapping[str, Any]]) -> list[ResponseItem]:
    """The items a list of Chat Completions messages stands for.

    `system`, `developer` and `user` messages (text, or content parts ``text`` and
    ``image_url``) become messages; an `assistant` message becomes its text as a
    message, its ``reasoning``, and a function (or custom) call per entry of
    ``tool_calls``; a `tool` message becomes the output of the call its
    ``tool_call_id`` names. A list mixing messages and items is refused: give one or
    the other. Errors name the message, e.g. ``input[2].tool_calls[0].function``.
    """
    values = as_array(messages, "input")
    items: list[ResponseItem] = []
    call_names: dict[str, str] = {}  # the calls so far, by id: what a tool message's `name` must say
    for index, message in enumerate(values):
        where = f"input[{index}]"
        if not is_chat_message(message):
            first = next(i for i, value in enumerate(values) if is_chat_message(value))
            raise InvalidInputError(where, f"expected a Chat Completions message, like input[{first}], got "
                                    f"{_kind(message)}: give a list of messages or a list of items, not both")
        new = message_items(message, where, call_names)
        call_names.update((item.call_id, item.name) for item in new if isinstance(item, (FunctionCall, CustomToolCall)))
        items += new
    return items


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return f"an item of type {value['type']!r}" if "type" in value else "a dict without 'role'"
    return f"a {type(value).__name__}" if hasattr(value, "to_dict") else json_type_name(value)


def message_items(message: Mapping[str, Any], where: str,
                  call_names: Mapping[str, str] | None = None) -> list[ResponseItem]:
    """The items of one message (see `items_from_messages`); `call_names` maps the ids
    of the calls before it to their names."""
    role = message["role"]
    if not isinstance(role, str) or role not in _FIELDS:
        hint = "; the deprecated function role: give tool messages" if role == "function" else ""
        raise InvalidInputError(f"{where}.role", f"expected one of {', '.join(ROLES)}, got {role!r}{hint}")
    for key, value in message.items():
        if key in _FIELDS[role]:
            continue
        if key in _NOT_KEPT and role != "tool":
            if value is None or value == []:
                continue
            raise InvalidInputError(f"{where}.{key}", _NOT_KEPT[key])
        raise InvalidInputError(f"{where}.{key}", f"not a field of a {role} message "
                                f"(fields: {', '.join(sorted(_FIELDS[role] - {'role'}))})")
    if role == "assistant":
        return assistant_items(message, where)
    if role == "tool":
        return [tool_output(message, where, call_names or {})]
    if "content" not in message:
        raise InvalidInputError(where, f"a {role} message needs its content")
    content = message["content"]
    if isinstance(content, str):
        return [Message(role, [InputText(content)])]
    return [Message(role, [_input_part(part, f"{where}.content[{i}]")
                           for i, part in enumerate(_parts(content, f"{where}.content"))])]


def _parts(content: Any, where: str) -> list[Any]:
    if not isinstance(content, list):
        raise InvalidInputError(where, f"expected a string or a list of content parts, got {json_type_name(content)}")
    return content


def _string(data: Mapping[str, Any], key: str, where: str) -> str:
    if key not in data:
        raise InvalidInputError(where, f"missing required field {key!r}")
    value = data[key]
    if not isinstance(value, str):
        raise InvalidInputError(f"{where}.{key}", f"expected a string, got {json_type_name(value)}")
    return value


def _object(value: Any, where: str, fields: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInputError(where, f"expected an object, got {json_type_name(value)}")
    for key in value:
        if key not in fields:
            raise InvalidInputError(f"{where}.{key}", f"not a field here (fields: {', '.join(sorted(fields))})")
    return value


_TEXT_PART: Final = frozenset({"type", "text"})
_IMAGE_PART: Final = frozenset({"type", "image_url"})
_IMAGE_URL: Final = frozenset({"url", "detail"})
_REFUSAL_PART: Final = frozenset({"type", "refusal"})


def _part_type(part: Any, where: str, types: tuple[str, ...]) -> str:
    if not isinstance(part, Mapping):
        raise InvalidInputError(where, f"expected a content part (an object), got {json_type_name(part)}")
    kind = part.get("type")
    if kind not in types:
        raise InvalidInputError(f"{where}.type", f"content parts of type {kind!r} cannot be sent: the parts "
                                f"here are {', '.join(types)}")
    return str(kind)


def _input_part(part: Any, where: str) -> InputText | InputImage:
    """A ``text`` or ``image_url`` part."""
    if _part_type(part, where, ("text", "image_url")) == "text":
        return InputText(_string(_object(part, where, _TEXT_PART), "text", where))
    image = _object(_object(part, where, _IMAGE_PART).get("image_url"), f"{where}.image_url", _IMAGE_URL)
    detail = image.get("detail")
    if detail is not None and not isinstance(detail, str):
        raise InvalidInputError(f"{where}.image_url.detail", f"expected a string, got {json_type_name(detail)}")
    return InputImage(_string(image, "url", f"{where}.image_url"), detail)


def assistant_items(message: Mapping[str, Any], where: str) -> list[ResponseItem]:
    """An assistant message's text and refusal (a message), its reasoning (with the
    server's own fields, `MESSAGE_PROVIDER_FIELDS`), then its tool calls.

    The reasoning is placed where the request's rules anchor it back to this message:
    after its text, or before its calls when it has no text."""
    content = message.get("content")
    texts: list[str] = []
    refusals: list[str] = []
    if isinstance(content, str):
        texts.append(content)
    elif content is not None:
        for i, part in enumerate(_parts(content, f"{where}.content")):
            part_where = f"{where}.content[{i}]"
            if _part_type(part, part_where, ("text", "refusal")) == "text":
                texts.append(_string(_object(part, part_where, _TEXT_PART), "text", part_where))
            else:
                refusals.append(_string(_object(part, part_where, _REFUSAL_PART), "refusal", part_where))
    if message.get("refusal") is not None:
        refusals.append(_string(message, "refusal", where))
    calls = [tool_call(call, f"{where}.tool_calls[{i}]", i)
             for i, call in enumerate(_list(message.get("tool_calls"), f"{where}.tool_calls"))]
    parts: list[ContentItem] = [OutputText(text) for text in texts]
    parts += [Refusal(refusal) for refusal in refusals]
    # Beside calls, blank text is no message: the calls' message carries the reasoning.
    text_message = [Message("assistant", parts)] if not calls or refusals or not is_blank("".join(texts)) else []
    reasoning: list[ResponseItem] = []
    text = None if message.get("reasoning") is None else _string(message, "reasoning", where)
    fields = provider_fields(message, MESSAGE_PROVIDER_FIELDS, where)
    if text is not None or fields is not None:
        reasoning.append(Reasoning(content=[] if text is None else [ReasoningText(text)], provider_fields=fields))
    check_parsed(message.get("parsed"), "".join(texts), f"{where}.parsed")
    return [*text_message, *reasoning, *calls]


def provider_fields(data: Mapping[str, Any], keys: Iterable[str], where: str) -> dict[str, Any] | None:
    """A server's own fields among `keys` (null ones left out), to send back as they came."""
    fields = {key: data[key] for key in keys if data.get(key) is not None}
    for key, value in fields.items():
        check_json_value(value, f"{where}.{key}")
    return fields or None


def check_parsed(value: Any, text: str, where: str) -> None:
    """An SDK's parsed copy of a JSON text (a message's `parsed`, a call's
    `parsed_arguments`) must be that text's value: then nothing is lost without it."""
    if value is None:
        return
    try:
        same = json.loads(text) == value
    except ValueError:
        same = False
    if not same:
        raise InvalidInputError(where, "is not the JSON value of the text beside it, which is what is sent; "
                                "leave it out")


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInputError(where, f"expected a list or null, got {json_type_name(value)}")
    return value


# `index` is the call's place in a streamed answer (the openai SDK keeps it on the calls it
# accumulates): checked against its place in the list. A function call's fields beyond
# `TOOL_CALL_FIELDS` are the server's own (Gemini's `extra_content`): kept and sent back.
_CUSTOM_CALL_FIELDS: Final = frozenset({"id", "type", "custom", "index"})


def tool_call(call: Any, where: str, index: int) -> FunctionCall | CustomToolCall:
    """One entry of ``tool_calls`` (the `index`-th): a function call, or a custom tool's call."""
    kind = call.get("type") if isinstance(call, Mapping) else None
    if kind not in ("function", "custom"):
        raise InvalidInputError(f"{where}.type", f"expected 'function' or 'custom', got {kind!r}")
    if kind == "custom":
        call = _object(call, where, _CUSTOM_CALL_FIELDS)
    if call.get("index", index) != index:
        raise InvalidInputError(f"{where}.index", f"is {call['index']!r}, but the call is number {index} of the "
                                "list; leave it out")
    call_id = _string(call, "id", where)
    if kind == "custom":
        custom = _object(call.get("custom"), f"{where}.custom", frozenset({"name", "input"}))
        return CustomToolCall(call_id=call_id, name=_string(custom, "name", f"{where}.custom"),
                              input=_string(custom, "input", f"{where}.custom"))
    function = _object(call.get("function"), f"{where}.function", frozenset({"name", "arguments", "parsed_arguments"}))
    arguments = function.get("arguments")
    if isinstance(arguments, (Mapping, list)):
        raise InvalidInputError(f"{where}.function.arguments", "expected the arguments as JSON text, as the "
                                "server sent them (json.dumps(...)), got an object")
    arguments = _string(function, "arguments", f"{where}.function")
    check_parsed(function.get("parsed_arguments"), arguments, f"{where}.function.parsed_arguments")
    extra = provider_fields(call, (key for key in call if key not in TOOL_CALL_FIELDS), where)
    return FunctionCall(name=_string(function, "name", f"{where}.function"), arguments=arguments, call_id=call_id,
                        provider_fields=extra)


def tool_output(message: Mapping[str, Any], where: str, call_names: Mapping[str, str]) -> FunctionCallOutput:
    """A tool message: the output of the call it names (text, or text and image parts).
    Its `name`, when given, must be the name of that call (`call_names`: the calls before it)."""
    call_id = _string(message, "tool_call_id", where)
    if message.get("name") is not None:
        name = _string(message, "name", where)
        if call_names.get(call_id) != name:
            called = (f"the call {call_id!r} is to {call_names[call_id]!r}" if call_id in call_names
                      else f"no tool call before it has the id {call_id!r}")
            raise InvalidInputError(f"{where}.name", f"{name!r} does not name the function it answers: {called}")
    if "content" not in message:
        raise InvalidInputError(where, "a tool message needs its content")
    content = message["content"]
    if isinstance(content, str):
        return FunctionCallOutput.from_text(call_id, content)
    parts: list[FunctionCallOutputContentItem] = [
        _input_part(part, f"{where}.content[{i}]") for i, part in enumerate(_parts(content, f"{where}.content"))]
    return FunctionCallOutput(call_id, FunctionCallOutputPayload.from_items(parts))
