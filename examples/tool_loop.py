"""One complete agent turn: the model calls a Python function, we run it, the model answers.

    python examples/tool_loop.py [--base-url URL] [--model M] [question]
"""

from __future__ import annotations

import json

from _common import client_from, example_parser

from llmx_sync.models import FunctionCall, FunctionCallOutput, Message, ResponseItem
from llmx_sync.prompt import Prompt
from llmx_sync.tools import FunctionTool


def get_weather(city: str) -> str:
    """A stand-in for a real weather service."""
    return json.dumps({"city": city, "temperature_c": 21, "sky": "sunny"})


WEATHER_TOOL = FunctionTool(
    name="get_weather",
    description="Get the current weather in a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string", "description": "The city name"}},
        "required": ["city"],
    },
)
FUNCTIONS = {"get_weather": get_weather}
# Small local models rarely call a tool on their own: the first turn requires this one.
CALL_GET_WEATHER = {"type": "function", "function": {"name": "get_weather"}}


def run_tool(call: FunctionCall) -> str:
    try:
        return FUNCTIONS[call.name](**json.loads(call.arguments or "{}"))
    except (KeyError, TypeError, ValueError) as error:
        # Told to the model as the tool's output, so that it can explain or retry.
        return f"error: {error!r}"


def main() -> None:
    parser = example_parser(__doc__)
    parser.add_argument("question", nargs="?", default="What is the weather in Paris?")
    args = parser.parse_args()
    client = client_from(args)
    history: list[ResponseItem] = [Message.user(args.question)]

    first = client.stream(Prompt(input=history, tools=[WEATHER_TOOL]), model=args.model,
                          tool_choice=CALL_GET_WEATHER).collect()
    history.extend(first.items)  # the model's turn: its tool calls (and any text)
    for call in first.tool_calls:
        output = run_tool(call)
        print(f"[tool] {call.name}({call.arguments}) -> {output}", flush=True)
        history.append(FunctionCallOutput.from_text(call.call_id, output))

    # The tool results are in the history; now the model answers in words.
    with client.stream(Prompt(input=history, tools=[WEATHER_TOOL]), model=args.model,
                       tool_choice="none") as stream:
        for text in stream.text_stream:
            print(text, end="", flush=True)
    print()


if __name__ == "__main__":
    main()
