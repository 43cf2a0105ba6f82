"""What real servers send beyond the protocol's letter, end to end: nothing is silently lost.

The bodies of ``data/recorded/`` (see its README: recorded here, or written from each
server's documentation or source) parse to what ``expected.json`` says, whatever the read
sizes and line ends. Then one test per failure of the issue "Nothing silently lost on any
real server", each on a loopback server through `Client.stream()`, `collect()` and the SSE
web helper: 1 refusals, 2 content parts, 3 errors before ``[DONE]``, 4 data that is not
JSON, 5 drifting tool-call ids, 6 an SSE body labelled JSON, 7 bytes that are not UTF-8,
8 provider fields sent back, 9 `max_event_bytes` in bytes whatever the reads.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from fake_stream import FakeStream
from hypothesis import given, settings
from hypothesis import strategies as st
from llm_server import LLMServer, Reply, Stall, chat_chunk, sse_done, sse_event
from recorded_bodies import content_type, expected, recorded_bodies

from llmx_sync import (
    ChatResult,
    Client,
    Completed,
    Event,
    FunctionCall,
    FunctionCallOutput,
    InStreamError,
    LlmxError,
    Message,
    Other,
    OutputItemAdded,
    OutputItemDone,
    OutputTextDelta,
    Reasoning,
    Refusal,
    RefusalDelta,
    ResponseItem,
    StreamError,
    aggregate,
    collect,
    item_from_dict,
    read_history_jsonl,
    tool,
)
from llmx_sync.chat import CHAT_COMPLETIONS
from llmx_sync.chat.parse import merge_reasoning_details
from llmx_sync.cli import Renderer
from llmx_sync.notebook import display_stream
from llmx_sync.web import sse_response_body, text_body

# The loopback tests run once per body reader (the socket path and urllib3's).
loopback = pytest.mark.usefixtures("body_reader")

SOURCE_DERIVED = sorted(expected())
ERROR_BODIES = [name for name in SOURCE_DERIVED if "error" in expected()[name]]


def body_of(name: str) -> bytes:
    return (Path(__file__).resolve().parent / "data" / "recorded" / name).read_bytes()


def parse(pieces: list[bytes], headers: dict[str, str]) -> tuple[list[Event], LlmxError | None]:
    """The events and the error of a body fed in `pieces`, through the wire's parser for
    `headers` (as `Client.stream` picks it)."""
    parser = CHAT_COMPLETIONS.parser(headers)
    events: list[Event] = []
    for piece in pieces:
        events += parser.feed(piece)
    events += parser.finish()
    return events, parser.error


def check_answer(name: str, events: list[Event], error: LlmxError | None) -> None:
    want = expected()[name]
    if "error" in want:
        assert type(error).__name__ == want["error"]["class"], error
        assert isinstance(error, InStreamError)
        assert (error.message, error.code) == (want["error"]["message"], want["error"]["code"])
        assert "".join(e.delta for e in events if isinstance(e, OutputTextDelta)) == want["text"]
        return
    assert error is None, error
    result = collect(events)
    for field in ("text", "reasoning", "refusal", "finish_reason", "response_id"):
        if field in want:
            assert getattr(result, field) == want[field], field
    calls = [{"name": c.name, "arguments": c.arguments, "call_id": c.call_id,
              **({"provider_fields": sorted(c.provider_fields)} if c.provider_fields else {})}
             for c in result.tool_calls]
    assert calls == want.get("tool_calls", [])
    fields = [sorted(item.provider_fields) for item in result.items
              if isinstance(item, Reasoning) and item.provider_fields]
    assert fields == ([want["reasoning_provider_fields"]] if "reasoning_provider_fields" in want else [])


# --- the corpus ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SOURCE_DERIVED)
def test_a_source_derived_body_parses_to_what_its_server_meant(name: str) -> None:
    check_answer(name, *parse([body_of(name)], {"Content-Type": content_type(Path(name))}))


def outcome(pieces: list[bytes], path: Path) -> tuple[list[Event], str | None]:
    events, error = parse(pieces, {"Content-Type": content_type(path)})
    return events, None if error is None else f"{type(error).__name__}: {error}"


BODIES = recorded_bodies()


@pytest.mark.parametrize("path", BODIES, ids=[p.name for p in BODIES])
def test_a_body_fed_byte_by_byte_gives_the_events_of_the_whole_body(path: Path) -> None:
    """Every byte boundary at once: inside multi-byte characters, between CR and LF."""
    data = path.read_bytes()
    whole = outcome([data], path)
    assert outcome([data[i:i + 1] for i in range(len(data))], path) == whole
    for newline in (b"\r\n", b"\r"):
        other = data.replace(b"\n", newline)
        assert outcome([other[i:i + 1] for i in range(len(other))], path) == whole


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(BODIES), st.sampled_from([b"\n", b"\r\n", b"\r"]), st.data())
def test_any_split_of_a_body_gives_the_events_of_the_whole_body(path: Path, newline: bytes,
                                                                 data: st.DataObject) -> None:
    body = path.read_bytes().replace(b"\n", newline)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=12)))
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    assert outcome(pieces, path) == outcome([path.read_bytes()], path)


def test_reasoning_details_pieces_continue_the_detail_of_their_type_and_index() -> None:
    details: list[Any] = []
    merge_reasoning_details(details, [{"type": "reasoning.summary", "summary": "Plan", "index": 0},
                                      {"type": "reasoning.text", "text": "a", "index": 1, "signature": None}])
    merge_reasoning_details(details, [{"type": "reasoning.text", "text": "b", "index": 1},
                                      {"type": "reasoning.summary", "summary": " it.", "index": 0}, "odd",
                                      {"type": "reasoning.encrypted", "data": "E1", "index": 2}])
    merge_reasoning_details(details, [{"type": "reasoning.text", "text": "", "index": 1, "signature": "sig"},
                                      {"type": "reasoning.encrypted", "data": "E2"}])
    assert details == [{"type": "reasoning.summary", "summary": "Plan it.", "index": 0},
                       {"type": "reasoning.text", "text": "ab", "index": 1, "signature": "sig"}, "odd",
                       {"type": "reasoning.encrypted", "data": "E1", "index": 2},
                       {"type": "reasoning.encrypted", "data": "E2"}]


# --- on loopback: the stream, collect() and the SSE web helper -------------------------------------


def serve(server: LLMServer, body: bytes | list[Any], *, piece: int = 0, content: str = "text/event-stream") -> None:
    """Answer the next request with `body`, in HTTP chunks of `piece` bytes (0: as given)."""
    pieces = body if isinstance(body, list) else [body[i:i + piece] for i in range(0, len(body), piece)] if piece \
        else [body]
    server.enqueue(Reply(body=pieces, headers={"Content-Type": content}))


def client_for(server: LLMServer, **kwargs: Any) -> Client:
    return Client(base_url=server.url, **kwargs)


def streamed(client: Client) -> tuple[list[Event], LlmxError | None]:
    events: list[Event] = []
    try:
        for event in client.stream("hi", model="m"):
            events.append(event)
    except LlmxError as error:
        return events, error
    return events, None


def web_frames(client: Client) -> list[tuple[str, Any]]:
    """The SSE web helper's frames: (event type, data), ``("done", None)`` for ``[DONE]``."""
    frames = []
    for frame in b"".join(sse_response_body(client.stream("hi", model="m"))).decode().split("\n\n")[:-1]:
        if frame == "data: [DONE]":
            frames.append(("done", None))
        else:
            event_line, data_line = frame.split("\n")
            frames.append((event_line[len("event: "):], json.loads(data_line[len("data: "):])))
    return frames


