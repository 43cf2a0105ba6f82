"""Re-asking for structured output, and the interactive CLI, against llama.cpp's
llama-server on 127.0.0.1 with the bundled SmolLM2-135M (temperature 0).

The 135M model answers the ``tools`` structured-output mode in words (see
test_run_local.py), so every attempt is rejected: the re-asks happen for real, with the
server's own answers. A check the grammar of the ``json_schema`` mode cannot express (a
pydantic validator) is the other way an answer can be rejected.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pydantic
import pytest
from local_support import needs_llama_server

from llmx_sync import Client, Completed, Message, OutputRejected, OutputValidationError, Provider
from llmx_sync.local import LlamaServerBinary
from llmx_sync.sessions import SessionStore

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]


class City(pydantic.BaseModel):
    name: str
    population: int

    @pydantic.field_validator("name")
    @classmethod
    def in_capitals(cls, value: str) -> str:  # (the model writes "Paris" first)
        if value != value.upper():
            raise ValueError("write the name in capital letters")
        return value


def structured_client(server: LlamaServerBinary, mode: str) -> Client:
    return Client(Provider("local-test", server.base_url, structured_output=mode,  # type: ignore[arg-type]
                           request_max_retries=0))


@needs_llama_server
def test_answers_in_words_are_re_asked_then_refused(llama_server: LlamaServerBinary) -> None:
    with structured_client(llama_server, "tools") as client:
        stream = client.stream("Describe Paris as JSON.", model=str(llama_server.model_id), temperature=0,
                               max_tokens=16, response_format=City, max_output_retries=1)
        events = []
        with pytest.raises(OutputValidationError) as caught:
            for event in stream:
                events.append(event)
        history = stream.history
    rejected = [event for event in events if isinstance(event, OutputRejected)]
    assert [event.attempt for event in rejected] == [1]
    assert [event.turn for event in events if isinstance(event, Completed)] == [1, 2]
    assert all(event.errors[0].message == "the model did not call 'City' with the answer" for event in rejected)
    assert caught.value.errors[0].message == "the model did not call 'City' with the answer"
    # What the model was sent each time: the question, then per rejected attempt its
    # answer and the message saying what was wrong.
    feedback = [item for item in history if isinstance(item, Message) and item.role == "user"][1:]
    assert len(feedback) == 1
    assert all("Call City with the whole corrected answer as its arguments." in item.text for item in feedback)


@needs_llama_server
def test_a_validator_the_grammar_cannot_express(llama_server: LlamaServerBinary) -> None:
    with structured_client(llama_server, "json_schema") as client:
        stream = client.stream("Describe Paris as JSON.", model=str(llama_server.model_id), temperature=0,
                               max_tokens=60, response_format=City, max_output_retries=1)
        rejected: list[OutputRejected] = []
        try:
            for event in stream:
                if isinstance(event, OutputRejected):
                    rejected.append(event)
            city = stream.collect().parsed
        except OutputValidationError as error:  # the small model may not manage it: then 2 attempts
            assert len(rejected) == 1
            assert any("capital letters" in problem.message or "not valid JSON" in problem.message
                       for problem in error.errors), error.errors
        else:
            assert isinstance(city, City) and city.name == city.name.upper()
        assert rejected and "capital letters" in rejected[0].errors[0].message  # "Paris" was refused
        # Every rejection named its problem, and the model got it back.
        for event in rejected:
            assert event.errors and all(problem.message for problem in event.errors)
        assert stream.reasks == len(rejected) and stream.turn == len(rejected) + 1


@needs_llama_server
def test_the_interactive_chat_with_a_real_model(llama_server: LlamaServerBinary, tmp_path: Path) -> None:
    pexpect = pytest.importorskip("pexpect")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMX_", "OPENAI_"))}
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
               LLMX_HOME=str(tmp_path))
    child = pexpect.spawn(sys.executable, ["-m", "llmx_sync", "chat", "--base-url", llama_server.base_url,
                                           "-m", str(llama_server.model_id), "--max-tokens", "16",
                                           "--temperature", "0"],
                          cwd=str(REPO), env=env, encoding="utf-8", timeout=120,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        child.expect_exact("> ")
        child.sendline("Name a colour.")
        child.expect_exact("> ")
        first_answer = child.before
        child.sendline("And another one?")
        child.expect_exact("> ")
        child.sendeof()
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    assert first_answer.replace("Name a colour.", "").strip()
    (path,) = SessionStore(tmp_path / "sessions").paths()
    items = SessionStore(tmp_path / "sessions").find(path.name[-42:-6]).items()
    assert [(item.role, bool(item.text.strip())) for item in items] == [  # type: ignore[union-attr]
        ("user", True), ("assistant", True), ("user", True), ("assistant", True)]
