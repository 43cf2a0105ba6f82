"""The SDK through a real LiteLLM proxy (litellm[proxy] 1.108.7) in front of
llama-cpp-python's server, with ``Provider.builtin("litellm")`` configured the way its
users do: ``LLMX_BASE_URL`` (the proxy's ``/v1``) and ``LLMX_API_KEY`` (its master key).

The proxy maps the alias ``LITELLM_MODEL_ALIAS`` to ``openai/<the server's model id>``
(see litellm_support.py). What it does on the way matters here (issue #9): it drops
``"content": null`` from an assistant tool-call message instead of forwarding it;
SmolLM2's chat template reads ``message['content']``, so llama-cpp-python fails (jinja2
UndefinedError) after it has sent 200 and the stream's headers; the body ends empty, and
LiteLLM turns that into one chunk with ``finish_reason: "stop"``: a silent empty answer.
With ``"content": ""`` it forwards the message as it is and the answer is normal.

Skipped, saying why, when llama-cpp-python, the bundled model or the proxy's virtualenv
(`bash scripts/install-litellm.sh`) is missing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from litellm_support import LiteLLMProxy, litellm_proxy, litellm_skip_reason
from local_support import needs_llama_cpp

import llmx_sync as llmx
from llmx_sync import Client, Provider
from llmx_sync.local import LocalServer

LITELLM_SKIP = litellm_skip_reason()

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(600),
    needs_llama_cpp,
    # Checked before the fixtures start anything: no llama server for nothing.
    pytest.mark.skipif(bool(LITELLM_SKIP), reason=LITELLM_SKIP or "-"),
]

TEXT_QUESTION = "Say hello in five words."
CALL_GET_WEATHER = {"type": "function", "function": {"name": "get_weather"}}


@pytest.fixture(scope="module")
def proxy(server: LocalServer) -> Iterator[LiteLLMProxy]:
    with litellm_proxy(server.base_url, str(server.model_id)) as running:
        yield running


@pytest.fixture
def client(proxy: LiteLLMProxy, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    monkeypatch.setenv("LLMX_BASE_URL", proxy.base_url)
    monkeypatch.setenv("LLMX_API_KEY", proxy.master_key)
    with Client(Provider.builtin("litellm")) as c:
        yield c


def test_single_turn_text_through_the_proxy(proxy: LiteLLMProxy, client: Client) -> None:
    result = client.stream(TEXT_QUESTION, model=proxy.alias, temperature=0, max_tokens=24).collect()
    assert result.text.strip(), f"{result!r}\nproxy log:\n{proxy.log_tail()}"
    assert result.finish_reason in ("stop", "length"), result
    assert result.tool_calls == []
    # llama-cpp-python sends no usage while streaming; LiteLLM answers the SDK's
    # include_usage with a count of its own.
    usage = result.token_usage
    assert usage is not None, result
    assert usage.input_tokens > 0 and usage.output_tokens > 0, usage
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens, usage
    assert usage.output_tokens <= 24, usage


def test_readme_tool_loop_through_the_proxy(server: LocalServer, proxy: LiteLLMProxy, client: Client) -> None:
    # The README's "A conversation with tools", with this client and model. The 135M
    # model never calls a tool on its own, so the first turn names the tool.
    prompt = llmx.Prompt(
        input=[llmx.Message.user("Weather in Paris?")],
        tools=[llmx.FunctionTool("get_weather", "Current weather", {
            "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})],
        instructions="You are terse.",
    )
    result = client.stream(prompt, model=proxy.alias, tool_choice=CALL_GET_WEATHER).collect()
    assert result.finish_reason == "tool_calls" and len(result.tool_calls) == 1, result
    assert result.tool_calls[0].name == "get_weather"
    assert isinstance(json.loads(result.tool_calls[0].arguments), dict), result.tool_calls
    for call in result.tool_calls:
        prompt.input += [call, llmx.FunctionCallOutput.from_text(call.call_id, "sunny, 21 C")]
    answer = client.stream(prompt, model=proxy.alias).collect()

    # Issue #9: with `content: null` on the assistant tool-call message this is a
    # silent empty answer (text '', finish 'stop'); the reason is in the server's log.
    assert answer.text.strip(), (f"empty second turn: {answer!r}\nllama_cpp.server log:\n{server.log_tail()}"
                                 f"\nproxy log:\n{proxy.log_tail(1000)}")
    assert answer.finish_reason in ("stop", "length"), answer
    assert answer.tool_calls == [], answer
