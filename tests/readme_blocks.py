"""The fenced code blocks of README.md, for the tests that run them.

Every ```python block and every line of a ```bash block that runs ``llmx-sync`` is a
snippet a reader may paste as it is. A block that cannot run against a local model server says so
in the README itself, on the line just before its opening fence, in an HTML comment (which
GitHub does not show):

    <!-- readme-test: skip installs packages and compiles llama.cpp (CI runs it as .ci/run) -->
    <!-- readme-test: notebook -->

``skip`` is followed by the reason, which the test prints; ``notebook`` runs the block in a
Jupyter kernel instead of a plain interpreter (it draws into a notebook). Any other block
is run, so a block added without a mark is tested too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

README = Path(__file__).resolve().parents[1] / "README.md"

_FENCE = re.compile(r"^```\s*(?P<lang>[\w+-]*)\s*$")
_MARK = re.compile(r"^<!--\s*readme-test:\s*(?P<kind>[\w-]+)\s*(?P<reason>.*?)\s*-->$")
_HEADING = re.compile(r"^#{1,6}\s+(?P<title>.+?)\s*$")
MARKS = ("skip", "notebook")
SHELL = ("bash", "sh", "shell", "console")
# A command line that runs the CLI: `llmx-sync …`, or `… | llmx-sync …`.
_RUNS_CLI = re.compile(r"^(?:[^#]*\|\s*)?llmx-sync(?:\s|$)")


@dataclass(frozen=True)
class Block:
    """One fenced block: its language, code, where it is, and its mark (None: run it)."""

    lang: str
    code: str
    line: int  # of the opening fence, 1-based
    section: str  # the heading it is under
    mark: Literal["skip", "notebook"] | None = None
    reason: str = ""

    @property
    def name(self) -> str:
        return f"{self.lang}@{self.line}"

    def cli_lines(self) -> list[str]:
        """The lines of a shell block that run ``llmx-sync`` (first, or after a pipe)."""
        if self.lang not in SHELL:
            return []
        return [line.strip() for line in self.code.splitlines() if _RUNS_CLI.match(line.strip())]


def readme_blocks(text: str | None = None) -> list[Block]:
    """The fenced blocks of the README (or of `text`), in order. Raises ValueError for a
    mark that is not one of `MARKS`, a ``skip`` without its reason, or an unclosed fence."""
    lines = (README.read_text(encoding="utf-8") if text is None else text).splitlines()
    blocks: list[Block] = []
    section = ""
    index = 0
    while index < len(lines):
        line = lines[index]
        heading = _HEADING.match(line)
        if heading:
            section = heading["title"]
        fence = _FENCE.match(line)
        if fence is None:
            index += 1
            continue
        start = index
        end = next((i for i in range(start + 1, len(lines)) if lines[i].strip() == "```"), None)
        if end is None:
            raise ValueError(f"README line {start + 1}: the fence is never closed")
        mark, reason = _mark_before(lines, start)
        blocks.append(Block(fence["lang"], "\n".join(lines[start + 1:end]) + "\n", start + 1, section, mark, reason))
        index = end + 1
    return blocks


def _mark_before(lines: list[str], fence: int) -> tuple[Literal["skip", "notebook"] | None, str]:
    previous = lines[fence - 1].strip() if fence > 0 else ""
    found = _MARK.match(previous)
    if found is None:
        if "readme-test" in previous:
            raise ValueError(f"README line {fence}: not a readme-test mark: {previous!r}")
        return None, ""
    kind, reason = found["kind"], found["reason"]
    if kind == "skip":
        if not reason:
            raise ValueError(f"README line {fence}: `readme-test: skip` needs its reason")
        return "skip", reason
    if kind == "notebook":
        return "notebook", reason
    raise ValueError(f"README line {fence}: unknown readme-test mark {kind!r} (known: {', '.join(MARKS)})")
