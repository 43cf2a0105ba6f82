"""Issue #17, case 6: every public entry point refuses bad arguments with an `LlmxError`
(a subclass naming the argument) before any I/O, and no secret reaches the error.

One table: each row calls an entry point with a bad type, value or encoding, against a
loopback server that counts the requests it gets. Each must raise an `LlmxError`, the
server must have got nothing, and neither the error nor anything in its chain
(`__cause__`, `__context__`, `args`, `repr`, `str`) may hold the key or a header value.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from llm_server import LLMServer, Reply, text_stream_body

import llmx_sync
from llmx_sync import (
    Client,
    ClientClosedError,
    Connection,
    InvalidInputError,
    LlmxError,
    OutputValidationError,
    Prompt,
    Provider,
    Quirks,
    RequestOptions,
    item_from_dict,
    read_history_jsonl,
    tool,
)
from llmx_sync.notebook import display_stream
from llmx_sync.web import (
    django_sse_response,
    django_text_response,
    flask_sse_response,
    flask_text_response,
    sse_response_body,
    text_body,
)

SECRET = "sk-entry-point-SECRET-7"
HEADER_SECRET = "header-SECRET-8"
YEAR = 365 * 24 * 3600.0
DEEP = 100_000  # nesting far past any recursion limit


@dataclasses.dataclass
class Env:
    """What a row may use: a client with a key (its server counts requests), a closed one,
    and a file to read."""

    client: Client
    closed: Client
    url: str
    tmp: Path

    def source(self) -> Any:
        """A callable that would open a stream (the web helpers must refuse before calling it)."""
        return lambda: self.client.stream("hi", model="m")


class StubStream:
    """Has what a stream has, sends nothing: for the helpers' own arguments."""

    def __iter__(self) -> Iterator[Any]:
        return iter(())

    def next_event(self, timeout: float | None = None) -> Any:
        raise StopIteration

    def close(self) -> None:
        pass


def get_weather(city: str) -> str:
    """The weather.

    Args:
        city: The city.
    """
    return city


def with_varargs(*cities: str) -> str:
    return ""


def without_hints(city):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
    return city


