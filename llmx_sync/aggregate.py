"""Events -> finished items (llmx's `AggregatedChatStream`, without its duplicated
reasoning and its stray `output_item.added` events), and the answer so far.

`aggregate(events, "aggregated")` yields per turn the rate limits, then only finished
items (reasoning, the assistant message with one `output_text`, function calls),
`completed`, and the results of tools a `client.run` loop ran. `"streaming"` forwards every event, the assistant message's `output_item.done`
rewritten to one `output_text`.

`ChatAccumulator` is the push form (no I/O): `add` events as they come, read a
`ChatResult` of everything so far with `snapshot()` at any moment. `collect` turns a
whole stream into a `ChatResult` with it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, assert_never, runtime_checkable

from ._pieces import TextPieces
from .chat.request import build_messages
from .errors import InvalidInputError
from .events import (
    Completed,
    Created,
    Event,
    FunctionCallArgumentsDelta,
    OutputItemAdded,
    OutputItemDone,
    OutputJsonDelta,
    OutputRejected,
    OutputTextDelta,
    RateLimits,
    RateLimitSnapshot,
    ReasoningContentDelta,
    ReasoningSummaryDelta,
    ReasoningSummaryPartAdded,
    RefusalDelta,
    TokenUsage,
    ToolResult,
)
from .models import ContentItem, FunctionCall, Message, OutputText, Reasoning, ReasoningText, Refusal, ResponseItem

__all__ = ["AGGREGATE_MODES", "ChatAccumulator", "ChatResult", "Collectable", "aggregate", "collect"]

AGGREGATE_MODES = ("aggregated", "streaming")


def answer_content(text: str, refusal: str) -> list[ContentItem]:
    """An assistant message's content: its text in one `output_text`, and its refusal
    (when it refused) in one `refusal` part."""
    content: list[ContentItem] = [OutputText(text)] if text or not refusal else []
    return content + [Refusal(refusal)] if refusal else content


def _single_text_message(message: Message) -> Message:
    """The assistant message with all of its text in one `output_text` (and its refusal
    in one `refusal` part)."""
    content = answer_content(message.text, message.refusal)
    if message.content == content:
        return message
    return Message(role=message.role, content=content, id=message.id)


def _single_text_reasoning(reasoning: Reasoning) -> Reasoning:
    """The reasoning with its `reasoning_text` parts merged into one (other content kept as is)."""
    content = reasoning.content
    if not content or len(content) == 1 or not all(isinstance(c, ReasoningText) for c in content):
        return reasoning
    return dataclasses.replace(reasoning, content=[ReasoningText(reasoning.text)])


def finished_item(item: ResponseItem) -> ResponseItem:
    """A finished item as aggregated mode gives it: an assistant message's text in one
    `output_text`, reasoning's text in one `reasoning_text`."""
    if isinstance(item, Message) and item.role == "assistant":
        return _single_text_message(item)
    if isinstance(item, Reasoning):
        return _single_text_reasoning(item)
    return item


class _Turn:
    """The deltas of one turn, kept to rebuild an item whose `output_item.done` never came
    (a producer that, like llmx on `length`, ends a turn without it)."""

    __slots__ = ("text", "refusal", "reasoning", "has_message", "has_reasoning")

    def __init__(self) -> None:
        self.text = TextPieces()
        self.refusal = TextPieces()
        self.reasoning = TextPieces()
        self.has_message = False
        self.has_reasoning = False

    def finished(self, item: ResponseItem) -> None:
        """`item` came whole: its deltas are not needed any more (dropped, not kept beside it)."""
        if isinstance(item, Reasoning):
            self.has_reasoning = True
            self.reasoning = TextPieces()
        elif isinstance(item, Message) and item.role == "assistant":
            self.has_message = True
            self.text, self.refusal = TextPieces(), TextPieces()

    def compact(self) -> None:
        """Join the runs of small deltas added since the last call (see `_pieces`): once per batch."""
        self.text.compact()
        self.refusal.compact()
        self.reasoning.compact()

    def unfinished_items(self) -> list[ResponseItem]:
        items: list[ResponseItem] = []
        if self.reasoning and not self.has_reasoning:
            items.append(Reasoning(content=[ReasoningText("".join(self.reasoning))]))
        if (self.text or self.refusal) and not self.has_message:
            items.append(Message(role="assistant", content=answer_content("".join(self.text), "".join(self.refusal))))
        return items


