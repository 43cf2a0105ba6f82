"""The CLI against a real model: ``python -m llmx_sync chat`` with the built-in
`local` provider (llama.cpp and the bundled SmolLM2-135M).

Skipped, saying why, when the ``[local]`` extra is not installed (the CLI then
exits 1 naming the pip command, which is checked too).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
# Variables that would send the default client elsewhere than the local model.
ENV_VARS = ("LLMX_MODEL", "LLMX_API_KEY", "LLMX_BASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "NO_COLOR")


def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "llmx_sync", "chat", *argv], cwd=REPO, env=env,
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
    )
    if proc.returncode == 1 and "llmx_sync[local]" in proc.stderr:
        pytest.skip(f"the local model cannot run here: {proc.stderr.strip()}")
    return proc


def test_local_provider_streams_a_real_answer() -> None:
    proc = run_cli("Say hello in one short sentence.", "--provider", "local",
                   "--max-tokens", "24", "--temperature", "0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip(), proc.stderr
    assert "Traceback" not in proc.stderr
    # llama-cpp-python's server never reports usage while streaming: no numbers, this line.
    assert "usage: not reported by the server" in proc.stderr.splitlines(), proc.stderr
    assert "finish reason: " in proc.stderr and "time to first token: " in proc.stderr
    # The server's start-up is shown while it happens, and timed apart from the answer.
    lines = proc.stderr.splitlines()
    assert lines[0] == "starting the local model…", proc.stderr
    assert lines[1].startswith("the local model started in "), proc.stderr
    assert "local model start-up: " in lines[-1] and lines[-1].index("start-up") < lines[-1].index("first token")


def test_default_provider_json_events() -> None:
    # No provider flags and none of the environment variables: the SDK's default
    # (the local model, unless a LiteLLM proxy answers on localhost:4000).
    proc = run_cli("What is 2 + 2?", "--max-tokens", "16", "--json", "--quiet")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events and events[-1]["type"] == "completed"
    assert events[-1]["finish_reason"] in ("stop", "length")
    assert "usage:" not in proc.stderr and "Traceback" not in proc.stderr  # --quiet