def nested_list(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


def nested_dict(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


def stream_with(env: Env, **settings: Any) -> Any:
    return env.client.stream("hi", **{"model": "m", **settings})


ZWSP = "\u200b"  # a zero-width space, as pasted with a key

ROWS: dict[str, Callable[[Env], object]] = {
    # -- Client() --
    "Client(provider='x')": lambda env: Client(provider="x"),  # type: ignore[arg-type]
    "Client(provider={})": lambda env: Client(provider={}),  # type: ignore[arg-type]
    "Client(base_url=5)": lambda env: Client(base_url=5),  # type: ignore[arg-type]
    "Client(base_url=b'...')": lambda env: Client(base_url=b"http://127.0.0.1/v1"),  # type: ignore[arg-type]
    "Client(base_url='')": lambda env: Client(base_url=""),
    "Client(base_url='host:8080')": lambda env: Client(base_url="127.0.0.1:8080/v1"),
    "Client(base_url='http://')": lambda env: Client(base_url="http://"),
    "Client(base_url=newline)": lambda env: Client(base_url=env.url + "\n"),
    "Client(base_url=surrogate)": lambda env: Client(base_url=env.url + "/\ud800"),
    "Client(api_key=5)": lambda env: Client(base_url=env.url, api_key=5),  # type: ignore[arg-type]
    "Client(api_key=newline)": lambda env: Client(base_url=env.url, api_key=SECRET + "\n"),
    "Client(api_key=zero-width space)": lambda env: Client(base_url=env.url, api_key=SECRET + ZWSP),
    "Client(api_key=b'...')": lambda env: Client(base_url=env.url, api_key=SECRET.encode()),  # type: ignore[arg-type]
    "Client(timeout=0)": lambda env: Client(base_url=env.url, timeout=0),
    "Client(timeout=-1)": lambda env: Client(base_url=env.url, timeout=-1),
    "Client(timeout=nan)": lambda env: Client(base_url=env.url, timeout=math.nan),
    "Client(timeout=inf)": lambda env: Client(base_url=env.url, timeout=math.inf),
    "Client(timeout=1e10)": lambda env: Client(base_url=env.url, timeout=1e10),
    "Client(timeout='3')": lambda env: Client(base_url=env.url, timeout="3"),  # type: ignore[arg-type]
    "Client(timeout=True)": lambda env: Client(base_url=env.url, timeout=True),
    "Client(session='x')": lambda env: Client(base_url=env.url, session="x"),  # type: ignore[arg-type]
    "Client(max_event_bytes=0)": lambda env: Client(base_url=env.url, max_event_bytes=0),
    "Client(max_event_bytes=1e9)": lambda env: Client(base_url=env.url, max_event_bytes=1e9),  # type: ignore[arg-type]
    "Client(max_event_bytes=2**80)": lambda env: Client(base_url=env.url, max_event_bytes=2**80),
    "Client(max_buffered_bytes='x')": lambda env: Client(base_url=env.url, max_buffered_bytes="x"),  # type: ignore[arg-type]
    "Client(max_buffered_bytes=2**80)": lambda env: Client(base_url=env.url, max_buffered_bytes=2**80),
    "Client(transport='x')": lambda env: Client(base_url=env.url, transport="x"),  # type: ignore[arg-type]
    # -- Client.stream: the prompt --
    "stream(None)": lambda env: env.client.stream(None, model="m"),  # type: ignore[arg-type]
    "stream(5)": lambda env: env.client.stream(5, model="m"),  # type: ignore[arg-type]
    "stream(b'hi')": lambda env: env.client.stream(b"hi", model="m"),  # type: ignore[arg-type]
    "stream({...})": lambda env: env.client.stream({"role": "user", "content": "hi"}, model="m"),  # type: ignore[arg-type]
    "stream(['hi'])": lambda env: env.client.stream(["hi"], model="m"),  # type: ignore[list-item]
    "stream([5])": lambda env: env.client.stream([5], model="m"),  # type: ignore[list-item]
    "stream(lone surrogate)": lambda env: env.client.stream("hi \ud800", model="m"),
    "stream(surrogate in an item)": lambda env: env.client.stream(
        [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "\udc80"}]}], model="m"),
    "stream(item nested deep)": lambda env: env.client.stream([nested_dict(DEEP)], model="m"),
    "stream(list nested deep)": lambda env: env.client.stream(nested_list(DEEP), model="m"),
    # -- Client.stream: settings --
    "stream() without a model": lambda env: env.client.stream("hi"),
    "stream(model=5)": lambda env: stream_with(env, model=5),
    "stream(model=surrogate)": lambda env: stream_with(env, model="m\ud800"),
    "stream(options='x')": lambda env: env.client.stream("hi", model="m", options="x"),  # type: ignore[arg-type]
    "stream(options={'timeout': nan})": lambda env: env.client.stream(
        "hi", model="m", options={"timeout": math.nan}),  # type: ignore[arg-type]
    "stream(options={'nope': 1})": lambda env: env.client.stream("hi", model="m", options={"nope": 1}),  # type: ignore[arg-type]
    "stream(unknown=1)": lambda env: stream_with(env, unknown=1),
    "stream(tools=[{...}])": lambda env: stream_with(env, tools=[{"type": "function", "name": "f"}]),
    "stream(max_tokens=-1)": lambda env: stream_with(env, max_tokens=-1),
    "stream(max_tokens=1.5)": lambda env: stream_with(env, max_tokens=1.5),
    "stream(max_tokens=True)": lambda env: stream_with(env, max_tokens=True),
    "stream(max_tokens=2**80)": lambda env: stream_with(env, max_tokens=2**80),
    "stream(temperature='hot')": lambda env: stream_with(env, temperature="hot"),
    "stream(temperature=nan)": lambda env: stream_with(env, temperature=math.nan),
    "stream(top_p=inf)": lambda env: stream_with(env, top_p=math.inf),
    "stream(stop=5)": lambda env: stream_with(env, stop=5),
    "stream(stop=[5])": lambda env: stream_with(env, stop=[5]),
    "stream(seed='x')": lambda env: stream_with(env, seed="x"),
    "stream(seed=2**80)": lambda env: stream_with(env, seed=2**80),
    "stream(tool_choice=5)": lambda env: stream_with(env, tool_choice=5),
    "stream(tool_choice='nope')": lambda env: stream_with(env, tool_choice="nope"),
    "stream(parallel_tool_calls='yes')": lambda env: stream_with(env, parallel_tool_calls="yes"),
    "stream(include_usage='yes')": lambda env: stream_with(env, include_usage="yes"),
    "stream(orphan_tool_calls='x')": lambda env: stream_with(env, orphan_tool_calls="x"),
    "stream(extra_body='x')": lambda env: stream_with(env, extra_body="x"),
    "stream(extra_body=object)": lambda env: stream_with(env, extra_body={"a": object()}),
    "stream(extra_body=nan)": lambda env: stream_with(env, extra_body={"a": math.nan}),
    "stream(extra_body=nested deep)": lambda env: stream_with(env, extra_body=nested_dict(DEEP)),
    "stream(extra_body=surrogate)": lambda env: stream_with(env, extra_body={"a": "\ud800"}),
    "stream(extra_headers='x')": lambda env: stream_with(env, extra_headers="x"),
    "stream(extra_headers=value 5)": lambda env: stream_with(env, extra_headers={"X-A": 5}),
    "stream(extra_headers=newline)": lambda env: stream_with(env, extra_headers={"X-A": HEADER_SECRET + "\n"}),
    "stream(extra_headers=zero-width space)": lambda env: stream_with(
        env, extra_headers={"X-A": HEADER_SECRET + ZWSP}),
    "stream(extra_headers=name zwsp)": lambda env: stream_with(env, extra_headers={"X" + ZWSP: "v"}),
    "stream(extra_headers=name 5)": lambda env: stream_with(env, extra_headers={5: "v"}),
    "stream(subagent=5)": lambda env: stream_with(env, subagent=5),
    "stream(subagent=newline)": lambda env: stream_with(env, subagent="a\nb"),
    "stream(subagent=zero-width space)": lambda env: stream_with(env, subagent="a" + ZWSP),
    "stream(idle_timeout=1e10)": lambda env: stream_with(env, idle_timeout=1e10),
    "stream(idle_timeout=0)": lambda env: stream_with(env, idle_timeout=0),
    "stream(idle_timeout=nan)": lambda env: stream_with(env, idle_timeout=math.nan),
    "stream(connect_timeout=1e300)": lambda env: stream_with(env, connect_timeout=1e300),
    "stream(connect_timeout=inf)": lambda env: stream_with(env, connect_timeout=math.inf),
    "stream(timeout=1e10)": lambda env: stream_with(env, timeout=1e10),
    "stream(timeout=-1)": lambda env: stream_with(env, timeout=-1),
    "stream(request_max_retries=-1)": lambda env: stream_with(env, request_max_retries=-1),
    "stream(request_max_retries=101)": lambda env: stream_with(env, request_max_retries=101),
    "stream(request_max_retries='3')": lambda env: stream_with(env, request_max_retries="3"),
    "stream(max_retry_delay=-1)": lambda env: stream_with(env, max_retry_delay=-1),
    "stream(max_retry_delay=1e10)": lambda env: stream_with(env, max_retry_delay=1e10),
    "stream(response_format=5)": lambda env: stream_with(env, response_format=5),
    "stream(response_format='json')": lambda env: stream_with(env, response_format="json"),
    "stream(response_format=int)": lambda env: stream_with(env, response_format=int),
    "stream(response_format=bad schema)": lambda env: stream_with(env, response_format={"type": object()}),
    "stream(response_format=nested deep)": lambda env: stream_with(env, response_format=nested_dict(DEEP)),
    # -- Client.run --
    "run(tools='f')": lambda env: env.client.run("hi", model="m", tools="f"),  # type: ignore[arg-type]
    "run(tools=[5])": lambda env: env.client.run("hi", model="m", tools=[5]),  # type: ignore[list-item]
    "run(tools=[{...}])": lambda env: env.client.run("hi", model="m", tools=[{"type": "function"}]),  # type: ignore[list-item]
    "run(a tool with *args)": lambda env: env.client.run("hi", model="m", tools=[with_varargs]),
    "run(a tool without hints)": lambda env: env.client.run("hi", model="m", tools=[without_hints]),
    "run(tools=[f, f])": lambda env: env.client.run("hi", model="m", tools=[get_weather, get_weather]),
    "run(max_turns=0)": lambda env: env.client.run("hi", model="m", max_turns=0),
    "run(max_turns='3')": lambda env: env.client.run("hi", model="m", max_turns="3"),  # type: ignore[arg-type]
    "run(max_turns=True)": lambda env: env.client.run("hi", model="m", max_turns=True),
    "run(parallel='yes')": lambda env: env.client.run("hi", model="m", parallel="yes"),  # type: ignore[arg-type]
    "run(tool_timeout=0)": lambda env: env.client.run("hi", model="m", tool_timeout=0),
    "run(tool_timeout=nan)": lambda env: env.client.run("hi", model="m", tool_timeout=math.nan),
    "run(tool_timeout=1e10)": lambda env: env.client.run("hi", model="m", tool_timeout=1e10),
    "run(tool_timeout='1')": lambda env: env.client.run("hi", model="m", tool_timeout="1"),  # type: ignore[arg-type]
    "run(5)": lambda env: env.client.run(5, model="m"),  # type: ignore[arg-type]
    "run(timeout=inf)": lambda env: env.client.run("hi", model="m", timeout=math.inf),
    # -- Client.map and its parts --
    "map(5)": lambda env: env.client.map(5, model="m"),  # type: ignore[arg-type]
    "map(concurrency=0)": lambda env: env.client.map(["hi"], model="m", concurrency=0),
    "map(max_concurrency=-1)": lambda env: env.client.map(["hi"], model="m", max_concurrency=-1),
    "map(output=5)": lambda env: env.client.map(["hi"], model="m", output=5),  # type: ignore[arg-type]
    "map(timeout=1e10)": lambda env: env.client.map(["hi"], model="m", timeout=1e10),
    "map(extra_headers=zero-width space)": lambda env: env.client.map(
        ["hi"], model="m", extra_headers={"X-A": HEADER_SECRET + ZWSP}),
    "AdaptiveConcurrency(max_concurrency=0)": lambda env: llmx_sync.AdaptiveConcurrency(max_concurrency=0),
    "FixedConcurrency('x')": lambda env: llmx_sync.FixedConcurrency("x"),  # type: ignore[arg-type]
    "BatchPrompt(options=5)": lambda env: llmx_sync.BatchPrompt("hi", options=5),  # type: ignore[arg-type]
    "stream(max_output_retries=-1)": lambda env: stream_with(env, max_output_retries=-1),
    # -- Client.request_body and options --
    "request_body(5)": lambda env: env.client.request_body(5, model="m"),  # type: ignore[arg-type]
    "request_body(temperature=nan)": lambda env: env.client.request_body("hi", model="m", temperature=math.nan),
    "options(options=5)": lambda env: env.client.options(options=5),  # type: ignore[arg-type]
    # -- a closed client --
    "closed.stream()": lambda env: env.closed.stream("hi", model="m"),
    "closed.run()": lambda env: env.closed.run("hi", model="m"),
    # -- Provider --
    "Provider(5)": lambda env: Provider(5),  # type: ignore[arg-type]
    "Provider(None)": lambda env: Provider(None),  # type: ignore[arg-type]
    "Provider('p', 5)": lambda env: Provider("p", 5),  # type: ignore[arg-type]
    "Provider('p', 'x')": lambda env: Provider("p", "x"),
    "Provider(connection='x')": lambda env: Provider("p", connection="x"),  # type: ignore[arg-type]
    "Provider(connection={bad})": lambda env: Provider("p", connection={"base_url": 5}),  # type: ignore[arg-type]
    "Provider(connection={unknown})": lambda env: Provider("p", connection={"nope": 1}),  # type: ignore[arg-type]
    "Provider(defaults={bad})": lambda env: Provider("p", defaults={"timeout": -1}),  # type: ignore[arg-type]
    "Provider(defaults='x')": lambda env: Provider("p", defaults="x"),  # type: ignore[arg-type]
    "Provider(defaults={unknown})": lambda env: Provider("p", defaults={"nope": 1}),  # type: ignore[arg-type]
    "Provider(quirks='x')": lambda env: Provider("p", quirks="x"),  # type: ignore[arg-type]
    "Provider(quirks={bad})": lambda env: Provider("p", quirks={"max_tokens_param": "x"}),  # type: ignore[arg-type]
    "Provider(quirks={unknown})": lambda env: Provider("p", quirks={"nope": 1}),  # type: ignore[arg-type]
    "Client(Provider(server='x'))": lambda env: Client(Provider("p", env.url, server="x")),  # type: ignore[arg-type]
    "Provider(unknown=1)": lambda env: Provider("p", env.url, unknown=1),
    "Provider(api_key=zero-width space)": lambda env: Provider("p", env.url, api_key=SECRET + ZWSP),
    "Provider(api_key=5)": lambda env: Provider("p", env.url, api_key=5),
    "Provider(http_headers=zero-width space)": lambda env: Provider(
        "p", env.url, http_headers={"X-Key": HEADER_SECRET + ZWSP}),
    "Provider(http_headers=latin-1 ok, then nul)": lambda env: Provider(
        "p", env.url, http_headers={"X-Key": "é" + HEADER_SECRET + "\0"}),
    "Provider(query_params={k: 5})": lambda env: Provider("p", env.url, query_params={"k": 5}),
    "Provider(query_params=surrogate)": lambda env: Provider("p", env.url, query_params={"k": "\ud800"}),
    "Provider(env_key=5)": lambda env: Provider("p", env.url, env_key=5),
    "Provider(env_http_headers={H: 5})": lambda env: Provider("p", env.url, env_http_headers={"H": 5}),
    "Provider(wire_api='responses')": lambda env: Provider("p", env.url, wire_api="responses"),
    "Provider(wire_api=5)": lambda env: Provider("p", env.url, wire_api=5),
    "Provider(model=5)": lambda env: Provider("p", env.url, model=5),
    "Provider(idle_timeout=1e10)": lambda env: Provider("p", env.url, idle_timeout=1e10),
    "provider.replace(base_url=5)": lambda env: env.client.provider.replace(base_url=5),
    "provider.replace(connection='x')": lambda env: env.client.provider.replace(connection="x"),
    "provider.replace(name=5)": lambda env: env.client.provider.replace(name=5),
    # -- Provider.from_dict / from_toml / from_toml_text / builtin --
    "from_dict('x')": lambda env: Provider.from_dict("x"),
    "from_dict({})": lambda env: Provider.from_dict({}),
    "from_dict(name=5)": lambda env: Provider.from_dict({"name": 5}),
    "from_dict(stream_idle_timeout_ms=1e20)": lambda env: Provider.from_dict(
        {"name": "p", "stream_idle_timeout_ms": 10**20}),
    "from_dict(request_max_retries='x')": lambda env: Provider.from_dict({"name": "p", "request_max_retries": "x"}),
    "from_toml(5)": lambda env: Provider.from_toml(5),  # type: ignore[arg-type]
    "from_toml(None)": lambda env: Provider.from_toml(None),  # type: ignore[arg-type]
    "from_toml(b'...')": lambda env: Provider.from_toml(b"name = 'p'"),  # type: ignore[arg-type]
    "from_toml(missing file)": lambda env: Provider.from_toml(env.tmp / "missing.toml"),
    "from_toml(a directory)": lambda env: Provider.from_toml(env.tmp),
    "from_toml(name=5)": lambda env: Provider.from_toml(env.tmp / "ok.toml", 5),  # type: ignore[arg-type]
    "from_toml(not UTF-8)": lambda env: Provider.from_toml(env.tmp / "latin1.toml"),
    "from_toml(nested deep)": lambda env: Provider.from_toml(env.tmp / "deep.toml"),
    "from_toml_text(None)": lambda env: Provider.from_toml_text(None),  # type: ignore[arg-type]
    "from_toml_text(b'...')": lambda env: Provider.from_toml_text(b"name = 'p'"),  # type: ignore[arg-type]
    "from_toml_text(5)": lambda env: Provider.from_toml_text(5),  # type: ignore[arg-type]
    "from_toml_text(invalid)": lambda env: Provider.from_toml_text("name ="),
    "from_toml_text(nested deep)": lambda env: Provider.from_toml_text("a = " + "[" * DEEP + "]" * DEEP),
    "from_toml_text(table nested deep)": lambda env: Provider.from_toml_text(
        "a = " + "{b = " * DEEP + "1" + "}" * DEEP),
    "from_toml_text(name=5)": lambda env: Provider.from_toml_text("name = 'p'", 5),  # type: ignore[arg-type]
    "from_toml_text(surrogate)": lambda env: Provider.from_toml_text("name = '\ud800'"),
    "from_toml_text(key zero-width space)": lambda env: Provider.from_toml_text(
        f"name = 'p'\nbase_url = '{env.url}'\nexperimental_bearer_token = '{SECRET}{ZWSP}'"),
    "builtin(['x'])": lambda env: Provider.builtin(["x"]),  # type: ignore[arg-type]
    "builtin(5)": lambda env: Provider.builtin(5),  # type: ignore[arg-type]
    "builtin(None)": lambda env: Provider.builtin(None),  # type: ignore[arg-type]
    "builtin('nope')": lambda env: Provider.builtin("nope"),
    # -- the parts, made directly --
    "Connection(base_url=5)": lambda env: Connection(base_url=5),  # type: ignore[arg-type]
    "Connection(api_key=zero-width space)": lambda env: Connection(api_key=SECRET + ZWSP),
    "Connection(http_headers='x')": lambda env: Connection(http_headers="x"),  # type: ignore[arg-type]
    "Connection(query_params={k: None})": lambda env: Connection(query_params={"k": None}),  # type: ignore[dict-item]
    "Connection(nope=1)": lambda env: Connection(nope=1),  # type: ignore[call-arg]
    "RequestOptions(timeout=1e10)": lambda env: RequestOptions(timeout=1e10),
    "RequestOptions(idle_timeout=inf)": lambda env: RequestOptions(idle_timeout=math.inf),
    "RequestOptions(connect_timeout=1e300)": lambda env: RequestOptions(connect_timeout=1e300),
    "RequestOptions(extra_headers=zwsp)": lambda env: RequestOptions(extra_headers={"A": ZWSP}),
    "RequestOptions(nope=1)": lambda env: RequestOptions(nope=1),  # type: ignore[call-arg]
    "RequestOptions(1)": lambda env: RequestOptions(1),  # type: ignore[call-arg]
    "Quirks(tool_call_content=5)": lambda env: Quirks(tool_call_content=5),  # type: ignore[arg-type]
    "Quirks(structured_output='x')": lambda env: Quirks(structured_output="x"),  # type: ignore[arg-type]
    "Quirks(nope=1)": lambda env: Quirks(nope=1),  # type: ignore[call-arg]
    # -- tool() --
    "tool(5)": lambda env: tool(5),  # type: ignore[call-overload]
    "tool(lambda)": lambda env: tool(lambda city: city),
    "tool(name=5)": lambda env: tool(get_weather, name=5),  # type: ignore[arg-type]
    "tool(name='a b')": lambda env: tool(get_weather, name="a b"),
    "tool(description=5)": lambda env: tool(get_weather, description=5),  # type: ignore[arg-type]
    "tool(parameters='x')": lambda env: tool(get_weather, parameters="x"),  # type: ignore[arg-type]
    "tool(parameters=object)": lambda env: tool(get_weather, parameters={"type": "object", "x": object()}),
    "tool(parameters=nested deep)": lambda env: tool(get_weather, parameters=nested_dict(DEEP)),
    "tool(strict='yes')": lambda env: tool(get_weather, strict="yes"),  # type: ignore[arg-type]
    "tool(*args)": lambda env: tool(with_varargs),
    "tool(no hints)": lambda env: tool(without_hints),
    # -- Prompt and items --
    "Prompt(input=5)": lambda env: Prompt(input=5),  # type: ignore[arg-type]
    "Prompt(input=['x'])": lambda env: Prompt(input=["x"]),  # type: ignore[list-item]
    "Prompt(input=[{type: message}])": lambda env: Prompt(input=[{"type": "message"}]),
    "Prompt(input=nested deep)": lambda env: Prompt(input=[nested_dict(DEEP)]),
    "Prompt(tools='x')": lambda env: Prompt(input=[], tools="x"),  # type: ignore[arg-type]
    "Prompt(tools=[5])": lambda env: Prompt(input=[], tools=[5]),  # type: ignore[list-item]
    "Prompt(tools=[{bad}])": lambda env: Prompt(input=[], tools=[{"type": "function", "name": 5}]),
    "Prompt(instructions=5)": lambda env: Prompt(input=[], instructions=5),  # type: ignore[arg-type]
    "Prompt(output_schema=5)": lambda env: Prompt(input=[], output_schema=5),  # type: ignore[arg-type]
    "Prompt.from_text(5)": lambda env: Prompt.from_text(5),  # type: ignore[arg-type]
    "item_from_dict(5)": lambda env: item_from_dict(5),  # type: ignore[arg-type]
    "item_from_dict({})": lambda env: item_from_dict({}),
    "item_from_dict(type=5)": lambda env: item_from_dict({"type": 5}),
    "item_from_dict(nested deep)": lambda env: item_from_dict(nested_dict(DEEP)),
    "item_from_dict(other nested deep)": lambda env: item_from_dict({"type": "mystery", "x": nested_dict(DEEP)}),
    "read_history_jsonl(5)": lambda env: read_history_jsonl(5),  # type: ignore[arg-type]
    "read_history_jsonl(missing)": lambda env: read_history_jsonl(env.tmp / "missing.jsonl"),
    "read_history_jsonl(bad line)": lambda env: read_history_jsonl(["{"]),
    # -- the web helpers --
    "flask_sse_response(5)": lambda env: flask_sse_response(5),  # type: ignore[arg-type]
    "flask_sse_response(heartbeat=nan)": lambda env: flask_sse_response(env.source(), heartbeat=math.nan),
    "flask_sse_response(heartbeat=0)": lambda env: flask_sse_response(env.source(), heartbeat=0),
    "flask_sse_response(heartbeat='1')": lambda env: flask_sse_response(env.source(), heartbeat="1"),  # type: ignore[arg-type]
    "flask_sse_response(heartbeat=inf)": lambda env: flask_sse_response(env.source(), heartbeat=math.inf),
    "django_sse_response(heartbeat=-1)": lambda env: django_sse_response(env.source(), heartbeat=-1),
    "sse_response_body(heartbeat=nan)": lambda env: sse_response_body(StubStream(), heartbeat=math.nan),
    "sse_response_body(5)": lambda env: next(sse_response_body(5)),  # type: ignore[arg-type]
    "flask_text_response(5)": lambda env: flask_text_response(5),  # type: ignore[arg-type]
    "django_text_response(5)": lambda env: django_text_response(5),  # type: ignore[arg-type]
    "text_body(5)": lambda env: next(text_body(5)),  # type: ignore[arg-type]
    # -- the notebook helper --
    "display_stream(5)": lambda env: display_stream(5),  # type: ignore[arg-type]
    "display_stream(throttle=nan)": lambda env: display_stream(StubStream(), throttle=math.nan),
    "display_stream(throttle=-1)": lambda env: display_stream(StubStream(), throttle=-1),
    # -- the module functions --
    "aggregate(mode='x')": lambda env: llmx_sync.aggregate([], "x"),
    "aggregate(5)": lambda env: list(llmx_sync.aggregate(5)),  # type: ignore[arg-type]
    "collect(5)": lambda env: llmx_sync.collect(5),  # type: ignore[arg-type]
}


