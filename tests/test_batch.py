"""`Client.map` (llmx_sync.batch) against the scripted loopback server: order, errors as
results, retries, resume from the output file, tool loops, progress, input checks."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from llm_server import (
    Disconnect,
    LLMServer,
    RecordedRequest,
    Reply,
    chat_chunk,
    error_reply,
    sse_done,
    sse_event,
    text_stream_body,
    tool_call_delta,
)

import llmx_sync as llmx
from llmx_sync.batchfile import BatchOutput, input_hash


def last_user_text(request: RecordedRequest) -> str:
    messages = request.json()["messages"]
    user = [m for m in messages if m["role"] == "user"][-1]["content"]
    return user if isinstance(user, str) else "".join(part.get("text", "") for part in user)


def echo(request: RecordedRequest) -> Reply:
    """Answers `echo: <the last user message>`, with usage; `fail <n>` gets a 400."""
    text = last_user_text(request)
    if text.startswith("fail"):
        return error_reply(400, f"bad prompt {text}", type="invalid_request_error")
    return Reply(body=text_stream_body([f"echo: {text}"],
                                       usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}))


@pytest.fixture
def echo_server():
    with LLMServer(handler=echo) as server:
        yield server


def client_for(server: LLMServer, **kwargs: Any) -> llmx.Client:
    return llmx.Client(base_url=server.url, api_key="sk-test", **kwargs)


def answered(requests: list[RecordedRequest]) -> list[str]:
    return [last_user_text(request) for request in requests]


# --- results -------------------------------------------------------------------


def test_results_come_in_input_order_with_usage_and_attempts(echo_server: LLMServer) -> None:
    prompts = [f"p{i}" for i in range(50)]
    with client_for(echo_server) as client:
        items = list(client.map(prompts, model="m", progress=False, concurrency=8))
    assert [item.index for item in items] == list(range(50))
    assert [item.input for item in items] == prompts
    assert [item.result.text for item in items if item.result] == [f"echo: {p}" for p in prompts]
    assert all(item.ok and item.attempts == 1 and item.latency > 0 for item in items)
    assert items[0].usage == llmx.TokenUsage(input_tokens=3, output_tokens=2, total_tokens=5)
    assert sorted(answered(echo_server.requests)) == sorted(prompts)


def test_as_completed_yields_each_item_once(echo_server: LLMServer) -> None:
    with client_for(echo_server) as client:
        items = list(client.map([f"p{i}" for i in range(30)], model="m", progress=False, as_completed=True))
    assert sorted(item.index for item in items) == list(range(30))


def test_nothing_is_sent_until_the_batch_is_iterated(echo_server: LLMServer) -> None:
    with client_for(echo_server) as client:
        batch = client.map(["a", "b"], model="m", progress=False)
        assert echo_server.requests == []
        assert [item.result.text for item in batch if item.result] == ["echo: a", "echo: b"]


def test_an_error_is_the_items_result_not_the_end_of_the_batch(echo_server: LLMServer) -> None:
    with client_for(echo_server) as client:
        items = list(client.map(["a", "fail 1", "b", 42], model="m", progress=False))  # type: ignore[list-item]
    assert [item.ok for item in items] == [True, False, True, False]
    assert isinstance(items[1].error, llmx.BadRequestError) and items[1].attempts == 1
    assert items[1].result is None
    assert isinstance(items[3].error, llmx.InvalidInputError)  # a bad prompt: no request for it
    assert len(echo_server.requests) == 3


def test_fail_fast_stops_at_the_first_error_and_raises_it(echo_server: LLMServer) -> None:
    with client_for(echo_server) as client:
        batch = client.map(["fail 0"] + [f"p{i}" for i in range(200)], model="m", progress=False, fail_fast=True,
                           concurrency=1)
        with pytest.raises(llmx.BadRequestError, match="bad prompt fail 0"):
            list(batch)
    assert batch.closed
    assert len(echo_server.requests) < 5


def test_a_stream_that_breaks_off_is_sent_again() -> None:
    broken = Reply(body=[sse_event(chat_chunk("par", role="assistant")), Disconnect()])
    whole = Reply(body=text_stream_body(["whole"]))
    with LLMServer(broken, whole) as server, client_for(server) as client:
        items = list(client.map(["x"], model="m", progress=False))
    assert items[0].ok and items[0].result is not None and items[0].result.text == "whole"
    assert items[0].attempts == 2


def test_transport_retries_count_as_attempts() -> None:
    with LLMServer(error_reply(500, "oops"), Reply(body=text_stream_body(["ok"]))) as server, \
            client_for(server) as client:
        items = list(client.map(["x"], model="m", progress=False))
    assert items[0].ok and items[0].attempts == 2
    with LLMServer(default=error_reply(500, "oops")) as server, client_for(server) as client:
        items = list(client.map(["x"], model="m", progress=False, request_max_retries=1))
    assert isinstance(items[0].error, llmx.InternalServerError) and items[0].attempts == 2


def test_settings_are_checked_before_anything_is_sent(echo_server: LLMServer) -> None:
    with client_for(echo_server) as client:
        with pytest.raises(llmx.InvalidInputError, match="temperature"):
            client.map(["a"], temperature="hot")
        with pytest.raises(llmx.InvalidInputError, match="concurrency"):
            client.map(["a"], concurrency=0)
        with pytest.raises(llmx.InvalidInputError, match="concurrency"):
            client.map(["a"], concurrency="fast")  # type: ignore[arg-type]
        with pytest.raises(llmx.InvalidInputError, match="max_concurrency"):
            client.map(["a"], max_concurrency=0)
        with pytest.raises(llmx.InvalidInputError, match="prompts"):
            client.map("one prompt")  # type: ignore[arg-type]
        with pytest.raises(llmx.InvalidInputError, match="progress"):
            client.map(["a"], progress="yes")  # type: ignore[arg-type]
        with pytest.raises(llmx.InvalidInputError, match="tools"):
            client.map(["a"], tools=[42])  # type: ignore[list-item]
    assert echo_server.requests == []


def test_per_item_settings_lay_over_the_batchs(echo_server: LLMServer) -> None:
    with client_for(echo_server) as client:
        items = list(client.map(["a", llmx.BatchPrompt("b", {"model": "other", "temperature": 0.5})], model="m",
                                progress=False))
    assert all(item.ok for item in items)
    bodies = {last_user_text(r): r.json() for r in echo_server.requests}
    assert bodies["a"]["model"] == "m" and "temperature" not in bodies["a"]
    assert bodies["b"]["model"] == "other" and bodies["b"]["temperature"] == 0.5


# --- the output file and resuming ------------------------------------------------


def test_finished_items_are_not_sent_again(echo_server: LLMServer, tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    prompts = [f"p{i}" for i in range(20)]
    with client_for(echo_server) as client:
        first = list(client.map(prompts, model="m", progress=False, output=out))
        second = list(client.map(prompts, model="m", progress=False, output=out))
    assert len(echo_server.requests) == 20
    assert [item.resumed for item in second] == [True] * 20
    assert [(i.index, i.result.text, i.usage, i.attempts) for i in second if i.result] == \
        [(i.index, i.result.text, i.usage, i.attempts) for i in first if i.result]
    assert second[3].result is not None and second[3].result.history == first[3].result.history  # type: ignore[union-attr]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(line["index"] for line in lines) == list(range(20))
    assert lines[0]["input_hash"] == input_hash(prompts[lines[0]["index"]])


def test_failed_items_are_written_and_tried_again(echo_server: LLMServer, tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    with client_for(echo_server) as client:
        items = list(client.map(["a", "fail 1"], model="m", progress=False, output=out))
        assert not items[1].ok
        line = json.loads(out.read_text().splitlines()[-1] if "fail" in out.read_text().splitlines()[-1]
                          else out.read_text().splitlines()[0])
        assert line["error"]["type"] == "BadRequestError" and line["error"]["status"] == 400
        list(client.map(["a", "fail 1"], model="m", progress=False, output=out))
    assert answered(echo_server.requests).count("fail 1") == 2
    assert answered(echo_server.requests).count("a") == 1


def test_a_changed_input_is_done_again(echo_server: LLMServer, tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    with client_for(echo_server) as client:
        list(client.map(["a", "b"], model="m", progress=False, output=out))
        items = list(client.map(["a", "B"], model="m", progress=False, output=out))
    assert [item.resumed for item in items] == [True, False]
    assert items[1].result is not None and items[1].result.text == "echo: B"
    assert BatchOutput(out).finished[1]["text"] == "echo: B"  # the last line for an index wins


def test_a_torn_last_line_is_cut_and_its_item_redone(echo_server: LLMServer, tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    with client_for(echo_server) as client:
        list(client.map(["a", "b", "c"], model="m", progress=False, output=out, concurrency=1))
        text = out.read_text()
        out.write_text(text[: len(text) - 7])  # killed in the middle of writing the last line
        items = list(client.map(["a", "b", "c"], model="m", progress=False, output=out))
    assert sum(not item.resumed for item in items) == 1
    lines = out.read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line) for line in lines)


def test_garbage_lines_are_skipped(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    out.write_bytes(b'{"index": 0, "input_hash": "x", "text": "t"}\n\x00\x00\x00\nnot json\n[1]\n'
                    b'{"index": true, "input_hash": "y"}\n')
    output = BatchOutput(out)
    assert list(output.finished) == [0] and output.skipped_lines == 4
    assert output.done(0, "x") is not None and output.done(0, "other") is None
    output.close()


def test_structured_output_is_restored_as_its_class(echo_server: LLMServer, tmp_path: Path) -> None:
    @dataclasses.dataclass
    class City:
        name: str

    reply = Reply(body=text_stream_body(['{"name": ', '"Paris"}']))
    out = tmp_path / "results.jsonl"
    with LLMServer(default=reply) as server, client_for(server) as client:
        first = list(client.map(["x"], model="m", progress=False, output=out, response_format=City))
        second = list(client.map(["x"], model="m", progress=False, output=out, response_format=City))
    assert first[0].result is not None and first[0].result.parsed == City("Paris")
    assert second[0].resumed and second[0].result is not None and second[0].result.parsed == City("Paris")
    assert json.loads(out.read_text())["parsed"] == {"name": "Paris"}


def test_an_input_that_cannot_be_hashed_is_an_items_error(echo_server: LLMServer, tmp_path: Path) -> None:
    with client_for(echo_server) as client:
        batch = client.map([object()], model="m", progress=False, output=tmp_path / "o.jsonl")  # type: ignore[list-item]
        with pytest.raises(llmx.InvalidInputError, match="cannot be told apart"):
            list(batch)


# --- tool loops -------------------------------------------------------------------


def tool_server(request: RecordedRequest) -> Reply:
    messages = request.json()["messages"]
    if messages[-1]["role"] == "tool":
        return Reply(body=text_stream_body([f"weather: {messages[-1]['content']}"]))
    call = tool_call_delta(0, id="call_1", name="weather", arguments=json.dumps({"city": last_user_text(request)}))
    return Reply(body=[sse_event(chat_chunk(role="assistant", tool_calls=[call])),
                       sse_event(chat_chunk(finish_reason="tool_calls")), sse_done()])


def test_with_tools_each_item_is_a_tool_loop(tmp_path: Path) -> None:
    ran: list[str] = []
    lock = threading.Lock()

    def weather(city: str) -> str:
        """The weather in a city."""
        with lock:
            ran.append(city)
        return f"sunny in {city}"

    out = tmp_path / "results.jsonl"
    with LLMServer(handler=tool_server) as server, client_for(server) as client:
        items = list(client.map(["Paris", "Oslo"], model="m", progress=False, tools=[weather], output=out))
        again = list(client.map(["Paris", "Oslo"], model="m", progress=False, tools=[weather], output=out))
    assert [item.result.text for item in items if item.result] == ["weather: sunny in Paris", "weather: sunny in Oslo"]
    assert sorted(ran) == ["Oslo", "Paris"]  # once each: the second batch resumed
    assert again[0].resumed and again[0].result is not None
    assert [type(item).__name__ for item in again[0].result.history] == \
        ["Message", "FunctionCall", "FunctionCallOutput", "Message"]
    assert again[0].result.text == "weather: sunny in Paris"


# --- progress and summary ----------------------------------------------------------


def test_progress_bar_and_summary_on_stderr(echo_server: LLMServer, capsys: pytest.CaptureFixture[str]) -> None:
    with client_for(echo_server) as client:
        batch = client.map(["a", "fail 1", "c"], model="m", progress=True)
        list(batch)
    err = capsys.readouterr().err
    assert "3/3" in err
    assert "batch: 3 items (1 failed), 10 tokens (6 in, 4 out)" in err
    assert batch.summary.items == 3 and batch.summary.failed == 1 and batch.summary.wall_time > 0


def test_no_progress_bar_when_stderr_is_not_a_terminal(echo_server: LLMServer,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    with client_for(echo_server) as client:
        list(client.map(["a"], model="m"))
    assert capsys.readouterr().err == ""


# --- closing ---------------------------------------------------------------------------


def test_close_stops_sending_and_closes_the_streams_in_flight(tmp_path: Path) -> None:
    from llm_server import Stall

    stall = Reply(body=[sse_event(chat_chunk("thinking", role="assistant")), Stall()])
    out = tmp_path / "results.jsonl"
    with LLMServer(default=stall) as server, client_for(server) as client:
        batch = client.map([f"p{i}" for i in range(100)], model="m", progress=False, concurrency=4, output=out)
        raised: list[BaseException] = []

        def iterate() -> None:
            try:
                next(batch)
            except llmx.LlmxError as exc:
                raised.append(exc)

        worker = threading.Thread(target=iterate, daemon=True)
        worker.start()
        assert server.wait_for_requests(4, timeout=10)
        batch.close()
        assert server.wait_until_no_open_connections(timeout=3)
        worker.join(5)
    assert len(server.requests) == 4
    assert [str(exc) for exc in raised] == ["the batch was closed before it ended"]
    assert out.read_text() == ""  # nothing finished: nothing written, all done again next time


def test_a_consumer_that_stops_taking_items_holds_the_batch_back(echo_server: LLMServer) -> None:
    import time

    with client_for(echo_server) as client:
        batch = client.map([f"p{i}" for i in range(3000)], model="m", progress=False, max_concurrency=8)
        with batch:
            first = next(batch)
            # 1024 finished items held for the iterator, at most: then no input is taken.
            assert echo_server.wait_for_requests(1024, timeout=60)
            time.sleep(1.0)
            assert len(echo_server.requests) <= 1 + 1024 + 8
            assert first.index == 0
            assert sum(1 for _ in batch) == 2999  # taking them lets it go on
    assert len(echo_server.requests) == 3000


def test_prompts_from_a_generator_and_its_failure(echo_server: LLMServer) -> None:
    def prompts():
        yield "a"
        yield "b"
        raise OSError("the input file went away")

    with client_for(echo_server) as client:
        batch = client.map(prompts(), model="m", progress=False)
        with pytest.raises(OSError, match="went away"):
            list(batch)
        assert batch.closed
        assert [item.result.text for item in client.map((p for p in ["x", "y"]), model="m", progress=False)
                if item.result] == ["echo: x", "echo: y"]


def test_max_output_retries_reasks_within_an_item() -> None:
    @dataclasses.dataclass
    class Count:
        n: int

    replies = [Reply(body=text_stream_body(['{"n": "many"}'])), Reply(body=text_stream_body(['{"n": 3}']))]
    with LLMServer(*replies) as server, client_for(server) as client:
        items = list(client.map(["count"], model="m", progress=False, response_format=Count, max_output_retries=1))
    assert items[0].ok and items[0].result is not None and items[0].result.parsed == Count(3)
    assert len(server.requests) == 2


def test_a_refusal_is_kept_in_the_output_and_restored(tmp_path: Path) -> None:
    refused = Reply(body=[sse_event(chat_chunk(role="assistant") | {"choices": [
        {"index": 0, "delta": {"refusal": "I can't help with that."}, "finish_reason": None}]}),
        sse_event(chat_chunk(finish_reason="stop")), sse_done()])
    out = tmp_path / "results.jsonl"
    with LLMServer(default=refused) as server, client_for(server) as client:
        first = list(client.map(["x"], model="m", progress=False, output=out))
        again = list(client.map(["x"], model="m", progress=False, output=out))
    assert first[0].result is not None and first[0].result.refusal == "I can't help with that."
    assert json.loads(out.read_text())["refusal"] == "I can't help with that."
    assert again[0].resumed and again[0].result is not None
    assert again[0].result.refusal == "I can't help with that."
    assert again[0].result.items == first[0].result.items
