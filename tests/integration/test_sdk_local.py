"""End-to-end tests of the SDK (`llmx_sync.Client`) against real llama.cpp servers on 127.0.0.1.

test_local_server.py checks the servers with raw HTTP; here every request goes through
`Client.stream`: request building, transport, the SSE parser, the reader thread and
`collect()`. The servers run SmolLM2-135M at temperature 0.

Two servers, two sets of quirks the SDK has to cope with:

- llama-cpp-python's ``llama_cpp.server`` (pinned 0.3.36): never reports usage while
  streaming; repeats a tool call's id and name in every delta; rejects ``content: null``
  on an assistant message with tool calls (HTTP 500, pydantic "Input should be a valid
  string") -- the reason for ``Provider.tool_call_content``; and with
  ``--chat_format chatml-function-calling`` answers a streaming ``tool_choice="auto"``
  with 200 headers and then an empty body (it raises "Automatic streaming tool choice is
  not supported" after the headers went out).
- llama.cpp's ``llama-server``: sends a usage chunk (``choices: []``) at the end; sends id
  and name only in the first delta of each tool call; and closes the connection after a
  streamed answer without saying ``Connection: close``, so a pooled keep-alive connection
  is sometimes found dead on reuse (``RemoteDisconnected`` before any response byte).

Skipped, saying why, when llama-cpp-python, the bundled model or llama-server is missing
(`bash scripts/install-local.sh` installs them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_support import LLAMA_SERVER_SKIP, needs_llama_cpp, needs_llama_server, tools_chat_template

import llmx_sync as llmx
from llmx_sync import (
    BadRequestError,
    Client,
    Completed,
    Event,
    FunctionCall,
    FunctionCallOutput,
    FunctionTool,
    LlmxError,
    Message,
    OutputItemDone,
    OutputText,
    OutputTextDelta,
    Prompt,
    Provider,
    RetryLimitReachedError,
    StreamError,
)
from llmx_sync.local import (
    LlamaServerBinary,
    LocalServer,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ skip reasons


# ------------------------------------------------------------------ common inputs

WEATHER_TOOL = FunctionTool(
    name="get_weather",
    description="Get the current weather in a city",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string", "description": "The city name"}},
        "required": ["city"],
    },
)
CALL_GET_WEATHER = {"type": "function", "function": {"name": "get_weather"}}
TEXT_QUESTION = "Say hello in five words."
WEATHER_QUESTION = "What is the weather in Paris?"
READER_PREFIX = "llmx_sync-reader-"


def _weather_prompt(question: str = WEATHER_QUESTION) -> Prompt:
    return Prompt(input=[Message.user(question)], tools=[WEATHER_TOOL])


def _deltas(events: list[Event]) -> list[str]:
    return [e.delta for e in events if isinstance(e, OutputTextDelta)]


def _done_items(events: list[Event]) -> list[object]:
    return [e.item for e in events if isinstance(e, OutputItemDone)]


def _completed(events: list[Event]) -> Completed:
    completed = [e for e in events if isinstance(e, Completed)]
    assert len(completed) == 1 and events[-1] is completed[0], events
    return completed[0]


def _reader_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(READER_PREFIX) and t.is_alive()]


def _log_size(server: LocalServer) -> int:
    assert server.log_path is not None
    return os.path.getsize(server.log_path)


def _log_since(server: LocalServer, offset: int) -> str:
    """The server's log from byte `offset` on (log_tail() is too short: one traceback
    of llama_cpp.server's ASGI stack is over 20 kB)."""
    assert server.log_path is not None
    with open(server.log_path, "rb") as f:
        f.seek(offset)
        return f.read().decode("utf-8", errors="replace")


def _local_provider(base_url: str, tool_call_content: str | None = "") -> Provider:
    """What `Provider.builtin("local")` returns, pointed at this module's server."""
    return Provider(name="local", base_url=base_url, tool_call_content=tool_call_content)


# ================================================================ llama_cpp.server

@pytest.fixture
def client(server: LocalServer) -> Iterator[Client]:
    with Client(_local_provider(server.base_url)) as c:
        yield c