@pytest.fixture(scope="module")
def server() -> Iterator[LLMServer]:
    with LLMServer() as server:
        server.default = Reply(body=text_stream_body(["never"]))
        yield server


@pytest.fixture(scope="module")
def env(server: LLMServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("entry")
    (tmp / "ok.toml").write_text("name = 'p'\n")
    (tmp / "latin1.toml").write_bytes("name = 'p\xe9'\n".encode("latin-1"))
    (tmp / "deep.toml").write_text("a = " + "[" * DEEP + "]" * DEEP + "\n")
    closed = Client(base_url=server.url, api_key=SECRET)
    closed.close()
    provider = Provider("p", server.url, api_key=SECRET, http_headers={"X-Secret": HEADER_SECRET})
    with Client(provider) as client:
        yield Env(client, closed, server.url, tmp)


def error_chain(error: BaseException) -> Iterator[BaseException]:
    """`error`, its cause and context, theirs, and exceptions in their args."""
    seen: set[int] = set()
    todo = [error]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]
        todo += [arg for arg in current.args if isinstance(arg, BaseException)]


@pytest.mark.parametrize("row", list(ROWS))
def test_a_bad_argument_is_refused_before_any_io_without_a_secret(row: str, env: Env, server: LLMServer) -> None:
    before = len(server.requests)
    with pytest.raises(LlmxError) as caught:
        ROWS[row](env)
    assert len(server.requests) == before, "a request was sent"
    named = re.search(r"\((\w+)=", row)  # a row about one keyword: the error names it
    if named:
        assert named.group(1) in str(caught.value), (row, str(caught.value))
    for error in error_chain(caught.value):
        for text in (repr(error), str(error), *map(repr, error.args)):
            assert SECRET not in text and HEADER_SECRET not in text, (row, type(error), text)


