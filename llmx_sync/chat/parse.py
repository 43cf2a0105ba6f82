"""Chat Completions stream chunks -> typed events. Pure: no I/O, no threads, no clock but `now`.

`ChatSSEParser` frames the body with `sse.SSEDecoder` and turns each ``data:`` chunk
into `Event`s in llmx's order, without llmx's lost tool calls, usage and items (see
docs/behaviour.md); `parse_chat_sse` is the generator form.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from .._jsonrules import loads_chunk, rust_trim
from ..errors import InStreamError, LlmxError, StreamError
from ..events import (
    Completed,
    Event,
    FunctionCallArgumentsDelta,
    OutputItemAdded,
    OutputItemDone,
    OutputTextDelta,
    RateLimits,
    ReasoningContentDelta,
    TokenUsage,
)
from ..models import FunctionCall, Message, OutputText, Reasoning, ReasoningText
from ..ratelimits import rate_limit_snapshot
from ..sse import DEFAULT_MAX_EVENT_BYTES, ServerSentEvent, SSEDecoder

__all__ = ["EMPTY_BODY_MESSAGE", "TRUNCATED_MESSAGE", "ChatJSONParser", "ChatSSEParser", "completion_as_chunk", "is_json_body",
           "parse_chat_sse"]

logger = logging.getLogger(__name__)

EMPTY_BODY_MESSAGE = "the server closed the stream without sending any event"
TRUNCATED_MESSAGE = "the stream ended before the answer was complete (no finish_reason and no [DONE])"

# --- chunk fields ---------------------------------------------------------------------------

_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1

def _as_i64(value: Any) -> int | None:
    """serde_json's `as_i64`: integers only (no floats, no booleans), within i64."""
    if type(value) is int and _I64_MIN <= value <= _I64_MAX:
        return value
    return None


def _nested_i64(parent: Mapping[str, Any], key: str, field: str) -> int:
    child = parent.get(key)
    value = _as_i64(child.get(field)) if isinstance(child, dict) else None
    return 0 if value is None else value


def token_usage_from_chunk(usage: Any) -> TokenUsage | None:
    """A chunk's `usage` object (as `TokenUsage`), or None unless its three totals are integers."""
    if not isinstance(usage, dict):
        return None
    prompt = _as_i64(usage.get("prompt_tokens"))
    completion = _as_i64(usage.get("completion_tokens"))
    total = _as_i64(usage.get("total_tokens"))
    if prompt is None or completion is None or total is None:
        return None
    return TokenUsage(
        input_tokens=prompt,
        cached_input_tokens=_nested_i64(usage, "prompt_tokens_details", "cached_tokens"),
        output_tokens=completion,
        reasoning_output_tokens=_nested_i64(usage, "completion_tokens_details", "reasoning_tokens"),
        total_tokens=total,
    )


def in_stream_error(error: Any) -> InStreamError:
    """An `error` value sent inside a 200 stream: an object, or a plain string message."""
    if isinstance(error, str):
        return InStreamError(error or "Unknown error")
    if not isinstance(error, dict):
        return InStreamError("Unknown error")
    message = error.get("message")
    kind = error.get("type")
    return InStreamError(
        message if isinstance(message, str) and message else "Unknown error",
        type=kind if isinstance(kind, str) else None,
        code=error.get("code"),
        param=error.get("param"),
    )


def _delta_reasoning(delta: Mapping[str, Any]) -> str | None:
    """`delta.reasoning` (a string, or an object's non-empty `text`, else `content`),
    else `delta.reasoning_content`."""
    value = delta.get("reasoning")
    if isinstance(value, dict):
        text = value.get("text")
        value = text if isinstance(text, str) and text else value.get("content")
    if isinstance(value, str) and value:
        return value
    value = delta.get("reasoning_content")
    return value if isinstance(value, str) and value else None


def _message_reasoning(value: Any) -> str | None:
    """`message.reasoning` as llmx reads it: an object's `text` wins when it is a
    string, even an empty one."""
    if isinstance(value, dict):
        text = value.get("text")
        value = text if isinstance(text, str) else value.get("content")
    return value if isinstance(value, str) and value else None


def _present_str(value: Any) -> str | None:
    """A string value; `""` counts as absent (servers send empty ids and names)."""
    return value if isinstance(value, str) and value else None


