"""Bytes -> SSE events -> typed chat events. Pure: no I/O, no threads, no clock but `now`.

`SSEDecoder` frames the body as eventsource-stream 0.2.3 does (the SSE crate of the
original llmx code); `ChatSSEParser` turns the Chat Completions chunks into `Event`s in
llmx's order, without its lost tool calls, usage and items; `parse_chat_sse` is the generator over both.

Why not `sseclient-py` (1.9.0, `sseclient.SSEClient(chunks).events()`)? Checked against it:
- an unterminated last event is dispatched: ``[b"data: a\\n\\n", b"data: partial"]`` gives
  ``a`` *and* ``partial``;
- CR followed by CRLF is misframed, split or not: ``[b"data: a\\r", b"\\r\\ndata: b\\r\\n\\r\\n"]``
  and ``[b"data: a\\r\\r\\ndata: b\\r\\n\\r\\n"]`` give one event ``"a\\nb"`` instead of ``a``, ``b``;
  so does an LF line followed by a CRLF blank line, ``b"data: a\\n\\r\\ndata: b\\n\\n"``;
- blank lines inside a frame are skipped (the cause of the gluing above);
- lines are decoded one by one, so ``b"data: ok\\n\\ndata: \\x80\\x80\\n\\n"`` raises a bare
  ``UnicodeDecodeError`` instead of llmx's ``UTF8 error: invalid utf-8 sequence ...``;
- a leading BOM is kept (``b"\\xef\\xbb\\xbfdata: a\\n\\n"`` gives no event) and an `id` with
  NUL is accepted.
"""

from __future__ import annotations

import json
import json.scanner
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

from ._rust_compat import rust_trim
from .errors import InStreamError, LlmxError, StreamError
from .events import (
    Completed,
    Event,
    OutputItemAdded,
    OutputItemDone,
    OutputTextDelta,
    RateLimits,
    RateLimitSnapshot,
    RateLimitWindow,
    ReasoningContentDelta,
    TokenUsage,
)
from .models import FunctionCall, Message, OutputText, Reasoning, ReasoningText

logger = logging.getLogger(__name__)

EMPTY_BODY_MESSAGE = "the server closed the stream without sending any event"

# --- SSE framing ----------------------------------------------------------------------------


@dataclass(slots=True)
class ServerSentEvent:
    """One dispatched event: its type (default ``message``), data lines joined with LF, and
    the last event id seen so far."""

    event: str
    data: str
    id: str = ""


class SSEDecoder:
    """Incremental SSE framing of a UTF-8 body, byte for byte as eventsource-stream frames it.

    `feed` returns the events completed by a chunk; `finish` (the body ended) raises
    `StreamError` if bytes were left undecodable, after every event that was complete
    before them has been returned by `feed`. An unterminated last event is discarded.

    Like eventsource-stream, the valid UTF-8 prefix of a chunk is used at once, an
    incomplete sequence at its end waits for the next chunk, and from a truly invalid byte
    on nothing is decoded any more. llmx buffers those bytes only to report the first
    error at the end (at index 0 of the buffer); we keep just that error text.
    """

    __slots__ = ("_utf8_tail", "_utf8_error", "_started", "_after_cr", "_partial_line",
                 "_data", "_event_type", "_last_id")

    def __init__(self) -> None:
        self._utf8_tail = b""  # an incomplete UTF-8 sequence ending the last chunk
        self._utf8_error: str | None = None  # set at the first invalid byte; later bytes are dropped
        self._started = False  # some text was decoded (the BOM check is done)
        self._after_cr = False  # the last text ended in CR: a LF opening the next one ends no line
        self._partial_line: list[str] = []  # the unterminated last line, in pieces
        self._data: list[str] = []
        self._event_type = ""
        self._last_id = ""  # like EventSource's last event id, it persists across events

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        text = self._decode(data)
        if not text:
            return []
        if not self._started:
            self._started = True
            if text[0] == "\ufeff":
                text = text[1:]
        elif self._after_cr:
            self._after_cr = False
            if text[0] == "\n":
                text = text[1:]
                if not text:
                    return []
        if "\r" in text:
            self._after_cr = text[-1] == "\r"
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        return self._lines(text)

    def finish(self) -> list[ServerSentEvent]:
        """The body ended. Nothing is left to dispatch (an unterminated event is dropped),
        so this returns ``[]`` or raises `StreamError` for undecodable bytes."""
        if self._utf8_error is not None:
            raise StreamError(self._utf8_error)
        if self._utf8_tail:
            raise StreamError("UTF8 error: incomplete utf-8 byte sequence from index 0")
        return []

    def _decode(self, data: bytes) -> str:
        if self._utf8_error is not None:
            return ""
        if self._utf8_tail:
            data = self._utf8_tail + data
            self._utf8_tail = b""
        try:
            return data.decode()
        except UnicodeDecodeError as exc:
            if exc.reason == "unexpected end of data":
                self._utf8_tail = data[exc.start:]
            else:
                # Rust's Utf8Error text; Python's invalid span is Rust's `error_len`, and the
                # index is relative to the undecodable remainder, which starts here.
                self._utf8_error = f"UTF8 error: invalid utf-8 sequence of {exc.end - exc.start} bytes from index 0"
            return data[:exc.start].decode()

    def _lines(self, text: str) -> list[ServerSentEvent]:
        # `text` has only LF line ends here.
        lines = text.split("\n")
        last = lines.pop()
        if not lines:
            self._partial_line.append(last)
            return []
        if self._partial_line:
            self._partial_line.append(lines[0])
            lines[0] = "".join(self._partial_line)
            self._partial_line = []
        if last:
            self._partial_line.append(last)
        events: list[ServerSentEvent] = []
        data = self._data
        for line in lines:
            if line.startswith("data: "):  # the common case, first
                data.append(line[6:])
            elif not line:
                if data:
                    events.append(ServerSentEvent(self._event_type or "message", "\n".join(data), self._last_id))
                    data.clear()
                self._event_type = ""
            else:
                self._field(line)
        return events

    def _field(self, line: str) -> None:
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event_type = value
        elif name == "id" and "\0" not in value:
            self._last_id = value
        # `retry`, unknown fields and comments (lines starting with ':', so an empty name)
        # are ignored.


