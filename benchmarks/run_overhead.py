"""What `client.run` costs per turn of a tool loop, over the same loop written by hand.

The loopback server (its own process) plays a model that calls a tool: while the
request holds fewer than ``--turns - 1`` tool results, it answers with one call of
``get_weather`` (``{"city": "Paris"}``, in three argument deltas); then with a short
text. Three loops make the same conversation on a kept-alive connection:

* ``bare``: ``requests`` + split + ``json.loads``, the messages list kept by hand, the
  function called with its decoded arguments (the floor);
* ``stream``: llmx_sync's `client.stream` with the history and the tool's spec kept by
  hand (``collect().history`` plus a `FunctionCallOutput` per call);
* ``run``: ``client.run(prompt, tools=[get_weather]).collect()``.

Each round runs ``--conversations`` conversations of ``--turns`` turns with each loop
(taking turns). Printed: ms per turn, median [min-max] of ``--runs`` rounds, and each
loop's cost per turn over the bare loop (the issue's target for ``run``: 0.3 ms or
less) and, for ``run``, over the ``stream`` loop (what the tool loop itself adds); by
the wall clock, then by this process's CPU time (the server's not counted), which a
busy machine disturbs much less.

    python benchmarks/run_overhead.py [--turns 10] [--conversations 20] [--runs 7]
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import time
from collections.abc import Callable
from typing import Any

from harness import (
    Figures,
    LoopbackServer,
    chunk,
    cpu_seconds,
    describe_machine,
    http_chunked,
    text_chunks,
    usage_chunk,
)

_TOOL_RESULTS = re.compile(rb'"role":\s*"tool"')
_TURNS = re.compile(r"turns(\d+)")


def get_weather(city: str) -> str:
    """The weather in a city.

    Args:
        city: the city's name
    """
    return f"Sunny in {city}, 21 C"


TOOL_SPEC = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "the city's name"}},
                   "required": ["city"], "additionalProperties": False}}}


def tool_call_body(number: int) -> bytes:
    call = {"index": 0, "id": f"call_{number}", "type": "function",
            "function": {"name": "get_weather", "arguments": ""}}
    chunks = [chunk({"role": "assistant", "content": None, "tool_calls": [call]})]
    chunks += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]})
               for part in ('{"city"', ': "Par', 'is"}')]
    chunks += [chunk({}, "tool_calls"), usage_chunk(9)]
    return http_chunked(chunks)


FINAL_BODY = http_chunked(text_chunks(["It is", " sunny", " in Paris."]))


def answer(model: str, body: bytes) -> bytes:
    """A tool call until the conversation has its turns' worth of tool results, then text."""
    turns = int(_TURNS.fullmatch(model).group(1))  # type: ignore[union-attr]
    results = len(_TOOL_RESULTS.findall(body))
    return tool_call_body(results) if results < turns - 1 else FINAL_BODY


# --- the loops: each makes one conversation and returns its text and turn count ---------


def bare_loop(session: Any, base_url: str, model: str) -> tuple[str, int]:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "What is the weather in Paris?"}]
    turns = 0
    functions: dict[str, Callable[..., str]] = {"get_weather": get_weather}
    while True:
        turns += 1
        payload = {"model": model, "messages": messages, "tools": [TOOL_SPEC], "stream": True}
        text, calls = [], {}
        with session.post(base_url + "/chat/completions", json=payload, stream=True) as response:
            buffer = b""
            for data in response.iter_content(chunk_size=None):
                buffer += data
                *frames, buffer = buffer.split(b"\n\n")
                for frame in frames:
                    if not frame.startswith(b"data: ") or frame[6:] == b"[DONE]":
                        continue
                    parsed = json.loads(frame[6:])
                    if not parsed["choices"]:
                        continue
                    delta = parsed["choices"][0]["delta"]
                    if delta.get("content"):
                        text.append(delta["content"])
                    for call in delta.get("tool_calls") or ():
                        entry = calls.setdefault(call["index"], {"id": "", "name": "", "arguments": ""})
                        entry["id"] = call.get("id") or entry["id"]
                        function = call.get("function") or {}
                        entry["name"] = function.get("name") or entry["name"]
                        entry["arguments"] += function.get("arguments") or ""
        if not calls:
            return "".join(text), turns
        messages.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
            for c in calls.values()]})
        for c in calls.values():
            output = functions[c["name"]](**json.loads(c["arguments"]))
            messages.append({"role": "tool", "tool_call_id": c["id"], "content": output})


def stream_loop(client: Any, base_url: str, model: str) -> tuple[str, int]:
    from llmx_sync import FunctionCallOutput, Message, Prompt, tool

    weather = tool(get_weather)
    history: list[Any] = [Message.user("What is the weather in Paris?")]
    turns = 0
    while True:
        turns += 1
        result = client.stream(Prompt(input=history, tools=[weather]), model=model).collect()
        history = result.history
        if not result.tool_calls:
            return result.text, turns
        for call in result.tool_calls:
            history.append(FunctionCallOutput.from_text(call.call_id, weather.run(call.arguments)))


def run_loop(client: Any, base_url: str, model: str) -> tuple[str, int]:
    run = client.run("What is the weather in Paris?", tools=[get_weather], model=model, max_turns=100)
    result = run.collect()
    return result.text, run.turn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=10, help="model calls per conversation")
    parser.add_argument("--conversations", type=int, default=20, help="conversations per round and loop")
    parser.add_argument("--runs", type=int, default=7, help="rounds")
    args = parser.parse_args()
    model = f"turns{args.turns}"

    import requests

    from llmx_sync import Client

    with LoopbackServer(answer) as base_url:
        print(f"{args.conversations} conversations of {args.turns} turns per round, {args.runs} rounds; "
              f"{describe_machine()}")
        session, client = requests.Session(), Client(base_url=base_url, api_key="x")
        loops: list[tuple[str, Callable[[Any, str, str], tuple[str, int]], Any]] = [
            ("bare", bare_loop, session), ("stream", stream_loop, client), ("run", run_loop, client)]
        per_turn: dict[str, list[float]] = {name: [] for name, _, _ in loops}
        cpu_per_turn: dict[str, list[float]] = {name: [] for name, _, _ in loops}
        try:
            for _name, loop, target in loops:  # warm-up
                loop(target, base_url, model)
            for _ in range(args.runs):
                for name, loop, target in loops:
                    gc.collect()
                    cpu, start = cpu_seconds(), time.perf_counter()
                    for _ in range(args.conversations):
                        text, turns = loop(target, base_url, model)
                        if text != "It is sunny in Paris." or turns != args.turns:
                            raise SystemExit(f"{name}: {turns} turns ending in {text!r}, expected {args.turns}")
                    per_turn[name].append((time.perf_counter() - start) / (args.conversations * args.turns))
                    cpu_per_turn[name].append((cpu_seconds() - cpu) / (args.conversations * args.turns))
        finally:
            session.close()
            client.close()

    for title, table in (("wall clock", per_turn), ("CPU of this process (every thread)", cpu_per_turn)):
        figures = {name: Figures(tuple(values)) for name, values in table.items()}
        print(f"{title}:\n{'loop':<7} {'ms per turn':>22} {'over bare, ms':>14} {'over stream, ms':>16}")
        for name, _, _ in loops:
            mine = figures[name]
            over_bare = (mine.median - figures["bare"].median) * 1e3
            over_stream = f"{(mine.median - figures['stream'].median) * 1e3:+16.3f}" if name == "run" else ""
            print(f"{name:<7} {mine.show(1e3, 3):>22} {over_bare:>+14.3f} {over_stream}")


if __name__ == "__main__":
    main()
