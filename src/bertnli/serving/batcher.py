"""Micro-batching: pairs from concurrent requests share one model call.

One asyncio task collects pending requests until ``max_batch_pairs`` pairs are waiting or the oldest
has waited ``max_wait_ms``, then runs the model on all of them in a worker thread (the event loop stays
free to accept more) and hands each request its rows. One model call runs at a time, all in one daemon
thread: per-thread state (OpenMP's thread team, compiled CUDA graphs) is made once, and a forced quit (a
second Ctrl-C) does not wait for the call in progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

#: (premises, hypotheses) → one result per pair (array rows, or a list), in order.
PredictFn = Callable[[Sequence[str], Sequence[str]], Sequence[Any]]
MODEL_THREAD = "bertnli-model"


class ServiceClosed(RuntimeError):
    """The batcher is not running (not started yet, or shutting down)."""


class ModelFailed(RuntimeError):
    """The model raised on this request's pairs; the cause is logged, not shown to clients."""


@dataclass
class _Job:
    premises: list[str]
    hypotheses: list[str]
    arrived: float
    future: asyncio.Future = field(repr=False)

    def __len__(self) -> int:
        return len(self.premises)


class Batcher:
    """Collects the pairs of concurrent `submit` calls into batches for ``predict(premises, hypotheses)``."""

    def __init__(self, predict: PredictFn, max_batch_pairs: int = 1024, max_wait_ms: float = 5.0) -> None:
        if max_batch_pairs < 1 or max_wait_ms < 0:
            raise ValueError("max_batch_pairs must be positive and max_wait_ms non-negative")
        self.predict = predict
        self.max_batch_pairs = max_batch_pairs
        self.max_wait = max_wait_ms / 1000
        self.calls = 0
        self._pending: deque[_Job] = deque()
        self._in_model: list[_Job] = []  # the jobs of the model call in progress
        self._task: asyncio.Task | None = None
        self._closing = False

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done() and not self._closing

    def start(self) -> None:
        """Start the worker on the running event loop."""
        if self._task is not None:
            raise RuntimeError("the batcher was already started")
        self._arrived = asyncio.Event()
        self._model = _ModelThread()
        self._task = asyncio.create_task(self._work(), name="bertnli-batcher")

    async def close(self) -> None:
        """Stop accepting work, finish what is pending, then stop the worker and its thread."""
        if self._task is None or self._closing:
            return
        self._closing = True
        self._arrived.set()
        try:
            await self._task
        finally:
            self._model.stop()

    def abort(self) -> None:
        """Stop at once: pending requests get `ServiceClosed`; a model call in progress is left to its thread."""
        if self._task is not None:
            self._closing = True
            self._task.cancel()
            self._model.stop()
            closed = ServiceClosed("the prediction service stopped")
            for job in self._in_model:
                _resolve(job.future, error=closed)
            self._fail_pending(closed)

    async def submit(self, premises: Sequence[str], hypotheses: Sequence[str]) -> Sequence[Any]:
        """``predict``'s results for these pairs, computed together with other requests' pairs."""
        if not self.running:
            raise ServiceClosed("the prediction service is not running")
        loop = asyncio.get_running_loop()
        job = _Job(list(premises), list(hypotheses), loop.time(), loop.create_future())
        self._pending.append(job)
        self._arrived.set()
        return await job.future

    async def _work(self) -> None:
        try:
            while self._pending or not self._closing:
                if not self._pending:
                    self._arrived.clear()
                    await self._arrived.wait()
                    continue
                await self._gather()
                jobs = self._take()
                if jobs:
                    await self._run(jobs)
        finally:
            self._fail_pending(ServiceClosed("the prediction service stopped"))

    async def _gather(self) -> None:
        """Wait until a full batch is pending, the oldest job's wait is over, or the batcher closes."""
        loop = asyncio.get_running_loop()
        while self._pending and not self._closing:
            left = self._pending[0].arrived + self.max_wait - loop.time()
            if sum(map(len, self._pending)) >= self.max_batch_pairs or left <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except asyncio.TimeoutError:
                return

    def _take(self) -> list[_Job]:
        """Pop pending jobs in arrival order, up to ``max_batch_pairs`` pairs (always at least one job)."""
        jobs: list[_Job] = []
        size = 0
        while self._pending and (not jobs or size + len(self._pending[0]) <= self.max_batch_pairs):
            job = self._pending.popleft()
            if not job.future.done():  # a cancelled request needs no answer
                jobs.append(job)
                size += len(job)
        return jobs

    async def _run(self, jobs: list[_Job]) -> None:
        """Predict for ``jobs`` in one call; if it fails, retry each job alone so one bad request fails alone."""
        premises = [p for job in jobs for p in job.premises]
        hypotheses = [h for job in jobs for h in job.hypotheses]
        self.calls += 1
        self._in_model = jobs
        try:
            probs = await self._model.run(self.predict, premises, hypotheses)
        except Exception:
            if len(jobs) > 1:
                for job in jobs:
                    await self._run([job])
                return
            logger.exception("prediction failed on a request of %d pairs", len(jobs[0]))
            _resolve(jobs[0].future, error=ModelFailed("prediction failed"))
            return
        start = 0
        for job in jobs:
            _resolve(job.future, result=probs[start : start + len(job)])
            start += len(job)

    def _fail_pending(self, error: Exception) -> None:
        while self._pending:
            _resolve(self._pending.popleft().future, error=error)


class _ModelThread:
    """A daemon thread that runs the calls given to `run`, one after another, until `stop`."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._serve, name=MODEL_THREAD, daemon=True).start()

    def run(self, function: Callable[..., Any], *args: Any) -> asyncio.Future:
        """``function(*args)`` in the thread, awaited on the running event loop."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._calls.put((loop, future, function, args))
        return future

    def stop(self) -> None:
        """End the thread once the call in progress, if any, returns."""
        self._calls.put(None)

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            loop, future, function, args = call
            outcome: tuple[Any, Exception | None]
            try:
                outcome = (function(*args), None)
            except BaseException as exc:  # handed to the request that waits for it
                outcome = (None, exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
            with contextlib.suppress(RuntimeError):  # the loop is gone (a forced quit): nobody waits any more
                loop.call_soon_threadsafe(_resolve, future, *outcome)


def model_thread_running() -> bool:
    """Whether a model thread is still running: after a forced quit, the call it is in; the interpreter cannot
    finish around it."""
    return any(thread.name == MODEL_THREAD and thread.is_alive() for thread in threading.enumerate())


def _resolve(future: asyncio.Future, result: object = None, error: BaseException | None = None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
