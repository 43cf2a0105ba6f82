"""The Chat Completions request body, built as llmx builds it except where llmx lost or
mismatched items (orphan calls, call ids, repeated answers, fixed `max_tokens`).

`build_chat_request` is a pure function: a `Prompt`, the request's settings and the
server's quirks in, the JSON body out. Each rule of llmx's message conversion is a
small function below, so that each can be read (and tested) on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .._jsonrules import is_blank, is_json
from ..errors import InvalidInputError
from ..models import (
    CustomToolCall,
    CustomToolCallOutput,
    FunctionCall,
    FunctionCallOutput,
    InputImage,
    InputText,
    LocalShellCall,
    Message,
    OutputText,
    Reasoning,
    ResponseItem,
)
from ..prompt import Prompt, checked_parts, format_input
from ..settings import OrphanToolCalls, Quirks, RequestOptions
from ..structured import OutputSchema, StructuredOutputMode, requested_output, response_format_body
from ..tools import FunctionTool, ToolSpec, build_chat_tools

logger = logging.getLogger("llmx_sync")


# --- reasoning anchors: reasoning rides on the assistant message or call beside it --


def _is_assistant_message(item: ResponseItem) -> bool:
    return isinstance(item, Message) and item.role == "assistant"


def last_emitted_role(items: Sequence[ResponseItem]) -> str | None:
    """The role of the last item that would become a message: a message's role,
    `assistant` for a function or local shell call, `tool` for a function output.
    Like llmx, it counts items that are later skipped (blank or repeated messages), so
    reasoning is attached where llmx attaches it."""
    role: str | None = None
    for item in items:
        if isinstance(item, Message):
            role = item.role
        elif isinstance(item, (FunctionCall, LocalShellCall)):
            role = "assistant"
        elif isinstance(item, FunctionCallOutput):
            role = "tool"
    return role


def last_user_index(items: Sequence[ResponseItem]) -> int | None:
    indices = [i for i, item in enumerate(items) if isinstance(item, Message) and item.role == "user"]
    return indices[-1] if indices else None


def reasoning_anchor(items: Sequence[ResponseItem], index: int) -> int | None:
    """Where the reasoning at `index` goes: the assistant message just before it
    (a stop turn), else the call or assistant message just after it (a tool-call
    turn), else nowhere. Custom tool calls are never anchors."""
    if index > 0 and _is_assistant_message(items[index - 1]):
        return index - 1
    if index + 1 < len(items):
        following = items[index + 1]
        if isinstance(following, (FunctionCall, LocalShellCall)) or _is_assistant_message(following):
            return index + 1
    return None


def anchored_reasoning(items: Sequence[ResponseItem]) -> Iterator[tuple[int, int | None, Reasoning]]:
    """(index, anchor, item) of each reasoning item that is sent if it has an anchor:
    only reasoning after the last user message counts, and none at all when the
    conversation ends with a user message."""
    if last_emitted_role(items) == "user":
        return
    user_index = last_user_index(items)
    for index in range(0 if user_index is None else user_index + 1, len(items)):
        item = items[index]
        if isinstance(item, Reasoning):
            yield index, reasoning_anchor(items, index), item


def anchor_reasoning(items: Sequence[ResponseItem]) -> dict[int, str]:
    """Map anchor index -> the reasoning text sent with that message (`reasoning`).

    Texts landing on one anchor are joined without a separator; blank ones and ones
    without `content` are left out.
    """
    anchors: dict[int, str] = {}
    for index, anchor, item in anchored_reasoning(items):
        if item.content is None or is_blank(item.text):
            continue
        if anchor is None:
            logger.debug("input[%d]: reasoning has no assistant message or call next to it; not sent", index)
            continue
        anchors[anchor] = anchors.get(anchor, "") + item.text
    return anchors


def anchor_provider_fields(items: Sequence[ResponseItem]) -> dict[int, dict[str, Any]]:
    """Map anchor index -> the server's own fields of the reasoning anchored there
    (`Reasoning.provider_fields`: OpenRouter's ``reasoning_details``, Gemini's
    ``extra_content``), sent on that message as they came, blank text or not."""
    anchors: dict[int, dict[str, Any]] = {}
    for _, anchor, item in anchored_reasoning(items):
        if anchor is not None and item.provider_fields:
            merge_provider_fields(anchors.setdefault(anchor, {}), item.provider_fields)
    return anchors


# The fields of a message or `tool_calls` entry that the protocol defines: a server's
# own fields never replace them.
PROTOCOL_FIELDS = frozenset({"role", "content", "refusal", "reasoning", "tool_calls", "tool_call_id", "name",
                             "id", "type", "function"})


def merge_provider_fields(target: dict[str, Any], fields: Mapping[str, Any] | None) -> dict[str, Any]:
    """Add a server's own fields to a message or a `tool_calls` entry. A field of the
    protocol is left alone; a list already there is extended (the
    ``reasoning_details`` of calls grouped in one message, in order); any other field
    keeps the value it has."""
    for key, value in (fields or {}).items():
        if key in PROTOCOL_FIELDS:
            continue
        present = target.get(key)
        if isinstance(present, list) and isinstance(value, list):
            target[key] = present + value
        else:
            target.setdefault(key, value)
    return target


# --- malformed arguments and orphan calls (calls with no output) ---------------


def malformed_calls(items: Sequence[ResponseItem]) -> set[int]:
    """Indices of function calls whose `arguments` are not JSON (serde_json's
    judgement: ``""`` and ``NaN`` are not, ``"null"`` and ``"1"`` are); they are
    not sent."""
    return {i for i, item in enumerate(items) if isinstance(item, FunctionCall) and not is_json(item.arguments)}


def skipped_outputs(items: Sequence[ResponseItem], malformed: set[int]) -> set[int]:
    """Indices of function outputs that are not sent because the most recent call
    with their call_id before them was malformed (a later valid retry with the
    same call_id makes its outputs count again)."""
    last_call_malformed: dict[str, bool] = {}
    skipped: set[int] = set()
    for index, item in enumerate(items):
        if isinstance(item, FunctionCall):
            last_call_malformed[item.call_id] = index in malformed
        elif isinstance(item, FunctionCallOutput) and last_call_malformed.get(item.call_id, False):
            skipped.add(index)
    return skipped


def unanswered_calls(items: Sequence[ResponseItem], skipped: set[int]) -> set[int]:
    """Indices of function calls that no sent function output after them answers.

    Servers reject a tool call without a result, so `"drop"` leaves these out
    (output-before-call does not count as an answer: strict servers reject that too).
    """
    answered_later: set[str] = set()
    unanswered: set[int] = set()
    for index in reversed(range(len(items))):
        item = items[index]
        if isinstance(item, FunctionCallOutput) and index not in skipped:
            answered_later.add(item.call_id)
        elif isinstance(item, FunctionCall) and item.call_id not in answered_later:
            unanswered.add(index)
    return unanswered


def truncation_index(items: Sequence[ResponseItem]) -> int | None:
    """llmx's cut-off (`"truncate"`): the first function call whose call_id has
    no function output anywhere in the input; it and everything after it is lost."""
    answered = {item.call_id for item in items if isinstance(item, FunctionCallOutput)}
    for index, item in enumerate(items):
        if isinstance(item, FunctionCall) and item.call_id not in answered:
            return index
    return None


# --- one item -> one message ------------------------------------------------------


def message_to_chat(message: Message) -> dict[str, Any] | None:
    """`{"role", "content"}`, or None for a message with neither text nor image (nor a
    refusal).

    Text segments are joined without a separator. A non-assistant message with an
    image sends content parts (blank text parts left out); an assistant message is
    always plain text, its images dropped (as in llmx: assistant
    content is a string for every server). An assistant message's refusal parts go in
    its `refusal` (Chat Completions' field for them), beside its text (``""`` when it
    has none).
    """
    text = message.text
    has_image = any(isinstance(part, InputImage) for part in message.content)
    refusal = message.refusal if message.role == "assistant" else ""
    if is_blank(text) and not has_image and not refusal:
        return None
    if message.role == "assistant" or not has_image:
        return {"role": message.role, "content": text, **({"refusal": refusal} if refusal else {})}
    parts = [image_part(part) if isinstance(part, InputImage) else {"type": "text", "text": part.text}
             for part in message.content
             if isinstance(part, InputImage) or isinstance(part, (InputText, OutputText)) and not is_blank(part.text)]
    return {"role": message.role, "content": parts}


def image_part(image: InputImage) -> dict[str, Any]:
    url: dict[str, Any] = {"url": image.image_url}
    if image.detail is not None:
        url["detail"] = image.detail
    return {"type": "image_url", "image_url": url}


def is_duplicate_assistant(message: Mapping[str, Any], previous: Mapping[str, Any] | None) -> bool:
    """An assistant message repeating the message sent just before it (an answer
    recorded twice). Only the previous *sent* message counts: the
    same answer in a later turn is kept (llmx compared with the last assistant text
    ever sent and dropped it)."""
    return (
        message.get("role") == "assistant"
        and "tool_calls" not in message
        and previous is not None
        and previous.get("role") == "assistant"
        and "tool_calls" not in previous
        and previous.get("content") == message.get("content")
        and previous.get("refusal") == message.get("refusal")
    )


def _tool_call_message(tool_call: dict[str, Any]) -> dict[str, Any]:
    # One call per message here; `append_message` groups consecutive ones.
    return {"role": "assistant", "content": None, "tool_calls": [tool_call]}


def function_call_to_chat(call: FunctionCall) -> dict[str, Any]:
    """The call's `tool_calls` entry, with the server's own fields it came with (Gemini's
    ``extra_content``) sent back unchanged."""
    entry = {"id": call.call_id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
    return _tool_call_message(merge_provider_fields(entry, call.provider_fields))


def local_shell_call_to_chat(call: LocalShellCall) -> dict[str, Any]:
    """The tool-call id is `call_id` (falling back to `id`), so that it matches the
    output's `tool_call_id` (llmx used `id`, which strict servers reject as
    a mismatch)."""
    call_id = call.call_id if call.call_id is not None else call.id
    return _tool_call_message({"id": call_id if call_id is not None else "", "type": "local_shell_call",
                               "status": call.status, "action": call.action.to_dict()})


def custom_tool_call_to_chat(call: CustomToolCall) -> dict[str, Any]:
    """The tool-call id is `call_id`, which its output carries (llmx used
    `id`, often null, so the output matched no call)."""
    return _tool_call_message({"id": call.call_id, "type": "custom",
                               "custom": {"name": call.name, "input": call.input}})


def function_output_to_chat(output: FunctionCallOutput) -> dict[str, Any]:
    """A `tool` message: content parts when the output has content items (images),
    else its text."""
    items = output.output.content_items
    content: str | list[dict[str, Any]]
    if items is None:
        content = output.output.content
    else:
        content = [image_part(item) if isinstance(item, InputImage) else {"type": "text", "text": item.text}
                   for item in items]
    return {"role": "tool", "tool_call_id": output.call_id, "content": content}


def custom_output_to_chat(output: CustomToolCallOutput) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": output.call_id, "content": output.output}


# --- the messages array ------------------------------------------------------------


def system_message(instructions: str | None) -> list[dict[str, Any]]:
    """`[{"role": "system", "content": instructions}]`, exactly as given; `[]` for None."""
    return [] if instructions is None else [{"role": "system", "content": instructions}]


def fill_tool_call_content(messages: list[dict[str, Any]], content: str | None) -> list[dict[str, Any]]:
    """Give tool-call messages `content` instead of null (`Quirks.tool_call_content`)."""
    if content is not None:
        for message in messages:
            if "tool_calls" in message and message["content"] is None:
                message["content"] = content
    return messages


def is_tool_call_message(message: Mapping[str, Any] | None) -> bool:
    return message is not None and message.get("role") == "assistant" and "tool_calls" in message


def append_message(messages: list[dict[str, Any]], message: dict[str, Any]) -> None:
    """Append `message`; a tool-call message right after another assistant message joins
    it. The calls of one turn (parallel calls) are one assistant message listing them in
    order, then their outputs: OpenAI answers 400 when an assistant message with
    `tool_calls` is not followed by the tool messages answering it, which is what one
    message per call (llmx's shape) gives for two calls. Text the model wrote before its
    calls is that message's content, as the server sent the turn (two assistant messages
    in a row break chat templates that want roles to alternate). Reasoning sent with
    them is joined in order."""
    previous = messages[-1] if messages else None
    if previous is not None and previous.get("role") == "assistant" and is_tool_call_message(message):
        previous.setdefault("tool_calls", []).extend(message["tool_calls"])
        if "reasoning" in message:
            previous["reasoning"] = previous.get("reasoning", "") + message["reasoning"]
        merge_provider_fields(previous, message)
        return
    messages.append(message)


def build_messages(items: Sequence[ResponseItem], instructions: str | None,
                   orphan_tool_calls: OrphanToolCalls = "drop") -> list[dict[str, Any]]:
    """The `messages` array for `items` (already formatted, see `format_input`)."""
    anchors = anchor_reasoning(items)
    anchored_fields = anchor_provider_fields(items)
    malformed = malformed_calls(items)
    skipped = skipped_outputs(items, malformed)
    end = len(items)
    orphans: set[int] = set()
    if orphan_tool_calls == "drop":
        orphans = unanswered_calls(items, skipped)
    elif orphan_tool_calls == "truncate":
        cutoff = truncation_index(items)
        if cutoff is not None:
            logger.debug("input[%d]: function call has no output; it and the %d items after it are not sent",
                         cutoff, len(items) - cutoff - 1)
            end = cutoff

    messages = system_message(instructions)
    for index in range(end):
        message = _item_to_chat(items[index], index, malformed, skipped, orphans)
        if message is None:
            continue
        if is_duplicate_assistant(message, messages[-1] if messages else None):
            logger.debug("input[%d]: assistant message repeats the previous one; not sent", index)
            continue
        if index in anchors:
            message["reasoning"] = anchors[index]
        merge_provider_fields(message, anchored_fields.get(index))
        append_message(messages, message)
    return messages


def _item_to_chat(item: ResponseItem, index: int, malformed: set[int], skipped: set[int],
                  orphans: set[int]) -> dict[str, Any] | None:
    """One item's message, or None (logged) when it is not sent."""
    if isinstance(item, Message):
        message = message_to_chat(item)
        if message is None:
            logger.debug("input[%d]: %s message has no text and no image; not sent", index, item.role)
        return message
    if isinstance(item, FunctionCall):
        if index in malformed:
            logger.debug("input[%d]: function call %r (call_id %r) has arguments that are not JSON; not sent",
                         index, item.name, item.call_id)
            return None
        if index in orphans:
            logger.debug("input[%d]: function call %r (call_id %r) has no output after it; not sent",
                         index, item.name, item.call_id)
            return None
        return function_call_to_chat(item)
    if isinstance(item, FunctionCallOutput):
        if index in skipped:
            logger.debug("input[%d]: output for call_id %r belongs to a call that was not sent; not sent",
                         index, item.call_id)
            return None
        return function_output_to_chat(item)
    if isinstance(item, LocalShellCall):
        return local_shell_call_to_chat(item)
    if isinstance(item, CustomToolCall):
        return custom_tool_call_to_chat(item)
    if isinstance(item, CustomToolCallOutput):
        return custom_output_to_chat(item)
    # reasoning (sent only through its anchor), web_search_call, ghost_snapshot, other
    logger.debug("input[%d]: %s item is not sent to Chat Completions", index, item.type)
    return None


