"""Hypothesis strategies for conversation items (used by the model and request tests)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from llmx_sync.models import (
    LOCAL_SHELL_STATUSES,
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
)

ITEM_TYPES = ("message", "reasoning", "local_shell_call", "function_call", "function_call_output",
              "custom_tool_call", "custom_tool_call_output", "web_search_call", "ghost_snapshot")
CONTENT_TYPES = ("input_text", "input_image", "output_text", "refusal", "summary_text", "reasoning_text", "text", "exec",
                 "search")
FIELD_NAMES = ("type", "role", "content", "text", "image_url", "summary", "encrypted_content", "id", "call_id",
               "status", "action", "command", "timeout_ms", "env", "user", "working_directory", "name",
               "arguments", "output", "input", "query", "ghost_commit", "parent",
               "preexisting_untracked_files", "preexisting_untracked_dirs", "refusal", "provider_fields")

text = st.text(max_size=12)
optional_text = st.none() | text

json_scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
                | st.floats(allow_nan=False, allow_infinity=False) | text)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(text, inner, max_size=3), max_leaves=8)

# JSON-ish data shaped like items, so that it reaches deep into the readers.
garbage = st.recursive(
    json_scalars | st.sampled_from(ITEM_TYPES + CONTENT_TYPES + LOCAL_SHELL_STATUSES),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(FIELD_NAMES) | text, inner, max_size=5),
    max_leaves=20,
)


def _unknown(kinds: tuple[str, ...]) -> st.SearchStrategy[str]:
    return text.filter(lambda kind: kind not in kinds)


def _tagged(kind: str, extra: dict[str, Any]) -> dict[str, Any]:
    return {**extra, "type": kind}


images = st.builds(InputImage, text, optional_text)
content_items = st.one_of(st.builds(InputText, text), images, st.builds(OutputText, text), st.builds(Refusal, text))
# What a server sends beyond the protocol and wants back (a thought signature, reasoning details).
provider_fields = st.none() | st.dictionaries(text, json_values, max_size=2)
output_items = st.one_of(st.builds(InputText, text), images)
payloads = (st.builds(FunctionCallOutputPayload, content=text)
            | st.lists(output_items, max_size=3).map(FunctionCallOutputPayload.from_items))
shell_actions = st.builds(
    LocalShellExecAction, command=st.lists(text, max_size=3), timeout_ms=st.none() | st.integers(0, 2**64 - 1),
    working_directory=optional_text, env=st.none() | st.dictionaries(text, text, max_size=2), user=optional_text,
)
web_actions = (st.builds(WebSearchSearchAction, text)
               | st.builds(lambda kind, extra: OtherWebSearchAction(_tagged(kind, extra)),
                           _unknown(("search",)), st.dictionaries(text, json_values, max_size=2)))


def items(call_ids: st.SearchStrategy[str] = text,
          arguments: st.SearchStrategy[str] = text) -> st.SearchStrategy[ResponseItem]:
    """Any item kind, with every field drawn at random."""
    return st.one_of(
        st.builds(Message, role=st.sampled_from(["user", "assistant", "system", "developer"]) | text,
                  content=st.lists(content_items, max_size=3), id=optional_text),
        st.builds(Reasoning, summary=st.lists(st.builds(SummaryText, text), max_size=2),
                  content=st.none() | st.lists(st.builds(ReasoningText, text) | st.builds(ReasoningContentText, text),
                                               max_size=2),
                  encrypted_content=optional_text, id=text, provider_fields=provider_fields),
        st.builds(LocalShellCall, call_id=st.none() | call_ids, status=st.sampled_from(LOCAL_SHELL_STATUSES),
                  action=shell_actions, id=st.none() | call_ids),
        st.builds(FunctionCall, name=text, arguments=arguments, call_id=call_ids, id=optional_text,
                  provider_fields=provider_fields),
        st.builds(FunctionCallOutput, call_id=call_ids, output=payloads),
        st.builds(CustomToolCall, call_id=call_ids, name=text, input=text, status=optional_text, id=optional_text),
        st.builds(CustomToolCallOutput, call_id=call_ids, output=text),
        st.builds(WebSearchCall, action=web_actions, status=optional_text, id=optional_text),
        st.builds(GhostSnapshot, st.builds(GhostCommit, id=text, parent=optional_text,
                                           preexisting_untracked_files=st.lists(text, max_size=2),
                                           preexisting_untracked_dirs=st.lists(text, max_size=2))),
        st.builds(lambda kind, extra: Other(_tagged(kind, extra)), _unknown(ITEM_TYPES),
                  st.dictionaries(text, json_values, max_size=3)),
    )
