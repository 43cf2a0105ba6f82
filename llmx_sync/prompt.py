"""What is sent to the model: the history, the tools and the instructions."""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any, get_args

from ._jsonrules import as_array, json_type_name, loads
from .errors import InvalidInputError
from .messages import is_chat_message, items_from_messages
from .models import (
    CustomToolCall,
    CustomToolCallOutput,
    FunctionCall,
    FunctionCallOutput,
    LocalShellCall,
    Message,
    Other,
    ResponseItem,
    coerce_item,
    item_from_dict,
)
from .settings import RESPONSE_FORMAT
from .tools import FreeformTool, ToolSpec, coerce_tool


def checked_item(value: Any, index: int) -> ResponseItem:
    """An item, or a dict read as one. An item object is checked field by field too
    (``Message("user", "hi")`` is reported as ``input[i]``, not as an
    AttributeError deep inside the request builder)."""
    item = coerce_item(value, index)
    if item is value and not isinstance(item, Other):  # Other is never sent, so never checked
        try:
            data = item.to_dict()
        except (AttributeError, TypeError) as exc:
            raise InvalidInputError(f"input[{index}]", f"malformed {type(item).__name__}: {exc}") from None
        item_from_dict(data, index=index)
    return item


def checked_input(values: Any) -> list[ResponseItem]:
    """Items (or their dicts), or Chat Completions messages read as items."""
    values = as_array(values, "input")
    if any(is_chat_message(value) for value in values):
        return items_from_messages(values)
    return [checked_item(value, i) for i, value in enumerate(values)]


def checked_tools(values: Any) -> list[ToolSpec]:
    return [coerce_tool(value, i) for i, value in enumerate(as_array(values, "tools"))]


