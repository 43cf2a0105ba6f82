"""llmx_sync.client: what is sent, settings precedence, errors before any I/O, the
default provider, and a plain ``for`` loop where users write one (a running asyncio
loop's thread, as in Jupyter; a Flask view behind Werkzeug)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
import requests
from llm_server import LLMServer, Reply, error_reply, text_stream_body
from sockets import wait_for
from streaming_support import RELEASE_TIMEOUT, make_client, reader_threads

import llmx_sync.providers as providers_module
from llmx_sync.client import Client, user_agent
from llmx_sync.errors import (
    AuthenticationError,
    ConfigError,
    EnvVarError,
    InternalServerError,
    InvalidInputError,
    RetryLimitReachedError,
    UnsupportedOperationError,
)
from llmx_sync.events import OutputTextDelta
from llmx_sync.local import INSTALL_HINT, LocalDependencyError
from llmx_sync.prompt import Prompt
from llmx_sync.providers import Provider, default_provider
from llmx_sync.settings import RequestOptions

SECRET = "sk-test-SECRET-123"
# The tests that read an answer run on both body readers (the socket fast path and
# urllib3's public API); see `body_reader` in conftest.py.
both_body_readers = pytest.mark.usefixtures("body_reader")


@pytest.fixture(autouse=True)
def no_reader_left() -> Iterator[None]:
    yield
    assert wait_for(lambda: not reader_threads(), RELEASE_TIMEOUT)


def ok_reply(*tokens: str) -> Reply:
    return Reply(body=text_stream_body(list(tokens) or ["ok"]))


# --- what is sent ----------------------------------------------------------------------------


@both_body_readers
def test_headers_sent(llm_server: LLMServer) -> None:
    provider = Provider(name="p", base_url=llm_server.url, api_key=SECRET,
                        http_headers={"X-Team": "blue", "User-Agent": "my-app/1"})
    llm_server.enqueue(ok_reply(), ok_reply())
    with Client(provider) as client:
        client.stream("hi", model="m", subagent="review").collect()
        client.stream("hi", model="m", extra_headers={"X-Team": "red", "Accept": "*/*"}).collect()
    first, second = llm_server.requests
    assert first.path == "/v1/chat/completions" and first.method == "POST"
    assert first.headers["Authorization"] == f"Bearer {SECRET}"
    assert first.headers["Accept"] == "text/event-stream"
    assert first.headers["Content-Type"] == "application/json"
    assert first.headers["Accept-Encoding"] == "identity"
    assert first.headers["User-Agent"] == "my-app/1"  # the provider's replaces ours
    assert first.headers["X-Team"] == "blue"
    assert first.headers["x-openai-subagent"] == "review"
    assert "x-openai-subagent" not in second.headers
    assert second.headers["X-Team"] == "red"  # extra_headers have the last word
    assert second.headers["Accept"] == "*/*"
    assert first.json()["messages"] == [{"role": "user", "content": "hi"}]
    assert first.json()["model"] == "m" and first.json()["stream"] is True


@both_body_readers
def test_default_user_agent(llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMX_API_KEY", raising=False)  # Client(base_url=...) would send it
    llm_server.enqueue(ok_reply())
    with Client(base_url=llm_server.url) as client:
        client.stream("hi", model="m").collect()
    assert llm_server.requests[0].headers["User-Agent"] == user_agent()
    assert user_agent().startswith("llmx_sync/")
    assert "Authorization" not in llm_server.requests[0].headers


@both_body_readers
def test_prompt_forms(llm_server: LLMServer) -> None:
    llm_server.enqueue(ok_reply(), ok_reply(), ok_reply())
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
    with Client(base_url=llm_server.url) as client:
        client.stream(Prompt(input=[item], instructions="Be brief."), model="m").collect()
        client.stream([item], model="m").collect()
        client.stream("hi", model="m").collect()
    bodies = [r.json()["messages"] for r in llm_server.requests]
    assert bodies[0] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    assert bodies[1] == bodies[2] == [{"role": "user", "content": "hi"}]


def test_no_secret_in_repr() -> None:
    client = Client(base_url="http://127.0.0.1:9/v1", api_key=SECRET)
    assert SECRET not in repr(client)
    assert "Client(provider=Provider(name='custom'" in repr(client)
    client.close()


def test_base_url_and_api_key_replace_the_providers() -> None:
    provider = Provider(name="p", base_url="http://a.example/v1", env_key="NOT_SET_ANYWHERE")
    with Client(provider, base_url="http://b.example/v1", api_key=SECRET) as client:
        assert client.provider.connection.base_url == "http://b.example/v1"
        assert client.provider.connection.bearer_token() == SECRET
        assert client.provider.name == "p"


class CountingServer:
    """Stands in for the shared `LocalServer`: counts the clients using it."""

    def __init__(self) -> None:
        self.users = 0
        self.acquired = 0

    def acquire(self) -> None:
        self.users += 1
        self.acquired += 1

    def release(self) -> None:
        self.users -= 1


def test_a_client_keeps_its_providers_server_running_while_open() -> None:
    # (was local.use_shared_server: LocalServer.acquire/release, called by Client)
    server = CountingServer()
    provider = Provider("local", "http://127.0.0.1:9/v1", server=server)  # type: ignore[arg-type]
    first, second = Client(provider), Client(provider)
    assert server.users == 2
    first.close()
    first.close()  # idempotent: released once
    assert server.users == 1
    with Client(provider.replace(max_tokens=5)):  # other settings: still that server's URL
        assert server.users == 2
    second.close()
    assert server.users == 0
    # Another URL is another server's: this client neither starts nor stops the local one.
    with Client(provider, base_url="http://127.0.0.1:10/v1") as elsewhere:
        assert elsewhere.provider.server is None
    assert server.acquired == 3


# --- settings precedence ---------------------------------------------------------------------


@both_body_readers
def test_keyword_settings_win_over_the_provider(llm_server: LLMServer) -> None:
    llm_server.enqueue(ok_reply(), ok_reply())
    with make_client(llm_server, max_tokens=100, include_usage=False) as client:
        client.stream("hi", model="m").collect()
        client.stream("hi", model="m", max_tokens=5, include_usage=True, temperature=0.5, seed=7,
                      extra_body={"top_k": 3}).collect()
    provider_body, keyword_body = (r.json() for r in llm_server.requests)
    assert provider_body["max_tokens"] == 100 and "stream_options" not in provider_body
    assert keyword_body["max_tokens"] == 5 and keyword_body["stream_options"] == {"include_usage": True}
    assert (keyword_body["temperature"], keyword_body["seed"], keyword_body["top_k"]) == (0.5, 7, 3)


def test_settings_not_given_stay_the_providers_and_none_is_a_value() -> None:
    # A setting counts as given only when named; None is a value: "leave it out" for
    # max_tokens, "no limit" for timeout, and refused where it means nothing.
    provider = Provider("p", "http://127.0.0.1:9/v1", idle_timeout=2.5, request_max_retries=1, max_tokens=9,
                        timeout=30)
    with Client(provider) as client:
        options = client.options(model="m", max_tokens=None, timeout=None)
        assert (options.idle_timeout, options.request_max_retries, options.max_tokens, options.timeout) == (
            2.5, 1, None, None)
        assert "max_tokens" not in client.request_body("hi", model="m", max_tokens=None)
        with pytest.raises(InvalidInputError, match=r"^idle_timeout: expected a finite number of seconds above 0"):
            client.options(model="m", idle_timeout=None)


@both_body_readers
def test_request_max_retries_keyword_wins(llm_server: LLMServer) -> None:
    retry_now = {"Retry-After": "0"}
    llm_server.enqueue(error_reply(503, headers=retry_now), ok_reply(),
                       error_reply(503, headers=retry_now), ok_reply())
    with make_client(llm_server, request_max_retries=0) as client:
        with pytest.raises(InternalServerError):
            client.stream("hi", model="m")
        assert len(llm_server.requests) == 1  # not retried
        llm_server.enqueue(error_reply(503, headers=retry_now))
        assert client.stream("hi", model="m", request_max_retries=1).collect().text == "ok"


@both_body_readers
def test_max_retry_delay_keyword_wins(llm_server: LLMServer) -> None:
    llm_server.enqueue(error_reply(429, headers={"Retry-After": "0.3"}), ok_reply())
    with make_client(llm_server, max_retry_delay=0.1) as client:
        with pytest.raises(RetryLimitReachedError):
            client.stream("hi", model="m")
        llm_server.enqueue(error_reply(429, headers={"Retry-After": "0.3"}), ok_reply())
        assert client.stream("hi", model="m", max_retry_delay=1.0).collect().text == "ok"


# --- errors before any I/O -------------------------------------------------------------------


def test_errors_before_io(llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMX_TEST_MISSING_KEY", raising=False)
    with Client(base_url=llm_server.url) as client:
        with pytest.raises(InvalidInputError, match="^response_format: expected a dataclass"):
            client.stream(Prompt(input=[]), model="m", response_format=[1, 2])
        with pytest.raises(InvalidInputError, match="^output_schema: expected a dataclass"):
            Prompt(input=[], output_schema=[1, 2])
    with Client(Provider(name="p", base_url=llm_server.url, env_key="LLMX_TEST_MISSING_KEY")) as client:
        with pytest.raises(EnvVarError, match="LLMX_TEST_MISSING_KEY"):
            client.stream("hi", model="m")
    # The Responses API is refused even earlier now: when the provider is made.
    with pytest.raises(UnsupportedOperationError, match="Responses API"):
        Provider(name="p", base_url=llm_server.url, wire_api="responses")
    with Client(base_url=llm_server.url) as client:
        with pytest.raises(InvalidInputError, match=r"^max_tokens: expected a non-negative integer"):
            client.stream("hi", model="m", max_tokens=-1)
    with pytest.raises(InvalidInputError, match=r"^max_buffered_bytes: "):
        Client(base_url=llm_server.url, max_buffered_bytes=0)
    assert llm_server.requests == []
    assert llm_server.connections_accepted == 0


# --- the default provider --------------------------------------------------------------------


@pytest.fixture
def bare_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for var in ("LLMX_BASE_URL", "LLMX_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL", "LLMX_MAX_TOKENS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(providers_module, "_answers", lambda address: False)
    return monkeypatch


def test_default_provider_from_the_environment(bare_env: pytest.MonkeyPatch) -> None:
    bare_env.setenv("OPENAI_API_KEY", SECRET)
    assert default_provider().name == "OpenAI"
    bare_env.setenv("LLMX_BASE_URL", "http://127.0.0.1:4999/v1")
    provider = default_provider()
    assert (provider.name, provider.connection.base_url) == ("LiteLLM", "http://127.0.0.1:4999/v1")


def test_llmx_base_url_alone_needs_no_key(bare_env: pytest.MonkeyPatch, llm_server: LLMServer) -> None:
    bare_env.setenv("LLMX_BASE_URL", llm_server.url)
    llm_server.enqueue(Reply(body=text_stream_body(["no key"])), Reply(body=text_stream_body(["a key"])),
                       error_reply(401, "Missing bearer token"))
    with Client() as client:
        assert client.stream("hi", model="m").collect().text == "no key"
        bare_env.setenv("LLMX_API_KEY", SECRET)  # read when a request is sent, like any env_key
        assert client.stream("hi", model="m").collect().text == "a key"
        bare_env.delenv("LLMX_API_KEY")
        with pytest.raises(AuthenticationError) as caught:
            client.stream("hi", model="m")
    assert [request.headers.get("Authorization") for request in llm_server.requests] == [
        None, f"Bearer {SECRET}", None]
    assert caught.value.hint == "No API key was sent: pass Client(api_key=...) or set $LLMX_API_KEY"
    assert "env_key='LLMX_API_KEY' (optional)" in repr(client.provider)
    # The built-in named explicitly is llmx's: its key is required.
    with pytest.raises(EnvVarError, match="LLMX_API_KEY"):
        Provider.builtin("litellm").connection.headers()


@pytest.mark.parametrize("value", ["400", " 400 "])
def test_llmx_max_tokens_bounds_the_default_providers_answers(bare_env: pytest.MonkeyPatch, llm_server: LLMServer,
                                                              value: str) -> None:
    bare_env.setenv("LLMX_BASE_URL", llm_server.url)
    bare_env.setenv("LLMX_MAX_TOKENS", value)
    llm_server.enqueue(Reply(body=text_stream_body(["short"])), Reply(body=text_stream_body(["longer"])))
    with Client() as client:
        assert client.stream("hi", model="m").collect().text == "short"
        client.stream("hi", model="m", max_tokens=2000).collect()  # asked for more: sent as asked
    assert [request.json()["max_tokens"] for request in llm_server.requests] == [400, 2000]


@pytest.mark.parametrize("value", ["0", "-5", "many", "1e3", str(2**31)])
def test_a_bad_llmx_max_tokens_is_a_config_error_before_any_request(bare_env: pytest.MonkeyPatch,
                                                                    llm_server: LLMServer, value: str) -> None:
    bare_env.setenv("LLMX_BASE_URL", llm_server.url)
    bare_env.setenv("LLMX_MAX_TOKENS", value)
    with pytest.raises(ConfigError, match="LLMX_MAX_TOKENS must be a positive whole number of tokens"):
        Client()
    assert llm_server.requests == []


def test_an_optional_key_from_a_config_file(bare_env: pytest.MonkeyPatch) -> None:
    provider = Provider.from_toml_text('name = "vllm"\nbase_url = "http://127.0.0.1:8000/v1"\n'
                                       'env_key = "VLLM_KEY"\nenv_key_required = false\n')
    bare_env.delenv("VLLM_KEY", raising=False)
    assert provider.connection.headers() == {}
    bare_env.setenv("VLLM_KEY", SECRET)
    assert provider.connection.headers() == {"Authorization": f"Bearer {SECRET}"}
    with pytest.raises(InvalidInputError, match="env_key_required"):
        Provider("p", "http://127.0.0.1:8000/v1", env_key_required="no")


def test_default_provider_a_litellm_proxy_on_localhost(bare_env: pytest.MonkeyPatch) -> None:
    bare_env.setattr(providers_module, "_answers", lambda address: address == ("localhost", 4000))
    assert default_provider().name == "LiteLLM"


def test_no_provider_anywhere_says_how_to_set_one(bare_env: pytest.MonkeyPatch) -> None:
    def no_local(name: str) -> Provider:
        raise ImportError("no local server here")

    bare_env.setattr(Provider, "builtin", staticmethod(no_local))
    with pytest.raises(ConfigError) as caught:
        Client()
    for hint in ("LLMX_BASE_URL", "OPENAI_API_KEY", "Client(base_url="):
        assert hint in str(caught.value)


def test_why_the_local_model_cannot_run_reaches_the_error(bare_env: pytest.MonkeyPatch) -> None:
    # `bare_env` makes the localhost:4000 probe answer False, so "local" is the last resort.
    reason = LocalDependencyError(f"llama-server is not available; {INSTALL_HINT}")
    asked: list[str] = []

    def no_local(name: str) -> Provider:
        asked.append(name)
        raise reason

    bare_env.setattr(Provider, "builtin", staticmethod(no_local))
    with pytest.raises(ConfigError) as caught:
        default_provider()
    assert asked == ["local"]
    assert caught.value.__cause__ is reason
    assert "pip install 'llmx_sync[local]'" in str(caught.value)
    assert "LLMX_BASE_URL" in str(caught.value)


def test_probe_is_quick_and_bounded() -> None:
    assert providers_module._answers(("127.0.0.1", 9)) is False  # discard port: nobody listens


# --- where users write their loops ------------------------------------------------------------


@both_body_readers
def test_for_loop_inside_a_running_event_loop(llm_server: LLMServer) -> None:
    """A Jupyter cell runs in a thread with a running asyncio loop; the SDK must not care."""
    llm_server.enqueue(ok_reply("in ", "a loop"))

    async def cell() -> str:
        with Client(base_url=llm_server.url) as client:
            return "".join(e.delta for e in client.stream("hi", model="m") if isinstance(e, OutputTextDelta))

    assert asyncio.run(cell()) == "in a loop"


@both_body_readers
def test_flask_view_behind_werkzeug(llm_server: LLMServer) -> None:
    flask = pytest.importorskip("flask")
    from werkzeug.serving import make_server

    llm_server.default = ok_reply("from ", "flask")
    shared = Client(base_url=llm_server.url)  # one module-level client for all requests
    app = flask.Flask("llmx_sync_test")

    @app.route("/ask")
    def ask() -> flask.Response:
        stream = shared.stream(flask.request.args["q"], model="m")

        def body() -> Iterator[str]:
            with stream:
                yield from stream.text_stream

        return flask.Response(body(), mimetype="text/plain")

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="test-werkzeug", daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/ask"
        answers: list[str] = []
        workers = [threading.Thread(target=lambda: answers.append(requests.get(url, params={"q": "x"}, timeout=10).text))
                   for _ in range(5)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(10)
        assert answers == ["from flask"] * 5
    finally:
        server.shutdown()
        thread.join(5)
        shared.close()


def test_the_same_keyword_settings_are_made_once_and_checked_by_type() -> None:
    # Client.options keeps what the same plain keywords gave; the key holds each value's
    # type, so a value equal to a checked one but of another type is checked on its own.
    client = Client(base_url="http://127.0.0.1:9/v1", api_key="k")
    first = client.options(model="m", temperature=0.5, parallel_tool_calls=True)
    assert client.options(temperature=0.5, parallel_tool_calls=True, model="m") is first
    with pytest.raises(InvalidInputError, match="parallel_tool_calls"):
        client.options(model="m", temperature=0.5, parallel_tool_calls=1)  # 1 == True, but no bool
    assert client.options(model="m", temperature=1).temperature == 1
    assert type(client.options(model="m", temperature=1.0).temperature) is float
    # A list could change between calls: never kept, always read as it is now.
    stop = ["a"]
    assert client.options(model="m", stop=stop).stop == ["a"]
    stop.append("b")
    assert client.options(model="m", stop=stop).stop == ["a", "b"]
    # A provider put in the client's place later counts from the next call.
    client.provider = client.provider.replace(max_tokens=7)
    assert client.options(model="m", temperature=0.5, parallel_tool_calls=True).max_tokens == 7
    # Given settings on top of the keywords are not mixed up with the keywords alone.
    assert client.options(options=RequestOptions(max_tokens=5), model="m").max_tokens == 5
    assert client.options(model="m").max_tokens == 7
