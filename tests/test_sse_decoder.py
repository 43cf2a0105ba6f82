"""SSEDecoder: the framing rules of eventsource-stream 0.2.3 (llmx's SSE crate), one test each,
plus split invariance."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmx_sync.errors import StreamError
from llmx_sync.sse import ServerSentEvent, SSEDecoder


def decode(*chunks: bytes) -> list[ServerSentEvent]:
    """Events of a body fed as `chunks`, with `finish` (which must not raise)."""
    decoder = SSEDecoder()
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    return events + decoder.finish()


def datas(*chunks: bytes) -> list[str]:
    return [event.data for event in decode(*chunks)]


def outcome(chunks: list[bytes]) -> tuple[list[ServerSentEvent], str | None]:
    """Events and the error text raised by `finish`, if any."""
    decoder = SSEDecoder()
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    try:
        events += decoder.finish()
    except StreamError as exc:
        return events, str(exc)
    return events, None


# --- line ends ---------------------------------------------------------------------------


def test_lf_line_ends() -> None:
    assert decode(b"data: a\n\ndata: b\n\n") == [ServerSentEvent("message", "a"), ServerSentEvent("message", "b")]


def test_crlf_line_ends() -> None:
    assert datas(b"data: a\r\n\r\ndata: b\r\n\r\n") == ["a", "b"]


def test_cr_line_ends() -> None:
    assert datas(b"data: a\r\rdata: b\r\r") == ["a", "b"]


def test_crlf_split_across_chunks_is_one_line_end() -> None:
    # An extra blank line would dispatch "a" and "b" separately.
    assert datas(b"data: a\r", b"\ndata: b\r\n\r\n") == ["a\nb"]


def test_cr_then_crlf_split_across_chunks_is_two_line_ends() -> None:
    # sseclient-py glues these into one event "a\nb".
    assert datas(b"data: a\r", b"\r\ndata: b\r\n\r\n") == ["a", "b"]


def test_lf_line_then_crlf_blank_line() -> None:
    assert datas(b"data: a\n\r\ndata: b\n\n") == ["a", "b"]


def test_event_is_dispatched_as_soon_as_its_blank_line_arrives() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n") == []
    assert decoder.feed(b"\n") == [ServerSentEvent("message", "a")]
    assert decoder.feed(b"data: b\r\r") == [ServerSentEvent("message", "b")]


# --- BOM, comments, fields -----------------------------------------------------------------


def test_leading_bom_is_removed() -> None:
    assert datas(b"\xef\xbb\xbfdata: a\n\n") == ["a"]


def test_bom_split_across_chunks_is_removed() -> None:
    assert datas(b"\xef\xbb", b"\xbfdata: a\n\n") == ["a"]


def test_bom_after_the_start_is_kept() -> None:
    assert datas(b"data: a\n\n", b"\xef\xbb\xbfdata: b\n\ndata: \xef\xbb\xbfc\n\n") == ["a", "\ufeffc"]


def test_comments_are_ignored() -> None:
    assert datas(b": keep-alive\n\n:ping\ndata: a\n: inside\n\n") == ["a"]


def test_one_optional_space_after_the_colon_is_removed() -> None:
    assert datas(b"data:a\n\ndata: b\n\ndata:  c\n\n") == ["a", "b", " c"]


def test_line_without_colon_is_a_field_with_an_empty_value() -> None:
    assert decode(b"data\n\n") == [ServerSentEvent("message", "")]


def test_data_lines_are_joined_with_lf() -> None:
    assert datas(b"data: a\ndata:\ndata: c\n\n") == ["a\n\nc"]


def test_event_field_sets_the_type_for_one_event() -> None:
    assert [(e.event, e.data) for e in decode(b"event: error\ndata: a\n\ndata: b\n\nevent:\ndata: c\n\n")] == [
        ("error", "a"), ("message", "b"), ("message", "c")]


def test_event_type_is_reset_by_a_blank_line_without_data() -> None:
    assert [e.event for e in decode(b"event: x\n\ndata: a\n\n")] == ["message"]


def test_id_persists_and_an_id_with_nul_is_ignored() -> None:
    events = decode(b"id: 1\ndata: a\n\ndata: b\n\nid: 2\x00\ndata: c\n\nid\ndata: d\n\n")
    assert [e.id for e in events] == ["1", "1", "1", ""]


def test_retry_and_unknown_fields_are_ignored() -> None:
    assert decode(b"retry: 100\nfoo: bar\n data: x\ndata: a\n\n") == [ServerSentEvent("message", "a")]


def test_blank_line_without_data_dispatches_nothing() -> None:
    assert decode(b"\n\n\r\n\revent: x\nid: 3\n\n") == []


def test_empty_data_field_dispatches_an_empty_event() -> None:
    assert datas(b"data:\n\n") == [""]


def test_unterminated_last_event_is_discarded() -> None:
    assert datas(b"data: a\n\ndata: b\n") == ["a"]
    assert datas(b"data: a\n\ndata: partial") == ["a"]


# --- UTF-8 --------------------------------------------------------------------------------


def test_multibyte_character_split_across_chunks() -> None:
    body = "data: Grüße €𝄞\n\n".encode()
    assert datas(*[body[i:i + 1] for i in range(len(body))]) == ["Grüße €𝄞"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"data: \x80\x80\n\n", "invalid utf-8 sequence of 1 bytes from index 0"),  # S08
        (b"data: \xe2\x82A\n\n", "invalid utf-8 sequence of 2 bytes from index 0"),
        (b"data: \xf0\x90\x80A\n\n", "invalid utf-8 sequence of 3 bytes from index 0"),
        (b"data: \xed\xa0\x80\n\n", "invalid utf-8 sequence of 1 bytes from index 0"),  # a surrogate
        (b"data: \xc0\xaf\n\n", "invalid utf-8 sequence of 1 bytes from index 0"),  # overlong
        (b"data: a\n\n\xf0\x90\x80", "incomplete utf-8 byte sequence from index 0"),
    ],
)
def test_invalid_utf8_error_text(body: bytes, message: str) -> None:
    assert outcome([body])[1] == f"stream disconnected before completion: UTF8 error: {message}"


def test_invalid_utf8_comes_after_the_events_before_it_and_nothing_after_it_counts() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\ndata: b\n\ndata: \xff") == [ServerSentEvent("message", "a"),
                                                                  ServerSentEvent("message", "b")]
    assert decoder.feed(b"\n\ndata: c\n\n") == []
    with pytest.raises(StreamError, match=r"^stream disconnected before completion: UTF8 error: "
                                          r"invalid utf-8 sequence of 1 bytes from index 0$"):
        decoder.finish()


def test_incomplete_sequence_followed_by_an_invalid_byte() -> None:
    assert outcome([b"data: a\n\ndata: \xe2", b"\x82", b"(\n\n"]) == (
        [ServerSentEvent("message", "a")],
        "stream disconnected before completion: UTF8 error: invalid utf-8 sequence of 2 bytes from index 0")


# --- properties -----------------------------------------------------------------------------


def rust_utf8_error(data: bytes) -> tuple[int, int | None] | None:
    """(valid_up_to, error_len) of Rust's `str::from_utf8`, ported from core::str::validations."""
    i = 0
    while i < len(data):
        first = data[i]
        if first < 0x80:
            i += 1
            continue
        width = 2 if 0xC2 <= first <= 0xDF else 3 if 0xE0 <= first <= 0xEF else 4 if 0xF0 <= first <= 0xF4 else 0
        if width == 0:
            return i, 1
        second = {0xE0: (0xA0, 0xBF), 0xED: (0x80, 0x9F), 0xF0: (0x90, 0xBF), 0xF4: (0x80, 0x8F)}.get(
            first, (0x80, 0xBF))
        for k in range(1, width):
            if i + k >= len(data):
                return i, None
            low, high = second if k == 1 else (0x80, 0xBF)
            if not low <= data[i + k] <= high:
                return i, k
        i += width
    return None


