"""The typed events a stream yields (public API: each is exported at top level).

Plain slotted dataclasses: they are built once per SSE chunk on the hot path, so
no serialisation machinery is attached to them; each writes its JSON with `to_dict()`.

`Event` is the union of them all. Every consumer that treats events one by one (the
aggregator, the CLI, the notebook, the web helpers) matches on it and ends with
`assert_never`, so adding an event type makes mypy name each consumer to update.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Union

from .errors import SchemaProblem
from .models import ResponseItem


@dataclass(slots=True)
class TokenUsage:
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_output_tokens: int = 0
    total_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "output_tokens": self.output_tokens,
            "reasoning_output_tokens": self.reasoning_output_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(slots=True)
class RateLimitWindow:
    used_percent: float
    window_minutes: int | None = None
    resets_at: int | None = None  # unix seconds

    def to_dict(self) -> dict[str, Any]:
        return {"used_percent": self.used_percent, "window_minutes": self.window_minutes,
                "resets_at": self.resets_at}


@dataclass(slots=True)
class RateLimitSnapshot:
    primary: RateLimitWindow | None = None    # the requests window
    secondary: RateLimitWindow | None = None  # the tokens window
    headers: dict[str, str] = field(default_factory=dict)  # the raw x-ratelimit-* headers

    def to_dict(self) -> dict[str, Any]:
        return {
            "primary": self.primary.to_dict() if self.primary else None,
            "secondary": self.secondary.to_dict() if self.secondary else None,
            "headers": dict(self.headers),
        }


@dataclass(slots=True)
class Created:
    type: ClassVar[str] = "created"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type}


@dataclass(slots=True)
class OutputItemAdded:
    item: ResponseItem
    type: ClassVar[str] = "output_item.added"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "item": self.item.to_dict()}


@dataclass(slots=True)
class OutputItemDone:
    item: ResponseItem
    type: ClassVar[str] = "output_item.done"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "item": self.item.to_dict()}


@dataclass(slots=True)
class OutputTextDelta:
    delta: str
    type: ClassVar[str] = "output_text.delta"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "delta": self.delta}


@dataclass(slots=True)
class RefusalDelta:
    """A piece of the model's refusal to answer (OpenAI's ``delta.refusal``). A refusal
    is part of the answer, not an error: it ends up as the assistant message's
    `Refusal` part and in `ChatResult.refusal`."""

    delta: str
    type: ClassVar[str] = "refusal.delta"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "delta": self.delta}


@dataclass(slots=True)
class FunctionCallArgumentsDelta:
    """A piece of a function call's `arguments` as the model writes them, sent once the
    call's id and name are known (or at the call's end): the pieces of one call join to
    its final `arguments`. For a UI that shows a call being written."""

    call_id: str
    name: str
    delta: str
    type: ClassVar[str] = "function_call_arguments.delta"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "call_id": self.call_id, "name": self.name, "delta": self.delta}


@dataclass(slots=True)
class ReasoningContentDelta:
    delta: str
    type: ClassVar[str] = "reasoning_content.delta"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "delta": self.delta}


@dataclass(slots=True)
class ReasoningSummaryDelta:
    delta: str
    type: ClassVar[str] = "reasoning_summary.delta"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "delta": self.delta}


@dataclass(slots=True)
class ReasoningSummaryPartAdded:
    type: ClassVar[str] = "reasoning_summary_part.added"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type}


@dataclass(slots=True)
class Completed:
    """The end of one answer (a turn). In a `client.run` loop, `turn` counts the model
    calls from 1; a single stream is turn 1."""

    response_id: str = ""
    token_usage: TokenUsage | None = None
    # None when the body ended without a finish_reason (and without [DONE]).
    finish_reason: str | None = None
    turn: int = 1
    type: ClassVar[str] = "completed"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "response_id": self.response_id,
                "token_usage": self.token_usage.to_dict() if self.token_usage else None,
                "finish_reason": self.finish_reason, "turn": self.turn}


@dataclass(slots=True)
class ToolResult:
    """A tool the `client.run` loop ran: `output` is the text sent back to the model,
    `error` what went wrong (unknown tool, bad arguments, the function raised), else None."""

    call_id: str
    name: str
    output: str
    error: str | None = None
    type: ClassVar[str] = "tool_result"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "call_id": self.call_id, "name": self.name, "output": self.output,
                "error": self.error}


@dataclass(slots=True)
class OutputJsonDelta:
    """Structured output being written: `value` is the partial object parsed so far
    (dicts and lists; strings as far as they go). Sent when `response_format` is set."""

    value: Any
    type: ClassVar[str] = "output_json.delta"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "value": self.value}


@dataclass(slots=True)
class OutputRejected:
    """An answer did not fit the `response_format` and the model is asked again
    (``max_output_retries``): `text` is the rejected output (in the ``"tools"`` mode the
    arguments of the answer's call), `errors` every problem found in it, `attempt` the
    number of the rejected answer, from 1. The new attempt's events follow."""

    text: str
    errors: list[SchemaProblem]
    attempt: int
    type: ClassVar[str] = "output_rejected"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "attempt": self.attempt, "text": self.text,
                "errors": [{"path": error.path, "message": error.message} for error in self.errors]}


@dataclass(slots=True)
class RateLimits:
    snapshot: RateLimitSnapshot
    type: ClassVar[str] = "rate_limits"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "snapshot": self.snapshot.to_dict()}


Event = Union[
    Created, OutputItemAdded, OutputItemDone, OutputTextDelta, RefusalDelta, FunctionCallArgumentsDelta,
    ReasoningContentDelta, ReasoningSummaryDelta, ReasoningSummaryPartAdded, Completed, RateLimits, ToolResult,
    OutputJsonDelta, OutputRejected,
]


def event_to_dict(event: Event) -> dict[str, Any]:
    """The event as JSON-ready data: ``{"type": ..., <fields>}`` (its `to_dict()`)."""
    return event.to_dict()
