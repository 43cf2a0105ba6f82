"""The scripted server of the project's tests: `llmx_sync.testing`, under the names the
tests have always used (`LLMServer` is `llmx_sync.testing.ScriptedServer`)."""

from llmx_sync.testing import (
    CaseInsensitiveDict,
    Disconnect,
    Pause,
    Piece,
    RecordedRequest,
    Reply,
    Stall,
    chat_chunk,
    error_reply,
    json_reply,
    sse_comment,
    sse_done,
    sse_event,
    text_reply,
    text_stream_body,
    tool_call_delta,
)
from llmx_sync.testing import ScriptedServer as LLMServer

__all__ = [
    "CaseInsensitiveDict", "Disconnect", "LLMServer", "Pause", "Piece", "RecordedRequest", "Reply", "Stall",
    "chat_chunk", "error_reply", "json_reply", "sse_comment", "sse_done", "sse_event", "text_reply",
    "text_stream_body", "tool_call_delta",
]
