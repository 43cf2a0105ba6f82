"""``llmx-sync batch in.jsonl -o out.jsonl``: `Client.map` from the command line.

Each line of the input is one prompt: a JSON string (the user's message), a JSON
array (a conversation: messages or protocol items, whatever `Client.stream` takes),
or an object with ``"prompt"`` (a string) or ``"messages"`` (an array) and settings of
its own for that item (``{"prompt": "hi", "model": "m2", "temperature": 0}``). Blank
lines are skipped; the index of an item is the number of prompts before it. The whole
file is read and checked before anything is sent: a malformed line is a usage error
naming its line.

Every finished item is appended to ``-o`` as a JSON line (`batchfile`); run the same
command again to resume. A progress bar and a summary go to stderr. Exit codes: 0
every item answered, 1 some failed (their errors are in the output file) or an API
error stopped the batch, 2 usage error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, TextIO

from .batch import BatchPrompt
from .cli import (
    DEFAULT_MAX_TURNS,
    EXIT_ERROR,
    EXIT_OK,
    UsageError,
    _count,
    _duration,
    _positive_int,
    _read_text,
    _temperature,
    add_provider_arguments,
    check_provider_args,
    load_python_tools,
    load_schema,
    make_client,
    pick_model,
)
from .errors import InvalidInputError
from .prompt import Prompt

__all__ = ["configure", "read_prompts", "run_batch_command"]


def _concurrency(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        count: int = _positive_int(text)
        return count
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f'expected "auto" or a positive integer, got {text!r}') from None


def configure(batch: argparse.ArgumentParser) -> None:
    """The ``batch`` subcommand's arguments."""
    batch.add_argument("input", type=Path, help="JSONL file, one prompt per line")
    batch.add_argument("-o", "--output", type=Path, required=True,
                       help="JSONL file the answers are appended to (run again to resume)")
    add_provider_arguments(batch)
    request = batch.add_argument_group("request")
    request.add_argument("-m", "--model", help="model name (default: $LLMX_MODEL, else per provider)")
    request.add_argument("-s", "--system", metavar="TEXT", help="system message for every prompt")
    request.add_argument("--max-tokens", metavar="N", type=_positive_int, help="most tokens to generate")
    request.add_argument("--temperature", metavar="T", type=_temperature, help="sampling temperature, 0 to 2")
    request.add_argument("--schema", metavar="SCHEMA",
                         help="structured output: a JSON Schema file, or module:Class (in `parsed`)")
    request.add_argument("--max-output-retries", metavar="N", type=_count,
                         help="with --schema: ask again, up to N times, when an answer does not fit")
    request.add_argument("--timeout", metavar="SECONDS", type=_duration,
                         help="the most time each request may take (retries, waiting, the answer)")
    request.add_argument("--tool", metavar="MODULE:FUNCTION", action="append", dest="python_tools",
                         help="a Python function the model may call (each item becomes a tool loop; repeatable)")
    request.add_argument("--max-turns", metavar="N", type=_positive_int,
                         help=f"with --tool: the most model calls per item (default: {DEFAULT_MAX_TURNS})")
    run = batch.add_argument_group("batch")
    run.add_argument("--concurrency", metavar="auto|N", type=_concurrency, default="auto",
                     help="requests in flight: auto (follow the server's rate limits; default) or a number")
    run.add_argument("--max-concurrency", metavar="N", type=_positive_int, default=64,
                     help="with --concurrency auto: the most in flight (default: 64)")
    run.add_argument("--fail-fast", action="store_true", help="stop at the first item that fails")
    run.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="a progress bar and a summary on stderr (default: when stderr is a terminal)")
    run.add_argument("-q", "--quiet", action="store_true", help="no summary line on stderr without the bar")


def read_prompts(path: Path, system: str | None) -> list[Any]:
    """The prompts of an input file (see the module docstring); `UsageError` naming the
    line for one that is not a prompt."""
    text = _read_text("input", path)
    prompts: list[Any] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}: line {number}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{where}: not valid JSON: {exc.msg}") from None
        try:
            prompts.append(_prompt(value, system))
        except InvalidInputError as exc:
            raise UsageError(f"{where}: {exc}") from None
    return prompts


def _prompt(value: Any, system: str | None) -> Any:
    if isinstance(value, dict):
        options = dict(value)
        given = [key for key in ("prompt", "messages") if key in options]
        if len(given) != 1:
            raise InvalidInputError("line", 'expected an object with "prompt" (a string) or "messages" '
                                    "(an array), and settings")
        return BatchPrompt(_prompt(options.pop(given[0]), system), options)
    if isinstance(value, str):
        return value if system is None else Prompt.from_text(value, instructions=system)
    if isinstance(value, list):
        return value if system is None else Prompt(input=value, instructions=system)
    raise InvalidInputError("line", f"expected a string, an array of messages or an object, got {type(value).__name__}")


def run_batch_command(args: argparse.Namespace, err: TextIO) -> int:
    """Run the batch `args` describe; the exit code."""
    check_provider_args(args)
    if args.max_turns is not None and not args.python_tools:
        raise UsageError("argument --max-turns: needs --tool")
    if args.max_output_retries is not None and args.schema is None:
        raise UsageError("argument --max-output-retries: needs --schema")
    prompts = read_prompts(args.input, args.system)
    functions = load_python_tools(args.python_tools or ())
    options: dict[str, Any] = {"max_tokens": args.max_tokens, "temperature": args.temperature,
                               "timeout": args.timeout, "max_output_retries": args.max_output_retries,
                               "response_format": None if args.schema is None else load_schema(args.schema)}
    options = {name: value for name, value in options.items() if value is not None}
    client, config_model = make_client(args)
    with client:
        options["model"] = pick_model(args, client.provider, config_model)
        for index, prompt in enumerate(prompts):  # each line's own settings, checked before anything is sent
            if isinstance(prompt, BatchPrompt):
                settings = {**options, **prompt.options}
                settings.pop("max_output_retries", None)  # (not a request's setting)
                try:
                    client.options(**settings)
                except InvalidInputError as exc:
                    raise UsageError(f"{args.input}: prompt {index}: {exc}") from None
        batch = client.map(prompts, concurrency=args.concurrency, max_concurrency=args.max_concurrency,
                           output=args.output, fail_fast=args.fail_fast, progress=args.progress, tools=functions,
                           max_turns=args.max_turns or DEFAULT_MAX_TURNS, **options)
        with batch:
            for _ in batch:
                pass
    summary = batch.summary
    if not batch.shows_progress and not args.quiet:  # (the bar ends with the summary)
        err.write(f"batch: {summary}\n")
    return EXIT_OK if summary.failed == 0 else EXIT_ERROR
