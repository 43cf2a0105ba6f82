"""The tool-running loop: call the model, run the tools it asked for, send the results,
call it again, until an answer comes without tool calls.

`RunStream` is what `Client.run` returns: one iterator over the events of every turn
(the same events as `Client.stream`, each turn's `Completed` carrying its `turn`), plus
a `ToolResult` after each tool ran. Tools are Python functions (`functions.tool`);
the calls of one turn run at once in daemon threads (``parallel=False``: one after
the other), and their results are sent, and yielded, in the order the model made the
calls.

Nothing a tool call does ends the loop: a call of an unknown tool, arguments that do
not fit, a function that raises, returns something that is not data (a generator, an
object: `functions.ToolResultError`) or runs past `tool_timeout` each becomes an output
telling the model what went wrong. A function that runs too long is abandoned in its
daemon thread (Python cannot stop a thread), and a warning counts such threads. An
``async def`` tool runs with `asyncio.run` in its thread. With a `timeout`, the run's
deadline covers every turn's request and body and the tools: past it, the tools still
running time out and the run raises `DeadlineExceededError`. A call whose arguments are not even JSON is recorded with arguments ``{}``
(the request rules leave out a call whose arguments are not JSON, and its output with
it, so the model would never see what it did wrong) and an output quoting the text.

Stopping: `close()`, ``break`` then garbage collection, Ctrl-C while waiting, or the
client closing end the run within a second and no further turn starts. A tool that
is running is left to finish in its thread; its result is dropped. A run closed by
another thread than the one iterating it (`client.close()` at shutdown) before it ended
raises `StreamError` there, as a stream does: a cut run never looks finished.

Order: a turn's events, then its tools' `ToolResult` events, then the next turn's.
The work is done when the consumer asks for the next event: the tools start when the
event after a turn's `completed` is asked for, and the next turn (its request sent)
when the event after the last result is. So an error of the next request, and
`MaxTurnsExceededError`, come after every result before them.

With structured output in the ``"tools"`` mode the answer is a call of the output's
function: a turn with that call ends the run (it is the answer, not a tool to run).

Re-asking (``max_output_retries=N``): an answer that does not fit the structured
output's schema is followed by an `OutputRejected` event, a message telling the model
what is wrong goes into the history, and the model is asked again (a new turn, whose
events stream like any other); when the N re-asks are spent, the iterator raises the
last answer's `OutputValidationError`. `Client.stream(..., max_output_retries=N)` is
such a run without tools to run: a turn with tool calls ends it.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Final

from ._jsonrules import is_json
from .aggregate import ChatAccumulator, ChatResult
from .errors import MaxTurnsExceededError, OutputValidationError, StreamError
from .events import Completed, Event, OutputRejected, ToolResult
from .functions import PythonTool, ToolArgumentsError, ToolResultError
from .models import FunctionCall, FunctionCallOutput, ResponseItem
from .response import ResponseStream, StructuredOutput
from .telemetry import OFF, RunTrace
from .transport import Deadline

__all__ = ["RunStream", "run_tool_call"]

logger = logging.getLogger("llmx_sync")

# Waits are cut into slices this long so that close() and Ctrl-C are noticed.
_WAIT_SLICE: Final = 0.1
RUN_CLOSED_MESSAGE: Final = "the run was closed before it ended"


def run_tool_call(call: FunctionCall, tools: dict[str, PythonTool]) -> tuple[FunctionCall, ToolResult]:
    """Run one call: the call as it goes into the history, and its result.

    Never raises for the call's sake: every failure is a result whose `error` says what
    happened and whose `output` tells the model (the function's own exception text
    included, as the model needs it to correct itself).
    """
    # Arguments that are not JSON (`""` included) would make the request rules leave
    # the call out, and its output with it: record `{}`, and quote the text in the output.
    recorded = call if is_json(call.arguments) else dataclasses.replace(call, arguments="{}")
    tool = tools.get(call.name)
    if tool is None:
        message = f"error: there is no tool named {call.name!r}; the tools are: {', '.join(tools) or 'none'}"
        return recorded, ToolResult(call.call_id, call.name, message, message)
    try:
        return recorded, ToolResult(call.call_id, call.name, tool.run(call.arguments))
    except ToolArgumentsError as exc:
        message = f"error: {exc.problem}"
    except ToolResultError as exc:
        message = f"error: {exc}"
    except Exception as exc:  # the tool's failure is the model's business, not the loop's
        message = _raised(exc)
    return recorded, ToolResult(call.call_id, call.name, message, message)


def _raised(exc: BaseException) -> str:
    return f"error: {type(exc).__name__}: {exc}"


class _Turn:
    """The tool calls of one turn being run, each in a daemon thread of its own: all at
    once, or (``parallel=False``) each once the one before it ended.

    A call still running when it is due (`tool_timeout` after it started, and never past
    the run's `deadline`) becomes a timed-out result for the model, and its thread is
    abandoned: a Python thread cannot be stopped, so it runs on, its result dropped, and
    a warning says how many such threads the process has.
    """

    def __init__(self, calls: Sequence[FunctionCall], tools: dict[str, PythonTool], parallel: bool,
                 trace: RunTrace = OFF, *, tool_timeout: float | None = None,
                 deadline: Deadline | None = None) -> None:
        self._trace = trace
        # With nothing to time out, nothing to run at once and no event loop needed, a
        # call may run in the thread that asks for its result (`next_result(inline=True)`):
        # a thread of its own would only add its start and a hand-over.
        self._may_inline = (tool_timeout is None and deadline is None and (not parallel or len(calls) <= 1)
                            and not any(inspect.iscoroutinefunction(getattr(tools.get(call.name), "function", None))
                                        for call in calls))
        self.calls = list(calls)
        self._tools = tools
        self._parallel = parallel
        self._tool_timeout = tool_timeout
        self._deadline = deadline
        self._results: queue.Queue[tuple[int, tuple[FunctionCall, ToolResult]]] = queue.Queue()
        self._done: dict[int, tuple[FunctionCall, ToolResult]] = {}
        self._running: dict[int, tuple[threading.Thread, float, float]] = {}  # index -> thread, start, due
        self._lock = threading.Lock()
        self.next_index = 0
        if not self._may_inline:
            for index in range(len(self.calls) if parallel else min(1, len(self.calls))):
                self._start(index)

    def _start(self, index: int) -> None:
        """Start call `index` (once: a late thread and a timeout may both ask for it)."""
        with self._lock:
            if index >= len(self.calls) or index in self._running:
                return
            results = self._results
            started = time.monotonic()
            due = started + self._tool_timeout if self._tool_timeout is not None else math.inf
            if self._deadline is not None:
                due = min(due, self._deadline.at)

            def work() -> None:
                results.put((index, self._call(index, interruptible=False)))
                if not self._parallel:
                    self._start(index + 1)

            thread = threading.Thread(target=work, name=f"llmx_sync-tool-{index}", daemon=True)
            self._running[index] = (thread, started, due)
            thread.start()

    def _call(self, index: int, *, interruptible: bool) -> tuple[FunctionCall, ToolResult]:
        """Run call `index` here. Whatever it raises becomes its result (a SystemExit in a
        tool thread would end it silently, and the loop would wait for ever), except a
        Ctrl-C where `interruptible` (the consumer's own thread)."""
        call = self.calls[index]
        try:
            with self._trace.tool(call) as traced:
                result = run_tool_call(call, self._tools)
                traced(result[1])
            return result
        except KeyboardInterrupt:
            if interruptible:
                raise
            message = _raised(KeyboardInterrupt())
        except BaseException as exc:
            message = _raised(exc)
        return call, ToolResult(call.call_id, call.name, message, message)

    def next_result(self, timeout: float, *, inline: bool = False) -> tuple[FunctionCall, ToolResult] | None:
        """The result of the next call in the model's order, or None if not there within
        `timeout`; a timed-out result once that call is due. `inline`: the caller waits
        without a timeout of its own, so the call may run in its thread (see `__init__`)."""
        index = self.next_index
        if inline and self._may_inline and index not in self._running:
            result = self._call(index, interruptible=True)
            self.next_index += 1
            return result
        wait_until = time.monotonic() + timeout
        self._start(index)  # (one by one: the thread before it may not have started it yet)
        while index not in self._done:
            _, started, due = self._running[index]
            now = time.monotonic()
            if now >= due:
                self._done[index] = self._timed_out(index, now - started)
                if not self._parallel:
                    self._start(index + 1)
                break
            remaining = min(wait_until, due) - now
            if remaining <= 0:
                return None
            try:
                done, result = self._results.get(timeout=remaining)
            except queue.Empty:
                continue
            if done >= index and done not in self._done:  # (not a call already timed out)
                self._done[done] = result
        result = self._done.pop(index)
        self.next_index += 1
        return result

    def _timed_out(self, index: int, seconds: float) -> tuple[FunctionCall, ToolResult]:
        call = self.calls[index]
        message = f"error: the tool {call.name!r} timed out after {seconds:.3g} s (it did not return in time)"
        thread = self._running[index][0]
        with _abandoned_lock:
            _abandoned[:] = [t for t in _abandoned if t.is_alive()]
            _abandoned.append(thread)
            count = len(_abandoned)
        logger.warning("tool %r (call %s) timed out after %.3g s; its thread %s is left running, its result "
                       "will be dropped (%d abandoned tool thread%s still running in this process)",
                       call.name, call.call_id, seconds, thread.name, count, "" if count == 1 else "s")
        return call, ToolResult(call.call_id, call.name, message, message)

    @property
    def finished(self) -> bool:
        return self.next_index == len(self.calls)


# Tool threads abandoned past their timeout that may still run (counted in the warning).
_abandoned: list[threading.Thread] = []
_abandoned_lock = threading.Lock()


class _State:
    """What the finalizer needs to stop a run: its current stream. Not the RunStream
    itself, so an abandoned run can be collected."""

    def __init__(self, trace: RunTrace) -> None:
        self.stream: ResponseStream | None = None
        self.closed = threading.Event()
        self.trace = trace
        self.closed_by: threading.Thread | None = None

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed_by = threading.current_thread()
        self.closed.set()
        self.trace.end(kind="cancelled")  # (nothing if the run had ended)
        stream = self.stream
        if stream is not None:
            stream.close()


class RunStream:
    """The events of every turn of a tool-running loop (see the module docstring).

    Iterate over it once, or call `collect()`. `history` is every item of the run so
    far: the input, then each turn's answer items and tool outputs in order, ready to
    continue with ``client.run(run.history + [Message.user(...)], ...)``. `turn` is
    the number of model calls made so far, `reasks` how many of them re-asked for an
    answer that did not fit (``max_output_retries``). A tool call still running
    `tool_timeout` seconds after it started, or at the run's `deadline`, becomes an error
    output ("timed out after N s"); the run goes on, or ends at its deadline.

    `run_tools=False` makes a turn with tool calls end the run, the calls left to the
    caller (`Client.stream` with ``max_output_retries``).
    """

    def __init__(self, history: Sequence[ResponseItem],
                 start_turn: Callable[[list[ResponseItem]], ResponseStream | None],
                 tools: Sequence[PythonTool], *, max_turns: int, parallel: bool,
                 max_output_retries: int = 0, run_tools: bool = True, trace: RunTrace = OFF,
                 tool_timeout: float | None = None, deadline: Deadline | None = None) -> None:
        self.history: list[ResponseItem] = list(history)
        self._input_length = len(self.history)
        self.turn = 0
        self.reasks = 0
        self._start_turn = start_turn
        self._tools = {tool.name: tool for tool in tools}
        self._max_turns = max_turns
        self._parallel = parallel
        self._max_output_retries = max_output_retries
        self._run_tools = run_tools
        self._tool_timeout = tool_timeout
        self._deadline = deadline
        self._turn_recorded = False  # the current stream's items are in `history`
        self._state = _State(trace)
        self._finalizer = weakref.finalize(self, self._state.close)
        self._pending: deque[Event] = deque()
        self._tool_turn: _Turn | None = None
        self._tool_items: list[ResponseItem] = []
        self._next_turn_due = False  # the tools ran: the next turn starts once their results are out
        self._answered = False  # a turn ended without tools to run: the run is over, and it succeeded
        self._finished = False
        self._error: BaseException | None = None  # raised once the events before it are out
        self._start_next_turn()

    # -- iteration --------------------------------------------------------------------

    def __iter__(self) -> RunStream:
        return self

    def __next__(self) -> Event:
        return self.next_event(None)

    def next_event(self, timeout: float | None = None) -> Event:
        """The next event, waiting at most `timeout` seconds (None: no limit), as
        `ResponseStream.next_event` does, for the whole run: `TimeoutError` while a
        turn streams nothing or a tool runs longer (call again). Sending the next
        turn's request, which waits for the server's headers, is not cut short by it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                # Closed: nothing more, not even what is already here (as for a stream);
                # closed by another thread before the consumer had it all, an error.
                if self._state.closed.is_set():
                    cut = not self._finished or self._pending or self._error is not None
                    self._finished, self._error = True, None
                    self._pending.clear()
                    if cut and self._state.closed_by is not threading.current_thread():
                        raise StreamError(RUN_CLOSED_MESSAGE)
                    raise StopIteration
                if self._pending:
                    return self._pending.popleft()
                if self._error is not None:
                    error, self._error = self._error, None
                    raise error
                if self._finished:
                    self._state.trace.end(kind=None if self._answered else "cancelled")
                    raise StopIteration
                if self._next_turn_due:
                    self._next_turn_due = False
                    self._start_next_turn()
                    continue
                wait = _WAIT_SLICE if deadline is None else min(_WAIT_SLICE, deadline - time.monotonic())
                if wait <= 0:
                    raise TimeoutError("no event within the timeout")
                if self._tool_turn is not None:
                    self._collect_tool_result(wait, inline=deadline is None)
                else:
                    # Without a timeout the stream's own next(): it reads in this thread,
                    # bounded by its deadlines, and close() and Ctrl-C end that wait.
                    self._next_stream_event(None if deadline is None else wait)
        except (StopIteration, TimeoutError):
            raise
        except BaseException as exc:
            self._state.trace.end(exc)
            self.close()
            raise

    def _next_stream_event(self, wait: float | None) -> None:
        stream = self._state.stream
        assert stream is not None
        try:
            event = next(stream) if wait is None else stream.next_event(wait)
        except TimeoutError:
            return
        except StopIteration:
            self._end_turn(stream)
            return
        except StreamError:
            if self._state.closed.is_set():
                return  # the run was closed, which cut its stream: the loop says so
            raise
        if isinstance(event, Completed):
            event = dataclasses.replace(event, turn=self.turn)
        self._pending.append(event)

    def _end_turn(self, stream: ResponseStream) -> None:
        if not stream.completed:  # closed (by us, or by the client): no further turn
            self._finished = True
            return
        result = stream.snapshot()
        self.history.extend(result.items)
        self._turn_recorded = True
        output = stream.structured_output
        answered = not result.tool_calls or (output is not None and output.answer_call(result) is not None)
        if not answered and self._run_tools:
            self._tool_turn = _Turn(result.tool_calls, self._tools, self._parallel, self._state.trace,
                                    tool_timeout=self._tool_timeout, deadline=self._deadline)
            self._tool_items = []
            return
        if answered and output is not None and self._max_output_retries:
            rejection = output.rejection(result)
            if rejection is not None:
                self._reject(output, rejection, result)
                return
        self._finished = self._answered = True

    def _reject(self, output: StructuredOutput, rejection: OutputValidationError, result: ChatResult) -> None:
        """An answer that does not fit: ask again, or fail (after the events before) when
        the re-asks are spent."""
        if self.reasks == self._max_output_retries:
            self._finished = True
            self._error = rejection
            return
        self.reasks += 1
        self._pending.append(OutputRejected(rejection.text, rejection.errors, self.reasks))
        self.history.append(output.reask(rejection, result))
        self._next_turn_due = True

    def _collect_tool_result(self, wait: float, *, inline: bool) -> None:
        turn = self._tool_turn
        assert turn is not None
        done = turn.next_result(wait, inline=inline)
        if done is None or self._state.closed.is_set():  # a result that comes after a close is dropped
            return
        call, result = done
        if call is not turn.calls[turn.next_index - 1]:  # arguments rewritten: record what the model sees
            self._replace_in_history(turn.calls[turn.next_index - 1], call)
        self._tool_items.append(FunctionCallOutput.from_text(call.call_id, result.output))
        self._pending.append(result)
        if turn.finished:
            self.history.extend(self._tool_items)
            self._tool_turn = None
            if self.turn - self.reasks >= self._max_turns:
                self._finished = True
                self._error = MaxTurnsExceededError(self._max_turns, list(self.history))
            else:
                self._next_turn_due = True

    def _replace_in_history(self, old: FunctionCall, new: FunctionCall) -> None:
        for index in range(len(self.history) - 1, -1, -1):
            if self.history[index] is old:
                self.history[index] = new
                return

    def _start_next_turn(self) -> None:
        state = self._state
        if state.closed.is_set():
            return
        self.turn += 1
        stream = self._start_turn(list(self.history))
        if stream is None:  # the client was closed: no further turn, and the run did not end
            self._finished = True
            self._error = StreamError(RUN_CLOSED_MESSAGE)
            return
        state.stream = stream
        self._turn_recorded = False
        if state.closed.is_set():  # closed from another thread while the request was sent
            stream.close()

    # -- results ----------------------------------------------------------------------

    def snapshot(self) -> ChatResult:
        """The answer so far, without waiting: the current turn's (or the last one's)
        `ChatResult` as far as it got, with `history` the run so far and `new_items` what
        the run added to its input."""
        stream = self._state.stream
        if stream is None:
            result = dataclasses.replace(ChatAccumulator().snapshot(), history=list(self.history))
        else:
            result = stream.snapshot()  # its history: the turn's input, then what it streamed so far
            if self._turn_recorded:
                result = dataclasses.replace(result, history=list(self.history))
        return dataclasses.replace(result, new_items=result.history[self._input_length:])

    def collect(self) -> ChatResult:
        """Run the loop to its end; the last turn's answer, with `history` the whole run,
        `new_items` what the run added to its input (and `parsed` the structured output,
        when one was asked for). Raises the run's error, and `StreamError` if it was
        closed before it ended."""
        with self:
            for _ in self:
                pass
        stream = self._state.stream
        if not self._answered or stream is None:
            raise StreamError(RUN_CLOSED_MESSAGE)
        return dataclasses.replace(stream.collect(), history=list(self.history),
                                   new_items=self.history[self._input_length:])

    # -- closing ----------------------------------------------------------------------

    def close(self) -> None:
        """Stop: close the current stream, start no further turn, drop the results of
        tools still running. Idempotent, from any thread."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def __enter__(self) -> RunStream:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "finished" if self._finished else "running"
        return f"<RunStream {state} turn={self.turn} items={len(self.history)}>"

