"""The command line: ``llmx-sync chat "…"`` (also ``python -m llmx_sync chat "…"``),
``llmx-sync logs`` and ``llmx-sync batch`` (in `cli_batch`).

``chat`` streams one answer to stdout as it arrives, with usage and timings on
stderr; with ``--tool module:function`` it runs the tool loop (`Client.run`),
showing each tool's result between the model's turns. Run on a terminal without a
message, it is an interactive chat. Each conversation is saved as a rollout file
(`sessions`), which ``-c``/``--conversation`` continue and ``logs`` lists.
Argument handling (`build_parser`, `load_prompt`, `make_client`, …) is kept apart
from rendering (`Renderer`, `JsonRenderer`, `format_stats`) so that each piece can
be tested alone; `run_chat` wires them together.

A subcommand is a `Command` in `COMMANDS`: its name, its arguments and the function
that runs it. A usage error found after parsing is a `UsageError`, printed with that
subcommand's usage.

Exit codes: 0 done, 1 API/stream/configuration error, 2 usage error (bad
arguments, unreadable or malformed ``--history``/``--tools``/``--schema`` files, a
``--tool`` that cannot be loaded), 130 interrupted (Ctrl-C). A closed stdout
(``| head``) ends the run quietly with 1. Errors are printed as one line, the
server's own message rather than its body, and the SDK's hint on a second line
when it has one.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import itertools
import json
import math
import os
import select
import stat
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO, assert_never

from ._jsonrules import json_type_name
from .aggregate import ChatResult, aggregate
from .chat.request import TOOL_CHOICE_KEYWORDS
from .client import Client
from .errors import InvalidInputError, LlmxError, UnexpectedStatusError, list_problems, shorten
from .events import (
    Completed,
    Created,
    Event,
    FunctionCallArgumentsDelta,
    OutputItemAdded,
    OutputItemDone,
    OutputJsonDelta,
    OutputRejected,
    OutputTextDelta,
    RateLimits,
    ReasoningContentDelta,
    ReasoningSummaryDelta,
    ReasoningSummaryPartAdded,
    RefusalDelta,
    TokenUsage,
    ToolResult,
)
from .functions import PythonTool, tool
from .local import startup_progress
from .models import (
    CustomToolCall,
    CustomToolCallOutput,
    FunctionCall,
    FunctionCallOutput,
    LocalShellCall,
    Message,
    Reasoning,
    ResponseItem,
    read_history_jsonl,
)
from .prompt import Prompt
from .providers import BUILTIN_PROVIDERS, ConfigFile, Provider, env_value
from .response import ResponseStream
from .runner import RunStream
from .sessions import Session, SessionStore, llmx_home
from .settings import RequestOptions
from .structured import OutputSchema
from .tools import FunctionTool, ToolSpec, tool_from_dict
from .transport import display_url

PROG = "llmx-sync"
#: For a provider with no model of its own (``--base-url``; most local servers ignore the name).
DEFAULT_CUSTOM_MODEL = "gpt-4o-mini"
#: Model calls a `--tool` run may make (`--max-turns`).
DEFAULT_MAX_TURNS = 10
#: How much of a tool's result the text output shows (`--json` has all of it).
TOOL_RESULT_CHARS = 200

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

DIM = "\x1b[2m"
RESET = "\x1b[0m"

_DESCRIPTION = """\
Stream an answer from an OpenAI-compatible Chat Completions server.

The answer goes to stdout as it arrives; usage, finish reason and timings go
to stderr at the end.
"""

def _builtin_lines() -> str:
    return "\n".join(f"    {key:<8} {builtin.summary}" for key, builtin in BUILTIN_PROVIDERS.items())


_CHAT_EPILOG = f"""\
where the request goes (first match wins):
  --config FILE [--provider NAME]   the [model_providers.NAME] table of a TOML
                                    config (NAME defaults to the file's
                                    `model_provider` key; a built-in NAME
                                    without a table is the built-in provider)
  --provider NAME                   a built-in provider:
{_builtin_lines()}
  --base-url URL                    any OpenAI-compatible server; the key is
                                    --api-key, else $LLMX_API_KEY, else none
  (nothing)                         the SDK's default: litellm when $LLMX_BASE_URL is
                                    set, openai when $OPENAI_API_KEY or $OPENAI_BASE_URL
                                    is, litellm when a proxy answers on localhost:4000,
                                    else local
  --base-url together with a provider replaces that provider's base URL;
  --api-key replaces its key.

tools:
  --tools FILE describes tools to the model; their calls are printed, not run.
  --tool module:function (or --tool path/to/file.py:function) is a Python
  function the model may call: the CLI runs it and sends its result back, then
  calls the model again, until an answer has no tool calls (at most --max-turns
  calls, default {DEFAULT_MAX_TURNS}). The module is imported from the current directory
  or $PYTHONPATH; the function's type hints and docstring describe it (see
  llmx_sync.tool). Repeat --tool for several functions.

model: --model, else $LLMX_MODEL, else the continued conversation's, else the
  config's `model`, else the provider's
  ({", ".join(f"{key}: {builtin.model}" for key, builtin in BUILTIN_PROVIDERS.items())}),
  else {DEFAULT_CUSTOM_MODEL}.

the message: the MESSAGE argument; with stdin piped in, stdin's text comes
  first, then a blank line, then MESSAGE (`cat notes.txt | llmx-sync chat
  "Summarise"`), or stdin alone without MESSAGE. On a terminal without MESSAGE,
  an interactive chat: Ctrl-C cancels the answer being written, Ctrl-D leaves;
  the lines typed are kept for the arrow keys in $LLMX_HOME/chat_history.

conversations: each one is saved as a rollout file (JSONL, as Codex and llmx
  write them) in $LLMX_HOME/sessions/ ($LLMX_HOME is ~/.llmx unless set), once
  its answer is complete; --no-log saves nothing. -c continues the most recent
  conversation, --conversation ID (or the start of one) a given one, with its
  model and system message unless -m/-s say otherwise. `llmx-sync logs` lists
  them, `llmx-sync logs ID` shows one.

