"""Tests of `llmx_sync.testing`'s scripted server, with plain ``requests`` and raw
sockets, and of tests/sockets.py."""

import json
import socket
import threading
import time

import pytest
import requests
from sockets import live_threads, open_sockets_to, sockets_to, wait_for

from llmx_sync.testing import (
    Disconnect,
    Pause,
    Reply,
    ScriptedServer,
    Stall,
    chat_chunk,
    error_reply,
    sse_done,
    sse_event,
    text_stream_body,
    tool_call_delta,
)

T = 5.0  # generous client timeout so a broken server fails a test instead of hanging it


@pytest.fixture(autouse=True)
def _no_leftovers():
    yield
    assert wait_for(lambda: not live_threads("scripted-server"), timeout=1.0), live_threads("scripted-server")


def _raw_request(port, body=b"{}", path="/v1/chat/completions", extra=b""):
    s = socket.create_connection(("127.0.0.1", port), timeout=T)
    s.sendall(
        b"POST "
        + path.encode()
        + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + extra
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )
    return s


def _recv_all(s):
    out = b""
    while True:
        d = s.recv(65536)
        if not d:
            return out
        out += d


# ---------------------------------------------------------------- helpers


def test_sse_helpers():
    assert sse_event("hi") == b"data: hi\n\n"
    assert sse_event({"a": 1, "b": [1, 2]}) == b'data: {"a":1,"b":[1,2]}\n\n'
    assert sse_event("x", event="ping", newline="\r\n") == b"event: ping\r\ndata: x\r\n\r\n"
    assert sse_event("a\nb") == b"data: a\ndata: b\n\n"
    assert sse_done() == b"data: [DONE]\n\n"

    c = chat_chunk("tok", reasoning="think", finish_reason=None, id="c9")
    assert c["object"] == "chat.completion.chunk" and c["id"] == "c9"
    assert c["choices"] == [
        {"index": 0, "delta": {"content": "tok", "reasoning_content": "think"}, "finish_reason": None}
    ]
    u = chat_chunk(usage={"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3})
    assert u["choices"] == [] and u["usage"]["total_tokens"] == 3
    tc = chat_chunk(tool_calls=[tool_call_delta(0, id="call_1", name="f", arguments='{"a"')])
    assert tc["choices"][0]["delta"]["tool_calls"] == [
        {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a"'}}
    ]

    body = text_stream_body(["He", "llo"], usage={"total_tokens": 5})
    assert len(body) == 5 and body[-1] == sse_done()
    events = [json.loads(p[len(b"data: ") :]) for p in body[:-1]]
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": "He"}
    assert events[1]["choices"][0]["delta"] == {"content": "llo"}
    assert events[2]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    assert events[3]["choices"] == [] and events[3]["usage"] == {"total_tokens": 5}


def test_reply_defaults():
    r = Reply()
    assert r.status == 200 and r.chunked and not r.close_without_response
    assert r.headers == {"Content-Type": "text/event-stream"}
    assert Reply(status=500).headers == {}
    assert Reply(body="x").body == [b"x"]
    with pytest.raises(TypeError):
        Reply(body=[123])


# ---------------------------------------------------------------- scripting


def test_fifo_replies_then_default_then_ran_out(llm_server):
    llm_server.enqueue(*(Reply(body=[sse_event(str(i))]) for i in range(3)))
    assert llm_server.pending == 3
    with requests.Session() as s:
        got = [s.post(llm_server.chat_url, json={}, timeout=T).content for _ in range(3)]
        assert got == [b"data: 0\n\n", b"data: 1\n\n", b"data: 2\n\n"]
        assert llm_server.pending == 0

        r = s.post(llm_server.chat_url, json={}, timeout=T)
        assert r.status_code == 500 and "ran out" in r.text

        llm_server.default = Reply(body=[b"data: d\n\n"])
        assert s.post(llm_server.chat_url, json={}, timeout=T).content == b"data: d\n\n"
        assert s.post(llm_server.chat_url, json={}, timeout=T).content == b"data: d\n\n"
        llm_server.enqueue(Reply(body=[b"data: q\n\n"]))  # queue wins over default
        assert s.post(llm_server.chat_url, json={}, timeout=T).content == b"data: q\n\n"
    assert llm_server.errors == []


def test_any_path_ending_in_chat_completions(llm_server):
    llm_server.enqueue(Reply(body=[b"a"]), Reply(body=[b"b"]))
    base = f"http://127.0.0.1:{llm_server.port}"
    assert requests.post(base + "/openai/deployments/x/chat/completions?api-version=1", timeout=T).content == b"a"
    assert requests.post(base + "/chat/completions", timeout=T).content == b"b"
    r = requests.post(base + "/v1/completions", timeout=T)
    assert r.status_code == 404 and "error" in r.json()
    assert [q.path for q in llm_server.requests] == [
        "/openai/deployments/x/chat/completions?api-version=1",
        "/chat/completions",
        "/v1/completions",
    ]


def test_handler_callable(llm_server):
    def handler(req):
        n = req.json()["n"]
        if n < 0:
            raise ValueError("boom")
        return Reply(body=[sse_event({"n": n * 2})])

    llm_server.handler = handler
    assert requests.post(llm_server.chat_url, json={"n": 21}, timeout=T).content == b'data: {"n":42}\n\n'
    r = requests.post(llm_server.chat_url, json={"n": -1}, timeout=T)
    assert r.status_code == 500 and "boom" in r.text
    assert len(llm_server.errors) == 1 and "boom" in llm_server.errors[0]


def test_models_endpoint(llm_server):
    r = requests.get(llm_server.url + "/models", timeout=T)
    assert r.status_code == 200
    assert r.json()["object"] == "list"
    assert [m["id"] for m in r.json()["data"]] == ["test-model"]


def test_recorded_requests(llm_server):
    llm_server.enqueue(Reply(body=[sse_done()]))
    payload = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hé"}]}
    r = requests.post(
        llm_server.chat_url + "?x=1",
        json=payload,
        headers={"Authorization": "Bearer sk-test", "X-Custom": "v"},
        timeout=T,
    )
    assert r.status_code == 200
    assert llm_server.wait_for_requests(1, timeout=1.0)
    (req,) = llm_server.requests
    assert req.method == "POST"
    assert req.path == "/v1/chat/completions?x=1" and req.route == "/v1/chat/completions"
    assert req.headers["authorization"] == "Bearer sk-test"
    assert req.headers["AUTHORIZATION"] == "Bearer sk-test"
    assert req.headers["x-custom"] == "v"
    assert req.headers["content-type"] == "application/json"
    assert req.json() == payload
    assert json.loads(req.body) == payload
    # the list is a snapshot; mutating it does not affect the server
    llm_server.requests.clear()
    assert len(llm_server.requests) == 1


def test_chunked_request_body_is_recorded(llm_server):
    llm_server.enqueue(Reply(body=[b"ok"]))
    r = requests.post(llm_server.chat_url, data=iter([b'{"a":', b"1}"]), timeout=T)
    assert r.content == b"ok"
    assert llm_server.requests[0].headers["transfer-encoding"] == "chunked"
    assert llm_server.requests[0].json() == {"a": 1}


# ---------------------------------------------------------------- framing


def test_status_and_headers(llm_server):
    llm_server.enqueue(
        error_reply(429, "slow down", type="rate_limit", headers={"Retry-After": "2", "X-Req": "abc"}),
        Reply(body=[b"data: x\n\n"]),
    )
    with requests.Session() as s:
        r = s.post(llm_server.chat_url, json={}, timeout=T)
        assert r.status_code == 429
        assert r.headers["retry-after"] == "2" and r.headers["x-req"] == "abc"
        assert r.headers["content-type"] == "application/json"
        assert int(r.headers["content-length"]) == len(r.content)
        assert r.json()["error"]["message"] == "slow down"

        r = s.post(llm_server.chat_url, json={}, timeout=T)
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/event-stream"
        assert r.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in r.headers
    assert llm_server.connections_accepted == 1  # keep-alive across both


def test_raw_chunked_framing_is_exact(llm_server):
    llm_server.enqueue(Reply(body=[b"data: a", b"", b"bc\n\n"]))
    s = _raw_request(llm_server.port, extra=b"Connection: close\r\n")
    with s:
        raw = _recv_all(s)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"\r\nTransfer-Encoding: chunked" in head
    assert body == b"7\r\ndata: a\r\n4\r\nbc\n\n\r\n0\r\n\r\n"  # empty piece skipped


def test_raw_content_length_and_close_delimited(llm_server):
    llm_server.enqueue(
        Reply(body=[b"ab", b"cd"], chunked=False),
        Reply(body=[b"ab", Pause(0.01), b"cd"], chunked=False),
        Reply(headers={"Content-Length": "10"}, body=[b"abc", Disconnect()], chunked=False),
    )
    with _raw_request(llm_server.port, extra=b"Connection: close\r\n") as s:
        head, _, body = _recv_all(s).partition(b"\r\n\r\n")
    assert b"Content-Length: 4" in head and body == b"abcd"

    with _raw_request(llm_server.port) as s:  # keep-alive request, but close-delimited reply
        head, _, body = _recv_all(s).partition(b"\r\n\r\n")
    assert b"Connection: close" in head and b"Content-Length" not in head
    assert b"Transfer-Encoding" not in head and body == b"abcd"

    with _raw_request(llm_server.port) as s:  # user-supplied (lying) Content-Length
        head, _, body = _recv_all(s).partition(b"\r\n\r\n")
    assert b"Content-Length: 10" in head and body == b"abc"


def test_pieces_arrive_separately(llm_server):
    pieces = [b'data: {"a"', b":1}\n", b"\ndata: [DO", b"NE]\n\n"]
    body = []
    for p in pieces:
        body += [p, Pause(0.05)]
    llm_server.enqueue(Reply(body=body))
    with requests.post(llm_server.chat_url, json={}, stream=True, timeout=T) as r:
        got = list(r.iter_content(chunk_size=None))
    assert got == pieces


def test_pause_is_honoured(llm_server):
    llm_server.enqueue(Reply(body=[b"a", Pause(0.3), b"b"]))
    with requests.post(llm_server.chat_url, json={}, stream=True, timeout=T) as r:
        it = r.iter_content(chunk_size=None)
        assert next(it) == b"a"
        t0 = time.monotonic()
        assert next(it) == b"b"
        assert 0.25 <= time.monotonic() - t0 < 2.0


def test_throughput_20000_pieces(llm_server):
    n = 20_000
    piece = sse_event(chat_chunk("x"))
    llm_server.enqueue(Reply(body=[piece] * n))
    t0 = time.monotonic()
    with _raw_request(llm_server.port, extra=b"Connection: close\r\n") as s:
        raw = _recv_all(s)
    elapsed = time.monotonic() - t0
    body = raw.partition(b"\r\n\r\n")[2]
    assert body.count(b"data: ") == n
    assert body.endswith(b"0\r\n\r\n")
    assert elapsed < 5.0, elapsed


# ---------------------------------------------------------------- failures


@pytest.mark.parametrize("reset", [False, True])
def test_disconnect_mid_body_raises_in_requests(llm_server, reset):
    llm_server.enqueue(Reply(body=[sse_event("a"), Pause(0.05), Disconnect(reset=reset)]))
    got = []
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)) as exc_info:
        with requests.post(llm_server.chat_url, json={}, stream=True, timeout=T) as r:
            assert r.status_code == 200
            for c in r.iter_content(chunk_size=None):
                got.append(c)
    assert got == [b"data: a\n\n"]
    # FIN -> "Response ended prematurely"; RST -> "Connection broken: ConnectionResetError"
    assert ("ConnectionResetError" in str(exc_info.value)) == reset, exc_info.value
    assert llm_server.wait_until_no_open_connections(1.0)
    assert llm_server.client_disconnects == 0  # server-side close is not a client disconnect
    assert llm_server.errors == []


def test_close_without_response_is_connection_error(llm_server):
    llm_server.enqueue(Reply(close_without_response=True))
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(llm_server.chat_url, json={"a": 1}, timeout=T)
    assert len(llm_server.requests) == 1  # the request was read before closing
    assert llm_server.wait_until_no_open_connections(1.0)


def test_stall_then_client_close_is_counted(llm_server):
    llm_server.enqueue(Reply(body=[sse_event("a"), Stall()]))
    r = requests.post(llm_server.chat_url, json={}, stream=True, timeout=T)
    it = r.iter_content(chunk_size=None)  # keep a reference: a dropped generator closes the connection
    assert next(it) == b"data: a\n\n"
    assert llm_server.open_connections == 1
    assert llm_server.client_disconnects == 0
    assert not llm_server.wait_for_client_disconnect(1, timeout=0.1)  # still stalled
    t0 = time.monotonic()
    r.close()
    assert llm_server.wait_for_client_disconnect(1, timeout=1.0)
    assert time.monotonic() - t0 < 1.0
    assert llm_server.client_disconnects == 1
    assert llm_server.wait_until_no_open_connections(1.0)


def test_client_close_during_pause_is_counted(llm_server):
    llm_server.enqueue(Reply(body=[b"a", Pause(30), b"b"]))
    r = requests.post(llm_server.chat_url, json={}, stream=True, timeout=T)
    it = r.iter_content(chunk_size=None)  # keep a reference: a dropped generator closes the connection
    assert next(it) == b"a"
    r.close()
    assert llm_server.wait_for_client_disconnect(1, timeout=1.0)
    assert llm_server.wait_until_no_open_connections(1.0)


def test_read_timeout_against_stall(llm_server):
    llm_server.enqueue(Reply(body=[b"a", Stall()]))
    with pytest.raises(requests.exceptions.ConnectionError):  # ReadTimeoutError wrapped
        with requests.post(llm_server.chat_url, json={}, stream=True, timeout=(T, 0.2)) as r:
            for _ in r.iter_content(chunk_size=None):
                pass
    assert llm_server.wait_for_client_disconnect(1, timeout=1.0)


# ---------------------------------------------------------------- accounting


def test_open_sockets_to_counts_own_client_sockets(llm_server):
    port = llm_server.port
    assert open_sockets_to(port) == 0
    llm_server.enqueue(Reply(body=[sse_event("a"), Stall()]))
    r = requests.post(llm_server.chat_url, json={}, stream=True, timeout=T)
    it = r.iter_content(chunk_size=None)  # keep a reference: a dropped generator closes the connection
    assert next(it) == b"data: a\n\n"
    assert open_sockets_to(port) == 1
    assert [s.state for s in sockets_to(port)] == ["ESTABLISHED"]
    # server-side accepted sockets (local port == port) are not counted
    assert llm_server.open_connections == 1
    r.close()  # body not fully read -> urllib3 closes the socket instead of pooling it
    assert open_sockets_to(port) == 0
    assert llm_server.wait_until_no_open_connections(1.0)


def test_open_sockets_to_ignores_other_processes(llm_server):
    import subprocess
    import sys

    code = (
        f"import socket, sys; s = socket.create_connection(('127.0.0.1', {llm_server.port})); "
        "print('up', flush=True); sys.stdin.read()"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"up\n"
        assert wait_for(lambda: llm_server.open_connections == 1, timeout=1.0)
        assert open_sockets_to(llm_server.port) == 0  # connected, but not from this process
    finally:
        proc.stdin.close()
        proc.wait(T)
        proc.stdout.close()
    assert llm_server.wait_until_no_open_connections(1.0)


def test_open_sockets_to_ignores_other_ports(llm_server):
    with ScriptedServer() as other:
        other.enqueue(Reply(body=[b"a", Stall()]))
        r = requests.post(other.chat_url, json={}, stream=True, timeout=T)
        try:
            it = r.iter_content(chunk_size=None)  # keep a reference: a dropped generator closes the connection
            assert next(it) == b"a"
            assert open_sockets_to(other.port) == 1
            assert open_sockets_to(llm_server.port) == 0
        finally:
            r.close()


def test_connection_reuse_and_pooling(llm_server):
    llm_server.default = Reply(body=text_stream_body(["a", "b"]))
    with requests.Session() as s:
        for _ in range(3):
            with s.post(llm_server.chat_url, json={}, stream=True, timeout=T) as r:
                assert list(r.iter_lines())[-2] == b"data: [DONE]"  # reads to the end
        assert llm_server.connections_accepted == 1
        assert {q.connection_id for q in llm_server.requests} == {1}
        # a fully read response goes back to the pool: the socket stays open
        assert open_sockets_to(llm_server.port) == 1
        assert llm_server.open_connections == 1
    # urllib3 2.x: Session.close() -> PoolManager.clear() only forgets the pools;
    # pooled sockets are closed when a pool is garbage-collected, and a live
    # Response keeps its pool alive (r.raw._pool).
    assert open_sockets_to(llm_server.port) == 1
    del r
    assert wait_for(lambda: open_sockets_to(llm_server.port) == 0, timeout=1.0)
    assert llm_server.wait_until_no_open_connections(1.0)
    assert llm_server.client_disconnects == 0  # idle keep-alive close is not a disconnect


def test_concurrent_clients(llm_server):
    llm_server.default = Reply(body=[b"a", Pause(0.2), b"b"])
    results = []

    def go():
        results.append(requests.post(llm_server.chat_url, json={}, timeout=T).content)

    threads = [threading.Thread(target=go) for _ in range(8)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(T)
    assert results == [b"ab"] * 8
    assert time.monotonic() - t0 < 1.5  # served in parallel, not 8 x 0.2 s
    assert llm_server.connections_accepted == 8


# ---------------------------------------------------------------- stop()


def test_stop_with_stalled_handler_is_fast():
    server = ScriptedServer(Reply(body=[b"a", Stall()])).start()
    port = server.port
    r = requests.post(server.chat_url, json={}, stream=True, timeout=T)
    try:
        it = r.iter_content(chunk_size=None)  # keep a reference: a dropped generator closes the connection
        assert next(it) == b"a"
        t0 = time.monotonic()
        server.stop()
        assert time.monotonic() - t0 < 1.0
        assert not live_threads("scripted-server")
        assert server.client_disconnects == 0  # the server left, not the client
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            for _ in r.iter_content(chunk_size=None):
                pass
    finally:
        r.close()
    assert open_sockets_to(port) == 0
    server.stop()  # idempotent


def test_stop_with_idle_keepalive_pausing_and_blocked_writers_is_fast():
    big = b"x" * (1 << 20)
    server = ScriptedServer(
        Reply(body=[b"done"]),  # -> idle keep-alive connection in a Session
        Reply(body=[b"a", Pause(60), b"b"]),
        Reply(body=[big] * 64),  # client never reads -> handler blocks in sendall
    ).start()
    sess = requests.Session()
    raw = None
    r2 = None
    try:
        assert sess.post(server.chat_url, json={}, timeout=T).content == b"done"
        r2 = requests.post(server.chat_url, json={}, stream=True, timeout=T)
        it2 = r2.iter_content(chunk_size=None)  # keep a reference: a dropped generator closes the connection
        assert next(it2) == b"a"
        raw = _raw_request(server.port)
        assert wait_for(lambda: len(server.requests) == 3, timeout=1.0)
        time.sleep(0.1)  # let the writer fill the socket buffers
        assert server.open_connections == 3
        t0 = time.monotonic()
        server.stop()
        assert time.monotonic() - t0 < 1.0
        assert not live_threads("scripted-server")
        assert server.open_connections == 0
    finally:
        server.stop()
        sess.close()
        if r2 is not None:
            r2.close()
        if raw is not None:
            raw.close()


def test_context_manager_and_url():
    with ScriptedServer() as server:
        assert server.url == f"http://127.0.0.1:{server.port}/v1"
        assert server.chat_url == server.url + "/chat/completions"
        assert live_threads("scripted-server-accept")
    assert not live_threads("scripted-server")
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(server.url + "/models", timeout=T)


# ---------------------------------------------------------------- sockets.py


def test_wait_for_and_live_threads():
    assert wait_for(lambda: True, timeout=0)
    t0 = time.monotonic()
    assert not wait_for(lambda: False, timeout=0.1)
    assert 0.09 <= time.monotonic() - t0 < 1.0

    ev = threading.Event()
    t = threading.Thread(target=ev.wait, args=(T,), name="probe-thread-1")
    t.start()
    try:
        assert live_threads("probe-thread") == [t]
        assert live_threads("nope-") == []
    finally:
        ev.set()
        t.join(T)
    assert wait_for(lambda: not live_threads("probe-thread"), timeout=1.0)
