"""Many prompts through one client: what `Client.map` runs.

`run_batch` returns a `BatchRun`, an iterator of `BatchItem`s (in input order, or as
they finish). Iterating it runs the batch: worker threads take the prompts in order,
each waits for a slot of the batch's `concurrency.Concurrency` (``"auto"``: AIMD
driven by the server's rate-limit headers), sends the request (`Client.stream`, or
`Client.run` when `tools` are given) and collects the answer. An error is the item's
result, never the end of the batch (``fail_fast=True``: the first one stops it and is
raised).

Retries: each request keeps the transport's retries (``request_max_retries``,
honouring ``Retry-After``). The transport tells the batch about every 429 and 503 it
is about to retry (`retry_hooks.on_retry`), so one rate-limited answer pauses every
sender until the server's ``Retry-After`` instead of each request retrying into the
same wall; a request already sent gets one retry per wall, not one per sender. The
batch itself sends an item again only when its stream broke off (`StreamError`), as
the transport cannot, and only while nothing of the item was done (a tool loop that
ran a tool is not started over).

With `output`, every finished item is appended to a JSON Lines file
(`batchfile.BatchOutput`); the same call run again skips the items already answered
(same index, same input) and yields them from the file (`BatchItem.resumed`).

Stopping: Ctrl-C while the iterator waits (or `close()`, leaving a ``with`` block,
dropping the iterator) stops sending, closes the streams in flight, flushes the file,
and the `KeyboardInterrupt` is raised within a second. A request still waiting for its
response headers is left to its thread (a daemon), and its answer is dropped.
"""

from __future__ import annotations

import importlib
import itertools
import os
import queue
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Literal, TextIO

from ._jsonrules import compact_json
from .aggregate import ChatResult
from .batchfile import BatchOutput, error_line, input_hash, result_from_line, result_line
from .client import Client, PromptLike, _python_tools, as_prompt
from .concurrency import CONGESTION_STATUSES, AdaptiveConcurrency, Concurrency, FixedConcurrency, Slot
from .errors import InvalidInputError, LlmxError, StreamError, UnexpectedStatusError
from .events import RateLimits, TokenUsage
from .functions import PythonTool
from .models import ResponseItem
from .response import ResponseStream
from .retry_hooks import on_retry
from .runner import RunStream
from .structured import requested_output
from .telemetry import batch_trace

__all__ = ["BatchItem", "BatchPrompt", "BatchRun", "BatchSummary", "item_line", "run_batch"]

# Waits are cut into slices this long so that close() and Ctrl-C are noticed.
_WAIT_SLICE: Final = 0.1
# How long close() waits for the workers to notice it (they are daemons: past this
# they are left to end by themselves, their answers dropped).
_JOIN_TIMEOUT: Final = 0.5
# The fewest finished items a batch holds for the iterator before it stops taking input.
_MIN_WINDOW: Final = 1024
# Characters per token, for the token need of a request before the server said.
_CHARS_PER_TOKEN: Final = 4

ConcurrencySetting = int | Literal["auto"] | Concurrency


@dataclass(slots=True)
class BatchPrompt:
    """A prompt (anything `Client.stream` takes) with settings of its own, laid over
    the batch's (e.g. ``BatchPrompt("hi", {"model": "m2", "temperature": 0})``)."""

    prompt: PromptLike
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.options, Mapping) or not all(isinstance(name, str) for name in self.options):
            raise InvalidInputError("options", "expected a dict of settings by name (e.g. {\"temperature\": 0}), "
                                    f"got {type(self.options).__name__}")


@dataclass(slots=True)
class BatchItem:
    """One prompt's outcome: `result` (a `ChatResult`) or `error`, never both.

    `index` is the prompt's position in the input, `input` the prompt as given,
    `attempts` the requests sent for it (retries included), `usage` its tokens,
    `latency` the seconds from its first request to its end. `resumed` items were read
    back from the output file of an earlier run (their `result` has no `rate_limits`).
    """

    index: int
    input: Any
    result: ChatResult | None = None
    error: BaseException | None = None
    attempts: int = 0
    usage: TokenUsage | None = None
    latency: float = 0.0
    resumed: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(slots=True)
