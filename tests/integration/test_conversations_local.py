"""Second turns on real servers: the README's tool loop with a default `Client(base_url=...)`,
and grouped parallel calls, against llama-cpp-python's server and llama.cpp's llama-server.

The README snippet is run as written (read from README.md), with only the client
pointed at the local server. llama-cpp-python's server forces the named tool (the
snippet's ``tool_choice="get_weather"``); the 135M model behind llama-server never calls
a tool by itself, and this llama-server ignores a forced choice, so there its first
turn answers in words and the grouped-calls test gives it a history with two calls.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Any

import pytest
from local_support import needs_llama_cpp, needs_llama_server

import llmx_sync as llmx
from llmx_sync.local import LlamaServerBinary, LocalServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_tool_snippet() -> str:
    """The code block under "### A conversation with tools"."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### A conversation with tools"):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "no python block in the README's tool section"
    return match.group(1)


def run_readme_snippet(base_url: str) -> tuple[dict[str, Any], str]:
    """Run the snippet with ``client = llmx.Client(base_url=base_url)``; its namespace and stdout."""
    namespace: dict[str, Any] = {"llmx": llmx}
    out = io.StringIO()
    with llmx.Client(base_url=base_url) as client, contextlib.redirect_stdout(out):
        namespace["client"] = client
        exec(compile(readme_tool_snippet(), str(README), "exec"), namespace)
    return namespace, out.getvalue()


WEATHER = llmx.FunctionTool("get_weather", "Current weather", {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})


def two_call_history() -> list[llmx.ResponseItem]:
    return [
        llmx.Message.user("Weather in Paris and in Tokyo?"),
        llmx.FunctionCall(name="get_weather", arguments='{"city": "Paris"}', call_id="call_paris"),
        llmx.FunctionCall(name="get_weather", arguments='{"city": "Tokyo"}', call_id="call_tokyo"),
        llmx.FunctionCallOutput.from_text("call_paris", "sunny, 21 C"),
        llmx.FunctionCallOutput.from_text("call_tokyo", "rain, 12 C"),
    ]


def answer_to_two_calls(base_url: str) -> llmx.ChatResult:
    prompt = llmx.Prompt(input=two_call_history(), tools=[WEATHER])
    with llmx.Client(base_url=base_url) as client:
        body = client.request_body(prompt, model="m")
        grouped = [m for m in body["messages"] if m.get("tool_calls")]
        assert len(grouped) == 1 and [c["id"] for c in grouped[0]["tool_calls"]] == ["call_paris", "call_tokyo"]
        assert grouped[0]["content"] == ""
        return client.stream(prompt, model="m", temperature=0, max_tokens=32, request_max_retries=0).collect()


@needs_llama_cpp
def test_readme_tool_loop_on_llama_cpp_python(server: LocalServer) -> None:
    namespace, printed = run_readme_snippet(server.base_url)
    first = namespace["result"]
    assert [call.name for call in first.tool_calls] == ["get_weather"], first
    assert first.finish_reason == "tool_calls"
    assert printed.strip(), "the second turn gave no text"


@needs_llama_cpp
def test_grouped_parallel_calls_on_llama_cpp_python(server: LocalServer) -> None:
    result = answer_to_two_calls(server.base_url)
    assert result.text.strip() and result.finish_reason in ("stop", "length"), result


@needs_llama_server
def test_readme_tool_loop_on_llama_server(llama_server: LlamaServerBinary) -> None:
    namespace, printed = run_readme_snippet(llama_server.base_url)
    assert namespace["result"].finish_reason in ("stop", "length", "tool_calls")
    assert printed.strip(), "the second turn gave no text"


@needs_llama_server
def test_grouped_parallel_calls_on_llama_server(llama_server: LlamaServerBinary) -> None:
    result = answer_to_two_calls(llama_server.base_url)
    assert result.text.strip() and result.finish_reason in ("stop", "length"), result