@needs_llama_cpp
def test_text_stream_deltas_item_completed_and_collect_agree(server: LocalServer, client: Client) -> None:
    model = str(server.model_id)
    # Greedy decoding is repeatable only from the same KV-cache state: the first request
    # of a prompt evaluates it in one batch, a repeat re-evaluates only its last token
    # (prefix-match hit), and the logits differ just enough to flip a near tie
    # ("world!" / "world."). So a warm-up request first; the next two are alike.
    client.stream(TEXT_QUESTION, model=model, temperature=0, max_tokens=24).collect()

    with client.stream(TEXT_QUESTION, model=model, temperature=0, max_tokens=24) as stream:
        assert stream.response.status_code == 200
        events = list(stream)
    deltas = _deltas(events)
    assert deltas and all(isinstance(d, str) and d for d in deltas), events
    text = "".join(deltas)
    assert text.strip()
    messages = [item for item in _done_items(events) if isinstance(item, Message)]
    assert len(messages) == 1 and messages[0].role == "assistant", events
    assert messages[0].text == text
    completed = _completed(events)
    assert isinstance(completed.finish_reason, str) and completed.finish_reason in ("stop", "length"), completed
    assert completed.response_id.startswith("chatcmpl-"), completed
    # llama_cpp.server never sends usage in a stream, include_usage or not.
    assert completed.token_usage is None
    assert llmx.collect(events).text == text

    result = client.stream(TEXT_QUESTION, model=model, temperature=0, max_tokens=24).collect()
    assert result.text == text
    assert result.finish_reason == completed.finish_reason
    assert result.tool_calls == [] and result.token_usage is None


@needs_llama_cpp
def test_forced_tool_call_gives_one_function_call(server: LocalServer, client: Client) -> None:
    events = list(client.stream(_weather_prompt(), model=str(server.model_id), temperature=0, max_tokens=64,
                                tool_choice=CALL_GET_WEATHER))
    calls = [item for item in _done_items(events) if isinstance(item, FunctionCall)]
    # The server repeats id and name in every delta: still one call, named once.
    assert len(calls) == 1, events
    call = calls[0]
    assert call.name == "get_weather", call
    assert call.call_id, call
    arguments = json.loads(call.arguments)
    assert isinstance(arguments, dict) and "city" in arguments, call
    assert _completed(events).finish_reason == "tool_calls"


@needs_llama_cpp
def test_complete_agent_turn_needs_tool_call_content(server: LocalServer, client: Client) -> None:
    model = str(server.model_id)
    first = client.stream(_weather_prompt(), model=model, temperature=0, max_tokens=64,
                          tool_choice=CALL_GET_WEATHER).collect()
    assert first.finish_reason == "tool_calls" and len(first.tool_calls) == 1, first
    call = first.tool_calls[0]
    history = [Message.user(WEATHER_QUESTION), *first.items, FunctionCallOutput.from_text(call.call_id, "sunny, 21 C")]

    # tool_call_content="" (the local provider): the assistant message is sent with
    # content "" and the server answers in words.
    second = client.stream(Prompt(input=history, tools=[WEATHER_TOOL]), model=model, temperature=0,
                           max_tokens=48).collect()
    assert second.text.strip(), second
    assert second.finish_reason in ("stop", "length"), second
    assert second.tool_calls == []

    # tool_call_content=None (the OpenAI shape, JSON null): llama-cpp-python's pydantic
    # models want a string there and the server answers 500 (not 4xx) with the
    # validation errors: a BadRequestError at once (the same request would be refused
    # again), its status 500 and its message the server's.
    with Client(_local_provider(server.base_url, tool_call_content=None)) as null_client:
        with pytest.raises(BadRequestError) as info:
            null_client.stream(Prompt(input=history, tools=[WEATHER_TOOL]), model=model, temperature=0,
                               max_tokens=48)
    error = info.value
    assert not isinstance(error, RetryLimitReachedError) and error.status == 500, error
    assert "ChatCompletionRequestAssistantMessage" in error.body, error.body
    assert "Input should be a valid string" in error.body and "Input should be a valid string" in str(error)


