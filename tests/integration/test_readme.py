"""Every snippet of README.md, run as written against the servers a newcomer has: the
bundled model served by llama-cpp-python's server and by llama.cpp's llama-server, each
directly and through a LiteLLM proxy (four set-ups).

How the snippets find the server, unchanged: they make ``llmx.Client()`` (or
``Client()``), which reads ``$LLMX_BASE_URL`` and ``$LLMX_API_KEY`` as the README says
under "Providers"; the test sets those as a user of each set-up would (the proxy's URL and
master key, or the server's URL). The model names the snippets use (OpenAI's, and the
default model of the ``litellm`` built-in) are ignored by the llama.cpp servers, which
serve their one model; the test's LiteLLM config routes every name (``"*"``) to the
server behind it, as a proxy in front of a local model would be set up.

The python blocks run one after the other in one interpreter (readme_runner.py), as a
reader pasting them in order would; each block is a test of its own here, failing with its
traceback. A block marked ``<!-- readme-test: notebook -->`` runs in a Jupyter kernel; a
block marked ``<!-- readme-test: skip REASON -->`` is skipped with that reason (see
tests/readme_blocks.py). Each line of the other shell blocks that runs ``llmx-sync`` runs
in bash, on a terminal (``run_in_a_terminal``), in a directory that has the repository's
``examples/`` (the files the lines name), as from the repository's root.

The set-ups bound answers as a user of the bundled 135M model would, with
``$LLMX_MAX_TOKENS=512`` (the ``local`` provider's own bound; the README's Providers
section): the ``litellm`` built-in that ``$LLMX_BASE_URL`` selects sends 8192, and this
model sometimes writes on and on (one answer ran over 15 minutes on the loaded 2-core
machine, and ``llmx-sync chat -c`` then sent an 8 202-token request past a context of
8192). The servers run with a context of 16 384 tokens (one slot for llama-server), room
for any answer sent back; the python snippets that send an answer back bound it
themselves (``max_tokens=400``). Skipped, with the reason, where a server or the proxy is
not installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from litellm_support import litellm_proxy, litellm_skip_reason
from local_support import LLAMA_CPP_SKIP, LLAMA_SERVER_SKIP
from readme_blocks import Block, readme_blocks

from llmx_sync.local import LlamaServerBinary, LocalServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(3600)]

REPO = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("readme_runner.py")
# The environment of a newcomer's shell: nothing that would send the snippets elsewhere.
CLEARED = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "LLMX_MODEL", "LLMX_OSS_BASE_URL", "LLMX_OSS_PORT",
           "LLMX_API_KEY", "LLMX_BASE_URL", "NO_COLOR")
CONTEXT = 2 * 8192  # room for a whole answer sent back, and its reply
# What the set-ups' users bound answers to ($LLMX_MAX_TOKENS): the local provider's own bound.
MAX_TOKENS = 512
# llama-server logs this when a request's tool_choice is the forcing object (it then
# answers as with "auto"): the client must have sent "required" instead.
OBJECT_IGNORED = "Wrong type supplied for parameter 'tool_choice'"

BLOCKS = readme_blocks()
PYTHON_BLOCKS = [block for block in BLOCKS if block.lang == "python" and block.mark != "notebook"]
NOTEBOOK_BLOCKS = [block for block in BLOCKS if block.mark == "notebook"]
CLI_LINES = [(block, line) for block in BLOCKS for line in block.cli_lines()]


@dataclass
class SetUp:
    """A running set-up: the environment its snippets see, the directory they run in (the
    files they write land there, not in the repository), and its llama.cpp server."""

    name: str
    env: dict[str, str]
    server: LocalServer
    workdir: Path


SETUPS = ["llama-cpp-python", "llama-server", "litellm+llama-cpp-python", "litellm+llama-server"]


def _skip_reason(name: str) -> str:
    reason = LLAMA_SERVER_SKIP if name.endswith("llama-server") else LLAMA_CPP_SKIP
    if not reason and name.startswith("litellm"):
        reason = litellm_skip_reason()
    return reason


def _environment(base_url: str, key: str, home: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in CLEARED}
    env.update(LLMX_BASE_URL=base_url, LLMX_API_KEY=key, LLMX_LOG="info", PYTHONUNBUFFERED="1",
               LLMX_MAX_TOKENS=str(MAX_TOKENS),  # as a user of the small model sets it (README, Providers)
               LLMX_HOME=str(home),  # the CLI's saved conversations: the set-up's own
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return env


@pytest.fixture(scope="module", params=SETUPS)
def setup(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SetUp]:
    name: str = request.param
    reason = _skip_reason(name)
    if reason:
        pytest.skip(f"{name}: {reason}")
    workdir = tmp_path_factory.mktemp("checkout")
    (workdir / "examples").symlink_to(REPO / "examples")
    home = tmp_path_factory.mktemp("llmx-home")
    server = (LlamaServerBinary(extra_args=["--ctx-size", str(CONTEXT), "--parallel", "1"])
              if name.endswith("llama-server") else LocalServer(extra_args=["--n_ctx", str(CONTEXT)]))
    with server:
        if name.startswith("litellm"):
            with litellm_proxy(server.base_url, str(server.model_id), model_names=("*",)) as proxy:
                yield SetUp(name, _environment(proxy.base_url, proxy.master_key, home), server, workdir)
        else:
            # llama.cpp's servers need no key; the README's users of a proxy set one.
            yield SetUp(name, _environment(server.base_url, "sk-not-checked", home), server, workdir)


@dataclass
class PythonSession:
    """What running every python block of the README in one interpreter gave."""

    results: dict[str, dict[str, Any]]
    stderr: str
    server_log: str


_sessions: dict[str, PythonSession] = {}


def python_session(setup: SetUp, tmp_path_factory: pytest.TempPathFactory) -> PythonSession:
    """The python blocks, run once per set-up (the first test of the set-up runs them)."""
    if setup.name not in _sessions:
        work = tmp_path_factory.mktemp("readme")
        blocks = [{"name": b.name, "code": b.code, "line": b.line} for b in PYTHON_BLOCKS if b.mark is None]
        (work / "blocks.json").write_text(json.dumps(blocks), encoding="utf-8")
        results_path = work / "results.jsonl"
        try:
            proc = subprocess.run([sys.executable, str(RUNNER), str(work / "blocks.json"), str(results_path)],
                                  cwd=setup.workdir, env=setup.env, stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, timeout=3000)
            stderr = proc.stderr
        except subprocess.TimeoutExpired as exc:
            stderr = f"the README's python blocks took over {exc.timeout} s; stderr:\n{exc.stderr!r}"
        results = {}
        if results_path.exists():
            for line in results_path.read_text(encoding="utf-8").splitlines():
                result = json.loads(line)
                results[result["name"]] = result
        _sessions[setup.name] = PythonSession(results, stderr, setup.server.log_tail(1 << 20))
    return _sessions[setup.name]


def _block_id(block: Block) -> str:
    return f"{block.name}-{block.section}"


# --- every block ---------------------------------------------------------------------------------


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=_block_id)
def test_python_block_runs_as_written(setup: SetUp, block: Block,
                                      tmp_path_factory: pytest.TempPathFactory) -> None:
    if block.mark == "skip":
        pytest.skip(f"README line {block.line}: {block.reason}")
    session = python_session(setup, tmp_path_factory)
    result = session.results.get(block.name)
    assert result is not None, f"the block did not finish (stderr of the session:\n{session.stderr[-4000:]})"
    assert result["ok"], f"{setup.name}: README line {block.line} failed:\n{result['error']}"


@pytest.mark.parametrize("block", NOTEBOOK_BLOCKS, ids=_block_id)
def test_notebook_block_runs_in_a_kernel(setup: SetUp, block: Block, tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(block.code)])
    with _environ(setup.env):  # the kernel is a child process: it inherits the environment
        nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(setup.workdir)}}).execute()
    outputs = notebook.cells[0].outputs
    errors = [output for output in outputs if output.get("output_type") == "error"]
    assert not errors, errors
    shown = [output["data"]["text/markdown"] for output in outputs if "text/markdown" in output.get("data", {})]
    assert shown and shown[-1].strip(), outputs  # the answer, drawn as Markdown


@pytest.mark.parametrize(("block", "line"), CLI_LINES, ids=[f"{b.name}-{line[:40]}" for b, line in CLI_LINES])
def test_cli_line_runs_as_written(setup: SetUp, block: Block, line: str) -> None:
    if block.mark == "skip":
        pytest.skip(f"README line {block.line}: {block.reason}")
    if shutil.which("llmx-sync", path=setup.env.get("PATH")) is None:
        pytest.skip("the llmx-sync command is not installed here (pip install -e .)")
    proc = run_in_a_terminal(line, setup)
    assert proc.returncode == 0, f"{setup.name}: `{line}` exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    assert proc.stdout.strip() or proc.stderr.strip(), "nothing was printed"
    assert "Traceback" not in proc.stderr, proc.stderr


def run_in_a_terminal(line: str, setup: SetUp) -> subprocess.CompletedProcess[str]:
    """`line` as a reader runs it in a shell: stdin is a terminal, on which they type
    ``exit`` (what the interactive chat waits for; no other line reads a terminal). It runs
    in the set-up's working directory, which has the repository's ``examples/`` (the
    files the lines name) and takes what they write (``answers.jsonl``), and with the
    set-up's ``$LLMX_HOME`` (the conversations ``-c`` and ``logs`` find)."""
    controller, terminal = os.openpty()
    try:
        os.write(controller, b"exit\n")
        return subprocess.run(["bash", "-c", line], cwd=setup.workdir, env=setup.env, stdin=terminal,
                              capture_output=True, text=True, timeout=900, start_new_session=True)
    finally:
        os.close(terminal)
        os.close(controller)


