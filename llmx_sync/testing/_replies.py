"""What a scripted server answers: whole answers (`answer`, `json_answer`, `call`,
`stream_error`, `error_reply`, `closed_without_response`), and the wire pieces they are
made of (`sse_event`, `chat_chunk`, `tool_call_delta`, …) for scripts that need a shape
of their own."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ._server import Disconnect, Pause, Piece, Reply, Stall, json_reply

__all__ = [
    "ToolCall", "answer", "call", "chat_chunk", "closed_without_response", "error_reply", "json_answer",
    "sse_comment", "sse_done", "sse_event", "stream_error", "text_stream_body", "tool_call_delta",
]

Ending = Literal["done", "truncate", "drop", "reset", "stall"]
ENDINGS: tuple[Ending, ...] = ("done", "truncate", "drop", "reset", "stall")


# --- SSE and Chat Completions chunks ---------------------------------------------------------


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def sse_event(data: str | Mapping[str, Any] | Sequence[Any], *, event: str | None = None, id: str | None = None,
              newline: str = "\n") -> bytes:
    """One SSE event: ``event:`` and ``id:`` lines when given, one ``data:`` line per line
    of `data` (a dict or list is written as compact JSON), then a blank line. `newline`
    may be ``"\\r\\n"`` or ``"\\r"``."""
    text = data if isinstance(data, str) else _compact(data)
    lines = [f"event: {event}"] if event is not None else []
    if id is not None:
        lines.append(f"id: {id}")
    lines += [f"data: {line}" for line in text.split("\n")]
    return (newline.join(lines) + newline + newline).encode("utf-8")


def sse_comment(text: str = "keep-alive", *, newline: str = "\n") -> bytes:
    """An SSE comment (``: text``) and a blank line, as servers send to keep a stream alive."""
    return f": {text}{newline}{newline}".encode()


def sse_done(*, newline: str = "\n") -> bytes:
    """The ``data: [DONE]`` event."""
    return sse_event("[DONE]", newline=newline)


def tool_call_delta(index: int = 0, *, id: str | None = None, name: str | None = None,
                    arguments: str | None = None, type: str | None = "function") -> dict[str, Any]:
    """One entry of ``delta.tool_calls`` as OpenAI streams it. `type` is written only with
    an `id` (OpenAI sends id, type and name in the first fragment, then only arguments)."""
    delta: dict[str, Any] = {"index": index}
    if id is not None:
        delta["id"] = id
        if type is not None:
            delta["type"] = type
    function = {key: value for key, value in (("name", name), ("arguments", arguments)) if value is not None}
    if function:
        delta["function"] = function
    return delta


def chat_chunk(content: str | None = None, *, role: str | None = None, reasoning: str | None = None,
               reasoning_key: str = "reasoning_content", tool_calls: list[dict[str, Any]] | None = None,
               finish_reason: str | None = None, usage: Mapping[str, Any] | None = None, id: str = "chatcmpl-1",
               model: str = "test-model", created: int = 1700000000, index: int = 0,
               choices: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A ``chat.completion.chunk``.

    The choice's ``delta`` holds only the fields given (role, content, `reasoning_key`,
    tool_calls); its ``finish_reason`` is always there (null when not given). With
    `usage` and nothing else the chunk has ``"choices": []``, like OpenAI's last chunk
    with ``stream_options.include_usage``; with other fields too, `usage` sits beside
    the choice. `choices` replaces the choices list.
    """
    delta: dict[str, Any] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    if reasoning is not None:
        delta[reasoning_key] = reasoning
    if tool_calls is not None:
        delta["tool_calls"] = tool_calls
    chunk: dict[str, Any] = {"id": id, "object": "chat.completion.chunk", "created": created, "model": model}
    if choices is not None:
        chunk["choices"] = choices
    elif usage is not None and not delta and finish_reason is None:
        chunk["choices"] = []
    else:
        chunk["choices"] = [{"index": index, "delta": delta, "finish_reason": finish_reason}]
    if usage is not None:
        chunk["usage"] = dict(usage)
    return chunk


def text_stream_body(tokens: list[str], *, usage: Mapping[str, Any] | None = None,
                     finish_reason: str | None = "stop", id: str = "chatcmpl-1", model: str = "test-model",
                     done: bool = True) -> list[bytes]:
    """The events of a plain streamed answer: one chunk per token (the first with
    ``"role": "assistant"``; no tokens: one role-only chunk), a chunk with
    `finish_reason` (unless None), a usage-only chunk when `usage` is given, and
    ``[DONE]`` when `done`."""
    pieces = [] if tokens else [sse_event(chat_chunk(role="assistant", content="", id=id, model=model))]
    pieces += [sse_event(chat_chunk(token, role="assistant" if i == 0 else None, id=id, model=model))
               for i, token in enumerate(tokens)]
    if finish_reason is not None:
        pieces.append(sse_event(chat_chunk(finish_reason=finish_reason, id=id, model=model)))
    if usage is not None:
        pieces.append(sse_event(chat_chunk(usage=usage, id=id, model=model)))
    if done:
        pieces.append(sse_done())
    return pieces


# --- whole answers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolCall:
    """A tool call in a scripted answer (see `call`)."""

    name: str
    arguments: str
    id: str | None = None