class BatchSummary:
    """What a batch did so far: items finished (`failed` of them failed, `resumed` read
    from the output file), tokens, wall time (set when it ends), requests sent again
    (`retries`), and how many answers were 429 or 503 (`rate_limited`)."""

    items: int = 0
    failed: int = 0
    resumed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    wall_time: float = 0.0
    retries: int = 0
    rate_limited: int = 0

    def __str__(self) -> str:
        done = f"{self.items} items"
        extra = [f"{self.failed} failed"] + ([f"{self.resumed} resumed"] if self.resumed else [])
        tokens = self.input_tokens + self.output_tokens
        return (f"{done} ({', '.join(extra)}), {tokens} tokens ({self.input_tokens} in, {self.output_tokens} out), "
                f"{self.wall_time:.1f} s, {self.retries} retries ({self.rate_limited} rate-limited)")


@dataclass(slots=True)
class _Task:
    index: int
    input: Any
    prompt: PromptLike
    options: dict[str, Any]
    key: str
    need: float
    attempts: int = 0
    started: float = 0.0


@dataclass(slots=True)
class _Crash:
    """An exception that is not an item's outcome (a bug, the input iterator failing,
    a closed client): the batch stops and the iterator raises it."""

    error: BaseException


class _Batch:
    """The state the workers and the iterator share. It never refers to the `BatchRun`,
    so that a dropped iterator is collected (and its finalizer stops the batch)."""

    def __init__(self, client: Client, prompts: Iterable[Any], *, concurrency: Concurrency,
                 output: BatchOutput | None, options: dict[str, Any], tools: list[PythonTool],
                 max_turns: int, max_attempts: int, fail_fast: bool) -> None:
        self.client = client
        self.concurrency = concurrency
        self.output = output
        self.options = options
        self.tools = tools
        self.max_turns = max_turns
        self.max_attempts = max_attempts
        self.fail_fast = fail_fast
        self.stop = threading.Event()
        self.results: queue.Queue[BatchItem | _Crash] = queue.Queue()
        self.summary = BatchSummary()
        self.started = time.monotonic()
        self.pulled = 0  # inputs taken from the source
        self.exhausted = False
        self._source: Iterator[tuple[int, Any]] | None = enumerate(prompts)
        self._lock = threading.RLock()
        # Items finished but not yet taken by the iterator are held: past `window` of
        # them (a consumer slower than the batch, or one slow item holding the order
        # up), no further input is taken, so memory stays bounded.
        self.window = max(_MIN_WINDOW, 16 * concurrency.max_concurrency)
        self._delivered = 0
        self._room = threading.Condition(self._lock)
        self._workers: list[threading.Thread] = []
        self._handles: dict[int, ResponseStream | RunStream] = {}
        self._numbers = itertools.count(1)
        self.progress: _Progress | None = None
        self.trace = batch_trace(client.provider.name)

    # -- workers ----------------------------------------------------------------

    def grow(self) -> None:
        """Start workers until there is one per slot the concurrency allows, plus one
        waiting for the next slot (while there is work)."""
        with self._lock:
            self._workers = [w for w in self._workers if w.is_alive()]
            if self.stop.is_set() or self.exhausted:
                return
            wanted = min(self.concurrency.limit + 1, self.concurrency.max_concurrency)
            for _ in range(wanted - len(self._workers)):
                worker = threading.Thread(target=self._work, name=f"llmx_sync-batch-{next(self._numbers)}",
                                          daemon=True)
                self._workers.append(worker)
                worker.start()

    def workers_alive(self) -> bool:
        with self._lock:
            return any(w.is_alive() for w in self._workers)

    def _work(self) -> None:
        try:
            with self.trace.current():
                while not self.stop.is_set():
                    task = self._next_task()
                    if task is None:
                        return
                    self._run(task)
                    self.grow()
        except BaseException as exc:  # a bug, the input iterator, a closed client: stop, tell the iterator
            self.stop.set()
            self.results.put(_Crash(exc))

    def _next_task(self) -> _Task | None:
        """The next input to send, skipping those answered in an earlier run (they go
        straight to the results); waits while `window` items are held."""
        with self._lock:
            while not self.stop.is_set():
                if self._source is None:
                    return None
                if self.pulled - self._delivered >= self.window:
                    self._room.wait(_WAIT_SLICE)
                    continue
                try:
                    index, given = next(self._source)
                except StopIteration:
                    self._source = None
                    self.exhausted = True
                    return None
                self.pulled += 1
                task = self._task(index, given)
                if task is not None:
                    return task
            return None

    def _task(self, index: int, given: Any) -> _Task | None:
        """The task of input `index`, or None when the output file has its answer."""
        prompt, options = ((given.prompt, {**self.options, **given.options}) if isinstance(given, BatchPrompt)
                           else (given, self.options))
        key = input_hash(_hashed(given)) if self.output is not None else ""
        task = _Task(index, given, prompt, options, key, self._need(prompt, options))
        line = self.output.done(index, key) if self.output is not None else None
        if line is None:
            return task
        try:
            base = as_prompt(prompt)
            result = result_from_line(line, base.input,
                                      requested_output(base.output_schema, options.get("response_format")))
        except (LlmxError, TypeError, ValueError):  # a line that no longer fits its input: do it again
            return task
        attempts, latency = line.get("attempts"), line.get("latency")
        self._finish(task, BatchItem(index, given, result, None, attempts if isinstance(attempts, int) else 0,
                                     result.token_usage, latency if isinstance(latency, (int, float)) else 0.0,
                                     resumed=True))
        return None

    def _need(self, prompt: PromptLike, options: Mapping[str, Any]) -> float:
        """The tokens a request is likely to count against a tokens window: its input's
        characters / 4, plus `max_tokens` (else the mean output so far)."""
        try:
            size = len(compact_json([item.to_dict() for item in as_prompt(prompt).input]))
        except (LlmxError, TypeError, ValueError):
            size = 0  # the request will fail on its own, before any I/O
        max_tokens = options.get("max_tokens")
        out = max_tokens if isinstance(max_tokens, int) else self.concurrency.output_tokens_per_request
        return size / _CHARS_PER_TOKEN + out

    # -- one item ---------------------------------------------------------------

    def _run(self, task: _Task) -> None:
        """Send `task` (again while its stream breaks off) and report its outcome."""
        while True:
            slot = self.concurrency.acquire(task.need, self.stop)
            if slot is None:
                return
            task.started = task.started or time.monotonic()
            task.attempts += 1

            def retrying(status: int | None, delay: float, slot: Slot = slot) -> None:
                task.attempts += 1
                with self._lock:
                    self.summary.retries += 1
                    self.summary.rate_limited += status in CONGESTION_STATUSES
                if status in CONGESTION_STATUSES:
                    self.concurrency.congested(slot, delay)

            added: list[ResponseItem] = []
            try:
                with on_retry(retrying):
                    result = self._send(task, slot, added)
            except LlmxError as exc:
                self.concurrency.done(slot)
                if isinstance(exc, UnexpectedStatusError) and exc.status in CONGESTION_STATUSES:
                    with self._lock:
                        self.summary.rate_limited += 1  # the one the transport gave up on
                if self.stop.is_set():
                    return  # closed under it: not an outcome
                if isinstance(exc, StreamError) and not added and task.attempts < self.max_attempts:
                    with self._lock:
                        self.summary.retries += 1
                    continue  # the transport cannot resend a broken stream; nothing of it was done
                self._finish(task, BatchItem(task.index, task.input, None, exc, task.attempts,
                                             latency=time.monotonic() - task.started))
                return
            usage = result.token_usage
            self.concurrency.done(slot, output_tokens=usage.output_tokens if usage else None)
            if not self.stop.is_set():
                self._finish(task, BatchItem(task.index, task.input, result, None, task.attempts, usage,
                                             time.monotonic() - task.started))
            return

    def _send(self, task: _Task, slot: Slot, added: list[ResponseItem]) -> ChatResult:
        """One request (a tool loop with `tools`) for `task`; `added` receives what it
        added to the conversation so far."""
        answer: ResponseStream | RunStream
        if self.tools:
            answer = self.client.run(task.prompt, tools=self.tools, max_turns=self.max_turns, **task.options)
        else:  # (a RunStream too, with max_output_retries)
            answer = self.client.stream(task.prompt, **task.options)
        with _Handle(self, task.index, answer):
            if isinstance(answer, ResponseStream):
                self.concurrency.heard(slot, answer.response.headers)
                result = answer.collect()
                added[:] = result.items
                return result
            first = len(answer.history)
            for event in answer:
                if isinstance(event, RateLimits):  # each turn's: the budget sees every request
                    self.concurrency.heard(slot, event.snapshot.headers)
                added[:] = answer.history[first:]
            result = answer.collect()
            added[:] = answer.history[first:]
            return result

    def _finish(self, task: _Task, item: BatchItem) -> None:
        """Count `item`, write it (unless it was read from the file), and hand it over."""
        if self.output is not None and not item.resumed:
            if not self.output.write(item_line(item, task.key)):
                return  # closed: the batch was stopped, the item is dropped (and done again next time)
        with self._lock:
            summary = self.summary
            summary.items += 1
            summary.failed += not item.ok
            summary.resumed += item.resumed
            if item.usage is not None:
                summary.input_tokens += item.usage.input_tokens
                summary.output_tokens += item.usage.output_tokens
        if not item.ok and self.fail_fast:
            self.stop.set()
        self.results.put(item)

    # -- stopping ---------------------------------------------------------------

    def delivered(self) -> None:
        """The iterator handed one item over: room for one more."""
        with self._room:
            self._delivered += 1
            self._room.notify()

    def register(self, index: int, handle: ResponseStream | RunStream) -> None:
        with self._lock:
            self._handles[index] = handle
            stopped = self.stop.is_set()
        if stopped:
            handle.close()

    def unregister(self, index: int) -> None:
        with self._lock:
            self._handles.pop(index, None)

    def close(self) -> None:
        """Stop sending, close the streams in flight, flush and close the output.
        Idempotent; returns within about a second."""
        self.stop.set()
        with self._lock:
            handles = list(self._handles.values())
            workers = list(self._workers)
        for handle in handles:
            handle.close()
        deadline = time.monotonic() + _JOIN_TIMEOUT
        for worker in workers:
            if worker is not threading.current_thread():
                worker.join(max(0.0, deadline - time.monotonic()))
        if self.output is not None:
            self.output.close()
        self.summary.wall_time = time.monotonic() - self.started
        if self.progress is not None:
            self.progress.close()
        self.trace.end(summary=self.summary)


