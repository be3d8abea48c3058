"""One worker thread per served model: a bounded queue, micro-batching of compatible requests, cancellation.

Requests become :class:`Job` objects. A job with a batching ``key`` may share one model call with the other
queued jobs of the same key (same operation and options, no fixed seed): the worker takes every compatible job
that queued while the previous call ran up to ``max_batch`` samples (after a call that served several requests, it
waits up to ``batch_wait`` seconds until as many are queued, since those clients tend to come back together; a
lone client never waits), and the job's ``execute`` runs them together; a call that decodes step by step may also
take compatible jobs that queue while it runs (:meth:`Worker.join`: iteration-level batching, where a request
starts at the running call's next step). Jobs without a key run alone. Background
jobs (the drift reference) run only when no request waits and never count against the queue bound.

A cancelled job (its client went away, or its time ran out) is dropped from the queue; a running call stops at the
next forward pass of the model once every job in it is cancelled: a forward pre-hook on the model's top-level
modules raises :class:`Cancelled` in the worker thread. That covers every family, since every sampler calls its
network step by step (a diffusion step, a pixel, a token).
"""

from __future__ import annotations

import collections
import concurrent.futures
import math
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from torch import nn


class Cancelled(Exception):
    """The job was cancelled (client gone or timed out) before or while it ran."""


class QueueFull(Exception):
    """The model's queue is full: answer 429 with ``Retry-After``."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(Exception):
    """The model cannot take work now (stopping, or the wait would outlast the timeout): answer 503."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(eq=False)
class Job:
    """A unit of work for a model.

    Arguments:
        execute: runs a batch of jobs (this one first, the others of the same key) and sets their futures.
        key: jobs with equal keys may be batched; None runs alone.
        n: samples this job asks for (batches hold at most ``max_batch``).
        payload: what ``execute`` needs of this job (its n, label, seed, a sink for streamed pieces, …).
        background: run only when no request waits; not bounded by the queue size.
    """

    execute: Callable[[list[Job]], None]
    key: Hashable | None = None
    n: int = 1
    payload: dict[str, Any] = field(default_factory=dict)
    background: bool = False
    future: concurrent.futures.Future[Any] = field(default_factory=concurrent.futures.Future)
    cancelled: threading.Event = field(default_factory=threading.Event)
    enqueued: float = field(default_factory=time.monotonic)

    def cancel(self) -> None:
        """Stop the job: dropped if queued, stopped at the next forward pass if its whole batch is cancelled."""
        self.cancelled.set()

    def resolve(self, value: Any) -> None:
        """Set the result unless the future is already done."""
        if not self.future.done():
            self.future.set_result(value)

    def fail(self, exc: BaseException) -> None:
        """Set an exception unless the future is already done."""
        if not self.future.done():
            self.future.set_exception(exc)


@dataclass
class WorkerStats:
    """What a worker did: calls, jobs and samples served, batch sizes, the running mean call time."""

    calls: int = 0
    jobs: int = 0
    samples: int = 0
    cancelled: int = 0
    errors: int = 0
    call_seconds: float = 0.0  # exponentially weighted mean seconds per call
    jobs_per_call: float = 1.0  # exponentially weighted mean jobs per call
    batch_sizes: collections.Counter[int] = field(default_factory=collections.Counter)


