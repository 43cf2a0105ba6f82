"""Chat Completions stream chunks -> typed events. Pure: no I/O, no threads, no clock but `now`.

`ChatSSEParser` frames the body with `sse.SSEDecoder` and turns each ``data:`` chunk
into `Event`s in llmx's order, without llmx's lost tool calls, usage and items (see
docs/behaviour.md), and with what real servers send beyond the protocol's letter
(refusals, content parts, error shapes, provider fields; see docs/compatibility.md);
`parse_chat_sse` is the generator form. `ChatJSONParser` reads a whole
``chat.completion`` answer, or an SSE body labelled as JSON.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final

from .._jsonrules import loads_chunk, rust_trim
from .._pieces import TextPieces
from ..errors import InStreamError, LlmxError, StreamError, shorten
from ..events import (
    Completed,
    Event,
    FunctionCallArgumentsDelta,
    OutputItemAdded,
    OutputItemDone,
    OutputTextDelta,
    RateLimits,
    ReasoningContentDelta,
    RefusalDelta,
    TokenUsage,
)
from ..models import (
    MESSAGE_PROVIDER_FIELDS,
    TOOL_CALL_FIELDS,
    ContentItem,
    FunctionCall,
    Message,
    Other,
    OutputText,
    Reasoning,
    ReasoningText,
    Refusal,
    ResponseItem,
)
from ..ratelimits import rate_limit_snapshot
from ..sse import DEFAULT_MAX_EVENT_BYTES, ServerSentEvent, SSEDecoder

__all__ = ["EMPTY_BODY_MESSAGE", "MESSAGE_PROVIDER_FIELDS", "TRUNCATED_MESSAGE", "ChatJSONParser", "ChatSSEParser",
           "completion_as_chunk", "is_json_body", "parse_chat_sse"]

EMPTY_BODY_MESSAGE = "the server closed the stream without sending any event"
TRUNCATED_MESSAGE = "the stream ended before the answer was complete (no finish_reason and no [DONE])"
# How much of a data line that is not JSON an error quotes.
QUOTED_DATA_CHARS: Final = 200


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


def error_event_error(data: str) -> InStreamError:
    """The error of an SSE event of type ``error`` (``event: error``, or llama.cpp's
    ``error:`` line): a JSON ``{"error": ...}`` or error object, else the text itself."""
    try:
        value = loads_chunk(data)
    except (ValueError, RecursionError):
        return InStreamError(data.strip() or "Unknown error")
    if isinstance(value, dict) and "error" in value:
        return in_stream_error(value["error"])
    return in_stream_error(value)


def not_json_error(data: str, reason: str) -> StreamError:
    return StreamError(f"the server sent an event whose data is {reason}: "
                       f"{shorten(data, QUOTED_DATA_CHARS)!r}")


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


def _part_text(part: Mapping[str, Any], key: str) -> str:
    value = part.get(key)
    return value if isinstance(value, str) else ""


def thinking_text(value: Any) -> str:
    """The text of a thinking part's ``thinking``: a string, or (Mistral) a list of
    ``{"type": "text", "text": ...}`` chunks."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(_part_text(chunk, "text") for chunk in value if isinstance(chunk, dict))
    return ""


def merge_reasoning_details(details: list[Any], pieces: list[Any]) -> None:
    """Add the ``reasoning_details`` entries of one delta to those received so far.

    An entry with the ``type`` and ``index`` of an earlier one continues it (OpenRouter
    streams a detail in pieces): its ``text``, ``summary`` and ``data`` are appended, its
    other fields (a ``signature`` that comes last) set when not null. Other entries are
    new, in the order they came (a piece that is not an object as it is)."""
    for piece in pieces:
        index = piece.get("index") if isinstance(piece, dict) else None
        earlier = None
        if type(index) is int:
            earlier = next((d for d in details if isinstance(d, dict) and d.get("index") == index
                            and d.get("type") == piece.get("type")), None)
        if earlier is None:
            details.append(dict(piece) if isinstance(piece, dict) else piece)
            continue
        for key, value in piece.items():
            if key in ("text", "summary", "data") and isinstance(value, str) and isinstance(earlier.get(key), str):
                earlier[key] += value
            elif value is not None:
                earlier[key] = value


