"""Finding a request shape the server accepts (`llmx_sync.negotiation`, `Client`): the
structured-output mode that falls back after a refusal, the forced tool choice sent as
``"required"`` with that tool alone to llama-server, and the rules each decision rests on,
against the scripted server with bodies and headers recorded from the real servers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from llm_server import (
    LLMServer,
    Reply,
    chat_chunk,
    error_reply,
    json_reply,
    sse_done,
    sse_event,
    text_stream_body,
    tool_call_delta,
)

from llmx_sync import BadRequestError, Client, FunctionTool, InternalServerError, Message, Prompt, Provider
from llmx_sync.chat.request import build_chat_request, force_with_required, forced_function
from llmx_sync.errors import UnexpectedStatusError, is_validation_error, status_error
from llmx_sync.negotiation import Learned, is_llama_server, mode_candidates, refuses_mode, refuses_tool_choice
from llmx_sync.settings import Quirks, RequestOptions

# llama-cpp-python 0.3.36's answer to response_format json_schema, as its server sent it
# (status 500, `server: uvicorn`): the text of FastAPI's RequestValidationError.
LLAMA_CPP_JSON_SCHEMA_REFUSAL = {"error": {
    "message": "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
               "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema', 'ctx': {'expected': "
               "\"'text' or 'json_object'\"}}\n\n  File \"/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages/"
               "llama_cpp/server/app.py\", line 376, in create_chat_completion\n    POST /v1/chat/completions",
    "type": "internal_server_error", "param": None, "code": None}}
# llama-cpp-python's answer to `"content": null` on a tool-call message: a validation error
# about `messages`, not about the mode.
LLAMA_CPP_CONTENT_REFUSAL = {"error": {
    "message": "2 validation errors:\n  {'type': 'string_type', 'loc': ('body', 'messages', 1, "
               "'typed-dict', 'content'), 'msg': 'Input should be a valid string', 'input': None}",
    "type": "internal_server_error", "param": None, "code": None}}
# llama.cpp's error shape (tools/server/server-common.cpp, format_error_response).
LLAMA_CPP_INVALID_REQUEST = {"error": {"code": 400, "message": "Cannot use custom grammar constraints with tools.",
                                       "type": "invalid_request_error"}}
# FastAPI's own answer to a request its model refuses (status 422).
FASTAPI_DETAIL = {"detail": [{"type": "literal_error", "loc": ["body", "response_format", "type"],
                              "msg": "Input should be 'text' or 'json_object'", "input": "json_schema"}]}

WEATHER = FunctionTool("get_weather", "Current weather", {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
TIME = FunctionTool("get_time", "Current time", {
    "type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]})


@dataclass
class City:
    name: str
    country: str


def answer(text: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(body=text_stream_body([text]), headers=headers or {})


def call_reply(name: str, arguments: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(headers=headers or {}, body=[
        sse_event(chat_chunk(role="assistant", tool_calls=[tool_call_delta(0, id="call_1", name=name,
                                                                           arguments=arguments)])),
        sse_event(chat_chunk(finish_reason="tool_calls")), sse_done()])


def status_of(body: Any, status: int) -> UnexpectedStatusError:
    return status_error(status, json.dumps(body))


# --- the rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "expected"), [
    (LLAMA_CPP_JSON_SCHEMA_REFUSAL, True),
    (LLAMA_CPP_CONTENT_REFUSAL, True),
    (LLAMA_CPP_INVALID_REQUEST, True),
    (FASTAPI_DETAIL, True),
    ({"error": {"message": "model overloaded, try again", "type": "server_error"}}, False),
    ({"error": "upstream connect error"}, False),
    ({"detail": "Internal Server Error"}, False),
    ("<html><body>502 Bad Gateway</body></html>", False),
])
def test_a_validation_error_is_told_from_a_server_failure(body: Any, expected: bool) -> None:
    assert is_validation_error(body if isinstance(body, str) else json.dumps(body)) is expected


def test_a_5xx_that_refuses_the_request_is_a_bad_request_error_with_its_status() -> None:
    error = status_of(LLAMA_CPP_JSON_SCHEMA_REFUSAL, 500)
    assert isinstance(error, BadRequestError) and not isinstance(error, InternalServerError)
    assert error.status == 500
    assert str(error).startswith("unexpected status 500 Internal Server Error: 1 validation error:")
    assert isinstance(status_of({"error": {"message": "overloaded"}}, 503), InternalServerError)


@pytest.mark.parametrize(("body", "status", "expected"), [
    (LLAMA_CPP_JSON_SCHEMA_REFUSAL, 500, True),  # a validation error about response_format
    (LLAMA_CPP_CONTENT_REFUSAL, 500, False),  # a validation error about something else
    ({"error": {"message": "Invalid parameter: 'response_format' of type 'json_schema' is not supported with "
                           "this model.", "type": "invalid_request_error", "param": "response_format"}}, 400, True),
    ({"error": {"message": "context too long", "type": "invalid_request_error"}}, 400, True),  # any 400
    (FASTAPI_DETAIL, 422, True),
    ({"error": {"message": "response_format is broken today", "type": "server_error"}}, 500, False),  # not a refusal
    ({"error": {"message": "no such model"}}, 404, False),
])
def test_what_counts_as_a_refusal_of_the_mode(body: Any, status: int, expected: bool) -> None:
    assert refuses_mode(status_of(body, status)) is expected


@pytest.mark.parametrize(("body", "status", "expected"), [
    ({"error": {"message": "tool_choice: Input should be a valid string", "type": "invalid_request_error"}}, 400, True),
    ({"error": {"message": "Invalid tool_choice: {'type': 'function'}"}}, 500, False),  # a failure, not a refusal
    ({"error": {"message": "context too long", "type": "invalid_request_error"}}, 400, False),
])
def test_what_counts_as_a_refusal_of_the_tool_choice_object(body: Any, status: int, expected: bool) -> None:
    assert refuses_tool_choice(status_of(body, status)) is expected


@pytest.mark.parametrize(("headers", "expected"), [
    ({"Server": "llama.cpp"}, True),  # what llama-server sends with every response
    ({"server": "llama.cpp"}, True),
    ({"llm_provider-server": "llama.cpp", "server": "uvicorn"}, True),  # through a LiteLLM proxy
    ({"server": "uvicorn"}, False),  # llama-cpp-python, LiteLLM, vLLM
    ({"llm_provider-server": "uvicorn"}, False),
    ({"server": "cloudflare"}, False),
    ({}, False),
])
def test_llama_server_is_known_by_its_server_header(headers: dict[str, str], expected: bool) -> None:
    from requests.structures import CaseInsensitiveDict

    assert is_llama_server(CaseInsensitiveDict(headers)) is expected


def test_the_modes_tried_are_the_providers_else_the_learned_one_else_all() -> None:
    assert mode_candidates(Quirks(), Learned()) == ("json_schema", "json_object", "tools")
    assert mode_candidates(Quirks(), Learned(structured_output="json_object")) == ("json_object",)
    assert mode_candidates(Quirks(structured_output="tools"), Learned(structured_output="json_object")) == ("tools",)


# --- the forced tool as "required" ---------------------------------------------------------------


def test_forced_function_reads_the_forcing_object() -> None:
    assert forced_function({"type": "function", "function": {"name": "get_weather"}}) == "get_weather"
    for other in ("required", "auto", None, {"type": "function"}, {"type": "allowed_tools"}):
        assert forced_function(other) is None


def test_required_form_keeps_the_forced_function_alone() -> None:
    prompt = Prompt(input=[Message.user("Weather in Paris?")], tools=[WEATHER, TIME])
    options = RequestOptions(model="m", tool_choice="get_weather")
    as_object = build_chat_request(prompt, options, Quirks(forced_tool_choice="object"))
    assert as_object["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert [tool["function"]["name"] for tool in as_object["tools"]] == ["get_weather", "get_time"]
    as_required = build_chat_request(prompt, options, Quirks(forced_tool_choice="required"))
    assert as_required["tool_choice"] == "required"
    assert as_required["tools"] == as_object["tools"][:1]
    assert build_chat_request(prompt, options) == as_object  # None: the object
    # Nothing forced, nothing changed: every tool, the keyword as given.
    for choice in ("auto", "required", "none"):
        unforced = RequestOptions(model="m", tool_choice=choice)
        assert (build_chat_request(prompt, unforced, Quirks(forced_tool_choice="required"))
                == build_chat_request(prompt, unforced, Quirks(forced_tool_choice="object")))


def test_the_tools_mode_of_structured_output_forces_its_function_as_required_too() -> None:
    prompt = Prompt(input=[Message.user("Paris?")], output_schema=City)
    body = build_chat_request(prompt, RequestOptions(model="m"),
                              Quirks(structured_output="tools", forced_tool_choice="required"))
    assert body["tool_choice"] == "required"
    assert [tool["function"]["name"] for tool in body["tools"]] == ["City"]


def test_extra_body_still_has_the_last_word() -> None:
    payload = {"tools": [{"type": "function", "function": {"name": "a"}}], "tool_choice": "auto"}
    force_with_required(payload)
    assert payload["tool_choice"] == "auto"
    prompt = Prompt(input=[Message.user("hi")], tools=[WEATHER])
    body = build_chat_request(prompt, RequestOptions(model="m", tool_choice="get_weather",
                                                     extra_body={"tool_choice": {"type": "function",
                                                                                 "function": {"name": "x"}}}),
                              Quirks(forced_tool_choice="required"))
    assert body["tool_choice"] == {"type": "function", "function": {"name": "x"}}


# --- the client on a scripted server ----------------------------------------------------------------


def test_a_refused_json_schema_is_sent_once_more_as_json_object_and_remembered(llm_server: LLMServer) -> None:
    llm_server.enqueue(json_reply(LLAMA_CPP_JSON_SCHEMA_REFUSAL, status=500), answer('{"name": "Paris", '
                                                                                      '"country": "France"}'))
    with Client(base_url=llm_server.url, api_key="sk-test") as client:
        result = client.stream("Paris?", model="m", response_format=City).collect()
        assert result.parsed == City("Paris", "France") and result.output_mode == "json_object"
        modes = [request.json()["response_format"]["type"] for request in llm_server.requests]
        assert modes == ["json_schema", "json_object"]  # one extra request, not 5 retries of the 500

        llm_server.enqueue(answer('{"name": "Rome", "country": "Italy"}'))
        again = client.stream("Rome?", model="m", response_format=City).collect()
        assert again.parsed == City("Rome", "Italy") and again.output_mode == "json_object"
        assert len(llm_server.requests) == 3 and llm_server.requests[2].json()["response_format"]["type"] == \
            "json_object"  # the remembered mode, at once
        assert client.request_body("x", model="m", response_format=City)["response_format"]["type"] == "json_object"
        # ... for that model: another one starts from json_schema again.
        assert client.request_body("x", model="other", response_format=City)["response_format"]["type"] == \
            "json_schema"


def test_a_400_refusal_falls_back_too_and_every_mode_refused_raises_the_last(llm_server: LLMServer) -> None:
    refusal = {"error": {"message": "Invalid parameter: 'response_format' of type 'json_schema' is not supported "
                                    "with this model.", "type": "invalid_request_error", "param": "response_format"}}
    llm_server.enqueue(json_reply(refusal, status=400), answer('{"name": "Oslo", "country": "Norway"}'))
    with Client(base_url=llm_server.url, api_key="sk-test") as client:
        assert client.stream("Oslo?", model="m", response_format=City).collect().output_mode == "json_object"
        assert len(llm_server.requests) == 2

    llm_server.enqueue(*[json_reply({"error": {"message": f"no {n}", "type": "invalid_request_error"}}, status=400)
                         for n in (1, 2, 3)])
    with Client(base_url=llm_server.url, api_key="sk-test") as client, pytest.raises(BadRequestError) as caught:
        client.stream("Oslo?", model="m", response_format=City)
    assert caught.value.message == "no 3"
    sent = [request.json() for request in llm_server.requests[2:]]
    assert [body.get("response_format", {}).get("type") for body in sent] == ["json_schema", "json_object", None]
    assert sent[2]["tool_choice"] == {"type": "function", "function": {"name": "City"}}


def test_an_error_that_is_no_refusal_of_the_mode_is_raised_at_once(llm_server: LLMServer) -> None:
    llm_server.enqueue(json_reply(LLAMA_CPP_CONTENT_REFUSAL, status=500))
    with Client(base_url=llm_server.url, api_key="sk-test") as client, pytest.raises(BadRequestError) as caught:
        client.stream("hi", model="m", response_format=City)
    assert len(llm_server.requests) == 1  # neither retried (a validation error) nor sent in another mode
    assert "Input should be a valid string" in str(caught.value)


def test_a_mode_the_provider_sets_is_never_changed(llm_server: LLMServer) -> None:
    llm_server.enqueue(json_reply(LLAMA_CPP_JSON_SCHEMA_REFUSAL, status=500))
    provider = Provider("strict", llm_server.url, structured_output="json_schema")
    with Client(provider) as client, pytest.raises(BadRequestError):
        client.stream("hi", model="m", response_format=City)
    assert len(llm_server.requests) == 1


def test_a_request_without_structured_output_is_never_resent(llm_server: LLMServer) -> None:
    llm_server.enqueue(json_reply({"error": {"message": "bad", "type": "invalid_request_error"}}, status=400))
    with Client(base_url=llm_server.url, api_key="sk-test") as client, pytest.raises(BadRequestError):
        client.stream("hi", model="m")
    assert len(llm_server.requests) == 1


def test_llama_server_gets_the_forced_tool_as_required_alone_after_its_first_answer(llm_server: LLMServer) -> None:
    llama = {"Server": "llama.cpp"}
    # The first answer ignored the object (llama-server answers as with "auto"): sent again.
    llm_server.enqueue(answer("It is sunny.", llama), call_reply("get_weather", '{"city": "Paris"}', llama))
    prompt = Prompt(input=[Message.user("Weather in Paris?")], tools=[WEATHER, TIME])
    with Client(base_url=llm_server.url, api_key="sk-test") as client:
        result = client.stream(prompt, model="m", tool_choice="get_weather").collect()
        assert [call.name for call in result.tool_calls] == ["get_weather"]
        first, second = (request.json() for request in llm_server.requests)
        assert first["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
        assert len(first["tools"]) == 2
        assert second["tool_choice"] == "required" and [t["function"]["name"] for t in second["tools"]] == \
            ["get_weather"]

        # Remembered: the next forced request goes as "required" at once; one that does not
        # force has every tool back.
        llm_server.enqueue(call_reply("get_time", '{"zone": "CET"}', llama), answer("Noon.", llama))
        client.stream(prompt, model="m", tool_choice="get_time").collect()
        client.stream(prompt, model="m").collect()
        third, fourth = (request.json() for request in llm_server.requests[2:])
        assert third["tool_choice"] == "required" and [t["function"]["name"] for t in third["tools"]] == ["get_time"]
        assert "tool_choice" not in fourth and len(fourth["tools"]) == 2


def test_llama_server_behind_litellm_is_known_by_the_forwarded_header(llm_server: LLMServer) -> None:
    via_litellm = {"server": "uvicorn", "llm_provider-server": "llama.cpp"}
    # Any answer teaches it: here one that forced nothing, so nothing is sent twice.
    llm_server.enqueue(answer("Hello.", via_litellm), call_reply("get_weather", '{"city": "Oslo"}', via_litellm))
    prompt = Prompt(input=[Message.user("Weather in Oslo?")], tools=[WEATHER, TIME])
    with Client(base_url=llm_server.url, api_key="sk-test") as client:
        client.stream("hi", model="m").collect()
        client.stream(prompt, model="m", tool_choice="get_weather").collect()
    assert len(llm_server.requests) == 2
    assert llm_server.requests[1].json()["tool_choice"] == "required"


def test_a_server_that_honours_the_object_gets_it_every_time(llm_server: LLMServer) -> None:
    uvicorn = {"server": "uvicorn"}  # llama-cpp-python, which forces only with the object
    llm_server.enqueue(call_reply("get_weather", '{"city": "Paris"}', uvicorn),
                       call_reply("get_weather", '{"city": "Rome"}', uvicorn))
    prompt = Prompt(input=[Message.user("Weather?")], tools=[WEATHER, TIME])
    with Client(base_url=llm_server.url, api_key="sk-test") as client:
        for _ in range(2):
            client.stream(prompt, model="m", tool_choice="get_weather").collect()
    assert [request.json()["tool_choice"] for request in llm_server.requests] == [
        {"type": "function", "function": {"name": "get_weather"}}] * 2


def test_a_server_that_refuses_the_object_gets_required_alone(llm_server: LLMServer) -> None:
    llm_server.enqueue(error_reply(400, "tool_choice: Input should be 'auto', 'none' or 'required'",
                                   type="invalid_request_error"),
                       call_reply("get_weather", '{"city": "Paris"}'))
    prompt = Prompt(input=[Message.user("Weather?")], tools=[WEATHER, TIME])
    with Client(base_url=llm_server.url, api_key="sk-test") as client:
        client.stream(prompt, model="m", tool_choice="get_weather").collect()
    assert [request.json()["tool_choice"] for request in llm_server.requests] == [
        {"type": "function", "function": {"name": "get_weather"}}, "required"]


def test_a_provider_setting_decides_without_looking(llm_server: LLMServer) -> None:
    llm_server.enqueue(answer("Sunny.", {"Server": "llama.cpp"}))
    prompt = Prompt(input=[Message.user("Weather?")], tools=[WEATHER, TIME])
    with Client(Provider("p", llm_server.url, forced_tool_choice="object")) as client:
        client.stream(prompt, model="m", tool_choice="get_weather").collect()
    assert len(llm_server.requests) == 1  # the provider said "object": no second request
    assert llm_server.requests[0].json()["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


def test_structured_output_in_the_tools_mode_on_llama_server(llm_server: LLMServer) -> None:
    llama = {"Server": "llama.cpp"}
    llm_server.enqueue(json_reply({"error": {"message": "json_schema unsupported", "type": "invalid_request_error"}},
                                  status=400, headers=llama),
                       json_reply({"error": {"message": "json_object unsupported", "type": "invalid_request_error"}},
                                  status=400, headers=llama),
                       call_reply("City", '{"name": "Paris", "country": "France"}', llama))
    with Client(base_url=llm_server.url, api_key="sk-test") as client:
        result = client.stream("Paris?", model="m", response_format=City).collect()
    assert result.parsed == City("Paris", "France") and result.output_mode == "tools"
    # The refusals' headers said llama-server: the tools mode forces its function as "required".
    assert len(llm_server.requests) == 3
    assert llm_server.requests[2].json()["tool_choice"] == "required"
