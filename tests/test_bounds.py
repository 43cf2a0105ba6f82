"""Issue #17, bounds and endings that hold for every input: one test (or a few) per case
the issue measured, against loopback fault servers.

1. a paused consumer holds at most `max_buffered_bytes` plus one event, whatever the
   event sizes;
2. a consumer that only iterates keeps the answer so far, not its events;
3. the total deadline covers response headers trickled in;
4. a stream closed by anyone but its consumer is an error, for the browser too;
5. tools are bounded (`tool_timeout`, the run's `timeout`), `async def` tools are
   awaited, results that are not data are errors;
6. (tests/test_entry_points.py) every public entry point checks its arguments;
7. no secret in an exception's chain, a `base_url`'s query or an echoed error body;
8. at most ``retries + 1`` POSTs, on warm connections too.

Memory is measured as in test_production.py: in a fresh interpreter that runs the
client alone, its peak RSS reset once the client is warm.
"""

from __future__ import annotations

import select
import time
from collections.abc import Iterator

import pytest
from llm_server import LLMServer, Reply, chat_chunk, sse_event, text_stream_body
from sockets import wait_for
from streaming_support import RELEASE_TIMEOUT, reader_threads
from test_production import finish_client, start_client

MiB = 1 << 20
MB = 10**6


@pytest.fixture(autouse=True)
def no_reader_left() -> Iterator[None]:
    yield
    assert wait_for(lambda: not reader_threads(), RELEASE_TIMEOUT), reader_threads()


def settled_bytes_sent(server: LLMServer, timeout: float = 20.0) -> int:
    """What the server has written once it stopped getting further (its writes blocked)."""
    written, deadline = -1, time.monotonic() + timeout
    while written != server.body_bytes_sent and time.monotonic() < deadline:
        written = server.body_bytes_sent
        time.sleep(0.5)
    return written


# --- 1. backpressure counts bytes -----------------------------------------------------------


@pytest.mark.usefixtures("body_reader")
def test_a_paused_consumer_holds_one_large_event_not_a_queue_of_them(llm_server: LLMServer) -> None:
    # Legal 8 MB events (under the 16 MiB max_event_bytes). The queue used to count reads,
    # not bytes: 64 reads' worth of these let the server push 504 MiB into a paused client.
    event = sse_event(chat_chunk("z" * (8 * MB)))
    count = 16
    llm_server.enqueue(Reply(body=text_stream_body(["warm"])),
                       Reply(body=[*[event] * count, *text_stream_body([], finish_reason="stop")]))
    process = start_client(llm_server, "pause")
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 60)
        assert ready and process.stdout.readline() == "paused\n"
        written = settled_bytes_sent(llm_server)
    finally:
        report = finish_client(process, send="go\n", timeout=120)
    # The consumer's batch (its first event), one queued event, the socket buffers.
    assert written < 4 * 8 * MB, written
    # Those two events, and the parser's copies of the one it was reading (issue #16).
    assert report["growth"] < 6 * 8 * MB, report
    assert (report["deltas"], report["chars"], report["completed"]) == (count, count * 8 * MB, True)


# --- 2. what a stream keeps -----------------------------------------------------------------


@pytest.mark.parametrize("delta_chars", [4096, 8])
def test_a_consumer_that_only_iterates_keeps_the_answer_once(llm_server: LLMServer, delta_chars: int) -> None:
    # 4 KiB deltas are one object shared by the event, the parser and the accumulator,
    # never merged while the consumer only iterates (it used to be: twice the answer).
    # Tiny deltas are kept as compact runs, once by the parser and once by the
    # accumulator (one object per delta used to cost 17 times the answer).
    size = 64 * MiB if delta_chars > 8 else 16 * MiB
    event = sse_event(chat_chunk("d" * delta_chars))
    llm_server.enqueue(Reply(body=text_stream_body(["warm"])),
                       Reply(body=[*[event] * (size // delta_chars), *text_stream_body([], finish_reason="stop")]))
    report = finish_client(start_client(llm_server, "whole"), timeout=300)
    assert (report["chars"], report["completed"]) == (size, True)
    limit = 1.3 if delta_chars > 8 else 2.5
    assert report["growth"] < limit * size, report
