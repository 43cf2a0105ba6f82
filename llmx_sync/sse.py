"""SSE framing: the bytes of a ``text/event-stream`` body -> `ServerSentEvent`s.

Pure: no I/O, no threads. `SSEDecoder` frames the body as the eventsource-stream crate
(which llmx uses) frames it, following the WHATWG HTML "server-sent events" parsing
rules: lines end at CR, LF or CRLF (split across reads or not), a leading BOM is
dropped, ``data`` lines of one event are joined with LF, an event is dispatched at a
blank line and an unterminated last event is dropped, and bytes that are not UTF-8 end
the stream with llmx's error text.

Why not `sseclient-py` (1.9.0, `sseclient.SSEClient(chunks).events()`)? Checked against it:
- an unterminated last event is dispatched: ``[b"data: a\\n\\n", b"data: partial"]`` gives
  ``a`` *and* ``partial``;
- CR followed by CRLF is misframed, split or not: ``[b"data: a\\r", b"\\r\\ndata: b\\r\\n\\r\\n"]``
  and ``[b"data: a\\r\\r\\ndata: b\\r\\n\\r\\n"]`` give one event ``"a\\nb"`` instead of ``a``, ``b``;
  so does an LF line followed by a CRLF blank line, ``b"data: a\\n\\r\\ndata: b\\n\\n"``;
- blank lines inside a frame are skipped (the cause of the gluing above);
- lines are decoded one by one, so ``b"data: ok\\n\\ndata: \\x80\\x80\\n\\n"`` raises a bare
  ``UnicodeDecodeError`` instead of llmx's ``UTF8 error: invalid utf-8 sequence ...``;
- a leading BOM is kept (``b"\\xef\\xbb\\xbfdata: a\\n\\n"`` gives no event) and an `id` with
  NUL is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import StreamError

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "SSEDecoder", "ServerSentEvent"]

#: The largest line or event the decoder holds (in decoded characters, about bytes):
#: memory stays bounded whatever a server sends.
DEFAULT_MAX_EVENT_BYTES = 16 << 20


@dataclass(slots=True)
class ServerSentEvent:
    """One dispatched event: its type (default ``message``), data lines joined with LF, and
    the last event id seen so far."""

    event: str
    data: str
    id: str = ""


class SSEDecoder:
    """Incremental SSE framing of a UTF-8 body, byte for byte as eventsource-stream frames it.

    `feed` returns the events completed by a chunk; `finish` (the body ended) raises
    `StreamError` if bytes were left undecodable, after every event that was complete
    before them has been returned by `feed`. An unterminated last event is discarded.

    Like eventsource-stream, the valid UTF-8 prefix of a chunk is used at once, an
    incomplete sequence at its end waits for the next chunk, and from a truly invalid byte
    on nothing is decoded any more. llmx buffers those bytes only to report the first
    error at the end (at index 0 of the buffer); we keep just that error text.
    """

    __slots__ = ("error", "_max_event_bytes", "_utf8_tail", "_utf8_error", "_started", "_after_cr",
                 "_partial_line", "_partial_size", "_data", "_data_size", "_event_type", "_last_id")

    def __init__(self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        # Set when a line or an event outgrows `max_event_bytes`: the body is not read
        # further (what it holds is bounded by the limit, whatever the server sends).
        self.error: StreamError | None = None
        self._max_event_bytes = max_event_bytes
        self._utf8_tail = b""  # an incomplete UTF-8 sequence ending the last chunk
        self._utf8_error: str | None = None  # set at the first invalid byte; later bytes are dropped
        self._started = False  # some text was decoded (the BOM check is done)
        self._after_cr = False  # the last text ended in CR: a LF opening the next one ends no line
        self._partial_line: list[str] = []  # the unterminated last line, in pieces
        self._partial_size = 0  # characters in `_partial_line`
        self._data: list[str] = []
        self._data_size = 0  # characters in `_data`
        self._event_type = ""
        self._last_id = ""  # like EventSource's last event id, it persists across events

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        if self.error is not None:
            return []
        text = self._decode(data)
        if not text:
            return []
        if not self._started:
            self._started = True
            if text[0] == "\ufeff":
                text = text[1:]
        elif self._after_cr:
            self._after_cr = False
            if text[0] == "\n":
                text = text[1:]
                if not text:
                    return []
        if "\r" in text:
            self._after_cr = text[-1] == "\r"
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        return self._lines(text)

    def finish(self) -> list[ServerSentEvent]:
        """The body ended. Nothing is left to dispatch (an unterminated event is dropped),
        so this returns ``[]`` or raises `StreamError` for undecodable bytes."""
        if self._utf8_error is not None:
            raise StreamError(self._utf8_error)
        if self._utf8_tail:
            raise StreamError("UTF8 error: incomplete utf-8 byte sequence from index 0")
        return []

    def _decode(self, data: bytes) -> str:
        if self._utf8_error is not None:
            return ""
        if self._utf8_tail:
            data = self._utf8_tail + data
            self._utf8_tail = b""
        try:
            return data.decode()
        except UnicodeDecodeError as exc:
            if exc.reason == "unexpected end of data":
                self._utf8_tail = data[exc.start:]
            else:
                # Rust's Utf8Error text; Python's invalid span is Rust's `error_len`, and the
                # index is relative to the undecodable remainder, which starts here.
                self._utf8_error = f"UTF8 error: invalid utf-8 sequence of {exc.end - exc.start} bytes from index 0"
            return data[:exc.start].decode()

    def _lines(self, text: str) -> list[ServerSentEvent]:
        # `text` has only LF line ends here.
        lines = text.split("\n")
        last = lines.pop()
        if not lines:
            self._hold(last)
            return []
        if self._partial_line:
            self._partial_line.append(lines[0])
            lines[0] = "".join(self._partial_line)
            self._partial_line = []
            self._partial_size = 0
        if last:
            self._hold(last)
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
        # The size of an event still open is counted once per read, not per line (this
        # loop is the parser's hot path); one read adds at most `READ_SIZE` to it.
        if len(data) > counted:
            self._data_size += sum(map(len, data[counted:]))
            if self._data_size > self._max_event_bytes:
                self._too_large()
        return events

    def _hold(self, piece: str) -> None:
        """Keep the start of a line until its end arrives (at most `max_event_bytes`)."""
        self._partial_line.append(piece)
        self._partial_size += len(piece)
        if self._partial_size > self._max_event_bytes:
            self._too_large()

    def _too_large(self) -> None:
        self.error = StreamError(f"an SSE line or event is larger than max_event_bytes={self._max_event_bytes}; "
                                 "the server sent more than a chat answer's event (raise the limit if it is real)")
        self._partial_line, self._data = [], []
        self._partial_size = self._data_size = 0

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
        # `retry`, unknown fields and comments (lines starting with ':', so an empty name)
        # are ignored.
