"""`client.run` and `response_format` against real llama.cpp servers on 127.0.0.1
(SmolLM2-135M, temperature 0).

The tool loop runs on llama-server with a tool-capable template. The 135M model never
opens a ``<tool_call>`` by itself, so the first turn's history ends with an assistant
message that does (llama-server continues it); that needs ``tool_choice="required"``:
without it the pinned llama-server answers such a prefill with an in-stream error
("does not match the expected peg-native format"). It does not hold the model to
"required" once no call is prefilled, so the second turn answers in words.

Which `structured_output` mode each server needs (what structured.py's docstring says):
llama-server takes ``json_schema`` and ``json_object`` (a grammar either way) and its
model ignores the ``tools`` mode; llama-cpp-python's server takes ``json_object`` and
``tools`` and refuses ``json_schema``. With no mode set, the client finds the one that
works (``json_schema`` on llama-server, ``json_object`` on llama-cpp-python).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest
from local_support import needs_llama_cpp, needs_llama_server
from test_sdk_local import tools_llama_server  # noqa: F401  (a fixture, used by name)

from llmx_sync import (
    BadRequestError,
    Client,
    Completed,
    FunctionCall,
    FunctionCallOutput,
    Message,
    OutputJsonDelta,
    OutputText,
    OutputValidationError,
    Provider,
    ToolResult,
)
from llmx_sync.local import LlamaServerBinary, LocalServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

# What the tool answers: words the model cannot have made up, so an answer that repeats
# them was written from the tool's result.
WEATHER_REPORT = "Paris: hazy, 17 C, wind from the north-east"


@dataclass
class City:
    name: str
    country: str
    population: int


# --- the tool loop ---------------------------------------------------------------------------


@needs_llama_server
def test_llama_server_runs_a_python_function_then_answers_from_its_result(
        tools_llama_server: LlamaServerBinary) -> None:  # noqa: F811
    cities: list[str] = []

    def get_weather(city: str) -> str:
        """Get the current weather in a city.

        Args:
            city: The city name.
        """
        cities.append(city)
        return WEATHER_REPORT

    opening = Message(role="assistant", content=[OutputText("<tool_call>\n")])
    with Client(base_url=tools_llama_server.base_url) as client:
        run = client.run([Message.user("What is the weather in Paris?"), opening],
                         model=str(tools_llama_server.model_id), tools=[get_weather], max_turns=3,
                         temperature=0, max_tokens=64, tool_choice="required")
        events = list(run)
        result = run.collect()

    assert cities and set(cities) == {"Paris"}, events
    results = [event for event in events if isinstance(event, ToolResult)]
    assert [(r.name, r.output, r.error) for r in results] == [("get_weather", WEATHER_REPORT, None)] * len(cities)
    assert [e.turn for e in events if isinstance(e, Completed)] == [1, 2]
    assert run.turn == 2

    history = result.history
    calls = [item for item in history if isinstance(item, FunctionCall)]
    outputs = [item for item in history if isinstance(item, FunctionCallOutput)]
    assert [call.call_id for call in calls] == [output.call_id for output in outputs] == [r.call_id for r in results]
    # The answer comes last, after the outputs, in words, and from what the tool said.
    assert history.index(outputs[-1]) == len(history) - 2 and isinstance(history[-1], Message)
    assert result.tool_calls == [] and result.text == history[-1].text
    assert "hazy" in result.text, result.text  # (the 135M model repeats the tool's response)


# --- structured output -----------------------------------------------------------------------


def structured_client(base_url: str, mode: str) -> Client:
    # No retries: a refusal is the server's answer, not a passing failure.
    return Client(Provider("local-test", base_url, structured_output=mode,  # type: ignore[arg-type]
                           request_max_retries=0))


def ask_for_a_city(client: Client, model: str) -> tuple[list[object], City]:
    stream = client.stream("Describe Paris as JSON.", model=model, temperature=0, max_tokens=80,
                           response_format=City)
    values = [event.value for event in stream if isinstance(event, OutputJsonDelta)]
    parsed = stream.collect().parsed
    assert isinstance(parsed, City)
    return values, parsed


@needs_llama_server
@pytest.mark.parametrize("mode", ["json_schema", "json_object"])
def test_llama_server_returns_a_valid_instance(llama_server: LlamaServerBinary, mode: str) -> None:
    with structured_client(llama_server.base_url, mode) as client:
        values, city = ask_for_a_city(client, str(llama_server.model_id))
    assert city.name.strip() and city.population >= 0
    assert len(values) > 2 and values[-1] == dataclasses.asdict(city)


@needs_llama_server
def test_llama_server_model_answers_the_tools_mode_in_words(llama_server: LlamaServerBinary) -> None:
    with structured_client(llama_server.base_url, "tools") as client, \
            pytest.raises(OutputValidationError, match="did not call 'City'"):
        ask_for_a_city(client, str(llama_server.model_id))


@needs_llama_cpp
@pytest.mark.parametrize("mode", ["json_object", "tools"])
def test_llama_cpp_python_returns_a_valid_instance(server: LocalServer, mode: str) -> None:
    with structured_client(server.base_url, mode) as client:
        values, city = ask_for_a_city(client, str(server.model_id))
    assert city.name.strip() and city.population >= 0
    assert len(values) > 2 and values[-1] == dataclasses.asdict(city)


@needs_llama_cpp
def test_llama_cpp_python_refuses_the_json_schema_mode(server: LocalServer) -> None:
    # With the mode set by the provider, the refusal is raised (and not retried: a 500 that
    # is a validation error is a BadRequestError).
    with structured_client(server.base_url, "json_schema") as client, \
            pytest.raises(BadRequestError, match="Input should be 'text' or 'json_object'"):
        ask_for_a_city(client, str(server.model_id))


@needs_llama_cpp
def test_without_a_mode_set_the_client_finds_json_object_on_llama_cpp_python(server: LocalServer) -> None:
    with Client(base_url=server.base_url) as client:
        values, city = ask_for_a_city(client, str(server.model_id))
        assert city.name.strip() and values[-1] == dataclasses.asdict(city)
        assert client.request_body("x", model=str(server.model_id), response_format=City)["response_format"][
            "type"] == "json_object"  # remembered


@needs_llama_server
def test_without_a_mode_set_llama_server_answers_json_schema(llama_server: LlamaServerBinary) -> None:
    with Client(base_url=llama_server.base_url) as client:
        stream = client.stream("Describe Paris as JSON.", model=str(llama_server.model_id), temperature=0,
                               max_tokens=80, response_format=City)
        result = stream.collect()
    assert isinstance(result.parsed, City) and result.output_mode == "json_schema"