@needs_llama_cpp
def test_auto_tool_choice_with_chatml_function_calling_raises_a_clear_error() -> None:
    # llama_cpp.server sends 200 + text/event-stream headers, then its handler raises
    # ValueError("Automatic streaming tool choice is not supported") and the chunked
    # body ends with no event. The SDK must raise, not yield an empty stream that looks
    # finished.
    with LocalServer(startup_timeout=120, extra_args=["--chat_format", "chatml-function-calling"]) as srv:
        with Client(_local_provider(srv.base_url)) as client:
            events: list[Event] = []
            started = time.monotonic()
            with pytest.raises(LlmxError) as info:
                with client.stream(_weather_prompt(), model=str(srv.model_id), temperature=0, max_tokens=64,
                                   tool_choice="auto") as stream:
                    assert stream.response.status_code == 200
                    for event in stream:
                        events.append(event)
            elapsed = time.monotonic() - started
            error = info.value
            assert isinstance(error, StreamError), repr(error)
            assert ("without sending any event" in str(error)
                    or "Transport error" in str(error)), str(error)
            assert not any(isinstance(e, Completed) for e in events), events
            assert elapsed < 30, f"the error took {elapsed:.1f}s (an idle timeout instead of the body's end?)"
            # The server (and the client's pool) still work afterwards.
            after = client.stream(TEXT_QUESTION, model=str(srv.model_id), temperature=0, max_tokens=8).collect()
            assert after.text.strip(), after
            # uvicorn logs the handler's error once the response is torn down, a moment
            # after the client saw the body end.
            deadline = time.monotonic() + 10
            while ("Automatic streaming tool choice is not supported" not in _log_since(srv, 0)
                   and time.monotonic() < deadline):
                time.sleep(0.1)
            assert "Automatic streaming tool choice is not supported" in _log_since(srv, 0)


