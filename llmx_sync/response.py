"""`ResponseStream`: the events of one answer (`stream.EventStream`) with its views.

Every event the iterator hands out, through whichever view, also goes into a
`ChatAccumulator`, so `snapshot()` is the answer so far and `collect()` the whole
answer, however much of it was already read.

With structured output asked for, the answer's JSON is followed as it streams: an
`OutputJsonDelta` with the partial object comes after each delta that changed it, and
`collect().parsed` is the validated value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from ._jsonrules import is_json
from .aggregate import ChatAccumulator, ChatResult, aggregate
from .body import BodyReader
from .errors import LISTED_PROBLEMS, OutputValidationError, StreamError, shorten
from .events import Completed, Event, FunctionCallArgumentsDelta, OutputJsonDelta, OutputTextDelta
from .models import FunctionCall, FunctionCallOutput, Message, ResponseItem
from .stream import CLOSED_MESSAGE, DEFAULT_BUFFERED_BYTES, EventStream
from .structured import UNCHANGED, OutputSchema, PartialJson, StructuredOutputMode
from .transport import Deadline, ResponseInfo

if TYPE_CHECKING:  # the protocol only (see stream.py)
    from .wire import WireParser

__all__ = ["ResponseStream", "StructuredOutput"]


class StructuredOutput:
    """The structured output of one answer: where its JSON arrives (the text, or the
    arguments of the forced call in the ``"tools"`` mode) and what it parses to."""

    def __init__(self, schema: OutputSchema, mode: StructuredOutputMode) -> None:
        self.schema = schema
        self.mode = mode  # how it was asked for (the mode the server accepted)
        self._from_call = mode == "tools"
        self._partial = PartialJson()

    def follow(self, batch: list[Event]) -> list[Event]:
        """`batch` with an `OutputJsonDelta` after its last delta of the answer's JSON
        when the partial value is due to be parsed again (at most once per batch, see
        `PartialJson`), and one before `completed` when anything came since the last one:
        the last value is the whole answer's."""
        partial = self._partial
        out: list[Event] = []
        fed = -1  # where in `out` the last delta fed is
        for event in batch:
            if isinstance(event, Completed):
                self._add_value(partial.finish(), out, len(out))
            out.append(event)
            if self._from_call:
                delta = event.delta if (isinstance(event, FunctionCallArgumentsDelta)
                                        and event.name == self.schema.name) else None
            else:
                delta = event.delta if isinstance(event, OutputTextDelta) else None
            if delta:
                partial.feed(delta)
                fed = len(out)
        if fed >= 0 and partial.due():
            self._add_value(partial.parse(), out, fed)
        return out

    @staticmethod
    def _add_value(value: object, out: list[Event], at: int) -> None:
        if value is not UNCHANGED:
            out.insert(at, OutputJsonDelta(value))

    def answer_call(self, result: ChatResult) -> FunctionCall | None:
        """The call whose arguments are the answer (the last call of the output's
        function) in the ``"tools"`` mode; None in the others, or when there is none."""
        if not self._from_call:
            return None
        calls = [call for call in result.tool_calls if call.name == self.schema.name]
        return calls[-1] if calls else None

    def parse(self, result: ChatResult) -> object:
        """The value of the whole answer; `OutputValidationError` when it does not fit.
        None when the model refused (`result.refusal`) instead of answering, as the
        openai SDK's `parsed` is then: the refusal is the answer, not a malformed one."""
        if result.refusal and not result.text and self.answer_call(result) is None:
            return None
        if not self._from_call:
            return self.schema.parse(result.text)
        call = self.answer_call(result)
        if call is None:
            raise OutputValidationError(result.text, f"the model did not call {self.schema.name!r} with the answer")
        return self.schema.parse(call.arguments)

    def rejection(self, result: ChatResult) -> OutputValidationError | None:
        """Why the whole answer does not fit; None when it does."""
        try:
            self.parse(result)
        except OutputValidationError as error:
            return error
        return None

    def reask(self, error: OutputValidationError, result: ChatResult) -> ResponseItem:
        """What tells the model that its answer (`result`) does not fit, to follow the
        answer in the history: in the ``"tools"`` mode the output of the answer's call
        (servers want every call answered), else a user message. Either lists the
        problems and asks for the whole answer again."""
        name = self.schema.name
        problems = "\n".join(f"- {problem}" for problem in error.errors[:LISTED_PROBLEMS])
        if len(error.errors) > LISTED_PROBLEMS:
            problems += f"\n- and {len(error.errors) - LISTED_PROBLEMS} more"
        call = self.answer_call(result)
        if call is not None and is_json(call.arguments):
            return FunctionCallOutput.from_text(call.call_id, f"error: these arguments do not fit the schema:\n"
                                                f"{problems}\nCall {name} again with the whole corrected answer.")
        text = f"Your answer does not fit the required JSON schema:\n{problems}\n"
        if call is not None:  # a call whose arguments are not JSON is not sent back: show them
            text += f"(The arguments of your call of {name} were: {shorten(call.arguments, 200)})\n"
        ask = (f"Call {name} with the whole corrected answer as its arguments." if self._from_call
               else "Answer again with only the whole corrected JSON.")
        return Message.user(text + ask)


