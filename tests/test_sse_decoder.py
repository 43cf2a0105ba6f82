"""SSEDecoder: the framing rules of eventsource-stream 0.2.3 (llmx's SSE crate), one test each,
plus split invariance."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmx_sync.errors import StreamError
from llmx_sync.sse import ServerSentEvent, SSEDecoder, utf8_size


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


# --- UTF-8: decoded with replacement, as the event-stream standard says -----------------------


def test_multibyte_character_split_across_chunks() -> None:
    body = "data: Grüße €𝄞\n\n".encode()
    assert datas(*[body[i:i + 1] for i in range(len(body))]) == ["Grüße €𝄞"]


@pytest.mark.parametrize(
    ("body", "data"),
    [
        (b"data: \x80\x80\n\n", "\ufffd\ufffd"),  # llmx's S08 (llmx ended the stream: see docs/behaviour.md)
        (b"data: \xe2\x82A\n\n", "\ufffdA"),  # an incomplete sequence is one U+FFFD
        (b"data: \xf0\x90\x80A\n\n", "\ufffdA"),
        (b"data: \xed\xa0\x80\n\n", "\ufffd\ufffd\ufffd"),  # a surrogate
        (b"data: \xc0\xaf\n\n", "\ufffd\ufffd"),  # overlong
        (b"data: \xf4\x90\x80\x80\n\n", "\ufffd\ufffd\ufffd\ufffd"),  # past U+10FFFF
        (b"data: a\xe2\x82\ndata: b\n\n", "a\ufffd\nb"),  # a line end is never part of a character
    ],
)
def test_invalid_utf8_is_replaced_and_the_stream_goes_on(body: bytes, data: str) -> None:
    assert outcome([body + b"data: next\n\n"]) == ([ServerSentEvent("message", data),
                                                    ServerSentEvent("message", "next")], None)


def test_invalid_bytes_in_a_comment_change_nothing() -> None:
    assert datas(b": \xff\xfe\x80 ping\n\ndata: a\n: \xe2\x82\n\n") == ["a"]


def test_an_incomplete_character_at_the_end_of_the_body_is_dropped_with_its_event() -> None:
    assert outcome([b"data: a\n\ndata: \xf0\x90\x80"]) == ([ServerSentEvent("message", "a")], None)


def test_replacement_is_the_same_wherever_the_reads_end() -> None:
    body = b"data: \xe2\x82\xac\xe2\x82 \xf0\x9f\x98\n\n"
    whole = decode(body)
    assert [e.data for e in whole] == ["€\ufffd \ufffd"]
    for cut in range(len(body) + 1):
        assert decode(body[:cut], body[cut:]) == whole


# --- properties -----------------------------------------------------------------------------


LINE_ENDS = st.sampled_from(["\n", "\r", "\r\n"])
LINES = st.one_of(
    st.builds(lambda text: "data: " + text, st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=12)),
    st.sampled_from(["", "", "", "data:", "data", ": comment", "event: custom", "event:", "id: 7", "id: a\0b",
                     "retry: 5", "data:  two spaces", "field without meaning", "error: {\"message\":\"x\"}"]),
)
# Bytes that are not UTF-8, or not yet: each decodes to U+FFFD (or waits for its end).
BAD_BYTES = st.sampled_from([b"", b"", b"\x80", b"\xe2\x82", b"\xf0\x9f", b"\xed\xa0\x80", b"\xff"])


@st.composite
def sse_bodies(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(st.tuples(LINES, BAD_BYTES, LINE_ENDS), max_size=16))
    body = b"".join(line.encode() + bad + end.encode() for line, bad, end in lines)
    body += draw(st.sampled_from([b"", b"data: unterminated", b"data: \xf0\x90"]))
    return ("\ufeff" if draw(st.booleans()) else "").encode() + body


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
@given(st.data())
def test_bad_bytes_give_what_the_replaced_text_gives(data: st.DataObject) -> None:
    """The WHATWG decode: U+FFFD for each maximal bad subpart, whatever the reads."""
    body = data.draw(sse_bodies())
    complete = body[:max(body.rfind(b"\n"), body.rfind(b"\r")) + 1]  # an unterminated tail is dropped anyway
    assert outcome(data.draw(splits(body))) == outcome([complete.decode("utf-8", "replace").encode()])


# --- the size limit: bytes of a line and of an event's data, whatever the reads --------------


def sized(chunks: list[bytes], limit: int) -> tuple[list[str], str | None]:
    """Data of the events and the decoder's error, for a decoder with `limit`."""
    decoder = SSEDecoder(max_event_bytes=limit)
    events = [event.data for chunk in chunks for event in decoder.feed(chunk)]
    events += [event.data for event in decoder.finish()]
    return events, None if decoder.error is None else str(decoder.error)


LIMIT_ERROR = ("stream disconnected before completion: an SSE line or event is larger than max_event_bytes=1024 "
               "bytes; the server sent more than a chat answer's event (raise the limit if it is real)")


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_a_line_longer_than_the_limit_stops_the_decoder(newline: bytes) -> None:
    decoder = SSEDecoder(max_event_bytes=1024)
    assert [e.data for e in decoder.feed(b"data: ok" + newline + newline)] == ["ok"]
    assert decoder.feed(b"data: " + b"x" * 600) == [] and decoder.error is None
    assert decoder.feed(b"x" * 600) == []  # the unterminated line passed the limit
    assert str(decoder.error) == LIMIT_ERROR
    assert decoder.feed(b"x" + newline + newline) == []  # nothing more is decoded