structured output: --schema FILE.json (a JSON Schema) or --schema
  module:Class (a dataclass, TypedDict or pydantic model) asks for JSON of that
  schema and checks the answer (exit 1 when it does not fit);
  --max-output-retries N asks the model again, up to N times, with what was
  wrong.

exit codes: 0 done, 1 API/stream/configuration error, 2 usage error
  (including unreadable or malformed --history/--tools/--schema files and a
  --tool that cannot be loaded), 130 interrupted. An error is one line on stderr
  (the server's message), with a second `hint:` line when the SDK can tell what
  to do.

examples:
  llmx-sync chat "Why is the sky blue?" --provider local
  git diff | llmx-sync chat "Write a commit message" --base-url http://127.0.0.1:8080/v1
  llmx-sync chat -c "And in French?"
  llmx-sync chat --history chat.jsonl --json | jq -c 'select(.type=="completed")'
  llmx-sync chat "Weather in Paris?" --tool weather:get_weather --tool ./tools.py:convert
  llmx-sync chat "Describe Paris" --schema city.json --max-output-retries 2
"""

_LOGS_DESCRIPTION = """\
List the saved conversations, the most recent first, or show one.

Conversations are the rollout files in $LLMX_HOME/sessions/ ($LLMX_HOME is
~/.llmx unless set); `llmx-sync chat -c` continues the most recent one,
`--conversation ID` any of them.
"""


class UsageError(Exception):
    """A usage problem found after argparse: exit code 2."""


# --- arguments ----------------------------------------------------------------


def _number_type(convert: Callable[[str], Any], what: str, accept: Callable[[Any], bool]) -> Callable[[str], Any]:
    """An argparse `type`: `convert` the text, and refuse what `accept` does not, both
    with ``expected <what>, got '<text>'``."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_positive_int = _number_type(int, "a positive integer", lambda value: value > 0)
_temperature = _number_type(float, "a number from 0 to 2", lambda value: 0.0 <= value <= 2.0)
_duration = _number_type(float, "a number of seconds above 0", lambda value: 0 < value < math.inf)
_count = _number_type(int, "a whole number of 0 or more", lambda value: value >= 0)


def version() -> str:
    from . import __version__  # here, not at the top: the package's __init__ is a layer above

    return __version__


@dataclass(frozen=True)
class Command:
    """A subcommand: `configure` adds its arguments to its parser, `run(args, out, err)`
    does the work and returns the exit code (raising `UsageError` for a usage problem
    found after parsing, `LlmxError` and `KeyboardInterrupt` for `main` to report)."""

    name: str
    help: str
    description: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, TextIO, TextIO], int]
    epilog: str | None = None


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        sub = commands.add_parser(command.name, help=command.help, description=command.description,
                                  epilog=command.epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.set_defaults(run=command.run, command_parser=sub)  # the parser: for usage errors after parsing
        command.configure(sub)
    return parser


def add_provider_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that choose the server (`chat`'s and `batch`'s): --provider, --base-url,
    --api-key, --config; `check_provider_args` checks them."""
    where = parser.add_argument_group("provider")
    where.add_argument("--provider", metavar="NAME",
                       help=f"built-in provider ({', '.join(BUILTIN_PROVIDERS)}) or, with --config, "
                            "a [model_providers.NAME] table")
    where.add_argument("--base-url", metavar="URL", help="an OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1")
    where.add_argument("--api-key", metavar="KEY",
                       help="bearer token (prefer $LLMX_API_KEY: command lines are visible to other users)")
    where.add_argument("--config", metavar="FILE", type=Path, help="TOML file with [model_providers.NAME] tables")


def configure_chat(chat: argparse.ArgumentParser) -> None:
    chat.add_argument(
        "message", nargs="?",
        help="the user message (after stdin's text, when stdin is piped in); `-` reads it from stdin only; "
             "may be left out when --history ends with a user message or a tool output; left out on a "
             "terminal, an interactive chat",
    )

    add_provider_arguments(chat)

    request = chat.add_argument_group("request")
    request.add_argument("-m", "--model", help="model name (default: $LLMX_MODEL, else per provider)")
    request.add_argument("-s", "--system", metavar="TEXT", help="system message (instructions)")
    request.add_argument("--max-tokens", metavar="N", type=_positive_int,
                         help="most tokens to generate (default: the provider's; 8192, 512 for local, "
                              "$LLMX_MAX_TOKENS for the default provider)")
    request.add_argument("--temperature", metavar="T", type=_temperature, help="sampling temperature, 0 to 2")
    request.add_argument("--history", metavar="FILE", type=Path,
                         help="JSONL conversation to continue: protocol items, or a Codex/llmx rollout")
    request.add_argument("--tools", metavar="FILE", type=Path,
                         help='JSON array of Responses-style tools, e.g. [{"type": "function", '
                              '"name": ..., "description": ..., "parameters": {...}}]')
    request.add_argument("--tool", metavar="MODULE:FUNCTION", action="append", dest="python_tools",
                         help="a Python function the model may call, run by the CLI in a tool loop "
                              "(repeatable; MODULE may be a path to a .py file)")
    request.add_argument("--max-turns", metavar="N", type=_positive_int,
                         help=f"with --tool: the most model calls of the loop (default: {DEFAULT_MAX_TURNS})")
    request.add_argument("--tool-choice", metavar="CHOICE",
                         help="auto, none, required, or the name of a function to call (with --tool: "
                              "the first turn only)")
    request.add_argument("--schema", metavar="SCHEMA",
                         help="structured output: a JSON Schema file, or module:Class (a dataclass, TypedDict "
                              "or pydantic model; module may be a path to a .py file)")
    request.add_argument("--max-output-retries", metavar="N", type=_count,
                         help="with --schema: ask again, up to N times, when the answer does not fit")
    request.add_argument("--timeout", metavar="SECONDS", type=_duration,
                         help="the most time the whole request may take (retries, waiting, the answer)")

    conversation = chat.add_argument_group("conversation")
    conversation.add_argument("-c", "--continue", action="store_true", dest="continue_",
                              help="continue the most recent conversation")
    conversation.add_argument("--conversation", metavar="ID",
                              help="continue the conversation with this id (or the start of it); see "
                                   f"`{PROG} logs`")
    conversation.add_argument("-n", "--no-log", action="store_true",
                              help="do not save this conversation (nor the interactive chat's typed lines)")

    output = chat.add_argument_group("output")
    output.add_argument("--json", action="store_true",
                        help="print each event as one JSON object per line, and nothing else, on stdout")
    output.add_argument("--aggregate", action="store_true",
                        help="print only finished items (reasoning, the whole answer, tool calls)")
    output.add_argument("-q", "--quiet", action="store_true",
                        help="no start-up progress, usage and timing lines on stderr")


def check_provider_args(args: argparse.Namespace) -> None:
    """The checks of the provider flags that argparse cannot express (`UsageError`)."""
    if args.provider is not None and args.config is None and args.provider not in BUILTIN_PROVIDERS:
        raise UsageError(f"argument --provider: invalid choice: {args.provider!r} "
                         f"(choose from {', '.join(BUILTIN_PROVIDERS)}, or name a table with --config)")
    if args.api_key is not None:
        if not args.api_key.strip():
            raise UsageError("argument --api-key: the key is empty")
        if args.base_url is None and args.provider is None and args.config is None:
            raise UsageError("argument --api-key: needs --base-url, --provider or --config")


def check_chat_args(args: argparse.Namespace) -> None:
    """The checks of `chat`'s arguments that argparse cannot express (`UsageError`)."""
    check_provider_args(args)
    if args.python_tools:
        if args.tools is not None:
            raise UsageError("argument --tools: not with --tool (the loop can only run Python functions; "
                             "describe every tool as a --tool)")
    elif args.max_turns is not None:
        raise UsageError("argument --max-turns: needs --tool")
    if args.max_output_retries is not None and args.schema is None:
        raise UsageError("argument --max-output-retries: needs --schema")
    if args.continue_ and args.conversation is not None:
        raise UsageError("argument --conversation: not with -c/--continue (which continues the most recent one)")
    if (args.continue_ or args.conversation is not None) and args.history is not None:
        raise UsageError("argument --history: not with -c/--continue or --conversation (the conversation is "
                         "the history)")


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """argparse, with an unknown argument reported by the subcommand it was given to
    (its own usage, not the top level's); exits 2 (SystemExit) on misuse."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


# --- the prompt ---------------------------------------------------------------


def read_message(args: argparse.Namespace, stdin: TextIO) -> str | None:
    """The user message: the positional one, after stdin's text when stdin is piped
    in (a blank line between); stdin's alone for `-` or without one; or None.

    Only a pipe, a file or a socket is read: a terminal (`is_piped` is false) is left
    for the interactive chat, and so is an stdin without a descriptor.
    """
    if args.message == "-":
        text = read_stdin(stdin).rstrip("\r\n")
        if not text.strip():
            raise UsageError("the message read from stdin is empty")
        return text
    piped = read_stdin(stdin).rstrip() if is_piped(stdin) else ""
    message: str | None = args.message
    if not piped.strip():
        return message
    return piped if message is None else f"{piped}\n\n{message}"


#: How long stdin may stay silent before the CLI says it is waiting for it.
STDIN_NOTICE_SECONDS = 2.0


def read_stdin(stdin: TextIO, err: TextIO | None = None) -> str:
    """All of stdin. A pipe that sends nothing for `STDIN_NOTICE_SECONDS` (a parent
    process that keeps it open without writing) gets a line on stderr saying what the
    CLI waits for and how not to, rather than a silent wait; Ctrl-C ends the wait."""
    try:
        ready = select.select([stdin], [], [], STDIN_NOTICE_SECONDS)[0]
    except (OSError, ValueError, TypeError):  # no descriptor to wait on: just read
        ready = [stdin]
    if not ready:
        (err or sys.stderr).write(f"{PROG}: waiting for stdin (a pipe) to end, to send its text before the "
                                  "message; Ctrl-C stops, `< /dev/null` sends the message alone\n")
    return stdin.read()


def is_piped(stream: TextIO) -> bool:
    """True when `stream` is a pipe, a regular file or a socket: input someone sent,
    as opposed to a terminal or ``/dev/null``."""
    try:
        mode = os.fstat(stream.fileno()).st_mode
    except (AttributeError, OSError, ValueError):  # (io.UnsupportedOperation is an OSError)
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode) or stat.S_ISSOCK(mode)


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, OSError, ValueError):
        return False


def _read_text(option: str, path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{option} {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot read: {exc.strerror or exc}") from None


def load_history(path: Path) -> list[ResponseItem]:
    """The items of a `--history` file (protocol items or a rollout, one JSON object a line)."""
    lines = _read_text("--history", path).splitlines()
    try:
        return read_history_jsonl(lines)
    except InvalidInputError as exc:
        raise UsageError(f"--history {path}: {exc}") from None


def _json_file(option: str, path: Path) -> Any:
    text = _read_text(option, path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{option} {path}: line {exc.lineno} column {exc.colno}: not valid JSON: {exc.msg}") from None


def load_tools(path: Path) -> list[ToolSpec]:
    """The tools of a `--tools` file: a JSON array of Responses-style tool objects."""
    data = _json_file("--tools", path)
    if not isinstance(data, list):
        raise UsageError(f"--tools {path}: expected a JSON array of tools, got {json_type_name(data)}")
    try:
        return [tool_from_dict(entry, index=index) for index, entry in enumerate(data)]
    except InvalidInputError as exc:
        raise UsageError(f"--tools {path}: {exc}") from None


def load_python_tools(specs: Sequence[str]) -> list[PythonTool]:
    """The functions of the `--tool` options, as tools (each module imported once)."""
    modules: dict[str, ModuleType] = {}
    tools: dict[str, PythonTool] = {}
    for spec in specs:
        found = load_python_tool(spec, modules)
        if found.name in tools:
            raise UsageError(f"--tool {spec}: a tool named {found.name!r} was already given")
        tools[found.name] = found
    return list(tools.values())


def load_python_tool(spec: str, modules: dict[str, ModuleType] | None = None) -> PythonTool:
    """The tool of ``module:function`` or ``path/to/file.py:function``; `modules` caches
    the modules already imported. Raises `UsageError` saying what is wrong."""
    function = load_python_object("--tool", spec, modules, kind="function")
    name = spec.rpartition(":")[2]
    if isinstance(function, PythonTool):  # already made with @llmx_sync.tool
        return function
    if isinstance(function, FunctionTool) or not callable(function):
        raise UsageError(f"--tool {spec}: {name!r} is not a function (its type is {type(function).__name__})")
    try:
        return tool(function)
    except InvalidInputError as exc:  # a parameter without a usable type hint, say
        raise UsageError(f"--tool {spec}: {exc}") from None


def load_python_object(option: str, spec: str, modules: dict[str, ModuleType] | None = None, *,
                       kind: str = "class") -> object:
    """What ``module:name`` or ``path/to/file.py:name`` names (a `kind`, for messages);
    `modules` caches the modules already imported. Raises `UsageError` naming `option`."""
    where, colon, name = spec.rpartition(":")
    if not colon or not where or not name:
        raise UsageError(f"{option} {spec}: expected MODULE:{kind.upper()} or FILE.py:{kind.upper()}")
    cache = {} if modules is None else modules
    if where not in cache:
        cache[where] = _import_module(option, spec, where)
    found: object = getattr(cache[where], name, None)
    if found is None:
        raise UsageError(f"{option} {spec}: {where} has no {kind} {name!r}")
    return found


def _import_module(option: str, spec: str, where: str) -> ModuleType:
    """Import ``where``: a file when it looks like a path, else a module name, looked up in
    the current directory first (the ``llmx-sync`` script does not put it on the path)."""
    try:
        if where.endswith(".py") or os.sep in where or "/" in where:
            return _import_file(option, spec, Path(where))
        cwd = os.getcwd()
        added = cwd not in sys.path
        if added:
            sys.path.insert(0, cwd)
        try:
            return importlib.import_module(where)
        finally:
            if added:
                sys.path.remove(cwd)
    except UsageError:
        raise
    except ModuleNotFoundError as exc:
        raise UsageError(f"{option} {spec}: cannot import {where}: {exc} (is it in the current directory "
                         "or on $PYTHONPATH?)") from None
    except Exception as exc:  # the module's own code failed: show how, not a traceback
        raise UsageError(f"{option} {spec}: importing {where} failed: {type(exc).__name__}: {exc}") from None


_module_files = itertools.count(1)


def _import_file(option: str, spec: str, path: Path) -> ModuleType:
    if not path.is_file():
        raise UsageError(f"{option} {spec}: no such file: {path}")
    # A name of its own, registered before it runs: dataclasses and pickling look
    # their module up in sys.modules.
    name = f"_llmx_sync_module_{next(_module_files)}_{path.stem}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise UsageError(f"{option} {spec}: {path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def tool_choice_value(choice: str | None, tool_names: Sequence[str] | None) -> str | None:
    """`--tool-choice` as the `tool_choice` setting: `auto`/`none`/`required`, or the name
    of one of the tools (the SDK sends the object that forces it).

    `tool_names` (the names in `--tools`/`--tool`, None when there are none) is checked
    so that a typo is a usage error (exit 2) rather than an API error.
    """
    if choice is None or choice in TOOL_CHOICE_KEYWORDS:
        return choice
    if not choice.strip():
        raise UsageError("--tool-choice: empty")
    if tool_names is None:
        raise UsageError(f"--tool-choice {choice}: a function name needs --tools or --tool")
    if choice not in tool_names:
        have = ", ".join(tool_names) or "none"
        raise UsageError(f"--tool-choice {choice}: no function of that name in --tools (functions: {have})")
    return choice


_CONTINUABLE = (FunctionCallOutput, CustomToolCallOutput)


def _ends_a_turn(items: Sequence[ResponseItem]) -> bool:
    """True when the model can answer next: the last item is a user message or a tool output."""
    if not items:
        return False
    last = items[-1]
    return (isinstance(last, Message) and last.role == "user") or isinstance(last, _CONTINUABLE)


@dataclass
class ChatRequest:
    """What `load_prompt` read from the arguments and files. `interactive`: no message
    was given on a terminal, so the user types the messages."""

    prompt: Prompt
    tool_choice: str | None = None
    #: The `--tool` functions: when there are any, the request runs the tool loop.
    functions: list[PythonTool] = field(default_factory=list)
    #: The `--schema` target (a class, or a JSON Schema dict).
    schema: Any = None
    interactive: bool = False


def load_prompt(args: argparse.Namespace, stdin: TextIO | None = None,
                conversation: Session | None = None) -> ChatRequest:
    """The prompt of `args`: the conversation or history, message, tools, tool choice,
    system text and schema. `conversation` is the one `-c`/`--conversation` continues
    (its system message is kept unless `--system` gives one).

    Raises `UsageError` naming the option and file for anything malformed.
    """
    stdin = stdin if stdin is not None else sys.stdin
    message = read_message(args, stdin)
    items: list[ResponseItem] = load_history(args.history) if args.history is not None else []
    if conversation is not None:
        items = load_conversation_items(conversation)
    interactive = False
    if message is not None:
        items.append(Message.user(message))
    elif is_terminal(stdin):
        interactive = True
    elif not _ends_a_turn(items):
        if args.history is None and conversation is None:
            raise UsageError("a message is required (or `-` to read it from stdin)")
        source = f"--history {args.history}" if conversation is None else f"conversation {conversation.id}"
        raise UsageError(f"{source} does not end with a user message or a tool output; give a message")
    tools = load_tools(args.tools) if args.tools is not None else []
    functions = load_python_tools(args.python_tools or ())
    names = ([t.name for t in [*tools, *functions] if isinstance(t, FunctionTool)]
             if args.tools is not None or functions else None)
    # With --tool, a forced choice holds for the first turn only (Client.run), so it can be given.
    choice = tool_choice_value(args.tool_choice, names)
    instructions = args.system if args.system is not None or conversation is None else conversation.instructions
    schema = load_schema(args.schema) if args.schema is not None else None
    return ChatRequest(Prompt(input=items, tools=tools, instructions=instructions), choice, functions, schema,
                       interactive)


def load_conversation_items(conversation: Session) -> list[ResponseItem]:
    try:
        return conversation.items()
    except InvalidInputError as exc:
        raise UsageError(f"conversation {conversation.id}: {exc}") from None


def load_schema(spec: str) -> Any:
    """The target of `--schema`: a JSON Schema dict read from a file, or the class of
    ``module:Class`` / ``path/to/file.py:Class``; checked as `response_format` is."""
    path = Path(spec)
    if path.suffix == ".json" or path.is_file():
        target: Any = _json_file("--schema", path)
    else:
        target = load_python_object("--schema", spec)
    try:
        OutputSchema.for_target(target)
    except InvalidInputError as exc:
        raise UsageError(f"--schema {spec}: {exc}") from None
    return target


# --- provider and model -----------------------------------------------------------


def make_client(args: argparse.Namespace) -> tuple[Client, str | None]:
    """The client the flags point at, and the config file's `model` (if any).

    `--base-url`/`--api-key` replace the chosen provider's URL and key (`Client`
    does that); alone, `--base-url` is a custom provider whose key is `--api-key`
    or `$LLMX_API_KEY`; with no flags the client resolves the SDK's default.
    """
    provider: Provider | None = None
    config_model: str | None = None
    if args.config is not None:
        config = ConfigFile.read(args.config)
        provider, config_model = config.provider(args.provider), config.model
    elif args.provider is not None:
        provider = Provider.builtin(args.provider)
    return Client(provider, base_url=args.base_url, api_key=args.api_key), config_model


def pick_model(args: argparse.Namespace, provider: Provider, config_model: str | None,
               conversation_model: str | None = None) -> str:
    """--model, $LLMX_MODEL, the continued conversation's, the config's `model`, the
    provider's, then `DEFAULT_CUSTOM_MODEL`."""
    model: str | None = (args.model or env_value("LLMX_MODEL") or conversation_model or config_model
                         or provider.defaults.model)
    return model or DEFAULT_CUSTOM_MODEL


