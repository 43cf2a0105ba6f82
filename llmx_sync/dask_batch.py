"""`Client.map` past one machine, on a Dask cluster (``pip install llmx_sync[dask]``).

    from distributed import Client as DaskClient
    from llmx_sync.dask_batch import dask_map

    with DaskClient("tcp://scheduler:8786") as dask:
        lines = dask_map(dask, prompts, client={"base_url": "http://…/v1"}, output_dir="out/",
                         partitions=32, model="m")

The prompts are cut into `partitions` runs of consecutive prompts, one Dask task each.
A task runs `Client.map` on its worker over its run, with an output file of its own
(``out/part-00007.jsonl``), so a job stopped or killed anywhere resumes where it was
when it is submitted again with the same prompts and partitions.

Each worker process makes one `Client` (from the keyword arguments in `client`, so no
connection is ever pickled) and one `concurrency.AdaptiveConcurrency` that all of that
worker's tasks share: the concurrency each worker learns from the server's headers
carries over from one partition to the next. The workers do not coordinate with each
other; each one's AIMD backs off on the 429s its own requests get, as separate
processes on one machine would. Why Dask and not Ray: docs/design.md#past-one-machine.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .batch import item_line
from .client import Client
from .concurrency import AdaptiveConcurrency
from .errors import InvalidInputError

__all__ = ["dask_map", "run_partition"]

# One client and one concurrency per worker process and client settings.
_workers: dict[str, tuple[Client, AdaptiveConcurrency]] = {}
_workers_lock = threading.Lock()


def _worker_client(settings: Mapping[str, Any], max_concurrency: int) -> tuple[Client, AdaptiveConcurrency]:
    key = hashlib.sha256(pickle.dumps((sorted(settings.items()), max_concurrency))).hexdigest()
    with _workers_lock:
        found = _workers.get(key)
        if found is None:
            found = _workers[key] = (Client(**settings), AdaptiveConcurrency(max_concurrency))
        return found


def run_partition(partition: int, offset: int, prompts: Sequence[Any], client: Mapping[str, Any],
                  output_dir: str | None, max_concurrency: int, options: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One task: `Client.map` over `prompts` with this worker's client and concurrency;
    the items as output lines (`index` counted from the whole input's start)."""
    llm, concurrency = _worker_client(client, max_concurrency)
    output = None if output_dir is None else os.path.join(output_dir, f"part-{partition:05d}.jsonl")
    lines = []
    for item in llm.map(prompts, concurrency=concurrency, output=output, progress=False, **options):
        line = item_line(item, "")
        del line["input_hash"]
        line["index"] += offset
        lines.append(line)
    return lines


def dask_map(dask_client: Any, prompts: Sequence[Any], *, client: Mapping[str, Any], partitions: int,
             output_dir: str | os.PathLike[str] | None = None, max_concurrency: int = 64,
             **options: Any) -> list[dict[str, Any]]:
    """Run `prompts` as `partitions` Dask tasks on `dask_client`'s cluster (see the module
    docstring) and return every item as a JSON line (`batchfile`'s format, without
    `input_hash`), in input order. `client` holds the keyword arguments of each worker's
    `Client` (``base_url``, ``api_key``, ``provider``…; a key read from the workers'
    environment is better than one sent with every task); `options` are `Client.map`'s.
    """
    if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Sequence):
        raise InvalidInputError("prompts", f"expected a list of prompts, got {type(prompts).__name__}")
    if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
        raise InvalidInputError("partitions", f"expected a positive integer, got {partitions!r}")
    if not isinstance(client, Mapping):
        raise InvalidInputError("client", "expected the keyword arguments of llmx_sync.Client as a dict (each "
                                "worker makes its own client), got " + type(client).__name__)
    directory = None
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        directory = os.fspath(output_dir)
    size = -(-len(prompts) // partitions) if prompts else 0
    futures = [dask_client.submit(run_partition, number, start, list(prompts[start:start + size]), dict(client),
                                  directory, max_concurrency, options, pure=False)
               for number, start in enumerate(range(0, len(prompts), size or 1))]
    lines = [line for part in dask_client.gather(futures) for line in part]
    return sorted(lines, key=lambda line: line["index"])
