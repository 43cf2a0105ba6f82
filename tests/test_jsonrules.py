"""`_jsonrules.loads_chunk`: jiter reads a chunk, and must read every text exactly as
`json`'s decoder with the chunk rules does (`_decode_chunk`, which also decides whatever
jiter refuses): the same value, with the same types and key order, or an error for both."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmx_sync._jsonrules import _decode_chunk, loads_chunk


def same(a: Any, b: Any) -> bool:
    """Equal, with the same types all the way down (1 is not 1.0, -0.0 is not 0.0) and
    the same key order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[key], b[key]) for key in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return math.copysign(1, a) == math.copysign(1, b) and (a == b or (math.isnan(a) and math.isnan(b)))
    return bool(a == b)


def outcome(read: Any, text: str) -> tuple[str, Any]:
    try:
        return "value", read(text)
    except (ValueError, RecursionError) as exc:
        return "error", type(exc)


def assert_read_alike(text: str) -> None:
    fast, reference = outcome(loads_chunk, text), outcome(_decode_chunk, text)
    assert fast[0] == reference[0], (text[:200], fast, reference)
    if fast[0] == "value":
        assert same(fast[1], reference[1]), text[:200]
    else:
        assert fast[1] is reference[1], text[:200]  # the decoder's error, whoever refused first


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=25,
)


@settings(max_examples=400)
@given(JSON_VALUES, st.booleans(), st.sampled_from([None, 0, 2]))
def test_every_json_text_is_read_alike(value: Any, ascii_only: bool, indent: int | None) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only, indent=indent)
    assert_read_alike(text)
    assert_read_alike(f" \r\n\t{text}\n ")


# What edits make of valid chunks: broken syntax, odd numbers, escapes, literals.
PIECES = st.sampled_from(['{', '}', '[', ']', '"', ',', ':', '0', '1', '-', '+', '.', 'e', 'E', '00', '1e400', '-0',
                          '\\', '\\u', '\\ud83d', '\\ude00', '\\ud800', 'u00e9', 'n', 'null', 'true', 'fals', 'NaN',
                          'Infinity', ' ', '\t', '\n', '\x0c', '\x00', '\xa0', 'é', '😀', '\ufeff', 'x'])
CHUNK = ('{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-mini",'
         '"choices":[{"index":0,"delta":{"content":"Hi \\"there\\" caf\\u00e9 😀"},"logprobs":null,'
         '"finish_reason":null}],"usage":{"prompt_tokens":12,"completion_tokens":3.5e1}}')


@settings(max_examples=600)
@given(st.lists(st.tuples(st.integers(min_value=0, max_value=len(CHUNK)), st.integers(min_value=0, max_value=3),
                          PIECES), max_size=4))
def test_edited_chunks_are_read_alike(edits: list[tuple[int, int, str]]) -> None:
    text = CHUNK
    for at, cut, piece in edits:
        at = min(at, len(text))
        text = text[:at] + piece + text[at + cut:]
    assert_read_alike(text)


@pytest.mark.parametrize("text", [
    "", " ", "NaN", "-Infinity", '{"a":NaN}', "[1] x", "[1]\x0c", "\ufeff{}", '{"a":1,"a":2,"b":3,"a":4}',
    '"\\ud800"', '"\\udc00\\ud800"', '"\\ud83d\\ude00"', "\ud800", '"a\ud800"', "1e400", "-1e400", "-0", "-0.0",
    "1E+05", "9" * 4300, "9" * 4301, "1." + "5" * 5000, "[" * 200 + "]" * 200, "[" * 202 + "]" * 202,
    "[" * 5000 + "]" * 5000, '{"a":' * 300 + "1" + "}" * 300, '"\\u0000"', '"\x01"', "[1,]", "01",
    '{"choices":[{"delta":{"content":"' + "x" * 70000 + '"}}]}', '{"a":"' + "é" * 70000 + '",}',
])
def test_edge_cases_are_read_alike(text: str) -> None:
    assert_read_alike(text)


def test_a_lone_surrogate_escape_is_still_read() -> None:
    # jiter (like serde_json) refuses it; the chunk rules never judged strings.
    assert loads_chunk('{"choices":[{"delta":{"content":"\\ud83d"}}]}') == {
        "choices": [{"delta": {"content": "\ud83d"}}]}


def test_nan_and_trailing_garbage_keep_the_decoders_messages() -> None:
    with pytest.raises(ValueError, match="NaN is not valid JSON"):
        loads_chunk('{"a":NaN}')
    with pytest.raises(json.JSONDecodeError, match="Extra data"):
        loads_chunk("{} x")
