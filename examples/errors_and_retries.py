"""What can go wrong between a script and a model server, and how to handle each case.

    python examples/errors_and_retries.py [--base-url URL] [--model M] [--timeout S]
                                          [--idle-timeout S] [--retries N] [question]

- 408, 409, 429, 5xx and connection failures are retried before the answer starts
  (honouring Retry-After), `--retries` times; then the status's own error is raised.
  `LLMX_LOG=info` shows each retry and why.
- `--timeout` bounds the whole request (retries, waiting, the whole answer);
  `--idle-timeout` the silence allowed while the answer streams.
- Every error is an `llmx_sync.LlmxError`: catch the kinds your script can act on.
  Exit status: 0 answered, 1 the server refused, 2 no (complete) answer, 3 unreachable.
"""

from __future__ import annotations

import sys

from _common import client_from, example_parser

import llmx_sync as llmx


def main() -> int:
    parser = example_parser(__doc__)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds for the whole request")
    parser.add_argument("--idle-timeout", type=float, default=30.0, help="seconds of silence allowed")
    parser.add_argument("--retries", type=int, default=4, help="retries of a failed request")
    parser.add_argument("question", nargs="?", default="Say hello in five languages.")
    args = parser.parse_args()

    stream = None
    with client_from(args) as client:
        try:
            stream = client.stream(args.question, model=args.model, timeout=args.timeout,
                                   idle_timeout=args.idle_timeout, request_max_retries=args.retries)
            with stream:
                for text in stream.text_stream:
                    print(text, end="", flush=True)
            print()
            return 0
        except llmx.RateLimitError as error:  # a 429 that outlasted the retries
            print(f"\nrate limited: {error.message} (retry after: {error.headers.get('retry-after', '?')} s)",
                  file=sys.stderr)
            return 1
        except llmx.AuthenticationError as error:
            print(f"\nthe server wants a key: {error.message}; set LLMX_API_KEY", file=sys.stderr)
            return 1
        except llmx.InStreamError as error:  # the server reported an error in the middle of the answer
            print(f"\nthe server failed while answering: {error.message}", file=sys.stderr)
        except llmx.UnexpectedStatusError as error:  # any other status: 400 bad request, 404 unknown model, …
            print(f"\nthe server refused: {error}", file=sys.stderr)
            return 1
        except llmx.DeadlineExceededError:
            print(f"\nno complete answer within {args.timeout:g} s", file=sys.stderr)
        except llmx.StreamIdleTimeoutError:
            print(f"\nthe server went silent for {args.idle_timeout:g} s", file=sys.stderr)
        except llmx.StreamError as error:  # the body broke off: the connection dropped, a proxy cut it
            print(f"\nthe answer broke off: {error}", file=sys.stderr)
        except llmx.ConnectionFailedError as error:
            print(f"\ncannot reach the server: {error}", file=sys.stderr)
            return 3
    if stream is not None and stream.snapshot().text:  # what did arrive is still there
        print(f"(received before that: {stream.snapshot().text!r})", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
