"""The response bodies of real servers in ``data/recorded/`` (see its README)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

RECORDED_DIR = Path(__file__).resolve().parent / "data" / "recorded"


@cache
def expected() -> dict[str, dict[str, Any]]:
    """What each source-derived body parses to, by file name."""
    data: dict[str, dict[str, Any]] = json.loads((RECORDED_DIR / "expected.json").read_text(encoding="utf-8"))
    return data


def recorded_bodies() -> list[Path]:
    """Every body, recorded here or source-derived."""
    return sorted(RECORDED_DIR.glob("*.sse"))


def content_type(path: Path) -> str:
    content: str = expected().get(path.name, {}).get("content_type", "text/event-stream")
    return content