# --- the body ------------------------------------------------------------------------------


TOOL_CHOICE_KEYWORDS = ("auto", "none", "required")


def tool_choice_param(choice: str | Mapping[str, Any], tools: Sequence[ToolSpec]) -> str | dict[str, Any]:
    """`tool_choice` as sent: a keyword (``auto``, ``none``, ``required``) or an object as
    given; the name of one of the prompt's function tools becomes the object that
    forces that function (OpenAI's form; llama-cpp-python forces only with it and
    ignores ``"required"``; see `force_with_required` for servers that take only a
    string). Any other string is refused before it is sent."""
    if not isinstance(choice, str):
        return dict(choice)
    if choice in TOOL_CHOICE_KEYWORDS:
        return choice
    names = [tool.name for tool in tools if isinstance(tool, FunctionTool)]
    if choice not in names:
        raise InvalidInputError("tool_choice", f"{choice!r} is neither {', '.join(TOOL_CHOICE_KEYWORDS)} nor the "
                                f"name of a function tool of the prompt (functions: {', '.join(names) or 'none'})")
    return {"type": "function", "function": {"name": choice}}


def sampling_params(options: RequestOptions, tools: Sequence[ToolSpec]) -> dict[str, Any]:
    """The sampling and tool parameters that were set (not None), in a fixed order."""
    params: dict[str, Any] = {}
    for name in ("temperature", "top_p", "tool_choice", "parallel_tool_calls", "stop", "seed"):
        value = getattr(options, name)
        if value is None:
            continue
        if name == "tool_choice":
            value = tool_choice_param(value, tools)
        params[name] = value if isinstance(value, (str, int, float, bool, dict)) else list(value)
    return params


