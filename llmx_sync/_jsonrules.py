"""JSON and text rules shared by every layer: JSON judged the way llmx's serde_json
judges it, the fast decoder of stream chunks, compact JSON as the wire wants it,
plain-JSON checks for caller data, and Rust's `str::trim`.

Python's `json.loads` accepts text that serde_json rejects:
`NaN`/`Infinity`, numbers beyond the f64 range, lone UTF-16 surrogate escapes and
nesting deeper than serde_json's recursion limit. Where llmx asks "is this
valid JSON?" (function-call arguments, shell outputs) the answer must be serde's.
"""

from __future__ import annotations

import json
import json.scanner
import math
from collections.abc import Iterable, Mapping
from typing import Any, Final, cast

import jiter

from .errors import InvalidInputError

_JSON_TYPE_NAMES = {
    type(None): "null", bool: "boolean", int: "number", float: "number",
    str: "string", list: "array", dict: "object",
}


def json_type_name(value: Any) -> str:
    """The JSON name of a value's type (`object`, `array`, …), for error messages."""
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def compact_json(value: Any) -> str:
    """JSON text without spaces and with non-ASCII kept, as serde_json writes it (and
    as one SSE ``data:`` line needs it: `json.dumps` escapes CR and LF in strings)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

# serde_json gives up when nesting reaches 128 arrays/objects.
MAX_NESTING = 127

# How deep caller data (schemas, extra_body) may nest: json.dumps recurses, and a
# structure that contains itself would otherwise loop.
_MAX_VALUE_NESTING = 500


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError("number out of range")
    return value


def _parse_int(text: str) -> int | float:
    if text == "-0":
        return -0.0  # serde_json reads `-0` as the float -0.0, not an integer
    value = int(text)
    if not -(2**63) <= value < 2**64:
        float(value)  # serde falls back to f64; beyond its range (OverflowError) it fails
    return value


def _check_strings_and_depth(value: Any) -> None:
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            _check_no_surrogates(node)
            continue
        if not isinstance(node, (list, dict)):
            continue
        if depth + 1 > MAX_NESTING:
            raise ValueError("recursion limit exceeded")
        if isinstance(node, dict):
            for key in node:
                _check_no_surrogates(key)
            children = list(node.values())
        else:
            children = node
        stack.extend((child, depth + 1) for child in children)


def _check_no_surrogates(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("lone surrogate in string") from None


def loads(text: str) -> Any:
    """Parse `text` as `serde_json::from_str::<Value>` would; `ValueError` if it would fail."""
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_parse_float,
                           parse_int=_parse_int)
    except (OverflowError, RecursionError) as exc:
        raise ValueError(str(exc) or type(exc).__name__) from None
    _check_strings_and_depth(value)
    return value


def is_json(text: str) -> bool:
    """Whether serde_json accepts `text` as a JSON document of any kind."""
    try:
        loads(text)
    except ValueError:
        return False
    return True


def as_array(value: Any, where: str) -> list[Any]:
    """`value` as a list: any iterable except a string, bytes or a mapping (which are
    almost always a mistake, e.g. ``input="hi"``)."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise InvalidInputError(where, f"expected a list, got {json_type_name(value)}")
    return list(value)


def check_json_value(value: Any, where: str) -> None:
    """Raise `InvalidInputError` naming the place unless `value` is plain JSON data:
    None, bool, int, finite float, str, list/tuple and dict with string keys."""
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        node, at, depth = stack.pop()
        if isinstance(node, str):
            check_unicode(at, node)
            continue
        if node is None or isinstance(node, (bool, int)):
            continue
        if isinstance(node, float):
            if not math.isfinite(node):
                raise InvalidInputError(at, f"expected a finite number, got {node!r} (not valid JSON)")
            continue
        if depth >= _MAX_VALUE_NESTING:
            raise InvalidInputError(at, f"nested more than {_MAX_VALUE_NESTING} levels deep (does it contain itself?)")
        if isinstance(node, dict):
            for key, child in node.items():
                if not isinstance(key, str):
                    raise InvalidInputError(at, f"object keys must be strings, got {json_type_name(key)} {key!r}")
                check_unicode(at, key)
                stack.append((child, f"{at}.{key}", depth + 1))
        elif isinstance(node, (list, tuple)):
            stack.extend((child, f"{at}[{i}]", depth + 1) for i, child in enumerate(node))
        else:
            kind = "a mapping that is not a dict" if isinstance(node, Mapping) else type(node).__name__
            raise InvalidInputError(at, f"expected JSON data, got {kind}")


