"""TensorRT FP16 engine (TensorRT 10 Python API + pycuda), for Jetson and GPU hosts.

Build and run are separate: `build_plan` parses ONNX and serialises a plan (FP16
where the GPU has fast FP16, FP32 otherwise, as the chosen precision says);
`TensorRTEngine` loads a plan from the PlanCache or builds and caches it, allocates
its host/device buffers once per batch size, and runs with execute_async_v3.
Every CUDA call goes through `_cuda`, which raises EngineError with the error's name.

This needs `tensorrt` and `pycuda` and an NVIDIA GPU; where they are missing,
`tensorrt_available()` says why and the engine factory falls back to onnxruntime.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np

from adaptinf.engines.base import EngineError, TensorSpec
from adaptinf.engines.plan_cache import PlanCache, PlanKey, onnx_sha256
from adaptinf.packed_floats import PackedWeightsError, expanded_bytes, expanded_location, load_packed

WORKSPACE_BYTES = 1 << 30
MAX_BATCH = 8


def tensorrt_available() -> tuple[bool, str]:
    """(True, "") where TensorRT and a CUDA GPU are usable, else (False, the reason)."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False, "the tensorrt Python package is not installed"
    try:
        import pycuda.driver as cuda
    except ImportError:
        return False, "pycuda is not installed"
    try:
        cuda.init()
        if cuda.Device.count() == 0:
            return False, "no CUDA device"
    except Exception as exc:  # pycuda raises cuda.Error subclasses
        return False, f"CUDA is not usable: {exc}"
    return True, ""


def _cuda(what: str, fn: Callable[..., Any], *args: Any) -> Any:
    import pycuda.driver as cuda

    try:
        return fn(*args)
    except cuda.Error as exc:
        raise EngineError(f"CUDA call {what} failed: {type(exc).__name__}: {exc}") from exc


def build_plan(onnx_path: Path, fp16: bool, max_batch: int = MAX_BATCH) -> bytes:
    """Parse ONNX and build a serialised plan with an optimisation profile for batch 1..max_batch."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    with tempfile.TemporaryDirectory(prefix="adaptinf-weights-") as scratch:
        # a graph with packed custom-float weights: the parser reads them, expanded, from a
        # scratch copy of the external-data file its initializers point to
        where = str(onnx_path)
        try:
            packed = load_packed(onnx_path)
        except PackedWeightsError as exc:
            raise EngineError(f"cannot load the packed weights of {onnx_path}: {exc}") from None
        if packed:
            (Path(scratch) / expanded_location(onnx_path)).write_bytes(expanded_bytes(packed))
            where = str(Path(scratch) / Path(onnx_path).name)
        if not parser.parse(Path(onnx_path).read_bytes(), where):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise EngineError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        sample = tuple(tensor.shape)[1:]
        profile.set_shape(tensor.name, (1, *sample), (1, *sample), (max_batch, *sample))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineError(f"TensorRT failed to build an engine for {onnx_path} (see the log above)")
    return bytes(plan)


def plan_key(onnx_path: Path, precision: str, device_index: int = 0) -> PlanKey:
    import pycuda.driver as cuda
    import tensorrt as trt

    device = _cuda("Device", cuda.Device, device_index)
    major, minor = device.compute_capability()
    return PlanKey(onnx_sha256(onnx_path), trt.__version__, device.name(), f"{major}{minor}", precision)


class TensorRTEngine:
    backend = "tensorrt"

    def __init__(self, onnx_path: Path | str, cache: PlanCache, precision: str = "fp16", device_index: int = 0):
        ok, why = tensorrt_available()
        if not ok:
            raise EngineError(f"TensorRT engine unavailable: {why}")
        import pycuda.driver as cuda
        import tensorrt as trt

        self._trt = trt
        self._ctx = _cuda("retain_primary_context", cuda.Device(device_index).retain_primary_context)
        self._lock = threading.Lock()  # one execution context: one frame at a time
        with self._pushed():
            builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
            if precision == "fp16" and not builder.platform_has_fast_fp16:
                precision = "fp32"  # stated fallback: the GPU has no fast FP16 path
            self.precision = precision
            key = plan_key(Path(onnx_path), precision, device_index)
            plan = cache.load(key)
            if plan is None:
                plan = build_plan(Path(onnx_path), fp16=precision == "fp16")
                cache.store(key, plan)
            self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
            self._engine = self._runtime.deserialize_cuda_engine(plan)
            if self._engine is None:
                raise EngineError(f"TensorRT could not deserialise the plan for {onnx_path}")
            self._context = self._engine.create_execution_context()
            self._stream = _cuda("Stream", cuda.Stream)
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        specs = {n: TensorSpec(n, np.dtype(trt.nptype(self._engine.get_tensor_dtype(n))).name,
                               tuple(d if d >= 0 else None for d in self._engine.get_tensor_shape(n)))
                 for n in names}
        self.inputs = tuple(specs[n] for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.outputs = tuple(specs[n] for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        self._buffers: dict[int, dict[str, tuple[np.ndarray, Any]]] = {}

    def _pushed(self):
        ctx = self._ctx

        class _Push:
            def __enter__(self):
                _cuda("Context.push", ctx.push)

            def __exit__(self, *exc):
                import pycuda.driver as cuda

                _cuda("Context.pop", cuda.Context.pop)

        return _Push()

    def _buffers_for(self, batch: int) -> dict[str, tuple[np.ndarray, Any]]:
        """Page-locked host and device buffers per tensor, allocated once per batch size."""
        import pycuda.driver as cuda

        if batch not in self._buffers:
            buffers = {}
            for spec in self.inputs + self.outputs:
                if spec in self.inputs:
                    self._context.set_input_shape(spec.name, (batch, *spec.shape[1:]))
                shape = tuple(self._context.get_tensor_shape(spec.name))
                host = _cuda("pagelocked_empty", cuda.pagelocked_empty, shape, np.dtype(spec.dtype))
                device = _cuda("mem_alloc", cuda.mem_alloc, host.nbytes)
                buffers[spec.name] = (host, device)
            self._buffers[batch] = buffers
        return self._buffers[batch]

    def run(self, x: np.ndarray) -> np.ndarray:
        import pycuda.driver as cuda

        if x.shape[0] > MAX_BATCH:
            raise EngineError(f"batch {x.shape[0]} exceeds the plan's maximum {MAX_BATCH}")
        with self._lock, self._pushed():
            buffers = self._buffers_for(x.shape[0])
            in_spec, out_spec = self.inputs[0], self.outputs[0]
            self._context.set_input_shape(in_spec.name, x.shape)
            for name, (_, device) in buffers.items():
                self._context.set_tensor_address(name, int(device))
            host_in, dev_in = buffers[in_spec.name]
            np.copyto(host_in, x.astype(host_in.dtype, copy=False))
            _cuda("memcpy_htod_async", cuda.memcpy_htod_async, dev_in, host_in, self._stream)
            if not self._context.execute_async_v3(stream_handle=self._stream.handle):
                raise EngineError("TensorRT execute_async_v3 failed")
            host_out, dev_out = buffers[out_spec.name]
            _cuda("memcpy_dtoh_async", cuda.memcpy_dtoh_async, host_out, dev_out, self._stream)
            _cuda("Stream.synchronize", self._stream.synchronize)
            return host_out.copy()