def _aggregate(events: Iterable[Event], streaming: bool) -> Iterator[Event]:
    turn = _Turn()
    for event in events:
        match event:
            case OutputItemDone(item=item):
                turn.finished(item)
                if isinstance(item, Message) and item.role == "assistant":
                    yield OutputItemDone(_single_text_message(item))
                elif isinstance(item, Reasoning) and not streaming:
                    yield OutputItemDone(_single_text_reasoning(item))
                else:
                    yield event
            case Completed():
                for item in turn.unfinished_items():
                    yield OutputItemDone(item)
                turn = _Turn()
                yield event
            case RateLimits() | ToolResult() | OutputRejected():
                yield event
            case OutputTextDelta(delta=delta):
                turn.text.append(delta)
                turn.text.compact()  # (no batches here; a no-op but once per run of deltas)
                if streaming:
                    yield event
            case RefusalDelta(delta=delta):
                turn.refusal.append(delta)
                turn.refusal.compact()
                if streaming:
                    yield event
            case ReasoningContentDelta(delta=delta):
                turn.reasoning.append(delta)
                turn.reasoning.compact()
                if streaming:
                    yield event
            case (Created() | OutputItemAdded() | FunctionCallArgumentsDelta() | ReasoningSummaryDelta()
                  | ReasoningSummaryPartAdded() | OutputJsonDelta()):
                if streaming:
                    yield event
            case _:
                assert_never(event)


def aggregate(events: Iterable[Event], mode: str = "aggregated") -> Iterator[Event]:
    """Aggregate a raw event stream; `mode` is ``"aggregated"`` or ``"streaming"``.

    Errors raised by `events` propagate unchanged.
    """
    if mode not in AGGREGATE_MODES:
        raise InvalidInputError("mode", f"expected {' or '.join(map(repr, AGGREGATE_MODES))}, got {mode!r}")
    _check_events(events)
    return _aggregate(events, streaming=mode == "streaming")


def _check_events(events: object) -> None:
    if not isinstance(events, Iterable) or isinstance(events, (str, bytes, Mapping)):
        raise InvalidInputError("events", f"expected an iterable of events (a stream), got {type(events).__name__}")


@dataclass
class ChatResult:
    """One answer: its text, reasoning and tool calls, every finished item in order
    (ready to append to a history), and what `completed` said."""

    text: str
    reasoning: str
    tool_calls: list[FunctionCall]
    items: list[ResponseItem]
    token_usage: TokenUsage | None
    finish_reason: str | None
    response_id: str
    rate_limits: RateLimitSnapshot | None
    # The conversation with this answer at its end (a run's: every turn), to continue from.
    history: list[ResponseItem] = field(default_factory=list)
    # The structured output (an instance of the `response_format` class, or the JSON value).
    parsed: Any = None
    # The model's refusal to answer ("" when it did not refuse): part of the answer, not an error.
    refusal: str = ""
    # What this answer adds to the conversation: `items`; a run's: every turn's items and
    # the tools' outputs (`history` is the request's input, then these).
    new_items: list[ResponseItem] = field(default_factory=list)
    # How the structured output was asked for: "json_schema", "json_object" or "tools" (the
    # mode the server accepted); None without structured output.
    output_mode: str | None = None

    def to_messages(self) -> list[dict[str, Any]]:
        """The Chat Completions messages this answer adds, ready to append to a ``messages``
        list: the assistant message (its text, refusal and tool calls, and ``reasoning`` and
        the server's own fields when it sent some); for a run, the tool messages and the
        later turns too. They are
        the messages the next request sends for `new_items`: ``client.stream(messages +
        result.to_messages() + [next question])`` sends what continuing from `history`
        would. A message of calls alone has ``"content": None``, as in OpenAI's answers."""
        return build_messages(self.new_items, None, "keep")


