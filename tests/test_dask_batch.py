"""The distributed recipe (llmx_sync.dask_batch) on a local Dask cluster of two worker
processes, against the rate-limited loopback server: every prompt answered once, an
output file per partition, one client per worker (never pickled with a connection),
and a second submission of the same job resumed from the files."""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import pytest
from ratelimit_server import running

import llmx_sync as llmx

distributed = pytest.importorskip("distributed")
from llmx_sync.dask_batch import dask_map  # noqa: E402


@pytest.fixture(scope="module")
def dask_client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=logging.ERROR) as cluster, distributed.Client(cluster) as client:
        yield client


def test_dask_map_on_two_worker_processes_resumes_per_partition(dask_client, tmp_path: Path) -> None:
    prompts = [f"prompt {i}" for i in range(400)]
    with running(requests=60, tokens=1_000_000, window=0.25, latency=0.02) as server:
        lines = dask_map(dask_client, prompts, client={"base_url": server.url, "api_key": "sk-test"}, partitions=6,
                         output_dir=tmp_path, model="m")
        first = server.stats()
        again = dask_map(dask_client, prompts, client={"base_url": server.url, "api_key": "sk-test"}, partitions=6,
                         output_dir=tmp_path, model="m")
        second = server.stats()
    assert [line["index"] for line in lines] == list(range(400))
    assert all("error" not in line and line["text"].startswith("ok ") for line in lines)
    assert first["admitted"] == 400  # every prompt once (429s were retried, not counted as admitted)
    assert second["admitted"] == 400 and [line["text"] for line in again] == [line["text"] for line in lines]
    files = sorted(tmp_path.glob("part-*.jsonl"))
    assert [f.name for f in files] == [f"part-{n:05d}.jsonl" for n in range(6)]
    assert sum(len(f.read_text().splitlines()) for f in files) == 400
    # Each worker process made its own client and kept it for all its partitions.
    workers = dask_client.run(lambda: sorted(len(v) for v in [__import__("llmx_sync.dask_batch").dask_batch._workers]))
    assert len(workers) == 2 and all(counts == [1] for counts in workers.values())


def test_a_client_pickles_as_its_settings_never_its_connections() -> None:
    client = llmx.Client(base_url="http://127.0.0.1:1/v1", api_key="sk-test", timeout=7)
    copy = pickle.loads(pickle.dumps(client))
    assert repr(copy.provider) == repr(client.provider) and copy.options().timeout == 7
    assert copy.provider.connection.headers() == client.provider.connection.headers()  # the key came along
    assert copy._transport is not client._transport
    import requests

    with pytest.raises(TypeError, match="create a Client in each process"):
        pickle.dumps(llmx.Client(base_url="http://127.0.0.1:1/v1", session=requests.Session()))


def test_dask_map_checks_its_arguments(dask_client) -> None:
    with pytest.raises(llmx.InvalidInputError, match="partitions"):
        dask_map(dask_client, ["a"], client={}, partitions=0)
    with pytest.raises(llmx.InvalidInputError, match="client"):
        dask_map(dask_client, ["a"], client=llmx.Client(base_url="http://127.0.0.1:1/v1"), partitions=1)  # type: ignore[arg-type]
    assert json.dumps(dask_map(dask_client, [], client={"base_url": "http://127.0.0.1:1/v1"}, partitions=3)) == "[]"