class _ToolCallState:
    """One tool call being received: its id and name (each keeps its first value:
    some servers repeat them in every delta) and its argument pieces, of which the
    first `sent` went out as `FunctionCallArgumentsDelta` events."""

    __slots__ = ("call_id", "name", "arguments", "sent")

    def __init__(self) -> None:
        self.call_id: str | None = None
        self.name: str | None = None
        self.arguments: list[str] = []
        self.sent = 0

    def add(self, delta: Mapping[str, Any], call_id: str | None, out: list[Event]) -> None:
        if self.call_id is None:
            self.call_id = call_id
        function = delta.get("function")
        if isinstance(function, dict):
            if self.name is None:
                self.name = _present_str(function.get("name"))
            arguments = function.get("arguments")
            if isinstance(arguments, str) and arguments:
                self.arguments.append(arguments)
        if self.call_id is not None and self.name is not None:
            self.send_arguments(out)

    def send_arguments(self, out: list[Event]) -> None:
        """The argument text not sent yet, as one `FunctionCallArgumentsDelta`."""
        if self.sent < len(self.arguments):
            pending = self.arguments[self.sent:]
            self.sent = len(self.arguments)
            out.append(FunctionCallArgumentsDelta(self.call_id or "", self.name or "", "".join(pending)))

    def item(self) -> FunctionCall:
        return FunctionCall(name=self.name or "", arguments="".join(self.arguments), call_id=self.call_id or "")


def _new_id(call: _ToolCallState, call_id: str | None) -> bool:
    return call_id is not None and call.call_id is not None and call_id != call.call_id


def _is_first_choice(choice: Any) -> bool:
    """The choice with index 0 (a missing index counts as 0): with `n` > 1 a server
    interleaves the chunks of several answers, and only the first is read."""
    if not isinstance(choice, dict):
        return False
    index = choice.get("index")
    return index is None or (type(index) is int and index == 0)


# --- the chat parser ------------------------------------------------------------------------


