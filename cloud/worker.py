"""The cloud worker: a ROUTER serving a bundle's tails and full model to devices.

One thread owns the ROUTER socket (receive, de-duplicate, answer pings and probes,
send replies); compute threads take inference jobs from a bounded queue and hand
results back over an inproc PUSH/PULL pair, so no socket is shared between threads.

De-duplication (zguide "idempotent services"): the reply to (device id, rid) is
stored before it is sent; a retry of a finished request gets the stored reply again
(marked "replayed"), a retry of one still queued or running is absorbed, so a retry
never runs twice. Every reply carries the worker's load: queue depth and the
smoothed service time, which is how devices see a congested server.

With a zoo bundle, target "mdinference" lets the worker pick the zoo model for the frame
(paper 003, with the upload time measured here: cloud/zoo_selection.py).
"""

from __future__ import annotations

import logging
import queue
import statistics
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import zmq

from adaptinf.bundle import Bundle
from adaptinf import router_loop
from adaptinf.cloud import curve_auth, protocol
from adaptinf.cloud.zoo_selection import ZooSelection
from adaptinf.engines import EngineError, open_engine
from adaptinf.engines.emulated_times import EmulatedTimes
from adaptinf.policies.mdinference import ModelStats
from adaptinf.upload_quant import dequantize

log = logging.getLogger(__name__)

DEDUP_CAPACITY = 10_000        # finished replies kept for replay
SERVICE_EWMA_ALPHA = 0.2
OWNER_SILENCE_S = 3.0         # a device id's connection silent this long gives the id up (heartbeats: 0.5 s)
MAX_OWNERS = 4096
SELECTION_TIMING_RUNS = 10     # each zoo model timed at start, MDInference's first profile
TIMING_BUDGET_S = 0.25         # compute one device's timing request may take from everyone's frames
_PENDING = object()


@dataclass
class _Job:
    peer: bytes
    rid: tuple                  # (rid, digest): the de-duplication key within the device
    header: dict
    payload: Any
    arrived: float          # monotonic, for the queue's time
    arrived_at: float       # wall clock, for the upload's (MDInference)


def max_frame_bytes(engines: dict) -> int:
    """The largest frame a device legitimately sends this worker: the header, a float32 tensor of
    any target's input (the full model's frame, a tail's upload, a zoo model's frame), or the
    largest link probe. A target whose input size is not fixed allows the protocol's maximum."""
    largest = 0
    for engine in engines.values():
        inputs = getattr(engine, "inputs", None)
        dims = inputs[0].shape[1:] if inputs else None
        if not dims or any(not isinstance(d, int) or d <= 0 for d in dims):
            return protocol.MAX_PAYLOAD_BYTES + protocol.MAX_HEADER_BYTES
        largest = max(largest, 4 * int(np.prod(dims)))
    return max(protocol.MAX_HEADER_BYTES, largest, protocol.PROBE_MAX_BYTES)