class ResponseStream(EventStream):
    """The events of one streamed answer (iterate over it, once), and views of it:
    `aggregate()`, `collect()`, `text_stream` and `snapshot()`. `history` is the
    conversation the request sent; `collect().history` adds the answer to it.
    `structured_output` is what a `response_format` asked for (None without one)."""

    def __init__(self, body: BodyReader, parser: WireParser, info: ResponseInfo, *, idle_timeout: float,
                 deadline: Deadline | None = None, max_buffered_bytes: int = DEFAULT_BUFFERED_BYTES,
                 output: StructuredOutput | None = None, history: Sequence[ResponseItem] = ()) -> None:
        self._accumulator = accumulator = ChatAccumulator()
        self.structured_output = output
        self.history = list(history)

        # Called by the iterator (the caller's thread) for each batch. A closure, not a
        # method: a bound method kept by the stream would make a reference cycle, and a
        # stream dropped after a `break` must be freed (and closed) at once.
        def take(batch: list[Event]) -> list[Event]:
            if output is not None:
                batch = output.follow(batch)
            accumulator.add_all(batch)
            return batch

        super().__init__(body, parser, info, idle_timeout=idle_timeout, deadline=deadline,
                         max_buffered_bytes=max_buffered_bytes, on_batch=take)

    def aggregate(self, mode: str = "aggregated") -> Iterator[Event]:
        """The events still to come, as `llmx_sync.aggregate` gives them (see there)."""
        return aggregate(self, mode)

    def collect(self) -> ChatResult:
        """The whole answer (text, reasoning, tool calls, usage; the structured output in
        `parsed`), reading what is left of it, then close. Events already read through
        any view count too. Raises the stream's error, `StreamError` when the stream was
        closed before its end, and `OutputValidationError` when structured output was
        asked for and the answer does not fit."""
        with self:
            for _ in self:
                pass
        if self.error is not None:
            raise self.error
        if not self.completed:
            raise StreamError(CLOSED_MESSAGE)
        result = self.snapshot()
        if self.structured_output is not None:
            result.parsed = self.structured_output.parse(result)
        return result

    def snapshot(self) -> ChatResult:
        """Everything received so far, whichever view read it (no waiting, no I/O)."""
        result = self._accumulator.snapshot()
        mode = None if self.structured_output is None else self.structured_output.mode
        return dataclasses.replace(result, history=[*self.history, *result.items], output_mode=mode)

    @property
    def text_stream(self) -> Iterator[str]:
        """Only the answer's text, delta by delta."""
        return (event.delta for event in self if isinstance(event, OutputTextDelta))
