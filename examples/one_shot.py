"""Ask once and get the whole answer as a value: its text, finish reason and usage.

    python examples/one_shot.py [--base-url URL] [--model M] [--image URL] [question]

`collect()` reads the streamed answer to its end and returns it (no loop to write).
With `--image`, the question goes as a Chat Completions message with an `image_url`
part (the model must be able to see images to describe it).
"""

from __future__ import annotations

import sys
from typing import Any

from _common import client_from, example_parser


def main() -> None:
    parser = example_parser(__doc__)
    parser.add_argument("--image", help="an image to ask about (an https:// or data: URL)")
    parser.add_argument("question", nargs="?", default="Name three rivers of Europe.")
    args = parser.parse_args()

    prompt: str | list[dict[str, Any]] = args.question
    if args.image:
        prompt = [{"role": "user", "content": [{"type": "text", "text": args.question},
                                               {"type": "image_url", "image_url": {"url": args.image}}]}]
    with client_from(args) as client:
        result = client.stream(prompt, model=args.model, temperature=0).collect()
    print(result.text)
    usage = result.token_usage
    print(f"[finish reason: {result.finish_reason}, tokens: {usage.total_tokens if usage else 'not reported'}]",
          file=sys.stderr)


if __name__ == "__main__":
    main()
