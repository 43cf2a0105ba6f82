"""`Client`: the SDK's entry point. It builds the request, sends it with retries and
returns the `ResponseStream` of the answer.

Data flows one way: `request.build_chat_request` -> `transport.Transport.send` ->
`stream.ResponseStream` (SSE parser, queue, iterator).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import socket
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

from requests.structures import CaseInsensitiveDict

from .errors import ConfigError, LlmxError, UnsupportedOperationError
from .models import ResponseItem
from .prompt import Prompt
from .providers import MAX_REQUEST_MAX_RETRIES, Provider, env_value
from .request import NOT_GIVEN, NotGiven, OrphanToolCalls, build_chat_request
from .stream import DEFAULT_QUEUE_SIZE, ResponseStream
from .transport import Transport

__all__ = ["Client", "resolve_default_provider"]


@functools.cache
def user_agent() -> str:
    from . import __version__  # here, not at the top: the package imports this module first

    return f"llmx_sync/{__version__}"


_LITELLM_PROXY = ("localhost", 4000)
_PROBE_TIMEOUT = 0.25


def _answers(address: tuple[str, int]) -> bool:
    """Whether something accepts TCP connections at `address` (a quick, bounded probe)."""
    try:
        with socket.create_connection(address, timeout=_PROBE_TIMEOUT):
            return True
    except OSError:
        return False


def resolve_default_provider() -> Provider:
    """The provider of a `Client()` given nothing: ``LLMX_BASE_URL`` set -> `litellm`;
    ``OPENAI_API_KEY`` or ``OPENAI_BASE_URL`` set -> `openai`; a LiteLLM proxy answering
    on localhost:4000 -> `litellm`; else the built-in `local` provider if it can run."""
    if env_value("LLMX_BASE_URL"):
        return Provider.builtin("litellm")
    if env_value("OPENAI_API_KEY") or env_value("OPENAI_BASE_URL"):
        return Provider.builtin("openai")
    if _answers(_LITELLM_PROXY):
        return Provider.builtin("litellm")
    try:
        return Provider.builtin("local")
    except (ImportError, LlmxError) as exc:
        # The local model's reason goes into the text (not only `__cause__`): it names
        # the pip command, and the CLI prints only `str(error)`.
        raise ConfigError(
            "no model provider configured. Point the SDK at a model in one of three ways: "
            "set LLMX_BASE_URL (and LLMX_API_KEY) for a LiteLLM or other OpenAI-compatible server; "
            "set OPENAI_API_KEY for OpenAI; or pass one, e.g. Client(base_url='http://127.0.0.1:8000/v1') "
            f"or Client(provider=Provider.from_toml(...)). The bundled local model cannot run: {exc}"
        ) from exc


def _use_local_server(provider: Provider) -> Callable[[], None] | None:
    """Tie the bundled local server's life to the clients using it (see `local.py`)."""
    if provider.name != "local":
        return None
    from .local import use_shared_server  # only a local provider needs the launcher

    return use_shared_server(provider.base_url)


def _as_prompt(prompt: Prompt | str | Sequence[ResponseItem | Mapping[str, Any]]) -> Prompt:
    if isinstance(prompt, Prompt):
        return prompt
    if isinstance(prompt, str):
        return Prompt.from_text(prompt)
    return Prompt(input=list(prompt))  # (Prompt reads dicts too)


