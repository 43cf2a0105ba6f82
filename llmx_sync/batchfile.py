"""A batch's output file: one JSON line per finished item, appended and flushed as it
finishes, read back to resume a batch that was stopped or killed.

A line is ``{"index", "input_hash", "attempts", "latency", ...}`` and either the
answer (``"text"``, ``"reasoning"`` and ``"refusal"`` when not empty, ``"parsed"``,
``"finish_reason"``, ``"response_id"``, ``"usage"``, ``"items"``: what the answer added
to the conversation, every turn of a tool loop) or ``"error"`` (``{"type", "message", "status", "code"}``). The last line
for an index wins: a failed item is written, then written again when a later run
retries it.

Torn lines (a process killed in the middle of a write) are the only damage an
append-only file can take from a killed process: the tail after the last newline is
cut off before appending, and any line that is not a whole JSON object is skipped with
a warning, so its item is done again. Each line is flushed to the OS when written,
which is enough to survive the process being killed; the file is ``fsync``ed when the
batch ends, not per line (see docs/behaviour.md#batch-output).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Final

from ._jsonrules import compact_json, json_type_name
from .aggregate import ChatResult
from .errors import InvalidInputError, UnexpectedStatusError
from .events import TokenUsage
from .models import FunctionCall, FunctionCallOutput, ResponseItem, item_from_dict
from .structured import OutputSchema

__all__ = ["BatchOutput", "error_line", "input_hash", "result_from_line", "result_line"]

logger = logging.getLogger("llmx_sync")

_HASH_CHARS: Final = 16


def input_hash(value: Any) -> str:
    """A short hash of a batch input (a prompt, or a prompt with its options), the same
    in every run and process: SHA-256 of its canonical JSON."""
    text = json.dumps(_canonical(value, "input"), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_CHARS]


def _canonical(value: Any, where: str) -> Any:
    """`value` as plain JSON data: items and tools by their protocol dicts, dataclasses
    by their fields, classes (a `response_format`) by their qualified names."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Mapping):
        return {str(key): _canonical(item, f"{where}[{key!r}]") for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(item, f"{where}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return _canonical(to_dict(), where)
    if dataclasses.is_dataclass(value):
        return {f.name: _canonical(getattr(value, f.name), f"{where}.{f.name}") for f in dataclasses.fields(value)}
    raise InvalidInputError(where, f"a {json_type_name(value)} cannot be told apart from another run's input "
                            "(needed to resume from the output file): use strings, lists, dicts, items or a Prompt")


def json_value(value: Any) -> Any:
    """A parsed structured output as JSON data (dataclasses and pydantic models by
    their fields)."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def result_line(index: int, key: str, result: ChatResult, *, added: Sequence[ResponseItem], attempts: int,
                latency: float) -> dict[str, Any]:
    """The line of an answered item; `added` is what it added to the conversation."""
    line: dict[str, Any] = {"index": index, "input_hash": key, "text": result.text}
    if result.reasoning:
        line["reasoning"] = result.reasoning
    if result.refusal:
        line["refusal"] = result.refusal
    if result.parsed is not None:
        line["parsed"] = json_value(result.parsed)
    line.update(finish_reason=result.finish_reason, response_id=result.response_id,
                usage=result.token_usage.to_dict() if result.token_usage else None,
                items=[item.to_dict() for item in added], attempts=attempts, latency=round(latency, 6))
    return line


def error_line(index: int, key: str, error: BaseException, *, attempts: int, latency: float) -> dict[str, Any]:
    """The line of a failed item: the error's class, text, and status and code when it has them."""
    described: dict[str, Any] = {"type": type(error).__name__, "message": str(error)}
    if isinstance(error, UnexpectedStatusError):
        described.update(status=error.status, code=error.code)
    return {"index": index, "input_hash": key, "error": described, "attempts": attempts,
            "latency": round(latency, 6)}


def result_from_line(line: Mapping[str, Any], input_items: Sequence[ResponseItem],
                     schema: OutputSchema | None) -> ChatResult:
    """The `ChatResult` an answered line records (its `rate_limits` are not kept).
    `items` are the last turn's (after the last tool output), `history` the input
    and everything added; `parsed` is checked against `schema` again."""
    added = [item_from_dict(item) for item in line.get("items") or []]
    last_output = max((i for i, item in enumerate(added) if isinstance(item, FunctionCallOutput)), default=-1)
    items = added[last_output + 1:]
    usage = line.get("usage")
    parsed = line.get("parsed")
    return ChatResult(
        text=str(line.get("text") or ""),
        reasoning=str(line.get("reasoning") or ""),
        tool_calls=[item for item in items if isinstance(item, FunctionCall)],
        items=items,
        token_usage=TokenUsage(**usage) if isinstance(usage, dict) else None,
        finish_reason=line.get("finish_reason"),
        response_id=str(line.get("response_id") or ""),
        rate_limits=None,
        history=[*input_items, *added],
        parsed=None if parsed is None or schema is None else schema.parse(compact_json(parsed)),
        refusal=str(line.get("refusal") or ""),
    )


class BatchOutput:
    """The output file of one batch, open for appending (thread-safe `write`).

    `finished` maps each index to its last line read from the file (answered or
    failed); `skipped_lines` counts the lines that were not whole JSON objects.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.finished: dict[int, dict[str, Any]] = {}
        self.skipped_lines = 0
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = None
        self._open()

    def _open(self) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        except OSError as exc:
            raise InvalidInputError("output", f"cannot read {str(self.path)!r}: {exc.strerror or exc}") from None
        whole = data.rfind(b"\n") + 1  # a tail without its newline is a torn last write
        for number, raw in enumerate(data[:whole].splitlines(), 1):
            line = self._parse(raw)
            if line is None:
                if raw.strip():
                    self.skipped_lines += 1
                    logger.warning("%s, line %d: not a whole result line; its item will be done again",
                                   self.path, number)
                continue
            self.finished[line["index"]] = line
        try:
            self._file = open(self.path, "ab")  # noqa: SIM115 - closed by close()
            if whole < len(data):
                logger.warning("%s: the last line was cut off (a killed run?); its item will be done again", self.path)
                self._file.truncate(whole)
        except OSError as exc:
            raise InvalidInputError("output", f"cannot write {str(self.path)!r}: {exc.strerror or exc}") from None

    @staticmethod
    def _parse(raw: bytes) -> dict[str, Any] | None:
        try:
            line = json.loads(raw)
        except ValueError:
            return None
        if (not isinstance(line, dict) or isinstance(line.get("index"), bool) or not isinstance(line.get("index"), int)
                or not isinstance(line.get("input_hash"), str)):
            return None
        return line

    def done(self, index: int, key: str) -> dict[str, Any] | None:
        """The answered line of item `index` when its input is still `key`; None when it
        must be done (never finished, failed, or its input changed)."""
        line = self.finished.get(index)
        if line is None or line["input_hash"] != key or "error" in line:
            return None
        return line

    def write(self, line: Mapping[str, Any]) -> bool:
        """Append one line and flush it to the OS (a killed process loses nothing
        written); False, and nothing written, once closed (an item that finished after
        the batch was stopped)."""
        data = (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        with self._lock:
            if self._file is None:
                return False
            self._file.write(data)
            self._file.flush()
            return True

    def close(self) -> None:
        """Flush, fsync and close. Idempotent."""
        with self._lock:
            file, self._file = self._file, None
        if file is not None:
            try:
                file.flush()
                os.fsync(file.fileno())
            finally:
                file.close()
