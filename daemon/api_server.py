"""The local API's socket loop: one ROUTER, one thread, requests dispatched by a table.

Handlers return reply frames, or None when the answer comes later from a frame
worker (through the PULL socket), or a ReplyThen: frames to send now and work to do
once they are sent (an inline frame's bookkeeping). Slow or vanished clients cost nothing: replies
are sent without blocking (ROUTER_MANDATORY + SNDHWM), and a reply that cannot be
delivered is dropped and counted, never waited on.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Callable, NamedTuple

import zmq

from adaptinf import api_protocol as api
from adaptinf import router_loop
from adaptinf.daemon.stats import Stats

log = logging.getLogger(__name__)

SOCKET_MODE = 0o660     # the ipc socket: the service's user and group
# Stopping: requests already received are still answered (UNAVAILABLE "shutting down"
# for frames) until the socket has been quiet this long, for at most DRAIN_MAX_S.
DRAIN_QUIET_S = 0.2
DRAIN_MAX_S = 5.0
CLOSE_LINGER_MS = 1000
SNDHWM = 256            # replies queued per client before we stop waiting for it

class ApiStartError(RuntimeError):
    pass


class ReplyThen(NamedTuple):
    """A reply, and work to do once it is sent (a frame's bookkeeping): the client's wait ends
    first, and the work is still done before the next request is read."""
    frames: list
    then: Callable[[], None]

    def finish(self) -> None:
        """Run `then` once the reply is out: a bookkeeping bug is logged, never the caller's to
        handle (the answer has gone, or goes, whatever it does)."""
        try:
            self.then()
        except Exception:
            log.exception("after a reply")


Handler = Callable[[api.Request, bytes, list], "list | ReplyThen | None"]


class ApiServer:
    def __init__(self, endpoint: str, handlers: dict[str, Handler], stats: Stats, max_message_bytes: int,
                 results_endpoint: str, context: zmq.Context, max_in_flight: int = 16):
        self.endpoint = endpoint
        # room for every reply a client is owed (its frames in flight) and a burst of refusals
        # beside them: a client that keeps up loses nothing, even to the burst of "shutting
        # down" replies while the daemon drains; only one that stops reading has replies dropped
        self.sndhwm = max(SNDHWM, 2 * max_in_flight + SNDHWM)
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
        self._req_peers: set[bytes] = set()   # REQ clients awaiting their reply (the API thread's own)

    def start(self) -> None:
        """Returns once the socket is bound and served; ApiStartError (with the reason) if not."""
        self._thread = threading.Thread(target=self._run, name="api", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise ApiStartError(f"the API did not come up on {self.endpoint} within 10 s")
        if self.thread_error is not None:
            exc = self.thread_error
            raise ApiStartError(f"cannot serve the API on {self.endpoint}: {type(exc).__name__}: {exc}")

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self.thread_error is None

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=DRAIN_MAX_S + CLOSE_LINGER_MS / 1e3 + 2)

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:
            self.thread_error = exc
            if self._ready.is_set():   # at start-up the error is the caller's to report
                log.critical("API thread died: %s: %s", type(exc).__name__, exc, exc_info=True)
            self._ready.set()

    def _loop(self) -> None:
        router = self._ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        router.setsockopt(zmq.SNDHWM, self.sndhwm)
        # Far above the application limit: a message past the application limit gets
        # TOO_LARGE; only an absurd one makes libzmq drop the connection.
        router.setsockopt(zmq.MAXMSGSIZE, 2 * self.max_message_bytes)
        router.bind(self.endpoint)
        self.bound_endpoint = router.getsockopt(zmq.LAST_ENDPOINT).decode()
        if self.endpoint.startswith("ipc://") and not self.endpoint.startswith("ipc://@"):
            # clients in the service's group connect: rw for the group, whatever the umask
            os.chmod(self.endpoint[len("ipc://"):], SOCKET_MODE)
        results = self._ctx.socket(zmq.PULL)
        results.setsockopt(zmq.LINGER, 0)
        results.bind(self.results_endpoint)
        self._ready.set()
        try:
            router_loop.serve(router, results, self._stop, lambda frames: self._dispatch(router, frames),
                              lambda peer, reply: self.send(router, peer, reply),
                              router_loop.MessageLimits(api.MAX_FRAMES, self.max_message_bytes),
                              lambda frames, problem: self._refuse_oversize(router, frames, problem),
                              drain_quiet_s=DRAIN_QUIET_S, drain_max_s=DRAIN_MAX_S)
        finally:
            router.close(linger=CLOSE_LINGER_MS)   # the answers just sent still leave
            results.close(0)

    def send(self, router: zmq.Socket, peer: bytes, frames: list) -> None:
        if peer in self._req_peers:          # a REQ socket's one request: its reply goes back in its envelope
            self._req_peers.discard(peer)
            frames = [b"", *frames]
        try:
            router.send_multipart([peer, *frames], zmq.NOBLOCK, copy=api.copy_when_sent(frames))
        except zmq.Again:
            self.stats.count("replies_dropped_slow_client")
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            self.stats.count("replies_dropped_client_gone")

    def _refuse_oversize(self, router: zmq.Socket, frames: list, problem: str) -> None:
        if len(frames) > 2 and len(frames[1]) == 0 and _sent_by_req(frames[1]):     # a REQ socket's envelope
            self._req_peers.add(frames[0].bytes)
            frames = [frames[0], *frames[2:]]
        req_id = api.request_id(frames[1].buffer) if len(frames) > 1 else None
        self.stats.record_reply(api.TOO_LARGE)
        self.send(router, frames[0].bytes, api.encode_reply(req_id, api.TOO_LARGE, f"message has {problem}; "
                                                            f"the limit is {self.max_message_bytes} bytes in "
                                                            f"{api.MAX_FRAMES} frames"))

    def _dispatch(self, router: zmq.Socket, frames: list) -> None:
        peer = frames[0].bytes
        body = frames[1:]
        if len(body) > 1 and len(body[0]) == 0 and _sent_by_req(body[0]):
            # A REQ socket puts an empty delimiter before the request and takes only a reply
            # that has one; it has one request at a time, so the peer is remembered until then.
            body = body[1:]
            self._req_peers.add(peer)
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
        if type(reply) is ReplyThen:
            self.send(router, peer, reply.frames)
            reply.finish()
        elif reply is not None:
            self.send(router, peer, reply)


def _sent_by_req(frame: zmq.Frame) -> bool:
    """The peer is a REQ socket (ZMTP 3's handshake metadata): only then is an empty first frame
    an envelope; from a DEALER it is a malformed header, answered as such."""
    try:
        return frame.get("Socket-Type") == "REQ"
    except (zmq.ZMQError, AttributeError):
        return False