class CloudWorker:
    def __init__(self, bundle: Bundle, endpoint: str, backend: str = "auto", threads: int = 1,
                 queue_size: int = 256, plan_cache_dir: str | None = None, context: zmq.Context | None = None,
                 curve_secret_file: str | None = None, allowed_devices_dir: str | None = None,
                 triton_url: str | None = None, emulate_times: dict[str, tuple[float, float]] | None = None,
                 seed: int = 0):
        """With curve_secret_file and allowed_devices_dir, the link is CURVE-encrypted and only
        devices whose public key is in allowed_devices_dir (<device-id>.key) are served.
        With triton_url, inference runs on that Triton server (a repository made by
        `adaptinf export triton`) instead of local engines: the gateway mode.
        emulate_times: {zoo model: (mean s, std s)}, emulation only (engines/emulated_times.py),
        drawn from generators seeded by `seed`, which also seeds MDInference's choices."""
        self.clock = time.perf_counter      # timing requests' clock (a test injects its own)
        self.bundle = bundle
        self.endpoint = endpoint
        self._ctx = context or zmq.Context.instance()
        if triton_url:
            from adaptinf.cloud.triton_engine import TritonEngine
            from adaptinf.cloud.triton_repository import model_name, targets

            self._engines = {t: TritonEngine(triton_url, model_name(bundle, t), io.input_name, io.dtype, io.dims,
                                             io.output_name, io.output_dims)
                             for t, io in targets(bundle).items()}
        else:
            self._engines = {protocol.FULL_TARGET: open_engine(bundle.path(bundle.full_model.file), backend,
                                                               plan_cache_dir)}
            for point in bundle.split.points if bundle.split else ():
                self._engines[point.name] = open_engine(bundle.path(point.tail), backend, plan_cache_dir)
            for name in bundle.zoo.models if bundle.zoo else ():   # every zoo model serves on its own
                self._engines[name] = open_engine(bundle.path(bundle.model(name).file), backend, plan_cache_dir)
        for i, (name, (mean_s, std_s)) in enumerate(sorted((emulate_times or {}).items())):
            if name not in (bundle.zoo.models if bundle.zoo else ()):
                raise ValueError(f"emulated times for {name!r}, which is not a zoo model of bundle {bundle.name!r}")
            self._engines[name] = EmulatedTimes(self._engines[name], mean_s, std_s, seed=seed + 1 + i)
        self._selection = self._zoo_selection(seed) if bundle.zoo else None
        self._quantised = {p.name for p in (bundle.split.points if bundle.split else ())}
        self._jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=queue_size)
        self._threads = threads
        self._busy = 0
        self._service_s = 0.0
        self._replies: OrderedDict[tuple, Any] = OrderedDict()     # (device, rid, digest) -> reply
        self._lock = threading.Lock()
        self._owners: dict[bytes, tuple[bytes, float]] = {}    # device id -> (routing id, last heard)
        self._warned_duplicates: set[bytes] = set()
        self._stop = threading.Event()
        self._results_endpoint = f"inproc://cloud-results-{id(self)}"
        self.counters = {"requests": 0, "replayed": 0, "absorbed": 0, "shed_deadline": 0, "rejected_full": 0, "duplicate_device": 0,
                         "bad_requests": 0, "refused_devices": 0}
        if (curve_secret_file is None) != (allowed_devices_dir is None):
            raise ValueError("CURVE needs both the server's secret key file and the allowed-devices directory")
        self._curve_secret = curve_secret_file
        self._allow = curve_auth.DeviceAllowList(allowed_devices_dir) if allowed_devices_dir else None
        self._authenticator = None
        self._ready = threading.Event()
        self._router_thread: threading.Thread | None = None
        self._compute_threads: list[threading.Thread] = []
        self.bound_endpoint: str | None = None
        self.failed = threading.Event()      # set when a thread died: the process must exit
        self.failure: BaseException | None = None

    # ---- life cycle -------------------------------------------------------------
    def start(self) -> "CloudWorker":
        if self._allow is not None:
            self._authenticator = curve_auth.start_authenticator(self._ctx, self._allow)
        self._router_thread = threading.Thread(target=self._guarded, args=(self._router_loop,), name="cloud-router",
                                               daemon=True)
        self._router_thread.start()
        if not self._ready.wait(10) or self.failure is not None:
            raise OSError(f"cannot serve on {self.endpoint}: {self.failure or 'the router did not start'}")
        for i in range(self._threads):
            t = threading.Thread(target=self._guarded, args=(self._compute_loop,), name=f"cloud-compute-{i}",
                                 daemon=True)
            t.start()
            self._compute_threads.append(t)
        if self._authenticator is not None:
            threading.Thread(target=self._guarded, args=(self._watch_authenticator,), name="cloud-auth-watch",
                             daemon=True).start()
        return self

    def _watch_authenticator(self) -> None:
        """The CURVE authenticator is pyzmq's thread: if it dies, no device can connect, so
        that ends the worker too (failed), for its supervisor to restart it."""
        while not self._stop.wait(1.0):
            if not self._authenticator.is_alive():
                raise RuntimeError("the CURVE authenticator thread died: no device could connect")

    def _guarded(self, loop) -> None:
        """A thread that dies ends the worker (failed is set; the main exits non-zero and systemd
        restarts it), instead of leaving a process that answers pings but never infers."""
        try:
            loop()
            if not self._stop.is_set():
                raise RuntimeError("the thread returned while the worker was serving")
        except BaseException as exc:
            if not self._stop.is_set() and self._ready.is_set():   # before ready, start() reports it
                log.critical("%s died: %s: %s", threading.current_thread().name, type(exc).__name__, exc,
                             exc_info=True)
            self.failure = exc
            self._ready.set()
            self.failed.set()

    def stop(self) -> None:
        self._stop.set()
        for _ in self._compute_threads:
            try:
                self._jobs.put_nowait(None)
            except queue.Full:
                pass
        for t in [self._router_thread, *self._compute_threads]:
            if t is not None:
                t.join(timeout=5)
        if self._authenticator is not None:
            self._authenticator.stop()

    def load(self) -> dict:
        return {"queue_depth": self._jobs.qsize() + self._busy, "service_s": self._service_s}

    def _zoo_selection(self, seed: int) -> ZooSelection:
        """MDInference's pool: every zoo model, timed here (emulated ones at their set times);
        the build's host figures if this worker cannot time them (a Triton not yet up)."""
        zoo = self.bundle.zoo
        declared = {n: (e.mean_s, e.std_s) for n, e in self._engines.items() if isinstance(e, EmulatedTimes)}
        to_time = tuple(n for n in zoo.models if n not in declared)
        try:
            measured = (self._timings(protocol.Timing(SELECTION_TIMING_RUNS, to_time), budget_s=None)
                        if to_time else {})
            measured = {n: (t["median_s"], t["std_s"]) for n, t in measured.items()}
        except EngineError as exc:
            log.warning("cannot time the zoo (%s); MDInference starts from the build's figures", exc)
            measured = {n: (zoo.figures.get(n, {}).get("host_ms", 1.0) / 1e3,
                            zoo.figures.get(n, {}).get("host_ms_std", 0.0) / 1e3) for n in zoo.models}
        times = {**measured, **declared}
        return ZooSelection([ModelStats(n, self.bundle.model(n).accuracy or 0.0, *times[n]) for n in zoo.models],
                            seed)

    # ---- router thread ----------------------------------------------------------
    def _router_loop(self) -> None:
        router = self._ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.ROUTER_HANDOVER, 1)   # a reconnecting device replaces its half-open old pipe
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)  # unreachable peer -> error we count, not silence
        # each frame of a message at most what this bundle's largest legitimate payload needs
        # (a float32 frame of its largest input), not 64 MiB: a peer's message of many frames
        # then costs a few MiB, not gigabytes (ZeroMQ bounds frames, not frames per message)
        router.setsockopt(zmq.MAXMSGSIZE, max_frame_bytes(self._engines))
        if self._curve_secret is not None:
            curve_auth.make_server(router, self._curve_secret)
        router.bind(self.endpoint)
        self.bound_endpoint = router.getsockopt(zmq.LAST_ENDPOINT).decode()
        results = self._ctx.socket(zmq.PULL)
        results.setsockopt(zmq.LINGER, 0)
        results.bind(self._results_endpoint)
        self._ready.set()
        try:
            router_loop.serve(router, results, self._stop, lambda frames: self._on_request(router, frames),
                              lambda peer, reply: self._send(router, peer, reply),
                              router_loop.MessageLimits(2, protocol.MAX_PAYLOAD_BYTES + protocol.MAX_HEADER_BYTES),
                              lambda frames, problem: self._refuse(router, frames, "TOO_LARGE",
                                                                   f"message has {problem}"))
        finally:
            router.close(0)
            results.close(0)

    def _send(self, router: zmq.Socket, peer: bytes, frames: list) -> None:
        try:
            router.send_multipart([peer, *frames], zmq.NOBLOCK)
        except (zmq.Again, zmq.ZMQError):
            pass  # device gone or not reading: it will retry with the same rid and get the replay

    def _reply(self, header: dict, code: str = "OK", message: str | None = None, **extra: Any) -> list:
        # the bundle served, in every reply: a device with another bundle refuses the answers
        out = {"rid": header["rid"], "ok": code == "OK", "code": code, "load": self.load(),
               "bundle": self.bundle.manifest_sha256, **extra}
        if isinstance(header.get("digest"), int):
            out["digest"] = header["digest"]     # the device takes only its own request's reply
        if message:
            out["message"] = message
        return [protocol.pack(out)]

    def _authorised(self, peer: bytes, frames: list) -> bool:
        """Under CURVE: the sender's key is still allowed and is the key of the device it claims to be."""
        if self._allow is None:
            return True
        key = frames[1].get("User-Id") if len(frames) > 1 else None
        device = self._allow.device_for(key.encode()) if key else None
        if device is None or device.encode() != protocol.device_of(peer):
            self.counters["refused_devices"] += 1
            log.warning("dropping a message from %r: key %s", peer,
                        "revoked" if device is None else f"belongs to {device!r}")
            return False
        return True

    def _on_request(self, router: zmq.Socket, frames: list) -> None:
        """Every message with a readable rid gets exactly one reply, whatever is wrong with it."""
        peer = frames[0].bytes
        if not self._authorised(peer, frames):
            return
        try:
            header = protocol.unpack_request(frames[1].buffer if len(frames) > 1 else b"")
        except protocol.ProtocolError as exc:
            self._refuse(router, frames, "INVALID_ARG", str(exc), exc.rid)
            return
        payload = frames[2] if len(frames) > 2 else None
        if not self._claim(peer):
            self._send(router, peer, self._reply(header, protocol.DUPLICATE_DEVICE,
                                                 f"device id {protocol.device_of(peer).decode(errors='replace')!r} "
                                                 "is in use by another device"))
            return
        op = header["op"]
        if op == "ping":   # the wall clock: how the device learns the clocks' offset
            self._send(router, peer, self._reply(header, pong=True, clock=time.time()))
        elif op == "probe":
            self._send(router, peer, self._reply(header, received=len(payload) if payload is not None else 0))
        else:
            self._on_work(router, peer, header, payload)

    def _claim(self, peer: bytes) -> bool:
        """One device per device id: the first connection that uses it keeps it while it is heard
        from (its heartbeats); another one (another boot id) is refused until the first has been
        silent for OWNER_SILENCE_S, which is also how a rebooted device takes its id back."""
        device, now = protocol.device_of(peer), time.monotonic()
        owner = self._owners.get(device)
        if owner is None or owner[0] == peer or now - owner[1] > OWNER_SILENCE_S:
            if owner is not None and owner[0] != peer:
                log.info("device id %r now served on a new connection (the old one was silent %.1f s)",
                         device, now - owner[1])
            self._owners[device] = (peer, now)
            if len(self._owners) > MAX_OWNERS:      # forget devices long gone
                for d in [d for d, (_, seen) in self._owners.items() if now - seen > 60.0]:
                    del self._owners[d]
            return True
        self.counters["duplicate_device"] += 1
        if peer not in self._warned_duplicates:
            self._warned_duplicates.add(peer)
            log.warning("two devices use device id %r at once (routing ids %r and %r): keeping the first, refusing "
                        "the second; give each device its own [cloud].device_id", device, owner[0], peer)
        return False

    def _refuse(self, router: zmq.Socket, frames: list, code: str, message: str, rid: list | None = None) -> None:
        """A message refused before it is queued: answered when its rid can be read; otherwise
        the device's own deadline covers it."""
        peer = frames[0].bytes
        self.counters["bad_requests"] += 1
        log.warning("refused a message from %r: %s", peer, message)
        rid = rid if rid is not None else _rid_of(frames[1]) if len(frames) > 1 else None
        if rid is not None:
            self._send(router, peer, self._reply({"rid": rid}, code, message))

    def _on_work(self, router: zmq.Socket, peer: bytes, header: dict, payload: Any) -> None:
        # with the request's digest: a reused rid with another frame is a new request, not a retry
        digest = header.get("digest") if isinstance(header.get("digest"), int) else None
        key = (peer, tuple(header["rid"]), digest)
        with self._lock:
            previous = self._replies.get(key)
            if previous is _PENDING:
                self.counters["absorbed"] += 1
                return
            if previous is not None:
                self.counters["replayed"] += 1
                replay = protocol.unpack_reply(previous[0])
                replay["replayed"] = True
                self._send(router, peer, [protocol.pack(replay), *previous[1:]])
                return
            self._replies[key] = _PENDING
        self.counters["requests"] += 1
        try:
            self._jobs.put_nowait(_Job(peer, key[1:], header, payload, time.monotonic(), time.time()))
        except queue.Full:
            with self._lock:
                self._replies.pop(key, None)
            self.counters["rejected_full"] += 1
            self._send(router, peer, self._reply(header, "RESOURCE_EXHAUSTED", "cloud queue full"))

    # ---- compute threads --------------------------------------------------------
    def _compute_loop(self) -> None:
        push = self._ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        push.connect(self._results_endpoint)
        try:
            while not self._stop.is_set():
                job = self._jobs.get()
                if job is None:
                    return
                with self._lock:
                    self._busy += 1
                try:
                    reply = self._run(job)
                except Exception as exc:  # an engine's own error type for input it rejects, or a bug
                    log.warning("request %s from %r failed: %s: %s", job.rid, job.peer, type(exc).__name__, exc)
                    self.counters["bad_requests"] += 1
                    reply = self._reply(job.header, "INVALID_ARG", f"{type(exc).__name__}: {exc}")
                finally:
                    with self._lock:
                        self._busy -= 1
                with self._lock:
                    self._replies[(job.peer, *job.rid)] = reply
                    self._replies.move_to_end((job.peer, *job.rid))
                    while len(self._replies) > DEDUP_CAPACITY:
                        self._replies.popitem(last=False)
                push.send_multipart([job.peer, *reply])
        finally:
            push.close(0)

    def _run(self, job: _Job) -> list:
        header = job.header
        queued_s = time.monotonic() - job.arrived
        deadline_ms = header.get("deadline_ms")
        if isinstance(deadline_ms, (int, float)) and queued_s * 1000.0 > deadline_ms:
            self.counters["shed_deadline"] += 1  # the device has fallen back already: don't burn the GPU
            return self._reply(header, "DEADLINE_EXCEEDED", "expired in the cloud queue", queue_s=queued_s)
        try:
            if header["op"] == "timing":
                return self._reply(header, timings=self._timings(protocol.Timing.from_header(header)))
            request = protocol.Infer.from_header(header)
            chosen = {}
            if request.target == protocol.MDINFERENCE_TARGET:
                if self._selection is None:
                    raise ValueError(f"bundle {self.bundle.name!r} has no zoo for MDInference to choose from")
                choice = self._selection.choose(request, job.arrived_at, time.time())
                request = replace(request, target=choice.model)
                chosen = {"model": choice.model, "budget_ms": choice.budget_s * 1e3,
                          "network_ms": choice.network_s * 1e3}
            start = time.perf_counter()
            logits = self._infer(request, job.payload)
            compute_s = time.perf_counter() - start
        except (KeyError, ValueError, TypeError) as exc:
            return self._reply(header, "INVALID_ARG", str(exc), queue_s=queued_s)
        except EngineError as exc:  # e.g. Triton rejected or timed out: the device falls back
            return self._reply(header, "UNAVAILABLE", str(exc), queue_s=queued_s)
        self._service_s += SERVICE_EWMA_ALPHA * (compute_s - self._service_s)
        if chosen:
            self._selection.observe(chosen["model"], compute_s)
        return self._reply(header, queue_s=queued_s, compute_s=compute_s, **chosen) + [
            np.ascontiguousarray(logits, np.float32)]

    def _infer(self, request: protocol.Infer, payload: Any) -> np.ndarray:
        target, shape = request.target, request.shape
        if target not in self._engines:
            raise KeyError(f"unknown target {target!r}")
        if payload is None:
            raise ValueError("infer needs a payload")
        engine = self._engines[target]
        expected = _expected_shape(engine, target)
        if expected is not None and (len(shape) != len(expected) or
                                     any(e is not None and d != e for d, e in zip(shape, expected))):
            raise ValueError(f"target {target!r} takes shape {list(expected)}, got {list(shape)}")
        buffer = payload.buffer
        itemsize = np.dtype(request.dtype).itemsize
        if buffer.nbytes != int(np.prod(shape)) * itemsize:
            raise ValueError(f"payload of {buffer.nbytes} bytes does not fit {request.dtype}{list(shape)}")
        data = np.frombuffer(buffer, dtype=request.dtype).reshape(shape)
        if target in self._quantised:
            if request.dtype == "float16":
                data = data.astype(np.float32)
            elif request.scale is None:
                raise ValueError("a split point's tensor needs a finite positive 'scale' and a uint8 'zero_point'")
            else:
                data = dequantize(data, float(request.scale), request.zero_point)
        expected = engine.inputs[0].dtype if getattr(engine, "inputs", None) else None
        if expected is not None and data.dtype != np.dtype(expected):
            raise ValueError(f"target {target!r} takes {expected}, got {data.dtype}")
        return engine.run(data)

    def _timings(self, request: protocol.Timing, budget_s: float | None = TIMING_BUDGET_S) -> dict:
        """Median and std of compute time per target, on synthetic input of the right shape.

        A device's request runs on the compute threads that serve every device's frames, so
        it gets at most budget_s of compute, shared evenly by its targets (each gets at
        least one timed run): a request for 1000 runs cannot hold the cloud for seconds.
        The reply says how many runs each median is from."""
        targets = [t for t in (request.targets or list(self._engines)) if t in self._engines]
        share = None if budget_s is None else budget_s / max(len(targets), 1)
        out = {}
        for target in targets:
            engine = self._engines[target]
            spec = engine.inputs[0]
            shape = (1, *spec.shape[1:])
            x = (np.random.default_rng(0).random(shape) * 255).astype(spec.dtype)
            engine.run(x)                   # untimed: the first run pays for allocations
            samples: list[float] = []
            began = self.clock()
            while len(samples) < request.runs:
                start = self.clock()
                engine.run(x)
                samples.append(self.clock() - start)
                if share is not None and self.clock() - began > share:
                    break
            out[target] = {"median_s": statistics.median(samples), "std_s": statistics.pstdev(samples),
                           "runs": len(samples)}
        return out


def _rid_of(frame: Any) -> list | None:
    """The rid of a header that is otherwise refused, so the refusal can be answered."""
    try:
        return protocol.unpack_request(frame.buffer).get("rid")
    except protocol.ProtocolError as exc:
        return exc.rid


def _expected_shape(engine: Any, target: str) -> tuple | None:
    """The engine's input shape (None for a dimension it leaves free), or None if it has no spec."""
    inputs = getattr(engine, "inputs", None)
    if not inputs:
        return None
    return tuple(d if isinstance(d, int) and d > 0 else None for d in inputs[0].shape)
