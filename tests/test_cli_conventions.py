"""The CLI's conventions (as `llm`, `gh` and httpie have them): --version, piped stdin with a
message, conversations saved and continued (-c, --conversation, `logs`), --schema,
--timeout, each subcommand's own usage, and the interactive chat in a pseudo-terminal
(pexpect), Ctrl-C and Ctrl-D included. $LLMX_HOME is a fresh directory per test (conftest)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from llm_server import LLMServer, Pause, Reply, Stall, chat_chunk, error_reply, sse_event, text_stream_body
from test_cli import REPO, _clean_env, _env, run  # noqa: F401 (_clean_env: the autouse fixture, here too)

from llmx_sync import __version__
from llmx_sync.models import read_history_jsonl
from llmx_sync.sessions import SessionStore

pytestmark = pytest.mark.timeout(120)


def sent(server: LLMServer, index: int = -1) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in server.requests[index].json()["messages"]]


def sessions() -> SessionStore:
    return SessionStore.default()


def cli(*argv: str, stdin: Any = subprocess.DEVNULL, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m llmx_sync ...`` as a process, its stdin a pipe (`input`) or `stdin`."""
    return subprocess.run([sys.executable, "-m", "llmx_sync", *argv], cwd=REPO, env=_env(), text=True,
                          capture_output=True, timeout=60, input=input,
                          **({} if input is not None else {"stdin": stdin}))


def default_sigint() -> None:
    # A parent that ignores SIGINT (nohup, a background job) passes that on: the CLI
    # must see Ctrl-C as a user would.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# --- --version, usage ----------------------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--version") == (0, f"llmx-sync {__version__}\n", "")


@pytest.mark.parametrize(("argv", "usage"), [
    (["chat", "hi", "--bogus"], "usage: llmx-sync chat "),
    (["chat", "hi", "--max-tokens", "0"], "usage: llmx-sync chat "),
    (["chat", "hi", "--provider", "nope"], "usage: llmx-sync chat "),
    (["chat", "hi", "extra words"], "usage: llmx-sync chat "),
    (["logs", "--bogus"], "usage: llmx-sync logs "),
    (["logs", "-n", "zero"], "usage: llmx-sync logs "),
    (["talk"], "usage: llmx-sync [-h] [--version] COMMAND"),
])
def test_a_bad_argument_prints_its_own_commands_usage(capsys: pytest.CaptureFixture[str], argv: list[str],
                                                      usage: str) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith(usage), err
    assert "Traceback" not in err


