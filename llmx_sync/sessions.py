"""Conversations kept on disk as rollout files, for the CLI's ``--continue`` and ``logs``.

A rollout is the JSONL that Codex and llmx write for a session, and that
`models.read_history_jsonl` reads: a ``session_meta`` line, then for each exchange a
``turn_context`` line (the model, the instructions) and one ``response_item`` line per
item, each line with its UTC ``timestamp``. The files live where Codex keeps its own,
under the llmx home: ``$LLMX_HOME`` (default ``~/.llmx``), in
``sessions/YYYY/MM/DD/rollout-<UTC time>-<id>.jsonl``.

They hold what users typed and what models answered, so the directories are made
readable by their owner only (0700) and the files likewise (0600). An exchange is
appended with one ``write`` (so two processes continuing the same conversation do not
interleave their lines), and only once its answer is complete.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ._jsonrules import compact_json
from .errors import InvalidInputError
from .models import Message, ResponseItem, read_history_jsonl

__all__ = ["HOME_ENV", "Session", "SessionStore", "llmx_home"]

#: The variable that moves the llmx home (``~/.llmx``), e.g. for tests.
HOME_ENV: Final = "LLMX_HOME"
_FILE_NAME = re.compile(r"^rollout-(?P<time>\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d)-(?P<id>[0-9a-f-]{36})\.jsonl$")
_PRIVATE_DIR: Final = 0o700
_PRIVATE_FILE: Final = 0o600


def llmx_home(environ: Mapping[str, str] | None = None) -> Path:
    """``$LLMX_HOME``, else ``~/.llmx``."""
    env = os.environ if environ is None else environ
    home = env.get(HOME_ENV)
    return Path(home).expanduser() if home else Path.home() / ".llmx"


def _timestamp(moment: datetime.datetime) -> str:
    """``2025-01-31T12:00:00.123Z``, as Codex writes them."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _line(kind: str, payload: Mapping[str, Any], moment: datetime.datetime) -> str:
    return compact_json({"timestamp": _timestamp(moment), "type": kind, "payload": payload}) + "\n"


@dataclass
class Session:
    """One conversation's rollout file. Read it with `items()`; `model` and
    `instructions` are what its last exchange used (None when not recorded)."""

    id: str
    path: Path
    model: str | None = None
    instructions: str | None = None
    started: datetime.datetime | None = None
    _lines: list[str] = field(default_factory=list, repr=False)

    @classmethod
    def read(cls, path: Path) -> Session:
        """The session of a rollout file. Raises `OSError`, and `InvalidInputError`
        naming the line for a line that is not a JSON object."""
        session = cls(_id_of(path) or path.stem, path)
        session._add_lines(path.read_text(encoding="utf-8").splitlines())
        return session

    def _add_lines(self, lines: list[str]) -> None:
        for line in lines:
            if not line.strip():
                continue
            self._lines.append(line)
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInputError(f"{self.path} line {len(self._lines)}", f"not valid JSON: {exc}") from None
            if not isinstance(record, dict):
                raise InvalidInputError(f"{self.path} line {len(self._lines)}", "expected a JSON object")
            payload = record.get("payload")
            if record.get("type") in ("session_meta", "turn_context") and isinstance(payload, dict):
                self.model = payload.get("model", self.model)
                self.instructions = payload.get("instructions", self.instructions)
            if record.get("type") == "session_meta" and self.started is None:
                self.started = _parse_timestamp(record.get("timestamp"))

    def items(self) -> list[ResponseItem]:
        """The conversation's items, in order (`read_history_jsonl` of the file)."""
        try:
            return read_history_jsonl(self._lines)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{self.path} {exc.where}", exc.problem) from None

    @property
    def updated(self) -> datetime.datetime:
        """When an exchange was last added (the file's modification time)."""
        return datetime.datetime.fromtimestamp(self.path.stat().st_mtime, datetime.UTC)

    def first_message(self) -> str:
        """The text of the conversation's first user message ("" when there is none)."""
        for item in self.items():
            if isinstance(item, Message) and item.role == "user":
                return item.text
        return ""

    def append(self, items: Sequence[ResponseItem], *, model: str | None, instructions: str | None,
               now: datetime.datetime | None = None) -> None:
        """Add one exchange: its settings and its items, in one write."""
        moment = now or datetime.datetime.now(datetime.UTC)
        text = _line("turn_context", {"cwd": os.getcwd(), "model": model, "instructions": instructions}, moment)
        text += "".join(_line("response_item", item.to_dict(), moment) for item in items)
        _append(self.path, text)
        self._add_lines(text.splitlines())


