"""The asyncio client for adaptinfd (adaptinf.client.aio): the same calls as adaptinf.client.Client, as coroutines.

    from adaptinf.client.aio import AsyncClient
    async with AsyncClient("ipc:///run/adaptinfd/api.sock") as c:
        results = await asyncio.gather(*(c.infer(f) for f in frames))   # pipelined on one connection

One DEALER per client, used only from its event loop. A reader task completes each
request's future by its id. At most `max_in_flight` requests are in flight (the daemon's
per-client limit): more wait for a slot instead of drawing RESOURCE_EXHAUSTED. Errors are
the same typed ApiError subclasses as the threaded client's; a request with no reply in
its timeout raises ApiTimeout (its late reply, if any, is dropped by id).
"""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import Any

import numpy as np
import zmq
import zmq.asyncio

from adaptinf import api_protocol as api
from adaptinf.client import (DEFAULT_MAX_IN_FLIGHT, ApiTimeout, InferResult, check_reachable, decode_infer_reply,
                             default_endpoint, error_for, infer_body)


class AsyncClient:
    def __init__(self, endpoint: str | None = None, timeout_s: float = 5.0,
                 max_in_flight: int = DEFAULT_MAX_IN_FLIGHT, context: zmq.asyncio.Context | None = None):
        self.endpoint = endpoint or default_endpoint()
        check_reachable(self.endpoint)
        self.timeout_s = timeout_s
        self._ctx = context or zmq.asyncio.Context.instance()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.connect(self.endpoint)
        self._slots = asyncio.Semaphore(max_in_flight)
        self._pending: dict[str, asyncio.Future] = {}
        self._ids = itertools.count(1)
        self._prefix = f"{os.getpid()}-a{id(self) & 0xffff:x}-"
        self._reader: asyncio.Task | None = None

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):
                pass
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError("the client was closed"))
        self._sock.close(0)

    async def _read(self) -> None:
        while True:
            reply = await self._sock.recv_multipart()
            header, frames = api.decode_reply(reply)
            future = self._pending.pop(header.get("id"), None)
            if future is None or future.done():
                continue                 # a late reply to a request that timed out
            future.set_result((header, frames))

    async def request(self, op: str, body: dict | None = None, buffers: tuple = (),
                      timeout_s: float | None = None) -> tuple[dict, list]:
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._read())
        async with self._slots:                      # back-pressure: the daemon's per-client limit
            req_id = self._prefix + str(next(self._ids))
            future = asyncio.get_running_loop().create_future()
            self._pending[req_id] = future
            frames = api.encode_request(op, req_id, body, buffers)
            await self._sock.send_multipart(frames, copy=api.copy_when_sent(frames))
            timeout = self.timeout_s if timeout_s is None else timeout_s
            try:
                header, frames = await asyncio.wait_for(future, timeout)
            except asyncio.TimeoutError:
                self._pending.pop(req_id, None)
                raise ApiTimeout(f"no reply to {op} within {timeout * 1e3:.0f} ms from {self.endpoint}") from None
        if not header.get("ok"):
            raise error_for(header.get("code", "?"), header.get("message", ""))
        return header, frames

    async def hello(self) -> dict:
        return (await self.request("hello"))[0]

    async def health(self) -> dict:
        return (await self.request("health"))[0]

    async def is_ready(self) -> bool:
        return bool((await self.health()).get("ready"))

    async def models(self) -> list[dict]:
        return (await self.request("models"))[0]["models"]

    async def status(self) -> dict:
        return (await self.request("status"))[0]

    async def stats(self) -> dict:
        return (await self.request("stats"))[0]

    async def set_mode(self, mode: str) -> dict:
        return (await self.request("set_mode", {"mode": mode}))[0]

    async def infer(self, frame: np.ndarray, timeout_s: float | None = None, **options: Any) -> InferResult:
        """options: model, deadline_ms, priority, mode, policy, goal, color (as Client.infer)."""
        body, frame = infer_body(frame, **options)
        return decode_infer_reply(*await self.request("infer", body, (frame,), timeout_s))
