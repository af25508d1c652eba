"""The frame queue: highest priority first, FIFO within a priority, and nothing lost on stop.

The handler blocks on events instead of sleeping, so the order is decided by the queue
alone, whatever the machine's load."""

import threading

import numpy as np
import zmq

from adaptinf.daemon.executor import Job
from adaptinf.daemon.worker_pool import QueueFull, WorkerPool
from adaptinf.policies.plan import FrameContext


def job(name, priority=0):
    return Job(name, b"peer", np.zeros(1, np.uint8), FrameContext(), "split", 0.0, priority=priority)


class Recorder:
    """A handler that records the order it runs jobs in, holding the first until released."""

    def __init__(self):
        self.order, self.started, self.release = [], threading.Event(), threading.Event()
        self.done = threading.Semaphore(0)

    def __call__(self, j):
        self.started.set()
        self.release.wait(10)
        self.order.append(j.id)
        self.done.release()
        return [b"reply"]


def pool_with(recorder, queue_size=16):
    ctx = zmq.Context.instance()
    pull = ctx.socket(zmq.PULL)
    endpoint = f"inproc://pool-test-{id(recorder)}"
    pull.bind(endpoint)
    pool = WorkerPool(1, queue_size, endpoint, recorder, ctx)
    pool.start()
    return pool, pull


def test_a_high_priority_frame_overtakes_queued_low_priority_ones():
    rec = Recorder()
    pool, pull = pool_with(rec)
    try:
        pool.submit(job("running"))
        assert rec.started.wait(10)                      # the one worker is busy with it
        for name in ("low-1", "low-2", "low-3"):
            pool.submit(job(name, priority=0))
        pool.submit(job("mid", priority=5))
        pool.submit(job("urgent", priority=200))
        rec.release.set()
        for _ in range(6):
            assert rec.done.acquire(timeout=10)
        assert rec.order == ["running", "urgent", "mid", "low-1", "low-2", "low-3"]
    finally:
        rec.release.set()
        pool.stop()
        pull.close(0)


def test_a_full_queue_refuses_and_stop_returns_what_never_ran():
    rec = Recorder()
    pool, pull = pool_with(rec, queue_size=2)
    try:
        pool.submit(job("running"))
        assert rec.started.wait(10)
        pool.submit(job("a", priority=1))
        pool.submit(job("b", priority=9))
        try:
            pool.submit(job("c"))
            raise AssertionError("a full queue took a job")
        except QueueFull:
            pass
        left = pool.stop(timeout_s=0.1)     # the worker is still held: its join just gives up waiting
        rec.release.set()
        assert rec.done.acquire(timeout=10)
        assert sorted(j.id for j in left) == ["a", "b"] and rec.order == ["running"]
    finally:
        rec.release.set()
        pull.close(0)