def test_the_table_covers_every_entry_point() -> None:
    # A new public function or class with arguments must get rows here.
    covered = {row.split("(")[0].split(".")[-1] for row in ROWS}
    entry_points = {"Client", "stream", "run", "request_body", "options", "Provider", "replace", "from_dict",
                    "from_toml", "from_toml_text", "builtin", "Connection", "RequestOptions", "Quirks", "tool",
                    "Prompt", "from_text", "item_from_dict", "read_history_jsonl", "flask_sse_response",
                    "flask_text_response", "django_sse_response", "django_text_response", "sse_response_body",
                    "text_body", "display_stream", "aggregate", "collect", "map", "AdaptiveConcurrency",
                    "FixedConcurrency", "BatchPrompt"}
    assert entry_points <= covered, entry_points - covered


def test_a_closed_client_says_so() -> None:
    client = Client(base_url="http://127.0.0.1:9/v1")
    client.close()
    with pytest.raises(ClientClosedError, match="closed") as caught:
        client.stream("hi", model="m")
    assert isinstance(caught.value, RuntimeError)  # what it raised before, still caught the same way


@pytest.mark.parametrize(("where", "settings"), [
    ("api_key", {"api_key": "abc" + ZWSP + "def"}),
    ("http_headers['X-Key']", {"http_headers": {"X-Key": "abc" + ZWSP + "def"}}),
])
def test_a_header_that_is_not_latin_1_names_the_header_and_the_position(where: str, settings: Any) -> None:
    with pytest.raises(InvalidInputError) as caught:
        Provider("p", "http://127.0.0.1/v1", **settings)
    assert caught.value.where == where
    assert "character 4 (U+200B" in str(caught.value)
    assert "abc" not in str(caught.value)


