"""One thread serving a ROUTER, with answers from worker threads arriving on a PULL.

Both adaptinfd's API and the cloud worker have this shape: requests come in on the
ROUTER and are handled (or handed to workers) by `on_request`; workers push
[peer, *reply] to the PULL, and this same thread sends them, so the ROUTER never
leaves its thread. A burst of requests is drained per wake-up, bounded so that
replies are never starved.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

import zmq

from adaptinf import memory

BURST = 64
POLL_MS = 100


@dataclass(frozen=True)
class MessageLimits:
    """What one request may be. libzmq's MAXMSGSIZE bounds each frame, not the message,
    so the count and the total are checked here, frame by frame as they are read."""
    max_frames: int       # after the peer's routing id
    max_bytes: int


def receive(router: zmq.Socket, limits: MessageLimits) -> tuple[list, str | None]:
    """One message as [peer, *frames], or, if it breaks the limits, ([peer, first frame],
    reason): every frame past the first is dropped as soon as it is read, never kept, and
    the freed memory goes back to the system. Raises zmq.Again if nothing is waiting."""
    frames = [router.recv(zmq.NOBLOCK, copy=False)]
    total, problem = 0, None
    while router.getsockopt(zmq.RCVMORE):
        frame = router.recv(copy=False)
        if problem is None:
            total += len(frame)
            if len(frames) > limits.max_frames:
                problem = f"more than {limits.max_frames} frames"
            elif total > limits.max_bytes:
                problem = f"more than {limits.max_bytes} bytes"
            else:
                frames.append(frame)
                continue
            del frames[2:]   # keep the peer and the header, to answer by request id
        del frame
    if problem is not None:
        memory.release_freed()
    return frames, problem


def serve(router: zmq.Socket, results: zmq.Socket, stop: threading.Event,
          on_request: Callable[[list], None], send: Callable[[bytes, list], None],
          limits: MessageLimits, on_oversize: Callable[[list, str], None],
          drain_quiet_s: float = 0.0, drain_max_s: float = 0.0) -> None:
    """Serve until `stop`; then, for up to drain_max_s, keep answering what is already in the
    sockets (requests that arrived before the close, replies workers finish) until both
    have been quiet for drain_quiet_s: a request that was received gets its answer."""
    poller = zmq.Poller()
    poller.register(router, zmq.POLLIN)
    poller.register(results, zmq.POLLIN)

    # More waiting is asked of the socket (EVENTS), not found by a receive that fails: pyzmq
    # raises zmq.Again for that, which cost about 3x the question, once per wake-up.
    def pump(timeout_ms: int) -> bool:
        events = dict(poller.poll(timeout_ms))
        if router in events:
            for _ in range(BURST):
                if not router.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                    break
                frames, problem = receive(router, limits)
                if problem is None:
                    on_request(frames)
                else:
                    on_oversize(frames, problem)
        if results in events:
            while results.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                peer, *reply = results.recv_multipart(zmq.NOBLOCK, copy=False)
                send(peer.bytes, reply)
        return bool(events)

    while not stop.is_set():
        pump(POLL_MS)
    end = time.monotonic() + drain_max_s
    quiet_from = time.monotonic()
    while time.monotonic() < end:
        if pump(10):
            quiet_from = time.monotonic()
        elif time.monotonic() - quiet_from >= drain_quiet_s:
            return


def wait_until_terminated(failed: threading.Event | None = None) -> bool:
    """Block the main thread until SIGTERM or SIGINT (True), or until `failed` is set (False):
    a server whose thread died exits so that its supervisor restarts it."""
    import signal

    stop = failed or threading.Event()
    terminated = threading.Event()

    def on_signal(*_) -> None:
        terminated.set()
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stop.wait(1.0):  # a timed wait: Python runs signal handlers between waits
        pass
    return terminated.is_set()