def item_line(item: BatchItem, key: str) -> dict[str, Any]:
    """`item` as a line of the output file (`batchfile`), its input's hash `key`."""
    if item.result is None:
        assert item.error is not None
        return error_line(item.index, key, item.error, attempts=item.attempts, latency=item.latency)
    given = item.input.prompt if isinstance(item.input, BatchPrompt) else item.input
    added = item.result.history[len(as_prompt(given).input):]  # every turn of a tool loop
    return result_line(item.index, key, item.result, added=added, attempts=item.attempts, latency=item.latency)


def _hashed(given: Any) -> Any:
    """What identifies an input across runs: the prompt, and its own settings if any."""
    return {"prompt": given.prompt, "options": dict(given.options)} if isinstance(given, BatchPrompt) else given


class _Handle:
    """Keeps a stream or run where `close()` finds it while it is in flight."""

    __slots__ = ("_batch", "_index", "_handle")

    def __init__(self, batch: _Batch, index: int, handle: ResponseStream | RunStream) -> None:
        self._batch, self._index, self._handle = batch, index, handle

    def __enter__(self) -> None:
        self._batch.register(self._index, self._handle)

    def __exit__(self, *exc_info: object) -> None:
        self._batch.unregister(self._index)
        self._handle.close()


class BatchRun:
    """The items of a batch, in input order (or as they finish, with
    ``as_completed=True``). Iterating it runs the batch; see the module docstring.

    `summary` is what it did so far, `concurrency` its limit (``.limit`` now, and
    what it learned). Use it in a ``with`` block, or call `close()`, to stop early.
    """

    def __init__(self, batch: _Batch, *, as_completed: bool) -> None:
        self._batch = batch
        self._as_completed = as_completed
        self._waiting: dict[int, BatchItem] = {}
        self._next_index = 0
        self._yielded = 0
        self._started = False
        self._finished = False
        self._finalizer = weakref.finalize(self, batch.close)

    @property
    def summary(self) -> BatchSummary:
        return self._batch.summary

    @property
    def concurrency(self) -> Concurrency:
        return self._batch.concurrency

    @property
    def shows_progress(self) -> bool:
        """Whether a progress bar (and the summary at the end) goes to stderr."""
        return self._batch.progress is not None

    def __iter__(self) -> BatchRun:
        return self

    def __next__(self) -> BatchItem:
        if self._finished:
            raise StopIteration
        batch = self._batch
        if not self._started:
            self._started = True
            batch.grow()
        try:
            while True:
                if not self._as_completed and self._next_index in self._waiting:
                    self._next_index += 1
                    self._yielded += 1
                    batch.delivered()
                    return self._waiting.pop(self._next_index - 1)
                if batch.exhausted and self._yielded >= batch.pulled:
                    self._end()
                    raise StopIteration
                item = self._take()
                if item is None:
                    continue
                if self._as_completed:
                    self._yielded += 1
                    batch.delivered()
                    return item
                self._waiting[item.index] = item
        except StopIteration:
            raise
        except BaseException:  # Ctrl-C, fail_fast's error, a crash: stop everything first
            self._end()
            raise

    def _take(self) -> BatchItem | None:
        """The next finished item, or None when none came within a wait slice."""
        batch = self._batch
        try:
            got = batch.results.get(timeout=_WAIT_SLICE)
        except queue.Empty:
            if batch.stop.is_set() and not batch.workers_alive() and batch.results.empty():
                raise LlmxError("the batch was closed before it ended") from None
            batch.grow()  # the concurrency may have grown since a worker last looked
            return None
        if isinstance(got, _Crash):
            raise got.error
        if not got.ok and batch.fail_fast:
            assert got.error is not None
            raise got.error
        return got

    def _end(self) -> None:
        self._finished = True
        self._finalizer()

    def close(self) -> None:
        """Stop the batch (see the module docstring). Idempotent."""
        self._end()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def __enter__(self) -> BatchRun:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<BatchRun {self.summary}>"


