"""OpenTelemetry spans (llmx_sync.telemetry), checked with the SDK's in-memory exporter.

The tests give the SDK's tracer to `telemetry` directly rather than setting the global
tracer provider (which can be set once per process, and would then trace every later
test); one test runs in a subprocess with the global provider set, as an application
does, and one checks that nothing of OpenTelemetry is imported when the app does not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from llm_server import (  # noqa: E402
    Disconnect,
    LLMServer,
    RecordedRequest,
    Reply,
    Stall,
    chat_chunk,
    error_reply,
    sse_done,
    sse_event,
    text_stream_body,
    tool_call_delta,
)
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

import llmx_sync as llmx  # noqa: E402
from llmx_sync import telemetry  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(telemetry, "_tracer", lambda api: provider.get_tracer("llmx_sync"))
    telemetry.capture_content(False)
    yield exporter
    telemetry.capture_content(None)
    provider.shutdown()


def finished(exporter: InMemorySpanExporter, name: str | None = None) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if name is None or span.name == name]


def client_for(server: LLMServer) -> llmx.Client:
    return llmx.Client(base_url=server.url, api_key="sk-test")


def test_a_request_is_a_client_span_with_the_genai_attributes(spans: InMemorySpanExporter) -> None:
    body = text_stream_body(["Hel", "lo"], usage=USAGE, model="gpt-4o-mini-2024-07-18", id="chatcmpl-42")
    with LLMServer(Reply(body=body)) as server, client_for(server) as client:
        result = client.stream("hi", model="gpt-4o-mini", max_tokens=50, temperature=0.2).collect()
    assert result.text == "Hello"
    (span,) = finished(spans)
    assert span.name == "chat gpt-4o-mini" and span.kind == trace.SpanKind.CLIENT
    attributes = dict(span.attributes or {})
    assert attributes == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "custom", "gen_ai.request.stream": True,
        "server.address": "127.0.0.1", "server.port": server.port, "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.request.max_tokens": 50, "gen_ai.request.temperature": 0.2,
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18", "gen_ai.response.id": "chatcmpl-42",
        "gen_ai.response.finish_reasons": ("stop",), "gen_ai.usage.input_tokens": 11,
        "gen_ai.usage.output_tokens": 7,
        "gen_ai.response.time_to_first_chunk": attributes["gen_ai.response.time_to_first_chunk"],
    }
    assert 0 < attributes["gen_ai.response.time_to_first_chunk"] < 10  # type: ignore[operator]
    assert span.status.status_code == trace.StatusCode.UNSET
    assert "gen_ai.input.messages" not in attributes  # no content unless asked for


def test_retries_are_events_of_the_one_span(spans: InMemorySpanExporter) -> None:
    limited = error_reply(429, "slow down", headers={"Retry-After": "0"})
    with LLMServer(limited, Reply(body=text_stream_body(["ok"]))) as server, client_for(server) as client:
        client.stream("hi", model="m").collect()
    (span,) = finished(spans)
    assert [event.name for event in span.events] == ["retry"]
    event = dict(span.events[0].attributes or {})
    assert event["http.response.status_code"] == 429 and event["llmx_sync.retry.attempt"] == 1
    assert event["llmx_sync.retry.delay"] == 0.0


@pytest.mark.parametrize(("reply", "error_type"), [
    (error_reply(400, "bad"), "400"),
    (Reply(body=[sse_event(chat_chunk("par", role="assistant")), Disconnect()]), "StreamError"),
    (Reply(body=[sse_event({"error": {"message": "overloaded", "type": "server_error"}})]), "InStreamError"),
])
def test_a_failed_request_has_error_type_and_status(spans: InMemorySpanExporter, reply: Reply,
                                                    error_type: str) -> None:
    with LLMServer(default=reply) as server, client_for(server) as client:
        with pytest.raises(llmx.LlmxError):
            client.stream("hi", model="m", request_max_retries=0).collect()
    (span,) = finished(spans)
    assert span.attributes is not None and span.attributes["error.type"] == error_type
    assert span.status.status_code == trace.StatusCode.ERROR
    assert [event.name for event in span.events] == ["exception"]


def test_connection_failure_and_timeout(spans: InMemorySpanExporter) -> None:
    with llmx.Client(base_url="http://127.0.0.1:9/v1", api_key="k") as client:
        with pytest.raises(llmx.ConnectionFailedError):
            client.stream("hi", model="m", request_max_retries=0)
    stall = Reply(body=[sse_event(chat_chunk("a", role="assistant")), Stall()])
    with LLMServer(default=stall) as server, client_for(server) as client:
        with pytest.raises(llmx.StreamIdleTimeoutError):
            client.stream("hi", model="m", idle_timeout=0.3).collect()
    assert [span.attributes["error.type"] for span in finished(spans) if span.attributes] == \
        ["ConnectionFailedError", "timeout"]


def test_a_stream_closed_before_its_end_is_cancelled(spans: InMemorySpanExporter) -> None:
    stall = Reply(body=[sse_event(chat_chunk("a", role="assistant")), Stall()])
    with LLMServer(default=stall) as server, client_for(server) as client:
        with client.stream("hi", model="m") as stream:
            next(iter(stream))
    (span,) = finished(spans)
    assert span.attributes is not None and span.attributes["error.type"] == "cancelled"


def test_content_is_recorded_only_when_asked_for(spans: InMemorySpanExporter) -> None:
    telemetry.capture_content(True)
    prompt = llmx.Prompt(input=[llmx.Message.user("What is 2+2?")], instructions="Be terse.")
    with LLMServer(Reply(body=text_stream_body(["4"]))) as server, client_for(server) as client:
        client.stream(prompt, model="m").collect()
    (span,) = finished(spans)
    attributes = span.attributes or {}
    assert json.loads(str(attributes["gen_ai.input.messages"])) == \
        [{"role": "user", "parts": [{"type": "text", "content": "What is 2+2?"}]}]
    assert json.loads(str(attributes["gen_ai.system_instructions"])) == [{"type": "text", "content": "Be terse."}]
    assert json.loads(str(attributes["gen_ai.output.messages"])) == \
        [{"role": "assistant", "parts": [{"type": "text", "content": "4"}], "finish_reason": "stop"}]


def test_capture_content_follows_the_environment(spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch) -> None:
    telemetry.capture_content(None)
    monkeypatch.setenv(telemetry.CAPTURE_ENV, "true")
    with LLMServer(Reply(body=text_stream_body(["4"]))) as server, client_for(server) as client:
        client.stream("secret question", model="m").collect()
    (span,) = finished(spans)
    assert "secret question" in str((span.attributes or {})["gen_ai.input.messages"])


def tool_server(request: RecordedRequest) -> Reply:
    messages = request.json()["messages"]
    if messages[-1]["role"] == "tool":
        return Reply(body=text_stream_body(["done"], usage=USAGE))
    calls = [tool_call_delta(0, id="call_1", name="add", arguments='{"a": 1, "b": 2}'),
             tool_call_delta(1, id="call_2", name="add", arguments='{"a": "x", "b": 2}')]
    return Reply(body=[sse_event(chat_chunk(role="assistant", tool_calls=calls)),
                       sse_event(chat_chunk(finish_reason="tool_calls")), sse_done()])


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def test_a_run_is_the_parent_of_its_model_calls_and_tool_calls(spans: InMemorySpanExporter) -> None:
    with LLMServer(handler=tool_server) as server, client_for(server) as client:
        result = client.run("add", model="m", tools=[add]).collect()
    assert result.text == "done"
    (run,) = finished(spans, "invoke_agent")
    chats = finished(spans, "chat m")
    tools = finished(spans, "execute_tool add")
    assert len(chats) == 2 and len(tools) == 2
    assert all(span.parent is not None and span.parent.span_id == run.context.span_id for span in chats + tools)
    assert run.attributes is not None and run.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert run.status.status_code == trace.StatusCode.UNSET and run.end_time is not None
    ok, bad = sorted(tools, key=lambda span: str((span.attributes or {})["gen_ai.tool.call.id"]))
    assert dict(ok.attributes or {}) == {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "add",
                                         "gen_ai.tool.call.id": "call_1", "gen_ai.tool.type": "function"}
    assert bad.attributes is not None and bad.attributes["error.type"] == "tool_error"  # arguments that do not fit
    assert bad.status.status_code == trace.StatusCode.ERROR


def test_a_tool_that_raises_has_the_exceptions_class_as_error_type(spans: InMemorySpanExporter) -> None:
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        raise ValueError("no adding today")

    with LLMServer(handler=tool_server) as server, client_for(server) as client:
        client.run("add", model="m", tools=[add]).collect()
    assert sorted(str((span.attributes or {})["error.type"]) for span in finished(spans, "execute_tool add")) == \
        ["ValueError", "tool_error"]


def test_a_run_that_fails_ends_its_span_with_the_error(spans: InMemorySpanExporter) -> None:
    with LLMServer(default=error_reply(401, "no key")) as server, client_for(server) as client:
        with pytest.raises(llmx.AuthenticationError):
            client.run("add", model="m", tools=[add])
    (run,) = finished(spans, "invoke_agent")
    assert run.attributes is not None and run.attributes["error.type"] == "401"


def test_a_batch_is_the_parent_of_its_items(spans: InMemorySpanExporter) -> None:
    with LLMServer(default=Reply(body=text_stream_body(["ok"], usage=USAGE))) as server, client_for(server) as client:
        items = list(client.map(["a", "b", "c"], model="m", progress=False))
    assert all(item.ok for item in items)
    (batch,) = finished(spans, "llmx_sync.batch")
    chats = finished(spans, "chat m")
    assert len(chats) == 3
    assert all(span.parent is not None and span.parent.span_id == batch.context.span_id for span in chats)
    attributes = batch.attributes or {}
    assert attributes["llmx_sync.batch.items"] == 3 and attributes["llmx_sync.batch.input_tokens"] == 33


GLOBAL_PROVIDER = textwrap.dedent("""
    import json, sys
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    import llmx_sync as llmx
    with llmx.Client(base_url=sys.argv[1], api_key="k") as client:
        client.stream("hi", model="m").collect()
    print(json.dumps([(s.name, s.instrumentation_scope.name) for s in exporter.get_finished_spans()]))
""")

WITHOUT_OTEL = textwrap.dedent("""
    import sys
    import llmx_sync as llmx
    with llmx.Client(base_url=sys.argv[1], api_key="k") as client:
        client.stream("hi", model="m").collect()
        list(client.map(["a"], model="m", progress=False))
    print(sorted(name for name in sys.modules if name.startswith("opentelemetry")))
""")


def run_script(script: str, url: str) -> Any:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", script, url], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.replace("'", '"'))


def test_an_application_that_sets_the_global_provider_gets_spans() -> None:
    with LLMServer(default=Reply(body=text_stream_body(["ok"]))) as server:
        assert run_script(GLOBAL_PROVIDER, server.url) == [["chat m", "llmx_sync"]]


def test_nothing_of_opentelemetry_is_imported_when_the_application_does_not() -> None:
    with LLMServer(default=Reply(body=text_stream_body(["ok"]))) as server:
        assert run_script(WITHOUT_OTEL, server.url) == []
