"""Frame workers: a bounded priority queue of jobs and threads that execute them.

Queued frames are taken highest `priority` first (the API's 0..255), first come first
served within a priority; a frame already running is never preempted.

Each worker thread owns a PUSH socket to the API thread's PULL, so replies reach the
one thread that owns the ROUTER without any socket crossing threads.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from typing import Callable

import zmq

from adaptinf.daemon.frame import Job

log = logging.getLogger(__name__)


LAST = 1 << 16     # the stop sentinel's key: after every real priority (-255..0)


class PoolClosed(Exception):
    """The pool is stopping: the frame gets UNAVAILABLE, not a place in a queue no one reads."""


class QueueFull(Exception):
    pass


class WorkerPool:
    def __init__(self, workers: int, queue_size: int, results_endpoint: str,
                 handle: Callable[[Job], list], context: zmq.Context):
        # (-priority, arrival number, job): the number keeps FIFO within a priority and
        # means two jobs are never compared themselves
        self._jobs: queue.PriorityQueue[tuple[int, int, Job | None]] = queue.PriorityQueue(maxsize=queue_size)
        self._arrivals = itertools.count()
        self._handle = handle
        self._endpoint = results_endpoint
        self._ctx = context
        self._threads = [threading.Thread(target=self._loop, name=f"frame-worker-{i}", daemon=True)
                         for i in range(workers)]
        self._busy = 0
        self._busy_lock = threading.Lock()
        self._submit_lock = threading.Lock()
        self._closed = False

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def submit(self, job: Job) -> None:
        """QueueFull when the queue is; PoolClosed once stop() has begun: a job queued behind the
        workers' stop signals would never be answered."""
        with self._submit_lock:
            if self._closed:
                raise PoolClosed()
            try:
                self._jobs.put_nowait((-job.priority, next(self._arrivals), job))
            except queue.Full:
                raise QueueFull() from None

    def depth(self) -> int:
        return self._jobs.qsize()

    def alive(self) -> bool:
        return all(t.is_alive() for t in self._threads)

    @property
    def busy(self) -> int:
        return self._busy

    def idle(self) -> bool:
        return self._busy == 0 and self._jobs.empty()

    def stop(self, timeout_s: float = 5.0) -> list[Job]:
        """Stop taking jobs; returns the jobs never started, for the caller to answer."""
        left = []
        with self._submit_lock:          # nothing can be queued after this drain
            self._closed = True
            while True:
                try:
                    job = self._jobs.get_nowait()[2]
                except queue.Empty:
                    break
                if job is not None:
                    left.append(job)
            for _ in self._threads:
                self._jobs.put((LAST, next(self._arrivals), None))
        for t in self._threads:
            t.join(timeout_s)
        return left

    def _loop(self) -> None:
        push = self._ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 1000)
        push.connect(self._endpoint)
        try:
            while True:
                job = self._jobs.get()[2]
                if job is None:
                    return
                with self._busy_lock:
                    self._busy += 1
                try:
                    frames = self._handle(job)  # never raises: the handler answers errors itself
                finally:
                    with self._busy_lock:
                        self._busy -= 1
                push.send_multipart([job.peer, *frames], copy=False)
        except BaseException as exc:  # the daemon's health check sees the dead thread and exits
            log.critical("frame worker died: %s: %s", type(exc).__name__, exc, exc_info=True)
            raise
        finally:
            push.close()
