"""Issue #11, safe in production web apps: one test (or a few) per failure the issue
measured, against loopback servers.

1. fork: answers never cross between a parent and a child sharing one `Client`;
2. redirects: never followed, nothing goes to the other host;
3. a huge SSE line, data lines without an end, a huge JSON body: `StreamError`, memory bounded;
4. a paused consumer: the server cannot get far ahead, memory bounded, nothing lost;
5. truncation: a body that ends cleanly before the answer did is an error, for the browser too;
6. keep-alive comments keep a stream alive past its idle timeout;
7. the total deadline: during retries, a header stall, a trickle;
8. a server that drops every request gets exactly ``retries + 1`` of them;
9. secrets: in no repr, message, traceback or log record;
10. TLS and proxies: ``Client(session=...)`` and ``SSL_CERT_FILE``;
11. the pool: 200 concurrent streams without "Connection pool is full".

Memory is measured in a fresh interpreter that runs the client alone (`start_client`):
its peak RSS (``VmHWM``, reset to the current RSS once the client is warm) is then the
client's, not pytest's, nor the in-process server's, and memory freed by earlier
tests cannot hide a growth.
"""

from __future__ import annotations

import base64
import gc
import json
import logging
import os
import select
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import certifi
import pytest
import requests
import trustme
from flask import Flask
from llm_server import (
    Disconnect,
    LLMServer,
    Pause,
    RecordedRequest,
    Reply,
    chat_chunk,
    error_reply,
    sse_comment,
    sse_event,
    text_stream_body,
)
from sockets import open_sockets_to, wait_for
from streaming_support import RELEASE_TIMEOUT, reader_threads, released

import llmx_sync
from llmx_sync.client import Client
from llmx_sync.errors import (
    ConnectionFailedError,
    DeadlineExceededError,
    LlmxError,
    UnexpectedStatusError,
)
from llmx_sync.events import OutputItemAdded, OutputTextDelta
from llmx_sync.providers import Provider
from llmx_sync.response import ResponseStream
from llmx_sync.sse import DEFAULT_MAX_EVENT_BYTES
from llmx_sync.web import flask_sse_response

MiB = 1 << 20  # sizes of what is sent
MB = 10**6  # the issue's bounds


@pytest.fixture(autouse=True)
def no_reader_left() -> Iterator[None]:
    yield
    assert wait_for(lambda: not reader_threads(), RELEASE_TIMEOUT), reader_threads()


def echo(request: RecordedRequest) -> Reply:
    """An answer of the prompt's own: ``<prompt>`` then `` <prompt>!``, a pause between."""
    prompt = request.json()["messages"][-1]["content"]
    return Reply(body=[sse_event(chat_chunk(prompt, role="assistant")), Pause(0.01),
                       *text_stream_body([f" {prompt}!"])])


def expected_echo(prompt: str) -> str:
    return f"{prompt} {prompt}!"


# --- 1. fork ---------------------------------------------------------------------------------