def _id_of(path: Path) -> str | None:
    match = _FILE_NAME.match(path.name)
    return match["id"] if match else None


def _parse_timestamp(value: object) -> datetime.datetime | None:
    try:
        return datetime.datetime.fromisoformat(str(value))
    except ValueError:
        return None


def _append(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, _PRIVATE_FILE)
    try:
        data = text.encode("utf-8")
        while data:  # one write, unless the system cuts it short
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)


class SessionStore:
    """The rollout files under `root` (``<llmx home>/sessions``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def default(cls, environ: Mapping[str, str] | None = None) -> SessionStore:
        return cls(llmx_home(environ) / "sessions")

    def create(self, *, originator: str, version: str, instructions: str | None,
               now: datetime.datetime | None = None) -> Session:
        """A new conversation: its file, with its ``session_meta`` line."""
        moment = now or datetime.datetime.now(datetime.UTC)
        utc = moment.astimezone(datetime.UTC)
        session_id = str(uuid.uuid4())
        self.root.parent.mkdir(parents=True, exist_ok=True)
        directory = self.root
        for part in (f"{utc:%Y}", f"{utc:%m}", f"{utc:%d}", None):
            try:
                directory.mkdir(mode=_PRIVATE_DIR)
                os.chmod(directory, _PRIVATE_DIR)  # mkdir's mode is cut by the umask
            except FileExistsError:
                pass
            if part is not None:
                directory /= part
        path = directory / f"rollout-{utc:%Y-%m-%dT%H-%M-%S}-{session_id}.jsonl"
        meta = {"id": session_id, "timestamp": _timestamp(moment), "cwd": os.getcwd(), "originator": originator,
                "cli_version": version, "instructions": instructions}
        _append(path, _line("session_meta", meta, moment))
        return Session.read(path)

    def paths(self) -> list[Path]:
        """Every rollout file, the most recently updated first."""
        if not self.root.is_dir():
            return []
        found = [path for path in self.root.glob("*/*/*/rollout-*.jsonl") if _id_of(path)]
        return sorted(found, key=lambda path: (path.stat().st_mtime_ns, path.name), reverse=True)

    def sessions(self) -> Iterator[Session]:
        """The conversations, the most recently updated first."""
        return (Session.read(path) for path in self.paths())

    def latest(self) -> Session | None:
        """The most recently updated conversation, or None."""
        paths = self.paths()
        return Session.read(paths[0]) if paths else None

    def find(self, session_id: str) -> Session:
        """The conversation whose id is, or starts with, `session_id`.
        Raises `LookupError` saying why when there is none, or more than one."""
        wanted = session_id.strip().lower()
        if not wanted:
            raise LookupError("the conversation id is empty")
        ids = {path: _id_of(path) or "" for path in self.paths()}
        matches = [path for path, found in ids.items() if found.startswith(wanted)]
        exact = [path for path in matches if ids[path] == wanted]
        if len(exact) == 1:
            return Session.read(exact[0])
        if not matches:
            raise LookupError(f"no conversation {session_id!r} in {self.root}")
        if len(matches) > 1:
            shown = ", ".join(sorted(ids[path] for path in matches)[:5])
            raise LookupError(f"{session_id!r} is the start of more than one conversation id ({shown}): "
                              "give more of it")
        return Session.read(matches[0])
