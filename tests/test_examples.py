"""Each script in examples/ run as a subprocess against the scripted LLM server."""

from __future__ import annotations

import ast
import itertools
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from llm_server import (
    LLMServer,
    Pause,
    Reply,
    chat_chunk,
    error_reply,
    sse_done,
    sse_event,
    text_stream_body,
    tool_call_delta,
)
from sockets import wait_for
from stream_helpers import event_of, streamed_text

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
ANSWER = ["It is sunny ", "in Paris ", "today."]


def example_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def run_example(name: str, server: LLMServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--base-url", server.url, "--model", "test-model", *args],
        env=example_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def answers(url: str) -> bool:
    try:
        requests.get(url, timeout=0.5)
        return True
    except requests.ConnectionError:
        return False


@contextmanager
def serving_example(name: str, server: LLMServer, *args: str) -> Iterator[str]:
    """The example's web server, started as a subprocess; its base URL once it answers."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / name), "--base-url", server.url, "--model", "test-model",
         *args, "--port", str(port)],
        env=example_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: answers(url) or process.poll() is not None, timeout=30, interval=0.1)
        assert process.poll() is None, process.communicate()
        yield url
    finally:
        process.terminate()
        try:
            process.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def test_stream_script_prints_the_answer(llm_server: LLMServer) -> None:
    llm_server.enqueue(Reply(body=text_stream_body(ANSWER)))
    done = run_example("stream_script.py", llm_server, "How is the weather?")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "".join(ANSWER) + "\n"
    assert "finish reason: stop" in done.stderr
    assert llm_server.requests[0].json()["messages"] == [{"role": "user", "content": "How is the weather?"}]


def test_tool_loop_runs_the_function_and_sends_its_output_back(llm_server: LLMServer) -> None:
    llm_server.enqueue(
        Reply(body=[
            sse_event(chat_chunk(role="assistant", tool_calls=[tool_call_delta(0, id="call_1", name="get_weather")])),
            sse_event(chat_chunk(tool_calls=[tool_call_delta(0, arguments='{"city": ')])),
            sse_event(chat_chunk(tool_calls=[tool_call_delta(0, arguments='"Paris"}')])),
            sse_event(chat_chunk(finish_reason="tool_calls")),
            sse_done(),
        ]),
        Reply(body=text_stream_body(ANSWER)),
    )
    done = run_example("tool_loop.py", llm_server, "Weather in Paris?")
    assert done.returncode == 0, done.stderr
    weather = json.dumps({"city": "Paris", "temperature_c": 21, "sky": "sunny"})
    assert done.stdout == f'[tool] get_weather({{"city": "Paris"}}) -> {weather}\n' + "".join(ANSWER) + "\n"

    first, second = (request.json() for request in llm_server.requests)
    assert first["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert [tool["function"]["name"] for tool in first["tools"]] == ["get_weather"]
    call, output = second["messages"][-2:]
    assert call["role"] == "assistant"
    assert [c["id"] for c in call["tool_calls"]] == ["call_1"]
    assert output == {"role": "tool", "tool_call_id": "call_1", "content": weather}
    assert second["tool_choice"] == "none"


def test_flask_chat_serves_its_page_and_streams_answers(llm_server: LLMServer) -> None:
    llm_server.enqueue(Reply(body=text_stream_body(ANSWER)))
    with serving_example("flask_chat.py", llm_server) as url:
        page = requests.get(url, timeout=5)
        assert page.ok and "<title>llmx_sync chat</title>" in page.text
        history = [{"role": "user", "text": "Hi"}, {"role": "assistant", "text": "Hello!"},
                   {"role": "user", "text": "Weather?"}]
        with requests.post(f"{url}/chat", json={"messages": history}, stream=True, timeout=10) as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            assert streamed_text(response) == "".join(ANSWER)
    assert llm_server.requests[0].json()["messages"] == [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Weather?"},
    ]


def test_flask_chat_answers_a_malformed_conversation_with_400(llm_server: LLMServer) -> None:
    with serving_example("flask_chat.py", llm_server) as url:
        response = requests.post(f"{url}/chat", json={"messages": [{"role": "system", "text": "x"}]}, timeout=5)
    assert response.status_code == 400
    kind, data = event_of(response.text.removesuffix("\n\n"))  # the page reads it as any error frame
    assert (kind, data["type"]) == ("error", "InvalidInputError")
    assert data["message"] == "messages: malformed conversation: KeyError('system')"
    assert llm_server.requests == []


def test_django_view_answers_an_upstream_error_with_its_status_and_an_error_frame(llm_server: LLMServer) -> None:
    llm_server.enqueue(error_reply(429, "Rate limit reached", headers={"Retry-After": "120"}))
    with serving_example("django_view.py", llm_server) as url:
        response = requests.get(f"{url}/chat", params={"q": "Weather?"}, timeout=10)
    assert response.status_code == 429
    assert response.headers["Content-Type"].startswith("text/event-stream")
    kind, data = event_of(response.text.removesuffix("\n\n"))
    assert (kind, data["type"]) == ("error", "RetriedRateLimitError")
    assert data["message"].startswith("unexpected status 429 Too Many Requests (retry limit reached after 1 attempt): "
                                      "Rate limit reached")


def test_django_view_streams_an_answer(llm_server: LLMServer) -> None:
    llm_server.enqueue(Reply(body=text_stream_body(ANSWER)))
    with serving_example("django_view.py", llm_server) as url:
        with requests.get(f"{url}/chat", params={"q": "Weather?"}, stream=True, timeout=10) as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            assert streamed_text(response) == "".join(ANSWER)
    assert llm_server.requests[0].json()["messages"] == [{"role": "user", "content": "Weather?"}]


def test_agent_runs_the_functions_the_model_calls_then_answers(llm_server: LLMServer) -> None:
    convert = '{"time": "2024-06-01 09:00", "from_zone": "Europe/Paris", "to_zone": "Asia/Tokyo"}'
    llm_server.enqueue(
        Reply(body=[
            sse_event(chat_chunk(role="assistant", tool_calls=[
                tool_call_delta(0, id="call_1", name="get_weather", arguments='{"city": "Tokyo"}')])),
            sse_event(chat_chunk(tool_calls=[tool_call_delta(1, id="call_2", name="convert_time")])),
            sse_event(chat_chunk(tool_calls=[tool_call_delta(1, arguments=convert)])),
            sse_event(chat_chunk(finish_reason="tool_calls")),
            sse_done(),
        ]),
        Reply(body=text_stream_body(ANSWER)),
    )
    done = run_example("agent.py", llm_server, "Weather in Tokyo, and the time there at 9:00 in Paris?")
    assert done.returncode == 0, done.stderr
    weather = '{"city":"Tokyo","sky":"rain","temperature_c":17}'
    assert done.stdout == (f'[tool] get_weather({{"city": "Tokyo"}}) -> {weather}\n'
                           f"[tool] convert_time({convert}) -> 2024-06-01 16:00 JST\n" + "".join(ANSWER) + "\n")

    first, second = (request.json() for request in llm_server.requests)
    assert [tool["function"]["name"] for tool in first["tools"]] == ["get_weather", "convert_time"]
    assert first["tools"][1]["function"]["parameters"]["required"] == ["time", "from_zone", "to_zone"]
    assert [(m["role"], m.get("tool_call_id"), m.get("content")) for m in second["messages"][-2:]] == [
        ("tool", "call_1", weather), ("tool", "call_2", "2024-06-01 16:00 JST")]


def test_structured_prints_the_object_as_it_grows_then_the_instance(llm_server: LLMServer) -> None:
    city = {"name": "Paris", "country": "France", "population": 2100000, "landmarks": ["Louvre", "Eiffel Tower"]}
    text = json.dumps(city)
    # Written as a model writes, a few characters at a time: one value per batch that arrives.
    body = text_stream_body([text[i:i + 8] for i in range(0, len(text), 8)])
    llm_server.enqueue(Reply(body=[part for piece in body for part in (piece, Pause(0.02))]))
    done = run_example("structured.py", llm_server, "Paris")
    assert done.returncode == 0, done.stderr
    *partials, last = done.stdout.splitlines()
    assert last == "City(name='Paris', country='France', population=2100000, landmarks=['Louvre', 'Eiffel Tower'])"
    values = [ast.literal_eval(line) for line in partials]
    assert len(values) > 5 and values[0] != city and values[-1] == city
    assert all(set(a) <= set(b) for a, b in itertools.pairwise(values))  # members are only ever added
    response_format = llm_server.requests[0].json()["response_format"]
    assert (response_format["type"], response_format["json_schema"]["name"]) == ("json_schema", "City")
    assert response_format["json_schema"]["schema"]["required"] == ["name", "country", "population", "landmarks"]