def fork_child(work: Callable[[], Any]) -> tuple[int, int]:
    """Run `work` in a forked child; returns (pid, the read end of a pipe that gets
    ``{"ok": result}`` or ``{"error": text}`` as JSON). The child never returns into
    pytest: whatever happens it ends with ``os._exit``."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            try:
                report = {"ok": work()}
            except BaseException as exc:  # reported to the parent
                report = {"error": f"{type(exc).__name__}: {exc}"}
            data = json.dumps(report).encode()
            while data:
                data = data[os.write(write_end, data):]
        finally:
            os._exit(0)
    os.close(write_end)
    return pid, read_end


def child_report(pid: int, read_end: int, timeout: float = 10.0) -> dict[str, Any]:
    """What the child wrote, once it exited; a child still running after `timeout` is killed."""
    deadline = time.monotonic() + timeout
    data = b""
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        while (left := deadline - time.monotonic()) > 0 and select.select([pipe], [], [], left)[0]:
            piece = pipe.read(65536)
            if not piece:  # the child closed its end: it exited
                break
            data += piece
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return {"error": f"the child did not end within {timeout} s"}
        time.sleep(0.01)
    return dict(json.loads(data)) if data else {"error": "the child reported nothing"}


def test_fork_with_a_warm_pool_never_crosses_answers(llm_server: LLMServer) -> None:
    # gunicorn --preload: the app makes a request at import (a health check), then the
    # workers are forked, and parent and child stream at once through the inherited Client.
    llm_server.handler = echo
    trials = 30
    outcomes: list[str] = []
    with Client(base_url=llm_server.url) as client:
        assert client.stream("warm-up", model="m").collect().text == expected_echo("warm-up")
        for trial in range(trials):
            # The pool holds a live connection (the warm-up's, then the last parent stream's).
            assert wait_for(lambda: not reader_threads() and open_sockets_to(llm_server.port) == 1)
            pid, pipe = fork_child(lambda trial=trial: client.stream(f"child-{trial}", model="m").collect().text)
            try:
                parent = client.stream(f"parent-{trial}", model="m").collect().text
                outcomes.append("ok" if parent == expected_echo(f"parent-{trial}") else f"parent got {parent!r}")
            except LlmxError as exc:
                outcomes.append(f"parent: {exc!r}")
            finally:
                child = child_report(pid, pipe)
            expected = expected_echo(f"child-{trial}")
            outcomes.append("ok" if child == {"ok": expected} else f"child: {child}")
    assert [o for o in outcomes if o != "ok"] == []
    assert len(outcomes) == 2 * trials
    # Not one request of a child went on a connection of the parent's.
    by_process: dict[str, set[int]] = {"parent": set(), "child": set()}
    for request in llm_server.requests:
        prompt = request.json()["messages"][-1]["content"]
        by_process["child" if prompt.startswith("child-") else "parent"].add(request.connection_id)
    assert len(by_process["child"]) == trials
    assert not by_process["child"] & by_process["parent"]


@pytest.mark.usefixtures("body_reader")
@pytest.mark.parametrize("copy", ["closed", "read"])
def test_a_child_leaves_the_parents_open_stream_alone(llm_server: LLMServer, copy: str) -> None:
    # The child inherits the parent's open stream and socket. Closing its copy must not
    # shut the shared socket down (that would end the parent's answer); reading its copy
    # would take the parent's bytes off the shared socket (a stream is read in the thread
    # that iterates it), so it raises instead.
    llm_server.enqueue(Reply(body=[sse_event(chat_chunk("before", role="assistant")), Pause(0.5),
                                   *text_stream_body([" after"])]))
    with Client(base_url=llm_server.url) as client:
        stream = client.stream("hi", model="m")
        assert isinstance(next(stream), OutputItemAdded)

        def close_the_copy() -> bool:
            stream.close()
            gc.collect()
            return stream.closed

        def read_the_copy() -> str:
            return "".join(e.delta for e in stream if isinstance(e, OutputTextDelta))

        report = child_report(*fork_child(close_the_copy if copy == "closed" else read_the_copy))
        if copy == "closed":
            assert report == {"ok": True}
        else:
            assert report.keys() == {"error"}
            assert report["error"].startswith("StreamError: ")
            assert report["error"].endswith("the stream was opened in another process (before a fork); "
                                            "open a new one in this process")
        text = "".join(e.delta for e in stream if isinstance(e, OutputTextDelta))
    assert text == "before after"
    assert stream.completed


# --- 2. redirects ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_not_followed(llm_server: LLMServer, status: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMX_TEST_ORG", "org-secret")
    with LLMServer() as elsewhere:
        location = f"{elsewhere.chat_url}?from=redirect"
        llm_server.default = Reply(status=status, headers={"Location": location})
        provider = Provider("p", llm_server.url, api_key="sk-key", http_headers={"api-key": "sk-header"},
                            env_http_headers={"X-Org": "LLMX_TEST_ORG"})
        with Client(provider) as client, pytest.raises(UnexpectedStatusError) as caught:
            client.stream("the prompt", model="m")
        assert elsewhere.requests == []  # neither the prompt nor a credential went there
        assert elsewhere.connections_accepted == 0
    assert len(llm_server.requests) == 1  # a 3xx is final: no retry either
    assert caught.value.status == status
    message = str(caught.value)
    assert f"to {elsewhere.chat_url}?from=***" in message  # the Location, query values hidden
    assert "set base_url to the address the server redirects to" in message


# --- 3. huge events and 4. a paused consumer: the client in its own interpreter ----------------

# argv: base URL, mode. Prints a JSON report on its last line. In "pause" mode it takes
# the first event, prints "paused", waits for a line on stdin, then reads the rest.
CLIENT_SCRIPT = r"""
import json, sys
from llmx_sync import Client, LlmxError, OutputTextDelta

