"""The original llmx repository's chat-path tests, transcribed to ``data/llmx-repo-tests.json``."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

REFERENCE_JSON = Path(__file__).resolve().parent / "data" / "llmx-repo-tests.json"


@cache
def _reference() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(REFERENCE_JSON.read_text(encoding="utf-8"))
    return data


def reference_cases(section: str) -> list[dict[str, Any]]:
    """Every case of one section, e.g. ``reference_cases("sse_cases")``."""
    cases: list[dict[str, Any]] = _reference()[section]
    return cases


def reference_case(section: str, case_id: str) -> dict[str, Any]:
    """One case, e.g. ``reference_case("payload_cases", "P03")``."""
    for case in reference_cases(section):
        if case["id"] == case_id:
            return case
    raise KeyError(f"no case {case_id} in {section}")
