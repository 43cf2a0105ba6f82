"""Messages in and out, and record/replay, against llama.cpp's own llama-server."""

from __future__ import annotations

from pathlib import Path

import pytest

import llmx_sync as llmx
from llmx_sync.local import LlamaServerBinary
from llmx_sync.testing import Recorder, Recording, ScriptedServer

pytestmark = pytest.mark.integration


def test_a_messages_conversation_continues_with_to_messages(llama_server: LlamaServerBinary) -> None:
    messages = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": [{"type": "text", "text": "My name is Ada."}]}]
    with llmx.Client(base_url=llama_server.base_url) as client:
        first = client.stream(messages, model="local", max_tokens=24, temperature=0).collect()
        messages += first.to_messages()
        messages.append({"role": "user", "content": "What is my name?"})
        second = client.stream(messages, model="local", max_tokens=24, temperature=0).collect()
    assert messages[2] == {"role": "assistant", "content": first.text} and first.text
    assert second.text and second.finish_reason in ("stop", "length")


def test_record_then_replay_gives_the_same_answer(llama_server: LlamaServerBinary, tmp_path: Path) -> None:
    path = tmp_path / "recording.json"
    with Recorder(llama_server.base_url, path) as recorder, llmx.Client(base_url=recorder.base_url) as client:
        live = client.stream("Name a colour.", model="local", max_tokens=16, temperature=0).collect()
    recording = Recording.load(path)
    assert len(recording.exchanges) == 1 and recording.exchanges[0].complete
    with ScriptedServer(*recording.replies()) as server, llmx.Client(base_url=server.base_url) as client:
        replayed = client.stream("Name a colour.", model="local", max_tokens=16, temperature=0).collect()
        assert server.requests[0].json() == recording.requests[0]
    assert (replayed.text, replayed.token_usage, replayed.finish_reason, replayed.response_id) == (
        live.text, live.token_usage, live.finish_reason, live.response_id)