class _ToolCallState:
    """One tool call being received: its id and name (each keeps its first value:
    some servers repeat them in every delta) and its argument pieces, of which the
    first `sent` went out as `FunctionCallArgumentsDelta` events."""

    __slots__ = ("call_id", "name", "arguments", "sent", "provider_fields")

    def __init__(self) -> None:
        self.call_id: str | None = None
        self.name: str | None = None
        self.arguments: list[str] = []
        self.sent = 0
        self.provider_fields: dict[str, Any] | None = None  # the server's own fields, each as first sent

    def add(self, delta: Mapping[str, Any], call_id: str | None, name: str | None, out: list[Event]) -> None:
        if self.call_id is None:
            self.call_id = call_id
        if self.name is None:
            self.name = name
        function = delta.get("function")
        if isinstance(function, dict):
            arguments = function.get("arguments")
            if isinstance(arguments, str) and arguments:
                self.arguments.append(arguments)
        if len(delta) > 2 or "function" not in delta:  # most fragments are {index, function}
            for key, value in delta.items():
                if key not in TOOL_CALL_FIELDS and value is not None:
                    self.provider_fields = self.provider_fields or {}
                    self.provider_fields.setdefault(key, value)
        if self.call_id is not None and self.name is not None:
            self.send_arguments(out)

    def send_arguments(self, out: list[Event]) -> None:
        """The argument text not sent yet, as one `FunctionCallArgumentsDelta`."""
        if self.sent < len(self.arguments):
            pending = self.arguments[self.sent:]
            self.sent = len(self.arguments)
            out.append(FunctionCallArgumentsDelta(self.call_id or "", self.name or "", "".join(pending)))

    def item(self) -> FunctionCall:
        return FunctionCall(name=self.name or "", arguments="".join(self.arguments), call_id=self.call_id or "",
                            provider_fields=self.provider_fields)


