"""The original project's tests, transcribed (shared/reference/llmx-repo-tests.json).

`shared/` lives beside the repository (``../shared`` from its root, in CI as well);
set LLMX_SHARED_DIR to read it from elsewhere.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any


def shared_dir() -> Path:
    override = os.environ.get("LLMX_SHARED_DIR")
    return Path(override) if override else Path(__file__).resolve().parents[2] / "shared"


@cache
def _reference() -> dict[str, Any]:
    path = shared_dir() / "reference" / "llmx-repo-tests.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: put shared/ beside the repository or set LLMX_SHARED_DIR")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def reference_case(section: str, case_id: str) -> dict[str, Any]:
    """One case, e.g. ``reference_case("payload_cases", "P03")``."""
    for case in _reference()[section]:
        if case["id"] == case_id:
            result: dict[str, Any] = case
            return result
    raise KeyError(f"no case {case_id} in {section}")
