"""A tool for the command line: ``llmx-sync chat "Weather in Paris?" --tool examples/weather.py:get_weather``.

The CLI reads the tool's description from the type hints and the docstring (see
``llmx_sync.tool``), runs the function when the model calls it, and sends its result
back. The forecast is made up: a real tool would ask a weather service.
"""

from __future__ import annotations


def get_weather(city: str, days: int = 1) -> dict[str, object]:
    """The weather forecast for a city.

    Args:
        city: The city's name.
        days: How many days ahead.
    """
    return {"city": city, "days": days, "sky": "sunny", "temperature_c": 21}