@pytest.mark.parametrize("reads", [1, 7, 4096])
def test_an_event_past_the_limit_is_never_delivered_whatever_the_reads(reads: int) -> None:
    # Last round an event arriving whole within one read passed a smaller limit.
    body = b"data: before\n\n" + b"data: " + b"x" * 20_000 + b"\n\ndata: after\n\n"
    assert sized([body[i:i + reads] for i in range(0, len(body), reads)], 1024) == (["before"], LIMIT_ERROR)


def test_the_limit_counts_bytes_not_characters() -> None:
    emoji = "😀".encode()  # 4 bytes, 1 character
    assert sized([b"data: " + emoji * 254 + b"\n\n"], 1024) == (["😀" * 254], None)  # 1022 bytes
    assert sized([b"data: " + emoji * 255 + b"\n\n"], 1024) == ([], LIMIT_ERROR)  # 1026 bytes
    # Data lines of one event: their values and the LFs that join them count.
    two_lines = b"data: " + emoji * 200 + b"\ndata: " + emoji * 55 + b"\n\n"  # 800 + 1 + 220 = 1021 bytes
    assert sized([two_lines], 1024) == (["😀" * 200 + "\n" + "😀" * 55], None)
    assert sized([two_lines.replace(b"data: ", b"data: abcd", 1)], 1024) == ([], LIMIT_ERROR)


def test_lines_and_events_exactly_at_the_limit_pass() -> None:
    line = b"data: " + b"y" * 1018  # 1024 bytes
    assert sized([line + b"\n\n"], 1024) == (["y" * 1018], None)
    assert sized([line + b"y\n\n"], 1024) == ([], LIMIT_ERROR)
    many = b"data: " + b"z" * 500 + b"\ndata: " + b"z" * 523 + b"\n\n"  # 500 + 1 + 523 bytes of data
    assert sized([many], 1024) == (["z" * 500 + "\n" + "z" * 523], None)
    assert sized([many.replace(b"data: z", b"data: zz", 1)], 1024) == ([], LIMIT_ERROR)


def test_empty_data_lines_count() -> None:
    # Last round a body of empty `data:` lines was never counted: 1 GiB of them grew the
    # process by 1.2 GiB. Each one adds the LF that joins it.
    decoder = SSEDecoder(max_event_bytes=1024)
    for _ in range(300):
        assert decoder.feed(b"data:\n" * 4) == []
        if decoder.error is not None:
            break
    assert str(decoder.error) == LIMIT_ERROR
    assert sized([b"data:\n" * 1025 + b"\n"], 1024) == (["\n" * 1024], None)
    assert sized([b"data:\n" * 1026 + b"\n"], 1024) == ([], LIMIT_ERROR)


def test_an_event_of_many_short_lines_is_held_as_text_not_a_list_entry_per_line() -> None:
    decoder = SSEDecoder(max_event_bytes=1 << 20)
    for _ in range(100):
        decoder.feed(b"data: ab\n" * 500)
    assert len(decoder._data) <= 100  # one joined piece per read
    assert [e.data for e in decoder.feed(b"\n")] == ["\n".join(["ab"] * 50_000)]


def test_events_under_the_limit_pass_however_many() -> None:
    decoder = SSEDecoder(max_event_bytes=1024)
    events = decoder.feed(b"".join(b"data: " + b"z" * 900 + b"\n\n" for _ in range(50)))
    assert len(events) == 50 and decoder.error is None


@settings(max_examples=300, deadline=None)
@given(st.data(), st.integers(24, 80))
def test_the_limit_does_not_depend_on_the_reads(data: st.DataObject, limit: int) -> None:
    body = data.draw(sse_bodies())
    assert sized(data.draw(splits(body)), limit) == sized([body], limit)
    assert sized([body[i:i + 1] for i in range(len(body))], limit) == sized([body], limit)


def test_a_comment_line_is_bounded_too() -> None:
    assert sized([b": " + b"p" * 2000 + b"\n\ndata: a\n\n"], 1024) == ([], LIMIT_ERROR)


# --- llama.cpp's `error:` line ------------------------------------------------------------------


def test_an_error_field_is_an_error_event() -> None:
    body = b'data: {"a":1}\n\nerror: {"code":500,"message":"boom"}\n\ndata: [DONE]\n\n'
    assert decode(body) == [ServerSentEvent("message", '{"a":1}'),
                            ServerSentEvent("error", '{"code":500,"message":"boom"}'),
                            ServerSentEvent("message", "[DONE]")]


@pytest.mark.parametrize("text", ["", "ascii", "Grüße", "東京" * 40_000, "😀" * 70_000 + "a", "\ufffd"])
def test_utf8_size_is_the_encoded_length(text: str) -> None:
    assert utf8_size(text) == len(text.encode())
