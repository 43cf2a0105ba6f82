"""Stream an answer and print it as it arrives.

    python examples/stream_script.py [--base-url URL] [--model M] [question]
"""

from __future__ import annotations

import sys

from _common import client_from, example_parser

from llmx_sync.events import Completed, OutputTextDelta


def main() -> None:
    parser = example_parser(__doc__)
    parser.add_argument("question", nargs="?", default="Write a haiku about rivers.")
    args = parser.parse_args()
    client = client_from(args)

    # Leaving the `with` block closes the HTTP request, even on Ctrl-C or an error.
    with client.stream(args.question, model=args.model) as stream:
        for event in stream:
            if isinstance(event, OutputTextDelta):
                print(event.delta, end="", flush=True)
            elif isinstance(event, Completed):
                print()
                print(f"[finish reason: {event.finish_reason}, usage: {event.token_usage}]", file=sys.stderr)


if __name__ == "__main__":
    main()