def checked_instructions(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise InvalidInputError("instructions", f"expected a string or None, got {json_type_name(value)}")
    return value


@dataclass(init=False)
class Prompt:
    """One request's worth of conversation.

    `input` and `tools` also accept the protocol dicts (`item_from_dict`,
    `tool_from_dict` shapes) and hold the parsed objects afterwards; `input` may also
    be a list of Chat Completions messages (`messages.items_from_messages`); a bad entry
    raises `InvalidInputError` naming it, e.g. ``input[2].content[0]``.
    `instructions` becomes the system message, exactly as given (None: none).
    `output_schema` asks for structured output, as the `response_format` setting does
    (a dataclass, TypedDict or pydantic model class, or a JSON Schema dict).
    """

    input: list[ResponseItem]
    tools: list[ToolSpec]
    instructions: str | None
    output_schema: Any

    # An explicit __init__ (not __post_init__) so that type checkers accept what is
    # accepted at run time: dicts, tuples, and a list[FunctionTool] (lists are invariant).
    def __init__(
        self,
        input: Iterable[ResponseItem | Mapping[str, Any]] = (),
        tools: Iterable[ToolSpec | Mapping[str, Any]] = (),
        instructions: str | None = None,
        output_schema: Any = None,
    ) -> None:
        self.input = checked_input(input)
        self.tools = checked_tools(tools)
        self.instructions = checked_instructions(instructions)
        if output_schema is not None:
            RESPONSE_FORMAT("output_schema", output_schema)
        self.output_schema = output_schema

    @classmethod
    def of_checked(cls, input: list[ResponseItem], tools: list[ToolSpec], instructions: str | None,
                   output_schema: Any) -> Prompt:
        """A prompt of parts already checked (a run's next turn: its input was checked
        when the run started, its tools too, and the items since are the parser's and
        the runner's). Neither this nor the request built from it (`checked_parts`)
        checks them field by field again: a growing history checked again each turn
        would cost a run O(turns²)."""
        prompt = cls.__new__(cls)
        prompt.input, prompt.tools, prompt.instructions, prompt.output_schema = (
            input, tools, instructions, output_schema)
        prompt.__dict__["_checked"] = (input, tools)
        return prompt

    @classmethod
    def from_text(cls, text: str, *, instructions: str | None = None) -> Prompt:
        """A prompt of one user message."""
        if not isinstance(text, str):
            raise InvalidInputError("text", f"expected a string, got {json_type_name(text)}")
        # The message is made here of a string: nothing in it to check again.
        return cls.of_checked([Message.user(text)], [], checked_instructions(instructions), None)

    def formatted_input(self) -> list[ResponseItem]:
        """The history as the model sees it (shell outputs reformatted), see `format_input`."""
        return format_input(self.input, self.tools)


_ITEM_CLASSES = get_args(ResponseItem)
_TOOL_CLASSES = get_args(ToolSpec)


def checked_parts(prompt: Prompt) -> tuple[list[ResponseItem], list[ToolSpec], str | None]:
    """The prompt's input, tools and instructions, checked again: its attributes may
    have been changed since it was made. A prompt made by `Prompt.of_checked` whose
    lists are still the ones it was made with is only checked to hold items and tools."""
    instructions = checked_instructions(prompt.instructions)
    made_of = prompt.__dict__.get("_checked")
    if (made_of is not None and made_of[0] is prompt.input and made_of[1] is prompt.tools
            and all(isinstance(item, _ITEM_CLASSES) for item in prompt.input)
            and all(isinstance(tool, _TOOL_CLASSES) for tool in prompt.tools)):
        return prompt.input, prompt.tools, instructions
    return checked_input(prompt.input), checked_tools(prompt.tools), instructions


# --- shell outputs for the freeform apply_patch tool, formatted as llmx does ----

SHELL_TOOL_NAMES = ("shell", "container.exec")


def format_input(items: Sequence[ResponseItem], tools: Sequence[ToolSpec]) -> list[ResponseItem]:
    """A copy of `items`; with a freeform `apply_patch` tool, shell outputs are
    rewritten as text (`Exit code: ...`), as Codex sends them alongside that tool.
    The items passed in are never modified."""
    if any(isinstance(tool, FreeformTool) and tool.name == "apply_patch" for tool in tools):
        return reserialize_shell_outputs(items)
    return list(items)


def reserialize_shell_outputs(items: Sequence[ResponseItem]) -> list[ResponseItem]:
    """Rewrite the first output of every shell or apply_patch call with
    `structured_shell_output` (outputs that do not parse are left as they are)."""
    shell_call_ids: set[str] = set()
    result: list[ResponseItem] = []
    for item in items:
        if isinstance(item, LocalShellCall):
            identifier = item.call_id if item.call_id is not None else item.id
            if identifier is not None:
                shell_call_ids.add(identifier)
        elif isinstance(item, CustomToolCall) and item.name == "apply_patch":
            shell_call_ids.add(item.call_id)
        elif isinstance(item, FunctionCall) and (item.name in SHELL_TOOL_NAMES or item.name == "apply_patch"):
            shell_call_ids.add(item.call_id)
        elif isinstance(item, (FunctionCallOutput, CustomToolCallOutput)) and item.call_id in shell_call_ids:
            shell_call_ids.discard(item.call_id)  # an id is used up by its first output, parsed or not
            item = _with_structured_output(item)
        result.append(item)
    return result


def _with_structured_output(item: FunctionCallOutput | CustomToolCallOutput) -> ResponseItem:
    if isinstance(item, CustomToolCallOutput):
        text = structured_shell_output(item.output)
        return item if text is None else replace(item, output=text)
    # Only the plain-text form is rewritten; content_items (which the chat path
    # prefers when present) stay as they are.
    text = structured_shell_output(item.output.content)
    return item if text is None else replace(item, output=replace(item.output, content=text))


def structured_shell_output(raw: str) -> str | None:
    """``{"output": str, "metadata": {"exit_code": int, "duration_seconds": float}}``
    as the lines ``Exit code: 0``, ``Wall time: 1.5 seconds``, [``Total output
    lines: N``], ``Output:``, then the output; None if `raw` is not of that shape
    (checked as llmx's serde structs would: i32 exit code, f32 duration, other
    keys ignored)."""
    try:
        parsed = loads(raw)
    except ValueError:
        return None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("metadata"), dict):
        return None
    output, metadata = parsed.get("output"), parsed["metadata"]
    exit_code, duration = metadata.get("exit_code"), metadata.get("duration_seconds")
    if not isinstance(output, str) or not _is_i32(exit_code) or not _is_number(duration):
        return None
    sections = [f"Exit code: {exit_code}", f"Wall time: {rust_f32_display(duration)} seconds"]
    total_lines = total_output_lines(output)
    if total_lines is not None:
        sections.append(f"Total output lines: {total_lines}")
        stripped = strip_total_output_header(output)
        if stripped is not None:
            output = stripped
    sections += ["Output:", output]
    return "\n".join(sections)