class ChatAccumulator:
    """Events in, the answer so far out: `add` each event (or `add_all` a batch), read
    `snapshot()` whenever you like. No I/O; the same items as aggregated mode."""

    __slots__ = ("_items", "_turn", "_completed", "_rate_limits")

    def __init__(self) -> None:
        self._items: list[ResponseItem] = []
        self._turn = _Turn()
        self._completed: Completed | None = None
        self._rate_limits: RateLimitSnapshot | None = None

    def add_all(self, events: Iterable[Event]) -> None:
        """`add` each event of a batch (the one read of `stream.EventStream`)."""
        text = self._turn.text
        for event in events:
            if type(event) is OutputTextDelta:  # most events: keep them cheap
                text.append(event.delta)
            else:
                self.add(event)
                text = self._turn.text
        self._turn.compact()

    def add(self, event: Event) -> None:
        match event:
            case OutputTextDelta(delta=delta):
                self._turn.text.append(delta)
                self._turn.text.compact()  # (a no-op but once per run of deltas)
            case RefusalDelta(delta=delta):
                self._turn.refusal.append(delta)
                self._turn.refusal.compact()
            case ReasoningContentDelta(delta=delta):
                self._turn.reasoning.append(delta)
                self._turn.reasoning.compact()
            case OutputItemDone(item=item):
                self._turn.finished(item)
                # Merged into one text by `snapshot`, not now: the deltas this item is made
                # of are still alive (in the event), and a merged copy beside them would
                # double the answer's memory for a consumer that only iterates.
                self._items.append(item)
            case Completed():
                self._items.extend(self._turn.unfinished_items())
                self._turn = _Turn()
                self._completed = event
            case RateLimits(snapshot=snapshot):
                self._rate_limits = snapshot
            case OutputRejected():  # that answer was not the answer: the next attempt is
                self._items = []
                self._turn = _Turn()
                self._completed = None
            case (Created() | OutputItemAdded() | FunctionCallArgumentsDelta() | ReasoningSummaryDelta()
                  | ReasoningSummaryPartAdded() | OutputJsonDelta() | ToolResult()):
                pass  # the finished items carry what these say; tool results belong to a run's history
            case _:
                assert_never(event)

    def snapshot(self) -> ChatResult:
        """Everything received so far; the item being written is included as far as it got."""
        kept = self._items
        for index, item in enumerate(kept):  # merged once, in place (an append meanwhile is safe)
            merged = finished_item(item)
            if merged is not item:
                kept[index] = merged
        items = kept + self._turn.unfinished_items()
        completed = self._completed
        answers = [item for item in items if isinstance(item, Message) and item.role == "assistant"]
        return ChatResult(
            text="".join(item.text for item in answers),
            reasoning="".join(item.text for item in items if isinstance(item, Reasoning)),
            tool_calls=[item for item in items if isinstance(item, FunctionCall)],
            items=items,
            token_usage=completed.token_usage if completed else None,
            finish_reason=completed.finish_reason if completed else None,
            response_id=completed.response_id if completed else "",
            rate_limits=self._rate_limits,
            refusal="".join(item.refusal for item in answers),
            new_items=list(items),
        )


@runtime_checkable
class Collectable(Protocol):
    """A stream that collects itself (`ResponseStream`, `RunStream`): it knows its
    request's history and structured output, and whether it ended."""

    def collect(self) -> ChatResult: ...


def collect(events: Iterable[Event]) -> ChatResult:
    """Consume a whole event stream into a `ChatResult`; errors propagate.

    A stream of the client (`Collectable`) collects itself, so the result is the one
    its `collect()` gives: with `history`, `parsed`, and an error for an answer that
    did not complete. Any other iterable of events gives the answer they make up,
    without `history` or `parsed`.
    """
    if isinstance(events, Collectable):
        return events.collect()
    _check_events(events)
    accumulator = ChatAccumulator()
    for event in events:
        accumulator.add(event)
    return accumulator.snapshot()
