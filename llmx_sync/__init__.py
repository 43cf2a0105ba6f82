"""llmx_sync: stream answers from OpenAI-compatible Chat Completions servers, no asyncio.

    import llmx_sync as llmx
    client = llmx.Client(base_url="http://127.0.0.1:8000/v1")
    for event in client.stream("hi", model="m"):
        ...
"""

from ._logging import configure_logging
from .aggregate import ChatAccumulator, ChatResult, aggregate, collect
from .batch import BatchItem, BatchPrompt, BatchRun, BatchSummary
from .chat import build_chat_request, parse_chat_sse
from .client import Client
from .concurrency import AdaptiveConcurrency, FixedConcurrency
from .errors import (
    AuthenticationError,
    BadRequestError,
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
from .functions import PythonTool, ToolArgumentsError, tool
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
from .response import ResponseStream
from .runner import RunStream
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
from .transport import ResponseInfo

__version__ = "0.1.0"

__all__ = [
    "AdaptiveConcurrency", "AuthenticationError", "BUILTIN_PROVIDERS", "BadRequestError", "BatchItem", "BatchPrompt",
    "BatchRun", "BatchSummary", "FixedConcurrency", "ChatAccumulator", "ChatResult", "Client",
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
    "SchemaProblem", "StreamError", "StreamIdleTimeoutError", "SummaryText", "TokenUsage", "ToolArgumentsError", "ToolResult",
    "ToolSpec", "UnexpectedStatusError", "UnprocessableEntityError", "UnsupportedOperationError", "WebSearchCall",
    "WebSearchSearchAction", "WebSearchTool", "__version__", "aggregate", "build_chat_request", "collect",
    "event_to_dict", "item_from_dict", "items_from_dicts", "items_from_messages", "merge_options", "parse_chat_sse",
    "read_history_jsonl", "tool", "tool_from_dict",
    "Refusal", "RefusalDelta",
]

configure_logging()  # LLMX_LOG=debug|info: the SDK's log on stderr, read once at import
