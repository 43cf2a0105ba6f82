"""Runs README python blocks one after the other in one namespace, as a reader pasting them
into one interpreter would, and writes one JSON line per block to a results file:

    {"name": "python@33", "ok": true, "seconds": 1.2, "output": "...", "error": null,
     "values": {"result": {"type": "ChatResult", "tool_calls": ["get_weather"], ...}, ...}}

`values` describes the names the block bound or rebound (their type, and for the SDK's
results what they hold), so that the test can check what a snippet produced without the
snippet printing it. A block that fails does not stop the others.

Usage: python readme_runner.py BLOCKS.json RESULTS.jsonl
(BLOCKS.json: a list of {"name", "code", "line"}.)
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
import traceback
from typing import Any


def describe(value: Any) -> dict[str, Any]:
    """What the test may want to know of a value a block made."""
    from llmx_sync import ChatResult
    from llmx_sync.response import ResponseStream

    kind = type(value).__name__
    if isinstance(value, ChatResult):
        return {"type": kind, "tool_calls": [call.name for call in value.tool_calls], "text": value.text[:300],
                "finish_reason": value.finish_reason, "output_mode": value.output_mode,
                "parsed": type(value.parsed).__name__}
    if isinstance(value, ResponseStream):
        output = value.structured_output
        return {"type": kind, "output_mode": None if output is None else output.mode}
    return {"type": kind}


def main(blocks_path: str, results_path: str) -> None:
    with open(blocks_path, encoding="utf-8") as f:
        blocks = json.load(f)
    namespace: dict[str, Any] = {"__name__": "__main__"}
    with open(results_path, "a", encoding="utf-8") as results:
        for block in blocks:
            before = dict(namespace)
            output = io.StringIO()
            started = time.monotonic()
            error = None
            try:
                code = compile(block["code"], f"README.md (block at line {block['line']})", "exec")
                with contextlib.redirect_stdout(output):
                    exec(code, namespace)
            except BaseException:  # noqa: BLE001 - reported, and the next block runs
                error = traceback.format_exc()
            changed = {name: describe(value) for name, value in namespace.items()
                       if not name.startswith("__") and (name not in before or before[name] is not value)}
            results.write(json.dumps({"name": block["name"], "ok": error is None, "error": error,
                                      "seconds": round(time.monotonic() - started, 2),
                                      "output": output.getvalue()[-2000:], "values": changed}) + "\n")
            results.flush()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
