"""A stream shown live in a Jupyter notebook.

Plain blocking code: it runs in a cell although the kernel has an event loop
running, since nothing here touches asyncio. IPython is imported only when
`display_stream` is called, but this module cannot be imported without it: the
usual ``display_stream(client.stream(...))`` sends the request before
`display_stream` runs, so an error there would come after the request was sent
(and billed).

What is displayed has two forms, and the frontend picks one: Markdown, and the
same text as plain text (its ``_repr_pretty_``), which frontends without Markdown
show, and a saved notebook keeps beside the Markdown. Terminal IPython cannot
redraw an output in place (each update would be printed again, whole), so there
the answer is written out as it grows instead.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TextIO, assert_never

from .aggregate import ChatResult, Collectable, collect
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
    ReasoningContentDelta,
    ReasoningSummaryDelta,
    ReasoningSummaryPartAdded,
    RefusalDelta,
    ToolResult,
)
from .models import FunctionCall
from .settings import DELAY
from .stream import StreamLike, check_stream_like

__all__ = ["display_stream", "render_markdown"]

if importlib.util.find_spec("IPython") is None:
    raise ImportError("llmx_sync.notebook needs IPython (it draws into a Jupyter notebook): pip install ipython")

WAITING_TEXT = "*waiting for the model…*"


def display_stream(stream: StreamLike, *, throttle: float = 0.1) -> ChatResult:
    """Show the answer as live Markdown while it streams, and return it collected.

    The display is redrawn at most every `throttle` seconds (text that arrived
    meanwhile is shown when the time is up, even if the stream goes quiet), and
    once more with the complete result. Reasoning is quoted above the answer, tool
    calls are listed below it (each turn's, for a `client.run`). The stream is closed
    at the end, on an error, and on a kernel interrupt (`KeyboardInterrupt`, raised
    again). The result is the stream's own `collect()` (`parsed` included).
    """
    check_stream_like("stream", stream)
    try:
        DELAY("throttle", throttle)
        live = _LiveAnswer(_markdown_display(), throttle)
        shown = collect(_shown(stream, live))  # every turn's events: what the display shows
        result = stream.collect() if isinstance(stream, Collectable) else shown
    finally:
        stream.close()
    live.show(shown.reasoning, shown.text + shown.refusal, shown.tool_calls, final=True)
    return result


def render_markdown(reasoning: str, text: str, tool_calls: Sequence[FunctionCall],
                    tool_results: Mapping[str, str] | None = None) -> str:
    """The Markdown of an answer: quoted reasoning, the text, a list of tool calls (each
    with its result, by call id, when a `client.run` loop ran it)."""
    parts = []
    if reasoning:
        parts.append("\n".join("> " + line for line in reasoning.split("\n")))
    if text:
        parts.append(text)
    if tool_calls:
        results = tool_results or {}
        parts.append("\n".join(
            f"- tool call {_code_span(f'{c.name}({c.arguments})')}"
            + (f" → {_code_span(results[c.call_id])}" if c.call_id in results else "")
            for c in tool_calls))
    return "\n\n".join(parts)


def _code_span(text: str) -> str:
    # CommonMark: a code span's fence must be longer than any run of backticks inside.
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    fence = "`" * (longest + 1)
    return f"{fence} {text} {fence}"


class _MarkdownText:
    """Markdown to display, whose plain-text form is the same text (not IPython's
    ``<IPython.core.display.Markdown object>``)."""

    __slots__ = ("data",)

    def __init__(self, data: str) -> None:
        self.data = data

    def _repr_markdown_(self) -> str:
        return self.data

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.data)


#: Shows the Markdown of the answer so far; `final` for the complete answer.
ShowMarkdown = Callable[[str, bool], None]


def _markdown_display() -> ShowMarkdown:
    """A new display area (showing a placeholder) and the function that replaces its Markdown."""
    try:
        ipython = importlib.import_module("IPython.display")  # an optional dependency, used untyped
    except ImportError as error:
        raise ImportError("display_stream needs IPython: pip install ipython") from error
    if _in_terminal_ipython():
        return _GrowingText(sys.stdout)
    handle = ipython.display(_MarkdownText(WAITING_TEXT), display_id=True)
    if handle is None:  # IPython is installed, but this is no IPython session
        raise RuntimeError("display_stream needs a Jupyter or IPython session; "
                           "in a script, iterate over stream.text_stream instead")

    def show(markdown: str, final: bool) -> None:
        handle.update(_MarkdownText(markdown))

    return show


def _in_terminal_ipython() -> bool:
    """True in terminal IPython, whose display publisher (the base class) prints every
    update of a display as a new output; a kernel's publisher sends updates that its
    frontend applies in place."""
    shell = importlib.import_module("IPython").get_ipython()
    if shell is None:
        return False
    publisher = importlib.import_module("IPython.core.displaypub").DisplayPublisher
    return type(shell.display_pub) is publisher


class _GrowingText:
    """The answer written out as it grows, for a terminal: each redraw writes only what
    was added since the last one; when earlier text changed (a tool's result came),
    the whole answer again, on a new line."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._written = ""

    def __call__(self, markdown: str, final: bool) -> None:
        if markdown.startswith(self._written):
            self._out.write(markdown[len(self._written):])
        else:
            self._out.write("\n" + markdown)
        self._written = markdown
        if final and markdown and not markdown.endswith("\n"):
            self._out.write("\n")
        self._out.flush()


class _LiveAnswer:
    """What the display shows while the stream runs, redrawn at most every `throttle` seconds."""

    def __init__(self, show_markdown: ShowMarkdown, throttle: float) -> None:
        self._show_markdown = show_markdown
        self._throttle = throttle
        self._reasoning: list[str] = []
        self._text: list[str] = []
        self._tool_calls: list[FunctionCall] = []
        self.tool_results: dict[str, str] = {}
        self._shown_at = -math.inf
        self._behind = False  # something arrived that is not shown yet

    def add(self, event: Event) -> None:
        match event:
            case OutputTextDelta(delta=delta) | RefusalDelta(delta=delta):  # a refusal is the answer
                self._text.append(delta)
            case ReasoningContentDelta(delta=delta):
                self._reasoning.append(delta)
            case OutputItemDone(item=FunctionCall() as call):
                self._tool_calls.append(call)
            case ToolResult(call_id=call_id, output=output, error=error):
                self.tool_results[call_id] = error or output
            case OutputRejected():  # the model is asked again: its new answer replaces that one
                self._reasoning.clear()
                self._text.clear()
            case (OutputItemDone() | Created() | OutputItemAdded() | FunctionCallArgumentsDelta()
                  | ReasoningSummaryDelta() | ReasoningSummaryPartAdded() | Completed() | RateLimits()
                  | OutputJsonDelta()):
                return  # not shown while streaming (the final redraw shows the result)
            case _:
                assert_never(event)
        self._behind = True

    def seconds_to_redraw(self) -> float | None:
        """How long until the display may be redrawn; None when it is up to date."""
        if not self._behind:
            return None
        return max(0.0, self._shown_at + self._throttle - time.monotonic())

    def redraw(self) -> None:
        self.show("".join(self._reasoning), "".join(self._text), self._tool_calls)

    def show(self, reasoning: str, text: str, tool_calls: Sequence[FunctionCall], *, final: bool = False) -> None:
        self._show_markdown(render_markdown(reasoning, text, tool_calls, self.tool_results), final)
        self._shown_at = time.monotonic()
        self._behind = False


def _shown(stream: StreamLike, live: _LiveAnswer) -> Iterator[Event]:
    """The events, passed on unchanged, each one added to the live display."""
    while True:
        try:
            event = stream.next_event(timeout=live.seconds_to_redraw())
        except TimeoutError:  # quiet stream, text held back: show it now
            live.redraw()
            continue
        except StopIteration:
            return
        live.add(event)
        if live.seconds_to_redraw() == 0:
            live.redraw()
        yield event
