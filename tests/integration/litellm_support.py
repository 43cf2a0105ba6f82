"""A real LiteLLM proxy on 127.0.0.1 for the tests that go through one.

`litellm_proxy(api_base, upstream_model)` starts ``<venv>/bin/litellm`` from the virtualenv
``scripts/install-litellm.sh`` makes (its own, so that litellm's many dependencies never
touch the test environment) with a config of one model: ``LITELLM_MODEL_ALIAS`` ->
``openai/<upstream_model>`` at `api_base` (a llama.cpp server, or anything speaking its
protocol), behind ``LITELLM_MASTER_KEY``. It waits (bounded) until ``GET
/health/liveliness`` answers, and kills the proxy's process group when the block ends.

Nothing may leave the machine: left alone, litellm fetches its model price list (and a
few other tables) from the internet while it starts, so every ``LITELLM_LOCAL_*`` switch
of 1.108.7 is set (use the bundled copy), telemetry is off, and the child gets a minimal
environment (no ``DATABASE_URL``, no ``HTTP(S)_PROXY``, no API keys of the caller).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from llmx_sync.local import LocalServerError, _make_preexec, default_cache_dir

LITELLM_VERSION = "1.108.7"  # keep in step with scripts/install-litellm.sh
LITELLM_MASTER_KEY = "sk-llmx-sync-test-master-key"
LITELLM_MODEL_ALIAS = "smollm2-via-litellm"

# Cold start-up is 15-25 s on 2 cores (importing litellm's proxy stack), more while
# another process compiles.
STARTUP_TIMEOUT = 180.0
_STOP_GRACE = 10.0
_LOG_TAIL_CHARS = 4000

# The switches that make litellm 1.108.7 read its bundled tables instead of fetching
# them; LITELLM_MODE=PRODUCTION stops it from loading a stray .env file.
_OFFLINE_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "LITELLM_TELEMETRY_DISABLED": "true",
    "LITELLM_MODE": "PRODUCTION",
}

# Loopback polling must never go through an HTTP(S)_PROXY from the environment.
_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def litellm_venv() -> Path:
    """The virtualenv scripts/install-litellm.sh installs into."""
    return Path(default_cache_dir()) / "litellm-venv"


def litellm_skip_reason() -> str:
    """Why the proxy cannot run here ("" when it can): the install script's own reason
    when it left one."""
    executable = litellm_venv() / "bin" / "litellm"
    if executable.is_file() and os.access(executable, os.X_OK):
        return ""
    reason_file = litellm_venv().with_name("litellm-venv.skip-reason")
    try:
        reason = reason_file.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        reason = ""
    return reason or f"no {executable}: run `bash scripts/install-litellm.sh`"


def _config_yaml(api_base: str, upstream_model: str, model_names: Sequence[str]) -> str:
    # JSON is YAML: json-quoting every value keeps URLs and ids safe from YAML's typing.
    entries = [{
        "model_name": name,
        "litellm_params": {"model": f"openai/{upstream_model}", "api_base": api_base, "api_key": "none"},
    } for name in model_names]
    return json.dumps({"model_list": entries, "general_settings": {"master_key": LITELLM_MASTER_KEY}}, indent=2)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiteLLMProxy:
    """A running proxy: send ``model=alias`` with ``Authorization: Bearer master_key``."""

    base_url: str  # http://127.0.0.1:<port>/v1
    master_key: str
    alias: str
    log_path: Path
    startup_seconds: float

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_tail(self, limit: int = _LOG_TAIL_CHARS) -> str:
        return self.log_text()[-limit:]


def _child_env(workdir: Path) -> dict[str, str]:
    env = {key: os.environ[key] for key in ("PATH", "LANG", "LC_ALL", "TZ") if key in os.environ}
    env.update(_OFFLINE_ENV)
    env["HOME"] = str(workdir)  # nothing of the user's (~/.env, ~/.litellm) is read or written
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the proxy's process group, SIGKILL after a grace period."""
    for sig, wait in ((signal.SIGTERM, _STOP_GRACE), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue


def _wait_ready(proc: subprocess.Popen[bytes], port: int, log_path: Path, timeout: float) -> None:
    url = f"http://127.0.0.1:{port}/health/liveliness"
    deadline = time.monotonic() + timeout
    while True:
        code = proc.poll()
        if code is not None:
            log = log_path.read_text(encoding="utf-8", errors="replace")[-_LOG_TAIL_CHARS:]
            raise LocalServerError(f"the LiteLLM proxy exited with code {code} during start-up. Log tail:\n{log}")
        try:
            with _NO_PROXY_OPENER.open(url, timeout=2.0) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() >= deadline:
            log = log_path.read_text(encoding="utf-8", errors="replace")[-_LOG_TAIL_CHARS:]
            raise LocalServerError(f"the LiteLLM proxy did not answer GET {url} within {timeout:g}s. Log tail:\n{log}")
        time.sleep(0.25)


@contextmanager
def litellm_proxy(api_base: str, upstream_model: str, *, startup_timeout: float = STARTUP_TIMEOUT,
                  extra_args: tuple[str, ...] = (),
                  model_names: Sequence[str] = (LITELLM_MODEL_ALIAS,)) -> Iterator[LiteLLMProxy]:
    """A LiteLLM proxy in front of the OpenAI-compatible server at `api_base` (its
    ``/v1`` URL), serving `upstream_model` under each of `model_names` (LiteLLM's
    ``"*"`` routes every name there). Skips the calling test, with the reason, when the
    proxy is not installed."""
    reason = litellm_skip_reason()
    if reason:
        pytest.skip(reason)
    if not api_base.startswith(("http://127.0.0.1:", "http://localhost:")):
        raise ValueError(f"the proxy may only forward to loopback, not {api_base!r}")
    workdir = Path(tempfile.mkdtemp(prefix="llmx-litellm-"))
    try:
        config = workdir / "config.yaml"
        config.write_text(_config_yaml(api_base, upstream_model, model_names), encoding="utf-8")
        log_path = workdir / "proxy.log"
        port = _free_port()
        cmd = [str(litellm_venv() / "bin" / "litellm"), "--config", str(config),
               "--host", "127.0.0.1", "--port", str(port), *extra_args]
        started = time.monotonic()
        with open(log_path, "wb") as log_file:
            # Its own session, so that teardown reaches every process it may fork; and,
            # as llmx_sync.local does for its servers, SIGTERM when pytest itself dies.
            proc = subprocess.Popen(cmd, cwd=workdir, env=_child_env(workdir), stdin=subprocess.DEVNULL,
                                    stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=_make_preexec(os.getpid()))
        try:
            _wait_ready(proc, port, log_path, startup_timeout)
            yield LiteLLMProxy(base_url=f"http://127.0.0.1:{port}/v1", master_key=LITELLM_MASTER_KEY,
                               alias=model_names[0], log_path=log_path,
                               startup_seconds=time.monotonic() - started)
        finally:
            _stop(proc)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