def _starts_a_call(call: _ToolCallState, call_id: str | None, name: str | None) -> bool:
    """A fragment with a function name and an id other than the call's own starts a new
    call (Ollama sends every call at index 0, each with its id and name); an id alone
    that changes is the same call's id drifting (some proxies)."""
    return name is not None and call_id is not None and call.call_id is not None and call_id != call.call_id


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
                 "_finish_reason", "_text", "_refusal", "_parts", "_reasoning", "_reasoning_fields", "_calls",
                 "_calls_by_index", "_current_call")

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
        self._text: TextPieces | None = None  # the pending assistant message's deltas (None: no message yet)
        self._refusal: list[str] = []  # its refusal deltas
        self._parts: list[ResponseItem] = []  # content parts this SDK has no item for, kept as `Other`
        self._reasoning: TextPieces | None = None  # the pending reasoning item's deltas
        self._reasoning_fields: dict[str, Any] | None = None  # its MESSAGE_PROVIDER_FIELDS
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
        if self._text is not None:  # once per read: runs of tiny deltas become one string each
            self._text.compact()
        if self._reasoning is not None:
            self._reasoning.compact()
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
        self._on_events(self._decoder.finish(), out)
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
            if event.event == "error":  # `event: error`, or llama.cpp's `error:` line
                self._fail(error_event_error(data))
                return
            if data.startswith("{"):  # a chunk: the common case, first
                try:
                    chunk = loads_chunk(data)
                except (ValueError, RecursionError) as exc:
                    self._fail(not_json_error(data, f"not valid JSON ({exc})"))
                    return
                self._on_chunk(chunk, out)
            else:
                trimmed = rust_trim(data)
                if trimmed == "[DONE]":
                    self._complete(out)
                elif trimmed:  # blank data is a keep-alive of sorts: nothing to read
                    self._on_other_data(data, out)
            if self.done:
                return

    def _on_other_data(self, data: str, out: list[Event]) -> None:
        """Data that does not start with ``{``: JSON with white space before it, or not a chunk."""
        try:
            chunk = loads_chunk(data)
        except (ValueError, RecursionError) as exc:
            self._fail(not_json_error(data, f"not valid JSON ({exc})"))
            return
        if not isinstance(chunk, dict):
            self._fail(not_json_error(data, "JSON but not a chunk object"))
            return
        self._on_chunk(chunk, out)

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
        choices = chunk.get("choices")
        if choices is None and chunk.get("object") == "error":  # vLLM's flat error object
            self._fail(in_stream_error(chunk))
            return
        if self._finish_reason is not None:
            return
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
        if content:
            if isinstance(content, str):
                self._add_text(content, out)
            elif isinstance(content, list):
                self._add_content_parts(content, out)
        if content is None or len(delta) > 1 or "message" in choice:  # more than text (most chunks are text only)
            self._on_delta_fields(delta, choice.get("message"), out)
        finish_reason = choice.get("finish_reason")
        if finish_reason and isinstance(finish_reason, str):
            if finish_reason == "error":  # OpenRouter's normalised reason for a failed answer
                self._fail(InStreamError("the server ended the answer with finish_reason 'error'"))
                return
            self._finish_reason = finish_reason
            self._flush_items(out)  # `completed` waits for [DONE] or the end (trailing usage)

    def _on_delta_fields(self, delta: dict[str, Any], message: Any, out: list[Event]) -> None:
        """What a delta holds beside its text: a refusal, reasoning (also a whole
        message's), the server's own fields, tool calls (in that order)."""
        refusal = delta.get("refusal")
        if refusal and isinstance(refusal, str):
            self._add_refusal(refusal, out)
        reasoning = _delta_reasoning(delta)
        if reasoning:
            self._add_reasoning(reasoning, out)
        if isinstance(message, dict):
            reasoning = _message_reasoning(message.get("reasoning"))
            if reasoning:
                self._add_reasoning(reasoning, out)
        self._add_reasoning_fields(delta, out)
        tool_calls = delta.get("tool_calls")
        if tool_calls and isinstance(tool_calls, list):
            for tool_call in tool_calls:
                if isinstance(tool_call, dict):
                    self._add_tool_call(tool_call, out)

    def _add_text(self, text: str, out: list[Event]) -> None:
        pending = self._text
        if pending is None:
            pending = self._open_message(out)
        pending.append(text)
        out.append(OutputTextDelta(text))

    def _add_refusal(self, text: str, out: list[Event]) -> None:
        self._open_message(out)
        self._refusal.append(text)
        out.append(RefusalDelta(text))

    def _open_message(self, out: list[Event]) -> TextPieces:
        if self._text is None:
            self._text = TextPieces()
            out.append(OutputItemAdded(Message(role="assistant", content=[])))
        return self._text

    def _add_content_parts(self, parts: list[Any], out: list[Event]) -> None:
        """`delta.content` as a list of typed parts (Mistral's reasoning models): text
        parts are text, thinking and reasoning parts reasoning, refusal parts refusal;
        any other part is kept whole, as an `Other` item after the message."""
        for part in parts:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" or kind == "output_text":
                text = _part_text(part, "text")
                if text:
                    self._add_text(text, out)
            elif kind == "thinking" or kind == "reasoning":
                text = thinking_text(part.get(kind)) or _part_text(part, "text")
                if text:
                    self._add_reasoning(text, out)
            elif kind == "refusal":
                text = _part_text(part, "refusal")
                if text:
                    self._add_refusal(text, out)
            elif isinstance(part, str):
                if part:
                    self._add_text(part, out)
            elif part is not None:
                self._parts.append(Other({"type": "content_part", "part": part}))

    def _add_reasoning(self, text: str, out: list[Event]) -> None:
        self._open_reasoning(out).append(text)
        out.append(ReasoningContentDelta(text))

    def _open_reasoning(self, out: list[Event]) -> TextPieces:
        if self._reasoning is None:
            self._reasoning = TextPieces()
            out.append(OutputItemAdded(Reasoning(content=[])))
        return self._reasoning

    def _add_reasoning_fields(self, delta: dict[str, Any], out: list[Event]) -> None:
        for key in MESSAGE_PROVIDER_FIELDS:
            value = delta.get(key)
            if value is None:
                continue
            self._open_reasoning(out)
            fields = self._reasoning_fields = self._reasoning_fields or {}
            if key == "reasoning_details" and isinstance(value, list):
                merge_reasoning_details(fields.setdefault(key, []), value)
            else:
                fields.setdefault(key, value)

    def _add_tool_call(self, delta: dict[str, Any], out: list[Event]) -> None:
        """Calls are told apart by `index`. A fragment with a new `id` and a function name
        starts a new call even at the same index (Ollama sends every call at index 0);
        a fragment without `index` belongs to the call with its `id`, else to the current
        call."""
        call_id = _present_str(delta.get("id"))
        function = delta.get("function")
        name = _present_str(function.get("name")) if isinstance(function, dict) else None
        index = delta.get("index")
        if type(index) is int:
            call = self._calls_by_index.get(index)
            if call is None or _starts_a_call(call, call_id, name):
                call = self._calls_by_index[index] = self._new_call()
        else:
            call = next((c for c in self._calls if c.call_id == call_id), None) if call_id else None
            call = call or self._current_call
            if call is None or _starts_a_call(call, call_id, name):
                call = self._new_call()
        call.add(delta, call_id, name, out)
        self._current_call = call

    def _new_call(self) -> _ToolCallState:
        call = _ToolCallState()
        self._calls.append(call)
        return call

    def _flush_items(self, out: list[Event]) -> None:
        """Emit the pending items: reasoning, then the message and the parts kept beside
        it, then the tool calls."""
        if self._reasoning is not None:
            out.append(OutputItemDone(Reasoning(content=[ReasoningText(t) for t in self._reasoning],
                                                provider_fields=self._reasoning_fields)))
            self._reasoning = None
            self._reasoning_fields = None
        if self._text is not None:
            content: list[ContentItem] = [OutputText(t) for t in self._text]
            content += [Refusal(t) for t in self._refusal]
            out.append(OutputItemDone(Message(role="assistant", content=content)))
            self._text = None
            self._refusal = []
        out.extend(OutputItemDone(part) for part in self._parts)
        self._parts = []
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