def request_options(args: argparse.Namespace, model: str, tool_choice: str | None,
                    schema: Any = None) -> RequestOptions:
    """The request settings the flags give (the others stay the provider's)."""
    flags = {"model": model, "max_tokens": args.max_tokens, "temperature": args.temperature,
             "tool_choice": tool_choice, "timeout": args.timeout, "response_format": schema}
    return RequestOptions(**{name: value for name, value in flags.items() if value is not None})


# --- rendering ------------------------------------------------------------------


@dataclass(frozen=True)
class Style:
    """How text output looks: `color` dims reasoning with ANSI escapes."""

    color: bool = False

    @classmethod
    def for_stream(cls, out: TextIO, environ: Mapping[str, str] | None = None) -> Style:
        """Colour only on a terminal and only without ``NO_COLOR`` (https://no-color.org)."""
        env = os.environ if environ is None else environ
        return cls(color=is_terminal(out) and not env.get("NO_COLOR"))


def format_tool_call(item: ResponseItem) -> str | None:
    """``[tool call] name(arguments)`` for a tool-call item, None for anything else."""
    if isinstance(item, FunctionCall):
        return f"[tool call] {item.name}({item.arguments})"
    if isinstance(item, CustomToolCall):
        return f"[tool call] {item.name}({item.input})"
    if isinstance(item, LocalShellCall):
        return f"[tool call] local_shell({json.dumps(item.action.command)})"
    return None