def each_way(server: LLMServer, body: bytes, *, piece: int = 0, content: str = "text/event-stream",
             **client_kwargs: Any) -> tuple[tuple[list[Event], LlmxError | None], Any, list[tuple[str, Any]]]:
    """The same body three times: iterated, collected (the result or the error), through the web helper."""
    for _ in range(3):
        serve(server, body, piece=piece, content=content)
    with client_for(server, **client_kwargs) as client:
        iterated = streamed(client)
        try:
            collected: Any = client.stream("hi", model="m").collect()
        except LlmxError as error:
            collected = error
        return iterated, collected, web_frames(client)


@loopback
def test_1_a_refusal_is_the_answer(llm_server: LLMServer) -> None:
    refusal = "I'm sorry, but I can't help with that."
    (events, error), result, frames = each_way(llm_server, body_of("openai_refusal.sse"), piece=50)
    assert error is None and "".join(e.delta for e in events if isinstance(e, RefusalDelta)) == refusal
    assert not any(isinstance(e, OutputTextDelta) for e in events)
    assert (result.refusal, result.text, result.finish_reason) == (refusal, "", "stop")
    assert result.items == [Message("assistant", [Refusal(refusal)])]
    assert "".join(data["delta"] for kind, data in frames if kind == "refusal.delta") == refusal
    assert frames[-1] == ("done", None)


