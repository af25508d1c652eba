"""The API's handlers: one per op, from a decoded request to reply frames.

The edge of the daemon: requests are validated here (parse_infer), frames become jobs for
the worker pool, and results become replies (served_by, latency_ms, scores). Every job is
answered exactly once by `answer`, on a worker or inline. The daemon (daemon/service.py)
owns the state these read.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from adaptinf import __version__
from adaptinf import api_protocol as api
from adaptinf.daemon.api_server import ReplyThen
from adaptinf.daemon.config import MCU_POLICIES, POLICIES
from adaptinf.daemon.frame import FrameResult, Job, Planned
from adaptinf.daemon.infer_request import ServedModel, parse_infer
from adaptinf.daemon.worker_pool import PoolClosed, QueueFull
from adaptinf.policies.plan import MODES, FrameContext

if TYPE_CHECKING:
    from adaptinf.daemon.service import Daemon

log = logging.getLogger(__name__)

FEATURES = ("infer", "deadline", "priority", "modes", "policies", "scores", "split", "fallback")


class ApiHandlers:
    def __init__(self, daemon: "Daemon"):
        self.d = daemon
        self._outputs_described: dict[tuple, tuple] = {}   # (model, first buffer) -> (ServedModel, described)

    def table(self) -> dict:
        """op -> handler: reply frames, or None when a worker will answer."""
        return {"hello": self._hello, "health": self._health, "models": self._models, "status": self._status,
                "stats": self._stats, "set_mode": self._set_mode, "infer": self._infer, "record": self._record}

    def _ok(self, req: api.Request, body: dict) -> list:
        self.d.stats.record_reply(api.OK)
        return api.encode_reply(req.id, api.OK, body=body)

    def _hello(self, req: api.Request, peer: bytes, frames: list) -> list:
        return self._ok(req, {"protocol": [api.PROTOCOL_MAJOR, api.PROTOCOL_MINOR], "server": "adaptinfd",
                              "version": __version__, "features": list(FEATURES),
                              "max_message_bytes": self.d.config.daemon.max_message_bytes,
                              "ops": list(api.OPS), "dtypes": list(api.TENSOR_DTYPES)})

    def _health(self, req: api.Request, peer: bytes, frames: list) -> list:
        ready = self.d.profile is not None and self.d.pool is not None
        return self._ok(req, {"live": True, "ready": ready})

    def _models(self, req: api.Request, peer: bytes, frames: list) -> list:
        b = self.d.bundle
        return self._ok(req, {"models": [{
            "name": b.name, "ready": True, "classes": list(b.classes), "backend": self.d.models.backend,
            "inputs": [{"name": b.input.name, "dtype": b.input.dtype, "shape": list(b.input.shape)}],
            "outputs": [{"name": o.name, "dtype": o.dtype, "shape": list(o.shape)} for o in b.output_specs],
            "preprocess": b.preprocess.to_manifest() if b.preprocess else None,
            "partitions": self.d.usable_partitions(), "policies": list(self.d.policies)}]
            + ([self._fc_model_entry()] if self.d.mcu_policies else [])})

    def _fc_model_entry(self) -> dict:
        return {"name": self.d.config.mcu.name, "ready": True, "classes": [str(c) for c in range(self.d.mcu_classes)],
                "backend": "mcu" if self.d.mcu.up else "host (MCU down)",
                "inputs": [{"name": "features", "dtype": "float32", "shape": [self.d.mcu.system.input_dim]}],
                "outputs": [{"name": "logits", "dtype": "float32", "shape": [1, self.d.mcu_classes]}],
                "policies": list(MCU_POLICIES)}

    def _status(self, req: api.Request, peer: bytes, frames: list) -> list:
        return self._ok(req, self.d.status_body())

    def _stats(self, req: api.Request, peer: bytes, frames: list) -> list:
        return self._ok(req, self.d.stats_body())

    def _record(self, req: api.Request, peer: bytes, frames: list) -> list:
        recorder = self.d.recorder
        if recorder is None:
            raise api.ApiError(api.UNAVAILABLE, "the flight recorder is off ([recorder] enabled = false)")
        after, limit = req.header.get("after", 0), req.header.get("limit", 5000)
        for name, value, top in (("after", after, None), ("limit", limit, 20_000)):
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "limit" else 0) \
                    or (top is not None and value > top):
                raise api.ApiError(api.INVALID_ARG, f"{name} must be an integer"
                                   + (f" in 1..{top}" if top else " >= 0"))
        lines, newest = recorder.records_after(after, limit)
        return self._ok(req, {"lines": [line.decode().rstrip("\n") for line in lines], "newest": newest,
                              "directory": str(recorder.directory), "dropped": recorder.dropped,
                              "header": recorder.header(), "profiles": recorder.profiles()})

    def _set_mode(self, req: api.Request, peer: bytes, frames: list) -> list:
        mode = req.header.get("mode")
        if mode not in MODES:
            raise api.ApiError(api.INVALID_ARG, f"mode must be one of {list(MODES)}")
        previous, self.d.mode = self.d.mode, mode
        log.info("mode %s -> %s", previous, mode)
        if self.d.recorder is not None:
            self.d.recorder.event("mode", {"mode": mode, "previous": previous})
        return self._ok(req, {"mode": mode, "previous": previous})

    def _infer(self, req: api.Request, peer: bytes, frames: list) -> "list | ReplyThen | None":
        if self.d.stopping:
            raise api.ApiError(api.UNAVAILABLE, "adaptinfd is shutting down")
        r = parse_infer(req, self.d.served, self.d.bundle.name, self.d.mode, self.d.config.policy.goal, POLICIES)
        fc = r.model.on_mcu
        if not self.d.shares.take(peer):
            raise api.ApiError(api.RESOURCE_EXHAUSTED, f"this client already has {self.d.shares.share(peer)} frames "
                                                       "in flight, its share ([daemon].max_in_flight_per_client, "
                                                       "less while other clients are busy); wait for their answers")
        now = time.monotonic()
        job = Job(r.id, peer, r.frame, FrameContext(r.goal, r.mode, r.deadline_s), r.policy, now,
                  now + r.deadline_s if r.deadline_s else None, keepalive=r.keepalive, model=r.model.name,
                  priority=r.priority, camera=r.camera)
        if not fc and self.d.pool.idle():  # plan now: it cannot go stale before a worker takes it
            # _answer answers it (and gives its share back), whatever planning did
            planned = self._plan_or_fail(job)
            if isinstance(planned, FrameResult) or (planned.plan.chosen.kind == "device" and
                                                    planned.plan.chosen.device_s <= self.d.inline_max_s):
                self.d.stats.count("frames_inline")
                return self.settle(job, planned)     # the API thread sends it, then does its bookkeeping
            job.planned = planned
        try:
            self.d.pool.submit(job)
        except QueueFull:
            self.d.shares.give_back(peer)
            raise api.ApiError(api.RESOURCE_EXHAUSTED, "frame queue is full; retry later") from None
        except PoolClosed:
            self.d.shares.give_back(peer)
            raise api.ApiError(api.UNAVAILABLE, "adaptinfd is shutting down") from None
        return None

    def _plan_or_fail(self, job: Job) -> "Planned | FrameResult":
        try:
            return self.d.executor.plan(job)
        except Exception as exc:
            log.exception("planning frame %r failed", job.id)
            return FrameResult(api.UNAVAILABLE, f"internal error: {type(exc).__name__}: {exc}")

    def answer(self, job: Job, planned: "Planned | FrameResult | None" = None) -> list:
        """Every job gets exactly one reply, whatever happens: a worker's (its bookkeeping done
        before the reply leaves, so a client that asks for statistics next sees its frame)."""
        reply = self.settle(job, planned)
        reply.finish()
        return reply.frames

    def settle(self, job: Job, planned: "Planned | FrameResult | None" = None) -> ReplyThen:
        """The job's reply, and its bookkeeping to run after it (statistics, metrics, the flight
        recorder): the API thread sends an inline frame's reply first, and the bookkeeping runs
        before it reads the next request, so nothing observable moves, but no frame waits for it."""
        try:
            result = self._result(job, planned)
        finally:
            self.d.shares.give_back(job.peer)
        latency_ms = result.stages.to_reply_ms()        # once, for the reply and the recorder
        try:
            frames = self._reply(job, result, latency_ms)
        except Exception as exc:        # a reply that cannot be made is still an answer
            log.exception("frame %r: its reply could not be made", job.id)
            result = FrameResult(api.UNAVAILABLE, f"internal error: {type(exc).__name__}: {exc}")
            frames = api.encode_reply(job.id, result.code, result.message)
        return ReplyThen(frames, lambda: self._account(job, result, latency_ms))

    def _result(self, job: Job, planned: "Planned | FrameResult | None") -> FrameResult:
        try:
            if isinstance(planned, FrameResult):
                return planned
            if planned is not None:
                return self.d.executor.run(job, planned)
            return self.d.served[job.model].run(job)
        except Exception as exc:
            log.exception("frame %r failed", job.id)
            return FrameResult(api.UNAVAILABLE, f"internal error: {type(exc).__name__}: {exc}")

    def _account(self, job: Job, result: FrameResult, latency_ms: dict) -> None:
        """One answered frame into the statistics, the Prometheus metrics and the flight recorder."""
        d = self.d
        d.stats.record_reply(result.code)
        if d.recorder is not None:
            d.recorder.frame(job, result, latency_ms)
        if result.code != api.OK:
            if result.code == api.DEADLINE_EXCEEDED:
                d.frame_metrics.missed(job.model)
            return
        served, stages = result.served_by, result.stages
        total = stages.total or 0.0
        if result.planned is not None:
            d.stats.record_frame(result.planned.plan.policy, result.placement, stages)
        d.frame_metrics.observe(job.model, served.placement, served.partition, served.fallback, total,
                                job.deadline is not None and job.received + total > job.deadline,
                                result.energy_j, result.energy_source)

    def _reply(self, job: Job, result: FrameResult, latency_ms: dict) -> list:
        if result.code != api.OK:
            return api.encode_reply(job.id, result.code, result.message)
        model = self.d.served[job.model]
        body = {"served_by": result.served_by.to_reply(), "latency_ms": latency_ms,
                "energy_j": result.energy_j, "energy_source": result.energy_source,
                "energy_idle_j": result.energy_idle_j}
        buffers = []
        if result.scores is not None:       # a classifier: its answer and its class probabilities first
            body.update({"label": result.label, "class": model.classes[result.label], "confidence": result.confidence,
                         "scores": {"dtype": "float32", "shape": [len(result.scores)], "buffer": 0}})
            buffers.append(result.scores.tobytes())
        offset = 0
        for spec in model.outputs:          # every model's named outputs, one buffer each, in order
            values = result.outputs[offset:offset + spec.size]
            offset += spec.size
            buffers.append((values if spec.dtype == "float32" else values.astype(spec.dtype)).tobytes())
        body["outputs"] = self._described_outputs(model, first_buffer=len(buffers) - len(model.outputs))
        return api.encode_reply(job.id, api.OK, body=body, buffers=tuple(buffers))

    def _described_outputs(self, model: ServedModel, first_buffer: int) -> list[dict]:
        """The reply's description of a model's named outputs: the same for every frame, made once."""
        key = (model.name, first_buffer)
        described = self._outputs_described.get(key)
        if described is None or described[0] is not model:
            described = self._outputs_described[key] = (model, [
                {"name": spec.name, "dtype": spec.dtype, "shape": list(spec.shape), "buffer": first_buffer + i}
                for i, spec in enumerate(model.outputs)])
        return described[1]
