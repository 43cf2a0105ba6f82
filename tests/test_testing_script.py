"""`llmx_sync.testing` as a user's tests use it: the scripted answers read by the SDK
(and by the openai SDK), record/replay, and the pytest fixture."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from configparser import ConfigParser
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

import llmx_sync as llmx
from llmx_sync.events import OutputTextDelta
from llmx_sync.testing import (
    Recorder,
    Recording,
    Reply,
    ScriptedServer,
    answer,
    call,
    closed_without_response,
    error_reply,
    json_answer,
    stream_error,
)

ROOT = Path(__file__).resolve().parent.parent


def client_of(server: ScriptedServer, **settings: object) -> llmx.Client:
    return llmx.Client(llmx.Provider("scripted", server.base_url, **settings))  # type: ignore[arg-type]


def chunks(server: ScriptedServer, index: int = 0) -> list[object]:
    """The JSON chunks of a reply as the server sent them, read again with requests."""
    with requests.post(server.chat_url, json={}, timeout=5) as response:
        events = [line.removeprefix("data: ") for line in response.text.split("\n\n") if line]
    return [event if event == "[DONE]" else json.loads(event) for event in events]


# --- answers ---------------------------------------------------------------------------------


def test_an_answer_streams_reasoning_then_text_word_by_word_then_finish_usage_and_done() -> None:
    with ScriptedServer(answer("Sunny in Paris.", reasoning="Look it up.", usage=(12, 4))) as server:
        sent = chunks(server)
    deltas = [chunk["choices"][0]["delta"] if chunk != "[DONE]" and chunk["choices"] else chunk  # type: ignore[index]
              for chunk in sent]
    assert deltas == [
        {"role": "assistant", "reasoning_content": "Look "}, {"reasoning_content": "it "},
        {"reasoning_content": "up."}, {"content": "Sunny "}, {"content": "in "}, {"content": "Paris."}, {},
        sent[-2], "[DONE]"]
    assert sent[-3]["choices"][0]["finish_reason"] == "stop"  # type: ignore[index]
    assert sent[-2] == {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000,
                        "model": "test-model", "choices": [],
                        "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}}


def test_the_sdk_reads_a_scripted_answer_whole() -> None:
    with ScriptedServer(answer(["Sun", "ny"], reasoning=["hm"], usage={"prompt_tokens": 3, "completion_tokens": 2,
                                                                     "total_tokens": 5})) as server:
        result = client_of(server).stream("Weather?", model="m").collect()
        assert server.requests[0].json()["messages"] == [{"role": "user", "content": "Weather?"}]
    assert (result.text, result.reasoning, result.finish_reason) == ("Sunny", "hm", "stop")
    assert result.token_usage is not None and result.token_usage.total_tokens == 5


def test_scripted_tool_calls_drive_a_tool_loop() -> None:
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    with ScriptedServer(answer("Let me look.", tool_calls=[call("get_weather", {"city": "Paris"}),
                                                           call("get_weather", '{"city": "Rome"}', id="r")]),
                        answer("Sunny in both.")) as server:
        result = client_of(server).run("Weather?", model="m", tools=[get_weather]).collect()
        second = server.requests[1].json()["messages"]
    assert result.text == "Sunny in both."
    assert [(m["role"], m.get("tool_call_id"), m["content"]) for m in second[-2:]] == [
        ("tool", "call_1", "sunny in Paris"), ("tool", "r", "sunny in Rome")]
    assert [c["function"]["arguments"] for c in second[-3]["tool_calls"]] == ['{"city": "Paris"}', '{"city": "Rome"}']


def test_a_json_answer_is_structured_output() -> None:
    @dataclass
    class City:
        name: str
        population: int

    # Paced, so that the pieces arrive in batches of their own: the partial value is
    # parsed at most once per batch.
    with ScriptedServer(json_answer({"name": "Paris", "population": 2100000}, delay=0.02)) as server:
        stream = client_of(server).stream("Paris?", model="m", response_format=City)
        values = [event.value for event in stream if event.type == "output_json.delta"]
        assert stream.collect().parsed == City("Paris", 2100000)
    assert len(values) > 2 and values[-1] == {"name": "Paris", "population": 2100000}


@pytest.mark.parametrize(("end", "error"), [("truncate", "ended before"), ("drop", ""), ("reset", "")])
def test_a_cut_answer_is_a_stream_error_after_the_text_before_it(end: str, error: str) -> None:
    with ScriptedServer(answer("Half an", end=end)) as server:  # type: ignore[arg-type]
        stream = client_of(server, request_max_retries=0).stream("q", model="m")
        texts = []
        with pytest.raises(llmx.StreamError) as caught:
            for event in stream:
                if isinstance(event, OutputTextDelta):
                    texts.append(event.delta)
    assert "".join(texts) == "Half an"
    assert error in str(caught.value)


def test_a_stalled_answer_meets_the_idle_timeout() -> None:
    with ScriptedServer(answer("Hel", end="stall")) as server:
        with pytest.raises(llmx.StreamIdleTimeoutError):
            client_of(server).stream("q", model="m", idle_timeout=0.3).collect()


def test_delays_pace_the_chunks_and_the_headers() -> None:
    with ScriptedServer(answer(["a", "b", "c"], delay=0.1, first_byte_after=0.2)) as server:
        started = time.monotonic()
        stream = client_of(server).stream("q", model="m")
        headers_at = time.monotonic()
        stream.collect()
        ended = time.monotonic()
    assert headers_at - started >= 0.2
    assert ended - headers_at >= 0.35  # 4 chunks (3 texts and the finish), 0.1 s before each


def test_statuses_drops_and_in_stream_errors_as_the_sdk_sees_them() -> None:
    with ScriptedServer(error_reply(429, "Slow down", retry_after=0), closed_without_response(),
                        answer("Made it.")) as server:
        # (the drop after a whole request is a counted retry: its backoff, 0.4 s, must be allowed)
        assert client_of(server, max_retry_delay=1.0).stream("q", model="m").collect().text == "Made it."
        assert len(server.requests) == 3
        assert server.requests[0].json() == server.requests[2].json()
    with ScriptedServer(error_reply(400, "bad model", code="model_not_found")) as server:
        with pytest.raises(llmx.BadRequestError) as caught:
            client_of(server).stream("q", model="m")
    assert (caught.value.message, caught.value.code) == ("bad model", "model_not_found")
    with ScriptedServer(stream_error("upstream overloaded", after="Par")) as server:
        stream = client_of(server).stream("q", model="m")
        with pytest.raises(llmx.InStreamError, match="upstream overloaded"):
            for _ in stream:
                pass
        assert stream.snapshot().text == "Par"


def test_an_unknown_ending_is_refused() -> None:
    with pytest.raises(ValueError, match="end must be one of"):
        answer("x", end="explode")  # type: ignore[arg-type]


def test_a_generator_body_is_sent_piece_by_piece_and_closed_when_the_client_leaves() -> None:
    closed = []

    def body():  # type: ignore[no-untyped-def]
        try:
            yield b"data: one\n\n"
            for _ in range(1000):
                yield b": keep-alive\n\n"
                time.sleep(0.01)
        finally:
            closed.append(True)

    with ScriptedServer(Reply(body=body())) as server:
        with requests.post(server.chat_url, json={}, stream=True, timeout=5) as response:
            assert next(response.iter_content(chunk_size=None)) == b"data: one\n\n"
        assert server.wait_for_client_disconnect(timeout=5)
    assert closed == [True]


def test_the_openai_sdk_reads_a_scripted_answer_too() -> None:
    openai = pytest.importorskip("openai")
    with ScriptedServer(answer("Sunny in Paris.", tool_calls=[call("get_weather", {"city": "Paris"})])) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
        stream = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True)
        chunks = list(stream)
        client.close()
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    calls = [tc for chunk in chunks if chunk.choices for tc in chunk.choices[0].delta.tool_calls or ()]
    assert text == "Sunny in Paris."
    assert (calls[0].id, calls[0].function.name) == ("call_1", "get_weather")
    assert "".join(tc.function.arguments or "" for tc in calls) == '{"city": "Paris"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


# --- record and replay -------------------------------------------------------------------------


def test_record_a_streamed_answer_then_replay_it_with_its_timing_or_at_full_speed(tmp_path: Path) -> None:
    path = tmp_path / "weather.json"
    with ScriptedServer(answer("It is sunny today.", delay=0.15, first_byte_after=0.1, usage=(5, 4),
                               headers={"x-request-id": "req-1"}),
                        error_reply(429, "Slow down")) as upstream:
        with Recorder(upstream.base_url, path) as recorder:
            client = llmx.Client(base_url=recorder.base_url, api_key="sk-very-secret")
            recorded = client.stream("Weather?", model="m").collect()
            with pytest.raises(llmx.RateLimitError):
                client.stream("Again?", model="m", request_max_retries=0)
            client.close()
            assert upstream.requests[0].headers["Authorization"] == "Bearer sk-very-secret"  # forwarded
    text = path.read_text()
    assert "sk-very-secret" not in text and "Authorization" not in text

    recording = Recording.load(path)
    first, second = recording.exchanges
    assert [r["messages"][0]["content"] for r in recording.requests] == ["Weather?", "Again?"]
    assert (first.status, first.headers["x-request-id"], first.complete) == (200, "req-1", True)
    assert second.status == 429 and json.loads(b"".join(d for _, d in second.chunks))["error"]["message"] == "Slow down"
    times = [at for at, _ in first.chunks]
    assert first.headers_after >= 0.1 and times == sorted(times) and times[-1] - times[0] >= 0.15 * 5

    for realtime in (True, False):
        with ScriptedServer(*recording.replies(realtime=realtime)) as server:
            client = client_of(server, request_max_retries=0)
            started = time.monotonic()
            replayed = client.stream("Weather?", model="m").collect()
            took = time.monotonic() - started
            with pytest.raises(llmx.RateLimitError, match="Slow down"):
                client.stream("Again?", model="m")
            assert [r.json() for r in server.requests] == recording.requests
        assert (replayed.text, replayed.token_usage, replayed.response_id) == (
            recorded.text, recorded.token_usage, recorded.response_id)
        if realtime:
            assert took >= 0.9 * times[-1]
        else:
            assert took < times[-1]


def test_an_answer_the_client_left_is_recorded_as_cut_and_replayed_as_cut(tmp_path: Path) -> None:
    path = tmp_path / "cut.json"
    with ScriptedServer(answer(["a", "b", "c", "d"], delay=0.3)) as upstream:
        with Recorder(upstream.base_url, path) as recorder:
            with client_of(recorder).stream("q", model="m") as stream:
                next(iter(stream.text_stream))
    (exchange,) = Recording.load(path).exchanges
    assert not exchange.complete and 1 <= len(exchange.chunks) < 6
    with ScriptedServer(*Recording.load(path).replies()) as server:
        with pytest.raises(llmx.StreamError):
            client_of(server, request_max_retries=0).stream("q", model="m").collect()


def test_a_recorder_whose_server_does_not_answer_says_so(tmp_path: Path) -> None:
    with ScriptedServer() as gone:
        url = gone.base_url
    with Recorder(url, tmp_path / "none.json") as recorder:
        response = requests.post(recorder.chat_url + "?key=sk-secret", json={}, timeout=5)
        assert response.status_code == 502
        assert response.json()["error"]["message"] == ("Recorder: the real server did not answer: "
                                                        "ConnectionError (Connection refused)")
        assert recorder.errors == ["Recorder: POST /v1/chat/completions failed: ConnectionError (Connection refused)"]
    assert Recording.load(tmp_path / "none.json").exchanges == []


def test_a_file_that_is_not_a_recording_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text('{"interactions": []}')
    with pytest.raises(ValueError, match="not a recording"):
        Recording.load(tmp_path / "x.json")


# --- the pytest plugin ------------------------------------------------------------------------


def plugin_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def test_the_plugin_imports_nothing_of_the_sdk() -> None:
    done = subprocess.run([sys.executable, "-c", "import sys, pytest_llmx_sync; "
                           "print(sorted(m for m in sys.modules if m.startswith(('llmx_sync', 'requests'))))"],
                          env=plugin_env(), capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_the_plugin_is_declared_as_a_pytest11_entry_point_of_its_own_name() -> None:
    config = ConfigParser()
    config.read(ROOT / "setup.cfg")
    entry_points = config["options.entry_points"]["pytest11"].split()
    # The entry point's name is the module's, so `-p pytest_llmx_sync` and the installed
    # entry point are one plugin, not two registrations of the same module.
    assert entry_points == ["pytest_llmx_sync", "=", "pytest_llmx_sync"]
    assert "pytest_llmx_sync" in config["options"]["py_modules"].split()


def test_the_fixture_in_a_users_test_suite(tmp_path: Path) -> None:
    (tmp_path / "test_users_app.py").write_text(textwrap.dedent('''
        import llmx_sync as llmx
        from llmx_sync.testing import Reply, answer

        def test_answer(scripted_server):
            scripted_server.enqueue(answer("Hi there"))
            client = llmx.Client(base_url=scripted_server.base_url)
            assert client.stream("hi", model="m").collect().text == "Hi there"
            assert scripted_server.requests[0].json()["model"] == "m"

        def test_a_broken_handler_fails_the_test(scripted_server):
            scripted_server.handler = lambda request: 1 / 0
            client = llmx.Client(base_url=scripted_server.base_url)
            try:
                client.stream("hi", model="m", request_max_retries=0)
            except llmx.InternalServerError:
                pass
    '''))
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "pytest_llmx_sync", "-p", "no:cacheprovider",
                           "-q", str(tmp_path)], cwd=tmp_path, env=plugin_env(), capture_output=True, text=True,
                          timeout=120)
    assert "2 passed, 1 error" in done.stdout, done.stdout + done.stderr  # the broken one fails at teardown
    assert "the scripted server raised" in done.stdout and "ZeroDivisionError" in done.stdout
