"""The local API's socket loop: one ROUTER, one thread, requests dispatched by a table.

Handlers return reply frames, or None when the answer comes later from a frame
worker (through the PULL socket). Slow or vanished clients cost nothing: replies
are sent without blocking (ROUTER_MANDATORY + SNDHWM), and a reply that cannot be
delivered is dropped and counted, never waited on.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

import zmq

from adaptinf import api_protocol as api
from adaptinf import router_loop
from adaptinf.daemon.stats import Stats

log = logging.getLogger(__name__)

SNDHWM = 256            # replies queued per client before we stop waiting for it

Handler = Callable[[api.Request, bytes, list], "list | None"]


class ApiServer:
    def __init__(self, endpoint: str, handlers: dict[str, Handler], stats: Stats, max_message_bytes: int,
                 results_endpoint: str, context: zmq.Context):
        self.endpoint = endpoint
        self.handlers = handlers
        self.stats = stats
        self.max_message_bytes = max_message_bytes
        self.results_endpoint = results_endpoint
        self._ctx = context
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.bound_endpoint: str | None = None
        self.thread_error: BaseException | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="api", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"API server did not come up on {self.endpoint}: {self.thread_error}")

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self.thread_error is None

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:
            self.thread_error = exc
            log.exception("API thread died")
            self._ready.set()

    def _loop(self) -> None:
        router = self._ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        router.setsockopt(zmq.SNDHWM, SNDHWM)
        # Far above the application limit: a message past the application limit gets
        # TOO_LARGE; only an absurd one makes libzmq drop the connection.
        router.setsockopt(zmq.MAXMSGSIZE, 2 * self.max_message_bytes)
        router.bind(self.endpoint)
        self.bound_endpoint = router.getsockopt(zmq.LAST_ENDPOINT).decode()
        results = self._ctx.socket(zmq.PULL)
        results.setsockopt(zmq.LINGER, 0)
        results.bind(self.results_endpoint)
        self._ready.set()
        try:
            router_loop.serve(router, results, self._stop, lambda frames: self._dispatch(router, frames),
                              lambda peer, reply: self.send(router, peer, reply))
            # Shutting down: answers that workers finish meanwhile still go out.
            while results.poll(200):
                peer, *reply = results.recv_multipart(copy=False)
                self.send(router, peer.bytes, reply)
        finally:
            router.close(0)
            results.close(0)

    def send(self, router: zmq.Socket, peer: bytes, frames: list) -> None:
        try:
            router.send_multipart([peer, *frames], zmq.NOBLOCK, copy=False)
        except zmq.Again:
            self.stats.count("replies_dropped_slow_client")
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            self.stats.count("replies_dropped_client_gone")

    def _dispatch(self, router: zmq.Socket, frames: list) -> None:
        peer = frames[0].bytes
        body = frames[1:]
        req = None
        try:
            req = api.decode_request([f.buffer for f in body], self.max_message_bytes)
            req.buffers = body[1:]  # keep zmq.Frames: handlers view them without copying
            reply = self.handlers[req.op](req, peer, body)
        except api.ApiError as exc:
            self.stats.record_reply(exc.code)
            reply = api.encode_reply(req.id if req else getattr(exc, "request_id", None), exc.code, exc.message)
        except Exception as exc:  # a handler bug must not take the daemon down
            log.exception("handler failed")
            self.stats.record_reply(api.UNAVAILABLE)
            reply = api.encode_reply(req.id if req else None, api.UNAVAILABLE, f"internal error: {type(exc).__name__}: {exc}")
        if reply is not None:
            self.send(router, peer, reply)
