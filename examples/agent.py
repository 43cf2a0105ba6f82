"""An agent: the model calls two Python functions as often as it needs, then answers.

    python examples/agent.py [--base-url URL] [--model M] [question]

`client.run` is the whole loop: it describes the functions to the model (from their
type hints and docstrings), runs the calls the model makes (those of one turn at the
same time), sends the results back and asks again, until the model answers in words.
A function that raises, or arguments that do not fit, become a message the model can
act on. The bundled 135M model seldom calls tools on its own: point --base-url at a
larger model to see it plan.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from _common import client_from, example_parser

from llmx_sync.events import OutputItemDone, OutputTextDelta, ToolResult
from llmx_sync.models import FunctionCall

# A stand-in for a weather service.
WEATHER = {
    "paris": {"sky": "sunny", "temperature_c": 21},
    "tokyo": {"sky": "rain", "temperature_c": 17},
    "new york": {"sky": "cloudy", "temperature_c": 12},
}


def get_weather(city: str) -> dict[str, object]:
    """Get the current weather in a city.

    Args:
        city: The city's name, e.g. "Paris".
    """
    try:
        return {"city": city, **WEATHER[city.strip().lower()]}
    except KeyError:
        # The model reads this and can try another city.
        raise LookupError(f"no weather for {city!r}; known: {', '.join(WEATHER)}") from None


def convert_time(time: str, from_zone: str, to_zone: str) -> str:
    """Convert a date and time from one time zone to another.

    Args:
        time: The date and time, as "YYYY-MM-DD HH:MM".
        from_zone: The IANA time zone it is in, e.g. "Europe/Paris".
        to_zone: The IANA time zone wanted, e.g. "Asia/Tokyo".
    """
    moment = datetime.fromisoformat(time).replace(tzinfo=ZoneInfo(from_zone))
    return moment.astimezone(ZoneInfo(to_zone)).strftime("%Y-%m-%d %H:%M %Z")


def main() -> None:
    parser = example_parser(__doc__)
    parser.add_argument("question", nargs="?",
                        default="What is the weather in Tokyo, and what time is it there at 2024-06-01 09:00 Paris time?")
    args = parser.parse_args()
    with client_from(args) as client, client.run(args.question, model=args.model,
                                                 tools=[get_weather, convert_time]) as run:
        calls: dict[str, FunctionCall] = {}
        for event in run:
            if isinstance(event, OutputItemDone) and isinstance(event.item, FunctionCall):
                calls[event.item.call_id] = event.item
            elif isinstance(event, ToolResult):
                call = calls[event.call_id]
                print(f"[tool] {call.name}({call.arguments}) -> {event.output}", flush=True)
            elif isinstance(event, OutputTextDelta):
                print(event.delta, end="", flush=True)
    print()


if __name__ == "__main__":
    main()
