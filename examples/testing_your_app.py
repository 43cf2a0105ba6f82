"""Testing code that calls a model, offline and fast, with `llmx_sync.testing`.

    pytest examples/testing_your_app.py
    python examples/testing_your_app.py [--base-url URL] [--model M]   (records a real answer again)

The two functions below stand for your app. The tests script what the model answers
(text, a tool call, a rate limit, an answer cut short) on a real HTTP server on
127.0.0.1, then check what the app sent and what it did with the answer. The
``scripted_server`` fixture comes with llmx_sync (a pytest plugin). The last test
replays an answer recorded from a real llama.cpp server (examples/data/summary.json);
running this file as a script records it again, from the server you name.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import llmx_sync as llmx
from llmx_sync.testing import Recorder, Recording, ScriptedServer, answer, call, error_reply

RECORDING = Path(__file__).with_name("data") / "summary.json"
TEXT = ("The Rhine rises in the Swiss Alps, flows through Lake Constance, forms part of the border between "
        "Germany and France, and reaches the North Sea in the Netherlands.")


# --- the app ----------------------------------------------------------------------------------


def summarise(client: llmx.Client, text: str, model: str = "local") -> str:
    """One sentence about `text`."""
    messages = [{"role": "system", "content": "Summarise the user's text in one short sentence."},
                {"role": "user", "content": text}]
    return client.stream(messages, model=model, temperature=0, max_tokens=60).collect().text.strip()


def get_weather(city: str) -> str:
    """The current weather in a city.

    Args:
        city: The city's name.
    """
    return f"sunny, 21 °C in {city}"


def weather_bot(client: llmx.Client, question: str, model: str = "local") -> str:
    return client.run(question, model=model, tools=[get_weather]).collect().text


# --- its tests ----------------------------------------------------------------------------------


def test_summarise_sends_the_text_and_returns_the_answer(scripted_server: ScriptedServer) -> None:
    scripted_server.enqueue(answer("  The Rhine flows from the Alps to the North Sea. "))
    client = llmx.Client(base_url=scripted_server.base_url)
    assert summarise(client, TEXT) == "The Rhine flows from the Alps to the North Sea."
    sent = scripted_server.requests[0].json()
    assert sent["messages"][1] == {"role": "user", "content": TEXT}
    assert (sent["temperature"], sent["max_tokens"]) == (0, 60)


def test_the_weather_bot_runs_the_tool_the_model_calls(scripted_server: ScriptedServer) -> None:
    scripted_server.enqueue(answer(tool_calls=[call("get_weather", {"city": "Paris"})]), answer("Sunny, 21 °C."))
    client = llmx.Client(base_url=scripted_server.base_url)
    assert weather_bot(client, "Weather in Paris?") == "Sunny, 21 °C."
    first, second = (request.json() for request in scripted_server.requests)
    assert first["tools"][0]["function"]["name"] == "get_weather"
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 °C in Paris"}


def test_a_rate_limit_is_waited_out(scripted_server: ScriptedServer) -> None:
    scripted_server.enqueue(error_reply(429, "Slow down", retry_after=0), answer("Done."))
    assert summarise(llmx.Client(base_url=scripted_server.base_url), TEXT) == "Done."
    assert len(scripted_server.requests) == 2


def test_an_answer_cut_short_is_an_error_not_a_short_summary(scripted_server: ScriptedServer) -> None:
    scripted_server.enqueue(answer("The Rhine flows", end="truncate"))
    with pytest.raises(llmx.StreamError):
        summarise(llmx.Client(base_url=scripted_server.base_url, timeout=10), TEXT)


def test_a_recorded_answer_replayed_offline() -> None:
    recording = Recording.load(RECORDING)
    with ScriptedServer(*recording.replies()) as server:
        summary = summarise(llmx.Client(base_url=server.base_url), TEXT)
        assert server.requests[0].json() == recording.requests[0]  # the app still asks what it asked
    recorded = llmx.collect(llmx.parse_chat_sse(data for _, data in recording.exchanges[0].chunks))
    assert summary == recorded.text.strip() != ""


if __name__ == "__main__":
    from _common import client_from, example_parser

    args = example_parser(__doc__).parse_args()
    with client_from(args) as real, Recorder(real.provider.connection.base_url, RECORDING) as recorder:
        print(summarise(llmx.Client(base_url=recorder.base_url), TEXT, model=args.model))
    print(f"recorded to {RECORDING}")
