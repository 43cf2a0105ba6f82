"""The typed events a stream yields (public API: each is exported at top level).

Plain slotted dataclasses: they are built once per SSE chunk on the hot path, so
no serialisation machinery is attached to them; `event_to_dict` is the JSON edge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Union

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


@dataclass(slots=True)
class OutputItemAdded:
    item: ResponseItem
    type: ClassVar[str] = "output_item.added"


@dataclass(slots=True)
class OutputItemDone:
    item: ResponseItem
    type: ClassVar[str] = "output_item.done"


@dataclass(slots=True)
class OutputTextDelta:
    delta: str
    type: ClassVar[str] = "output_text.delta"


@dataclass(slots=True)
class ReasoningContentDelta:
    delta: str
    type: ClassVar[str] = "reasoning_content.delta"


@dataclass(slots=True)
class ReasoningSummaryDelta:
    delta: str
    type: ClassVar[str] = "reasoning_summary.delta"


@dataclass(slots=True)
class ReasoningSummaryPartAdded:
    type: ClassVar[str] = "reasoning_summary_part.added"


@dataclass(slots=True)
class Completed:
    response_id: str = ""
    token_usage: TokenUsage | None = None
    # None when the body ended without a finish_reason (and without [DONE]).
    finish_reason: str | None = None
    type: ClassVar[str] = "completed"


@dataclass(slots=True)
class RateLimits:
    snapshot: RateLimitSnapshot
    type: ClassVar[str] = "rate_limits"


Event = Union[
    Created, OutputItemAdded, OutputItemDone, OutputTextDelta, ReasoningContentDelta,
    ReasoningSummaryDelta, ReasoningSummaryPartAdded, Completed, RateLimits,
]


def event_to_dict(event: Event) -> dict[str, Any]:
    """The event as JSON-ready data: ``{"type": ..., <fields>}``."""
    data: dict[str, Any] = {"type": event.type}
    if isinstance(event, (OutputItemAdded, OutputItemDone)):
        data["item"] = event.item.to_dict()
    elif isinstance(event, (OutputTextDelta, ReasoningContentDelta, ReasoningSummaryDelta)):
        data["delta"] = event.delta
    elif isinstance(event, Completed):
        data["response_id"] = event.response_id
        data["token_usage"] = event.token_usage.to_dict() if event.token_usage else None
        data["finish_reason"] = event.finish_reason
    elif isinstance(event, RateLimits):
        data["snapshot"] = event.snapshot.to_dict()
    return data
