"""The Prompt and its formatted input (shell outputs reformatted as llmx does for apply_patch)."""

from __future__ import annotations

import copy
import json
import math
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from item_strategies import garbage

from llmx_sync.errors import InvalidInputError
from llmx_sync.models import (
    CustomToolCall,
    CustomToolCallOutput,
    FunctionCall,
    FunctionCallOutput,
    FunctionCallOutputPayload,
    InputText,
    LocalShellCall,
    LocalShellExecAction,
    Message,
    ResponseItem,
)
from llmx_sync.prompt import (
    Prompt,
    format_input,
    rust_f32_display,
    strip_total_output_header,
    structured_shell_output,
    total_output_lines,
)
from llmx_sync.tools import FreeformTool, FreeformToolFormat, FunctionTool, ToolSpec

FREEFORM_APPLY_PATCH = FreeformTool("apply_patch", "Edit files", FreeformToolFormat("grammar", "lark", "start: x"))
FUNCTION_APPLY_PATCH = FunctionTool("apply_patch", "Edit files", {"type": "object", "properties": {}})
EXEC_OUTPUT = json.dumps({"output": "hi\n", "metadata": {"exit_code": 0, "duration_seconds": 1.0}})
STRUCTURED = "Exit code: 0\nWall time: 1 seconds\nOutput:\nhi\n"


# --- Prompt ----------------------------------------------------------------------------


def test_defaults() -> None:
    prompt = Prompt()
    assert (prompt.input, prompt.tools, prompt.instructions, prompt.output_schema) == ([], [], None, None)
    assert Prompt().input is not prompt.input


def test_dicts_become_items_and_tools() -> None:
    prompt = Prompt(input=[{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
                    tools=[{"type": "function", "name": "f"}])
    assert prompt.input == [Message.user("hi")]
    assert prompt.tools == [FunctionTool("f", "", {"type": "object", "properties": {}})]


def test_bad_entries_are_named() -> None:
    with pytest.raises(InvalidInputError, match=r"^input\[1\]: missing required field 'content' of 'message'$"):
        Prompt(input=[Message.user("hi"), {"type": "message", "role": "user"}])
    with pytest.raises(InvalidInputError, match=r"^tools\[0\]\.type: unknown tool type 'x'"):
        Prompt(tools=[{"type": "x"}])
    with pytest.raises(InvalidInputError, match=r"^input\[0\]: expected an item or a dict, got str$"):
        Prompt(input=["hi"])  # type: ignore[list-item]


def test_malformed_item_objects_are_named() -> None:
    with pytest.raises(InvalidInputError, match=r"^input\[0\]: malformed Message: 'str' object has no attribute"):
        Prompt(input=[Message("user", "hi")])  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"^input\[0\]\.role: expected a string, got number$"):
        Prompt(input=[Message(1, [InputText("hi")])])  # type: ignore[arg-type]


def test_input_must_be_a_list_and_instructions_a_string() -> None:
    with pytest.raises(InvalidInputError, match=r"^input: expected a list, got string$"):
        Prompt(input="hi")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"^instructions: expected a string or None, got number$"):
        Prompt(instructions=3)  # type: ignore[arg-type]


def test_from_text() -> None:
    prompt = Prompt.from_text("hello", instructions="Be brief.")
    assert prompt.input == [Message.user("hello")]
    assert prompt.instructions == "Be brief."
    assert Prompt.from_text("x").instructions is None


@settings(max_examples=300, deadline=None)
@given(st.lists(garbage, max_size=4), st.lists(garbage, max_size=2))
def test_garbage_makes_a_prompt_or_an_invalid_input_error(input: list[Any], tools: list[Any]) -> None:
    try:
        prompt = Prompt(input=input, tools=tools)
    except InvalidInputError as exc:
        assert exc.where.startswith(("input[", "tools["))
    else:
        assert len(prompt.input) == len(input) and len(prompt.tools) == len(tools)


# --- formatted input -----------------------------------------------------------------------


def _output(call_id: str, text: str = EXEC_OUTPUT) -> FunctionCallOutput:
    return FunctionCallOutput(call_id, FunctionCallOutputPayload(text))


def _shell_history(call: ResponseItem, output: ResponseItem | None = None) -> list[ResponseItem]:
    return [Message.user("run it"), call, output or _output("c1")]


def _formatted_output(history: list[ResponseItem], tools: list[ToolSpec] | None = None) -> Any:
    item = format_input(history, [FREEFORM_APPLY_PATCH] if tools is None else tools)[-1]
    assert isinstance(item, (FunctionCallOutput, CustomToolCallOutput))
    return item.output.content if isinstance(item, FunctionCallOutput) else item.output