LINE_ENDS = st.sampled_from(["\n", "\r", "\r\n"])
LINES = st.one_of(
    st.builds(lambda text: "data: " + text, st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=12)),
    st.sampled_from(["", "", "", "data:", "data", ": comment", "event: custom", "event:", "id: 7", "id: a\0b",
                     "retry: 5", "data:  two spaces", "field without meaning"]),
)


@st.composite
def sse_bodies(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(st.tuples(LINES, LINE_ENDS), max_size=16))
    text = "".join(line + end for line, end in lines) + draw(st.sampled_from(["", "data: unterminated"]))
    body = ("\ufeff" if draw(st.booleans()) else "").encode() + text.encode()
    return body + draw(st.sampled_from([b"", b"", b"\x80", b"\xe2\x82", b"\xf0\x9f", b"\xed\xa0\x80data: x\n\n"]))


@st.composite
def splits(draw: st.DrawFn, body: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=10)))
    return [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_any_split_yields_the_same_events_as_the_whole_body(data: st.DataObject) -> None:
    body = data.draw(sse_bodies())
    whole = outcome([body])
    assert outcome(data.draw(splits(body))) == whole
    assert outcome([body[i:i + 1] for i in range(len(body))]) == whole


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=24), st.data())
def test_utf8_error_text_matches_rust(tail: bytes, data: st.DataObject) -> None:
    body = b"data: ok\n\n" + tail
    error = rust_utf8_error(body)
    _, text = outcome(data.draw(splits(body)))
    if error is None:
        assert text is None
    else:
        index, length = error
        rust = "incomplete utf-8 byte sequence" if length is None else f"invalid utf-8 sequence of {length} bytes"
        assert text == f"stream disconnected before completion: UTF8 error: {rust} from index 0"
        assert index >= len(b"data: ok\n\n")


# --- the size limit: memory stays bounded whatever the server sends --------------------------


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_a_line_longer_than_the_limit_stops_the_decoder(newline: bytes) -> None:
    decoder = SSEDecoder(max_event_bytes=1000)
    assert [e.data for e in decoder.feed(b"data: ok" + newline + newline)] == ["ok"]
    assert decoder.feed(b"data: " + b"x" * 600) == [] and decoder.error is None
    assert decoder.feed(b"x" * 600) == []  # the unterminated line passed the limit
    assert decoder.error is not None and "max_event_bytes=1000" in str(decoder.error)
    assert decoder.feed(b"x" + newline + newline) == []  # nothing more is decoded


def test_data_lines_without_a_blank_line_past_the_limit_stop_the_decoder() -> None:
    decoder = SSEDecoder(max_event_bytes=1000)
    for _ in range(10):  # 940 characters of data, one event still open
        assert decoder.feed(b"data: " + b"y" * 94 + b"\n") == []
    assert decoder.error is None
    decoder.feed(b"data: " + b"y" * 94 + b"\n")
    assert decoder.error is not None


def test_events_under_the_limit_pass_however_many() -> None:
    decoder = SSEDecoder(max_event_bytes=1000)
    events = decoder.feed(b"".join(b"data: " + b"z" * 900 + b"\n\n" for _ in range(50)))
    assert len(events) == 50 and decoder.error is None
