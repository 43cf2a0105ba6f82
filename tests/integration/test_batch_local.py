"""`Client.map` against llama.cpp's real `llama-server` with the bundled model: a batch
of prompts answered, resumed from its output file, and traced. llama-server sends no
rate-limit headers and closes its connection after each streamed answer: the batch
must cope with both (the uncounted resend of the transport keeps every item at one
attempt)."""

from __future__ import annotations

import json
from pathlib import Path

from local_support import needs_llama_server

import llmx_sync as llmx
from llmx_sync.local import LlamaServerBinary


@needs_llama_server
def test_a_batch_on_llama_server_is_answered_and_resumed(llama_server: LlamaServerBinary, tmp_path: Path) -> None:
    prompts = [f"Say the number {n}." for n in range(4)]
    out = tmp_path / "answers.jsonl"
    with llmx.Client(base_url=llama_server.base_url) as client:
        options = {"model": str(llama_server.model_id), "temperature": 0, "max_tokens": 8}
        items = list(client.map(prompts, output=out, progress=False, **options))
        again = list(client.map(prompts, output=out, progress=False, **options))
    assert [item.index for item in items] == list(range(4))
    assert all(item.ok and item.result is not None and item.result.text for item in items), \
        [item.error for item in items]
    assert all(item.usage is not None and item.usage.output_tokens > 0 for item in items)  # from the trailing chunk
    assert all(item.result is not None and item.result.rate_limits is None for item in items)  # no x-ratelimit-*
    assert [item.resumed for item in again] == [True] * 4
    assert [item.result.text for item in again if item.result] == [item.result.text for item in items if item.result]
    assert len(out.read_text().splitlines()) == 4 and all(json.loads(line)["usage"]
                                                          for line in out.read_text().splitlines())