def forced_function(tool_choice: Any) -> str | None:
    """The name of the function a `tool_choice` value forces
    (``{"type": "function", "function": {"name": …}}``), else None."""
    if not isinstance(tool_choice, Mapping) or tool_choice.get("type") != "function":
        return None
    function = tool_choice.get("function")
    name = function.get("name") if isinstance(function, Mapping) else None
    return name if isinstance(name, str) else None


def force_with_required(payload: dict[str, Any]) -> None:
    """For a server whose `tool_choice` takes only a string
    (``Quirks.forced_tool_choice="required"``; llama.cpp's llama-server ignores the
    object and answers as with ``"auto"``): the object forcing a function becomes
    ``"required"`` with that function alone in `tools`, which means the same, "call this
    function", in the words the server knows. The other tools are back in the next
    request, which does not force (a run's later turns)."""
    name = forced_function(payload.get("tool_choice"))
    if name is None:
        return
    payload["tools"] = [tool for tool in payload.get("tools", ())
                        if tool.get("type") == "function" and tool.get("function", {}).get("name") == name]
    payload["tool_choice"] = "required"


def check_one_choice(extra_body: Mapping[str, Any] | None) -> None:
    """Refuse ``n`` > 1: the stream is read as one answer (the choice with index 0), so
    the other answers would be generated, and billed, for nobody."""
    n = (extra_body or {}).get("n", 1)
    if n is not None and n != 1:
        raise InvalidInputError("extra_body.n", f"n={n!r} asks for several answers, but a stream is read as one "
                                "answer (the others would be generated and billed, then dropped); send one "
                                "request per answer instead")


