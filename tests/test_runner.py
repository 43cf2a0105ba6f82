"""`client.run`: the tool-running loop against the scripted server (`runner.RunStream`).

Every wait is bounded: events are read with `next_event(timeout)` (a loop that hangs
fails instead), and tools that block wait on a `Gate` the test opens in its teardown.
"""

from __future__ import annotations

import _thread
import gc
import json
import signal
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from llm_server import (
    LLMServer,
    Reply,
    Stall,
    chat_chunk,
    error_reply,
    sse_done,
    sse_event,
    text_stream_body,
    tool_call_delta,
)
from sockets import live_threads, wait_for
from streaming_support import released

from llmx_sync import (
    BadRequestError,
    Client,
    Completed,
    FunctionCall,
    FunctionCallOutput,
    MaxTurnsExceededError,
    Message,
    OutputItemDone,
    OutputTextDelta,
    RunStream,
    StreamError,
    ToolArgumentsError,
    ToolResult,
    aggregate,
    tool,
)
from llmx_sync.events import Event

TOOL_THREADS = "llmx_sync-tool-"
# The longest a test waits for anything; far above what any step takes.
PATIENCE = 10.0


# --- scripted turns ------------------------------------------------------------------------


def calls_reply(*calls: tuple[str, str, str]) -> Reply:
    """A turn that calls tools, each ``(call_id, name, arguments)``, streamed as OpenAI
    does: id and name first, then the arguments."""
    pieces = [sse_event(chat_chunk(role="assistant"))]
    for index, (call_id, name, arguments) in enumerate(calls):
        pieces.append(sse_event(chat_chunk(tool_calls=[tool_call_delta(index, id=call_id, name=name)])))
        pieces.append(sse_event(chat_chunk(tool_calls=[tool_call_delta(index, arguments=arguments)])))
    pieces += [sse_event(chat_chunk(finish_reason="tool_calls")), sse_done()]
    return Reply(body=pieces)


def answer_reply(text: str = "It is sunny.") -> Reply:
    return Reply(body=text_stream_body([text[:5], text[5:]]))


def paris(call_id: str = "c1", days: int = 1) -> tuple[str, str, str]:
    return call_id, "get_weather", json.dumps({"city": "Paris", "days": days})


# --- tools ---------------------------------------------------------------------------------


def get_weather(city: str, days: int = 1) -> str:
    """The weather in a city.

    Args:
        city: The city.
        days: How many days ahead.
    """
    return f"sunny in {city} for {days} day(s)"