def format_tool_result(result: ToolResult) -> str:
    """``[tool result] name: output`` on one line, the output cut to `TOOL_RESULT_CHARS`
    (``[tool error] name: …`` when the call failed)."""
    kind, text = ("error", result.error) if result.error is not None else ("result", result.output)
    return f"[tool {kind}] {result.name}: {shorten(' '.join(text.split()), TOOL_RESULT_CHARS)}"


def format_rejection(rejected: OutputRejected) -> str:
    """``[output rejected] problems; asking again`` on one line (at most `TOOL_RESULT_CHARS`)."""
    problems = shorten(" ".join(list_problems(rejected.errors).split()), TOOL_RESULT_CHARS)
    return f"[output rejected] {problems}; asking again"


class Renderer:
    """Human-readable output of a stream's events (of one turn, or of every turn of a run).

    Deltas are written and flushed as they come; a finished item is written
    only when its text was not streamed (aggregated mode, or a server that sent
    no deltas). Reasoning is dimmed when `style.color`; sections are separated
    by a line break.
    """

    def __init__(self, out: TextIO, style: Style = Style()) -> None:
        self.out = out
        self.style = style
        self._section: str | None = None  # "reasoning", "text" or "tool"
        self._at_line_start = True
        self._streamed_text = False
        self._streamed_reasoning = False

    def render(self, event: Event) -> None:
        match event:
            case OutputTextDelta(delta=delta) | RefusalDelta(delta=delta):  # a refusal is the answer
                self._streamed_text = True
                self._write("text", delta)
            case ReasoningContentDelta(delta=delta) | ReasoningSummaryDelta(delta=delta):
                self._streamed_reasoning = True
                self._write("reasoning", delta)
            case OutputItemDone(item=item):
                self._render_item(item)
            case Completed():
                self.finish()
            case ToolResult():
                self._write("tool", format_tool_result(event) + "\n")
            case OutputRejected():
                self._write("tool", format_rejection(event) + "\n")
            case (Created() | OutputItemAdded() | FunctionCallArgumentsDelta() | RateLimits()
                  | ReasoningSummaryPartAdded() | OutputJsonDelta()):
                pass  # nothing to show (a finished tool call is shown whole)
            case _:
                assert_never(event)

    def _render_item(self, item: ResponseItem) -> None:
        if isinstance(item, Message):
            if item.role == "assistant" and not self._streamed_text:
                self._write("text", item.text + item.refusal)
            self._streamed_text = False
        elif isinstance(item, Reasoning):
            if not self._streamed_reasoning:
                self._write("reasoning", item.text or "\n".join(s.text for s in item.summary))
            self._streamed_reasoning = False
        else:
            line = format_tool_call(item)
            if line is not None:
                self._write("tool", line + "\n")

    def _write(self, section: str, text: str) -> None:
        if not text:
            return
        if section != self._section:
            self._leave_section()
            if not self._at_line_start:
                self.out.write("\n")
            if self._section == "reasoning":
                self.out.write("\n")  # a blank line between reasoning and what follows
            self._section = section
            if section == "reasoning" and self.style.color:
                self.out.write(DIM)
        self.out.write(text)
        self._at_line_start = text.endswith("\n")
        self.out.flush()

    def _leave_section(self) -> None:
        if self._section == "reasoning" and self.style.color:
            self.out.write(RESET)

    def finish(self) -> None:
        """Reset colours and end the last line (idempotent)."""
        self._leave_section()
        if not self._at_line_start:
            self.out.write("\n")
            self._at_line_start = True
        self._section = None
        self.out.flush()


