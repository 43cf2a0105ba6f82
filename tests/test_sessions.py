"""llmx_sync.sessions: conversations saved as rollout files, read back by the SDK's own reader."""

from __future__ import annotations

import datetime
import json
import os
import stat
from pathlib import Path

import pytest

from llmx_sync.errors import InvalidInputError
from llmx_sync.models import FunctionCall, FunctionCallOutput, Message, read_history_jsonl
from llmx_sync.sessions import HOME_ENV, Session, SessionStore, llmx_home

NOON = datetime.datetime(2025, 3, 9, 12, 0, 5, 250000, tzinfo=datetime.UTC)


def new_session(store: SessionStore, instructions: str | None = None) -> Session:
    return store.create(originator="llmx-sync", version="0.1.0", instructions=instructions, now=NOON)


def test_the_home_is_llmx_home_else_dot_llmx(tmp_path: Path) -> None:
    assert llmx_home({HOME_ENV: str(tmp_path)}) == tmp_path
    assert llmx_home({}) == Path.home() / ".llmx"
    assert SessionStore.default({HOME_ENV: str(tmp_path)}).root == tmp_path / "sessions"


def test_a_session_is_a_rollout_that_read_history_jsonl_reads(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "sessions")
    session = new_session(store, "Be terse.")
    call = FunctionCall(name="f", arguments="{}", call_id="c1")
    exchange = [Message.user("hi"), call, FunctionCallOutput.from_text("c1", "ok"), Message.assistant("Hello")]
    session.append(exchange, model="m1", instructions="Be terse.", now=NOON)

    assert session.path == (tmp_path / "sessions/2025/03/09"
                            / f"rollout-2025-03-09T12-00-05-{session.id}.jsonl")
    records = [json.loads(line) for line in session.path.read_text().splitlines()]
    assert [record["type"] for record in records] == ["session_meta", "turn_context", *["response_item"] * 4]
    assert all(record["timestamp"] == "2025-03-09T12:00:05.250Z" for record in records)
    meta = records[0]["payload"]
    assert (meta["id"], meta["originator"], meta["cli_version"], meta["instructions"]) == (
        session.id, "llmx-sync", "0.1.0", "Be terse.")
    assert records[1]["payload"]["model"] == "m1"
    # The SDK's reader (for --history, and Codex's own rollouts) gives the items back.
    assert read_history_jsonl(session.path) == exchange
    again = Session.read(session.path)
    assert again.items() == exchange
    assert (again.id, again.model, again.instructions, again.started) == (session.id, "m1", "Be terse.", NOON)
    assert again.first_message() == "hi"


def test_files_and_directories_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        session = new_session(SessionStore(tmp_path / "sessions"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(session.path.stat().st_mode) == 0o600
    for directory in (session.path.parent, session.path.parent.parent, tmp_path / "sessions/2025",
                      tmp_path / "sessions"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory


def test_later_exchanges_are_appended_and_the_last_settings_count(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "sessions")
    session = new_session(store)
    session.append([Message.user("a"), Message.assistant("b")], model="m1", instructions=None)
    session.append([Message.user("c"), Message.assistant("d")], model="m2", instructions="Formal.")
    again = Session.read(session.path)
    assert [item.text for item in again.items()] == ["a", "b", "c", "d"]  # type: ignore[union-attr]
    assert (again.model, again.instructions) == ("m2", "Formal.")


def test_latest_and_find(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "sessions")
    assert store.latest() is None and store.paths() == []
    first, second = new_session(store), new_session(store)
    first.append([Message.user("again")], model="m", instructions=None)
    os.utime(second.path, ns=(1, 1))  # second: long ago; first: just now
    assert store.latest() is not None and store.latest().id == first.id  # type: ignore[union-attr]
    assert [path.name for path in store.paths()] == [first.path.name, second.path.name]
    assert store.find(second.id).path == second.path
    assert store.find(second.id[:8].upper()).path == second.path
    with pytest.raises(LookupError, match="no conversation 'zzz'"):
        store.find("zzz")
    with pytest.raises(LookupError, match="empty"):
        store.find(" ")


def test_a_prefix_of_several_ids_is_refused_naming_them(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "sessions")
    day = tmp_path / "sessions/2025/03/09"
    day.mkdir(parents=True)
    for suffix in ("1", "2"):
        name = f"rollout-2025-03-09T12-00-05-aaaaaaaa-0000-0000-0000-00000000000{suffix}.jsonl"
        (day / name).write_text("")
    with pytest.raises(LookupError, match="more than one conversation id .*0001, aaaaaaaa.*0002"):
        store.find("aaaa")
    assert store.find("aaaaaaaa-0000-0000-0000-000000000002").path.name.endswith("2.jsonl")


def test_a_damaged_file_names_its_line(tmp_path: Path) -> None:
    session = new_session(SessionStore(tmp_path / "sessions"))
    with session.path.open("a") as file:
        file.write('{"type": "response_item", "payload": {"type": "message"}}\n')
    with pytest.raises(InvalidInputError, match=r"line 2"):
        Session.read(session.path).items()
    session.path.write_text("not json\n")
    with pytest.raises(InvalidInputError, match=r"line 1: not valid JSON"):
        Session.read(session.path)