def status(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))

url, mode = sys.argv[1], sys.argv[2]
with Client(base_url=url) as client:
    client.stream("warm-up", model="m").collect()  # imports, pool, a reader thread: not counted
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # the peak (VmHWM) starts again from the RSS now
    except OSError:
        pass  # then the peak may include start-up: an overestimate, never an underestimate
    before = status("VmRSS")
    report = {}
    stream = client.stream("big", model="m")
    try:
        if mode == "pause":
            next(stream)
            print("paused", flush=True)
            sys.stdin.readline()
            report["growth"] = status("VmHWM") - before
        deltas = chars = 0  # counted as they pass: a list of them would weigh on the peak
        for event in stream:
            if isinstance(event, OutputTextDelta):
                deltas += 1
                chars += len(event.delta)
        report.update(deltas=deltas, chars=chars, completed=stream.completed)
    except LlmxError as exc:
        report["error"] = f"{type(exc).__name__}: {exc}"
    report.setdefault("growth", status("VmHWM") - before)
print(json.dumps(report), flush=True)
"""


def start_client(server: LLMServer, mode: str) -> subprocess.Popen[str]:
    """`CLIENT_SCRIPT` against `server` (the same llmx_sync as this test's, the same
    environment: the body reader chosen by `body_reader` too)."""
    source_root = str(Path(llmx_sync.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([source_root, os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", CLIENT_SCRIPT, server.url, mode], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish_client(process: subprocess.Popen[str], send: str = "", timeout: float = 60.0) -> dict[str, Any]:
    try:
        out, err = process.communicate(send, timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
    assert process.returncode == 0, err
    return dict(json.loads(out.strip().splitlines()[-1]))


BLOCK = b"x" * MiB  # one object, sent many times: the server holds 1 MiB, whatever it sends

HUGE_BODIES = {
    # one SSE line of 64 MiB
    "line": Reply(body=[sse_event(chat_chunk("a", role="assistant")), b"data: ", *[BLOCK] * 64, b"\n\n"]),
    # 128 MiB of `data:` lines and never the blank line that ends the event
    "data lines": Reply(body=[sse_event(chat_chunk("a", role="assistant")),
                              *[(b"data: " + b"y" * 1017 + b"\n") * 16] * 8192]),
    # a 64 MiB JSON answer (a server that ignores stream: true)
    "json": Reply(headers={"Content-Type": "application/json"},
                  body=[b'{"choices":[{"index":0,"message":{"content":"', *[BLOCK] * 64, b'"}}]}']),
}


@pytest.mark.usefixtures("body_reader")
@pytest.mark.parametrize("shape", list(HUGE_BODIES))
def test_a_huge_event_is_an_error_and_memory_stays_bounded(llm_server: LLMServer, shape: str) -> None:
    llm_server.enqueue(Reply(body=text_stream_body(["warm"])), HUGE_BODIES[shape])
    report = finish_client(start_client(llm_server, "whole"))
    assert "error" in report, report
    assert report["error"].startswith("StreamError: ")
    assert str(DEFAULT_MAX_EVENT_BYTES) in report["error"]  # names the limit
    if shape != "json":
        assert f"max_event_bytes={DEFAULT_MAX_EVENT_BYTES}" in report["error"]
    assert report["growth"] < 100 * MB, report


@pytest.mark.usefixtures("body_reader")
def test_a_paused_consumer_holds_the_server_back(llm_server: LLMServer) -> None:
    piece = sse_event(chat_chunk("z" * 4000))
    count = 30 * MiB // len(piece)
    llm_server.enqueue(Reply(body=text_stream_body(["warm"])),
                       Reply(body=[*[piece] * count, *text_stream_body([], finish_reason="stop")]))
    process = start_client(llm_server, "pause")
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        assert ready and process.stdout.readline() == "paused\n"
        # The server writes until the client's queue, the socket buffers and its own
        # send buffer are full; then it is blocked. Wait until it is.
        written, deadline = -1, time.monotonic() + 20
        while written != llm_server.body_bytes_sent and time.monotonic() < deadline:
            written = llm_server.body_bytes_sent
            time.sleep(0.5)
    finally:
        report = finish_client(process, send="go\n")
    assert written < 12 * MB, written
    assert report["growth"] < 10 * MB, report
    # Resumed, it gets every event: nothing was dropped to keep memory bounded.
    assert (report["deltas"], report["chars"]) == (count, 4000 * count)
    assert report["completed"]


# --- 5. truncation -----------------------------------------------------------------------------


def browser_body(stream: ResponseStream) -> str:
    """What a browser receives from `flask_sse_response` for `stream`."""
    app = Flask(__name__)
    app.add_url_rule("/chat", "chat", lambda: flask_sse_response(stream), methods=["POST"])
    with app.test_client() as browser:
        return browser.post("/chat").get_data(as_text=True)


@pytest.mark.usefixtures("body_reader")
@pytest.mark.parametrize("chunked", [True, False], ids=["last-chunk", "close-delimited"])
@pytest.mark.parametrize("finish_reason", [None, "stop"], ids=["truncated", "finished-without-done"])
def test_a_truncated_answer_is_an_error_for_the_browser(llm_server: LLMServer, chunked: bool,
                                                        finish_reason: str | None) -> None:
    # A proxy that lost its upstream ends the body properly, without [DONE]: an answer
    # with no finish_reason is cut, one with a finish_reason is whole.
    llm_server.enqueue(Reply(body=text_stream_body(["Hel", "lo"], finish_reason=finish_reason, done=False),
                             chunked=chunked))
    with Client(base_url=llm_server.url) as client:
        body = browser_body(client.stream("hi", model="m"))
    frames = body.split("\n\n")
    assert frames[-1] == ""
    assert frames[1] == 'event: output_text.delta\ndata: {"type":"output_text.delta","delta":"Hel"}'
    if finish_reason is None:
        assert frames[-2].startswith("event: error\n")
        error = json.loads(frames[-2].split("data: ", 1)[1])
        assert error["type"] == "StreamError"
        assert "the stream ended before the answer was complete" in error["message"]
        assert "data: [DONE]" not in frames and "event: completed" not in body
    else:
        assert frames[-3].startswith("event: completed\n")
        assert frames[-2] == "data: [DONE]"


# --- 6. keep-alive comments --------------------------------------------------------------------


@pytest.mark.usefixtures("body_reader")
def test_pings_keep_a_stream_alive_past_its_idle_timeout(llm_server: LLMServer) -> None:
    # A reasoning model silent for a while, its server pinging every 0.1 s: 1.5 s of
    # pings, three times the idle timeout.
    pings = [step for _ in range(15) for step in (Pause(0.1), sse_comment("ping"))]
    llm_server.enqueue(Reply(body=[sse_event(chat_chunk("thinking...", role="assistant")), *pings,
                                   *text_stream_body([" done"])]))
    started = time.monotonic()
    with Client(base_url=llm_server.url) as client:
        result = client.stream("hi", model="m", idle_timeout=0.5).collect()
    assert result.text == "thinking... done"
    assert time.monotonic() - started >= 1.5


# --- 7. the total deadline -------------------------------------------------------------------

# The error comes within about 0.1 s of the deadline on an idle machine; the rest is room
# for a loaded 2-core one, where a thread can wait that long for a core (still far from
# what the deadline ends: 30 s of stall, 30 s of trickle, 100 retries).
LATE = 0.1 + 0.5


def trickle(pause: float, count: int) -> Reply:
    return Reply(body=[step for i in range(count) for step in (sse_event(chat_chunk(f"t{i} ")), Pause(pause))])


DEADLINE_CASES = {  # (the server's reply, the request's timeout, other settings)
    # retries: 503 with Retry-After 0.1 s, more retries allowed than fit in the time
    "retries": (error_reply(503, "busy", headers={"Retry-After": "0.1"}), 1.0, {"request_max_retries": 100}),
    # the server takes the request and never sends the headers
    "header stall": (Reply(headers_after=30.0), 1.0, {}),
    # one event per 1.5 s (each restarts the idle timer: only the deadline can end it)
    "trickle": (trickle(1.5, 20), 2.0, {}),
}


@pytest.mark.usefixtures("body_reader")
@pytest.mark.parametrize("case", list(DEADLINE_CASES))
def test_the_deadline_ends_the_request(llm_server: LLMServer, case: str) -> None:
    reply, timeout, settings = DEADLINE_CASES[case]
    llm_server.default = reply
    seen: list[str] = []
    with Client(base_url=llm_server.url, timeout=timeout) as client:
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError) as caught:
            for event in client.stream("hi", model="m", idle_timeout=5.0, **settings):
                if isinstance(event, OutputTextDelta):
                    seen.append(event.delta)
        elapsed = time.monotonic() - started
        if case == "retries":  # each 503 was read whole: its connection went back to the pool
            assert wait_for(lambda: not reader_threads() and open_sockets_to(llm_server.port) <= 1)
        else:  # the one in use was closed
            assert released(llm_server)
    # Retries stop early, at the wait that would end past the deadline; the rest at it.
    earliest = timeout - (0.1 + 0.05 if case == "retries" else 0.02)
    assert earliest <= elapsed <= timeout + LATE, elapsed
    assert str(caught.value).startswith(f"the request's timeout of {timeout:g} s passed")
    if case == "retries":
        assert isinstance(caught.value.__cause__, UnexpectedStatusError) and caught.value.__cause__.status == 503
        assert len(llm_server.requests) >= 5
    if case == "trickle":
        assert seen == ["t0 ", "t1 "]  # the events before the deadline came first


# --- 8. a server that drops every request ----------------------------------------------------


@pytest.mark.parametrize("retries", [0, 2])
def test_a_dropping_server_receives_retries_plus_one_requests(llm_server: LLMServer, retries: int) -> None:
    # Each request may be billed: a fresh connection closed without an answer is a
    # counted retry, never an extra "stale connection" resend.
    llm_server.default = Reply(close_without_response=True)
    with Client(base_url=llm_server.url) as client, pytest.raises(ConnectionFailedError) as caught:
        client.stream("hi", model="m", request_max_retries=retries)
    assert len(llm_server.requests) == retries + 1
    assert "closed the connection without sending a response" in str(caught.value)


# --- 9. secrets --------------------------------------------------------------------------------

API_KEY = "sk-secret-api-key-1"
HEADER_SECRET = "header-secret-2"
ENV_HEADER_SECRET = "env-header-secret-3"
QUERY_SECRET = "query-secret-4"
URL_PASSWORD = "url-password-5"
SECRETS = (API_KEY, HEADER_SECRET, ENV_HEADER_SECRET, QUERY_SECRET, URL_PASSWORD)


def secret_provider(host_and_port: str) -> Provider:
    # The key goes in an `api-key` header (Azure's way): a bearer key and a password in
    # the URL are refused together (test_a_password_in_the_url_and_a_key_are_refused_together).
    return Provider("p", f"http://user:{URL_PASSWORD}@{host_and_port}/v1",
                    http_headers={"api-key": API_KEY, "X-Custom": HEADER_SECRET},
                    env_http_headers={"X-Env": "LLMX_TEST_ENV_HEADER"},
                    query_params={"api-key": QUERY_SECRET, "api-version": "2024-06-01"})


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def fail_with(failure: str, server: LLMServer) -> tuple[Client, LlmxError, list[str]]:
    """A client with every kind of secret, a request failing in the way named, the
    error, and the reprs of what the caller holds meanwhile."""
    held: list[str] = []
    if failure == "refused":
        client = Client(secret_provider(f"127.0.0.1:{unused_port()}"))
    elif failure == "malformed URL":
        client = Client(secret_provider("bad..host"))  # an empty DNS label
    else:
        client = Client(secret_provider(f"127.0.0.1:{server.port}"))
        server.enqueue(error_reply(401, "Invalid credentials") if failure == "401" else
                       Reply(body=[sse_event(chat_chunk("a", role="assistant")), Disconnect()]))
    try:
        stream = client.stream("hi", model="m", request_max_retries=0)
        held += [repr(stream), repr(stream.response), str(stream.response)]
        stream.collect()
    except LlmxError as exc:
        return client, exc, held
    raise AssertionError("the request did not fail")


@pytest.mark.parametrize("failure", ["refused", "malformed URL", "401", "stream error"])
def test_no_secret_in_any_repr_message_traceback_or_log(llm_server: LLMServer, failure: str,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("LLMX_TEST_ENV_HEADER", ENV_HEADER_SECRET)
    caplog.set_level(logging.DEBUG)  # every logger: urllib3's too
    client, error, held = fail_with(failure, llm_server)
    with client:
        texts = {
            "repr(Client)": repr(client), "repr(Provider)": repr(client.provider),
            "the stream": " ".join(held), "str(error)": str(error), "repr(error)": repr(error),
            "traceback": "".join(traceback.format_exception(error)),
            "log records": caplog.text,  # (each record formatted, with its exception if any)
        }
    leaks = {where: secret for where, text in texts.items() for secret in SECRETS if secret in text}
    assert leaks == {}
    assert any(r.getMessage().startswith("POST ") for r in caplog.records if r.name == "llmx_sync")
    if failure == "stream error":
        assert "api-key=***&api-version=***" in held[1]  # ResponseInfo.url, its query values hidden
    if failure in ("401", "stream error"):
        sent = llm_server.requests[0]  # (all of them were sent: only their display is hidden)
        assert sent.headers["X-Env"] == ENV_HEADER_SECRET and QUERY_SECRET in sent.path


def test_no_secret_in_the_repr_of_a_connection() -> None:
    text = repr(secret_provider("127.0.0.1:1").connection)
    assert [secret for secret in SECRETS if secret in text] == []


# --- 10. TLS and proxies -----------------------------------------------------------------------


@pytest.fixture
def private_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def https_server(llm_server: LLMServer, private_ca: trustme.CA) -> str:
    """`llm_server` speaking HTTPS with a certificate of `private_ca`; its https base URL."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    private_ca.issue_cert("127.0.0.1").configure_cert(context)
    # The accept loop reads the listening socket anew for every connection.
    llm_server._httpd.socket = context.wrap_socket(llm_server._httpd.socket, server_side=True)  # type: ignore[union-attr]  # noqa: SLF001
    llm_server.default = Reply(body=text_stream_body(["secure"]))
    return llm_server.url.replace("http://", "https://")


