"""The everyday tasks of examples/README.md that tests/test_examples.py does not run: each
script run as a user runs it, against the scripted server."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_examples import EXAMPLES, ROOT, example_env

from llmx_sync.testing import ScriptedServer, answer, closed_without_response, error_reply, stream_error


def run(name: str, server: ScriptedServer | None, *args: str, stdin: str = "",
        base_url: str | None = None) -> subprocess.CompletedProcess[str]:
    url = base_url if server is None else server.base_url
    return subprocess.run([sys.executable, str(EXAMPLES / name), "--base-url", str(url), "--model", "test-model",
                           *args], env=example_env(), input=stdin, capture_output=True, text=True, timeout=60)


def test_one_shot_prints_the_whole_answer_and_its_usage(scripted_server: ScriptedServer) -> None:
    scripted_server.enqueue(answer("The Rhine, the Danube and the Loire.", usage=(12, 9)),
                            answer("A red bicycle."))
    done = run("one_shot.py", scripted_server, "Three rivers?")
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("The Rhine, the Danube and the Loire.\n",
                                          "[finish reason: stop, tokens: 21]\n")
    assert scripted_server.requests[0].json()["temperature"] == 0

    done = run("one_shot.py", scripted_server, "--image", "data:image/png;base64,iVBORw0KGgo=", "What is this?")
    assert done.stdout == "A red bicycle.\n"
    assert scripted_server.requests[1].json()["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]


def test_a_conversation_kept_as_messages(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    scripted_server.enqueue(answer("Nice to meet you, Ada."), answer("Your name is Ada."))
    saved = tmp_path / "chat.json"
    done = run("conversation.py", scripted_server, "--save", str(saved), stdin="My name is Ada.\n\nWhat is my name?\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Nice to meet you, Ada.\nYour name is Ada.\n"
    second = scripted_server.requests[1].json()["messages"]
    assert second == [{"role": "system", "content": "You are a concise assistant."},
                      {"role": "user", "content": "My name is Ada."},
                      {"role": "assistant", "content": "Nice to meet you, Ada."},
                      {"role": "user", "content": "What is my name?"}]
    assert json.loads(saved.read_text()) == [*second, {"role": "assistant", "content": "Your name is Ada."}]


def test_errors_a_rate_limit_is_waited_out(scripted_server: ScriptedServer) -> None:
    scripted_server.enqueue(error_reply(429, "Slow down", retry_after=0), answer("Hello, bonjour, hola."))
    done = run("errors_and_retries.py", scripted_server, "Hello?")
    assert (done.returncode, done.stdout) == (0, "Hello, bonjour, hola.\n"), done.stderr
    assert len(scripted_server.requests) == 2


@pytest.mark.parametrize(("replies", "args", "status", "says"), [
    ([error_reply(429, "Slow down", retry_after=0)] * 2, ["--retries", "1"], 1,
     "rate limited: Slow down (retry after: 0 s)"),
    ([error_reply(401, "Missing bearer token")], [], 1, "the server wants a key: Missing bearer token"),
    ([error_reply(404, "The model `test-model` does not exist", code="model_not_found")], [], 1,
     "the server refused: unexpected status 404 Not Found: The model `test-model` does not exist"),
    ([stream_error("upstream overloaded", after="Hel")], [], 2, "the server failed while answering: "
                                                                 "upstream overloaded\n(received before that: 'Hel')"),
    ([answer("Hel", end="stall")], ["--idle-timeout", "0.5"], 2,
     "the server went silent for 0.5 s\n(received before that: 'Hel')"),
    ([answer("Hello there", end="truncate")], [], 2, "the answer broke off: "),
    ([answer(["Hel", "lo"], delay=2.0)], ["--timeout", "1"], 2, "no complete answer within 1 s"),
    ([closed_without_response()] * 2, ["--retries", "1"], 3, "cannot reach the server: "),
])
def test_errors_each_failure_is_told_apart(scripted_server: ScriptedServer, replies: list[object], args: list[str],
                                          status: int, says: str) -> None:
    scripted_server.enqueue(*replies)  # type: ignore[arg-type]
    done = run("errors_and_retries.py", scripted_server, *args)
    assert done.returncode == status, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr


def test_errors_an_unreachable_server() -> None:
    with ScriptedServer() as gone:
        url = gone.base_url
    done = run("errors_and_retries.py", None, "--retries", "0", base_url=url)
    assert done.returncode == 3 and "cannot reach the server" in done.stderr


def test_testing_your_app_passes_as_a_users_test_suite() -> None:
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "pytest_llmx_sync", "-p", "no:cacheprovider", "-q",
                           str(EXAMPLES / "testing_your_app.py")], cwd=ROOT, env=example_env(), capture_output=True,
                          text=True, timeout=120)
    assert re.search(r"\b5 passed\b", done.stdout), done.stdout + done.stderr


def test_every_example_is_listed_and_run_by_a_test() -> None:
    listed = (EXAMPLES / "README.md").read_text()
    scripts = sorted(path.name for path in EXAMPLES.iterdir() if path.suffix in (".py", ".ipynb")
                     and not path.name.startswith("_"))
    tests = "".join(path.read_text() for path in (ROOT / "tests").glob("test_*.py"))
    assert [name for name in scripts if f"`{name}`" not in listed] == []
    assert [name for name in scripts if f'"{name}"' not in tests and f"'{name}'" not in tests] == []
    assert len(re.findall(r"^\| \d+\. ", listed, re.MULTILINE)) == 10
