"""SSE framing: the bytes of a ``text/event-stream`` body -> `ServerSentEvent`s.

Pure: no I/O, no threads. `SSEDecoder` frames the body by the WHATWG HTML
"server-sent events" parsing rules, as the eventsource-stream crate (which llmx uses)
frames it: lines end at CR, LF or CRLF (split across reads or not), a leading BOM is
dropped, ``data`` lines of one event are joined with LF, an event is dispatched at a
blank line and an unterminated last event is dropped. Bytes that are not UTF-8 are
decoded with replacement (U+FFFD), as the standard says; llmx ended the stream there.

Why not `sseclient-py` (1.9.0, `sseclient.SSEClient(chunks).events()`)? Checked against it:
- an unterminated last event is dispatched: ``[b"data: a\\n\\n", b"data: partial"]`` gives
  ``a`` *and* ``partial``;
- CR followed by CRLF is misframed, split or not: ``[b"data: a\\r", b"\\r\\ndata: b\\r\\n\\r\\n"]``
  and ``[b"data: a\\r\\r\\ndata: b\\r\\n\\r\\n"]`` give one event ``"a\\nb"`` instead of ``a``, ``b``;
  so does an LF line followed by a CRLF blank line, ``b"data: a\\n\\r\\ndata: b\\n\\n"``;
- blank lines inside a frame are skipped (the cause of the gluing above);
- lines are decoded one by one and strictly, so ``b"data: ok\\n\\ndata: \\x80\\x80\\n\\n"`` raises
  a bare ``UnicodeDecodeError``;
- a leading BOM is kept (``b"\\xef\\xbb\\xbfdata: a\\n\\n"`` gives no event) and an `id` with
  NUL is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .errors import StreamError

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "SSEDecoder", "ServerSentEvent", "utf8_size"]

#: The largest line or event data the decoder holds, in bytes: memory stays bounded
#: whatever a server sends.
DEFAULT_MAX_EVENT_BYTES = 16 << 20

# Replacement makes decoded text at most this many times longer in UTF-8 than its
# bytes: one bad byte becomes U+FFFD, three bytes.
_MAX_GROWTH: Final = 3
# `utf8_size` encodes a long string in slices of this many characters, so that it
# never makes a second copy of the string.
_SIZE_SLICE: Final = 1 << 16
# A held line up to this many bytes is decoded with the read that ends it; a longer one
# line by line, each line's bytes let go as soon as it is decoded, so that a long line is
# never held as bytes, text and a sliced copy at once.
_READ_AT_ONCE: Final = 1 << 16


@dataclass(slots=True)
class ServerSentEvent:
    """One dispatched event: its type (default ``message``), data lines joined with LF, and
    the last event id seen so far."""

    event: str
    data: str
    id: str = ""


def utf8_size(text: str) -> int:
    """The length of `text` in UTF-8 bytes, without an encoded copy of a long text."""
    if text.isascii():  # O(1) in CPython, and the common case
        return len(text)
    return sum(len(text[i:i + _SIZE_SLICE].encode()) for i in range(0, len(text), _SIZE_SLICE))


class SSEDecoder:
    """Incremental SSE framing of a UTF-8 body.

    `feed` returns the events completed by a chunk of bytes; `finish` (the body ended)
    returns the events still pending, which is always none: an unterminated last event
    is discarded.

    Lines are split on the bytes, so a line or an event never depends on where the reads
    end. Complete lines are decoded with replacement (a CR or LF byte is never part of a
    multi-byte character, so a line decodes the same alone or with its neighbours); the
    unterminated last line is kept as bytes until its end arrives.

    `max_event_bytes` bounds what one line and one event may hold: a line is counted in
    bytes as received (held unterminated tails included), an event's data in the UTF-8
    bytes it is delivered as, the LFs joining its lines included. Past it, `error` is set,
    the events before it are returned and nothing more is read.

    A ``error: <value>`` line is the one field outside the standard that is read: it is
    how llama.cpp's server reported a failure inside a stream, and a standard decoder
    ignores it, hiding the failure. Such an event has the type ``error``.
    """

    __slots__ = ("error", "_max_event_bytes", "_started", "_after_cr", "_partial", "_data", "_data_size",
                 "_event_type", "_last_id")

    def __init__(self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        # Set when a line or an event outgrows `max_event_bytes`: the body is not read
        # further (what it holds is bounded by the limit, whatever the server sends).
        self.error: StreamError | None = None
        self._max_event_bytes = max_event_bytes
        self._started = False  # a line was read (the BOM check is done)
        self._after_cr = False  # the last chunk ended in CR: a LF opening the next one ends no line
        # The unterminated last line. A bytearray grows in place, so a huge line costs
        # its size once, not twice, while it arrives.
        self._partial = bytearray()
        self._data: list[str] = []
        self._data_size = 0  # UTF-8 bytes of `_data` joined with LF
        self._event_type = ""
        self._last_id = ""  # like EventSource's last event id, it persists across events

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        if self.error is not None or not data:
            return []
        if self._after_cr:
            self._after_cr = False
            if data[0] == 0x0A:  # the LF of a CRLF split between reads
                data = data[1:]
        if b"\r" in data:
            self._after_cr = data[-1] == 0x0D
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        end = data.rfind(b"\n")
        if end < 0:
            self._hold(data)
            return []
        held = len(self._partial)
        if held <= _READ_AT_ONCE and self._data_size + _MAX_GROWTH * (held + end + 1) <= self._max_event_bytes:
            # Nothing in here can pass the limit: read it all at once, unchecked. The tail
            # after the last LF decodes apart from the lines before it (no character spans
            # a LF), so the whole read is decoded and the tail's text dropped (it is held
            # as bytes below), which saves copying the read.
            lines = data.decode("utf-8", "replace").split("\n")
            lines.pop()
            if held:
                self._partial += data[:data.index(b"\n")]
                lines[0] = self._partial.decode("utf-8", "replace")
                self._partial = bytearray()
            events = self._lines(lines)
        else:
            self._partial += data[:end + 1]  # in place: a long held line is not copied
            raw_lines = self._partial.split(b"\n")
            raw_lines.pop()
            self._partial = bytearray()  # a long line's bytes are held once, by `raw_lines`
            events = self._checked_lines(raw_lines)
        if end + 1 < len(data) and self.error is None:
            self._hold(data[end + 1:])
        return events

    def finish(self) -> list[ServerSentEvent]:
        """The body ended. Nothing is left to dispatch (an unterminated event is dropped)."""
        return []

    def _hold(self, piece: bytes) -> None:
        """Keep the start of a line until its end arrives (at most `max_event_bytes`)."""
        self._partial += piece
        if len(self._partial) > self._max_event_bytes:
            self._too_large()

    def _checked_lines(self, raw_lines: list[bytes] | list[bytearray]) -> list[ServerSentEvent]:
        """The events of `raw_lines`, read one by one, stopping at the first line or
        event data past the limit (the events before it are returned).

        `raw_lines` is emptied as it is read: a line may be huge, and its bytes go as
        soon as it is decoded. A comment is not decoded at all."""
        events: list[ServerSentEvent] = []
        raw_lines.reverse()
        while raw_lines and self.error is None:
            raw = raw_lines.pop()
            if len(raw) > self._max_event_bytes:
                self._too_large()
            elif raw[:1] == b":":
                self._started = True
            else:
                line = raw.decode("utf-8", "replace")
                del raw
                events += self._lines([line])
        return events

    def _lines(self, lines: list[str]) -> list[ServerSentEvent]:
        if not self._started:
            self._started = True
            if lines[0].startswith("\ufeff"):
                lines[0] = lines[0][1:]
        events: list[ServerSentEvent] = []
        data = self._data
        counted = len(data)  # lines of `data` already in `_data_size`
        for line in lines:
            if line.startswith("data: "):  # the common case, first
                data.append(line[6:])
            elif not line:
                if data:
                    events.append(ServerSentEvent(self._event_type or "message", "\n".join(data), self._last_id))
                    data.clear()
                counted = self._data_size = 0
                self._event_type = ""
            else:
                self._field(line)
        # The data of an event still open is counted once per call, not per line (this
        # loop is the parser's hot path). Its new lines are joined now, so that an event
        # of many short lines costs its bytes, not a list entry per line.
        if len(data) > counted:
            if len(data) - counted > 1:
                data[counted:] = ["\n".join(data[counted:])]
            self._data_size += (1 if counted else 0) + utf8_size(data[-1])
            if self._data_size > self._max_event_bytes:
                self._too_large()
        return events

    def _too_large(self) -> None:
        self.error = StreamError(f"an SSE line or event is larger than max_event_bytes={self._max_event_bytes} "
                                 "bytes; the server sent more than a chat answer's event (raise the limit if it "
                                 "is real)")
        self._partial = bytearray()
        self._data = []
        self._data_size = 0

    def _field(self, line: str) -> None:
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event_type = value
        elif name == "id" and "\0" not in value:
            self._last_id = value
        elif name == "error":
            self._event_type = "error"
            self._data.append(value)
        # `retry`, other unknown fields and comments (lines starting with ':', so an
        # empty name) are ignored.
