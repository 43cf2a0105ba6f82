"""The Chat Completions request body, built as llmx builds it except where llmx lost or
mismatched items (orphan calls, call ids, repeated answers, fixed `max_tokens`).

`build_chat_request` is a pure function: a `Prompt` and settings in, the JSON body
out. Each rule of llmx's message conversion is a small function below, so
that each can be read (and tested) on its own.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

from ._rust_compat import check_json_value, is_blank, is_json
from .errors import InvalidInputError, UnsupportedOperationError
from .models import (
    CustomToolCall,
    CustomToolCallOutput,
    FunctionCall,
    FunctionCallOutput,
    InputImage,
    LocalShellCall,
    Message,
    Reasoning,
    ResponseItem,
    json_type_name,
)
from .prompt import Prompt, checked_input, checked_instructions, checked_tools, format_input
from .providers import Provider
from .tools import build_chat_tools

logger = logging.getLogger("llmx_sync")


class NotGiven(enum.Enum):
    """The type of `NOT_GIVEN`: "this argument was not passed", as opposed to
    None, which for some settings means "leave it out" (``max_tokens=None``)."""

    NOT_GIVEN = "NOT_GIVEN"

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __bool__(self) -> Literal[False]:
        return False


NOT_GIVEN: Final = NotGiven.NOT_GIVEN

OrphanToolCalls = Literal["drop", "truncate", "keep"]
ORPHAN_TOOL_CALL_POLICIES: Final = ("drop", "truncate", "keep")


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


def anchor_reasoning(items: Sequence[ResponseItem]) -> dict[int, str]:
    """Map anchor index -> the reasoning text sent with that message (`reasoning`).

    Only reasoning after the last user message counts, and none at all when the
    conversation ends with a user message. Texts landing on one anchor are joined
    without a separator; blank ones and ones without `content` are left out.
    """
    if last_emitted_role(items) == "user":
        return {}
    user_index = last_user_index(items)
    anchors: dict[int, str] = {}
    for index in range(0 if user_index is None else user_index + 1, len(items)):
        item = items[index]
        if not isinstance(item, Reasoning) or item.content is None or is_blank(item.text):
            continue
        anchor = reasoning_anchor(items, index)
        if anchor is None:
            logger.debug("input[%d]: reasoning has no assistant message or call next to it; not sent", index)
            continue
        anchors[anchor] = anchors.get(anchor, "") + item.text
    return anchors


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
    """`{"role", "content"}`, or None for a message with neither text nor image.

    Text segments are joined without a separator. A non-assistant message with an
    image sends content parts (blank text parts left out); an assistant message is
    always plain text, its images dropped (as in llmx: assistant
    content is a string for every server).
    """
    text = message.text
    has_image = any(isinstance(part, InputImage) for part in message.content)
    if is_blank(text) and not has_image:
        return None
    if message.role == "assistant" or not has_image:
        return {"role": message.role, "content": text}
    parts = [image_part(part.image_url) if isinstance(part, InputImage) else {"type": "text", "text": part.text}
             for part in message.content
             if isinstance(part, InputImage) or not is_blank(part.text)]
    return {"role": message.role, "content": parts}


def image_part(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


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
    )


def _tool_call_message(tool_call: dict[str, Any]) -> dict[str, Any]:
    # Every call is its own assistant message, as in llmx (parallel calls are
    # not merged into one `tool_calls` array).
    return {"role": "assistant", "content": None, "tool_calls": [tool_call]}


def function_call_to_chat(call: FunctionCall) -> dict[str, Any]:
    return _tool_call_message({"id": call.call_id, "type": "function",
                               "function": {"name": call.name, "arguments": call.arguments}})


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
        content = [image_part(item.image_url) if isinstance(item, InputImage) else {"type": "text", "text": item.text}
                   for item in items]
    return {"role": "tool", "tool_call_id": output.call_id, "content": content}


def custom_output_to_chat(output: CustomToolCallOutput) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": output.call_id, "content": output.output}


# --- the messages array ------------------------------------------------------------


def system_message(instructions: str | None) -> list[dict[str, Any]]:
    """`[{"role": "system", "content": instructions}]`, exactly as given; `[]` for None."""
    return [] if instructions is None else [{"role": "system", "content": instructions}]


def fill_tool_call_content(messages: list[dict[str, Any]], content: str | None) -> list[dict[str, Any]]:
    """Give tool-call messages `content` instead of null (`Provider.tool_call_content`)."""
    if content is not None:
        for message in messages:
            if "tool_calls" in message and message["content"] is None:
                message["content"] = content
    return messages


def build_messages(items: Sequence[ResponseItem], instructions: str | None,
                   orphan_tool_calls: OrphanToolCalls = "drop") -> list[dict[str, Any]]:
    """The `messages` array for `items` (already formatted, see `format_input`)."""
    anchors = anchor_reasoning(items)
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
        messages.append(message)
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


# --- settings ----------------------------------------------------------------------


def _check(ok: bool, where: str, expected: str, value: Any) -> None:
    if not ok:
        raise InvalidInputError(where, f"expected {expected}, got {json_type_name(value)} {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def optional_params(*, temperature: float | None, top_p: float | None, tool_choice: str | dict[str, Any] | None,
                    parallel_tool_calls: bool | None, stop: str | Sequence[str] | None,
                    seed: int | None) -> dict[str, Any]:
    """The sampling and tool parameters that were given (not None), checked."""
    params: dict[str, Any] = {}
    if temperature is not None:
        _check(_is_real(temperature), "temperature", "a finite number", temperature)
        params["temperature"] = temperature
    if top_p is not None:
        _check(_is_real(top_p), "top_p", "a finite number", top_p)
        params["top_p"] = top_p
    if tool_choice is not None:
        _check(isinstance(tool_choice, (str, dict)), "tool_choice",
               "'auto', 'none', 'required' or a tool-choice object", tool_choice)
        check_json_value(tool_choice, "tool_choice")
        params["tool_choice"] = tool_choice
    if parallel_tool_calls is not None:
        _check(isinstance(parallel_tool_calls, bool), "parallel_tool_calls", "True or False", parallel_tool_calls)
        params["parallel_tool_calls"] = parallel_tool_calls
    if stop is not None:
        _check(isinstance(stop, str) or (isinstance(stop, (list, tuple)) and all(isinstance(s, str) for s in stop)),
               "stop", "a string or a list of strings", stop)
        params["stop"] = stop if isinstance(stop, str) else list(stop)
    if seed is not None:
        _check(_is_int(seed), "seed", "an integer", seed)
        params["seed"] = seed
    return params


def build_chat_request(
    prompt: Prompt,
    model: str,
    provider: Provider | None = None,
    *,
    max_tokens: int | None | NotGiven = NOT_GIVEN,
    include_usage: bool | NotGiven = NOT_GIVEN,
    cache_control: bool | NotGiven = NOT_GIVEN,
    orphan_tool_calls: OrphanToolCalls = "drop",
    temperature: float | None = None,
    top_p: float | None = None,
    tool_choice: str | dict[str, Any] | None = None,
    parallel_tool_calls: bool | None = None,
    stop: str | Sequence[str] | None = None,
    seed: int | None = None,
    extra_body: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body of a streaming Chat Completions request for `prompt`.

    `max_tokens` (None leaves it out), `include_usage` (asks for a final usage
    chunk via `stream_options`) and `cache_control` (a cache breakpoint on the last
    tool) default to the provider's settings, or `Provider`'s defaults without one.
    `orphan_tool_calls` says what happens to a function call with no output after
    it: `"drop"` leaves out that call (and the reasoning sent with it), `"truncate"`
    leaves out everything from it on (as llmx did), `"keep"` sends it anyway.
    The other keyword arguments are sent when not None. `extra_body` is merged in
    last, so its keys win over everything built here (e.g. a server-specific
    `"top_k"`, or a replacement `"stream_options"`).

    The keys come in the order model, messages, stream, stream_options, tools,
    max_tokens, then the rest. Raises `UnsupportedOperationError` when the prompt
    has an `output_schema`, and `InvalidInputError` (a `ValueError`) naming the
    argument or ``input[i]``/``tools[i]`` for anything malformed.
    """
    if not isinstance(prompt, Prompt):
        raise InvalidInputError("prompt", f"expected a Prompt, got {type(prompt).__name__}")
    if prompt.output_schema is not None:
        raise UnsupportedOperationError("output_schema is not supported for Chat Completions API")
    _check(isinstance(model, str), "model", "a string", model)
    _check(provider is None or isinstance(provider, Provider), "provider", "a Provider or None", provider)
    _check(orphan_tool_calls in ORPHAN_TOOL_CALL_POLICIES, "orphan_tool_calls", "'drop', 'truncate' or 'keep'",
           orphan_tool_calls)
    defaults = provider if provider is not None else Provider(name="default")
    if max_tokens is NOT_GIVEN:
        max_tokens = defaults.max_tokens
    if include_usage is NOT_GIVEN:
        include_usage = defaults.include_usage
    if cache_control is NOT_GIVEN:
        cache_control = defaults.cache_control
    _check(max_tokens is None or (_is_int(max_tokens) and max_tokens >= 0), "max_tokens",
           "a non-negative integer or None", max_tokens)
    _check(isinstance(include_usage, bool), "include_usage", "True or False", include_usage)
    _check(isinstance(cache_control, bool), "cache_control", "True or False", cache_control)
    extras = optional_params(temperature=temperature, top_p=top_p, tool_choice=tool_choice,
                             parallel_tool_calls=parallel_tool_calls, stop=stop, seed=seed)
    if extra_body is not None:
        _check(isinstance(extra_body, Mapping), "extra_body", "a dict", extra_body)
        check_json_value(dict(extra_body), "extra_body")

    # The prompt's attributes may have been changed since it was made: check them again.
    instructions = checked_instructions(prompt.instructions)
    tools = checked_tools(prompt.tools)
    items = format_input(checked_input(prompt.input), tools)

    payload: dict[str, Any] = {
        "model": model,
        "messages": fill_tool_call_content(build_messages(items, instructions, orphan_tool_calls),
                                           defaults.tool_call_content),
        "stream": True,
    }
    if include_usage:
        payload["stream_options"] = {"include_usage": True}
    chat_tools = build_chat_tools(tools, cache_control=cache_control)
    if chat_tools:
        payload["tools"] = chat_tools
    if max_tokens is not None:
        payload["max_tokens"] = max_tokens
    payload.update(extras)
    if extra_body:
        payload.update(extra_body)
    return payload