class JsonRenderer:
    """One JSON object per event per line (`event_to_dict`), flushed at once."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def render(self, event: Event) -> None:
        self.out.write(json.dumps(event.to_dict()) + "\n")
        self.out.flush()

    def finish(self) -> None:
        self.out.flush()


@dataclass
class Stats:
    """Timings (monotonic seconds), the last `completed` event, how many turns completed
    and their token usage added up (None when no turn reported any)."""

    started: float
    startup: float | None = None  # seconds the local model's server took to start, before `started`
    first_token: float | None = None
    ended: float | None = None
    completed: Completed | None = None
    turns: int = 0
    usage: TokenUsage | None = None


def add_usage(total: TokenUsage | None, usage: TokenUsage) -> TokenUsage:
    """`total` plus `usage`, field by field."""
    if total is None:
        return usage
    return TokenUsage(**{spec.name: getattr(total, spec.name) + getattr(usage, spec.name)
                         for spec in dataclasses.fields(TokenUsage)})


# Events that carry model output: the first one is the "first token".
_OUTPUT = (OutputTextDelta, RefusalDelta, ReasoningContentDelta, ReasoningSummaryDelta, OutputItemDone)


def observe(events: Iterable[Event], stats: Stats, clock: Callable[[], float] = time.monotonic) -> Iterator[Event]:
    """Pass `events` through, noting when the first model output came and each `completed` event."""
    for event in events:
        if stats.first_token is None and isinstance(event, _OUTPUT):
            stats.first_token = clock()
        if isinstance(event, Completed):
            stats.completed = event
            stats.turns += 1
            if event.token_usage is not None:
                stats.usage = add_usage(stats.usage, event.token_usage)
        yield event


def _seconds(value: float) -> str:
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def format_stats(stats: Stats) -> list[str]:
    """The lines printed on stderr after an answer (the usage of every turn of a run)."""
    completed = stats.completed
    usage = stats.usage
    if usage is None:
        usage_line = "usage: not reported by the server"
    else:
        extra_in = f" ({usage.cached_input_tokens} cached)" if usage.cached_input_tokens else ""
        extra_out = f" ({usage.reasoning_output_tokens} reasoning)" if usage.reasoning_output_tokens else ""
        usage_line = (f"usage: {usage.input_tokens} input tokens{extra_in}, "
                      f"{usage.output_tokens} output tokens{extra_out}, {usage.total_tokens} total")
        if stats.turns > 1:
            usage_line += f" ({stats.turns} turns)"
    finish = completed.finish_reason if completed is not None else None
    if completed is None:
        finish_text = "finish reason: none (no completed event)"
    elif finish is None:
        finish_text = "finish reason: none (the stream ended without one)"
    else:
        finish_text = f"finish reason: {finish}"
    first = "-" if stats.first_token is None else _seconds(stats.first_token - stats.started)
    total = "-" if stats.ended is None else _seconds(stats.ended - stats.started)
    startup = "" if stats.startup is None else f"local model start-up: {_seconds(stats.startup)}, "
    return [usage_line, f"{finish_text}, {startup}time to first token: {first}, total time: {total}"]


# --- running --------------------------------------------------------------------


class ConversationLog:
    """Where this run's exchanges are saved: `session` (created at the first one when
    none is continued), of which `recorded` items are on disk. `store` None: nothing
    is saved (``--no-log``)."""

    def __init__(self, store: SessionStore | None, session: Session | None = None, recorded: int = 0) -> None:
        self.store = store
        self.session = session
        self.recorded = recorded

    def record(self, history: Sequence[ResponseItem], model: str, instructions: str | None) -> None:
        """Save the items of `history` (the whole conversation) not saved yet."""
        if self.store is None:
            return
        if self.session is None:
            self.session = self.store.create(originator=PROG, version=version(), instructions=instructions)
        self.session.append(history[self.recorded:], model=model, instructions=instructions)
        self.recorded = len(history)

    def record_or_warn(self, history: Sequence[ResponseItem], model: str, instructions: str | None,
                       err: TextIO) -> None:
        """`record`; a file that cannot be written is a warning (the answer was shown)."""
        try:
            self.record(history, model, instructions)
        except OSError as exc:
            err.write(f"{PROG}: warning: the conversation could not be saved: {exc}\n")


def open_conversation(args: argparse.Namespace) -> ConversationLog:
    """The conversation `-c`/`--conversation` continue (a `UsageError` when there is no
    such one), or a new one; saved unless `--no-log`."""
    store = SessionStore.default()
    save_to = None if args.no_log else store
    if not args.continue_ and args.conversation is None:
        return ConversationLog(save_to)
    try:
        session = store.latest() if args.continue_ else store.find(args.conversation)
    except (LookupError, OSError, InvalidInputError) as exc:
        raise UsageError(f"--conversation: {exc}") from None
    if session is None:
        raise UsageError(f"-c/--continue: there is no conversation yet in {store.root}")
    return ConversationLog(save_to, session, len(load_conversation_items(session)))


def chat_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``llmx-sync chat``."""
    check_chat_args(args)
    log = open_conversation(args)
    request = load_prompt(args, conversation=log.session)
    return run_chat(args, request, out, err, log)


