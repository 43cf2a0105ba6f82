"""`Client`: the SDK's entry point. It builds the request, sends it with retries and
returns the `ResponseStream` of the answer; `run` loops over tool calls.

Data flows one way: the provider's wire builds the body (`wire.Wire.build_request`),
`transport.Transport.send` sends it, and `response.ResponseStream` reads the answer
(body reader, the wire's parser, reader thread, queue, iterator, views).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import os
import re
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, overload
from urllib.parse import urlsplit

import requests
from requests.structures import CaseInsensitiveDict

from ._jsonrules import check_unicode, compact_json, json_type_name
from .body import open_body
from .errors import ClientClosedError, InvalidInputError, UnexpectedStatusError
from .functions import PythonTool, tool
from .models import ResponseItem
from .negotiation import Learned, ServerMemory, is_llama_server, mode_candidates, refuses_mode, refuses_tool_choice
from .prompt import Prompt, checked_tools
from .providers import Provider, default_provider
from .response import ResponseStream, StructuredOutput
from .runner import RunStream
from .settings import SECONDS, Quirks, RequestOptions, as_part, merge_options, options_from
from .sse import DEFAULT_MAX_EVENT_BYTES
from .stream import DEFAULT_BUFFERED_BYTES
from .structured import StructuredOutputMode, requested_output
from .telemetry import request_trace, run_trace
from .tools import FunctionTool
from .transport import Deadline, ResponseInfo, Transport, display_url
from .wire import WIRES

if TYPE_CHECKING:
    from .batch import BatchPrompt, BatchRun
    from .concurrency import Concurrency

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "Client", "PromptLike"]

PromptLike = Prompt | str | Sequence[ResponseItem | Mapping[str, Any]]

logger = logging.getLogger("llmx_sync")

# Headers whose values the DEBUG log may show: the SDK's own. Every other value
# (keys, provider and caller headers) is logged as "***".
_OWN_HEADERS: Final = ("User-Agent", "Accept-Encoding", "Accept", "Content-Type", "x-openai-subagent")
# How many sets of keyword settings `Client.options` keeps.
_OPTIONS_CACHE_SIZE: Final = 64
_PLAIN: Final = frozenset({str, int, float, bool, type(None)})
# A header that carries a credential, by its name.
_CREDENTIAL_HEADER: Final = re.compile(r"auth|key|token", re.IGNORECASE)


@functools.cache
def user_agent() -> str:
    from . import __version__  # here, not at the top: the package imports this module first

    return f"llmx_sync/{__version__}"


def as_prompt(prompt: PromptLike) -> Prompt:
    """A `Prompt`, a user message's text, a list of items (or their dicts), or a list of
    Chat Completions messages, as a `Prompt`."""
    if isinstance(prompt, Prompt):
        return prompt
    if isinstance(prompt, str):
        return Prompt.from_text(prompt)
    if isinstance(prompt, (list, tuple)):
        return Prompt(input=prompt)  # (Prompt reads dicts and messages too)
    raise InvalidInputError("prompt", "expected a Prompt, the text of a user message, or a list of items or of "
                            f"Chat Completions messages, got {json_type_name(prompt)}")


def status_hint(error: UnexpectedStatusError, *, base_url: str, credential_sent: bool,
                key_variable: str | None) -> str | None:
    """What is likely wrong, for the most common mistakes: a base URL without ``/v1``
    (404), no key sent (401/403, or a proxy's 5xx that says so). `key_variable`: the
    variable the provider would have sent a key from, had it been set."""
    base = base_url.rstrip("/")
    if error.status == 404 and not urlsplit(base).path.endswith("/v1"):
        return f"OpenAI-compatible servers serve their API under /v1: try base_url={display_url(base + '/v1')!r}"
    says_key = re.search(r"api[ _-]?key|auth", error.message or error.body, re.IGNORECASE) is not None
    if not credential_sent and (error.status in (401, 403) or (error.status >= 500 and says_key)):
        where = (f"set ${key_variable}" if key_variable is not None
                 else "give the provider one (Provider(..., api_key=...) or env_key=\"VARIABLE\")")
        return f"No API key was sent: pass Client(api_key=...) or {where}"
    return None


def optional_key_variable(provider: Provider) -> str | None:
    """The variable a key is sent from when it is set, for a provider that sends none
    otherwise (``Client(base_url=...)``, ``$LLMX_BASE_URL``)."""
    connection = provider.connection
    return connection.env_key if connection.env_key and not connection.env_key_required else None


class Client:
    """Streams answers from one provider: `provider`, else a ``custom`` one at
    `base_url`, else `providers.default_provider()`; `api_key` replaces its key. A
    ``custom`` provider without `api_key` sends ``$LLMX_API_KEY`` when it is set, and no
    key otherwise, as the CLI's ``--base-url`` does (never ``$OPENAI_API_KEY``: that key
    must not go to an arbitrary server).

    `timeout` is the default total time of a request (retries, waiting for headers and
    the whole body; None: no limit), `session` a ``requests.Session`` that brings TLS
    settings (``verify``, ``cert``), proxies and adapters (the caller keeps it),
    `max_event_bytes` the largest SSE event or line accepted, and `max_buffered_bytes`
    how much of a body a stream holds when its consumer does not keep up.

    Safe to share between threads (e.g. one module-level client in a Flask app): it
    holds no per-request state, and its connection pool is thread-safe. After
    ``os.fork()`` a child uses new connections.

    `close()` (or leaving a ``with`` block) closes the streams still open, ends retry
    waits in progress, and closes the connection pool. A provider whose server the
    SDK runs (`Provider.builtin("local")`) keeps that server running while a client
    using it is open; the last one to close stops it.
    """

    def __init__(
        self,
        provider: Provider | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        session: requests.Session | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        max_buffered_bytes: int = DEFAULT_BUFFERED_BYTES,
        transport: Transport | None = None,
    ) -> None:
        if provider is not None and not isinstance(provider, Provider):
            raise InvalidInputError("provider", f"expected a Provider, got {type(provider).__name__}")
        if provider is None and base_url is not None and api_key is not None:  # (one Provider made, not two)
            provider = Provider("custom", base_url, api_key=api_key, env_key=None, env_key_required=False)
            api_key = None
        elif provider is None and base_url is not None:  # `api_key` wins below
            provider = Provider("custom", base_url, env_key="LLMX_API_KEY", env_key_required=False)
        elif provider is None:
            provider = default_provider()
        elif base_url is not None:
            provider = provider.replace(base_url=base_url)
        if api_key is not None:
            provider = provider.replace(api_key=api_key, env_key=None)
        for name, value in (("max_event_bytes", max_event_bytes), ("max_buffered_bytes", max_buffered_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1024 <= value <= sys.maxsize:
                raise InvalidInputError(name, f"expected a number of bytes from 1024 to {sys.maxsize}, got {value!r}")
        if session is not None and not isinstance(session, requests.Session):
            raise InvalidInputError("session", f"expected a requests.Session, got {type(session).__name__}")
        if transport is not None and not isinstance(transport, Transport):
            raise InvalidInputError("transport", f"expected a llmx_sync.transport.Transport, got "
                                    f"{type(transport).__name__}")
        self.provider = provider
        # The client's own defaults, between the provider's and each call's.
        self._defaults = RequestOptions(timeout=timeout) if timeout is not None else None
        self._max_event_bytes = max_event_bytes
        self._max_buffered_bytes = max_buffered_bytes
        self._transport = transport if transport is not None else Transport(session)
        self._owns_transport = transport is None
        self._closed = threading.Event()  # also cancels retry waits
        self._streams: weakref.WeakSet[ResponseStream | RunStream] = weakref.WeakSet()
        self._lock = threading.Lock()
        # keywords -> (the provider's defaults, the client's, the settings they made)
        self._options_cache: dict[frozenset[tuple[str, type, Any]],
                                  tuple[RequestOptions, RequestOptions | None, RequestOptions]] = {}
        # What each server was found to accept (structured-output mode, forced-tool form).
        self._memory = ServerMemory()
        self._server = provider.server
        if self._server is not None:
            if not (callable(getattr(self._server, "acquire", None)) and callable(getattr(self._server, "release", None))):
                raise InvalidInputError("provider.server", "expected a llmx_sync.local.LocalServer, got "
                                        f"{type(self._server).__name__}")
            self._server.acquire()

    def options(self, options: RequestOptions | None = None, **overrides: Any) -> RequestOptions:
        """The settings a request with these arguments uses: the provider's defaults,
        the client's (`timeout`), then `options`, then the keyword `overrides` (see
        `RequestOptions`)."""
        if options is not None:
            options = as_part(RequestOptions, "options", options)
            return merge_options(self.provider.defaults, self._defaults, options, options_from(overrides))
        # The same keywords give the same (immutable) settings: kept, as making and
        # checking them twice cost a request ~0.1 ms. Only plain values count (a dict or
        # an object could change before the next call), each with its type in the key
        # (True == 1, and 1 is no bool).
        if not all(type(value) in _PLAIN for value in overrides.values()):
            return merge_options(self.provider.defaults, self._defaults, options_from(overrides))
        key = frozenset((name, type(value), value) for name, value in overrides.items())
        layers = (self.provider.defaults, self._defaults)  # (`provider` may be replaced)
        kept = self._options_cache.get(key)
        if kept is not None and kept[0] is layers[0] and kept[1] is layers[1]:
            return kept[2]
        settings = merge_options(*layers, options_from(overrides))
        if len(self._options_cache) >= _OPTIONS_CACHE_SIZE:
            self._options_cache.clear()
        self._options_cache[key] = (*layers, settings)
        return settings

    def request_body(self, prompt: PromptLike, *, options: RequestOptions | None = None,
                     **overrides: Any) -> dict[str, Any]:
        """The JSON body `stream` would send first for these arguments (with what the
        client has learned about the server so far: see `negotiation.py`)."""
        settings = self.options(options, **overrides)
        learned = self._memory.get(self.provider.connection.base_url, settings.model)
        quirks = _shape(self.provider.quirks, learned, mode_candidates(self.provider.quirks, learned)[0])
        return WIRES[self.provider.connection.wire_api].build_request(as_prompt(prompt), settings, quirks)

    @overload
    def stream(self, prompt: PromptLike, *, max_output_retries: int, options: RequestOptions | None = None,
               **overrides: Any) -> RunStream: ...

    @overload
    def stream(self, prompt: PromptLike, *, options: RequestOptions | None = None,
               **overrides: Any) -> ResponseStream: ...

    def stream(self, prompt: PromptLike, *, max_output_retries: int | None = None,
               options: RequestOptions | None = None, **overrides: Any) -> ResponseStream | RunStream:
        """Send the request (retrying transient failures) and return the answer's stream.

        `prompt` is a `Prompt`, a user message's text, a list of items (or their dicts),
        or a list of Chat Completions messages (``[{"role": "user", "content": "hi"}]``).
        Settings (`model`, `max_tokens`, `temperature`, `timeout`,
        `response_format`, …: see `RequestOptions`) come from the provider's defaults,
        the client's, then `options`, then the keyword arguments. Errors in the prompt,
        the settings or the environment (`InvalidInputError`, `UnsupportedOperationError`,
        `EnvVarError`) are raised before any I/O.

        `max_output_retries=N` (with `response_format`) asks the model again, up to N
        times, when its answer does not fit the schema: the answer is then a `RunStream`
        of the attempts (one iterator; an `OutputRejected` event before each new
        attempt; `collect()` the accepted answer, `history` every attempt), without
        tools to run. When no attempt fits, the iterator and `collect()` raise the last
        one's `OutputValidationError`.
        """
        if self._closed.is_set():
            raise ClientClosedError()
        settings = self.options(options, **overrides)
        base = as_prompt(prompt)
        if max_output_retries is None:
            return self._stream(base, settings)
        return self._chain(base, settings, settings, [], max_turns=1, parallel=False,
                           max_output_retries=max_output_retries, run_tools=False)

    def _stream(self, prompt: Prompt, settings: RequestOptions, deadline: Deadline | None = None) -> ResponseStream:
        """Send the request; `deadline` (a run's) replaces the one `settings.timeout` starts."""
        provider = self.provider
        wire = WIRES[provider.connection.wire_api]
        headers = self._headers(settings)
        if "Authorization" in headers and urlsplit(provider.connection.base_url).username is not None:
            # requests would send the URL's user and password as Basic auth in the key's place.
            raise InvalidInputError("base_url", "has a user name and password, and the provider has an API key: "
                                    "requests would send the password in place of the key; keep one of them")
        schema = requested_output(prompt.output_schema, settings.response_format)
        if deadline is None and settings.timeout is not None:
            deadline = Deadline(settings.timeout)
        credential_sent = any(_CREDENTIAL_HEADER.search(name) for name in headers)

        def send(quirks: Quirks) -> requests.Response:
            body = encoded_body(wire.build_request(prompt, settings, quirks))
            return self._transport.send(
                provider.connection.url(),
                headers=headers,
                body=body,
                max_retries=settings.request_max_retries,
                max_retry_delay=settings.max_retry_delay,
                connect_timeout=settings.connect_timeout,
                read_timeout=settings.idle_timeout,
                deadline=deadline,
                hint=functools.partial(status_hint, base_url=provider.connection.base_url,
                                       credential_sent=credential_sent,
                                       key_variable=optional_key_variable(provider)),
                log_headers={name: headers[name] for name in _OWN_HEADERS if name in headers},
                cancel=self._closed,
            )

        # One span for the request, whatever shapes it takes to be accepted.
        trace = request_trace(provider, settings, prompt)
        response, mode = trace.call(self._send_in_an_accepted_shape, prompt, settings, send,
                                    has_output=schema is not None)
        output = None if schema is None else StructuredOutput(schema, mode)
        try:
            parser = wire.parser(response.headers, max_event_bytes=self._max_event_bytes)
        except BaseException as exc:
            response.close()
            trace.end(exc)
            raise
        stream = ResponseStream(*trace.follow(open_body(response), parser), ResponseInfo.of(response),
                                idle_timeout=settings.idle_timeout, deadline=deadline,
                                max_buffered_bytes=self._max_buffered_bytes, output=output, history=prompt.input)
        self._track(stream)
        return stream

    def _send_in_an_accepted_shape(self, prompt: Prompt, settings: RequestOptions,
                                   send: Callable[[Quirks], requests.Response], *,
                                   has_output: bool) -> tuple[requests.Response, StructuredOutputMode]:
        """Send the request in a shape the server accepts (see `negotiation.py`): with
        structured output and no mode set by the provider, a refusal of one mode sends it
        once more in the next; the mode that worked is remembered. Returns the 2xx
        response and its mode. Each request has its own retries, all within the
        request's `timeout`; a refusal in the last mode is raised."""
        base_url = self.provider.connection.base_url
        modes = mode_candidates(self.provider.quirks, self._memory.get(base_url, settings.model))
        if not has_output:
            modes = modes[:1]  # (the mode changes nothing in the request)
        for mode in modes:
            try:
                response = self._send_forcing(prompt, settings, send, mode, has_output=has_output)
            except UnexpectedStatusError as error:
                if mode == modes[-1] or not refuses_mode(error):
                    raise
                logger.info("%s refuses structured output in the %r mode (%s); trying the next mode",
                            display_url(base_url), mode, error.message or error.status)
                continue
            if has_output and self.provider.quirks.structured_output is None:
                self._memory.learn(base_url, settings.model, structured_output=mode)
            return response, mode
        raise AssertionError("unreachable: the last mode returns or raises")

    def _send_forcing(self, prompt: Prompt, settings: RequestOptions, send: Callable[[Quirks], requests.Response],
                      mode: StructuredOutputMode, *, has_output: bool) -> requests.Response:
        """Send in `mode`. A request that forces a function, to a server not known to need
        ``"required"``, goes with the forcing object; when the answer shows that the
        server ignored it (llama-server) or the server refuses it, it is sent once more
        with ``"required"`` and that function alone, and the server is remembered."""
        quirks, base_url = self.provider.quirks, self.provider.connection.base_url
        shape = _shape(quirks, self._memory.get(base_url, settings.model), mode)
        # Only a tool_choice or structured output can force (the cheap test first: the
        # other builds the body twice).
        unsure = (shape.forced_tool_choice is None and (settings.tool_choice is not None or has_output)
                  and self._forces_function(prompt, settings, shape))
        try:
            response = send(shape)
        except UnexpectedStatusError as error:
            self._learn_from(error.headers, settings.model)
            if not (unsure and refuses_tool_choice(error)):
                raise
            logger.info("%s refuses the object forcing a function (%s); sending \"required\" with that function "
                        "alone", display_url(base_url), error.message or error.status)
            self._memory.learn(base_url, settings.model, forced_tool_choice="required")
            return send(dataclasses.replace(shape, forced_tool_choice="required"))
        if self._learn_from(response.headers, settings.model):
            if unsure:  # the object was ignored: this answer need not call the function
                response.close()
                logger.info("%s is llama-server, which ignores the object forcing a function; sending "
                            "\"required\" with that function alone", display_url(base_url))
                return send(dataclasses.replace(shape, forced_tool_choice="required"))
        return response

    def _learn_from(self, headers: Mapping[str, str], model: str | None) -> bool:
        """Remember that the server needs ``"required"`` when its headers say it is
        llama-server and the provider left the form open; whether they said so."""
        if self.provider.quirks.forced_tool_choice is not None or not is_llama_server(headers):
            return False
        self._memory.learn(self.provider.connection.base_url, model, forced_tool_choice="required")
        return True

    def _forces_function(self, prompt: Prompt, settings: RequestOptions, quirks: Quirks) -> bool:
        """Whether the request forces a function: the forced-tool form then changes its body."""
        build = WIRES[self.provider.connection.wire_api].build_request
        return (build(prompt, settings, dataclasses.replace(quirks, forced_tool_choice="object"))
                != build(prompt, settings, dataclasses.replace(quirks, forced_tool_choice="required")))

    def run(self, prompt: PromptLike, *, tools: Sequence[Callable[..., Any] | PythonTool] = (),
            max_turns: int = 10, parallel: bool = True, max_output_retries: int = 0,
            tool_timeout: float | None = None,
            options: RequestOptions | None = None, **overrides: Any) -> RunStream:
        """Run a tool-using conversation: call the model, run the Python functions it
        calls, send their results, call it again, until an answer has no tool calls
        (see `runner.RunStream`). `tools` are functions (made into tools with
        `llmx_sync.tool`, ``async def`` ones too) or tools already made with it; the
        prompt's own tools are offered too. At most `max_turns` model calls
        (`MaxTurnsExceededError`, with the history, when the model still wants tools);
        `parallel` runs the calls of one turn at once; a call still running after
        `tool_timeout` seconds becomes an error output for the model (None: no limit).
        `max_output_retries` re-asks for a structured answer that does not fit, as in
        `stream` (those calls do not count against `max_turns`). Settings as in `stream`;
        a `timeout` bounds the whole run (every turn and the tools). They are checked,
        and the first request sent, before this returns.
        """
        if self._closed.is_set():
            raise ClientClosedError()
        if isinstance(max_turns, bool) or not isinstance(max_turns, int) or max_turns < 1:
            raise InvalidInputError("max_turns", f"expected a positive integer, got {max_turns!r}")
        if not isinstance(parallel, bool):
            raise InvalidInputError("parallel", f"expected True or False, got {parallel!r}")
        if tool_timeout is not None:
            SECONDS("tool_timeout", tool_timeout)
        base = as_prompt(prompt)
        python_tools = _python_tools(tools)
        names = [spec.name for spec in base.tools if isinstance(spec, FunctionTool)]
        duplicates = sorted({tool.name for tool in python_tools} & set(names))
        if duplicates:
            raise InvalidInputError("tools", f"{duplicates[0]!r} is also a tool of the prompt; give each tool "
                                    "one name")
        first_turn = self.options(options, **overrides)
        # A forced `tool_choice` is for the first turn: kept, it would make every turn call
        # a tool until max_turns. The later turns leave it to the model.
        later_turns = merge_options(first_turn, RequestOptions(tool_choice=None))
        return self._chain(base, first_turn, later_turns, python_tools, max_turns=max_turns, parallel=parallel,
                           max_output_retries=max_output_retries, run_tools=True, tool_timeout=tool_timeout)

    def _chain(self, base: Prompt, first_turn: RequestOptions, later_turns: RequestOptions,
               python_tools: list[PythonTool], *, max_turns: int, parallel: bool, max_output_retries: int,
               run_tools: bool, tool_timeout: float | None = None) -> RunStream:
        """The `RunStream` of `base`: its first request is sent with `first_turn`'s
        settings, the later ones (after tools, or re-asking) with `later_turns`'."""
        if isinstance(max_output_retries, bool) or not isinstance(max_output_retries, int) or max_output_retries < 0:
            raise InvalidInputError("max_output_retries", f"expected a whole number of 0 or more, got "
                                    f"{max_output_retries!r}")
        if max_output_retries and requested_output(base.output_schema, first_turn.response_format) is None:
            raise InvalidInputError("max_output_retries", "re-asking needs a structured output to check the answer "
                                    "against: give response_format too")
        turn_tools = checked_tools([*base.tools, *python_tools])  # once: each turn's prompt is not checked again
        turns = itertools.count()
        deadline = Deadline(first_turn.timeout) if first_turn.timeout is not None else None

        trace = run_trace(self.provider, first_turn)

        def start_turn(history: list[ResponseItem]) -> ResponseStream | None:
            if self._closed.is_set():
                return None  # the run ends with an error: it did not end
            prompt = Prompt.of_checked(history, turn_tools, base.instructions, base.output_schema)
            with trace.current():  # the request's span is the run's child
                return self._stream(prompt, first_turn if next(turns) == 0 else later_turns, deadline)

        try:
            run = RunStream(base.input, start_turn, python_tools, max_turns=max_turns, parallel=parallel,
                            max_output_retries=max_output_retries, run_tools=run_tools, trace=trace,
                            tool_timeout=tool_timeout, deadline=deadline)
        except BaseException as exc:  # the first request failed
            trace.end(exc)
            raise
        self._track(run)
        return run

    def map(self, prompts: Iterable[PromptLike | BatchPrompt], *,
            concurrency: int | Literal["auto"] | Concurrency = "auto", max_concurrency: int = 64,
            output: str | os.PathLike[str] | None = None, as_completed: bool = False, fail_fast: bool = False,
            progress: bool | None = None, tools: Sequence[Callable[..., Any] | PythonTool] = (),
            max_turns: int = 10, **options: Any) -> BatchRun:
        """Send every prompt (anything `stream` takes, or a `batch.BatchPrompt` with its own
        settings) and iterate over their `BatchItem`s, in input order (`as_completed`: as
        they finish). Iterating runs the batch; an item's error is its result (`fail_fast`:
        the first stops the batch and is raised).

        `concurrency`: ``"auto"`` (at most `max_concurrency` in flight, driven by the
        server's rate-limit headers and 429s), a number, or a `concurrency.Concurrency`
        to share between batches. `output`: a JSON Lines file each finished item is
        appended to; run the same call again to skip the answered items. `progress`: a
        bar on stderr (None: on a terminal or in Jupyter). `tools`: each item is a `run`
        (with `max_turns`). Settings as in `stream`. See `llmx_sync.batch`.
        """
        from .batch import run_batch  # here, not at the top: the batch module sits above this one

        return run_batch(self, prompts, concurrency=concurrency, max_concurrency=max_concurrency, output=output,
                         as_completed=as_completed, fail_fast=fail_fast, progress=progress, tools=tools,
                         max_turns=max_turns, **options)

    def _track(self, stream: ResponseStream | RunStream) -> None:
        with self._lock:
            closed = self._closed.is_set()
            if not closed:
                self._streams.add(stream)
        if closed:  # the client closed while this one was being opened: it must not outlive it
            stream.close()

    def _headers(self, settings: RequestOptions) -> CaseInsensitiveDict[str]:
        """Ours, then the provider's (which may replace ours), then the ones the
        protocol needs, then `extra_headers` (the caller has the last word)."""
        headers: CaseInsensitiveDict[str] = CaseInsensitiveDict({
            "User-Agent": user_agent(),
            # Compressing a stream of tiny events gains nothing and holds them back.
            "Accept-Encoding": "identity",
        })
        headers.update(self.provider.connection.headers())  # raises EnvVarError for a missing key
        headers["Accept"] = "text/event-stream"
        headers["Content-Type"] = "application/json"
        if settings.subagent is not None:
            headers["x-openai-subagent"] = settings.subagent
        headers.update(settings.extra_headers or {})
        return headers

    def close(self) -> None:
        """Close the streams and runs still open, and the connection pool. Idempotent."""
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
            streams = list(self._streams)
        for stream in streams:
            stream.close()
        if self._owns_transport:
            self._transport.close()
        if self._server is not None:
            self._server.release()  # the last client of the bundled local model stops it

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __reduce__(self) -> tuple[Any, ...]:
        """A pickled client (a Dask or multiprocessing task that closes over one) is its
        settings: unpickled, it is a new client with an empty connection pool of its own,
        so no connection crosses processes (the provider's key travels with it). A client
        made with a `session`, a `transport` or the bundled local server cannot be made
        again elsewhere: pickling it raises TypeError."""
        if not self._owns_transport or not self._transport.owns_session or self._server is not None:
            raise TypeError("this Client cannot be pickled: its session, transport or local model server belong "
                            "to this process; create a Client in each process instead")
        timeout = self._defaults.timeout if self._defaults is not None else None
        return (functools.partial(Client, self.provider, timeout=timeout, max_event_bytes=self._max_event_bytes,
                                  max_buffered_bytes=self._max_buffered_bytes), ())

    def __repr__(self) -> str:
        return f"Client(provider={self.provider!r})"


def _shape(quirks: Quirks, learned: Learned, mode: StructuredOutputMode) -> Quirks:
    """The provider's quirks with the structured-output `mode` and, where the provider
    leaves it open, the forced-tool form learned from the server."""
    forced = quirks.forced_tool_choice or learned.forced_tool_choice
    if quirks.structured_output == mode and quirks.forced_tool_choice == forced:
        return quirks  # (each request asks: a copy made and checked each time costs ~15 us)
    return dataclasses.replace(quirks, structured_output=mode, forced_tool_choice=forced)


def encoded_body(body: dict[str, Any]) -> bytes:
    """The request body as compact UTF-8 JSON. Text that UTF-8 cannot carry (a lone
    surrogate, in the prompt or a setting) is an `InvalidInputError` naming where it is."""
    text = compact_json(body)
    try:
        return text.encode()
    except UnicodeEncodeError:
        pass
    for where, value in _strings(body, "request body"):
        check_unicode(where, value)  # raises for the string that holds it
    return text.encode()


def _strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """Every string in `value` (keys too), with where it is: ``request body.messages[0].content``."""
    stack = [(value, where)]
    while stack:
        node, at = stack.pop()
        if isinstance(node, str):
            yield at, node
        elif isinstance(node, dict):
            for key, child in node.items():
                yield at, key
                stack.append((child, f"{at}.{key}"))
        elif isinstance(node, (list, tuple)):
            stack.extend((child, f"{at}[{index}]") for index, child in enumerate(node))


def _python_tools(tools: Sequence[Callable[..., Any] | PythonTool]) -> list[PythonTool]:
    """The tools of a run: `PythonTool`s as they are, functions made into tools."""
    if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Sequence):
        raise InvalidInputError("tools", f"expected a list of functions, got {json_type_name(tools)}")
    result: list[PythonTool] = []
    for index, entry in enumerate(tools):
        if isinstance(entry, PythonTool):
            result.append(entry)
        elif isinstance(entry, FunctionTool) or not callable(entry):
            raise InvalidInputError(f"tools[{index}]", "expected a function (or a tool made with llmx_sync.tool); "
                                    f"a {type(entry).__name__} cannot be run")
        else:
            result.append(tool(entry))
    seen: set[str] = set()
    for entry in result:
        if entry.name in seen:
            raise InvalidInputError("tools", f"two tools are named {entry.name!r}")
        seen.add(entry.name)
    return result