# --- rate limits ----------------------------------------------------------------------------

_GO_DURATION = re.compile(r"(?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+")
_GO_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_SECONDS_PER_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float | None:
    """Seconds in a Go `time.Duration` string (`1s`, `6m0s`, `20ms`, `1h2m3.5s`), or None."""
    text = text.strip()
    if text == "0":
        return 0.0
    if not _GO_DURATION.fullmatch(text):
        return None
    return sum(float(number) * _SECONDS_PER_UNIT[unit] for number, unit in _GO_DURATION_PART.findall(text))


def _header_count(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _rate_limit_window(headers: Mapping[str, str], kind: str, now: float) -> RateLimitWindow | None:
    """One window from lower-cased headers; None when it is absent or does not parse
    (a missing reset only leaves `resets_at` unset)."""
    limit = _header_count(headers.get(f"x-ratelimit-limit-{kind}"))
    remaining = _header_count(headers.get(f"x-ratelimit-remaining-{kind}"))
    reset = headers.get(f"x-ratelimit-reset-{kind}")
    reset_seconds = None if reset is None else parse_go_duration(reset)
    if not limit or remaining is None or (reset is not None and reset_seconds is None):
        return None
    return RateLimitWindow(
        used_percent=100.0 * (limit - remaining) / limit,
        resets_at=None if reset_seconds is None else int(now + reset_seconds),
    )


def rate_limit_snapshot(headers: Mapping[str, str], now: Callable[[], float]) -> RateLimitSnapshot | None:
    """The `x-ratelimit-*` headers as a snapshot (requests window primary, tokens secondary),
    or None when neither window is there and parses."""
    raw = {name: value for name, value in headers.items() if name.lower().startswith("x-ratelimit-")}
    if not raw:
        return None
    lowered = {name.lower(): value for name, value in raw.items()}
    received_at = now()
    primary = _rate_limit_window(lowered, "requests", received_at)
    secondary = _rate_limit_window(lowered, "tokens", received_at)
    if primary is None and secondary is None:
        return None
    return RateLimitSnapshot(primary=primary, secondary=secondary, headers=raw)


# --- chunk fields ---------------------------------------------------------------------------

_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1

def _reject_json_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")  # serde_json rejects NaN and Infinity


_JSON = json.JSONDecoder(parse_constant=_reject_json_constant)
# The decoder's own C scanner (what `JSONDecoder.decode` calls), used directly by `loads_json`.
_scan_json = json.scanner.make_scanner(cast(Any, _JSON))


def loads_json(data: str) -> Any:
    """`json.loads` with serde_json's rules (NaN and Infinity rejected; trailing garbage too).

    A chunk usually has no whitespace around it, so the scanner is called directly, which
    saves `decode`'s two regex matches (~10% of the parser's time); anything else, errors
    included, goes through `decode` itself.
    """
    try:
        value, end = _scan_json(data, 0)
    except StopIteration:
        return _JSON.decode(data)
    return value if end == len(data) else _JSON.decode(data)


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
    __slots__ = ("call_id", "name", "arguments")

    def __init__(self) -> None:
        self.call_id: str | None = None
        self.name: str | None = None
        self.arguments: list[str] = []

    def add(self, delta: Mapping[str, Any], call_id: str | None) -> None:
        # id and name keep their first value: some servers repeat them in every delta.
        if self.call_id is None:
            self.call_id = call_id
        function = delta.get("function")
        if isinstance(function, dict):
            if self.name is None:
                self.name = _present_str(function.get("name"))
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                self.arguments.append(arguments)

    def item(self) -> FunctionCall:
        return FunctionCall(name=self.name or "", arguments="".join(self.arguments), call_id=self.call_id or "")


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

    def __init__(self, *, headers: Mapping[str, str] | None = None, now: Callable[[], float] = time.time) -> None:
        self.error: LlmxError | None = None
        self.done = False
        self._decoder = SSEDecoder()
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
        return out

    def finish(self) -> list[Event]:
        """The body ended: flush what is pending and complete, or fail."""
        if self.done:
            return []
        out = self._start()
        try:
            self._on_events(self._decoder.finish(), out)
        except StreamError as exc:
            self._fail(exc)
        if not self.done:
            if self._saw_event:
                self._complete(out)
            else:
                self._fail(StreamError(EMPTY_BODY_MESSAGE))
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
                    chunk = loads_json(data)
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
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            self._on_choice(choices[0], out)  # other choices are ignored, as in llmx

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
                    self._add_tool_call(tool_call)
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

    def _add_tool_call(self, delta: dict[str, Any]) -> None:
        call_id = _present_str(delta.get("id"))
        index = delta.get("index")
        if type(index) is int:
            call = self._calls_by_index.get(index)
            if call is None:
                call = self._calls_by_index[index] = self._new_call()
        else:
            call = self._current_call
            if call is None or call_id is not None and call.call_id is not None and call_id != call.call_id:
                call = self._new_call()
        call.add(delta, call_id)
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
        out.extend(OutputItemDone(call.item()) for call in self._calls)
        self._calls = []
        self._calls_by_index = {}
        self._current_call = None

    def _complete(self, out: list[Event]) -> None:
        self._flush_items(out)
        out.append(Completed(self._response_id, self._token_usage, self._finish_reason))
        self.done = True


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
