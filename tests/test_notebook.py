"""llmx_sync.notebook.display_stream, with a fake display and in a real kernel (nbclient)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fake_stream import FakeStream
from llm_server import Reply, chat_chunk, sse_done, sse_event, text_stream_body, tool_call_delta
from stream_helpers import paced

from llmx_sync.client import Client
from llmx_sync.events import Completed, OutputItemDone, OutputTextDelta, ReasoningContentDelta
from llmx_sync.models import FunctionCall
from llmx_sync.notebook import WAITING_TEXT, display_stream, render_markdown

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "examples" / "notebook.ipynb"


class FakeDisplay:
    """Stands in for `IPython.display.display`: records every Markdown shown and when."""

    def __init__(self) -> None:
        self.shown: list[str] = []
        self.times: list[float] = []
        self.changed = threading.Condition()

    def __call__(self, obj: Any, *, display_id: bool) -> FakeDisplay:
        assert display_id is True
        self.update(obj)
        return self

    def update(self, obj: Any) -> None:
        with self.changed:
            self.shown.append(obj.data)
            self.times.append(time.monotonic())
            self.changed.notify_all()

    def wait_until_shown(self, text: str, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.shown[-1:] == [text], timeout)


@pytest.fixture
def fake_display(monkeypatch: pytest.MonkeyPatch) -> FakeDisplay:
    fake = FakeDisplay()
    monkeypatch.setattr("IPython.display.display", fake)
    return fake


def completed() -> Completed:
    return Completed("resp-1", None, "stop")


def test_updates_are_throttled_and_the_last_one_is_complete(fake_display: FakeDisplay) -> None:
    deltas = [f"w{i} " for i in range(200)]
    stream = FakeStream([*map(OutputTextDelta, deltas), completed()], delay=0.002)
    started = time.monotonic()
    result = display_stream(stream, throttle=0.1)
    elapsed = time.monotonic() - started

    assert result.text == "".join(deltas)
    assert fake_display.shown[0] == WAITING_TEXT
    assert fake_display.shown[-1] == "".join(deltas)
    updates = fake_display.shown[1:]
    # One redraw per 0.1 s at most, plus the first delta and the final result.
    assert 3 <= len(updates) <= elapsed / 0.1 + 2
    gaps = [b - a for a, b in zip(fake_display.times[1:-2], fake_display.times[2:-1], strict=True)]
    assert all(gap >= 0.09 for gap in gaps), gaps
    assert stream.closed.is_set()


def test_text_held_back_is_shown_when_the_stream_goes_quiet(fake_display: FakeDisplay) -> None:
    stream = FakeStream([OutputTextDelta("a"), OutputTextDelta("b")], stall_after=2)
    worker = threading.Thread(target=display_stream, args=(stream,), kwargs={"throttle": 0.2})
    worker.start()
    try:
        # "b" came right after "a" was drawn, so it waits for the throttle, not for an event.
        assert fake_display.wait_until_shown("ab", timeout=2)
    finally:
        stream.close()
        worker.join(2)
    assert not worker.is_alive()


def test_reasoning_is_quoted_above_the_answer_and_tool_calls_listed(fake_display: FakeDisplay) -> None:
    call = FunctionCall(name="get_weather", arguments='{"city":"Paris"}', call_id="call-1")
    stream = FakeStream([
        ReasoningContentDelta("Weather?\nAsk the tool."), OutputTextDelta("Let me check."),
        OutputItemDone(call), completed(),
    ])
    result = display_stream(stream)
    assert result.reasoning == "Weather?\nAsk the tool."
    assert result.tool_calls == [call]
    assert fake_display.shown[-1] == (
        '> Weather?\n> Ask the tool.\n\nLet me check.\n\n- tool call ` get_weather({"city":"Paris"}) `'
    )


def test_a_tool_loop_is_shown_with_each_result(fake_display: FakeDisplay, llm_server: Any) -> None:
    # client.run's stream in place of client.stream's: the calls, their results, the answer.
    llm_server.enqueue(
        Reply(body=[sse_event(chat_chunk(tool_calls=[tool_call_delta(0, id="call-1", name="get_weather",
                                                                     arguments='{"city": "Paris"}')])),
                    sse_event(chat_chunk(finish_reason="tool_calls")), sse_done()]),
        Reply(body=text_stream_body(["Sunny."])))

    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    with Client(base_url=llm_server.url) as client:
        result = display_stream(client.run("Weather?", model="m", tools=[get_weather]))
    # The result is the run's own collect(): the last turn's answer, the whole run in `history`.
    assert result.text == "Sunny." and result.tool_calls == []
    assert [type(item).__name__ for item in result.history] == [
        "Message", "FunctionCall", "FunctionCallOutput", "Message"]
    assert fake_display.shown[-1] == (
        'Sunny.\n\n- tool call ` get_weather({"city": "Paris"}) ` → ` sunny in Paris `')


def test_a_kernel_interrupt_closes_the_stream_and_is_raised(fake_display: FakeDisplay) -> None:
    stream = FakeStream([OutputTextDelta("a")], stall_after=1)
    # What Jupyter's "interrupt kernel" does: SIGINT to the kernel, whose main thread is waiting.
    # The kernel's handler raises KeyboardInterrupt; the test's own, since the process may have
    # started with SIGINT ignored (nohup, `&` in a script), which Python then leaves ignored.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            display_stream(stream)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert stream.closed.is_set()
    assert fake_display.shown[-1] == "a"


def test_without_ipython_the_import_fails_before_any_request(monkeypatch: pytest.MonkeyPatch,
                                                             llm_server: Any) -> None:
    monkeypatch.setitem(sys.modules, "IPython", None)  # (None in sys.modules: not importable)
    monkeypatch.setitem(sys.modules, "IPython.display", None)
    monkeypatch.delitem(sys.modules, "llmx_sync.notebook")  # (put back afterwards)
    # The README's cell, run where IPython is missing: the import fails, nothing is sent.
    with pytest.raises(ImportError, match=r"pip install ipython"):
        exec("from llmx_sync import Client\n"
             "from llmx_sync.notebook import display_stream\n"
             f"client = Client(base_url={llm_server.url!r})\n"
             "result = display_stream(client.stream('Why is the sky blue?', model='m'))\n", {})
    assert llm_server.requests == []


def test_an_ipython_that_cannot_be_imported_still_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "IPython.display", None)  # found, but broken
    stream = FakeStream([OutputTextDelta("a")])
    with pytest.raises(ImportError, match=r"pip install ipython"):
        display_stream(stream)
    assert stream.closed.is_set()


def test_outside_an_ipython_session_the_error_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    stream = FakeStream([OutputTextDelta("a")])
    with pytest.raises(RuntimeError, match="Jupyter or IPython session"):
        display_stream(stream)
    assert stream.closed.is_set()


def test_the_example_notebook_streams_into_its_output(llm_server: Any, monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    tokens = ["The sky ", "is blue ", "because of ", "Rayleigh scattering."]
    llm_server.enqueue(Reply(body=paced(text_stream_body(tokens), 0.05)))
    # The kernel is a child process: it inherits the environment.
    monkeypatch.setenv("LLMX_BASE_URL", llm_server.url)
    monkeypatch.setenv("LLMX_MODEL", "test-model")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=60, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()

    streaming_cell = next(cell for cell in notebook.cells if "display_stream(" in cell.source)
    shown = [output["data"]["text/markdown"] for output in streaming_cell.outputs if output.get("data")]
    assert shown == ["".join(tokens)]
    # What a frontend without Markdown shows, and the saved notebook keeps beside it: the text.
    assert [output["data"]["text/plain"] for output in streaming_cell.outputs if output.get("data")] == shown
    assert llm_server.requests[0].json()["model"] == "test-model"
    printed = "".join(output.get("text", "") for output in notebook.cells[-1].outputs)
    assert printed.startswith("stop")


def test_a_tool_call_with_backticks_gets_a_longer_code_fence() -> None:
    call = FunctionCall(name="run", arguments='{"cmd":"`ls`"}', call_id="c")
    assert render_markdown("", "", [call]) == '- tool call `` run({"cmd":"`ls`"}) ``'


def test_the_plain_text_form_of_the_display_is_the_answer() -> None:
    # IPython's own formatter, as a kernel runs it for each display and update.
    from IPython.core.formatters import DisplayFormatter

    from llmx_sync.notebook import _MarkdownText

    data, _ = DisplayFormatter().format(_MarkdownText("**Rivers** carve canyons."))
    assert data == {"text/plain": "**Rivers** carve canyons.", "text/markdown": "**Rivers** carve canyons."}


def test_terminal_ipython_shows_the_answer_once_as_it_grows(llm_server: Any, tmp_path: Path) -> None:
    # Terminal IPython prints every update of a display as a new output: the answer is
    # written out as it grows instead, each piece once.
    pexpect = pytest.importorskip("pexpect")
    tokens = ["Rivers ", "carve ", "canyons ", "slowly, ", "grain ", "by ", "grain."]
    llm_server.enqueue(Reply(body=paced(text_stream_body(tokens), 0.1)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "IPYTHONDIR": str(tmp_path / "ipython"), "TERM": "dumb"}
    ipython = pexpect.spawn(sys.executable, ["-m", "IPython", "--simple-prompt", "--no-banner", "--colors=NoColor"],
                            env=env, encoding="utf-8", timeout=60, dimensions=(24, 200))
    try:
        ipython.expect_exact("In [1]: ")
        ipython.sendline("from llmx_sync.client import Client; from llmx_sync.notebook import display_stream")
        ipython.expect_exact("In [2]: ")
        ipython.sendline(f"r = display_stream(Client(base_url={llm_server.url!r}).stream('hi', model='m'), "
                         "throttle=0.05); print('parsed:', repr(r.text))")
        ipython.expect_exact("In [3]: ")
        output = ipython.before
        ipython.sendline("exit")
        ipython.expect(pexpect.EOF)
    finally:
        ipython.close(force=True)
    shown = output.replace("\r\n", "\n")
    assert "IPython.core.display" not in shown and "Markdown object" not in shown
    answer = "".join(tokens)
    assert f"{answer}\nparsed: {answer!r}" in shown
    assert shown.split("\nparsed: ")[0].count("Rivers") == 1  # written once, not once per redraw