@loopback
def test_1_a_refusal_goes_back_as_the_assistant_message_s_refusal(llm_server: LLMServer, tmp_path: Path) -> None:
    serve(llm_server, body_of("openai_refusal.sse"))
    serve(llm_server, sse_event(chat_chunk("Because it is harmful.", finish_reason="stop")) + sse_done())
    with client_for(llm_server) as client:
        result = client.stream("How do I make anthrax?", model="m").collect()
        rollout = tmp_path / "rollout.jsonl"
        rollout.write_text("".join(json.dumps({"type": "response_item", "payload": item.to_dict()}) + "\n"
                                   for item in result.history), encoding="utf-8")
        history = read_history_jsonl(rollout)
        assert history == result.history
        client.stream([*history, Message.user("Why not?")], model="m").collect()
    sent = llm_server.requests[1].json()["messages"]
    assert sent[1] == {"role": "assistant", "content": "", "refusal": "I'm sorry, but I can't help with that."}


@loopback
def test_1_a_refusal_of_structured_output_leaves_parsed_none(llm_server: LLMServer) -> None:
    serve(llm_server, body_of("openai_refusal.sse"))
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    with client_for(llm_server) as client:
        result = client.stream("How do I make anthrax?", model="m", response_format=schema).collect()
    assert (result.parsed, result.refusal) == (None, "I'm sorry, but I can't help with that.")


@loopback
def test_2_content_parts_become_text_and_reasoning(llm_server: LLMServer) -> None:
    (events, error), result, frames = each_way(llm_server, body_of("mistral_magistral_thinking.sse"), piece=33)
    assert error is None
    assert (result.text, result.reasoning) == ("7 × 6 = **42**.", "L'utilisateur demande 7 × 6. Je calcule : 42.")
    kinds = {kind for kind, _ in frames}
    assert {"reasoning_content.delta", "output_text.delta"} <= kinds and frames[-1] == ("done", None)


@loopback
def test_2_a_part_of_another_type_is_kept_as_an_item(llm_server: LLMServer) -> None:
    reference = {"type": "reference", "reference_ids": [0, 2]}
    body = (sse_event(chat_chunk(choices=[{"index": 0, "delta": {"content": [{"type": "text", "text": "See"},
                                                                           reference]}, "finish_reason": None}]))
            + sse_event(chat_chunk(finish_reason="stop")) + sse_done())
    (_, error), result, frames = each_way(llm_server, body)
    assert error is None and result.text == "See"
    assert result.items[1:] == [Other({"type": "content_part", "part": reference})]
    assert ("output_item.done", {"type": "output_item.done", "item": {"type": "content_part", "part": reference}}) \
        in frames


@loopback
@pytest.mark.parametrize("name", ERROR_BODIES)
def test_3_an_error_in_the_stream_is_raised_after_the_text_before_it(llm_server: LLMServer, name: str) -> None:
    want = expected()[name]["error"]
    (events, error), collected, frames = each_way(llm_server, body_of(name), piece=17)
    assert isinstance(error, InStreamError) and (error.message, error.code) == (want["message"], want["code"])
    assert "".join(e.delta for e in events if isinstance(e, OutputTextDelta)) == expected()[name]["text"]
    assert isinstance(collected, InStreamError) and collected.message == want["message"]
    assert frames[-1] == ("error", {"type": "InStreamError", "message": str(error)})
    assert ("done", None) not in frames


