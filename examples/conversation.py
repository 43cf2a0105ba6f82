"""A chat kept as a list of Chat Completions messages, as most apps keep it.

    python examples/conversation.py [--base-url URL] [--model M] [--system TEXT] [--save FILE]
    printf 'My name is Ada.\\nWhat is my name?\\n' | python examples/conversation.py

Each line on stdin is the user's next message. The answer streams to the terminal, then
`result.to_messages()` appends it to `messages`, so the next question is asked with the
whole conversation. `--save` writes the messages as JSON at the end: the same list any
other SDK or your database takes.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from _common import client_from, example_parser


def main() -> None:
    parser = example_parser(__doc__)
    parser.add_argument("--system", default="You are a concise assistant.", help="the system message")
    parser.add_argument("--save", metavar="FILE", help="write the conversation's messages here, as JSON")
    args = parser.parse_args()

    messages: list[dict[str, Any]] = [{"role": "system", "content": args.system}]
    with client_from(args) as client:
        for line in sys.stdin:
            if not line.strip():
                continue
            messages.append({"role": "user", "content": line.strip()})
            with client.stream(messages, model=args.model) as stream:
                for text in stream.text_stream:
                    print(text, end="", flush=True)
                print()
                messages += stream.collect().to_messages()
    if args.save:
        with open(args.save, "w", encoding="utf-8") as file:
            json.dump(messages, file, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