def test_a_dict_for_a_part_is_read_as_that_part() -> None:
    provider = Provider("p", connection={"base_url": "http://127.0.0.1/v1", "api_key": SECRET},
                        defaults={"model": "m", "max_tokens": 10}, quirks={"tool_call_content": None})
    assert provider.connection.base_url == "http://127.0.0.1/v1" and provider.connection.api_key == SECRET
    assert (provider.defaults.model, provider.defaults.max_tokens) == ("m", 10)
    assert provider.quirks.tool_call_content is None
    assert Client(provider).options(options={"temperature": 0.5}).temperature == 0.5  # type: ignore[arg-type]


def test_a_session_is_still_a_session() -> None:
    with requests.Session() as session, Client(base_url="http://127.0.0.1/v1", session=session) as client:
        assert client.provider.connection.base_url == "http://127.0.0.1/v1"


def test_structured_output_nested_too_deep_is_an_output_validation_error(server: LLMServer) -> None:
    # (a RecursionError out of collect() before)
    deep = "[" * DEEP + "]" * DEEP
    server.enqueue(Reply(body=text_stream_body([deep[i:i + 4096] for i in range(0, len(deep), 4096)])))
    with Client(base_url=server.url) as client:
        stream = client.stream("hi", model="m", response_format={"type": "array"})
        with pytest.raises(OutputValidationError, match="nested too deep to read"):
            stream.collect()