class StartupProgress:
    """"starting the local model… 3 s" on stderr while the bundled model's server starts
    (it takes seconds, with nothing else to see): rewritten in place each second on a
    terminal, one line before and one after otherwise. Called with the seconds so far
    (`local.startup_progress`); `finish` ends the display and keeps how long it took."""

    def __init__(self, err: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        self.err = err
        self.tty = is_terminal(err)
        self.seconds: float | None = None  # the start-up's time; None when nothing started
        self._clock = clock
        self._began = clock()
        self._shown = -1

    def __call__(self, seconds: float) -> None:
        if self._shown < 0 and not self.tty:
            self.err.write("starting the local model…\n")
        whole = int(seconds)
        if whole > self._shown:
            self._shown = whole
            if self.tty:
                self.err.write(f"\rstarting the local model… {whole} s")
        self.err.flush()

    def finish(self) -> None:
        if self._shown < 0:
            return
        self.seconds = self._clock() - self._began
        self.err.write(("\r" if self.tty else "") + f"the local model started in {_seconds(self.seconds)}\n")
        self.err.flush()


def run_chat(args: argparse.Namespace, request: ChatRequest, out: TextIO, err: TextIO,
             log: ConversationLog | None = None) -> int:
    """Stream the answer to `request` (or, `request.interactive`, chat) and save the
    exchange to `log`. Raises `LlmxError` and `KeyboardInterrupt` to `main`."""
    log = log if log is not None else ConversationLog(None)
    progress = StartupProgress(err)
    try:
        with startup_progress(progress if not args.quiet else lambda seconds: None):
            client, config_model = make_client(args)
    finally:
        progress.finish()
    with client:
        model = pick_model(args, client.provider, config_model, log.session.model if log.session else None)
        options = request_options(args, model, request.tool_choice, request.schema)
        if request.interactive:
            return chat_interactively(args, client, request, options, model, log, out, err)
        result, stats = stream_answer(args, client, request, request.prompt, options, out)
        stats.startup = progress.seconds
    log.record_or_warn(result.history, model, request.prompt.instructions, err)
    if not args.quiet:
        for line in format_stats(stats):
            err.write(line + "\n")
        err.flush()
    return EXIT_OK


def stream_answer(args: argparse.Namespace, client: Client, request: ChatRequest, prompt: Prompt,
                  options: RequestOptions, out: TextIO) -> tuple[ChatResult, Stats]:
    """Send `prompt`, write the answer to `out` as it streams, and return it with its
    timings. Raises `LlmxError` (the answer checked against `--schema` included)."""
    renderer: Renderer | JsonRenderer = JsonRenderer(out) if args.json else Renderer(out, Style.for_stream(out))
    stats = Stats(started=time.monotonic())
    try:
        stream: ResponseStream | RunStream
        if request.functions:
            stream = client.run(prompt, tools=request.functions, options=options,
                                max_turns=args.max_turns or DEFAULT_MAX_TURNS,
                                max_output_retries=args.max_output_retries or 0)
        elif args.max_output_retries is not None:
            stream = client.stream(prompt, options=options, max_output_retries=args.max_output_retries)
        else:
            stream = client.stream(prompt, options=options)
        with stream:
            events: Iterable[Event] = observe(stream, stats)
            if args.aggregate:
                events = aggregate(events, mode="aggregated")
            for event in events:
                renderer.render(event)
            result = stream.collect()
    finally:
        renderer.finish()
    stats.ended = time.monotonic()
    return result, stats


PROMPT = "> "


def chat_interactively(args: argparse.Namespace, client: Client, request: ChatRequest, options: RequestOptions,
                       model: str, log: ConversationLog, out: TextIO, err: TextIO) -> int:
    """Read a message, stream the answer, until Ctrl-D (or ``exit``). Ctrl-C while an
    answer streams cancels it (the exchange is not kept); an error is shown and the
    chat goes on. A conversation that ends with a user message is answered first."""
    save_lines = _line_editing(None if args.no_log else llmx_home() / "chat_history")
    err.write(f"Chatting with {model} at {display_url(client.provider.connection.base_url)}. "
              "Ctrl-C cancels an answer, Ctrl-D (or `exit`) leaves.\n")
    err.flush()
    items = list(request.prompt.input)
    answer_first = _ends_a_turn(items)
    try:
        while True:
            if answer_first:
                attempt, answer_first = items, False
            else:
                try:
                    text = input(PROMPT)
                except EOFError:
                    out.write("\n")
                    return EXIT_OK
                except KeyboardInterrupt:
                    out.write("\n")
                    continue
                if text.strip() in ("exit", "quit"):
                    return EXIT_OK
                if not text.strip():
                    continue
                attempt = [*items, Message.user(text)]
            try:
                result, _ = stream_answer(args, client, request, dataclasses.replace(request.prompt, input=attempt),
                                          options, out)
            except KeyboardInterrupt:
                err.write("(cancelled; not kept in the conversation)\n")
                continue
            except LlmxError as exc:
                err.write(error_text(exc, PROG))
                continue
            finally:
                out.flush()
                err.flush()
            items = result.history
            log.record_or_warn(items, model, request.prompt.instructions, err)
    finally:
        save_lines()


def _line_editing(history_file: Path | None) -> Callable[[], None]:
    """Turn on line editing for `input()` (the arrow keys, and earlier lines from
    `history_file`); returns the function that saves the lines typed."""
    try:
        import readline  # only an interactive chat needs it (and it is not on every platform)
    except ImportError:
        return lambda: None
    readline.set_history_length(1000)
    if history_file is None:
        return lambda: None
    try:
        readline.read_history_file(history_file)
    except OSError:
        pass  # none yet

    def save() -> None:
        try:
            history_file.parent.mkdir(parents=True, exist_ok=True)
            readline.write_history_file(history_file)
            os.chmod(history_file, 0o600)
        except OSError:
            pass  # the lines typed are a convenience; the conversation itself is saved apart

    return save


# --- logs ---------------------------------------------------------------------------


def configure_logs(logs: argparse.ArgumentParser) -> None:
    logs.add_argument("id", nargs="?", metavar="ID",
                      help="show this conversation (its id, or the start of it) instead of the list")
    logs.add_argument("-n", "--count", metavar="N", type=_positive_int, default=20,
                      help="list the N most recent conversations (default: %(default)s)")
    logs.add_argument("--json", action="store_true",
                      help="one JSON object per line: a conversation per line, or with ID its items "
                           "(a history for `chat --history`)")
    logs.add_argument("--path", action="store_true", help="print the directory that holds the conversations")


def logs_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``llmx-sync logs``: list the saved conversations, or show one."""
    store = SessionStore.default()
    if args.path:
        out.write(f"{store.root}\n")
        return EXIT_OK
    if args.id is not None:
        try:
            session = store.find(args.id)
            items = session.items()
        except (LookupError, OSError, InvalidInputError) as exc:
            raise UsageError(str(exc)) from None
        lines = ([json.dumps(item.to_dict()) for item in items] if args.json
                 else format_conversation(session, items))
        out.write("".join(line + "\n" for line in lines))
        return EXIT_OK
    for path in store.paths()[:args.count]:
        try:
            session = Session.read(path)
            line = json.dumps(conversation_summary(session)) if args.json else format_summary(session)
        except (OSError, InvalidInputError) as exc:  # a file someone edited: say so, list the others
            err.write(f"{PROG}: warning: {path}: {exc}\n")
            continue
        out.write(line + "\n")
    return EXIT_OK


def conversation_summary(session: Session) -> dict[str, Any]:
    """What `logs --json` says of a conversation."""
    items = session.items()
    return {"id": session.id, "path": str(session.path),
            "started": session.started.isoformat() if session.started else None,
            "updated": session.updated.isoformat(), "model": session.model,
            "messages": sum(isinstance(item, Message) for item in items), "first_message": session.first_message()}


def format_summary(session: Session) -> str:
    """One line of `logs`: when it was last added to (local time), its id, its model,
    how many messages, and the start of its first message."""
    summary = conversation_summary(session)
    updated = session.updated.astimezone().strftime("%Y-%m-%d %H:%M")
    first = shorten(" ".join(summary["first_message"].split()), 60)
    return f"{updated}  {session.id}  {session.model or '-'}  {summary['messages']} messages  {first}"


def format_conversation(session: Session, items: Sequence[ResponseItem]) -> list[str]:
    """A conversation as text: its id and model, its system message, then each item."""
    lines = [f"conversation {session.id}" + (f" (model {session.model})" if session.model else "")]
    if session.instructions:
        lines.append(f"system: {session.instructions}")
    for item in items:
        if isinstance(item, Message):
            lines.append(f"{item.role}: {item.text}")
        elif isinstance(item, Reasoning):
            lines.append(f"reasoning: {item.text}")
        elif isinstance(item, (FunctionCallOutput, CustomToolCallOutput)):
            output = item.output.content if isinstance(item, FunctionCallOutput) else item.output
            lines.append(f"[tool output] {shorten(' '.join(str(output).split()), TOOL_RESULT_CHARS)}")
        else:
            lines.append(format_tool_call(item) or f"[{item.to_dict().get('type', 'item')}]")
    return lines


# --- main -------------------------------------------------------------------------

def configure_batch(batch: argparse.ArgumentParser) -> None:
    from .cli_batch import configure  # here, not at the top: the batch command builds on this module

    configure(batch)


def batch_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .cli_batch import run_batch_command  # (see configure_batch)

    return run_batch_command(args, err)


_BATCH_DESCRIPTION = """\
Answer every prompt of a JSONL file (one per line) through Client.map: as many
requests in flight as the server's rate limits allow, each answer appended to -o as
it finishes. Run the same command again to resume: answered prompts are skipped,
failed ones tried again. The whole input is checked before anything is sent."""

_BATCH_EPILOG = """\
input lines (JSON, one prompt each):
  "Summarise: …"                                     a user message
  [{"role": "user", "content": "hi"}]                a conversation
  {"prompt": "hi", "model": "m2", "max_tokens": 50}  a prompt with settings of its own
  {"messages": [...], "temperature": 0}

examples:
  llmx-sync batch prompts.jsonl -o answers.jsonl --model gpt-4o-mini
  llmx-sync batch prompts.jsonl -o answers.jsonl --concurrency 16 --schema person.json
"""

COMMANDS: tuple[Command, ...] = (
    Command("chat", "stream an answer, or chat", _DESCRIPTION, configure_chat, chat_command, _CHAT_EPILOG),
    Command("logs", "list the saved conversations, or show one", _LOGS_DESCRIPTION, configure_logs,
            logs_command),
    Command("batch", "answer every prompt of a JSONL file, resumably", _BATCH_DESCRIPTION, configure_batch,
            batch_command, _BATCH_EPILOG),
)


def error_lines(exc: BaseException) -> list[str]:
    """An error as the CLI prints it: its message on one line (a server's message may
    span several), then the SDK's hint, when there is one, on a line of its own."""
    text = str(exc)
    hint = exc.hint if isinstance(exc, UnexpectedStatusError) else None
    if hint and text.endswith(hint):
        text = text.removesuffix(hint).rstrip(" .")
    lines = [" ".join(text.split()) or type(exc).__name__]
    if hint:
        lines.append("hint: " + " ".join(hint.split()))
    return lines


def error_text(exc: BaseException, prog: str) -> str:
    """`error_lines` as printed on stderr: ``<prog>: error: …``, then ``<prog>: hint: …``."""
    first, *hints = error_lines(exc)
    return f"{prog}: error: {first}\n" + "".join(f"{prog}: {line}\n" for line in hints)


def main(argv: Sequence[str] | None = None, *, prog: str = PROG) -> int:
    """The ``llmx-sync`` entry point; returns the exit code."""
    out, err = sys.stdout, sys.stderr
    parser = build_parser(prog)
    try:
        args = parse_args(parser, argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        code: int = args.run(args, out, err)
        return code
    except UsageError as exc:
        command_parser: argparse.ArgumentParser = args.command_parser
        command_parser.print_usage(err)
        err.write(f"{command_parser.prog}: error: {exc}\n")
        return EXIT_USAGE
    except LlmxError as exc:
        err.write(error_text(exc, prog))
        return EXIT_ERROR
    except KeyboardInterrupt:
        err.write(f"{prog}: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # stdout was closed early (`| head`): stop quietly, and keep the
        # interpreter from complaining when it flushes stdout at exit.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_ERROR
    finally:
        err.flush()