def _is_i32(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -(2**31) <= value < 2**31


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_U32 = re.compile(r"\+?[0-9]+")


def total_output_lines(output: str) -> int | None:
    """N from a truncation marker ``[... omitted X of N ...]`` (parsed as a Rust u32)."""
    start = output.find("[... omitted ")
    if start < 0:
        return None
    _, found, after_of = output[start:].partition(" of ")
    segment, space, _ = after_of.partition(" ")
    if not found or not space or not _U32.fullmatch(segment):
        return None
    value = int(segment)
    return value if value < 2**32 else None


def strip_total_output_header(output: str) -> str | None:
    """`output` without a leading ``Total output lines: ...`` line (and one blank
    line after it), or None when it has no such header."""
    prefix = "Total output lines: "
    if not output.startswith(prefix):
        return None
    _, newline, remainder = output[len(prefix):].partition("\n")
    if not newline:
        return None
    return remainder[1:] if remainder.startswith("\n") else remainder


# --- Rust's `Display` for f32 --------------------------------------------------


def to_f32(value: float) -> float:
    """`value as f32`: round to the nearest f32 (too large: infinity)."""
    try:
        result: float = struct.unpack("<f", struct.pack("<f", value))[0]
    except OverflowError:
        return math.copysign(math.inf, value)
    return result


def rust_f32_display(value: float) -> str:
    """`format!("{}", value as f32)`: the shortest decimal that reads back as the
    same f32, never in exponent form and without a trailing ``.0`` (``1``,
    ``0.5``, ``0.0000001``, ``inf``)."""
    x = to_f32(value)
    if math.isnan(x):
        return "NaN"
    sign = "-" if math.copysign(1.0, x) < 0 else ""
    if math.isinf(x):
        return sign + "inf"
    if x == 0:
        return sign + "0"
    digits, exponent = _shortest_f32_decimal(abs(x))
    return sign + _positional(digits, exponent)


def _f32_bits(x: float) -> tuple[int, int]:
    """(mantissa, exponent) with x == mantissa * 2**exponent, as the f32 stores it."""
    _, exp = math.frexp(x)
    exponent = max(exp - 24, -149)  # 24-bit significand; -149 is the subnormal spacing
    return int(Fraction(x) / Fraction(2) ** exponent), exponent


def _shortest_f32_decimal(x: float) -> tuple[int, int]:
    """(digits, exponent) with digits * 10**exponent the shortest decimal that rounds
    back to the positive finite f32 `x`, the closest one among equally short ones."""
    exact = Fraction(x)
    mantissa, exponent = _f32_bits(x)
    ulp = Fraction(2) ** exponent
    # At a power of two the next f32 down is twice as close as the next one up.
    below = ulp / 4 if mantissa == 2**23 and exponent > -149 else ulp / 2
    low, high = exact - below, exact + ulp / 2
    ties_read_back = mantissa % 2 == 0  # round-half-to-even picks x on a tie

    def reads_back(candidate: Fraction) -> bool:
        return low <= candidate <= high if ties_read_back else low < candidate < high

    lead = math.floor(math.log10(x))
    while Fraction(10) ** lead > exact:
        lead -= 1
    while Fraction(10) ** (lead + 1) <= exact:
        lead += 1
    for precision in range(1, 10):  # 9 significant digits always identify an f32
        scale_exponent = lead - precision + 1
        scale = Fraction(10) ** scale_exponent
        floor = math.floor(exact / scale)
        fits = [d for d in (floor, floor + 1) if reads_back(d * scale)]
        if fits:
            best = min(fits, key=lambda d: (abs(d * scale - exact), -d))
            while best % 10 == 0:
                best //= 10
                scale_exponent += 1
            return best, scale_exponent
    raise AssertionError(f"no decimal form found for {x!r}")  # unreachable: 9 digits suffice


def _positional(digits: int, exponent: int) -> str:
    text = str(digits)
    if exponent >= 0:
        return text + "0" * exponent
    point = len(text) + exponent
    if point > 0:
        return f"{text[:point]}.{text[point:]}"
    return "0." + "0" * -point + text