class ChatSSEParser:
    """Chat Completions SSE bytes -> events (llmx's order; every end of a turn flushes
    the pending items).

    `feed` and `finish` return the events produced so far. When the stream fails, `error`
    is set (the events before the failure were returned by that same call) and later calls
    return ``[]``. `done` is true once `Completed` was produced or `error` set; the bytes
    that follow are ignored.
    """

    __slots__ = ("error", "done", "_decoder", "_rate_limits", "_saw_event", "_response_id", "_token_usage",
                 "_finish_reason", "_text", "_reasoning", "_calls", "_calls_by_index", "_current_call")

    def __init__(self, *, headers: Mapping[str, str] | None = None, now: Callable[[], float] = time.time,
                 max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.error: LlmxError | None = None
        self.done = False
        self._decoder = SSEDecoder(max_event_bytes=max_event_bytes)
        snapshot = rate_limit_snapshot(headers, now) if headers else None
        self._rate_limits = None if snapshot is None else RateLimits(snapshot)  # emitted first, once
        self._saw_event = False
        self._response_id = ""
        self._token_usage: TokenUsage | None = None
        self._finish_reason: str | None = None  # set: only usage, errors and [DONE] still count
        self._text: list[str] | None = None  # the pending assistant message's deltas
        self._reasoning: list[str] | None = None  # the pending reasoning item's deltas
        self._calls: list[_ToolCallState] = []  # in order of first appearance
        self._calls_by_index: dict[int, _ToolCallState] = {}
        self._current_call: _ToolCallState | None = None

    def feed(self, data: bytes) -> list[Event]:
        if self.done:
            return []
        out = self._start()
        self._on_events(self._decoder.feed(data), out)
        if self._decoder.error is not None and not self.done:
            self._fail(self._decoder.error)
        return out

    def feed_chunk(self, chunk: Any) -> list[Event]:
        """One chunk already decoded from JSON (as if it came as an SSE event)."""
        if self.done:
            return []
        out = self._start()
        self._saw_event = True
        if isinstance(chunk, dict):
            self._on_chunk(chunk, out)
        return out

    def finish(self) -> list[Event]:
        """The body ended: complete the answer when it had ended (a `finish_reason`; the
        ``[DONE]`` that ends a stream was handled as it came), else fail. A body that
        stops before either is a broken answer however cleanly it stops (a proxy that
        ends a failed upstream stream with a proper last chunk): `StreamError`, never
        a `completed` that would pass a cut answer off as whole."""
        if self.done:
            return []
        out = self._start()
        try:
            self._on_events(self._decoder.finish(), out)
        except StreamError as exc:
            self._fail(exc)
        if not self.done:
            if not self._saw_event:
                self._fail(StreamError(EMPTY_BODY_MESSAGE))
            elif self._finish_reason is None:
                self._fail(StreamError(TRUNCATED_MESSAGE))
            else:
                self._complete(out)
        return out

    def end_of_answer(self) -> list[Event]:
        """The whole answer was read (a JSON body): flush and complete, finish reason or not."""
        if self.done:
            return []
        out = self._start()
        self._complete(out)
        return out

    def _start(self) -> list[Event]:
        if self._rate_limits is None:
            return []
        out: list[Event] = [self._rate_limits]
        self._rate_limits = None
        return out

    def _fail(self, error: LlmxError) -> None:
        self.error = error
        self.done = True

    def _on_events(self, events: list[ServerSentEvent], out: list[Event]) -> None:
        for event in events:
            self._saw_event = True
            data = event.data
            if rust_trim(data) == "[DONE]":
                self._complete(out)
            else:
                try:
                    chunk = loads_chunk(data)
                except (ValueError, RecursionError) as exc:
                    logger.debug("skipping SSE data that is not JSON (%s): %.200r", exc, data)
                    continue
                if isinstance(chunk, dict):
                    self._on_chunk(chunk, out)
            if self.done:
                return

    def _on_chunk(self, chunk: dict[str, Any], out: list[Event]) -> None:
        if not self._response_id:
            response_id = chunk.get("id")
            if isinstance(response_id, str):
                self._response_id = response_id
        usage = chunk.get("usage")
        if usage is not None:
            token_usage = token_usage_from_chunk(usage)
            if token_usage is not None:  # a later usage replaces an earlier one
                self._token_usage = token_usage
        error = chunk.get("error")
        if error is not None:
            self._fail(in_stream_error(error))
            return
        if self._finish_reason is not None:
            return
        choices = chunk.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if _is_first_choice(choice):
                    self._on_choice(choice, out)
                    break

    def _on_choice(self, choice: dict[str, Any], out: list[Event]) -> None:
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            delta = {}
        content = delta.get("content")
        if content and isinstance(content, str):
            self._add_text(content, out)
        reasoning = _delta_reasoning(delta) if delta else None
        if reasoning:
            self._add_reasoning(reasoning, out)
        message = choice.get("message")
        if isinstance(message, dict):
            reasoning = _message_reasoning(message.get("reasoning"))
            if reasoning:
                self._add_reasoning(reasoning, out)
        tool_calls = delta.get("tool_calls")
        if tool_calls and isinstance(tool_calls, list):
            for tool_call in tool_calls:
                if isinstance(tool_call, dict):
                    self._add_tool_call(tool_call, out)
        finish_reason = choice.get("finish_reason")
        if finish_reason and isinstance(finish_reason, str):
            self._finish_reason = finish_reason
            self._flush_items(out)  # `completed` waits for [DONE] or the end (trailing usage)

    def _add_text(self, text: str, out: list[Event]) -> None:
        if self._text is None:
            self._text = []
            out.append(OutputItemAdded(Message(role="assistant", content=[])))
        self._text.append(text)
        out.append(OutputTextDelta(text))

    def _add_reasoning(self, text: str, out: list[Event]) -> None:
        if self._reasoning is None:
            self._reasoning = []
            out.append(OutputItemAdded(Reasoning(content=[])))
        self._reasoning.append(text)
        out.append(ReasoningContentDelta(text))

    def _add_tool_call(self, delta: dict[str, Any], out: list[Event]) -> None:
        """Calls are told apart by `index`; a new, different `id` starts a new call even
        at the same index (Ollama sends every call at index 0, each with its own id)."""
        call_id = _present_str(delta.get("id"))
        index = delta.get("index")
        if type(index) is int:
            call = self._calls_by_index.get(index)
            if call is None or _new_id(call, call_id):
                call = self._calls_by_index[index] = self._new_call()
        else:
            call = self._current_call
            if call is None or _new_id(call, call_id):
                call = self._new_call()
        call.add(delta, call_id, out)
        self._current_call = call

    def _new_call(self) -> _ToolCallState:
        call = _ToolCallState()
        self._calls.append(call)
        return call

    def _flush_items(self, out: list[Event]) -> None:
        """Emit the pending items: reasoning, then the message, then the tool calls."""
        if self._reasoning is not None:
            out.append(OutputItemDone(Reasoning(content=[ReasoningText(t) for t in self._reasoning])))
            self._reasoning = None
        if self._text is not None:
            out.append(OutputItemDone(Message(role="assistant", content=[OutputText(t) for t in self._text])))
            self._text = None
        for call in self._calls:
            call.send_arguments(out)  # a call whose id or name never came
            out.append(OutputItemDone(call.item()))
        self._calls = []
        self._calls_by_index = {}
        self._current_call = None

    def _complete(self, out: list[Event]) -> None:
        self._flush_items(out)
        out.append(Completed(self._response_id, self._token_usage, self._finish_reason))
        self.done = True


# --- a whole chat.completion ----------------------------------------------------------------

def is_json_body(headers: Mapping[str, str]) -> bool:
    """Whether the response's ``Content-Type`` is JSON (``application/json``, ``…+json``)."""
    content_type = next((value for name, value in headers.items() if name.lower() == "content-type"), "")
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def completion_as_chunk(completion: dict[str, Any]) -> dict[str, Any]:
    """A ``chat.completion`` object as the one chunk that would stream the same answer:
    each choice's `message` becomes its `delta`, and its tool calls get their `index`."""
    choices = []
    for choice in completion.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        delta = dict(message) if isinstance(message, dict) else {}
        tool_calls = delta.get("tool_calls")
        if isinstance(tool_calls, list):
            delta["tool_calls"] = [{"index": i, **call} if isinstance(call, dict) else call
                                   for i, call in enumerate(tool_calls)]
        choices.append({"index": choice.get("index"), "delta": delta, "finish_reason": choice.get("finish_reason")})
    return {**completion, "choices": choices}


class ChatJSONParser:
    """A ``chat.completion`` JSON body -> the events a stream of the same answer gives
    (message, reasoning, tool calls, `completed` with usage and finish reason).

    For servers that ignore ``stream: true`` and answer with one JSON object; a JSON
    error object in a 200 body becomes `InStreamError`, as in a stream.
    """

    __slots__ = ("_chat", "_body", "_size", "_max_bytes")

    def __init__(self, *, headers: Mapping[str, str] | None = None, now: Callable[[], float] = time.time,
                 max_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._chat = ChatSSEParser(headers=headers, now=now)
        self._body: list[bytes] = []
        self._size = 0
        self._max_bytes = max_bytes

    @property
    def done(self) -> bool:
        return self._chat.done

    @property
    def error(self) -> LlmxError | None:
        return self._chat.error

    def feed(self, data: bytes) -> list[Event]:
        if self._chat.done:
            return []
        self._size += len(data)
        if self._size > self._max_bytes:
            self._chat._fail(StreamError(f"the JSON answer is larger than max_event_bytes={self._max_bytes}"))
            self._body = []
            return []
        self._body.append(data)
        return []

    def finish(self) -> list[Event]:
        if self._chat.done:
            return []
        body = b"".join(self._body)
        self._body = []
        try:
            value = loads_chunk(body.decode())
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            self._chat._fail(StreamError(f"the answer is not valid JSON ({exc}): {body[:200]!r}"))
            return []
        if not isinstance(value, dict):
            self._chat._fail(StreamError(f"the answer is JSON but not a chat.completion object: {body[:200]!r}"))
            return []
        out = self._chat.feed_chunk(completion_as_chunk(value))
        return out + self._chat.end_of_answer()


def parse_chat_sse(
    chunks: Iterable[bytes],
    *,
    headers: Mapping[str, str] | None = None,
    now: Callable[[], float] = time.time,
) -> Iterator[Event]:
    """The events of a Chat Completions SSE body given as byte chunks.

    Raises the stream's error (`StreamError`, `InStreamError`) after the events before it.
    Stops pulling chunks once the turn is complete, as llmx stops reading at [DONE].
    """
    parser = ChatSSEParser(headers=headers, now=now)
    for chunk in chunks:
        yield from parser.feed(chunk)
        if parser.done:
            break
    else:
        yield from parser.finish()
    if parser.error is not None:
        raise parser.error
