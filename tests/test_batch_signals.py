"""A batch killed (SIGKILL) at random points and resumed does every item exactly once;
Ctrl-C (a real SIGINT) stops a batch within a second, its streams closed and its
output flushed. Both run the batch in a subprocess of their own."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

from llm_server import LLMServer, RecordedRequest, Reply, Stall, chat_chunk, sse_event, text_stream_body
from ratelimit_server import running

ROOT = Path(__file__).resolve().parent.parent

BATCH = textwrap.dedent("""
    import sys
    import llmx_sync as llmx

    url, out, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = llmx.Client(base_url=url, api_key="sk-test")
    for item in client.map([f"p{i}" for i in range(count)], model="m", output=out, progress=False):
        assert item.ok, item.error
    print("done", flush=True)
""")


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def test_killed_at_random_points_and_resumed_every_item_is_done_once(tmp_path: Path) -> None:
    script = tmp_path / "batch.py"
    script.write_text(BATCH)
    out = tmp_path / "results.jsonl"
    count = 3000
    rng = random.Random(2121)
    kills = 0
    with running(requests=100_000, tokens=10_000_000, window=1.0, latency=0.01) as server:
        for _ in range(20):
            before = server.stats()["admitted"]
            child = subprocess.Popen([sys.executable, str(script), server.url, str(out), str(count)],
                                     env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 30
            while server.stats()["admitted"] == before and child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)  # (its start-up, which may take a while on a busy machine)
            time.sleep(rng.uniform(0.0, 0.4))  # then a random point of the batch
            if child.poll() is None:
                child.send_signal(signal.SIGKILL)
                kills += 1
            child.wait(30)
        final = subprocess.run([sys.executable, str(script), server.url, str(out), str(count)], env=child_env(),
                               capture_output=True, text=True, timeout=120)
        assert final.returncode == 0, final.stderr
        assert final.stdout == "done\n"
        admitted = server.stats()["admitted"]
    lines = [json.loads(line) for line in out.read_text().splitlines()]  # every line whole
    per_index = Counter(line["index"] for line in lines)
    assert sorted(per_index) == list(range(count))
    assert set(per_index.values()) == {1}, [index for index, n in per_index.items() if n > 1][:10]
    assert all("error" not in line and line["text"].startswith("ok ") for line in lines)
    # Requests cut by a kill were lost and sent again; nothing answered was sent again.
    assert kills == 20
    assert count <= admitted < count + kills * 64
    print(f"\n{kills} kills, {admitted - count} answered requests lost with them and sent again")


CTRL_C = textwrap.dedent("""
    import json, signal, sys, threading, time
    import llmx_sync as llmx

    interrupted = []

    def on_sigint(signum, frame):
        interrupted.append(time.monotonic())
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)  # its own: under nohup SIGINT is ignored by default
    url, out = sys.argv[1], sys.argv[2]
    client = llmx.Client(base_url=url, api_key="sk-test")
    try:
        for item in client.map([f"p{i}" for i in range(100)], model="m", output=out, progress=False,
                               concurrency=6):
            pass
    except KeyboardInterrupt:
        took = time.monotonic() - interrupted[0]
        readers = [t.name for t in threading.enumerate() if t.name.startswith("llmx_sync-reader")]
        lines = open(out).read().splitlines()
        print(json.dumps({"took": took, "readers": readers, "lines": lines}), flush=True)
        sys.exit(0)
    print("not interrupted", flush=True)
""")


def test_ctrl_c_stops_the_batch_within_a_second(tmp_path: Path) -> None:
    script = tmp_path / "ctrl_c.py"
    script.write_text(CTRL_C)
    out = tmp_path / "results.jsonl"
    served = Counter[str]()
    lock = threading.Lock()

    def handler(request: RecordedRequest) -> Reply:
        with lock:
            served["n"] += 1
            number = served["n"]
        if number <= 2:  # two answers, then every stream stalls
            return Reply(body=text_stream_body([f"answer {number}"]))
        return Reply(body=[sse_event(chat_chunk("thinking", role="assistant")), Stall()])

    with LLMServer(handler=handler) as server:
        child = subprocess.Popen([sys.executable, str(script), server.url, str(out)], env=child_env(),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert server.wait_for_requests(8, timeout=30)  # 2 answered, then 6 in flight
            time.sleep(0.2)  # the stalled streams are being read
            sent = len(server.requests)
            child.send_signal(signal.SIGINT)
            stdout, stderr = child.communicate(timeout=30)
        finally:
            child.kill()
        assert child.returncode == 0, stderr
        report = json.loads(stdout)
        assert server.wait_until_no_open_connections(timeout=5)
    print(f"\nKeyboardInterrupt {report['took'] * 1000:.0f} ms after SIGINT")
    assert report["took"] < 1.0
    assert report["readers"] == []  # every stream in flight was closed
    assert sorted(json.loads(line)["text"] for line in report["lines"]) == ["answer 1", "answer 2"]
    assert sent == 8 and len(server.requests) == sent  # nothing sent after the Ctrl-C