# The first bytes of an SSE body: the fields a server starts one with, and a comment.
_SSE_STARTS: Final = (b"data:", b"event:", b"id:", b"retry:", b":")
_BLANK_START: Final = b" \t\r\n\xef\xbb\xbf"  # white space, and a BOM's bytes


def looks_like_sse(start: bytes | bytearray) -> bool | None:
    """Whether a body whose first bytes are `start` is SSE (its first non-blank bytes
    an SSE field or a comment), or None when those bytes do not tell yet."""
    head = bytes(start[:64]).lstrip(_BLANK_START)
    if any(head.startswith(prefix) for prefix in _SSE_STARTS):
        return True
    if not head or any(prefix.startswith(head) for prefix in _SSE_STARTS):
        return None
    return False


class ChatJSONParser:
    """A ``chat.completion`` JSON body -> the events a stream of the same answer gives
    (message, reasoning, tool calls, `completed` with usage and finish reason).

    For servers that ignore ``stream: true`` and answer with one JSON object; a JSON
    error object in a 200 body becomes `InStreamError`, as in a stream. A body labelled
    JSON whose first non-blank bytes are an SSE field (some vLLM deployments and proxies)
    is read as the SSE stream it is, as it arrives.

    The body is kept in one growing buffer and let go as soon as it is decoded, so a
    large answer costs about twice its size while it is parsed, not more.
    """

    __slots__ = ("_chat", "_body", "_max_bytes", "_sse")

    def __init__(self, *, headers: Mapping[str, str] | None = None, now: Callable[[], float] = time.time,
                 max_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._chat = ChatSSEParser(headers=headers, now=now, max_event_bytes=max_bytes)
        self._body = bytearray()
        self._max_bytes = max_bytes
        self._sse: bool | None = None  # None until the first non-blank bytes tell

    @property
    def done(self) -> bool:
        return self._chat.done

    @property
    def error(self) -> LlmxError | None:
        return self._chat.error

    def feed(self, data: bytes) -> list[Event]:
        if self._sse:
            return self._chat.feed(data)
        if self._chat.done:
            return []
        self._body += data
        if self._sse is None:
            self._sse = looks_like_sse(self._body)
            if self._sse:
                body = bytes(self._body)
                self._body = bytearray()
                return self._chat.feed(body)
        if len(self._body) > self._max_bytes:
            self._chat._fail(StreamError(f"the JSON answer is larger than max_event_bytes={self._max_bytes}"))
            self._body = bytearray()
        return []

    def finish(self) -> list[Event]:
        if self._sse:
            return self._chat.finish()
        if self._chat.done:
            return []
        body = self._body
        self._body = bytearray()
        text = body.decode("utf-8", "replace")
        del body  # the bytes go before the text is parsed
        try:
            value = loads_chunk(text)
        except (ValueError, RecursionError) as exc:
            self._chat._fail(StreamError(f"the answer is not valid JSON ({exc}): {shorten(text, QUOTED_DATA_CHARS)!r}"))
            return []
        if not isinstance(value, dict):
            self._chat._fail(StreamError(f"the answer is JSON but not a chat.completion object: "
                                         f"{shorten(text, QUOTED_DATA_CHARS)!r}"))
            return []
        del text
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
