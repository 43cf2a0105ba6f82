"""Tests of the command line (llmx_sync/cli.py) against the scripted test server.

Most run `main([...])` in-process; the ones marked "subprocess" run
``python -m llmx_sync chat ...`` for real (output flushing, SIGINT, exit codes).
"""

from __future__ import annotations

import io
import json
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llm_server import (
    Pause,
    Reply,
    Stall,
    chat_chunk,
    error_reply,
    json_reply,
    sse_done,
    sse_event,
    text_reply,
    text_stream_body,
    tool_call_delta,
)

from llmx_sync import cli
from llmx_sync.cli import DIM, RESET, Renderer, Stats, Style, format_stats, main
from llmx_sync.events import (
    Completed,
    OutputItemAdded,
    OutputItemDone,
    OutputTextDelta,
    ReasoningContentDelta,
    TokenUsage,
    ToolResult,
)
from llmx_sync.models import FunctionCall, Message, Reasoning, ReasoningText
from llmx_sync.providers import BUILTIN_PROVIDERS

REPO = Path(__file__).resolve().parents[1]
USAGE = {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
ENV_VARS = ("LLMX_MODEL", "LLMX_API_KEY", "LLMX_BASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL",
            "NO_COLOR", "LLMX_OSS_BASE_URL", "LLMX_OSS_PORT")
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather of a city",
    "strict": False,
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def chat(server: Any, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    return run(capsys, "chat", *argv, "--base-url", server.url)


def text_of(message: dict[str, Any]) -> str:
    """A Chat message's text, whether `content` is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def sent_messages(server: Any) -> list[tuple[str, str]]:
    (request,) = server.requests
    return [(m["role"], text_of(m)) for m in request.json()["messages"]]


def tool_call_body(arguments: tuple[str, ...] = ('{"city":', ' "Paris"}')) -> list[bytes]:
    pieces = [sse_event(chat_chunk(role="assistant", tool_calls=[
        tool_call_delta(0, id="call_1", name="get_weather", arguments=arguments[0])]))]
    pieces += [sse_event(chat_chunk(tool_calls=[tool_call_delta(0, arguments=a)])) for a in arguments[1:]]
    pieces += [sse_event(chat_chunk(finish_reason="tool_calls")), sse_event(chat_chunk(usage=USAGE)), sse_done()]
    return pieces


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def assistant(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}


# --- streaming text ------------------------------------------------------------------


def test_text_is_streamed_to_stdout_and_stats_go_to_stderr(llm_server: Any, capsys: Any) -> None:
    llm_server.enqueue(Reply(body=text_stream_body(["Hel", "lo", " world"], usage=USAGE)))
    code, out, err = chat(llm_server, capsys, "Say hello")
    assert code == 0, err
    assert out == "Hello world\n"
    assert "usage: 11 input tokens, 3 output tokens, 14 total" in err
    assert "finish reason: stop" in err
    assert "time to first token: " in err and "total time: " in err
    assert "time to first token: -" not in err
    body = llm_server.requests[0].json()
    assert body["stream"] is True
    assert body["model"] == cli.DEFAULT_CUSTOM_MODEL
    assert sent_messages(llm_server) == [("user", "Say hello")]
    assert "Authorization" not in llm_server.requests[0].headers


def test_usage_not_reported_and_quiet(llm_server: Any, capsys: Any) -> None:
    llm_server.enqueue(Reply(body=text_stream_body(["ok"])))
    code, out, err = chat(llm_server, capsys, "hi")
    assert (code, out) == (0, "ok\n")
    assert "usage: not reported by the server" in err
    llm_server.enqueue(Reply(body=text_stream_body(["ok"], usage=USAGE)))
    code, out, err = chat(llm_server, capsys, "hi", "--quiet")
    assert (code, out, err) == (0, "ok\n", "")


def test_empty_successful_answer_exits_0(llm_server: Any, capsys: Any) -> None:
    llm_server.enqueue(Reply(body=text_stream_body([])))
    code, out, err = chat(llm_server, capsys, "hi")
    assert (code, out) == (0, "")
    assert "finish reason: stop" in err


def test_model_flag_env_and_request_settings(llm_server: Any, capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("LLMX_MODEL", "from-env")
    llm_server.enqueue(Reply(body=text_stream_body(["a"])), Reply(body=text_stream_body(["b"])))
    assert chat(llm_server, capsys, "hi")[0] == 0
    assert chat(llm_server, capsys, "hi", "--model", "from-flag", "--max-tokens", "7",
                "--temperature", "0.5")[0] == 0
    first, second = (r.json() for r in llm_server.requests)
    assert first["model"] == "from-env"
    assert second["model"] == "from-flag"
    assert second["max_tokens"] == 7
    assert second["temperature"] == 0.5


def test_api_key_flag_and_env(llm_server: Any, capsys: Any, monkeypatch: Any) -> None:
    llm_server.enqueue(Reply(body=text_stream_body(["a"])), Reply(body=text_stream_body(["b"])))
    assert chat(llm_server, capsys, "hi", "--api-key", "sk-flag")[0] == 0
    monkeypatch.setenv("LLMX_API_KEY", "sk-env")
    assert chat(llm_server, capsys, "hi")[0] == 0
    assert [r.headers["Authorization"] for r in llm_server.requests] == ["Bearer sk-flag", "Bearer sk-env"]


def test_system_becomes_the_system_message(llm_server: Any, capsys: Any) -> None:
    llm_server.enqueue(Reply(body=text_stream_body(["ok"])))
    assert chat(llm_server, capsys, "hi", "--system", "Answer in French.")[0] == 0
    assert sent_messages(llm_server) == [("system", "Answer in French."), ("user", "hi")]


def test_message_from_stdin(llm_server: Any, capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("from stdin\nsecond line\n"))
    llm_server.enqueue(Reply(body=text_stream_body(["ok"])))
    assert chat(llm_server, capsys, "-")[0] == 0
    assert sent_messages(llm_server) == [("user", "from stdin\nsecond line")]


def test_reasoning_is_plain_when_not_a_tty(llm_server: Any, capsys: Any) -> None:
    llm_server.enqueue(Reply(body=[
        sse_event(chat_chunk(role="assistant", reasoning="Think")),
        sse_event(chat_chunk(reasoning="ing.")),
        sse_event(chat_chunk("Answer")),
        sse_event(chat_chunk(finish_reason="stop")),
        sse_done(),
    ]))
    code, out, err = chat(llm_server, capsys, "hi")
    assert code == 0, err
    assert "\x1b" not in out
    assert out == "Thinking.\n\nAnswer\n"


# --- --json and --aggregate -------------------------------------------------------


def test_json_lines_parse_and_end_with_completed(llm_server: Any, capsys: Any) -> None:
    llm_server.enqueue(Reply(body=text_stream_body(["Hel", "lo"], usage=USAGE)))
    code, out, err = chat(llm_server, capsys, "hi", "--json")
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert out.endswith("\n") and all(isinstance(e, dict) for e in events)
    types = [e["type"] for e in events]
    assert types[-1] == "completed"
    assert [e["delta"] for e in events if e["type"] == "output_text.delta"] == ["Hel", "lo"]
    assert events[-1]["finish_reason"] == "stop"
    assert events[-1]["token_usage"]["total_tokens"] == 14
    done = [e["item"] for e in events if e["type"] == "output_item.done"]
    assert done[-1]["role"] == "assistant"
    assert "usage: 11 input tokens" in err  # stats still on stderr


def test_aggregate_prints_finished_items_only(llm_server: Any, capsys: Any) -> None:
    llm_server.enqueue(Reply(body=text_stream_body(["Hel", "lo"], usage=USAGE)))
    code, out, err = chat(llm_server, capsys, "hi", "--aggregate")
    assert (code, out) == (0, "Hello\n"), err
    assert "finish reason: stop" in err

    llm_server.enqueue(Reply(body=text_stream_body(["Hel", "lo"], usage=USAGE)))
    code, out, err = chat(llm_server, capsys, "hi", "--aggregate", "--json")
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    types = [e["type"] for e in events]
    assert "output_text.delta" not in types and "output_item.added" not in types
    assert types[-2:] == ["output_item.done", "completed"]
    assert events[-2]["item"]["content"] == [{"type": "output_text", "text": "Hello"}]


# --- history ------------------------------------------------------------------------


def test_history_from_a_rollout(llm_server: Any, capsys: Any, tmp_path: Path) -> None:
    rollout = write_jsonl(tmp_path / "rollout.jsonl", [
        {"timestamp": "2025-01-01T00:00:00Z", "type": "session_meta", "payload": {"id": "s1", "cwd": "/"}},
        {"timestamp": "2025-01-01T00:00:01Z", "type": "response_item", "payload": user("What is 2+2?")},
        {"timestamp": "2025-01-01T00:00:02Z", "type": "event_msg", "payload": {"type": "token_count"}},
        {"timestamp": "2025-01-01T00:00:03Z", "type": "response_item", "payload": assistant("4")},
        {"timestamp": "2025-01-01T00:00:04Z", "type": "turn_context", "payload": {"cwd": "/"}},
    ])
    llm_server.enqueue(Reply(body=text_stream_body(["8"])))
    code, out, err = chat(llm_server, capsys, "And twice that?", "--history", str(rollout))
    assert (code, out) == (0, "8\n"), err
    assert sent_messages(llm_server) == [
        ("user", "What is 2+2?"), ("assistant", "4"), ("user", "And twice that?")]


def test_bare_history_ending_with_a_user_message_needs_no_message(
        llm_server: Any, capsys: Any, tmp_path: Path) -> None:
    history = write_jsonl(tmp_path / "history.jsonl", [user("Hi"), assistant("Hello!"), user("Name a colour")])
    llm_server.enqueue(Reply(body=text_stream_body(["Blue"])))
    code, out, err = chat(llm_server, capsys, "--history", str(history), "--system", "Be brief.")
    assert (code, out) == (0, "Blue\n"), err
    assert sent_messages(llm_server) == [
        ("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello!"), ("user", "Name a colour")]


def test_history_not_ending_with_a_user_message_needs_a_message(
        llm_server: Any, capsys: Any, tmp_path: Path) -> None:
    history = write_jsonl(tmp_path / "history.jsonl", [user("Hi"), assistant("Hello!")])
    code, out, err = chat(llm_server, capsys, "--history", str(history))
    assert code == 2
    assert "history.jsonl" in err and "give a message" in err
    assert llm_server.requests == []


@pytest.mark.parametrize(("content", "expected"), [
    ('{"type": "message", "role": "user", "content": []}\n{not json\n', "line 2"),
    (json.dumps({"type": "message", "role": "user", "content": [{"type": "input_text", "text": 5}]}),
     "content[0].text"),
    ("[1, 2]\n", "line 1"),
])
def test_malformed_history_is_a_usage_error(
        llm_server: Any, capsys: Any, tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    code, out, err = chat(llm_server, capsys, "hi", "--history", str(path))
    assert code == 2
    assert str(path) in err and expected in err
    assert "Traceback" not in err and out == ""
    assert llm_server.requests == []


def test_missing_history_file_is_a_usage_error(llm_server: Any, capsys: Any, tmp_path: Path) -> None:
    code, _, err = chat(llm_server, capsys, "hi", "--history", str(tmp_path / "nope.jsonl"))
    assert code == 2
    assert "nope.jsonl" in err and "cannot read" in err


# --- tools ----------------------------------------------------------------------------


def test_tools_and_tool_choice_reach_the_request_and_the_call_is_shown(
        llm_server: Any, capsys: Any, tmp_path: Path) -> None:
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([WEATHER_TOOL]), encoding="utf-8")
    llm_server.enqueue(Reply(body=tool_call_body()))
    code, out, err = chat(llm_server, capsys, "Weather in Paris?", "--tools", str(tools),
                          "--tool-choice", "get_weather")
    assert code == 0, err
    assert out == '[tool call] get_weather({"city": "Paris"})\n'
    assert "finish reason: tool_calls" in err
    body = llm_server.requests[0].json()
    assert [t["function"]["name"] for t in body["tools"]] == ["get_weather"]
    assert body["tools"][0]["type"] == "function"
    assert body["tools"][0]["function"]["parameters"]["required"] == ["city"]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


def test_tool_call_in_json_mode(llm_server: Any, capsys: Any, tmp_path: Path) -> None:
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([WEATHER_TOOL]), encoding="utf-8")
    llm_server.enqueue(Reply(body=tool_call_body()))
    code, out, err = chat(llm_server, capsys, "Weather?", "--tools", str(tools), "--tool-choice", "required",
                          "--json", "--aggregate")
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    calls = [e["item"] for e in events if e["type"] == "output_item.done" and e["item"]["type"] == "function_call"]
    assert calls == [{"type": "function_call", "name": "get_weather", "arguments": '{"city": "Paris"}',
                      "call_id": "call_1"}]
    assert llm_server.requests[0].json()["tool_choice"] == "required"


def test_history_ending_with_a_tool_output_continues(llm_server: Any, capsys: Any, tmp_path: Path) -> None:
    history = write_jsonl(tmp_path / "h.jsonl", [
        user("Weather?"),
        {"type": "function_call", "name": "get_weather", "arguments": '{"city":"Paris"}', "call_id": "c1"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
    ])
    llm_server.enqueue(Reply(body=text_stream_body(["Sunny."])))
    code, out, err = chat(llm_server, capsys, "--history", str(history))
    assert (code, out) == (0, "Sunny.\n"), err
    roles = [m["role"] for m in llm_server.requests[0].json()["messages"]]
    assert roles == ["user", "assistant", "tool"]


@pytest.mark.parametrize(("content", "expected"), [
    ("[{]", "line 1 column 3"),
    ('{"type": "function"}', "expected a JSON array"),
    ('[{"type": "function", "name": "f", "parameters": {"type": "object"}}, 3]', "tools[1]: expected a JSON object"),
])
def test_malformed_tools_file_is_a_usage_error(
        llm_server: Any, capsys: Any, tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "tools.json"
    path.write_text(content, encoding="utf-8")
    code, out, err = chat(llm_server, capsys, "hi", "--tools", str(path))
    assert code == 2, err
    assert str(path) in err and expected in err
    assert llm_server.requests == []


def test_unknown_tool_choice_name_is_a_usage_error(llm_server: Any, capsys: Any, tmp_path: Path) -> None:
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([WEATHER_TOOL]), encoding="utf-8")
    code, _, err = chat(llm_server, capsys, "hi", "--tools", str(tools), "--tool-choice", "get_wether")
    assert code == 2
    assert "get_wether" in err and "get_weather" in err
    code, _, err = chat(llm_server, capsys, "hi", "--tool-choice", "get_weather")
    assert code == 2 and "--tools" in err
    assert llm_server.requests == []


# --- the tool loop (--tool) -------------------------------------------------------------

TOOLS_SOURCE = """
import dataclasses

from llmx_sync import tool


def get_weather(city: str) -> str:
    \"\"\"Current weather of a city.

    Args:
        city: The city's name.
    \"\"\"
    return f"sunny in {city}"


@tool(name="add_numbers")
def add(a: int, b: int) -> int:
    \"\"\"Add two numbers.\"\"\"
    return a + b


@dataclasses.dataclass
class Point:
    x: int


def untyped(value):
    return value


NOT_A_FUNCTION = 42
"""


@pytest.fixture
def tools_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The name of a module of tools in the current directory (a new name each test,
    so that no test imports another's)."""
    name = f"cli_tools_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(TOOLS_SOURCE, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    yield name
    sys.modules.pop(name, None)


def test_tool_runs_the_function_and_calls_the_model_again(llm_server: Any, capsys: Any, tools_module: str) -> None:
    path_before = list(sys.path)
    llm_server.enqueue(Reply(body=tool_call_body()), Reply(body=text_stream_body(["Sunny ", "in Paris."],
                                                                                  usage=USAGE)))
    code, out, err = chat(llm_server, capsys, "Weather in Paris?", "--tool", f"{tools_module}:get_weather")
    assert code == 0, err
    assert out == ('[tool call] get_weather({"city": "Paris"})\n'
                   "[tool result] get_weather: sunny in Paris\n"
                   "Sunny in Paris.\n")
    assert "usage: 22 input tokens, 6 output tokens, 28 total (2 turns)" in err
    first, second = (request.json() for request in llm_server.requests)
    (spec,) = first["tools"]
    assert spec["function"]["name"] == "get_weather"
    assert spec["function"]["parameters"]["properties"]["city"] == {"type": "string", "description": "The city's name."}
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny in Paris"}
    assert sys.path == path_before  # the current directory was on it only for the import


def test_a_forced_tool_choice_holds_for_the_first_turn_only(llm_server: Any, capsys: Any, tools_module: str) -> None:
    # Kept on every turn, it would make the model call the tool until --max-turns.
    llm_server.enqueue(Reply(body=tool_call_body()), Reply(body=text_stream_body(["Sunny."])))
    code, out, err = chat(llm_server, capsys, "Weather in Paris?", "--tool", f"{tools_module}:get_weather",
                          "--tool-choice", "get_weather")
    assert code == 0, err
    first, second = (request.json() for request in llm_server.requests)
    assert first["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert "tool_choice" not in second and out.endswith("Sunny.\n")


def test_tool_from_a_file_with_json_prints_every_event(llm_server: Any, capsys: Any, tmp_path: Path) -> None:
    path = tmp_path / "my_tools.py"
    path.write_text(TOOLS_SOURCE, encoding="utf-8")
    llm_server.enqueue(Reply(body=tool_call_body()), Reply(body=text_stream_body(["Sunny."])))
    code, out, err = chat(llm_server, capsys, "Weather?", "--tool", f"{path}:get_weather", "--tool",
                          f"{path}:add", "--json")
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert {"type": "tool_result", "call_id": "call_1", "name": "get_weather", "output": "sunny in Paris",
            "error": None} in events
    assert [e["turn"] for e in events if e["type"] == "completed"] == [1, 2]
    assert [e["delta"] for e in events if e["type"] == "output_text.delta"] == ["Sunny."]
    names = [t["function"]["name"] for t in llm_server.requests[0].json()["tools"]]
    assert names == ["get_weather", "add_numbers"]  # @tool(name=...) kept as made


def test_max_turns_ends_a_loop_the_model_does_not_end(llm_server: Any, capsys: Any, tools_module: str) -> None:
    llm_server.default = Reply(body=tool_call_body())
    code, out, err = chat(llm_server, capsys, "Weather?", "--tool", f"{tools_module}:get_weather",
                          "--max-turns", "2")
    assert code == 1
    assert len(llm_server.requests) == 2
    assert out.count("[tool result] get_weather: sunny in Paris") == 2
    assert "max_turns=2" in err


@pytest.mark.parametrize(("spec", "expected"), [
    ("no_colon", "expected MODULE:FUNCTION or FILE.py:FUNCTION"),
    (":get_weather", "expected MODULE:FUNCTION"),
    ("{module}:", "expected MODULE:FUNCTION"),
    ("no_such_module_xyz:f", "cannot import no_such_module_xyz: No module named 'no_such_module_xyz'"),
    ("{module}:get_wether", "has no function 'get_wether'"),
    ("{module}:NOT_A_FUNCTION", "'NOT_A_FUNCTION' is not a function (its type is int)"),
    ("{module}:untyped", "untyped(value)"),
    ("missing_file.py:f", "no such file: missing_file.py"),
    ("broken.py:f", "importing broken.py failed: ZeroDivisionError: division by zero"),
])
def test_a_bad_tool_is_a_usage_error_naming_the_problem(llm_server: Any, capsys: Any, tools_module: str,
                                                         spec: str, expected: str) -> None:
    Path("broken.py").write_text("1 / 0\n", encoding="utf-8")
    spec = spec.format(module=tools_module)
    code, out, err = chat(llm_server, capsys, "hi", "--tool", spec)
    assert code == 2, err
    assert f"--tool {spec}: " in err and expected in err
    assert "Traceback" not in err and out == ""
    assert llm_server.requests == []


@pytest.mark.parametrize(("extra", "expected"), [
    (["--tool", "{module}:get_weather"], "a tool named 'get_weather' was already given"),
    (["--tools", "tools.json"], "argument --tools: not with --tool"),
    (["--tool-choice", "get_wether"], "--tool-choice get_wether: no function of that name"),
])
def test_tool_combinations_that_cannot_work_are_usage_errors(llm_server: Any, capsys: Any, tools_module: str,
                                                              extra: list[str], expected: str) -> None:
    Path("tools.json").write_text(json.dumps([WEATHER_TOOL]), encoding="utf-8")
    code, _, err = chat(llm_server, capsys, "hi", "--tool", f"{tools_module}:get_weather",
                        *[arg.format(module=tools_module) for arg in extra])
    assert code == 2, err
    assert expected in err
    assert llm_server.requests == []


def test_max_turns_needs_tool(llm_server: Any, capsys: Any) -> None:
    code, _, err = chat(llm_server, capsys, "hi", "--max-turns", "3")
    assert code == 2
    assert "--max-turns: needs --tool" in err


def test_tool_results_are_one_short_line() -> None:
    assert cli.format_tool_result(ToolResult("c1", "f", "line one\nline two")) == "[tool result] f: line one line two"
    long = cli.format_tool_result(ToolResult("c1", "f", "x" * 5000))
    assert long == "[tool result] f: " + "x" * cli.TOOL_RESULT_CHARS + "…"
    failed = ToolResult("c1", "f", "error: ValueError: no", error="error: ValueError: no")
    assert cli.format_tool_result(failed) == "[tool error] f: error: ValueError: no"


# --- providers ----------------------------------------------------------------------


def test_config_file_provider_and_model(llm_server: Any, capsys: Any, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        'model = "cfg-model"\nmodel_provider = "mine"\n\n'
        f'[model_providers.mine]\nname = "Mine"\nbase_url = "{llm_server.url}"\n'
        'experimental_bearer_token = "sk-cfg"\nmax_tokens = 99\n', encoding="utf-8")
    llm_server.enqueue(Reply(body=text_stream_body(["a"])), Reply(body=text_stream_body(["b"])))
    assert run(capsys, "chat", "hi", "--config", str(config))[0] == 0
    assert run(capsys, "chat", "hi", "--config", str(config), "--provider", "mine", "--model", "m2")[0] == 0
    first, second = llm_server.requests
    assert first.json()["model"] == "cfg-model" and first.json()["max_tokens"] == 99
    assert first.headers["Authorization"] == "Bearer sk-cfg"
    assert second.json()["model"] == "m2"


def test_config_without_the_table_is_an_error(capsys: Any, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[model_providers.other]\nname = "O"\nbase_url = "http://127.0.0.1:9/v1"\n')
    code, _, err = run(capsys, "chat", "hi", "--config", str(config), "--provider", "mine")
    assert code == 1
    assert "model_providers.mine" in err and "Traceback" not in err


def test_builtin_provider_with_base_url_override(llm_server: Any, capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    llm_server.enqueue(Reply(body=text_stream_body(["a"])))
    assert chat(llm_server, capsys, "hi", "--provider", "openai")[0] == 0
    request = llm_server.requests[0]
    assert request.headers["Authorization"] == "Bearer sk-openai"
    # the built-in's default model (was cli.DEFAULT_MODELS["openai"])
    assert request.json()["model"] == BUILTIN_PROVIDERS["openai"].model == "gpt-4o-mini"


def test_missing_provider_key_exits_1(capsys: Any) -> None:
    code, out, err = run(capsys, "chat", "hi", "--provider", "litellm", "--base-url", "http://127.0.0.1:9/v1")
    assert code == 1
    assert "LLMX_API_KEY" in err and "Traceback" not in err and out == ""


# --- errors and exit codes -------------------------------------------------------------


def test_400_exits_1_with_the_message(llm_server: Any, capsys: Any) -> None:
    llm_server.enqueue(error_reply(400, "model 'nope' not found", type="invalid_request_error"))
    code, out, err = chat(llm_server, capsys, "hi", "--model", "nope")
    assert code == 1
    assert "unexpected status 400 Bad Request" in err and "model 'nope' not found" in err
    assert "Traceback" not in err and out == ""


def test_in_stream_error_exits_1_after_the_text(llm_server: Any, capsys: Any) -> None:
    llm_server.enqueue(Reply(body=[sse_event(chat_chunk("partial", role="assistant")),
                                   sse_event({"error": {"message": "overloaded", "type": "server_error"}})]))
    code, out, err = chat(llm_server, capsys, "hi")
    assert code == 1
    assert out == "partial\n"
    assert "overloaded" in err and "Traceback" not in err
    assert "usage:" not in err


def error_output(err: str) -> list[str]:
    lines = err.splitlines()
    assert all(line.startswith("llmx-sync: ") for line in lines), err
    return [line.removeprefix("llmx-sync: ") for line in lines]


def test_a_404_html_page_is_reduced_to_one_line_with_the_v1_hint(llm_server: Any, capsys: Any) -> None:
    page = ("<!DOCTYPE html><html><head><title>Not Found</title><style>body { color: red }</style></head>"
            "<body><h1>Not Found</h1>" + "<p>The requested URL was not found on this server.</p>\n" * 400
            + "</body></html>")
    assert len(page) > 20_000
    llm_server.enqueue(text_reply(page, status=404, headers={"Content-Type": "text/html"}))
    base = llm_server.url.removesuffix("/v1")
    code, out, err = run(capsys, "chat", "hi", "--base-url", base)
    assert (code, out) == (1, "")
    error, hint = error_output(err)
    assert error.startswith("error: unexpected status 404 Not Found: Not Found Not Found The requested URL")
    assert "<" not in error and "color: red" not in error
    assert len(error) < 600  # the page's first 500 characters of text, not 20,000
    assert hint.startswith("hint: ") and f"base_url='{base}/v1'" in hint


def test_a_401_json_body_shows_its_message_and_the_key_hint(llm_server: Any, capsys: Any) -> None:
    llm_server.enqueue(error_reply(401, "Incorrect API key provided: sk-abc***", type="invalid_request_error",
                                   code="invalid_api_key", headers={"x-request-id": "req_42"}))
    code, out, err = chat(llm_server, capsys, "hi")
    assert (code, out) == (1, "")
    error, hint = error_output(err)
    assert error == "error: unexpected status 401 Unauthorized: Incorrect API key provided: sk-abc***, request id: req_42"
    assert hint.startswith("hint: No API key was sent") and "LLMX_API_KEY" in hint


def test_an_error_with_a_key_sent_has_no_hint_and_a_long_message_stays_on_one_line(
        llm_server: Any, capsys: Any) -> None:
    # llama-cpp-python's 500 for a request it cannot validate: a message over two lines.
    message = ("1 validation error:\n  {'type': 'float_parsing', 'loc': ('body', 'temperature'), "
               "'msg': 'Input should be a valid number', 'input': 'hot'}")
    llm_server.enqueue(json_reply({"error": {"message": message, "type": "internal_server_error", "param": None,
                                             "code": None}}, status=401))
    code, _, err = chat(llm_server, capsys, "hi", "--api-key", "sk-test")
    assert code == 1
    assert error_output(err) == [
        "error: unexpected status 401 Unauthorized: 1 validation error: {'type': 'float_parsing', 'loc': "
        "('body', 'temperature'), 'msg': 'Input should be a valid number', 'input': 'hot'}"]


def test_a_refused_connection_names_the_url(capsys: Any) -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    code, _, err = run(capsys, "chat", "hi", "--base-url", url)
    assert code == 1
    (line,) = error_output(err)
    assert line.startswith(f"error: Connection failed: error sending request to {url}/chat/completions: ")


def closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # nothing listens there any more: connecting is refused


@pytest.mark.parametrize("argv", [
    [],
    ["chat"],
    ["chat", "hi", "--max-tokens", "-3"],
    ["chat", "hi", "--max-tokens", "many"],
    ["chat", "hi", "--temperature", "hot"],
    ["chat", "hi", "--provider", "nope"],
    ["chat", "hi", "--api-key", "sk-x"],
    ["chat", "hi", "--bogus"],
    ["talk", "hi"],
])
def test_bad_arguments_exit_2(capsys: Any, argv: list[str]) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2, (argv, err)
    assert "usage:" in err or "error:" in err
    assert "Traceback" not in err and out == ""


def test_help_exits_0(capsys: Any) -> None:
    code, out, _ = run(capsys, "chat", "--help")
    assert code == 0
    for flag in ("--provider", "--base-url", "--history", "--tools", "--tool-choice", "--json", "--aggregate"):
        assert flag in out


def test_keyboard_interrupt_closes_the_stream_and_exits_130(
        llm_server: Any, capsys: Any, monkeypatch: Any) -> None:
    llm_server.enqueue(Reply(body=[sse_event(chat_chunk("Hel", role="assistant")), Pause(0.2),
                                   sse_event(chat_chunk("lo")), Stall()]))
    real_render = Renderer.render

    def render(self: Renderer, event: Any) -> None:
        real_render(self, event)
        if isinstance(event, OutputTextDelta) and event.delta == "lo":
            raise KeyboardInterrupt

    monkeypatch.setattr(Renderer, "render", render)
    code, out, err = chat(llm_server, capsys, "hi")
    assert code == 130
    assert out == "Hello\n"
    assert "interrupted" in err and "Traceback" not in err
    assert llm_server.wait_for_client_disconnect(timeout=5)


# --- rendering, unit level -----------------------------------------------------------------


def test_renderer_dims_reasoning_only_with_color() -> None:
    events = [ReasoningContentDelta("Hmm"), OutputItemDone(Reasoning(content=[ReasoningText("Hmm")])),
              OutputItemAdded(Message.assistant("")), OutputTextDelta("Hi"),
              OutputItemDone(Message.assistant("Hi")), Completed("r", None, "stop")]
    colored, plain = io.StringIO(), io.StringIO()
    for out, style in ((colored, Style(color=True)), (plain, Style())):
        renderer = Renderer(out, style)
        for event in events:
            renderer.render(event)
    assert colored.getvalue() == f"{DIM}Hmm{RESET}\n\nHi\n"
    assert plain.getvalue() == "Hmm\n\nHi\n"


def test_renderer_prints_finished_items_that_were_not_streamed() -> None:
    out = io.StringIO()
    renderer = Renderer(out)
    for event in [OutputItemDone(Reasoning(content=[ReasoningText("why")])),
                  OutputItemDone(Message.assistant("All of it")),
                  OutputItemDone(FunctionCall(name="f", arguments="{}", call_id="c1")),
                  OutputItemDone(FunctionCall(name="g", arguments='{"x":1}', call_id="c2")),
                  Completed("r", None, "tool_calls")]:
        renderer.render(event)
    assert out.getvalue() == "why\n\nAll of it\n[tool call] f({})\n[tool call] g({\"x\":1})\n"


def test_style_follows_tty_and_no_color() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert Style.for_stream(Tty(), {}).color is True
    assert Style.for_stream(Tty(), {"NO_COLOR": "1"}).color is False
    assert Style.for_stream(Tty(), {"NO_COLOR": ""}).color is True  # no-color.org: empty counts as unset
    assert Style.for_stream(io.StringIO(), {}).color is False


def test_format_stats() -> None:
    usage = TokenUsage(input_tokens=10, cached_input_tokens=4, output_tokens=5, reasoning_output_tokens=2,
                       total_tokens=15)
    stats = Stats(started=1.0, first_token=1.25, ended=3.5)
    list(cli.observe([Completed("r", usage, "length")], stats))
    lines = format_stats(stats)
    assert lines == ["usage: 10 input tokens (4 cached), 5 output tokens (2 reasoning), 15 total",
                     "finish reason: length, time to first token: 0.25 s, total time: 2.50 s"]
    # A tool loop's turns: their usage added up, the last one's finish reason.
    list(cli.observe([Completed("r2", TokenUsage(input_tokens=20, output_tokens=1, total_tokens=21), "stop")],
                     stats))
    assert format_stats(stats)[0] == ("usage: 30 input tokens (4 cached), 6 output tokens (2 reasoning), "
                                      "36 total (2 turns)")
    assert format_stats(stats)[1].startswith("finish reason: stop,")
    lines = format_stats(Stats(started=1.0, ended=2.0, completed=Completed("r", None, None)))
    assert lines[0] == "usage: not reported by the server"
    assert lines[1].startswith("finish reason: none (the stream ended without one), time to first token: -")


def test_the_timing_line_keeps_the_local_models_start_up_apart() -> None:
    stats = Stats(started=10.0, startup=5.125, first_token=10.5, ended=12.0)
    assert format_stats(stats)[1] == ("finish reason: none (no completed event), local model start-up: 5.12 s, "
                                      "time to first token: 0.50 s, total time: 2.00 s")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_start_up_progress_on_a_terminal_counts_seconds_in_place() -> None:
    err, ticks = Terminal(), iter([100.0, 106.25])
    progress = cli.StartupProgress(err, clock=lambda: next(ticks))
    for seconds in (0.0, 0.3, 1.1, 1.4, 2.0, 5.9):
        progress(seconds)
    progress.finish()
    assert err.getvalue() == ("\rstarting the local model… 0 s\rstarting the local model… 1 s"
                              "\rstarting the local model… 2 s\rstarting the local model… 5 s"
                              "\rthe local model started in 6.25 s\n")
    assert progress.seconds == 6.25


def test_start_up_progress_elsewhere_is_a_line_before_and_after() -> None:
    err, ticks = io.StringIO(), iter([0.0, 3.5])
    progress = cli.StartupProgress(err, clock=lambda: next(ticks))
    for seconds in (0.0, 1.0, 2.0, 3.0):
        progress(seconds)
    progress.finish()
    assert err.getvalue() == "starting the local model…\nthe local model started in 3.50 s\n"


def test_no_start_up_shows_nothing() -> None:
    err = io.StringIO()
    progress = cli.StartupProgress(err)
    progress.finish()
    assert (err.getvalue(), progress.seconds) == ("", None)


def test_observe_times_the_first_output_and_keeps_completed() -> None:
    ticks = iter([1.0, 2.0, 3.0])
    stats = Stats(started=0.0)
    done = Completed("r", None, "stop")
    events = [OutputItemAdded(Message.assistant("")), OutputTextDelta("a"), OutputTextDelta("b"), done]
    assert list(cli.observe(events, stats, clock=lambda: next(ticks))) == events
    assert stats.first_token == 1.0  # the delta, not the empty item before it
    assert stats.completed is done


def test_tool_choice_value() -> None:
    assert cli.tool_choice_value(None, None) is None
    assert cli.tool_choice_value("auto", None) == "auto"
    assert cli.tool_choice_value("f", ["f"]) == "f"  # the SDK sends the object that forces f
    with pytest.raises(cli.UsageError):
        cli.tool_choice_value("g", ["f"])


# --- as a real process -------------------------------------------------------------------


def _env() -> dict[str, str]:
    # No PYTHONUNBUFFERED: the CLI must flush each delta itself.
    env = {k: v for k, v in os.environ.items() if k not in (*ENV_VARS, "PYTHONUNBUFFERED")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def _spawn(*argv: str) -> subprocess.Popen[bytes]:
    # A parent that ignores SIGINT (a background job) would pass that on, and
    # Python then installs no KeyboardInterrupt handler: give the child the default.
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    return subprocess.Popen(
        [sys.executable, "-m", "llmx_sync", *argv], cwd=REPO, env=_env(),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)) if ignored else None,
    )


def test_subprocess_streams_an_answer(llm_server: Any) -> None:
    llm_server.enqueue(Reply(body=text_stream_body(["Hel", "lo"], usage=USAGE)))
    proc = _spawn("chat", "hi", "--base-url", llm_server.url)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out == b"Hello\n"
    assert b"usage: 11 input tokens, 3 output tokens, 14 total" in err


def test_subprocess_400_exits_1_without_traceback(llm_server: Any) -> None:
    llm_server.enqueue(error_reply(400, "bad request body"))
    proc = _spawn("chat", "hi", "--base-url", llm_server.url)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert b"unexpected status 400 Bad Request" in err and b"bad request body" in err
    assert b"Traceback" not in err and out == b""


def test_subprocess_bad_arguments_exit_2() -> None:
    proc = _spawn("chat")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert b"usage:" in err and b"Traceback" not in err


def _read_until(proc: subprocess.Popen[bytes], wanted: bytes, timeout: float) -> bytes:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    data = b""
    deadline = time.monotonic() + timeout
    while wanted not in data:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {wanted!r} on stdout within {timeout}s (got {data!r})"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 4096)
            assert chunk, f"stdout closed before {wanted!r} (got {data!r})"
            data += chunk
    return data


def test_subprocess_sigint_while_the_server_stalls_exits_130(llm_server: Any) -> None:
    llm_server.enqueue(Reply(body=[sse_event(chat_chunk("First", role="assistant")), Stall()]))
    proc = _spawn("chat", "hi", "--base-url", llm_server.url)
    try:
        # The first delta arrives while the body is still open: it was flushed at once.
        early = _read_until(proc, b"First", timeout=30)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert (early + out) == b"First\n"
    assert b"interrupted" in err
    assert b"Traceback" not in err
    assert llm_server.wait_for_client_disconnect(timeout=5)
