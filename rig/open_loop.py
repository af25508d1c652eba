"""Frames on a camera's schedule: open-loop arrivals through adaptinfd's API.

Frame i is sent at start + i / fps whether or not earlier frames were answered, as a
camera delivers them; replies are collected as they come, on the same DEALER socket
(one thread owns it). Each reply is matched to its frame by request id, so the result
says for every frame whether it was answered once, never, or more than once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import zmq

from adaptinf import api_protocol as api


@dataclass
class FrameReply:
    i: int
    sent_at: float                 # monotonic, when it actually left
    scheduled_at: float            # monotonic, when it was due
    received_at: float | None = None
    header: dict | None = None
    answers: int = 0               # how many replies carried its id (must be 1)

    @property
    def latency_s(self) -> float | None:
        """From the frame's due time to its answer: a late send counts against the system."""
        return None if self.received_at is None else self.received_at - self.scheduled_at


@dataclass
class StreamResult:
    frames: list[FrameReply]
    unmatched: int = 0              # replies whose id was no frame of this stream
    late_sends: list[float] = field(default_factory=list)   # how late each send was, seconds

    @property
    def unanswered(self) -> int:
        return sum(f.answers == 0 for f in self.frames)

    @property
    def duplicated(self) -> int:
        return sum(f.answers > 1 for f in self.frames)


def stream(endpoint: str, frames: np.ndarray, fps: float, request: Callable[[int], dict], start: float,
           drain_s: float = 10.0, context: zmq.Context | None = None,
           progress: Callable[[int], None] | None = None, offsets: np.ndarray | None = None) -> StreamResult:
    """Send frames[i] (each (1, H, W, C)) with request(i)'s fields at start + i / fps (or at
    start + offsets[i]: another arrival process, e.g. Poisson); wait up to drain_s after the
    last send for the remaining answers."""
    ctx = context or zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    replies: list[FrameReply] = []
    by_id: dict[str, FrameReply] = {}
    result = StreamResult(replies)
    prefix = f"s{id(result) & 0xffffff:x}-"
    try:
        n = len(frames)
        for i in range(n + 1):
            due = (start + (offsets[i] if offsets is not None else i / fps)) if i < n else None
            _receive_until(sock, due if due is not None else time.monotonic() + drain_s, by_id, result,
                           stop_when_done=due is None)
            if due is None:
                break
            frame = np.ascontiguousarray(frames[i])
            body = {"tensor": {"dtype": frame.dtype.name, "shape": list(frame.shape)}, **request(i)}
            req_id = f"{prefix}{i}"
            sent = time.monotonic()
            sock.send_multipart(api.encode_request("infer", req_id, body, (frame,)), copy=False)
            reply = FrameReply(i, sent, due)
            replies.append(reply)
            by_id[req_id] = reply
            result.late_sends.append(max(0.0, sent - due))
            if progress is not None:
                progress(i)
    finally:
        sock.close(0)
    return result


def _receive_until(sock: zmq.Socket, until: float, by_id: dict, result: StreamResult, stop_when_done: bool) -> None:
    while True:
        if stop_when_done and all(f.answers for f in result.frames):
            return
        left = until - time.monotonic()
        if left <= 0:
            return
        if not sock.poll(max(1, int(left * 1000)), zmq.POLLIN):
            continue
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            now = time.monotonic()
            try:
                header, _ = api.decode_reply(frames)
            except (api.ApiError, ValueError):
                result.unmatched += 1
                continue
            reply = by_id.get(header.get("id"))
            if reply is None:
                result.unmatched += 1
                continue
            reply.answers += 1
            if reply.answers == 1:
                reply.received_at, reply.header = now, header