class Client:
    """Streams answers from one provider: `provider`, else a ``custom`` one at
    `base_url`, else `resolve_default_provider()`; `api_key` replaces its key.

    Safe to share between threads (e.g. one module-level client in a Flask app): it
    holds no per-request state, and its connection pool is thread-safe.

    `close()` (or leaving a ``with`` block) closes the streams still open, ends retry
    waits in progress, and closes the connection pool.
    """

    def __init__(
        self,
        provider: Provider | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        transport: Transport | None = None,
    ) -> None:
        if provider is None:
            if base_url is not None:
                provider = Provider(name="custom", base_url=base_url, experimental_bearer_token=api_key)
            else:
                provider = resolve_default_provider()
        elif base_url is not None:
            provider = dataclasses.replace(provider, base_url=base_url)
        if api_key is not None:
            provider = dataclasses.replace(provider, experimental_bearer_token=api_key, env_key=None)
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        self.provider = provider
        self._queue_size = queue_size
        self._transport = transport if transport is not None else Transport()
        self._owns_transport = transport is None
        self._closed = threading.Event()  # also cancels retry waits
        self._streams: weakref.WeakSet[ResponseStream] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._end_local_use = _use_local_server(provider)

    def stream(
        self,
        prompt: Prompt | str | Sequence[ResponseItem | Mapping[str, Any]],
        *,
        model: str,
        max_tokens: int | None | NotGiven = NOT_GIVEN,
        include_usage: bool | NotGiven = NOT_GIVEN,
        cache_control: bool | NotGiven = NOT_GIVEN,
        max_retry_delay: float | NotGiven = NOT_GIVEN,
        orphan_tool_calls: OrphanToolCalls = "drop",
        subagent: str | None = None,
        request_max_retries: int | None = None,
        idle_timeout: float | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        parallel_tool_calls: bool | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int | None = None,
        extra_body: Mapping[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> ResponseStream:
        """Send the request (retrying 408/409/429/5xx and connection errors) and return the answer's stream.

        `prompt` is a `Prompt`, a user message's text, or a list of items (or their
        dicts). Keyword settings win over the provider's. `idle_timeout` (seconds
        between SSE events) defaults to the provider's ``stream_idle_timeout_ms``.
        Errors in the prompt, the settings or the environment (`InvalidInputError`,
        `UnsupportedOperationError`, `EnvVarError`) are raised before any I/O.
        """
        if self._closed.is_set():
            raise RuntimeError("the client is closed")
        provider = self.provider
        if provider.wire_api == "responses":
            raise UnsupportedOperationError(
                "the Responses API (wire_api = \"responses\") is not supported; use wire_api = \"chat\""
            )
        payload = build_chat_request(
            _as_prompt(prompt), model, provider,
            max_tokens=max_tokens, include_usage=include_usage, cache_control=cache_control,
            orphan_tool_calls=orphan_tool_calls, temperature=temperature, top_p=top_p,
            tool_choice=tool_choice, parallel_tool_calls=parallel_tool_calls, stop=stop, seed=seed,
            extra_body=extra_body,
        )
        headers = self._headers(subagent, extra_headers)
        idle = provider.stream_idle_timeout if idle_timeout is None else idle_timeout
        retries = provider.effective_request_max_retries if request_max_retries is None else request_max_retries
        response = self._transport.send(
            provider.chat_url(),
            headers=headers,
            body=json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode(),
            max_retries=min(retries, MAX_REQUEST_MAX_RETRIES),
            max_retry_delay=provider.max_retry_delay if isinstance(max_retry_delay, NotGiven) else max_retry_delay,
            connect_timeout=provider.connect_timeout,
            read_timeout=idle,
            cancel=self._closed,
        )
        stream = ResponseStream(response, idle_timeout=idle, queue_size=self._queue_size)
        with self._lock:
            self._streams.add(stream)
        return stream

    def _headers(self, subagent: str | None, extra: Mapping[str, str] | None) -> CaseInsensitiveDict[str]:
        """Ours, then the provider's (which may replace ours), then the ones the
        protocol needs, then `extra` (the caller has the last word)."""
        headers: CaseInsensitiveDict[str] = CaseInsensitiveDict({
            "User-Agent": user_agent(),
            # Compressing a stream of tiny events gains nothing and holds them back.
            "Accept-Encoding": "identity",
        })
        headers.update(self.provider.request_headers())  # raises EnvVarError for a missing key
        headers["Accept"] = "text/event-stream"
        headers["Content-Type"] = "application/json"
        if subagent is not None:
            headers["x-openai-subagent"] = subagent
        headers.update(extra or {})
        return headers

    def close(self) -> None:
        """Close the streams still open and the connection pool. Idempotent."""
        self._closed.set()
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            stream.close()
        if self._owns_transport:
            self._transport.close()
        if self._end_local_use is not None:
            self._end_local_use()  # the last client of the bundled local model stops it

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(provider={self.provider!r})"
