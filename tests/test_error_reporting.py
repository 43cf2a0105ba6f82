"""Issue #10: errors that say what happened and what to do.

Each error is produced by a real request to the scripted server (or refused before any),
and checked as a user meets it: its class, its fields, and `str(error)`.
"""

from __future__ import annotations

import math
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trustme
from llm_server import LLMServer, Reply, error_reply, json_reply, text_reply, text_stream_body

from llmx_sync.client import Client
from llmx_sync.errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ConnectionFailedError,
    InternalServerError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RetryLimitReachedError,
    UnexpectedStatusError,
    UnprocessableEntityError,
    status_text,
)
from llmx_sync.providers import Provider

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def _no_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("LLMX_API_KEY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(var, raising=False)


def failure(server: LLMServer, reply: Reply, **settings: Any) -> UnexpectedStatusError:
    """The error of one request answered with `reply` (a key is sent: no hint)."""
    server.enqueue(reply)
    with Client(base_url=server.url, api_key="sk-test") as client, pytest.raises(UnexpectedStatusError) as caught:
        client.stream("hi", model="m", request_max_retries=0, **settings)
    assert len(server.requests) == 1
    return caught.value


# --- what servers send ------------------------------------------------------------------------

# llama-cpp-python's RouteErrorHandler (llama_cpp/server/errors.py) answers a request its
# pydantic model refuses with a 500 whose message is str() of FastAPI's RequestValidationError.
LLAMA_CPP_VALIDATION = ("1 validation error:\n  {'type': 'float_parsing', 'loc': ('body', 'temperature'), "
                        "'msg': 'Input should be a valid number, unable to parse string as a number', "
                        "'input': 'hot'}")

ERROR_SHAPES = [
    pytest.param(
        error_reply(401, "Incorrect API key provided: sk-abc***. You can find your API key at "
                    "https://platform.openai.com/account/api-keys.", type="invalid_request_error",
                    code="invalid_api_key", headers={"x-request-id": "req_openai"}),
        AuthenticationError, dict(status=401, message="Incorrect API key provided: sk-abc***. You can find your API "
                                  "key at https://platform.openai.com/account/api-keys.",
                                  code="invalid_api_key", type="invalid_request_error", param=None,
                                  request_id="req_openai"),
        "unexpected status 401 Unauthorized: Incorrect API key provided: sk-abc***. You can find your API key at "
        "https://platform.openai.com/account/api-keys., request id: req_openai",
        id="openai"),
    pytest.param(
        json_reply({"error": {"message": "Authentication Error, Invalid proxy server token passed. Received API "
                              "Key = sk-...test, Key Hash (Token) =e3b0c4. Unable to find token in cache or "
                              "`LiteLLM_VerificationTokenTable`", "type": "auth_error", "param": "None",
                              "code": "401"}}, status=401),
        AuthenticationError, dict(status=401, code="401", type="auth_error", param="None", request_id=None),
        "unexpected status 401 Unauthorized: Authentication Error, Invalid proxy server token passed. Received API "
        "Key = sk-...test, Key Hash (Token) =e3b0c4. Unable to find token in cache or "
        "`LiteLLM_VerificationTokenTable`",
        id="litellm"),
    pytest.param(
        json_reply({"error": {"message": LLAMA_CPP_VALIDATION, "type": "internal_server_error", "param": None,
                              "code": None}}, status=500),
        # A refusal of the request as malformed: a BadRequestError whatever its status, never retried.
        BadRequestError, dict(status=500, message=LLAMA_CPP_VALIDATION, code=None,
                              type="internal_server_error", param=None),
        "unexpected status 500 Internal Server Error: " + LLAMA_CPP_VALIDATION,
        id="llama-cpp-python-500"),
    pytest.param(
        json_reply({"error": {"message": "This model's maximum context length is 2048 tokens. However, you "
                              "requested 9000 tokens (8000 in the messages, 1000 in the completion). Please reduce "
                              "the length of the messages or completion.", "type": "invalid_request_error",
                              "param": "messages", "code": "context_length_exceeded"}}, status=400),
        BadRequestError, dict(status=400, code="context_length_exceeded", type="invalid_request_error",
                              param="messages"),
        "unexpected status 400 Bad Request: This model's maximum context length is 2048 tokens. However, you "
        "requested 9000 tokens (8000 in the messages, 1000 in the completion). Please reduce the length of the "
        "messages or completion.",
        id="llama-cpp-python-400"),
    pytest.param(
        json_reply({"detail": [
            {"type": "float_parsing", "loc": ["body", "temperature"],
             "msg": "Input should be a valid number, unable to parse string as a number", "input": "hot"},
            {"type": "missing", "loc": ["body", "messages"], "msg": "Field required", "input": {"model": "m"}},
        ]}, status=422),
        UnprocessableEntityError, dict(status=422, code=None, type=None, param=None),
        "unexpected status 422 Unprocessable Entity: body.temperature: Input should be a valid number, unable to "
        "parse string as a number (input: 'hot'); body.messages: Field required",
        id="fastapi-422"),
    pytest.param(
        json_reply({"object": "error", "message": "The model `llama-3` does not exist.", "type": "NotFoundError",
                    "param": None, "code": 404}, status=404),
        NotFoundError, dict(status=404, message="The model `llama-3` does not exist.", code=404,
                            type="NotFoundError", param=None),
        "unexpected status 404 Not Found: The model `llama-3` does not exist.",
        id="vllm"),
    pytest.param(
        json_reply({"error": "model \"llama3\" not found, try pulling it first"}, status=404),
        NotFoundError, dict(message="model \"llama3\" not found, try pulling it first", code=None, type=None),
        "unexpected status 404 Not Found: model \"llama3\" not found, try pulling it first",
        id="ollama"),
    pytest.param(
        text_reply("", status=400),
        BadRequestError, dict(status=400, message=None, code=None, type=None, param=None, body=""),
        "unexpected status 400 Bad Request",
        id="empty"),
]


@pytest.mark.parametrize(("reply", "cls", "fields", "text"), ERROR_SHAPES)
def test_error_bodies_are_parsed(llm_server: LLMServer, reply: Reply, cls: type[UnexpectedStatusError],
                                 fields: dict[str, Any], text: str) -> None:
    error = failure(llm_server, reply)
    assert isinstance(error, cls)
    assert {name: getattr(error, name) for name in fields} == fields
    assert error.body == b"".join(piece for piece in reply.body if isinstance(piece, bytes)).decode()
    assert error.headers["Content-Type"] == reply.headers["Content-Type"]
    assert str(error) == text
    assert error.hint is None  # a key was sent, the base URL ends in /v1


def test_an_html_page_is_reduced_to_the_start_of_its_text(llm_server: LLMServer) -> None:
    page = ("<!DOCTYPE html><html><head><title>502 Bad Gateway</title><style>h1 { color: red }</style>"
            "<script>var tracking = 1;</script></head><body><center><h1>502 Bad Gateway</h1></center>"
            + "<p>The upstream server &amp; its proxy did not answer.</p>" * 500 + "</body></html>")
    error = failure(llm_server, text_reply(page, status=502, headers={"Content-Type": "text/html",
                                                                       "cf-ray": "8f1e2d"}))
    assert isinstance(error, InternalServerError)
    assert (error.status, error.message, error.body, error.request_id) == (502, None, page, "8f1e2d")
    prefix = "unexpected status 502 Bad Gateway: "
    assert str(error).startswith(prefix + "502 Bad Gateway 502 Bad Gateway The upstream server & its proxy did")
    shown = str(error).removeprefix(prefix).removesuffix(", request id: 8f1e2d")
    assert len(shown) == 501 and shown.endswith("…")  # 500 characters of text, then the ellipsis
    for markup in ("<", "color: red", "tracking", "&amp;"):
        assert markup not in str(error)


# --- the status class after retries ------------------------------------------------------------


@pytest.mark.parametrize(("status", "cls"), [
    (408, UnexpectedStatusError), (409, ConflictError), (429, RateLimitError), (500, InternalServerError),
    (502, InternalServerError), (503, InternalServerError), (504, InternalServerError),
])
def test_a_status_that_outlasts_the_retries_is_of_its_class_and_a_retry_limit_error(
        llm_server: LLMServer, status: int, cls: type[UnexpectedStatusError]) -> None:
    llm_server.default = error_reply(status, "try later", headers={"Retry-After": "0"})
    with Client(base_url=llm_server.url, api_key="sk-test") as client:
        with pytest.raises(cls) as by_status:  # `except RateLimitError:` and the like
            client.stream("hi", model="m", request_max_retries=2)
        with pytest.raises(RetryLimitReachedError) as by_retries:
            client.stream("hi", model="m", request_max_retries=1)
    assert isinstance(by_status.value, RetryLimitReachedError) and isinstance(by_retries.value, cls)
    assert (by_status.value.status, by_status.value.message) == (status, "try later")
    assert (by_status.value.attempts, by_retries.value.attempts) == (3, 2)  # type: ignore[attr-defined]
    assert str(by_status.value) == f"unexpected status {status_text(status)} (retry limit reached after 3 attempts): " \
                                   "try later"
    assert len(llm_server.requests) == 5


# --- hints ----------------------------------------------------------------------------------------


def test_a_404_from_a_base_url_without_v1_suggests_it(llm_server: LLMServer) -> None:
    base = llm_server.url.removesuffix("/v1")
    llm_server.enqueue(text_reply("404 page not found", status=404))
    with Client(base_url=base) as client, pytest.raises(NotFoundError) as caught:
        client.stream("hi", model="m")
    assert llm_server.requests[0].path == "/chat/completions"
    assert caught.value.hint is not None and f"base_url='{base}/v1'" in caught.value.hint
    assert str(caught.value).startswith("unexpected status 404 Not Found: 404 page not found")
    assert str(caught.value).endswith(caught.value.hint)


def test_a_404_from_a_base_url_with_v1_has_no_hint(llm_server: LLMServer) -> None:
    error = failure(llm_server, error_reply(404, "The model `m` does not exist", code="model_not_found"))
    assert error.hint is None and "/v1" not in str(error)


@pytest.mark.parametrize(("status", "cls"), [(401, AuthenticationError), (403, PermissionDeniedError)])
def test_a_401_or_403_without_a_key_says_how_to_send_one(llm_server: LLMServer, status: int,
                                                         cls: type[UnexpectedStatusError]) -> None:
    llm_server.enqueue(error_reply(status, "Missing bearer token"))
    with Client(base_url=llm_server.url) as client, pytest.raises(cls) as caught:
        client.stream("hi", model="m")
    assert "Authorization" not in llm_server.requests[0].headers
    hint = caught.value.hint
    assert hint is not None and "api_key=" in hint and "LLMX_API_KEY" in hint
    assert str(caught.value).endswith(hint)


def test_a_proxys_500_saying_no_key_was_passed_gets_the_hint(llm_server: LLMServer) -> None:
    llm_server.enqueue(json_reply({"error": {"message": "No api key passed in.", "type": "auth_error",
                                             "param": "None", "code": "500"}}, status=500))
    with Client(base_url=llm_server.url) as client, pytest.raises(InternalServerError) as caught:
        client.stream("hi", model="m", request_max_retries=0)
    hint = caught.value.hint
    assert hint is not None and "api_key=" in hint and "LLMX_API_KEY" in hint


def test_a_500_that_says_nothing_of_keys_has_no_hint(llm_server: LLMServer) -> None:
    llm_server.enqueue(error_reply(500, "CUDA out of memory"))
    with Client(base_url=llm_server.url) as client, pytest.raises(InternalServerError) as caught:
        client.stream("hi", model="m", request_max_retries=0)
    assert caught.value.hint is None


@pytest.mark.parametrize("status", [401, 403, 500])
def test_no_key_hint_when_a_key_was_sent(llm_server: LLMServer, status: int) -> None:
    error = failure(llm_server, error_reply(status, "Invalid API key"))
    assert llm_server.requests[0].headers["Authorization"] == "Bearer sk-test"
    assert error.hint is None and "No API key" not in str(error)


def test_a_key_from_the_environment_counts_as_sent(llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMX_API_KEY", "sk-env")
    llm_server.enqueue(error_reply(401, "Invalid API key"))
    with Client(base_url=llm_server.url) as client, pytest.raises(AuthenticationError) as caught:
        client.stream("hi", model="m")
    assert caught.value.hint is None


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # nothing listens there any more: connecting is refused


def test_a_refused_connection_names_the_url() -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    with Client(base_url=url) as client, pytest.raises(ConnectionFailedError) as caught:
        client.stream("hi", model="m", request_max_retries=0)
    assert str(caught.value) == f"Connection failed: error sending request to {url}/chat/completions: Connection refused"


def test_a_redirect_is_not_followed_and_its_location_is_named() -> None:
    with LLMServer() as first, LLMServer() as second:
        target = second.chat_url + "?api-version=secret-sig"
        first.enqueue(text_reply("moved", status=307, headers={"Location": target}))
        with Client(base_url=first.url, api_key="sk-test") as client, pytest.raises(UnexpectedStatusError) as caught:
            client.stream("hi", model="m")
        assert second.requests == []  # neither the prompt nor the key went there
        assert len(first.requests) == 1
    hint = caught.value.hint
    assert caught.value.status == 307
    assert hint is not None and f"redirects to {second.chat_url}?api-version=***" in hint
    assert "secret-sig" not in str(caught.value)


# --- checks before any I/O ------------------------------------------------------------------------


@pytest.mark.parametrize(("base_url", "problem"), [
    ("127.0.0.1:{port}/v1", "has no scheme: add http:// or https://"),
    ("localhost:{port}/v1", "has no scheme: add http:// or https://"),
    ("not a url", "'not a url'"),
    ("ftp://127.0.0.1:{port}/v1", "expected an http:// or https:// URL"),
    ("http:///v1", "has no host"),
    ("http://127.0.0.1:port/v1", "is not a valid URL"),
])
def test_a_bad_base_url_is_refused_when_the_client_is_made(llm_server: LLMServer, base_url: str,
                                                             problem: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        Client(base_url=base_url.format(port=llm_server.port))
    assert caught.value.where == "base_url"
    assert problem in str(caught.value)
    with pytest.raises(InvalidInputError, match="base_url"):
        Provider("mine", base_url.format(port=llm_server.port))
    assert llm_server.requests == []


@pytest.mark.parametrize(("setting", "value", "problem"), [
    ("idle_timeout", math.nan, "a finite number of seconds above 0"),
    ("idle_timeout", math.inf, "a finite number of seconds above 0"),
    ("idle_timeout", 0, "a finite number of seconds above 0"),
    ("idle_timeout", -1, "a finite number of seconds above 0"),
    ("connect_timeout", -5, "a finite number of seconds above 0"),
    ("timeout", 0, "a finite number of seconds above 0"),
    ("request_max_retries", -3, "an integer from 0 to 100"),
    ("request_max_retries", 101, "an integer from 0 to 100"),
    ("request_max_retries", 2.5, "an integer from 0 to 100"),
    ("max_retry_delay", -1, "a finite number of seconds, 0 or more"),
])
def test_bad_settings_are_refused_before_any_request(llm_server: LLMServer, setting: str, value: Any,
                                                      problem: str) -> None:
    with Client(base_url=llm_server.url) as client:
        with pytest.raises(InvalidInputError) as caught:
            client.stream("hi", model="m", **{setting: value})
        assert caught.value.where == setting
        assert problem in str(caught.value)
        with pytest.raises(InvalidInputError, match=setting):
            Provider("mine", llm_server.url, **{setting: value})
    assert llm_server.requests == []


def test_a_bad_total_timeout_is_refused_by_the_client_too(llm_server: LLMServer) -> None:
    with pytest.raises(InvalidInputError, match="timeout"):
        Client(base_url=llm_server.url, timeout=-1)


@pytest.mark.parametrize(("prompt", "kind"), [(123, "number"), (None, "null"), ({"role": "user"}, "object")])
def test_a_prompt_of_the_wrong_type_is_refused(llm_server: LLMServer, prompt: Any, kind: str) -> None:
    with Client(base_url=llm_server.url) as client, pytest.raises(InvalidInputError) as caught:
        client.stream(prompt, model="m")
    assert caught.value.where == "prompt"
    assert str(caught.value).endswith(f"got {kind}")
    assert llm_server.requests == []


SECRET = "sk-live-secret"


@pytest.mark.parametrize("value", [f"{SECRET}\n", f"{SECRET}\r\nX-Injected: 1", f"a\r{SECRET}"])
def test_a_header_value_with_a_line_break_names_the_header(llm_server: LLMServer, value: str) -> None:
    with Client(base_url=llm_server.url) as client, pytest.raises(InvalidInputError) as caught:
        client.stream("hi", model="m", extra_headers={"X-Trace": value})
    assert caught.value.where == "extra_headers['X-Trace']"
    assert "line break" in str(caught.value) and SECRET not in str(caught.value)
    assert llm_server.requests == []


def test_a_providers_header_with_a_line_break_is_refused_when_it_is_made(llm_server: LLMServer) -> None:
    with pytest.raises(InvalidInputError) as caught:
        Provider("mine", llm_server.url, http_headers={"X-Team": f"{SECRET}\n"})
    assert caught.value.where == "http_headers['X-Team']"
    assert SECRET not in str(caught.value)
    with pytest.raises(InvalidInputError, match="not a valid header name"):
        Provider("mine", llm_server.url, http_headers={"X Team": "a"})


def test_an_env_http_header_with_a_line_break_names_the_variable(llm_server: LLMServer,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_ORG_ID", f"{SECRET}\n")
    with Client(Provider("mine", llm_server.url, env_http_headers={"OpenAI-Organization": "MY_ORG_ID"})) as client:
        with pytest.raises(InvalidInputError) as caught:
            client.stream("hi", model="m")
    assert "'OpenAI-Organization'" in caught.value.where and "$MY_ORG_ID" in caught.value.where
    assert SECRET not in str(caught.value)
    assert llm_server.requests == []


def test_an_api_key_with_a_trailing_newline_is_refused_without_showing_it(llm_server: LLMServer,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidInputError) as given:
        Client(base_url=llm_server.url, api_key=f"{SECRET}\n")
    assert given.value.where == "api_key"
    monkeypatch.setenv("MY_KEY", f"{SECRET}\n")  # as read from a file with `$(cat key.txt)`-less tools
    with Client(Provider("mine", llm_server.url, env_key="MY_KEY")) as client:
        with pytest.raises(InvalidInputError) as from_env:
            client.stream("hi", model="m")
    assert from_env.value.where == "$MY_KEY"
    for error in (given.value, from_env.value):
        assert "newline" in str(error) and SECRET not in str(error) and SECRET not in repr(error)
    assert llm_server.requests == []


# --- certificates -------------------------------------------------------------------------------


@contextmanager
def untrusted_tls_server() -> Iterator[tuple[str, list[socket.socket]]]:
    """An HTTPS endpoint on 127.0.0.1 whose certificate comes from a CA nobody trusts:
    its base URL, and the connections it accepted (each ends at the failed handshake)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(context)
    accepted: list[socket.socket] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(0.05)
        stop = threading.Event()

        def serve() -> None:
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                accepted.append(conn)
                conn.settimeout(5)
                try:
                    with context.wrap_socket(conn, server_side=True):
                        pass
                except OSError:  # the client refused the certificate
                    pass

        thread = threading.Thread(target=serve, name="test-tls-server", daemon=True)
        thread.start()
        try:
            yield f"https://127.0.0.1:{listener.getsockname()[1]}/v1", accepted
        finally:
            stop.set()
            thread.join(5)


def test_a_certificate_that_cannot_be_verified_is_not_retried() -> None:
    with untrusted_tls_server() as (url, accepted), Client(base_url=url) as client:
        started = time.monotonic()
        with pytest.raises(ConnectionFailedError) as caught:
            client.stream("hi", model="m", request_max_retries=4)
        elapsed = time.monotonic() - started
    assert len(accepted) == 1
    assert elapsed < 1.5  # four retries would wait 0.2 + 0.4 + 0.8 + 1.6 s at least
    text = str(caught.value)
    assert f"error sending request to {url}/chat/completions: certificate verify failed" in text
    assert "REQUESTS_CA_BUNDLE" in text and "SSL_CERT_FILE" in text


# --- LLMX_LOG -------------------------------------------------------------------------------------

LOGGING_SCRIPT = """
import sys
import llmx_sync as llmx

url, key, header, query = sys.argv[1:]
provider = llmx.Provider("logged", url, api_key=key, http_headers={"X-Team-Token": header},
                         query_params={"sig": query}, request_max_retries=1)
with llmx.Client(provider) as client:
    print(client.stream("hi", model="m").collect().text)
"""
KEY, HEADER_VALUE, QUERY_VALUE = "sk-log-key-1234", "team-token-5678", "query-sig-9012"


def run_logged(server: LLMServer, level: str) -> str:
    """stderr of a process that imports llmx_sync with ``LLMX_LOG=level`` and streams one
    answer, after a 503 that is retried."""
    server.enqueue(error_reply(503, "busy", headers={"Retry-After": "0"}), Reply(body=text_stream_body(["ok"])))
    env = {name: value for name, value in os.environ.items() if not name.startswith("LLMX_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["LLMX_LOG"] = level
    done = subprocess.run([sys.executable, "-c", LOGGING_SCRIPT, server.url, KEY, HEADER_VALUE, QUERY_VALUE],
                          env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok\n"
    assert len(server.requests) == 2
    for secret in (KEY, HEADER_VALUE, QUERY_VALUE):
        assert secret not in done.stderr
    return done.stderr


def test_llmx_log_debug_shows_requests_and_retries_without_secrets(llm_server: LLMServer) -> None:
    stderr = run_logged(llm_server, "debug")
    assert "DEBUG" in stderr and f"POST {llm_server.chat_url}?sig=***" in stderr
    assert "X-Team-Token" in stderr and "Authorization" in stderr  # names only
    assert "INFO" in stderr and "attempt 1 of 2 failed (503 Service Unavailable)" in stderr
    assert all(line.startswith("[llmx_sync ") for line in stderr.splitlines())


def test_llmx_log_info_shows_retries_only(llm_server: LLMServer) -> None:
    stderr = run_logged(llm_server, "INFO")
    assert "attempt 1 of 2 failed (503 Service Unavailable)" in stderr
    assert "DEBUG" not in stderr and "POST " not in stderr


def test_a_bad_llmx_log_value_warns_and_logs_nothing(llm_server: LLMServer) -> None:
    stderr = run_logged(llm_server, "verbose")
    assert "LLMX_LOG='verbose' is not one of debug, info" in stderr
    assert "[llmx_sync" not in stderr and "attempt 1" not in stderr


def test_without_llmx_log_nothing_is_logged(llm_server: LLMServer) -> None:
    assert run_logged(llm_server, "") == ""

