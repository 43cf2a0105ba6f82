"""What a wire protocol is to the client, and the protocols the SDK speaks.

A `Wire` says where requests go (`path`, under the provider's base URL), what body a
prompt and its settings become (`build_request`), and how the response body becomes
events (`parser`: a fresh `WireParser` per response). The client and the stream know
nothing else of it. Chat Completions (`chat/`) is the one wire so far; a second one
(the Responses API) is a new subpackage implementing `Wire` plus one entry in `WIRES`,
and mypy checks that entry against the protocol.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol

from .chat import CHAT_COMPLETIONS

if TYPE_CHECKING:
    from .errors import LlmxError
    from .events import Event
    from .prompt import Prompt
    from .settings import Quirks, RequestOptions

__all__ = ["WIRES", "Wire", "WireParser"]


class WireParser(Protocol):
    """Response body bytes -> events, incrementally. Pure: no I/O and no threads.

    `feed` and `finish` (the body ended) return the events produced so far. When the
    stream fails, `error` is set (the events before the failure were returned by that
    same call). `done` is true once the answer is complete or `error` is set; bytes
    after that are not looked at.
    """

    @property
    def done(self) -> bool: ...

    @property
    def error(self) -> LlmxError | None: ...

    def feed(self, data: bytes) -> list[Event]: ...

    def finish(self) -> list[Event]: ...


class Wire(Protocol):
    """A wire protocol: its URL path, its request body, and its response parser."""

    @property
    def path(self) -> str: ...

    def build_request(self, prompt: Prompt, options: RequestOptions, quirks: Quirks) -> dict[str, Any]: ...

    def parser(self, headers: Mapping[str, str], *, max_event_bytes: int) -> WireParser:
        """A fresh parser for one response; it fails (`StreamError`) rather than hold
        more than about `max_event_bytes` of one event."""


#: The wire protocols by their `wire_api` name (a provider setting).
WIRES: Final[Mapping[str, Wire]] = {"chat": CHAT_COMPLETIONS}
