"""One thread serving a ROUTER, with answers from worker threads arriving on a PULL.

Both adaptinfd's API and the cloud worker have this shape: requests come in on the
ROUTER and are handled (or handed to workers) by `on_request`; workers push
[peer, *reply] to the PULL, and this same thread sends them, so the ROUTER never
leaves its thread. A burst of requests is drained per wake-up, bounded so that
replies are never starved.
"""

from __future__ import annotations

import threading
from typing import Callable

import zmq

BURST = 64
POLL_MS = 100


def serve(router: zmq.Socket, results: zmq.Socket, stop: threading.Event,
          on_request: Callable[[list], None], send: Callable[[bytes, list], None]) -> None:
    poller = zmq.Poller()
    poller.register(router, zmq.POLLIN)
    poller.register(results, zmq.POLLIN)
    while not stop.is_set():
        events = dict(poller.poll(POLL_MS))
        if router in events:
            for _ in range(BURST):
                try:
                    frames = router.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                on_request(frames)
        if results in events:
            while True:
                try:
                    peer, *reply = results.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                send(peer.bytes, reply)


def wait_until_terminated() -> None:
    """Block the main thread until SIGTERM or SIGINT (the daemons' mains)."""
    import signal

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