class _Progress:
    """A tqdm bar (on a terminal, or a widget in Jupyter) that a daemon thread refreshes
    twice a second from the batch's counts; at the end, the summary line under it."""

    _REFRESH: Final = 0.5

    def __init__(self, batch: _Batch, total: int | None, out: TextIO, notebook: bool) -> None:
        # (tqdm.auto picks the notebook widget, which needs ipywidgets, else text.)
        bars = importlib.import_module("tqdm.auto" if notebook else "tqdm")
        self._batch = batch
        self._out = out
        self._bar = bars.tqdm(total=total, unit="item", file=out, dynamic_ncols=True, smoothing=0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, name="llmx_sync-batch-progress", daemon=True)
        self._thread.start()

    def _tick(self) -> None:
        while not self._stop.wait(self._REFRESH):
            self._show()

    def _show(self) -> None:
        batch, bar = self._batch, self._bar
        summary = batch.summary
        elapsed = max(time.monotonic() - batch.started, 1e-9)
        tokens = summary.input_tokens + summary.output_tokens
        bar.n = summary.items
        bar.set_postfix_str(f"failed={summary.failed} in_flight={batch.concurrency.in_flight} "
                            f"concurrency={batch.concurrency.limit} tok/s={tokens / elapsed:.0f}", refresh=False)
        bar.refresh()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(1.0)
        self._show()
        self._bar.close()
        self._out.write(f"batch: {self._batch.summary}\n")
        self._out.flush()