def check_unicode(where: str, text: str) -> None:
    """`InvalidInputError` naming the place and the position (not the text) when `text`
    holds a lone surrogate, which no UTF-8 request can carry (a string cut in the middle
    of a UTF-16 pair, or bytes decoded with ``surrogateescape``)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        problem = (f"character {exc.start + 1} is a lone surrogate (U+{ord(text[exc.start]):04X}), which UTF-8 "
                   "cannot carry: the text was cut in the middle of a character, or decoded from bytes that "
                   "are not UTF-8")
    else:
        return
    raise InvalidInputError(where, problem)


# Rust's `char::is_whitespace` (used by `str::trim`) is the Unicode White_Space
# property. Python's `str.strip()` also strips U+001C..U+001F, Rust does not.
RUST_WHITESPACE: Final = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def rust_trim(text: str) -> str:
    """`text.trim()` as Rust does it."""
    return text.strip(RUST_WHITESPACE)


def is_blank(text: str) -> bool:
    """`text.trim().is_empty()` as Rust does it."""
    return not rust_trim(text)


# --- stream chunks ---------------------------------------------------------------------

_CHUNK_DECODER = json.JSONDecoder(parse_constant=_reject_constant)  # serde_json rejects NaN and Infinity
# The decoder's own C scanner (what `JSONDecoder.decode` calls), used directly by `_decode_chunk`.
_scan_chunk = json.scanner.make_scanner(cast(Any, _CHUNK_DECODER))
# The longest chunk text read by jiter. jiter reads bytes: the copy of a huge event (or a
# whole JSON answer) would add its size to what the event costs while it is parsed.
_JITER_MAX_CHARS: Final = 1 << 16


def loads_chunk(data: str) -> Any:
    """`json.loads` of one stream chunk with serde_json's rules (NaN and Infinity
    rejected; trailing garbage too). Raises `ValueError`.

    Unlike `loads` it does not check number ranges, surrogates and depth: a chunk is
    read for the fields the parser looks at, not judged.

    jiter reads a chunk in about half the time `json`'s scanner takes (it is the
    largest part of the parser's cost per chunk), and gives the same value, types and
    key order for every text it accepts (`tests/test_jsonrules.py`). What it refuses
    goes to `_decode_chunk`, which decides as before: invalid JSON is refused there
    too, with `json`'s message, and the few texts jiter refuses but these rules read (a
    lone surrogate escape, like serde_json; nesting deeper than jiter's 200 levels) are
    read. So does a text longer than 64 Ki characters, which jiter would need a copy of
    as bytes (see docs/behaviour.md#event-memory); the speed is in the many small ones.
    """
    if len(data) > _JITER_MAX_CHARS:
        return _decode_chunk(data)
    try:
        # (jiter's default cache of short strings pays: chunks repeat their keys, id and model.)
        return jiter.from_json(data.encode(), allow_inf_nan=False)
    except ValueError:  # (UnicodeEncodeError among them: a lone surrogate in the text itself)
        return _decode_chunk(data)


def _decode_chunk(data: str) -> Any:
    """`loads_chunk` by `json`'s decoder. A chunk usually has no whitespace around it, so
    the scanner is called directly, which saves `decode`'s two regex matches; anything
    else, errors included, goes through `decode` itself."""
    try:
        value, end = _scan_chunk(data, 0)
    except StopIteration:
        return _CHUNK_DECODER.decode(data)
    return value if end == len(data) else _CHUNK_DECODER.decode(data)