class Worker:
    """The thread that runs every job of one model, in order, batching compatible ones.

    Arguments:
        name: the model's name (for messages).
        model: the network; its top-level modules get the cancellation hook.
        queue_size: waiting requests beyond which :meth:`submit` raises :class:`QueueFull`.
        max_batch: most samples per batched call.
        batch_wait: seconds to wait for more compatible jobs before a call.
        batching: False runs every job alone.
        timeout: the request timeout; a new request whose expected wait exceeds it gets :class:`Unavailable`.
        on_call: ``fn(batch_size_in_samples, jobs, seconds)`` after each call (metrics).
    """

    def __init__(self, name: str, model: nn.Module | None, *, queue_size: int = 32, max_batch: int = 64,
                 batch_wait: float = 0.0, batching: bool = True, timeout: float = 60.0,
                 on_call: Callable[[int, int, float], None] | None = None) -> None:
        self.name, self.queue_size, self.max_batch = name, queue_size, max_batch
        self.batch_wait, self.batching, self.timeout = batch_wait, batching, timeout
        self.on_call = on_call
        self.stats = WorkerStats()
        self._queue: collections.deque[Job] = collections.deque()
        self._background: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._active: list[Job] = []
        self._expect: dict[Hashable, int] = {}  # per key: requests of the last call + those queued meanwhile
        self._stopping = False
        self._hooks = [m.register_forward_pre_hook(self._check_cancel) for m in (model.children() if model else ())]
        self._thread = threading.Thread(target=self._loop, name=f"genlab-worker-{name}", daemon=True)
        self._thread.start()

    # -- submitting ----------------------------------------------------------------------------------
    def expected_wait(self) -> float:
        """Seconds a new request would wait: queued calls × the mean call time."""
        s = self.stats
        calls = math.ceil((len(self._queue) + 1) / max(s.jobs_per_call, 1.0))
        return calls * s.call_seconds

    def retry_after(self) -> int:
        """Whole seconds a client should wait before retrying (at least 1)."""
        return max(1, math.ceil(self.expected_wait()))

    def submit(self, job: Job) -> Job:
        """Queue a job.

        Raises:
            QueueFull: when ``queue_size`` requests already wait.
            Unavailable: when the worker is stopping, or the expected wait exceeds the request timeout.
        """
        with self._cond:
            if self._stopping:
                raise Unavailable(f"model {self.name} is shutting down", 5)
            if job.background:
                self._background.append(job)
            else:
                if len(self._queue) >= self.queue_size:
                    raise QueueFull(f"model {self.name} has {len(self._queue)} requests waiting; retry later",
                                    self.retry_after())
                if self.stats.calls >= 3 and self.expected_wait() > self.timeout:
                    raise Unavailable(f"model {self.name} is overloaded (expected wait {self.expected_wait():.0f} s "
                                      f"> timeout {self.timeout:.0f} s); retry later", self.retry_after())
                self._queue.append(job)
            self._cond.notify()
        return job

    @property
    def waiting(self) -> int:
        """Requests waiting (not counting background jobs or the running call)."""
        return len(self._queue)

    # -- running -------------------------------------------------------------------------------------
    def _check_cancel(self, module: nn.Module, args: Any) -> None:
        active = self._active
        if active and threading.current_thread() is self._thread and all(j.cancelled.is_set() for j in active):
            raise Cancelled(f"every request of this {self.name} call was cancelled")

    def _take(self) -> list[Job] | None:
        """The next batch (None when stopping), under the lock."""
        with self._cond:
            while True:
                if self._stopping:
                    return None
                source = self._queue if self._queue else self._background
                if not source:
                    self._cond.wait()
                    continue
                first = source.popleft()
                if first.cancelled.is_set():
                    first.fail(Cancelled("cancelled while queued"))
                    self.stats.cancelled += 1
                    continue
                batch = [first]
                if not (self.batching and first.key is not None and not first.background):
                    return batch
                want = self._expect.get(first.key, 0) - 1
                if self.batch_wait > 0 and want > 0:
                    # the clients the previous call answered tend to come back together: wait (briefly) until they
                    # and the requests that queued during that call are here, so a batch is not split into calls
                    # that each cost nearly as much as the whole (a mean over past calls settles on the split)
                    end = time.monotonic() + self.batch_wait
                    while sum(j.key == first.key for j in self._queue) < want and not self._stopping:
                        left = end - time.monotonic()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                return batch + self._pull(first.key, self.max_batch - first.n)

    def _pull(self, key: Hashable, room: int) -> list[Job]:
        """Take the queued jobs of ``key`` whose samples fit in ``room``, in order (cancelled ones are failed and
        dropped); under the lock."""
        taken: list[Job] = []
        keep: collections.deque[Job] = collections.deque()
        while self._queue:
            j = self._queue.popleft()
            if j.cancelled.is_set():
                j.fail(Cancelled("cancelled while queued"))
                self.stats.cancelled += 1
            elif j.key == key and j.n <= room:
                taken.append(j)
                room -= j.n
            else:
                keep.append(j)
        self._queue.extendleft(reversed(keep))
        return taken

    def join(self, key: Hashable, room: int) -> list[Job]:
        """Called by a running call that admits requests between its steps (iteration-level batching): the queued
        jobs of ``key`` whose samples fit in ``room``, in order; they become part of the running call."""
        if not self.batching or room <= 0:
            return []
        with self._cond:
            taken = self._pull(key, room)
            self._active = [*self._active, *taken]
        return taken

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            t0 = time.perf_counter()
            self._active = batch
            try:
                batch[0].execute(batch)
            except Cancelled as e:
                self.stats.cancelled += len(self._active)
                for j in self._active:
                    j.fail(e)
            except BaseException as e:  # a failing request must never stop the worker
                self.stats.errors += 1
                for j in self._active:
                    j.fail(e)
            finally:
                batch, self._active = self._active, []  # with the jobs that joined the call while it ran
            dt = time.perf_counter() - t0
            if not batch[0].background:
                with self._cond:
                    if batch[0].key is not None:
                        same = sum(j.key == batch[0].key for j in self._queue)
                        self._expect = {batch[0].key: min(len(batch) + same, self.max_batch)}
                s = self.stats
                s.call_seconds = dt if s.calls == 0 else 0.8 * s.call_seconds + 0.2 * dt
                s.jobs_per_call = len(batch) if s.calls == 0 else 0.8 * s.jobs_per_call + 0.2 * len(batch)
                s.calls += 1
                s.jobs += len(batch)
                size = sum(j.n for j in batch)
                s.samples += size
                s.batch_sizes[len(batch)] += 1
                if self.on_call is not None:
                    self.on_call(size, len(batch), dt)

    def stop(self, timeout: float = 5.0) -> None:
        """Fail every queued job with :class:`Unavailable`, cancel the running one and end the thread."""
        with self._cond:
            self._stopping = True
            pending = [*self._queue, *self._background]
            self._queue.clear()
            self._background.clear()
            for j in self._active:
                j.cancel()
            self._cond.notify_all()
        for j in pending:
            j.fail(Unavailable(f"model {self.name} is shutting down", 5))
        self._thread.join(timeout)
        for h in self._hooks:
            h.remove()