def _show_progress(progress: bool | None, out: TextIO) -> tuple[bool, bool]:
    """Whether to show a bar, and whether as a notebook widget: `progress`, else when
    `out` is a terminal or the code runs in a Jupyter kernel."""
    notebook = "ipykernel" in sys.modules and getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)() \
        is not None
    if progress is None:
        try:
            progress = out.isatty() or notebook
        except (AttributeError, ValueError):  # a closed or odd stream
            progress = False
    return progress, notebook


def _concurrency(concurrency: ConcurrencySetting, max_concurrency: int) -> Concurrency:
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
        raise InvalidInputError("max_concurrency", f"expected a positive integer, got {max_concurrency!r}")
    if isinstance(concurrency, Concurrency):
        return concurrency
    if concurrency == "auto":
        return AdaptiveConcurrency(max_concurrency)
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidInputError("concurrency", f'expected "auto" or a positive integer, got {concurrency!r}')
    return FixedConcurrency(concurrency)


def run_batch(client: Client, prompts: Iterable[PromptLike | BatchPrompt], *,
              concurrency: ConcurrencySetting = "auto", max_concurrency: int = 64,
              output: str | os.PathLike[str] | None = None, as_completed: bool = False, fail_fast: bool = False,
              progress: bool | None = None, tools: Sequence[Callable[..., Any] | PythonTool] = (),
              max_turns: int = 10, **options: Any) -> BatchRun:
    """Send every prompt of `prompts` through `client`: see `Client.map`.

    The arguments and settings are checked, and the output file read, before anything
    is sent; nothing is sent until the returned `BatchRun` is iterated.
    """
    if isinstance(prompts, (str, bytes, Mapping)) or not isinstance(prompts, Iterable):
        raise InvalidInputError("prompts", "expected an iterable of prompts (e.g. a list of strings), "
                                f"got {type(prompts).__name__}")
    limit = _concurrency(concurrency, max_concurrency)
    for name, flag in (("as_completed", as_completed), ("fail_fast", fail_fast)):
        if not isinstance(flag, bool):
            raise InvalidInputError(name, f"expected True or False, got {flag!r}")
    if progress is not None and not isinstance(progress, bool):
        raise InvalidInputError("progress", f"expected True, False or None (show it on a terminal), got {progress!r}")
    if isinstance(max_turns, bool) or not isinstance(max_turns, int) or max_turns < 1:
        raise InvalidInputError("max_turns", f"expected a positive integer, got {max_turns!r}")
    if output is not None and not isinstance(output, (str, os.PathLike)):
        raise InvalidInputError("output", f"expected a file name, got {type(output).__name__}")
    # Every setting checked now, not once per item (`max_output_retries` is not a request's).
    settings = client.options(**{name: value for name, value in options.items() if name != "max_output_retries"})
    python_tools = _python_tools(tools) if tools else []
    batch = _Batch(client, prompts, concurrency=limit, output=BatchOutput(output) if output is not None else None,
                   options=options, tools=python_tools, max_turns=max_turns,
                   max_attempts=settings.request_max_retries + 1, fail_fast=fail_fast)
    show, notebook = _show_progress(progress, sys.stderr)
    if show:
        total = len(prompts) if isinstance(prompts, Sized) else None
        batch.progress = _Progress(batch, total, sys.stderr, notebook)
    return BatchRun(batch, as_completed=as_completed)
