"""What the SDK reports about its work: OpenTelemetry spans, and the retry hook.

**Spans** follow the OpenTelemetry GenAI semantic conventions (their development
version; see docs/behaviour.md#traces for every attribute and span). They are made
when the application has imported ``opentelemetry.trace`` (it does, to configure a
tracer provider; the ``[otel]`` extra installs the API). This module never imports
OpenTelemetry itself, so without it nothing is imported and each hook costs one
dictionary lookup; with it but without a provider the API's spans record nothing.

- each request is a ``chat {model}`` span (kind CLIENT) from before it is sent until
  its answer ends (completed, failed, or closed), retries included, each retry an
  event;
- a `Client.run` is an ``invoke_agent`` span, parent of its requests' spans and of an
  ``execute_tool {name}`` span per tool call;
- a batch (`Client.map`) is an ``llmx_sync.batch`` span, parent of its items' spans.

Prompt and answer text (``gen_ai.input.messages``, ``gen_ai.output.messages``,
``gen_ai.system_instructions``, tool arguments and results) are recorded only when
the user opts in: `capture_content(True)`, or the environment variable
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``.

Retries reach the request's span through `retry_hooks` (the transport's hook).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import urlsplit

from .errors import DeadlineExceededError, StreamIdleTimeoutError, UnexpectedStatusError
from .events import Completed, Event, OutputTextDelta, ToolResult
from .models import (
    FunctionCall,
    FunctionCallOutput,
    InputImage,
    InputText,
    Message,
    OutputText,
    Reasoning,
    ResponseItem,
)
from .retry_hooks import listen

if TYPE_CHECKING:
    from .body import BodyReader
    from .wire import WireParser

__all__ = ["OFF", "RunTrace", "batch_trace", "capture_content", "request_trace", "run_trace"]

CAPTURE_ENV: Final = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_TRACER_NAME: Final = "llmx_sync"
# The response's model, from the first bytes of the body (every chunk has it, and no
# event carries it): a top-level key, since quotes inside JSON strings are escaped.
_MODEL_KEY: Final = re.compile(rb'"model"\s*:\s*"((?:[^"\\]|\\.){1,256})"')
_MODEL_SNIFF_BYTES: Final = 4096

_T = TypeVar("_T")

_content: list[bool | None] = [None]  # capture_content's choice; None: the environment's


def capture_content(enabled: bool | None) -> None:
    """Record prompt and answer text on spans (True), never (False), or as
    ``$OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` says (None, the default)."""
    if enabled is not None and not isinstance(enabled, bool):
        raise TypeError(f"capture_content: expected True, False or None, got {enabled!r}")
    _content[0] = enabled


def _capturing() -> bool:
    chosen = _content[0]
    if chosen is not None:
        return chosen
    return os.environ.get(CAPTURE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


# --- spans -------------------------------------------------------------------


def _retry_event(attempt: int, status: int | None, reason: str, delay: float) -> None:
    """A retry as an event of the current span (the request's, see `_Request.call`)."""
    trace = _trace_api()
    if trace is None:
        return
    span = trace.get_current_span()
    if span.is_recording():
        attributes: dict[str, Any] = {"llmx_sync.retry.attempt": attempt, "llmx_sync.retry.delay": delay,
                                      "llmx_sync.retry.reason": reason}
        if status is not None:
            attributes["http.response.status_code"] = status
        span.add_event("retry", attributes)


listen(_retry_event)


def _trace_api() -> ModuleType | None:
    """``opentelemetry.trace`` when the application has imported it; never imports it."""
    return sys.modules.get("opentelemetry.trace")


def _tracer(trace: ModuleType) -> Any:
    from . import __version__

    return trace.get_tracer(_TRACER_NAME, __version__)


def error_type(error: BaseException) -> str:
    """`error.type` of a failed operation: the HTTP status of a status error, ``timeout``
    for the idle timeout and the total timeout, else the exception's class name."""
    if isinstance(error, UnexpectedStatusError) and error.status != 200:
        return str(error.status)
    if isinstance(error, (StreamIdleTimeoutError, DeadlineExceededError, TimeoutError)):
        return "timeout"
    return type(error).__name__


class _Span:
    """One span and what ends it; every method is safe to call after it ended."""

    def __init__(self, trace: ModuleType, span: Any) -> None:
        self._trace = trace
        self.span = span
        self._lock = threading.Lock()
        self._ended = False

    @contextlib.contextmanager
    def current(self) -> Iterator[None]:
        """This span as the current one (in this thread) within the block."""
        with self._trace.use_span(self.span, end_on_exit=False, record_exception=False,
                                  set_status_on_exception=False):
            yield

    def end(self, error: BaseException | None = None, *, kind: str | None = None) -> None:
        """End the span, failed with `error` (or an `error.type` of `kind`) if given."""
        with self._lock:
            if self._ended:
                return
            self._ended = True
        if error is not None or kind is not None:
            self.span.set_attribute("error.type", kind or error_type(error))  # type: ignore[arg-type]
            status = self._trace.Status(self._trace.StatusCode.ERROR, str(error) if error else kind)
            self.span.set_status(status)
            if error is not None:
                self.span.record_exception(error)
        self.span.end()


class _Off:
    """What every trace is when nothing records: each method does nothing."""

    @contextlib.contextmanager
    def current(self) -> Iterator[None]:
        yield

    def call(self, send: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        return send(*args, **kwargs)

    def follow(self, body: BodyReader, parser: WireParser) -> tuple[BodyReader, WireParser]:
        return body, parser

    def end(self, *args: Any, **kwargs: Any) -> None:
        pass

    def tool(self, call: FunctionCall) -> contextlib.AbstractContextManager[Callable[[ToolResult], None]]:
        return contextlib.nullcontext(_ignore_result)


def _ignore_result(result: ToolResult) -> None:
    pass


OFF: Final = _Off()


def _server(base_url: str) -> dict[str, Any]:
    try:
        parts = urlsplit(base_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return {}
    return {"server.address": parts.hostname or "", "server.port": port}


def _request_attributes(provider: Any, settings: Any, prompt: Any, capture: bool) -> dict[str, Any]:
    attributes: dict[str, Any] = {"gen_ai.operation.name": "chat",
                                  "gen_ai.provider.name": provider.name,
                                  "gen_ai.request.stream": True,
                                  **_server(provider.connection.base_url)}
    for key, name in (("gen_ai.request.model", "model"), ("gen_ai.request.max_tokens", "max_tokens"),
                      ("gen_ai.request.temperature", "temperature"), ("gen_ai.request.top_p", "top_p"),
                      ("gen_ai.request.seed", "seed")):
        value = getattr(settings, name, None)
        if value is not None:
            attributes[key] = value
    stop = getattr(settings, "stop", None)
    if stop:
        attributes["gen_ai.request.stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if getattr(settings, "response_format", None) is not None or prompt.output_schema is not None:
        attributes["gen_ai.output.type"] = "json"
    if capture:
        attributes["gen_ai.input.messages"] = _json(input_messages(prompt.input))
        if prompt.instructions is not None:
            attributes["gen_ai.system_instructions"] = _json([{"type": "text", "content": prompt.instructions}])
    return attributes


class _Request(_Span):
    """A request's span: `sending()` around the transport's send (its retries become
    events of this span), then `follow()` the body and parser to end it with the answer."""

    def __init__(self, trace: ModuleType, span: Any, capture: bool) -> None:
        super().__init__(trace, span)
        self._capture = capture
        self._started = time.monotonic()
        self._first_chunk = False
        self._head = b""
        self._text: list[str] = []
        self._completed: Completed | None = None

    def call(self, send: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """`send(*args, **kwargs)` with this span current (the transport's retries
        become its events); a failure ends it."""
        try:
            with self.current():
                return send(*args, **kwargs)
        except BaseException as exc:
            self.end(exc)
            raise

    def follow(self, body: BodyReader, parser: WireParser) -> tuple[BodyReader, WireParser]:
        return _TracedBody(body, self), _TracedParser(parser, self)

    def bytes(self, data: bytes) -> None:
        if len(self._head) < _MODEL_SNIFF_BYTES and data:
            self._head += data[:_MODEL_SNIFF_BYTES]
            found = _MODEL_KEY.search(self._head)
            if found is not None:
                self.span.set_attribute("gen_ai.response.model", json.loads(b'"' + found.group(1) + b'"'))
                self._head = b"x" * _MODEL_SNIFF_BYTES  # found: look no further

    def events(self, events: Sequence[Event]) -> None:
        if events and not self._first_chunk:
            self._first_chunk = True
            self.span.set_attribute("gen_ai.response.time_to_first_chunk", time.monotonic() - self._started)
        for event in events:
            if self._capture and type(event) is OutputTextDelta:
                self._text.append(event.delta)
            elif isinstance(event, Completed):
                self._completed = event

    def finished(self, error: BaseException | None) -> None:
        """The answer is over: complete (no error, `Completed` seen) or failed."""
        completed = self._completed
        if completed is not None:
            span = self.span
            if completed.response_id:
                span.set_attribute("gen_ai.response.id", completed.response_id)
            if completed.finish_reason is not None:
                span.set_attribute("gen_ai.response.finish_reasons", [completed.finish_reason])
            usage = completed.token_usage
            if usage is not None:
                span.set_attribute("gen_ai.usage.input_tokens", usage.input_tokens)
                span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)
                if usage.cached_input_tokens:
                    span.set_attribute("gen_ai.usage.cache_read.input_tokens", usage.cached_input_tokens)
                if usage.reasoning_output_tokens:
                    span.set_attribute("gen_ai.usage.reasoning.output_tokens", usage.reasoning_output_tokens)
            if self._capture:
                message = {"role": "assistant", "parts": [{"type": "text", "content": "".join(self._text)}],
                           "finish_reason": completed.finish_reason or ""}
                span.set_attribute("gen_ai.output.messages", _json([message]))
        self.end(error, kind=None if error is not None or completed is not None else "cancelled")


class _TracedParser:
    """The wire's parser, with the request's span watching what it returns."""

    __slots__ = ("_parser", "_request")

    def __init__(self, parser: WireParser, request: _Request) -> None:
        self._parser, self._request = parser, request

    @property
    def done(self) -> bool:
        return self._parser.done

    @property
    def error(self) -> Any:
        return self._parser.error

    def feed(self, data: bytes) -> list[Event]:
        self._request.bytes(data)
        return self._seen(self._parser.feed(data))

    def finish(self) -> list[Event]:
        return self._seen(self._parser.finish())

    def _seen(self, events: list[Event]) -> list[Event]:
        request = self._request
        request.events(events)
        if self._parser.done:
            request.finished(self._parser.error)
        return events


class _TracedBody:
    """The response body, ending the request's span when the reader lets go of it
    without the parser having finished: the body broke, timed out, or was closed."""

    __slots__ = ("_body", "_request", "_problem")

    def __init__(self, body: BodyReader, request: _Request) -> None:
        self._body, self._request = body, request
        self._problem: BaseException | None = None

    @property
    def complete(self) -> bool:
        return self._body.complete

    @property
    def resumable(self) -> bool:
        return self._body.resumable

    def read(self, size: int = 0) -> bytes:
        try:
            return self._body.read(size)
        except BaseException as exc:
            self._problem = exc
            raise

    def set_timeout(self, seconds: float) -> None:
        self._body.set_timeout(seconds)

    def shutdown(self) -> None:
        self._request.finished(None)  # closed by the caller: over, and not complete
        self._body.shutdown()

    def finish(self) -> None:
        self._body.finish()
        problem = self._problem
        # The reader stops reading without an exception of the body's only when the
        # timeout or the deadline has passed.
        self._request.finished(problem if problem is not None else TimeoutError("no answer within the timeout"))


def request_trace(provider: Any, settings: Any, prompt: Any) -> _Request | _Off:
    """The span of one request about to be sent (`OFF` when nothing records)."""
    trace = _trace_api()
    if trace is None:
        return OFF
    tracer = _tracer(trace)
    capture = _capturing()
    attributes = _request_attributes(provider, settings, prompt, capture)
    model = attributes.get("gen_ai.request.model")
    span = tracer.start_span(f"chat {model}" if model else "chat", kind=trace.SpanKind.CLIENT,
                             attributes=attributes)
    if not span.is_recording():
        return OFF
    return _Request(trace, span, capture)


class _Run(_Span):
    """A tool loop's span: its requests' spans are made while it is current
    (`current()`), its tools' as its children, in their threads (`tool`)."""

    def __init__(self, trace: ModuleType, span: Any, capture: bool) -> None:
        super().__init__(trace, span)
        self._capture = capture

    @contextlib.contextmanager
    def tool(self, call: FunctionCall) -> Iterator[Callable[[ToolResult], None]]:
        """A span for running `call` (in the tool's thread); the block calls the
        function it gets with the call's `ToolResult`."""
        trace = self._trace
        attributes: dict[str, Any] = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": call.name,
                                      "gen_ai.tool.call.id": call.call_id, "gen_ai.tool.type": "function"}
        if self._capture:
            attributes["gen_ai.tool.call.arguments"] = call.arguments
        context = trace.set_span_in_context(self.span)
        span = _tracer(trace).start_span(f"execute_tool {call.name}", context=context,
                                         kind=trace.SpanKind.INTERNAL, attributes=attributes)
        tool = _Span(trace, span)

        def result(outcome: ToolResult) -> None:
            if self._capture and outcome.error is None:
                span.set_attribute("gen_ai.tool.call.result", outcome.output)
            tool.end(kind=None if outcome.error is None else _tool_error_type(outcome.error))

        try:
            yield result
        except BaseException as exc:
            tool.end(exc)
            raise
        finally:
            tool.end()


def _tool_error_type(error: str) -> str:
    """A tool result's error text as `error.type`: the exception's class name when the
    text names one (``error: ValueError: …``), else ``tool_error``."""
    found = re.match(r"error: ([A-Za-z_][A-Za-z0-9_.]*): ", error)
    return found.group(1) if found else "tool_error"


RunTrace = _Run | _Off


def run_trace(provider: Any, settings: Any) -> RunTrace:
    """The span of a tool loop about to start (`OFF` when nothing records)."""
    trace = _trace_api()
    if trace is None:
        return OFF
    attributes: dict[str, Any] = {"gen_ai.operation.name": "invoke_agent",
                                  "gen_ai.provider.name": provider.name}
    model = getattr(settings, "model", None)
    if model is not None:
        attributes["gen_ai.request.model"] = model
    span = _tracer(trace).start_span("invoke_agent", kind=trace.SpanKind.INTERNAL, attributes=attributes)
    if not span.is_recording():
        return OFF
    return _Run(trace, span, _capturing())


class _BatchTrace(_Span):
    def end(self, error: BaseException | None = None, *, kind: str | None = None, summary: Any = None) -> None:
        if summary is not None:
            for name in ("items", "failed", "resumed", "input_tokens", "output_tokens", "retries", "rate_limited"):
                self.span.set_attribute(f"llmx_sync.batch.{name}", getattr(summary, name))
        super().end(error, kind=kind)


def batch_trace(provider_name: str) -> _BatchTrace | _Off:
    """The span of a batch (`OFF` when nothing records)."""
    trace = _trace_api()
    if trace is None:
        return OFF
    span = _tracer(trace).start_span("llmx_sync.batch", kind=trace.SpanKind.INTERNAL,
                                     attributes={"gen_ai.provider.name": provider_name})
    if not span.is_recording():
        return OFF
    return _BatchTrace(trace, span)


# --- content -----------------------------------------------------------------


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def input_messages(items: Sequence[ResponseItem]) -> list[dict[str, Any]]:
    """A conversation as the conventions' input messages (``{"role", "parts"}``): text,
    images (as a part naming the modality), tool calls and their outputs, reasoning."""
    messages: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, Message):
            parts: list[dict[str, Any]] = []
            for part in item.content:
                if isinstance(part, (InputText, OutputText)):
                    parts.append({"type": "text", "content": part.text})
                elif isinstance(part, InputImage):
                    parts.append({"type": "image", "modality": "image"})
            messages.append({"role": item.role, "parts": parts})
        elif isinstance(item, FunctionCall):
            messages.append({"role": "assistant", "parts": [{"type": "tool_call", "id": item.call_id,
                                                             "name": item.name, "arguments": item.arguments}]})
        elif isinstance(item, FunctionCallOutput):
            messages.append({"role": "tool", "parts": [{"type": "tool_call_response", "id": item.call_id,
                                                        "response": item.output.content}]})
        elif isinstance(item, Reasoning) and item.content:
            text = "".join(getattr(part, "text", "") for part in item.content)
            messages.append({"role": "assistant", "parts": [{"type": "reasoning", "content": text}]})
    return messages