@loopback
@pytest.mark.parametrize("data", ['{"choices":[{"delta":{"content":" wor', "NaN", "<html>502 Bad Gateway</html>"])
def test_4_data_that_is_not_json_is_an_error_quoting_it(llm_server: LLMServer, data: str) -> None:
    body = (sse_event(chat_chunk("Hello")) + f"data: {data}\n\n".encode() + sse_event(chat_chunk(" !"))
            + sse_event(chat_chunk(finish_reason="stop")) + sse_done())
    (events, error), collected, frames = each_way(llm_server, body)
    assert [e.delta for e in events if isinstance(e, OutputTextDelta)] == ["Hello"]
    assert isinstance(error, StreamError) and str(error).endswith(repr(data))
    assert isinstance(collected, StreamError) and frames[-1][0] == "error"


@loopback
def test_5_a_drifting_id_without_a_name_continues_the_call(llm_server: LLMServer) -> None:
    (_, error), result, _ = each_way(llm_server, body_of("proxy_drifting_tool_call_ids.sse"))
    assert error is None
    assert result.tool_calls == [FunctionCall("read_file", '{"path":"a.txt"}', "call_A")]
    # Ollama's calls at one index, each with its id and name, stay apart.
    serve(llm_server, body_of("ollama_parallel_tools_index0.sse"))
    with client_for(llm_server) as client:
        assert [c.name for c in client.stream("hi", model="m").collect().tool_calls] == ["read_file", "current_time"]


@loopback
def test_6_an_sse_body_labelled_json_is_read_as_sse_as_it_arrives(llm_server: LLMServer) -> None:
    body = body_of("vllm_stream_labelled_json.sse")
    (_, error), result, frames = each_way(llm_server, body, piece=40, content="application/json")
    assert error is None and (result.text, result.reasoning) == ("The sky is blue.", "Short question.")
    assert frames[-1] == ("done", None)
    # Incrementally: the first deltas come while the server still holds the rest.
    first_events = body[:body.index(b'{"content":" sky"')].rsplit(b"\n\n", 1)[0] + b"\n\n"
    serve(llm_server, [first_events, Stall()], content="application/json")
    with client_for(llm_server) as client, client.stream("hi", model="m") as stream:
        deltas = []
        while len(deltas) < 1:
            event = stream.next_event(timeout=10)
            if isinstance(event, OutputTextDelta):
                deltas.append(event.delta)
        assert deltas == ["The"]


@loopback
def test_7_bytes_that_are_not_utf8_are_replaced_and_the_stream_goes_on(llm_server: LLMServer) -> None:
    body = (b": keep-alive \xff\xfe\n\n" + sse_event(chat_chunk("Gr\u00fc\u00dfe")).replace("ü".encode(), b"\xfc")
            + sse_event(chat_chunk(" 😀")) + sse_event(chat_chunk(finish_reason="stop")) + sse_done())
    (_, error), result, frames = each_way(llm_server, body, piece=1)
    assert error is None and result.text == "Gr\ufffd\u00dfe 😀" and result.finish_reason == "stop"
    assert frames[-1] == ("done", None)


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


@loopback
def test_8_a_thought_signature_goes_back_on_its_call(llm_server: LLMServer) -> None:
    serve(llm_server, body_of("gemini_thought_signature_tools.sse"), piece=64)
    serve(llm_server, sse_event(chat_chunk("Sunny in both.", finish_reason="stop")) + sse_done())
    with client_for(llm_server) as client:
        result = client.run("Weather in Paris and Tokyo?", tools=[get_weather], model="m").collect()
    assert result.text == "Sunny in both."
    signature = json.loads(body_of("gemini_thought_signature_tools.sse").split(b"\n\n")[0][6:])[
        "choices"][0]["delta"]["tool_calls"][0]["extra_content"]
    sent = llm_server.requests[1].json()["messages"]
    calls = sent[1]["tool_calls"]
    assert [c["id"] for c in calls] == ["function-call-11111111", "function-call-22222222"]
    assert calls[0]["extra_content"] == signature and "extra_content" not in calls[1]
    # The history's JSON round trip keeps it (a saved conversation goes on where it stopped).
    call = next(item for item in result.history if isinstance(item, FunctionCall))
    assert call.provider_fields == {"extra_content": signature}
    assert item_from_dict(call.to_dict()) == call