def call(name: str, arguments: Mapping[str, Any] | str | None = None, *, id: str | None = None) -> ToolCall:
    """A tool call for `answer(tool_calls=[...])`: `arguments` as a dict (sent as JSON) or
    as the exact text to send; `id` defaults to ``call_<n>`` by its place in the answer."""
    text = arguments if isinstance(arguments, str) else json.dumps(dict(arguments or {}))
    return ToolCall(name, text, id)


_WORD = re.compile(r"\s*\S+\s*|\s+")


def _pieces(text: str | Sequence[str]) -> list[str]:
    """The deltas of a text: a string streams word by word, a list as its items."""
    if isinstance(text, str):
        return _WORD.findall(text)
    return list(text)


def _halves(text: str) -> list[str]:
    middle = len(text) // 2
    return [part for part in (text[:middle], text[middle:]) if part]


def _usage(usage: Mapping[str, Any] | tuple[int, int]) -> dict[str, Any]:
    if isinstance(usage, tuple):
        prompt, completion = usage
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    return dict(usage)


def answer(text: str | Sequence[str] = "", *, reasoning: str | Sequence[str] = "",
           tool_calls: Sequence[ToolCall] = (), usage: Mapping[str, Any] | tuple[int, int] | None = None,
           finish_reason: str | None = None, end: Ending = "done", delay: float = 0.0,
           first_byte_after: float = 0.0, headers: Mapping[str, str] | None = None,
           model: str = "test-model", id: str = "chatcmpl-1") -> Reply:
    """A streamed Chat Completions answer.

    The chunks come in the order real servers send them: the `reasoning`
    (``reasoning_content`` deltas), the `text` (a string streams word by word, a list
    item by item), the `tool_calls` (each: id and name, then its arguments in two
    deltas), a chunk with the `finish_reason` (default ``"tool_calls"`` when there are
    calls, else ``"stop"``), a usage chunk when `usage` is given (a dict as sent, or
    ``(prompt_tokens, completion_tokens)``), and ``[DONE]``.

    Faults: `end` is ``"done"`` (a whole answer), ``"truncate"`` (the body ends cleanly
    before the finish chunk, as from a proxy that lost its upstream), ``"drop"`` (the
    connection closes there), ``"reset"`` (an RST there) or ``"stall"`` (the
    connection stays open, silent). `delay` waits that many seconds before each chunk,
    `first_byte_after` before the response's status line. `headers` are added to the
    response's (rate limits, say).
    """
    if end not in ENDINGS:
        raise ValueError(f"end must be one of {', '.join(ENDINGS)}, not {end!r}")
    chunks: list[dict[str, Any]] = [chat_chunk(reasoning=piece) for piece in _pieces(reasoning)]
    chunks += [chat_chunk(piece) for piece in _pieces(text)]
    for index, tool_call in enumerate(tool_calls):
        call_id = tool_call.id if tool_call.id is not None else f"call_{index + 1}"
        chunks.append(chat_chunk(tool_calls=[tool_call_delta(index, id=call_id, name=tool_call.name, arguments="")]))
        chunks += [chat_chunk(tool_calls=[tool_call_delta(index, arguments=part)])
                   for part in _halves(tool_call.arguments)]
    if not chunks:
        chunks.append(chat_chunk(""))
    chunks[0]["choices"][0]["delta"] = {"role": "assistant", **chunks[0]["choices"][0]["delta"]}
    if end == "done":
        chunks.append(chat_chunk(finish_reason=finish_reason or ("tool_calls" if tool_calls else "stop")))
        if usage is not None:
            chunks.append(chat_chunk(usage=_usage(usage)))
    body: list[Piece] = []
    for chunk in chunks:
        chunk.update(id=id, model=model)
        if delay:
            body.append(Pause(delay))
        body.append(sse_event(chunk))
    match end:
        case "done":
            body.append(sse_done())
        case "drop" | "reset":
            body.append(Disconnect(reset=end == "reset"))
        case "stall":
            body.append(Stall())
    return Reply(headers=dict(headers or {}), body=body, headers_after=first_byte_after)


def json_answer(value: Any, **kwargs: Any) -> Reply:
    """`answer` whose text is `value` as JSON, streamed a few characters at a time (the
    structured output of a ``"json_schema"`` or ``"json_object"`` request)."""
    text = json.dumps(value)
    return answer([text[i:i + 8] for i in range(0, len(text), 8)], **kwargs)


def error_reply(status: int, message: str = "error", *, type: str = "server_error", code: str | None = None,
                headers: Mapping[str, str] | None = None, retry_after: float | None = None) -> Reply:
    """An OpenAI-style error: ``{"error": {"message", "type", "param", "code"}}`` with
    `status`; `retry_after` adds a ``Retry-After`` header (seconds)."""
    headers = dict(headers or {})
    if retry_after is not None:
        headers["Retry-After"] = f"{retry_after:g}"
    return json_reply({"error": {"message": message, "type": type, "param": None, "code": code}},
                      status=status, headers=headers)


def stream_error(message: str, *, after: str | Sequence[str] = "", type: str = "server_error",
                 code: str | None = None) -> Reply:
    """A stream that starts (the text `after`) and then fails with an error event
    (``data: {"error": {...}}``, as LiteLLM and vLLM send), and ends there."""
    error = {"error": {"message": message, "type": type, "param": None, "code": code}}
    opening = answer(after, end="truncate")
    return Reply(headers=opening.headers, body=[*opening.body, sse_event(error)])


def closed_without_response() -> Reply:
    """The connection closes once the request was read, before any response byte."""
    return Reply(close_without_response=True)