class Gate:
    """A tool that blocks until the test opens the gate (at the latest in its teardown)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.returned = threading.Event()

    def wait_here(self, city: str) -> str:
        """Waits for the gate.

        Args:
            city: Any city.
        """
        self.entered.set()
        self.opened.wait(PATIENCE)
        self.returned.set()
        return f"{city} after the gate"


@pytest.fixture
def gate() -> Iterator[Gate]:
    gate = Gate()
    yield gate
    gate.opened.set()
    # The tool threads end with their tools (other tests count the SDK's threads).
    assert wait_for(lambda: not live_threads(TOOL_THREADS), PATIENCE)


@pytest.fixture
def client(llm_server: LLMServer) -> Iterator[Client]:
    with Client(base_url=llm_server.url) as client:
        yield client


def read(run: RunStream, stop: type[Event] | None = None) -> list[Event]:
    """The run's events up to its end (or up to the first `stop` event), each waited
    for at most PATIENCE seconds; a run that goes on and on fails."""
    events: list[Event] = []
    while True:
        try:
            event = run.next_event(timeout=PATIENCE)
        except StopIteration:
            return events
        events.append(event)
        assert len(events) < 1000, f"the run does not end: {events[-5:]}"
        if stop is not None and isinstance(event, stop):
            return events


def of_type(events: list[Event], kind: type[Any]) -> list[Any]:
    return [event for event in events if isinstance(event, kind)]


def sent_messages(server: LLMServer, index: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = server.requests[index].json()["messages"]
    return messages


def read_cut(run: RunStream) -> list[Event]:
    """The run's events up to the `StreamError` a close from another thread raises (a
    run that ends without it fails)."""
    events: list[Event] = []
    with pytest.raises(StreamError, match="closed before"):
        while True:
            events.append(run.next_event(timeout=PATIENCE))
            assert len(events) < 1000, f"the run does not end: {events[-5:]}"
    return events


def close_when(event: threading.Event, close: Any) -> list[float]:
    """Call `close` from another thread once `event` is set; the list gets the time."""
    closed_at: list[float] = []

    def closer() -> None:
        if event.wait(PATIENCE):
            time.sleep(0.1)  # the consumer is waiting by then
            closed_at.append(time.monotonic())
            close()

    threading.Thread(target=closer, daemon=True).start()
    return closed_at


# --- turns, history and order --------------------------------------------------------------


def test_a_call_then_an_answer(llm_server: LLMServer, client: Client) -> None:
    llm_server.enqueue(calls_reply(paris(days=2)), answer_reply())
    with client.run("Weather in Paris?", model="m", tools=[get_weather]) as run:
        events = read(run)
    kinds = [event.type for event in events if event.type in ("completed", "tool_result", "output_item.done")]
    assert kinds == ["output_item.done", "completed", "tool_result", "output_item.done", "completed"]
    assert of_type(events, ToolResult) == [ToolResult("c1", "get_weather", "sunny in Paris for 2 day(s)")]
    assert "".join(e.delta for e in of_type(events, OutputTextDelta)) == "It is sunny."
    assert len(llm_server.requests) == 2 and run.turn == 2


def test_each_turn_sends_the_calls_together_and_the_outputs_in_the_models_order(
        llm_server: LLMServer, client: Client) -> None:
    tokyo_done = threading.Event()
    finished: list[str] = []

    def slow_paris(city: str) -> str:
        """Weather, Paris last.

        Args:
            city: The city.
        """
        if city == "Paris":  # finishes after Tokyo, although the model called it first
            assert tokyo_done.wait(PATIENCE)
            time.sleep(0.2)
        finished.append(city)
        tokyo_done.set()
        return f"{city}: sunny"

    llm_server.enqueue(calls_reply(("c1", "slow_paris", '{"city": "Paris"}'),
                                   ("c2", "slow_paris", '{"city": "Tokyo"}')), answer_reply())
    with client.run("Weather?", model="m", tools=[slow_paris]) as run:
        events = read(run)
    assert finished == ["Tokyo", "Paris"]
    assert [result.call_id for result in of_type(events, ToolResult)] == ["c1", "c2"]
    first, second = (request.json() for request in llm_server.requests)
    assert [spec["function"]["name"] for spec in first["tools"]] == ["slow_paris"] == [
        spec["function"]["name"] for spec in second["tools"]]
    assert second["messages"] == [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "slow_paris", "arguments": '{"city": "Paris"}'}},
            {"id": "c2", "type": "function", "function": {"name": "slow_paris", "arguments": '{"city": "Tokyo"}'}},
        ]},
        {"role": "tool", "tool_call_id": "c1", "content": "Paris: sunny"},
        {"role": "tool", "tool_call_id": "c2", "content": "Tokyo: sunny"},
    ]
    assert [type(item).__name__ for item in run.history] == [
        "Message", "FunctionCall", "FunctionCall", "FunctionCallOutput", "FunctionCallOutput", "Message"]


def test_parallel_calls_run_at_the_same_time(llm_server: LLMServer, client: Client) -> None:
    both_running = threading.Barrier(2, timeout=5)  # passes only when two tools wait in it at once

    def meet(city: str) -> str:
        """Meets the other call.

        Args:
            city: The city.
        """
        both_running.wait()
        return f"{city} met"

    llm_server.enqueue(calls_reply(("c1", "meet", '{"city": "Paris"}'), ("c2", "meet", '{"city": "Tokyo"}')),
                       answer_reply())
    with client.run("Meet", model="m", tools=[meet]) as run:
        results = of_type(read(run), ToolResult)
    assert [(result.output, result.error) for result in results] == [("Paris met", None), ("Tokyo met", None)]


def test_parallel_false_runs_the_calls_one_after_the_other(llm_server: LLMServer, client: Client) -> None:
    log: list[str] = []

    def step(city: str) -> str:
        """Logs its start and end.

        Args:
            city: The city.
        """
        log.append(f"start {city}")
        time.sleep(0.2)  # long enough for a second thread to start meanwhile, if there were one
        log.append(f"end {city}")
        return city

    llm_server.enqueue(calls_reply(("c1", "step", '{"city": "Paris"}'), ("c2", "step", '{"city": "Tokyo"}')),
                       answer_reply())
    with client.run("Steps", model="m", tools=[step], parallel=False) as run:
        results = of_type(read(run), ToolResult)
    assert log == ["start Paris", "end Paris", "start Tokyo", "end Tokyo"]
    assert [result.output for result in results] == ["Paris", "Tokyo"]


# --- what goes wrong in a call is told to the model ------------------------------------------


def tool_messages(server: LLMServer, index: int) -> list[str]:
    return [message["content"] for message in sent_messages(server, index) if message["role"] == "tool"]


def test_an_unknown_tool_is_told_to_the_model(llm_server: LLMServer, client: Client) -> None:
    llm_server.enqueue(calls_reply(("c1", "get_wether", '{"city": "Paris"}')), answer_reply())
    with client.run("Weather?", model="m", tools=[get_weather]) as run:
        (result,) = of_type(read(run), ToolResult)
    assert result.error == result.output == (
        "error: there is no tool named 'get_wether'; the tools are: get_weather")
    assert tool_messages(llm_server, 1) == [result.output]
    assert isinstance(run.history[-1], Message) and run.history[-1].text == "It is sunny."


def raises(city: str) -> str:
    """Always fails.

    Args:
        city: The city.
    """
    raise LookupError(f"no station in {city}")


def exits(city: str) -> str:
    """Ends its thread (SystemExit is not an Exception).

    Args:
        city: The city.
    """
    sys.exit(3)


@pytest.mark.parametrize(("function", "message"), [
    (raises, "error: LookupError: no station in Atlantis"),
    (exits, "error: SystemExit: 3"),  # not a loop waiting forever for a thread that is gone
])
def test_a_raising_tool_is_told_to_the_model(llm_server: LLMServer, client: Client, function: Any,
                                             message: str) -> None:
    llm_server.enqueue(calls_reply(("c1", function.__name__, '{"city": "Atlantis"}')), answer_reply())
    with client.run("Weather?", model="m", tools=[function]) as run:
        (result,) = of_type(read(run), ToolResult)
    assert result.error == result.output == message
    assert tool_messages(llm_server, 1) == [message]
    assert len(llm_server.requests) == 2


@pytest.mark.parametrize("arguments", ['{"city": "Par', "", "not json"])
def test_arguments_that_are_not_json_are_sent_back_as_an_empty_object(
        llm_server: LLMServer, client: Client, arguments: str) -> None:
    llm_server.enqueue(calls_reply(("c1", "get_weather", arguments)), answer_reply())
    with client.run("Weather?", model="m", tools=[get_weather]) as run:
        events = read(run)
    # The turn's own events show what the model wrote ...
    (call,) = [e.item for e in of_type(events, OutputItemDone) if isinstance(e.item, FunctionCall)]
    assert call.arguments == arguments
    # ... the history and the next request what the model sees: `{}` and the text quoted.
    (result,) = of_type(events, ToolResult)
    call_message, tool_message = sent_messages(llm_server, 1)[1:]
    assert call_message["tool_calls"][0]["function"]["arguments"] == "{}"
    assert tool_message == {"role": "tool", "tool_call_id": "c1", "content": result.output}
    if arguments:
        assert result.output.startswith("error: arguments are not valid JSON") and repr(arguments) in result.output
    else:  # no text at all counts as `{}`, which lacks the city
        assert "city" in result.output
    assert [item.arguments for item in run.history if isinstance(item, FunctionCall)] == ["{}"]


def test_arguments_of_the_wrong_type_get_the_converters_message(llm_server: LLMServer, client: Client) -> None:
    arguments = '{"city": "Paris", "days": "three"}'
    with pytest.raises(ToolArgumentsError) as expected:
        tool(get_weather).parse_arguments(arguments)
    llm_server.enqueue(calls_reply(("c1", "get_weather", arguments)), answer_reply())
    with client.run("Weather?", model="m", tools=[get_weather]) as run:
        (result,) = of_type(read(run), ToolResult)
    assert "'days'" in expected.value.problem
    assert result.error == result.output == f"error: {expected.value.problem}"
    assert tool_messages(llm_server, 1) == [result.output]
    # Valid JSON stays as the model wrote it.
    assert [item.arguments for item in run.history if isinstance(item, FunctionCall)] == [arguments]


# --- the end of a run ----------------------------------------------------------------------------


def test_max_turns_raises_with_the_history_after_the_last_results(llm_server: LLMServer, client: Client) -> None:
    llm_server.enqueue(calls_reply(paris("c1")), calls_reply(paris("c2")), answer_reply())
    run = client.run("Weather?", model="m", tools=[get_weather], max_turns=2)
    events: list[Event] = []
    with pytest.raises(MaxTurnsExceededError) as raised:
        while True:
            events.append(run.next_event(timeout=PATIENCE))
    assert isinstance(events[-1], ToolResult) and events[-1].call_id == "c2"
    assert [e.turn for e in of_type(events, Completed)] == [1, 2]
    error = raised.value
    assert error.max_turns == 2 and error.history == run.history
    assert [type(item).__name__ for item in error.history] == [
        "Message", "FunctionCall", "FunctionCallOutput", "FunctionCall", "FunctionCallOutput"]
    assert len(llm_server.requests) == 2 and llm_server.pending == 1  # no third call
    assert run.closed
    with pytest.raises(StopIteration):
        run.next_event(timeout=PATIENCE)


def test_an_error_of_the_next_request_comes_after_the_results(llm_server: LLMServer, client: Client) -> None:
    llm_server.enqueue(calls_reply(paris()), error_reply(400, "bad history", type="invalid_request_error"))
    run = client.run("Weather?", model="m", tools=[get_weather])
    events: list[Event] = []
    with pytest.raises(BadRequestError, match="bad history"):
        while True:
            events.append(run.next_event(timeout=PATIENCE))
    assert isinstance(events[-1], ToolResult) and events[-1].error is None
    assert run.closed


def test_collect_gives_the_answer_and_a_history_to_continue_from(llm_server: LLMServer, client: Client) -> None:
    llm_server.enqueue(calls_reply(paris("c1"), ("c2", "get_weather", '{"city": "Tokyo"}')),
                       answer_reply("Sunny in both."))
    result = client.run("Weather in Paris and Tokyo?", model="m", tools=[get_weather]).collect()
    assert (result.text, result.finish_reason, result.tool_calls) == ("Sunny in both.", "stop", [])
    history = result.history
    assert history[0] == Message.user("Weather in Paris and Tokyo?")
    assert [item.call_id for item in history[1:5]] == ["c1", "c2", "c1", "c2"]  # type: ignore[attr-defined]
    assert [type(item) for item in history[1:5]] == [FunctionCall, FunctionCall, FunctionCallOutput,
                                                     FunctionCallOutput]
    assert history[3].output.content == "sunny in Paris for 1 day(s)"  # type: ignore[attr-defined]
    assert isinstance(history[5], Message) and history[5].text == "Sunny in both." and len(history) == 6

    llm_server.enqueue(answer_reply("Rain tomorrow."))
    again = client.run(history + [Message.user("And tomorrow?")], model="m", tools=[get_weather]).collect()
    assert again.text == "Rain tomorrow."
    assert sent_messages(llm_server, 2) == [*sent_messages(llm_server, 1),
                                            {"role": "assistant", "content": "Sunny in both."},
                                            {"role": "user", "content": "And tomorrow?"}]
    assert again.history == [*history, Message.user("And tomorrow?"), again.items[0]]


def test_completed_events_number_the_turns(llm_server: LLMServer, client: Client) -> None:
    llm_server.enqueue(calls_reply(paris("c1")), calls_reply(paris("c2")), answer_reply())
    with client.run("Weather?", model="m", tools=[get_weather]) as run:
        events = read(run)
    assert [event.turn for event in of_type(events, Completed)] == [1, 2, 3]
    assert run.turn == 3


def test_aggregate_over_a_run_gives_the_items_results_and_turns(llm_server: LLMServer, client: Client) -> None:
    llm_server.enqueue(calls_reply(paris()), answer_reply())
    with client.run("Weather?", model="m", tools=[get_weather]) as run:
        events = list(aggregate(run))
    assert [(event.type, type(getattr(event, "item", None)).__name__) for event in events] == [
        ("output_item.done", "FunctionCall"), ("completed", "NoneType"), ("tool_result", "NoneType"),
        ("output_item.done", "Message"), ("completed", "NoneType")]
    assert [e.turn for e in of_type(events, Completed)] == [1, 2]


def test_next_event_times_out_while_a_tool_runs(llm_server: LLMServer, client: Client, gate: Gate) -> None:
    llm_server.enqueue(calls_reply(("c1", "wait_here", '{"city": "Paris"}')), answer_reply())
    with client.run("Wait", model="m", tools=[tool(gate.wait_here)]) as run:
        read(run, stop=Completed)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            run.next_event(timeout=0.3)  # the tools start when the event after `completed` is asked for
        assert 0.25 < time.monotonic() - started < 2  # what web heartbeats rely on
        assert gate.entered.is_set()
        gate.opened.set()
        assert run.next_event(timeout=PATIENCE) == ToolResult("c1", "wait_here", "Paris after the gate")
        assert of_type(read(run), Completed)[0].turn == 2


# --- stopping ------------------------------------------------------------------------------------


def no_further_request(server: LLMServer, count: int, gate: Gate) -> None:
    """The tool finishes on its own once the gate opens; no turn follows it."""
    gate.opened.set()
    assert gate.returned.wait(PATIENCE)
    assert wait_for(lambda: not live_threads(TOOL_THREADS), PATIENCE)
    time.sleep(0.3)  # time for a request that should not come
    assert len(server.requests) == count


def test_close_during_a_tool_ends_the_run_and_drops_the_result(llm_server: LLMServer, client: Client,
                                                               gate: Gate) -> None:
    llm_server.enqueue(calls_reply(("c1", "wait_here", '{"city": "Paris"}')), answer_reply())
    run = client.run("Wait", model="m", tools=[tool(gate.wait_here)])
    closed_at = close_when(gate.entered, run.close)
    events = read_cut(run)  # blocks in the tool until the close
    assert time.monotonic() - closed_at[0] < 1
    assert run.closed and not gate.returned.is_set()
    assert of_type(events, ToolResult) == []
    no_further_request(llm_server, 1, gate)
    assert not any(isinstance(item, FunctionCallOutput) for item in run.history)
    with pytest.raises(StreamError, match="closed before it ended"):
        run.collect()


def test_a_result_that_arrives_after_close_is_dropped(llm_server: LLMServer, client: Client) -> None:
    runs: list[RunStream] = []

    def hang_up(city: str) -> str:
        """Ends the conversation.

        Args:
            city: The city.
        """
        runs[0].close()
        return "bye"

    llm_server.enqueue(calls_reply(("c1", "hang_up", '{"city": "Paris"}')), answer_reply())
    runs.append(client.run("Bye", model="m", tools=[hang_up]))
    events = read_cut(runs[0])  # the tool's thread closed it: cut, not ended
    assert [event.type for event in events][-1] == "completed"
    assert not any(isinstance(item, FunctionCallOutput) for item in runs[0].history)
    time.sleep(0.3)  # time for a request that should not come
    assert len(llm_server.requests) == 1


def test_close_during_a_stream_releases_its_connection(llm_server: LLMServer, client: Client) -> None:
    llm_server.enqueue(calls_reply(paris()),
                       Reply(body=[sse_event(chat_chunk("It is", role="assistant")), Stall()]))
    run = client.run("Weather?", model="m", tools=[get_weather])
    first_text = threading.Event()
    closed_at = close_when(first_text, run.close)
    events: list[Event] = []
    with pytest.raises(StreamError, match="closed before"):
        for event in run:  # blocks in the stalled second turn until the close
            events.append(event)
            if isinstance(event, OutputTextDelta):
                first_text.set()
    assert time.monotonic() - closed_at[0] < 1
    assert [e.turn for e in of_type(events, Completed)] == [1]
    assert released(llm_server) and llm_server.wait_for_client_disconnect()
    assert len(llm_server.requests) == 2


def test_close_while_the_next_request_is_sent_closes_its_stream(llm_server: LLMServer, client: Client) -> None:
    closed = threading.Event()
    replies = iter([calls_reply(paris()), Reply(body=[sse_event(chat_chunk("It is", role="assistant")), Stall()])])

    def script(request: Any) -> Reply:
        if len(llm_server.requests) == 2:  # the second turn's headers wait for the close
            assert closed.wait(PATIENCE)
        return next(replies)

    llm_server.handler = script
    run = client.run("Weather?", model="m", tools=[get_weather])

    def close() -> None:
        run.close()
        closed.set()

    threading.Thread(target=lambda: llm_server.wait_for_requests(2, PATIENCE) and close(), daemon=True).start()
    events = read_cut(run)
    assert [event.type for event in events][-1] == "tool_result"
    # The stream that opened after the close is closed too (the run is still referenced).
    assert released(llm_server) and llm_server.wait_for_client_disconnect()


def test_break_then_garbage_collection_closes_the_run(llm_server: LLMServer, client: Client) -> None:
    llm_server.enqueue(Reply(body=[sse_event(chat_chunk("Let me", role="assistant")), Stall()]))
    run = client.run("Weather?", model="m", tools=[get_weather])
    for event in run:
        if isinstance(event, OutputTextDelta):
            break
    collected = weakref.ref(run)
    del run, event
    assert collected() is None  # no reference cycle: freed at once, without waiting for gc
    assert released(llm_server) and llm_server.wait_for_client_disconnect()
    gc.collect()
    assert len(llm_server.requests) == 1


def test_break_during_a_tool_starts_no_further_turn(llm_server: LLMServer, client: Client, gate: Gate) -> None:
    llm_server.enqueue(calls_reply(("c1", "wait_here", '{"city": "Paris"}')), answer_reply())
    run = client.run("Wait", model="m", tools=[tool(gate.wait_here)])
    read(run, stop=Completed)
    with pytest.raises(TimeoutError):
        run.next_event(timeout=0.2)
    assert gate.entered.is_set()
    del run
    no_further_request(llm_server, 1, gate)


def test_closing_the_client_ends_its_runs(llm_server: LLMServer, gate: Gate) -> None:
    llm_server.enqueue(calls_reply(("c1", "wait_here", '{"city": "Paris"}')), answer_reply())
    client = Client(base_url=llm_server.url)
    run = client.run("Wait", model="m", tools=[tool(gate.wait_here)])
    closed_at = close_when(gate.entered, client.close)
    events = read_cut(run)
    assert time.monotonic() - closed_at[0] < 1
    assert run.closed and of_type(events, ToolResult) == []
    no_further_request(llm_server, 1, gate)


def sigint_to_main_thread() -> None:
    signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)


@pytest.mark.parametrize("where", ["in the consumer's thread", "in its own thread"])
def test_ctrl_c_while_a_tool_runs_closes_the_run(llm_server: LLMServer, client: Client, gate: Gate,
                                                 where: str) -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("KeyboardInterrupt goes to the main thread")
    llm_server.enqueue(calls_reply(("c1", "wait_here", '{"city": "Paris"}')), answer_reply())
    if where == "in its own thread":  # a tool_timeout needs the tool in a thread it can abandon
        run = client.run("Wait", model="m", tools=[tool(gate.wait_here)], tool_timeout=3 * PATIENCE)
        interrupt = _thread.interrupt_main  # (no signal: the run's wait in slices sees it)
    else:  # a sync tool without a timeout runs where the run is iterated: a real Ctrl-C interrupts it
        run = client.run("Wait", model="m", tools=[tool(gate.wait_here)])
        interrupt = sigint_to_main_thread
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # under nohup SIGINT is ignored
    try:
        interrupted_at = close_when(gate.entered, interrupt)
        with pytest.raises(KeyboardInterrupt):
            for _ in run:  # the tool holds the run until the gate opens: the interrupt lands in here
                pass
    finally:
        signal.signal(signal.SIGINT, previous)
    assert time.monotonic() - interrupted_at[0] < 1
    assert run.closed
    assert not gate.returned.is_set()  # the run did not wait for the tool
    if where == "in its own thread":
        no_further_request(llm_server, 1, gate)  # the tool runs on to its end in its thread
    else:  # the tool itself was interrupted: it never returns
        gate.opened.set()
        time.sleep(0.3)  # time for a request that should not come
        assert not gate.returned.is_set()
        assert len(llm_server.requests) == 1