def add_structured_output(payload: dict[str, Any], output: OutputSchema, mode: StructuredOutputMode) -> None:
    """Ask for `output` in `mode`. In the ``"tools"`` mode its function joins the tools;
    `tool_choice` forces it when it is the only one, and is ``"required"`` beside other
    tools (a tool loop: forcing the answer would keep the model from calling the tools
    it needs first; the answer's call then ends the loop)."""
    body = response_format_body(output, mode)
    tools = body.pop("tools", None)
    if tools is not None:
        payload["tools"] = [*payload.get("tools", ()), *tools]
        if len(payload["tools"]) > len(tools):
            body["tool_choice"] = "required"
    payload.update(body)


def build_chat_request(prompt: Prompt, options: RequestOptions, quirks: Quirks | None = None) -> dict[str, Any]:
    """The JSON body of a streaming Chat Completions request for `prompt`.

    Every setting comes from `options` (see `RequestOptions`; merge a provider's
    defaults in with `settings.merge_options`) and `quirks` (default: none). The keys
    come in the order model, messages, stream, stream_options, tools, max_tokens, then
    the sampling parameters; `extra_body` is merged in last, so its keys win over
    everything built here (e.g. a server-specific ``"top_k"``, or a replacement
    ``"stream_options"``). A `response_format` (or the prompt's `output_schema`) is
    asked for in the way `quirks.structured_output` says (``"json_schema"`` when it
    is None), and a forced function in the way `quirks.forced_tool_choice` says (the
    object when it is None). Raises `InvalidInputError`
    (a `ValueError`) naming ``model``, ``input[i]``, ``tools[i]`` or the setting for
    anything malformed.
    """
    if not isinstance(prompt, Prompt):
        raise InvalidInputError("prompt", f"expected a Prompt, got {type(prompt).__name__}")
    if not isinstance(options, RequestOptions):
        raise InvalidInputError("options", f"expected RequestOptions, got {type(options).__name__}")
    quirks = quirks if quirks is not None else Quirks()
    if options.model is None:
        raise InvalidInputError("model", "no model given: pass model=... (or set the provider's model)")
    check_one_choice(options.extra_body)

    # The prompt's attributes may have been changed since it was made: check them again.
    items, tools, instructions = checked_parts(prompt)
    items = format_input(items, tools)

    payload: dict[str, Any] = {
        "model": options.model,
        "messages": fill_tool_call_content(build_messages(items, instructions, options.orphan_tool_calls),
                                           quirks.tool_call_content),
        "stream": True,
    }
    if options.include_usage:
        payload["stream_options"] = {"include_usage": True}
    chat_tools = build_chat_tools(tools, cache_control=options.cache_control, checked=True)
    if chat_tools:
        payload["tools"] = chat_tools
    if options.max_tokens is not None:
        payload[quirks.max_tokens_param] = options.max_tokens
    payload.update(sampling_params(options, tools))
    output = requested_output(prompt.output_schema, options.response_format)
    if output is not None:
        add_structured_output(payload, output, quirks.structured_output or "json_schema")
    if quirks.forced_tool_choice == "required":
        force_with_required(payload)
    if options.extra_body:
        payload.update(options.extra_body)
    return payload