@needs_llama_cpp
def test_two_threads_stream_concurrently_through_one_client(server: LocalServer, client: Client) -> None:
    # llama_cpp.server serves one request at a time (the second waits for the model's
    # lock; --interrupt_requests False keeps it from cutting the first one short).
    questions = ["Say hello in five words.", "Name three colours."]
    results: dict[int, llmx.ChatResult] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(questions))

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = client.stream(questions[index], model=str(server.model_id), temperature=0,
                                           max_tokens=24).collect()
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), name=f"sdk-test-{i}") for i in range(len(questions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert not any(t.is_alive() for t in threads), "a stream did not finish within 180 s"
    assert not errors, errors
    assert sorted(results) == [0, 1]
    for result in results.values():
        assert result.text.strip(), result
        assert result.finish_reason in ("stop", "length"), result


@needs_llama_cpp
def test_break_and_close_free_the_reader_and_the_server(server: LocalServer, client: Client) -> None:
    # The llama_cpp.server runs with --interrupt_requests False: a new request does not
    # interrupt a running one, it waits for it. What frees the model is the client going
    # away: sse-starlette sees the disconnect, cancels the publisher (log: "Disconnected
    # from client (via refresh/close)") and generation stops at the next token. So after
    # close() a new request is served at once instead of waiting for the 512 tokens
    # (about 8 s on 2 cores) of the abandoned one.
    log_offset = _log_size(server)
    model = str(server.model_id)
    stream = client.stream("Write a long story about a dragon.", model=model, temperature=0, max_tokens=512)
    first: str | None = None
    for event in stream:
        if isinstance(event, OutputTextDelta):
            first = event.delta
            break
    assert first, "no text delta before the end of the stream"
    stream.close()
    assert stream.closed
    deadline = time.monotonic() + 1.0
    while _reader_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _reader_threads(), _reader_threads()
    assert list(stream) == []  # a closed stream ends at once

    started = time.monotonic()
    result = client.stream(TEXT_QUESTION, model=model, temperature=0, max_tokens=24).collect()
    elapsed = time.monotonic() - started
    assert result.text.strip(), result
    assert elapsed < 30, f"the next stream took {elapsed:.1f}s: the abandoned generation kept the server busy"
    log = _log_since(server, log_offset)
    assert "Disconnected from client" in log, log[-3000:]


@needs_llama_cpp
def test_tool_loop_example_with_the_local_provider() -> None:
    # Without --base-url the example uses Provider.builtin("local"), which starts its own
    # llama_cpp.server (the --base-url path is tests/integration/test_conversations_local.py's).
    env = {k: v for k, v in os.environ.items()
           if k not in ("LLMX_MODEL", "LLMX_API_KEY", "LLMX_BASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "tool_loop.py")], cwd=REPO, env=env,
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines and lines[0].startswith("[tool] get_weather("), proc.stdout
    assert '"sky": "sunny"' in lines[0], proc.stdout
    assert "".join(lines[1:]).strip(), f"no answer after the tool call: {proc.stdout!r}"


# ================================================================ llama-server

@pytest.fixture(scope="module")
def tools_llama_server() -> Iterator[LlamaServerBinary]:
    """llama-server with a tool-capable ChatML template (SmolLM2's own has no tool support)."""
    if LLAMA_SERVER_SKIP:
        pytest.skip(LLAMA_SERVER_SKIP)
    template = tools_chat_template()
    srv = LlamaServerBinary(startup_timeout=120, extra_args=["--chat-template-file", template])
    srv.start()
    yield srv
    srv.stop()


@needs_llama_server
def test_llama_server_usage_from_the_trailing_chunk(llama_server: LlamaServerBinary) -> None:
    with Client(base_url=llama_server.base_url) as client:  # include_usage is on by default
        events = list(client.stream(TEXT_QUESTION, model=str(llama_server.model_id), temperature=0,
                                    max_tokens=24))
    assert "".join(_deltas(events)).strip(), events
    completed = _completed(events)
    assert completed.finish_reason in ("stop", "length"), completed
    usage = completed.token_usage
    assert usage is not None, completed
    assert usage.input_tokens > 0 and usage.output_tokens > 0 and usage.total_tokens > 0, usage
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens, usage
    assert usage.output_tokens <= 24, usage


@needs_llama_server
def test_llama_server_parallel_tool_calls_by_index(tools_llama_server: LlamaServerBinary) -> None:
    # The 135M model never opens a <tool_call> by itself: the assistant turn is
    # prefilled with one complete call and the start of a second (as in
    # test_local_server.py); llama-server parses both as tool calls, index 0 and 1.
    prefill = ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
               '</tool_call>\n<tool_call>\n')
    prompt = Prompt(
        input=[Message.user("What is the weather in Paris and in Tokyo?"),
               Message(role="assistant", content=[OutputText(prefill)])],
        tools=[WEATHER_TOOL],
    )
    with Client(base_url=tools_llama_server.base_url) as client:
        events = list(client.stream(prompt, model=str(tools_llama_server.model_id), temperature=0, max_tokens=48,
                                    tool_choice="required", parallel_tool_calls=True))
    calls = [item for item in _done_items(events) if isinstance(item, FunctionCall)]
    assert [c.name for c in calls] == ["get_weather", "get_weather"], events
    # In order of first appearance: the prefilled Paris call is index 0.
    assert json.loads(calls[0].arguments) == {"city": "Paris"}, calls
    second = json.loads(calls[1].arguments)
    assert isinstance(second, dict) and isinstance(second.get("city"), str), calls
    assert all(c.call_id for c in calls) and calls[0].call_id != calls[1].call_id, calls
    assert _completed(events).finish_reason == "tool_calls"


@needs_llama_server
def test_llama_server_sequential_streams_survive_dropped_keep_alive(
    llama_server: LlamaServerBinary, caplog: pytest.LogCaptureFixture
) -> None:
    # llama-server closes the connection after a streamed answer without a
    # `Connection: close` header; reused, a pooled connection raced that close (about 1
    # request in 7 under load went out on a closed socket and was retried). The pool
    # closes such a connection instead of keeping it: every request goes out on a new
    # one, with no resend and no counted retry.
    caplog.set_level("DEBUG", logger="llmx_sync")
    model = str(llama_server.model_id)
    with Client(base_url=llama_server.base_url) as client:
        for i in range(6):
            result = client.stream(f"Say hello in {i + 2} words.", model=model, temperature=0,
                                   max_tokens=12).collect()
            assert result.text.strip(), (i, result)
            assert result.finish_reason in ("stop", "length"), (i, result)
            assert result.token_usage is not None and result.token_usage.output_tokens > 0, (i, result)
    assert not [record.getMessage() for record in caplog.records
                if "failed" in record.getMessage() or "sending again" in record.getMessage()]
