"""Events -> finished items (llmx's `AggregatedChatStream`, without its duplicated
reasoning and its stray `output_item.added` events).

`aggregate(events, "aggregated")` yields per turn the rate limits, then only finished
items (reasoning, the assistant message with one `output_text`, function calls) and
`completed`. `"streaming"` forwards every event, the assistant message's `output_item.done`
rewritten to one `output_text`. `collect` turns a whole stream into a `ChatResult`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .events import (
    Completed,
    Event,
    OutputItemDone,
    OutputTextDelta,
    RateLimits,
    RateLimitSnapshot,
    ReasoningContentDelta,
    TokenUsage,
)
from .models import FunctionCall, Message, OutputText, Reasoning, ReasoningText, ResponseItem

AGGREGATE_MODES = ("aggregated", "streaming")


def _single_text_message(message: Message) -> Message:
    """The assistant message with all of its text in one `output_text`."""
    if len(message.content) == 1 and isinstance(message.content[0], OutputText):
        return message
    return Message(role=message.role, content=[OutputText(message.text)], id=message.id)


def _single_text_reasoning(reasoning: Reasoning) -> Reasoning:
    """The reasoning with its `reasoning_text` parts merged into one (other content kept as is)."""
    content = reasoning.content
    if not content or len(content) == 1 or not all(isinstance(c, ReasoningText) for c in content):
        return reasoning
    return Reasoning(summary=reasoning.summary, content=[ReasoningText(reasoning.text)],
                     encrypted_content=reasoning.encrypted_content, id=reasoning.id)


class _Turn:
    """The deltas of one turn, kept to rebuild an item whose `output_item.done` never came
    (a producer that, like llmx on `length`, ends a turn without it)."""

    __slots__ = ("text", "reasoning", "has_message", "has_reasoning")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.has_message = False
        self.has_reasoning = False

    def finished(self, item: ResponseItem) -> None:
        if isinstance(item, Reasoning):
            self.has_reasoning = True
        elif isinstance(item, Message) and item.role == "assistant":
            self.has_message = True

    def unfinished_items(self) -> list[ResponseItem]:
        items: list[ResponseItem] = []
        if self.reasoning and not self.has_reasoning:
            items.append(Reasoning(content=[ReasoningText("".join(self.reasoning))]))
        if self.text and not self.has_message:
            items.append(Message(role="assistant", content=[OutputText("".join(self.text))]))
        return items


def _aggregate(events: Iterable[Event], streaming: bool) -> Iterator[Event]:
    turn = _Turn()
    for event in events:
        if isinstance(event, OutputItemDone):
            item = event.item
            turn.finished(item)
            if isinstance(item, Message) and item.role == "assistant":
                yield OutputItemDone(_single_text_message(item))
            elif isinstance(item, Reasoning) and not streaming:
                yield OutputItemDone(_single_text_reasoning(item))
            else:
                yield event
            continue
        if isinstance(event, OutputTextDelta):
            turn.text.append(event.delta)
        elif isinstance(event, ReasoningContentDelta):
            turn.reasoning.append(event.delta)
        elif isinstance(event, Completed):
            for item in turn.unfinished_items():
                yield OutputItemDone(item)
            turn = _Turn()
        if streaming or isinstance(event, (Completed, RateLimits)):
            yield event


def aggregate(events: Iterable[Event], mode: str = "aggregated") -> Iterator[Event]:
    """Aggregate a raw event stream; `mode` is ``"aggregated"`` or ``"streaming"``.

    Errors raised by `events` propagate unchanged.
    """
    if mode not in AGGREGATE_MODES:
        raise ValueError(f"mode must be {' or '.join(map(repr, AGGREGATE_MODES))}, not {mode!r}")
    return _aggregate(events, streaming=mode == "streaming")


@dataclass
class ChatResult:
    text: str
    reasoning: str
    tool_calls: list[FunctionCall]
    items: list[ResponseItem]  # the finished items in order, ready to append to a history
    token_usage: TokenUsage | None
    finish_reason: str | None
    response_id: str
    rate_limits: RateLimitSnapshot | None


def collect(events: Iterable[Event]) -> ChatResult:
    """Consume a whole event stream into a `ChatResult`; errors propagate."""
    items: list[ResponseItem] = []
    completed: Completed | None = None
    rate_limits: RateLimitSnapshot | None = None
    for event in aggregate(events, "aggregated"):
        if isinstance(event, OutputItemDone):
            items.append(event.item)
        elif isinstance(event, Completed):
            completed = event
        elif isinstance(event, RateLimits):
            rate_limits = event.snapshot
    return ChatResult(
        text="".join(item.text for item in items if isinstance(item, Message) and item.role == "assistant"),
        reasoning="".join(item.text for item in items if isinstance(item, Reasoning)),
        tool_calls=[item for item in items if isinstance(item, FunctionCall)],
        items=items,
        token_usage=completed.token_usage if completed else None,
        finish_reason=completed.finish_reason if completed else None,
        response_id=completed.response_id if completed else "",
        rate_limits=rate_limits,
    )