def _output_texts(items: list[ResponseItem]) -> list[str]:
    assert all(isinstance(item, FunctionCallOutput) for item in items)
    return [item.output.content for item in items if isinstance(item, FunctionCallOutput)]


def test_without_freeform_apply_patch_input_is_unchanged() -> None:
    history = _shell_history(FunctionCall("shell", "{}", "c1"))
    for tools in ([], [FUNCTION_APPLY_PATCH], [FreeformTool("other", "", FREEFORM_APPLY_PATCH.format)]):
        formatted = format_input(history, tools)
        assert formatted == history
        assert formatted is not history


@pytest.mark.parametrize("name", ["shell", "container.exec", "apply_patch"])
def test_function_call_shell_outputs_are_rewritten(name: str) -> None:
    assert _formatted_output(_shell_history(FunctionCall(name, "{}", "c1"))) == STRUCTURED


def test_other_function_outputs_are_not_rewritten() -> None:
    assert _formatted_output(_shell_history(FunctionCall("read_file", "{}", "c1"))) == EXEC_OUTPUT


def test_local_shell_call_ids_use_call_id_then_id() -> None:
    action = LocalShellExecAction(["ls"])
    assert _formatted_output(_shell_history(LocalShellCall("c1", "completed", action, id="other"))) == STRUCTURED
    assert _formatted_output(_shell_history(LocalShellCall(None, "completed", action, id="c1"))) == STRUCTURED
    assert _formatted_output(_shell_history(LocalShellCall("x", "completed", action, id="c1"))) == EXEC_OUTPUT


def test_custom_apply_patch_outputs_are_rewritten() -> None:
    history = _shell_history(CustomToolCall("c1", "apply_patch", "*** Begin Patch"),
                             CustomToolCallOutput("c1", EXEC_OUTPUT))
    assert _formatted_output(history) == STRUCTURED
    other = _shell_history(CustomToolCall("c1", "grep", "x"), CustomToolCallOutput("c1", EXEC_OUTPUT))
    assert _formatted_output(other) == EXEC_OUTPUT


def test_only_the_first_output_of_a_call_is_rewritten() -> None:
    history = _shell_history(FunctionCall("shell", "{}", "c1")) + [_output("c1")]
    formatted = format_input(history, [FREEFORM_APPLY_PATCH])
    assert _output_texts(formatted[2:]) == [STRUCTURED, EXEC_OUTPUT]


def test_an_unparsable_output_uses_up_the_call_id() -> None:
    history = _shell_history(FunctionCall("shell", "{}", "c1"), _output("c1", "plain text")) + [_output("c1")]
    formatted = format_input(history, [FREEFORM_APPLY_PATCH])
    assert _output_texts(formatted[2:]) == ["plain text", EXEC_OUTPUT]


def test_an_output_before_its_call_is_not_rewritten() -> None:
    history: list[ResponseItem] = [_output("c1"), FunctionCall("shell", "{}", "c1")]
    assert format_input(history, [FREEFORM_APPLY_PATCH]) == history


def test_content_items_are_left_alone() -> None:
    payload = FunctionCallOutputPayload.from_items([InputText("x")])
    payload.content = EXEC_OUTPUT
    history = _shell_history(FunctionCall("shell", "{}", "c1"), FunctionCallOutput("c1", payload))
    item = format_input(history, [FREEFORM_APPLY_PATCH])[-1]
    assert isinstance(item, FunctionCallOutput)
    assert item.output.content == STRUCTURED
    assert item.output.content_items == [InputText("x")]


def test_the_callers_items_are_not_modified() -> None:
    history = _shell_history(FunctionCall("shell", "{}", "c1"))
    before = copy.deepcopy(history)
    prompt = Prompt(input=history, tools=[FREEFORM_APPLY_PATCH])
    assert prompt.formatted_input()[-1] != history[-1]
    assert history == before


# --- the structured text -------------------------------------------------------------------


def _exec(output: Any = "out", **metadata: Any) -> str:
    return json.dumps({"output": output, "metadata": {"exit_code": 0, "duration_seconds": 0.5, **metadata}})


def test_structured_output_lines() -> None:
    assert structured_shell_output(_exec(exit_code=-1, duration_seconds=1.2345)) == (
        "Exit code: -1\nWall time: 1.2345 seconds\nOutput:\nout")
    assert structured_shell_output(_exec(duration_seconds=2)) == "Exit code: 0\nWall time: 2 seconds\nOutput:\nout"