@pytest.fixture
def ca_file(private_ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The private CA's PEM file; no CA bundle variable set."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "ca.pem"
    private_ca.cert_pem.write_to_path(str(path))
    return str(path)


def test_a_private_ca_is_not_trusted_by_default(https_server: str, ca_file: str) -> None:
    with Client(base_url=https_server) as client, pytest.raises(ConnectionFailedError, match="certificate verify"):
        client.stream("hi", model="m")


@pytest.mark.parametrize("other_bundle_in_env", [False, True])
def test_a_session_brings_its_tls_settings(https_server: str, ca_file: str, other_bundle_in_env: bool,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    if other_bundle_in_env:  # (a machine-wide bundle without the private CA must not replace the session's)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    with requests.Session() as session:
        session.verify = ca_file
        with Client(base_url=https_server, session=session) as client:
            assert client.stream("hi", model="m").collect().text == "secure"


def test_ssl_cert_file_is_honoured(https_server: str, ca_file: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    with Client(base_url=https_server) as client:
        assert client.stream("hi", model="m").collect().text == "secure"


def test_a_session_brings_its_proxies(llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # `llm_server` plays the forward proxy (it answers whatever chat URL it is asked for);
    # the environment names another proxy, which must not win over the session's.
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{unused_port()}")
    llm_server.default = Reply(body=text_stream_body(["proxied"]))
    with requests.Session() as session:
        session.proxies = {"http": f"http://127.0.0.1:{llm_server.port}"}
        with Client(base_url="http://model.internal.invalid/v1", session=session) as client:
            assert client.stream("hi", model="m", request_max_retries=0).collect().text == "proxied"
    assert llm_server.requests[0].path == "http://model.internal.invalid/v1/chat/completions"


# --- 11. the pool --------------------------------------------------------------------------------


def test_two_hundred_concurrent_streams_without_pool_warnings(llm_server: LLMServer,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="urllib3")
    streams = 200
    arrived = threading.Barrier(streams, timeout=30)

    def answer(request: RecordedRequest) -> Reply:
        arrived.wait()  # every stream is open at once before any answer goes out
        return echo(request)

    llm_server.handler = answer
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    with Client(base_url=llm_server.url) as client:
        def one(n: int) -> None:
            try:
                results[n] = client.stream(f"n{n}", model="m").collect().text
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=one, args=(n,)) for n in range(streams)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert errors == []
    assert results == {n: expected_echo(f"n{n}") for n in range(streams)}
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_netrc_entry_does_not_replace_the_key(llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    # requests puts a ~/.netrc login for the host in place of an Authorization header.
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password netrc-password\n", encoding="utf-8")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    llm_server.enqueue(Reply(body=text_stream_body(["x"])), Reply(body=text_stream_body(["y"])))
    with Client(base_url=llm_server.url, api_key="sk-the-key") as client:
        client.stream("hi", model="m").collect()
    monkeypatch.delenv("LLMX_API_KEY", raising=False)
    with Client(base_url=llm_server.url) as client:  # no key of ours: requests' netrc rule applies
        client.stream("hi", model="m").collect()
    assert [r.headers["Authorization"] for r in llm_server.requests] == [
        "Bearer sk-the-key", "Basic " + base64.b64encode(b"someone:netrc-password").decode()]


def test_a_password_in_the_url_and_a_key_are_refused_together(llm_server: LLMServer) -> None:
    url = llm_server.url.replace("http://", "http://user:url-password@")
    with Client(base_url=url, api_key="sk-the-key") as client, pytest.raises(llmx_sync.InvalidInputError) as info:
        client.stream("hi", model="m")
    assert info.value.where == "base_url" and "url-password" not in str(info.value)
    assert llm_server.requests == []