@contextlib.contextmanager
def _environ(env: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


# --- what the snippets must do on every set-up ----------------------------------------------


def _section_results(session: PythonSession, section: str) -> list[dict[str, Any]]:
    blocks = [block for block in PYTHON_BLOCKS if block.section == section]
    assert blocks, f"no python block under the README heading {section!r}"
    return [session.results[block.name] for block in blocks if block.name in session.results]


def test_the_forced_tool_of_the_tools_snippet(setup: SetUp, tmp_path_factory: pytest.TempPathFactory) -> None:
    session = python_session(setup, tmp_path_factory)
    (result,) = _section_results(session, "A conversation with tools")
    assert result["ok"], result["error"]
    first_turn = result["values"]["result"]
    if isinstance(setup.server, LlamaServerBinary):
        # llama-server never got the forcing object (which it ignores): "required", with
        # get_weather alone. SmolLM2's own chat template has no tool support, so the
        # model answers in words all the same (see docs/compatibility.md).
        assert OBJECT_IGNORED not in session.server_log, session.server_log[-3000:]
        assert "tool_choice" not in session.stderr or "required" in session.stderr
    else:
        # llama-cpp-python forces the named tool (a grammar from its parameters).
        assert first_turn["tool_calls"] == ["get_weather"], first_turn
        assert first_turn["finish_reason"] == "tool_calls", first_turn


def test_the_structured_output_snippets_find_a_mode(setup: SetUp,
                                                    tmp_path_factory: pytest.TempPathFactory) -> None:
    session = python_session(setup, tmp_path_factory)
    results = _section_results(session, "Structured output")
    assert len(results) >= 2 and all(result["ok"] for result in results), results
    dataclass_block, pydantic_block = results[0], results[1]
    assert dataclass_block["values"]["city"]["type"] == "City", dataclass_block
    assert pydantic_block["values"]["country"]["type"] == "Country", pydantic_block
    modes = {dataclass_block["values"]["stream"]["output_mode"], pydantic_block["values"]["answer"]["output_mode"]}
    if isinstance(setup.server, LlamaServerBinary):
        assert modes == {"json_schema"}, results  # llama-server takes the first mode
    else:
        # llama-cpp-python refuses json_schema (a 500 naming response_format): the client
        # sent the request once more as json_object, then remembered it.
        assert modes == {"json_object"}, results
        assert session.stderr.count("refuses structured output in the 'json_schema' mode") == 1, session.stderr