def test_truncated_output_gets_its_total_and_loses_the_header() -> None:
    output = "Total output lines: 500\n\nline 1\n[... omitted 490 of 500 lines ...]\nline 500"
    assert structured_shell_output(_exec(output)) == (
        "Exit code: 0\nWall time: 0.5 seconds\nTotal output lines: 500\nOutput:\n"
        "line 1\n[... omitted 490 of 500 lines ...]\nline 500")


def test_total_output_lines_parses_like_rust_u32() -> None:
    assert total_output_lines("[... omitted 1 of 20 lines ...]") == 20
    assert total_output_lines("[... omitted 1 of +20 lines ...]") == 20
    assert total_output_lines("[... omitted 1 of 4294967295 x") == 4294967295
    for bad in ("no marker", "[... omitted 1 of 4294967296 x", "[... omitted 1 of -2 x", "[... omitted 1 of 20",
                "[... omitted 1 of  20 x", "[... omitted 1 of 2_0 x", "[... omitted 1 of ２ x"):
        assert total_output_lines(bad) is None, bad


def test_strip_total_output_header() -> None:
    assert strip_total_output_header("Total output lines: 9\n\nbody") == "body"
    assert strip_total_output_header("Total output lines: 9\nbody") == "body"
    assert strip_total_output_header("Total output lines: 9\n\n\nbody") == "\nbody"
    assert strip_total_output_header("Total output lines: 9") is None
    assert strip_total_output_header("body") is None


@pytest.mark.parametrize("raw", [
    "plain text",
    json.dumps({"output": "x"}),
    json.dumps({"output": 1, "metadata": {"exit_code": 0, "duration_seconds": 1}}),
    _exec(exit_code=1.0),
    _exec(exit_code=True),
    _exec(exit_code=2**31),
    _exec(duration_seconds="1"),
    _exec(duration_seconds=None),
    '{"output": "x", "metadata": {"exit_code": 0, "duration_seconds": NaN}}',
    '{"output": "x", "metadata": {"exit_code": -0, "duration_seconds": 1}}',
    json.dumps(["out", {"exit_code": 0, "duration_seconds": 1}]),
])
def test_outputs_that_do_not_fit_the_shape_are_kept(raw: str) -> None:
    assert structured_shell_output(raw) is None


def test_other_keys_are_ignored_and_i32_limits_hold() -> None:
    raw = json.dumps({"output": "x", "extra": [1], "metadata": {"exit_code": -(2**31), "duration_seconds": 0,
                                                                "timed_out": False}})
    assert structured_shell_output(raw) == f"Exit code: {-(2**31)}\nWall time: 0 seconds\nOutput:\nx"


# --- Rust f32 Display --------------------------------------------------------------------


@pytest.mark.parametrize(("value", "text"), [
    (1.0, "1"), (0.5, "0.5"), (1.2345, "1.2345"), (0.1, "0.1"), (2.0, "2"), (10.0, "10"),
    (123456789.0, "123456790"), (1e-7, "0.0000001"), (1e20, "100000000000000000000"),
    (3.4028234663852886e38, "340282350000000000000000000000000000000"),
    (1e-45, "0.000000000000000000000000000000000000000000001"),
    (0.0, "0"), (-0.0, "-0"), (-2.5, "-2.5"), (1e39, "inf"), (-1e39, "-inf"), (math.nan, "NaN"),
    (0.30000001192092896, "0.3"), (16777217.0, "16777216"),
    # An exact tie between two shortest forms rounds up, as Rust's Dragon fallback does.
    (19781.0625, "19781.063"),
])
def test_rust_f32_display(value: float, text: str) -> None:
    assert rust_f32_display(value) == text


def _f32(value: float) -> float:
    result: float = struct.unpack("<f", struct.pack("<f", value))[0]
    return result


def _significant_digits(text: str) -> int:
    return len(text.lstrip("-").replace(".", "").strip("0"))


@settings(max_examples=500, deadline=None)
@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_rust_f32_display_is_the_shortest_round_trip(value: float) -> None:
    numpy = pytest.importorskip("numpy")
    text = rust_f32_display(value)
    assert "e" not in text and not text.endswith(".0")
    assert _f32(float(text)) == value
    reference = numpy.format_float_positional(numpy.float32(value), unique=True, trim="-")
    assert _significant_digits(text) == _significant_digits(reference)