@pytest.mark.parametrize(("argv", "message"), [
    (["--max-output-retries", "2"], "argument --max-output-retries: needs --schema"),
    (["-c", "--conversation", "abc"], "argument --conversation: not with -c/--continue"),
    (["-c", "--history", "h.jsonl"], "argument --history: not with -c/--continue or --conversation"),
    (["--timeout", "0"], "argument --timeout: expected a number of seconds above 0, got '0'"),
    (["--timeout", "inf"], "argument --timeout: expected a number of seconds above 0, got 'inf'"),
])
def test_flags_that_cannot_go_together(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    code, _, err = run(capsys, "chat", "hi", "--base-url", "http://127.0.0.1:9/v1", *argv)
    assert code == 2 and err.startswith("usage: llmx-sync chat ") and message in err


# --- stdin --------------------------------------------------------------------------------------


def test_piped_stdin_comes_before_the_message(llm_server: LLMServer) -> None:
    llm_server.enqueue(Reply(body=text_stream_body(["Add greeting"])))
    done = cli("chat", "Write a commit message", "--base-url", llm_server.url, "-q",
               input="diff --git a/x b/x\n+hello\n")
    assert (done.returncode, done.stdout) == (0, "Add greeting\n"), done.stderr
    assert sent(llm_server) == [("user", "diff --git a/x b/x\n+hello\n\nWrite a commit message")]


def test_piped_stdin_alone_is_the_message(llm_server: LLMServer) -> None:
    llm_server.enqueue(Reply(body=text_stream_body(["4"])))
    done = cli("chat", "--base-url", llm_server.url, "-q", input="What is 2+2?\n")
    assert (done.returncode, done.stdout) == (0, "4\n"), done.stderr
    assert sent(llm_server) == [("user", "What is 2+2?")]


def test_a_file_as_stdin_is_read_too(llm_server: LLMServer, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("Meeting at 10.\n")
    llm_server.enqueue(Reply(body=text_stream_body(["ok"])))
    with notes.open() as stdin:
        done = cli("chat", "Summarise", "--base-url", llm_server.url, "-q", stdin=stdin)
    assert done.returncode == 0, done.stderr
    assert sent(llm_server) == [("user", "Meeting at 10.\n\nSummarise")]


def test_empty_or_absent_stdin_leaves_the_message_alone(llm_server: LLMServer) -> None:
    llm_server.enqueue(Reply(body=text_stream_body(["a"])), Reply(body=text_stream_body(["b"])))
    assert cli("chat", "hi", "--base-url", llm_server.url, input="").returncode == 0  # an empty pipe
    assert cli("chat", "hi", "--base-url", llm_server.url).returncode == 0  # /dev/null
    assert sent(llm_server, 0) == sent(llm_server, 1) == [("user", "hi")]


def test_a_silent_open_pipe_is_waited_for_out_loud(llm_server: LLMServer) -> None:
    # A parent that keeps stdin open without writing (a notebook's subprocess.run, say):
    # the CLI says what it waits for instead of hanging silently, then goes on at its end.
    llm_server.enqueue(Reply(body=text_stream_body(["ok"])))
    proc = subprocess.Popen([sys.executable, "-m", "llmx_sync", "chat", "hi", "--base-url", llm_server.url, "-q"],
                            cwd=REPO, env=_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None and proc.stdin is not None
        notice = proc.stderr.readline()  # blocks until the CLI speaks (the test's timeout bounds it)
        assert notice == ("llmx-sync: waiting for stdin (a pipe) to end, to send its text before the message; "
                          "Ctrl-C stops, `< /dev/null` sends the message alone\n")
        assert llm_server.requests == []
        out, err = proc.communicate("late context", timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, out) == (0, "ok\n"), err
    assert sent(llm_server) == [("user", "late context\n\nhi")]


def test_no_message_and_no_stdin_is_a_usage_error() -> None:
    done = cli("chat", "--base-url", "http://127.0.0.1:9/v1")
    assert done.returncode == 2 and "a message is required" in done.stderr


# --- conversations ------------------------------------------------------------------------------


def test_each_answer_is_saved_and_c_continues_the_last_conversation(llm_server: LLMServer,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    llm_server.enqueue(*(Reply(body=text_stream_body([text])) for text in ("4", "8", "Bonjour")))
    assert run(capsys, "chat", "What is 2+2?", "-s", "Be terse.", "-m", "model-a", "--base-url",
               llm_server.url)[0] == 0
    assert run(capsys, "chat", "-c", "Twice that?", "--base-url", llm_server.url)[:2] == (0, "8\n")
    # The model and the system message came from the conversation.
    assert sent(llm_server) == [("system", "Be terse."), ("user", "What is 2+2?"), ("assistant", "4"),
                                ("user", "Twice that?")]
    assert llm_server.requests[-1].json()["model"] == "model-a"
    (path,) = sessions().paths()
    assert [item.text for item in read_history_jsonl(path)] == [  # type: ignore[union-attr]
        "What is 2+2?", "4", "Twice that?", "8"]

    # A new conversation (no -c) is a file of its own, and becomes the latest.
    assert run(capsys, "chat", "Hello", "--base-url", llm_server.url)[0] == 0
    assert len(sessions().paths()) == 2
    assert sent(llm_server) == [("user", "Hello")]


def test_conversation_takes_an_id_or_its_start(llm_server: LLMServer, capsys: pytest.CaptureFixture[str]) -> None:
    llm_server.enqueue(*(Reply(body=text_stream_body([text])) for text in ("one", "two", "three")))
    run(capsys, "chat", "first", "--base-url", llm_server.url)
    (first,) = sessions().sessions()
    run(capsys, "chat", "second", "--base-url", llm_server.url)
    code, out, _ = run(capsys, "chat", "--conversation", first.id[:8], "and?", "--base-url", llm_server.url)
    assert (code, out) == (0, "three\n")
    assert sent(llm_server) == [("user", "first"), ("assistant", "one"), ("user", "and?")]


def test_what_cannot_be_continued_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "chat", "-c", "hi", "--base-url", "http://127.0.0.1:9/v1")
    assert code == 2 and "-c/--continue: there is no conversation yet in" in err
    code, _, err = run(capsys, "chat", "--conversation", "0123", "hi", "--base-url", "http://127.0.0.1:9/v1")
    assert code == 2 and "no conversation '0123'" in err


def test_nothing_is_saved_with_no_log_or_when_the_answer_fails(llm_server: LLMServer,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    llm_server.enqueue(Reply(body=text_stream_body(["a"])), error_reply(400, "bad request"),
                       Reply(body=[sse_event(chat_chunk("cut", role="assistant"))]))  # ends without finishing
    assert run(capsys, "chat", "hi", "-n", "--base-url", llm_server.url)[0] == 0
    assert run(capsys, "chat", "hi", "--base-url", llm_server.url)[0] == 1
    assert run(capsys, "chat", "hi", "--base-url", llm_server.url)[0] == 1
    assert sessions().paths() == []


def test_no_log_continues_without_adding(llm_server: LLMServer, capsys: pytest.CaptureFixture[str]) -> None:
    llm_server.enqueue(Reply(body=text_stream_body(["a"])), Reply(body=text_stream_body(["b"])))
    run(capsys, "chat", "one", "--base-url", llm_server.url)
    (path,) = sessions().paths()
    before = path.read_text()
    assert run(capsys, "chat", "-c", "-n", "two", "--base-url", llm_server.url)[0] == 0
    assert sent(llm_server)[-1] == ("user", "two") and path.read_text() == before


def test_a_tool_run_saves_every_item(llm_server: LLMServer, capsys: pytest.CaptureFixture[str],
                                     tmp_path: Path) -> None:
    from llm_server import sse_done, tool_call_delta
    tools = tmp_path / "tools.py"
    tools.write_text("def double(n: int) -> int:\n    \"\"\"Twice n.\"\"\"\n    return 2 * n\n")
    llm_server.enqueue(
        Reply(body=[sse_event(chat_chunk(role="assistant", tool_calls=[
            tool_call_delta(0, id="c1", name="double", arguments='{"n": 4}')])),
            sse_event(chat_chunk(finish_reason="tool_calls")), sse_done()]),
        Reply(body=text_stream_body(["8"])))
    assert run(capsys, "chat", "Double 4", "--tool", f"{tools}:double", "--base-url", llm_server.url)[0] == 0
    (path,) = sessions().paths()
    assert [item.to_dict()["type"] for item in read_history_jsonl(path)] == [
        "message", "function_call", "function_call_output", "message"]


# --- logs ---------------------------------------------------------------------------------------


def test_logs_lists_the_most_recent_first_and_shows_one(llm_server: LLMServer,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    llm_server.enqueue(*(Reply(body=text_stream_body([text])) for text in ("Blue.", "Hi!", "Green.")))
    run(capsys, "chat", "Why is the sky blue?", "-m", "m1", "--base-url", llm_server.url)
    time.sleep(0.02)  # distinct modification times
    run(capsys, "chat", "Hello", "-m", "m2", "--base-url", llm_server.url)
    time.sleep(0.02)
    first = next(s for s in sessions().sessions() if s.model == "m1")
    run(capsys, "chat", "--conversation", first.id, "And grass?", "--base-url", llm_server.url)

    code, out, err = run(capsys, "logs")
    lines = out.splitlines()
    assert code == 0 and err == "" and len(lines) == 2
    assert f"  {first.id}  m1  4 messages  Why is the sky blue?" in lines[0]  # continued last: first
    assert "  m2  2 messages  Hello" in lines[1]
    assert run(capsys, "logs", "-n", "1")[1].splitlines() == lines[:1]

    listed = [json.loads(line) for line in run(capsys, "logs", "--json")[1].splitlines()]
    assert [(entry["id"], entry["model"], entry["messages"], entry["first_message"]) for entry in listed][0] == (
        first.id, "m1", 4, "Why is the sky blue?")
    assert Path(listed[0]["path"]) == first.path

    code, out, _ = run(capsys, "logs", first.id[:6])
    assert out == (f"conversation {first.id} (model m1)\nuser: Why is the sky blue?\nassistant: Blue.\n"
                   "user: And grass?\nassistant: Green.\n")
    # --json gives the items: a history for `chat --history`.
    code, out, _ = run(capsys, "logs", first.id, "--json")
    assert [json.loads(line)["role"] for line in out.splitlines()] == ["user", "assistant", "user", "assistant"]
    assert run(capsys, "logs", "--path")[1] == f"{sessions().root}\n"


def test_logs_with_nothing_saved_and_a_damaged_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "logs") == (0, "", "")
    day = sessions().root / "2025/01/02"
    day.mkdir(parents=True)
    (day / "rollout-2025-01-02T00-00-00-00000000-0000-0000-0000-000000000000.jsonl").write_text("{oops\n")
    code, out, err = run(capsys, "logs")
    assert (code, out) == (0, "") and "warning:" in err and "line 1: not valid JSON" in err


# --- --schema, --timeout ----------------------------------------------------------------------------

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "people": {"type": "integer"}},
          "required": ["city", "people"], "additionalProperties": False}


def test_schema_from_a_file_asks_for_it_and_checks_the_answer(llm_server: LLMServer, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    schema = tmp_path / "city.json"
    schema.write_text(json.dumps(SCHEMA))
    llm_server.enqueue(Reply(body=text_stream_body(['{"city": "Paris", ', '"people": 2100000}'])),
                       Reply(body=text_stream_body(['{"city": 1, "people": "many"}'])))
    code, out, _ = run(capsys, "chat", "Paris?", "--schema", str(schema), "--base-url", llm_server.url)
    assert (code, out) == (0, '{"city": "Paris", "people": 2100000}\n')
    assert llm_server.requests[0].json()["response_format"]["json_schema"]["schema"] == SCHEMA
    code, out, err = run(capsys, "chat", "Paris?", "--schema", str(schema), "--base-url", llm_server.url)
    assert code == 1 and out == '{"city": 1, "people": "many"}\n'
    assert ("error: the model's output does not match the schema: city: 1 is not of type 'string'; "
            "people: 'many' is not of type 'integer'") in err


def test_schema_from_a_class_and_retries(llm_server: LLMServer, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "shapes.py").write_text(
        "from dataclasses import dataclass\n\n@dataclass\nclass City:\n    name: str\n    people: int\n")
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    llm_server.enqueue(Reply(body=text_stream_body(['{"name": "Paris", "people": "many"}'], usage=usage)),
                       Reply(body=text_stream_body(['{"name": "Paris", "people": 2100000}'], usage=usage)))
    code, out, err = run(capsys, "chat", "Paris?", "--schema", f"{tmp_path / 'shapes.py'}:City",
                         "--max-output-retries", "1", "--base-url", llm_server.url)
    assert code == 0, err
    assert out == ('{"name": "Paris", "people": "many"}\n'
                   '[output rejected] City.people: expected an integer, got "many"; asking again\n'
                   '{"name": "Paris", "people": 2100000}\n')
    assert "usage: 20 input tokens, 10 output tokens, 30 total (2 turns)" in err  # both attempts counted
    assert llm_server.requests[1].json()["response_format"]["json_schema"]["name"] == "City"


@pytest.mark.parametrize(("spec", "message"), [
    ("missing.json", "--schema missing.json: cannot read"),
    ("shapes_that_do_not_exist:City", "--schema shapes_that_do_not_exist:City: cannot import"),
    ("json:dumps", "--schema json:dumps: response_format: expected a dataclass"),
    ("nocolon", "--schema nocolon: expected MODULE:CLASS or FILE.py:CLASS"),
])
def test_a_bad_schema_is_a_usage_error(capsys: pytest.CaptureFixture[str], spec: str, message: str) -> None:
    code, _, err = run(capsys, "chat", "hi", "--schema", spec, "--base-url", "http://127.0.0.1:9/v1")
    assert code == 2 and message in err, err


def test_timeout_bounds_the_whole_request(llm_server: LLMServer, capsys: pytest.CaptureFixture[str]) -> None:
    llm_server.enqueue(Reply(body=[sse_event(chat_chunk("slow", role="assistant")), Stall()]))
    started = time.monotonic()
    code, out, err = run(capsys, "chat", "hi", "--timeout", "0.5", "--base-url", llm_server.url)
    assert code == 1 and out == "slow\n"
    assert "timeout of 0.5 s passed" in err
    assert time.monotonic() - started < 10


# --- the interactive chat, in a pseudo-terminal --------------------------------------------------------


def spawn_chat(server: LLMServer, *argv: str) -> Any:
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(sys.executable, ["-m", "llmx_sync", "chat", "--base-url", server.url, *argv],
                          cwd=str(REPO), env=_env(), encoding="utf-8", timeout=30, preexec_fn=default_sigint)
    return child


def test_interactive_chat_ctrl_c_cancels_the_answer_and_ctrl_d_leaves(llm_server: LLMServer) -> None:
    pexpect = pytest.importorskip("pexpect")
    llm_server.enqueue(
        Reply(body=text_stream_body(["Hello ", "there"])),
        Reply(body=[sse_event(chat_chunk("Once upon ", role="assistant")), Pause(0.1),
                    sse_event(chat_chunk("a time")), Stall()]),
        Reply(body=text_stream_body(["A short one."])))
    child = spawn_chat(llm_server)
    try:
        child.expect_exact("Ctrl-C cancels an answer, Ctrl-D (or `exit`) leaves.")
        child.expect_exact("> ")
        child.sendline("hi")
        child.expect_exact("Hello there")
        child.expect_exact("> ")
        child.sendline("Tell me a long story")
        child.expect_exact("a time")
        child.sendintr()  # Ctrl-C while the answer streams
        child.expect_exact("(cancelled; not kept in the conversation)")
        assert llm_server.wait_for_client_disconnect(timeout=5)  # the request to the model was closed
        child.expect_exact("> ")
        child.send("\x1b[A")  # the up arrow: the line typed before (readline)
        child.sendline(" (short, please)")
        child.expect_exact("A short one.")
        child.expect_exact("> ")
        child.sendintr()  # Ctrl-C at the prompt: a new prompt, nothing sent
        child.expect_exact("> ")
        child.sendeof()  # Ctrl-D leaves
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    # The cancelled exchange is not in the conversation the model sees, nor in the saved one.
    assert sent(llm_server) == [("user", "hi"), ("assistant", "Hello there"),
                                ("user", "Tell me a long story (short, please)")]
    assert len(llm_server.requests) == 3
    (path,) = sessions().paths()
    assert [item.text for item in read_history_jsonl(path)] == [  # type: ignore[union-attr]
        "hi", "Hello there", "Tell me a long story (short, please)", "A short one."]
    history = (sessions().root.parent / "chat_history").read_text().splitlines()
    assert history[-3:] == ["hi", "Tell me a long story", "Tell me a long story (short, please)"]


def test_interactive_chat_shows_an_error_and_goes_on(llm_server: LLMServer) -> None:
    pexpect = pytest.importorskip("pexpect")
    llm_server.enqueue(error_reply(400, "the model is busy"), Reply(body=text_stream_body(["Fine."])))
    child = spawn_chat(llm_server, "-m", "small")
    try:
        child.expect_exact("Chatting with small at ")
        child.expect_exact("> ")
        child.sendline("first")
        child.expect_exact("llmx-sync: error: unexpected status 400 Bad Request")
        child.expect_exact("> ")
        child.sendline("second")
        child.expect_exact("Fine.")
        child.expect_exact("> ")
        child.sendline("exit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    assert sent(llm_server) == [("user", "second")]  # the failed exchange was not kept


def test_interactive_chat_continues_a_conversation(llm_server: LLMServer, capsys: pytest.CaptureFixture[str]) -> None:
    pexpect = pytest.importorskip("pexpect")
    llm_server.enqueue(Reply(body=text_stream_body(["4"])), Reply(body=text_stream_body(["8"])))
    run(capsys, "chat", "2+2?", "--base-url", llm_server.url)
    child = spawn_chat(llm_server, "-c")
    try:
        child.expect_exact("> ")
        child.sendline("Twice that?")
        child.expect_exact("8")
        child.expect_exact("> ")
        child.sendeof()
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert sent(llm_server) == [("user", "2+2?"), ("assistant", "4"), ("user", "Twice that?")]
    (path,) = sessions().paths()
    assert len(read_history_jsonl(path)) == 4
