"""Dynamic batching: concurrent requests that decode alike are decoded together.

One ``Batcher`` per loaded model owns one worker thread: torch and llama.cpp contexts are not
thread-safe, so a model runs one decoding at a time. Requests put their items (records, prompts)
in a queue per *key* (the task, the model, the decoding settings and the task options: what one
decoder call can share). The worker takes the oldest key's queue once it holds ``max_batch``
items or its first item has waited ``max_wait`` seconds, runs up to ``max_batch`` items in ONE call
of that key's function (``job.task.run(records, job.config)``) in the thread, and hands each
request its own results back. While a batch decodes, the next one gathers: under load batches
fill up without waiting.

Items whose request is gone (timed out, client disconnected) are dropped before they decode.
Work that must not be batched (building a job, a streamed decoding) runs through ``call``, in the
same thread, one thing at a time with the batches.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(eq=False)
class _Item:
    payload: Any
    run: Callable[[list[Any]], Sequence[Any]]
    future: asyncio.Future[Any]
    arrived: float = field(default_factory=time.monotonic)


class Batcher:
    """The queue and the worker thread of one model (see the module docstring)."""

    def __init__(self, name: str, *, max_batch: int = 16, max_wait: float = 0.010,
                 initializer: Callable[[], None] | None = None) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if max_wait < 0:
            raise ValueError("max_wait must be >= 0")
        self.name = name
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"textgen-{name}"[:40], initializer=initializer)
        self.batches = 0  # decoder calls made (statistics: /health)
        self.items = 0  # items decoded in them
        self._pending: dict[Hashable, deque[_Item]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ requests
    async def submit(self, key: Hashable, run: Callable[[list[Any]], Sequence[Any]], payloads: Sequence[Any]) -> list[Any]:
        """The results of ``run`` over ``payloads``, in order, decoded with whatever else is
        queued under ``key`` (``run`` must give one result per payload, in order, and treat
        every payload alike whatever its neighbours)."""
        if not payloads:
            return []
        loop = self._attach()
        items = [_Item(p, run, loop.create_future()) for p in payloads]
        self._pending.setdefault(key, deque()).extend(items)
        assert self._wake is not None
        self._wake.set()
        try:
            return list(await asyncio.gather(*(item.future for item in items)))
        finally:
            for item in items:  # this request is gone (cancelled, timed out): its items are not decoded
                if not item.future.done():
                    item.future.cancel()

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the model's thread, alone (one thing at a time with the batches)."""
        self._attach()
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def queued(self) -> int:
        return sum(len(q) for q in self._pending.values())

    # ------------------------------------------------------------------ the worker
    def _attach(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (a test client's): start afresh in it
            self._loop, self._pending = loop, {}
            self._wake = asyncio.Event()
            self._worker = loop.create_task(self._work(), name=f"textgen-batcher-{self.name}")
        return loop

    def _prune(self) -> None:
        for key in list(self._pending):
            queue = self._pending[key]
            while queue and queue[0].future.done():
                queue.popleft()
            if not queue:
                del self._pending[key]

    def _next(self) -> tuple[Hashable | None, float]:
        """The key to decode now (a full queue first, else the oldest if it has waited long
        enough), or None and how long to wait."""
        self._prune()
        if not self._pending:
            return None, float("inf")
        for key, queue in self._pending.items():
            if sum(not item.future.done() for item in queue) >= self.max_batch:
                return key, 0.0
        key, queue = min(self._pending.items(), key=lambda kv: kv[1][0].arrived)
        wait = queue[0].arrived + self.max_wait - time.monotonic()
        return (key, 0.0) if wait <= 0 else (None, wait)

    async def _work(self) -> None:
        assert self._wake is not None and self._loop is not None
        while True:
            key, wait = self._next()
            if key is None:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), None if wait == float("inf") else wait)
                except asyncio.TimeoutError:
                    pass
                continue
            queue = self._pending[key]
            batch: list[_Item] = []
            while queue and len(batch) < self.max_batch:
                item = queue.popleft()
                if not item.future.done():
                    batch.append(item)
            if not queue:
                del self._pending[key]
            if not batch:
                continue
            run = batch[0].run
            try:
                results = await self._loop.run_in_executor(self.executor, _checked, run, [i.payload for i in batch])
            except Exception as exc:  # noqa: BLE001 -- the batch's requests get the error, the worker goes on
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            self.batches += 1
            self.items += len(batch)
            for item, result in zip(batch, results):
                if not item.future.done():
                    item.future.set_result(result)

    def stop(self) -> None:
        """Stop the worker (its event loop is ending); the thread stays for a later loop."""
        if self._worker is not None:
            self._worker.cancel()
        self._loop = self._worker = self._wake = None
        self._pending = {}

    def close(self) -> None:
        """Stop the worker and wait for the thread's current work to finish."""
        self.stop()
        self.executor.shutdown(wait=True)


def _checked(run: Callable[[list[Any]], Sequence[Any]], payloads: list[Any]) -> list[Any]:
    results = list(run(payloads))
    if len(results) != len(payloads):
        raise RuntimeError(f"a batch of {len(payloads)} gave {len(results)} results")
    return results
