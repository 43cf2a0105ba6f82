"""The Chat Completions wire protocol (``POST <base>/chat/completions`` with ``stream: true``):
request building (`request.py`) and stream parsing (`parse.py`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ..prompt import Prompt
from ..settings import Quirks, RequestOptions
from ..sse import DEFAULT_MAX_EVENT_BYTES
from .parse import ChatJSONParser, ChatSSEParser, is_json_body, parse_chat_sse
from .request import build_chat_request

__all__ = ["CHAT_COMPLETIONS", "ChatCompletions", "ChatJSONParser", "ChatSSEParser", "build_chat_request",
           "parse_chat_sse"]


class ChatCompletions:
    """`wire.Wire` for Chat Completions."""

    path: Final = "/chat/completions"

    def build_request(self, prompt: Prompt, options: RequestOptions, quirks: Quirks) -> dict[str, Any]:
        return build_chat_request(prompt, options, quirks)

    def parser(self, headers: Mapping[str, str], *,
               max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> ChatSSEParser | ChatJSONParser:
        """The SSE parser, or the JSON one for a server that answered with one
        ``chat.completion`` object although the request asked for a stream."""
        if is_json_body(headers):
            return ChatJSONParser(headers=headers, max_bytes=max_event_bytes)
        return ChatSSEParser(headers=headers, max_event_bytes=max_event_bytes)


CHAT_COMPLETIONS: Final = ChatCompletions()