def next_request(server: LLMServer, name: str, then: ResponseItem, *, piece: int = 0) -> tuple[ChatResult,
                                                                                          list[dict[str, Any]]]:
    """The answer that body `name` gives, and the messages of the request that goes on
    from its history (read back from its JSON, as a saved conversation is) and `then`."""
    serve(server, body_of(name), piece=piece)
    with client_for(server) as client:
        result = client.stream("hi", model="m").collect()
        history = [item_from_dict(item.to_dict()) for item in [*result.history, then]]
        return result, client.request_body(history, model="m")["messages"]


@loopback
def test_8_a_trailing_index_less_delta_belongs_to_its_call(llm_server: LLMServer) -> None:
    result, sent = next_request(llm_server, "vertex_trailing_thought_signature.sse",
                                FunctionCallOutput.from_text("call_vtx_0", "hello"), piece=25)
    assert [c.call_id for c in result.tool_calls] == ["call_vtx_0"]
    assert sent[1]["tool_calls"][0]["extra_content"]["vertex"]["thought_signature"].startswith("EvQB")


@loopback
def test_8_reasoning_details_go_back_on_the_assistant_message(llm_server: LLMServer) -> None:
    _, sent = next_request(llm_server, "openrouter_reasoning_details.sse",
                           FunctionCallOutput.from_text("toolu_01A09q90qw90lq917835lq9", "45F, rain"), piece=100)
    assistant = sent[1]
    assert assistant["tool_calls"][0]["id"] == "toolu_01A09q90qw90lq917835lq9"
    assert assistant["reasoning"] == "The user wants the weather in Boston; I should call get_weather."
    [detail] = assistant["reasoning_details"]
    assert detail["text"] == assistant["reasoning"] and detail["signature"].startswith("EqQB")
    assert (detail["type"], detail["index"], detail["format"]) == ("reasoning.text", 0, "anthropic-claude-v1")


@loopback
def test_8_a_text_answer_s_signature_goes_back_on_its_message(llm_server: LLMServer) -> None:
    # Sent back within the turn (before the next user message), as reasoning is.
    result, sent = next_request(llm_server, "gemini_text_thought_signature.sse", Message.developer("Go on."))
    assert sent[1]["content"] == result.text
    assert sent[1]["extra_content"]["google"]["thought_signature"].startswith("CrIC")


LIMIT = 8192


@loopback
def test_9_an_event_past_the_limit_is_never_delivered_even_whole_in_one_read(llm_server: LLMServer) -> None:
    body = sse_event(chat_chunk("ok")) + sse_event(chat_chunk("x" * 20_000)) + sse_done()
    (events, error), collected, frames = each_way(llm_server, body, max_event_bytes=LIMIT)
    assert [e.delta for e in events if isinstance(e, OutputTextDelta)] == ["ok"]
    assert isinstance(error, StreamError) and f"max_event_bytes={LIMIT} bytes" in str(error)
    assert isinstance(collected, StreamError) and frames[-1][0] == "error"


@loopback
def test_9_empty_data_lines_count(llm_server: LLMServer) -> None:
    body = sse_event(chat_chunk("ok")) + b"data:\n" * 200_000 + b"\n" + sse_done()
    (events, error), _, _ = each_way(llm_server, body, piece=65536, max_event_bytes=LIMIT)
    assert isinstance(error, StreamError) and f"max_event_bytes={LIMIT} bytes" in str(error)


