"""llmx_sync: stream answers from OpenAI-compatible Chat Completions servers, no asyncio.

    import llmx_sync as llmx
    client = llmx.Client(base_url="http://127.0.0.1:8000/v1")
    for event in client.stream("hi", model="m"):
        ...
"""

from .aggregate import ChatResult, aggregate, collect
from .client import Client
from .errors import (
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ConflictError,
    ConnectionFailedError,
    EnvVarError,
    InStreamError,
    InternalServerError,
    InvalidInputError,
    LlmxError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTooLargeError,
    RetryLimitReachedError,
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
    OutputItemAdded,
    OutputItemDone,
    OutputTextDelta,
    RateLimits,
    RateLimitSnapshot,
    RateLimitWindow,
    ReasoningContentDelta,
    ReasoningSummaryDelta,
    ReasoningSummaryPartAdded,
    TokenUsage,
    event_to_dict,
)
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
    ResponseItem,
    SummaryText,
    WebSearchCall,
    WebSearchSearchAction,
    item_from_dict,
    items_from_dicts,
    read_history_jsonl,
)
from .prompt import Prompt
from .providers import Provider
from .request import NOT_GIVEN, NotGiven, build_chat_request
from .sse import parse_chat_sse
from .stream import ResponseInfo, ResponseStream
from .tools import (
    FreeformTool,
    FreeformToolFormat,
    FunctionTool,
    LocalShellTool,
    ToolSpec,
    WebSearchTool,
    tool_from_dict,
)

__version__ = "0.1.0"

__all__ = [
    "NOT_GIVEN", "AuthenticationError", "BadRequestError", "ChatResult", "Client", "Completed",
    "ConfigError", "ConflictError", "ConnectionFailedError", "ContentItem", "Created", "CustomToolCall",
    "CustomToolCallOutput", "EnvVarError", "Event", "FreeformTool", "FreeformToolFormat", "FunctionCall",
    "FunctionCallOutput", "FunctionCallOutputPayload", "FunctionTool", "GhostCommit", "GhostSnapshot",
    "InStreamError", "InputImage", "InputText", "InternalServerError", "InvalidInputError", "LlmxError",
    "LocalShellCall", "LocalShellExecAction", "LocalShellTool", "Message", "NotFoundError", "NotGiven",
    "Other", "OtherWebSearchAction", "OutputItemAdded", "OutputItemDone", "OutputText", "OutputTextDelta",
    "PermissionDeniedError", "Prompt", "Provider", "RateLimitError", "RateLimitSnapshot", "RateLimitWindow",
    "RateLimits", "Reasoning", "ReasoningContentDelta", "ReasoningContentText", "ReasoningSummaryDelta",
    "ReasoningSummaryPartAdded", "ReasoningText", "RequestTooLargeError", "ResponseInfo", "ResponseItem",
    "ResponseStream", "RetryLimitReachedError", "StreamError", "StreamIdleTimeoutError", "SummaryText",
    "TokenUsage", "ToolSpec", "UnexpectedStatusError", "UnprocessableEntityError", "UnsupportedOperationError",
    "WebSearchCall", "WebSearchSearchAction", "WebSearchTool", "__version__", "aggregate", "build_chat_request",
    "collect", "event_to_dict", "item_from_dict", "items_from_dicts", "parse_chat_sse", "read_history_jsonl",
    "tool_from_dict",
]
