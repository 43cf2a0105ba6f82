"""Structured output that streams: the answer is a `City`, shown while it is written.

    python examples/structured.py [--base-url URL] [--model M] [city]

`response_format=City` sends the dataclass's JSON Schema (servers that support it
constrain the model to it); each `output_json.delta` event carries the object parsed
so far, and `collect().parsed` is the finished `City`, checked against the schema.
"""

from __future__ import annotations

from dataclasses import dataclass

from _common import client_from, example_parser

from llmx_sync.events import OutputJsonDelta


@dataclass
class City:
    name: str
    country: str
    population: int
    landmarks: list[str]


def main() -> None:
    parser = example_parser(__doc__)
    parser.add_argument("city", nargs="?", default="Paris")
    args = parser.parse_args()
    with client_from(args) as client:
        stream = client.stream(f"Describe {args.city} as JSON.", model=args.model, response_format=City,
                               temperature=0, max_tokens=200)
        for event in stream:
            if isinstance(event, OutputJsonDelta):
                print(event.value, flush=True)  # a dict that grows into the whole object
        city: City = stream.collect().parsed
    print(city)


if __name__ == "__main__":
    main()
