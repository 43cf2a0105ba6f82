"""`import llmx_sync` leaves its heavy dependencies for their first use (the figures are
in benchmarks/import_time.py)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import llmx_sync

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("requests", "urllib3", "ssl", "jsonschema", "docstring_parser", "pydantic", "IPython")


def modules_after(code: str) -> set[str]:
    """The modules among `HEAVY` (and the SDK's own) loaded after running `code` in a fresh interpreter."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    probe = f"{code}\nimport sys, json; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60,
                          check=True)
    return set(json.loads(done.stdout))


def test_import_llmx_sync_loads_no_http_stack_and_no_schema_validator() -> None:
    loaded = modules_after("import llmx_sync")
    assert not loaded & set(HEAVY)
    assert not {"llmx_sync.client", "llmx_sync.transport", "llmx_sync.cli", "llmx_sync.testing"} & loaded


def test_each_dependency_comes_with_its_first_use() -> None:
    assert {"requests", "llmx_sync.client"} <= modules_after("import llmx_sync; llmx_sync.Client")
    assert "requests" in modules_after("from llmx_sync import RunStream")
    assert "jsonschema" in modules_after(
        "import llmx_sync as llmx; llmx.build_chat_request(llmx.Prompt.from_text('hi'), "
        "llmx.RequestOptions(model='m', response_format={'type': 'object'}))")
    assert "docstring_parser" in modules_after("import llmx_sync\ndef f(x: int) -> int:\n    return x\n"
                                               "llmx_sync.tool(f)")


def test_the_names_imported_on_first_use_are_public_and_typed() -> None:
    tree = ast.parse((ROOT / "llmx_sync" / "__init__.py").read_text())
    typed = {alias.name: stmt.module.removeprefix(".") for node in ast.walk(tree) if isinstance(node, ast.If)
             for stmt in node.body if isinstance(stmt, ast.ImportFrom) and stmt.module for alias in stmt.names}
    assert typed == llmx_sync._HTTP_NAMES  # the TYPE_CHECKING imports name the same modules
    assert set(typed) <= set(llmx_sync.__all__) and set(typed) <= set(dir(llmx_sync))
    for name, module in typed.items():
        assert getattr(llmx_sync, name).__module__ == f"llmx_sync.{module}"
    try:
        llmx_sync.NoSuchName  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchName" in str(exc)
    else:
        raise AssertionError("an unknown name was found")
