"""llmx_sync: stream answers from OpenAI-compatible Chat Completions servers, no asyncio.

    import llmx_sync as llmx
    client = llmx.Client(base_url="http://127.0.0.1:8000/v1")
    for event in client.stream("hi", model="m"):
        ...
"""

import importlib
from typing import TYPE_CHECKING, Any

from ._logging import configure_logging
from .aggregate import ChatAccumulator, ChatResult, aggregate, collect
from .chat import build_chat_request, parse_chat_sse
from .concurrency import AdaptiveConcurrency, FixedConcurrency
from .errors import (
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    ConfigError,
    ConflictError,
    ConnectionFailedError,
    DeadlineExceededError,
    EnvVarError,
    InStreamError,
    InternalServerError,
    InvalidInputError,
    LlmxError,
    MaxTurnsExceededError,
    NotFoundError,
    OutputValidationError,
    PermissionDeniedError,
    RateLimitError,
    RequestTooLargeError,
    RetryLimitReachedError,
    SchemaProblem,
    StreamError,
    StreamIdleTimeoutError,
    UnexpectedStatusError,
    UnprocessableEntityError,
    UnsupportedOperationError,
)
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
    RateLimitWindow,
    ReasoningContentDelta,
    ReasoningSummaryDelta,
    ReasoningSummaryPartAdded,
    RefusalDelta,
    TokenUsage,
    ToolResult,
    event_to_dict,
)
from .functions import PythonTool, ToolArgumentsError, ToolResultError, tool
from .messages import items_from_messages
from .models import (
    ContentItem,
    CustomToolCall,
    CustomToolCallOutput,
    FunctionCall,
    FunctionCallOutput,
    FunctionCallOutputPayload,
    GhostCommit,
    GhostSnapshot,
    InputImage,
    InputText,
    LocalShellCall,
    LocalShellExecAction,
    Message,
    Other,
    OtherWebSearchAction,
    OutputText,
    Reasoning,
    ReasoningContentText,
    ReasoningText,
    Refusal,
    ResponseItem,
    SummaryText,
    WebSearchCall,
    WebSearchSearchAction,
    item_from_dict,
    items_from_dicts,
    read_history_jsonl,
)
from .prompt import Prompt
from .providers import BUILTIN_PROVIDERS, ConfigFile, Connection, Provider
from .settings import Quirks, RequestOptions, merge_options
from .structured import OutputSchema
from .tools import (
    FreeformTool,
    FreeformToolFormat,
    FunctionTool,
    LocalShellTool,
    ToolSpec,
    WebSearchTool,
    tool_from_dict,
)

if TYPE_CHECKING:
    from .batch import BatchItem, BatchPrompt, BatchRun, BatchSummary
    from .client import Client
    from .response import ResponseStream
    from .runner import RunStream
    from .transport import ResponseInfo

# The names whose modules need the HTTP stack (requests, urllib3, ssl: about half of the
# import time): their module is imported when one of them is first used, so that
# `import llmx_sync` stays fast for a notebook kernel, a CLI's --help or a worker that
# builds requests without sending them.
_HTTP_NAMES = {"BatchItem": "batch", "BatchPrompt": "batch", "BatchRun": "batch", "BatchSummary": "batch",
               "Client": "client", "ResponseInfo": "transport", "ResponseStream": "response", "RunStream": "runner"}


def __getattr__(name: str) -> Any:
    module = _HTTP_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HTTP_NAMES})


__version__ = "0.1.0"

__all__ = [
    "AdaptiveConcurrency", "AuthenticationError", "BUILTIN_PROVIDERS", "BadRequestError", "BatchItem", "BatchPrompt",
    "BatchRun", "BatchSummary", "FixedConcurrency", "ChatAccumulator", "ChatResult", "Client", "ClientClosedError",
    "Completed", "ConfigError", "ConfigFile", "ConflictError", "Connection", "ConnectionFailedError", "ContentItem",
    "Created", "CustomToolCall", "CustomToolCallOutput", "DeadlineExceededError", "EnvVarError", "Event",
    "FreeformTool", "FreeformToolFormat", "FunctionCall", "FunctionCallArgumentsDelta", "FunctionCallOutput",
    "FunctionCallOutputPayload", "FunctionTool", "GhostCommit", "GhostSnapshot", "InStreamError", "InputImage",
    "InputText", "InternalServerError", "InvalidInputError", "LlmxError", "LocalShellCall", "LocalShellExecAction",
    "LocalShellTool", "MaxTurnsExceededError", "Message", "NotFoundError", "Other", "OtherWebSearchAction",
    "OutputItemAdded", "OutputItemDone", "OutputJsonDelta", "OutputRejected", "OutputSchema", "OutputText", "OutputTextDelta",
    "OutputValidationError", "PermissionDeniedError", "Prompt", "Provider", "PythonTool", "Quirks",
    "RateLimitError", "RateLimitSnapshot", "RateLimitWindow", "RateLimits", "Reasoning", "ReasoningContentDelta",
    "ReasoningContentText", "ReasoningSummaryDelta", "ReasoningSummaryPartAdded", "ReasoningText", "RequestOptions",
    "RequestTooLargeError", "ResponseInfo", "ResponseItem", "ResponseStream", "RetryLimitReachedError", "RunStream",
    "SchemaProblem", "StreamError", "StreamIdleTimeoutError", "SummaryText", "TokenUsage", "ToolArgumentsError",
    "ToolResult", "ToolResultError",
    "ToolSpec", "UnexpectedStatusError", "UnprocessableEntityError", "UnsupportedOperationError", "WebSearchCall",
    "WebSearchSearchAction", "WebSearchTool", "__version__", "aggregate", "build_chat_request", "collect",
    "event_to_dict", "item_from_dict", "items_from_dicts", "items_from_messages", "merge_options", "parse_chat_sse",
    "read_history_jsonl", "tool", "tool_from_dict",
    "Refusal", "RefusalDelta",
]

configure_logging()  # LLMX_LOG=debug|info: the SDK's log on stderr, read once at import