@loopback
@pytest.mark.parametrize(("emoji", "passes"), [(2000, True), (2100, False)])
def test_9_the_limit_counts_bytes(llm_server: LLMServer, emoji: int, passes: bool) -> None:
    body = f'data: {{"choices":[{{"delta":{{"content":"{"😀" * emoji}"}},"finish_reason":"stop"}}]}}\n\n'.encode()
    (events, error), _, _ = each_way(llm_server, body + sse_done(), max_event_bytes=LIMIT)
    assert (error is None) is passes
    if passes:
        assert "".join(e.delta for e in events if isinstance(e, OutputTextDelta)) == "😀" * emoji


# --- the memory of one huge event (a fresh interpreter: its peak RSS) ---------------------------


MEASURE = textwrap.dedent("""
    import json, sys
    from llmx_sync import Client

    def status(field):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))

    with Client(base_url=sys.argv[1], max_event_bytes=int(sys.argv[2])) as client:
        client.stream("warm-up", model="m").collect()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # the peak so far is forgotten
        before = status("VmRSS")
        chars = sum(len(getattr(event, "delta", "")) for event in client.stream("big", model="m"))
        print(json.dumps({"chars": chars, "peak": status("VmHWM") - before}))
""")


@loopback
@pytest.mark.socket_reader_only
@pytest.mark.parametrize("content", ["text/event-stream", "application/json"])
def test_a_huge_event_costs_at_most_two_and_a_half_times_its_size(llm_server: LLMServer, content: str) -> None:
    """Last round a 14.3 MiB event cost 3x its size while parsed (the read pieces, the
    joined line and its data slice alive at once), a 14.3 MiB JSON answer 3.1x."""
    size = 12 << 20
    text = "x" * size
    if content == "application/json":
        body = json.dumps({"id": "c", "object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}).encode()
        small = json.dumps({"choices": [{"index": 0, "message": {"content": "hi"}, "finish_reason": "stop"}]}).encode()
    else:
        body = sse_event(chat_chunk(text, finish_reason="stop")) + sse_done()
        small = sse_event(chat_chunk("hi", finish_reason="stop")) + sse_done()
    llm_server.enqueue(Reply(body=[small], headers={"Content-Type": content}, chunked=False),
                       Reply(body=[body[i:i + 65536] for i in range(0, len(body), 65536)],
                             headers={"Content-Type": content}))
    run = subprocess.run([sys.executable, "-c", MEASURE, llm_server.url, str(len(body) + 4096)],
                         capture_output=True, text=True, timeout=120, check=True)
    report = json.loads(run.stdout)
    assert report["chars"] == size
    assert report["peak"] <= 2.5 * len(body), f"peak {report['peak'] / len(body):.2f}x the event"


# --- a refusal is shown wherever an answer is ------------------------------------------------


REFUSAL_EVENTS: list[Event] = [OutputItemAdded(Message("assistant", [])), RefusalDelta("I can't"),
                               RefusalDelta(" help."), OutputItemDone(Message("assistant", [Refusal("I can't help.")])),
                               Completed("r", None, "stop")]


def test_the_cli_shows_a_refusal_as_the_answer() -> None:
    streamed, whole = io.StringIO(), io.StringIO()
    for out, events in ((streamed, REFUSAL_EVENTS), (whole, aggregate(REFUSAL_EVENTS))):
        renderer = Renderer(out)
        for event in events:
            renderer.render(event)
    assert streamed.getvalue() == whole.getvalue() == "I can't help.\n"


def test_the_notebook_shows_a_refusal_as_the_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    shown: list[str] = []
    monkeypatch.setattr("llmx_sync.notebook._markdown_display", lambda: lambda markdown, final: shown.append(markdown))
    result = display_stream(FakeStream(list(REFUSAL_EVENTS)), throttle=0)
    assert result.refusal == "I can't help." and shown[-1] == "I can't help."
    assert "I can't" in shown[:-1]  # shown while it streams too


def test_the_web_helpers_send_a_refusal() -> None:
    assert b"".join(text_body(FakeStream(list(REFUSAL_EVENTS)))) == b"I can't help."
    frames = b"".join(sse_response_body(FakeStream(list(REFUSAL_EVENTS)))).decode()
    assert 'event: refusal.delta\ndata: {"type":"refusal.delta","delta":" help."}\n\n' in frames
