"""Choose a backend by availability and configuration."""

from __future__ import annotations

import logging
from pathlib import Path

from adaptinf.engines.base import Engine, EngineError
from adaptinf.engines.onnxruntime_engine import OnnxRuntimeEngine

log = logging.getLogger(__name__)

BACKENDS = ("auto", "tensorrt", "onnxruntime")


def available_backends() -> dict[str, str]:
    """backend -> "" if usable here, else the reason it is not."""
    from adaptinf.engines.tensorrt_engine import tensorrt_available

    ok, why = tensorrt_available()
    from adaptinf.engines import onnxruntime_engine

    return {"onnxruntime": "" if onnxruntime_engine.ort is not None else onnxruntime_engine.ONNXRUNTIME_MISSING,
            "tensorrt": "" if ok else why}


def open_engine(onnx_path: Path | str, backend: str = "auto", plan_cache_dir: Path | str | None = None,
                threads: int = 1) -> Engine:
    """auto: TensorRT FP16 where it is usable, else onnxruntime (logged once per engine)."""
    if backend not in BACKENDS:
        raise EngineError(f"unknown engine backend {backend!r}; choose one of {BACKENDS}")
    if backend in ("auto", "tensorrt"):
        from adaptinf.engines.plan_cache import PlanCache
        from adaptinf.engines.tensorrt_engine import TensorRTEngine, tensorrt_available

        ok, why = tensorrt_available()
        if ok:
            if plan_cache_dir is None:
                raise EngineError("the TensorRT backend needs a plan cache directory")
            return TensorRTEngine(onnx_path, PlanCache(plan_cache_dir))
        if backend == "tensorrt":
            raise EngineError(f"backend 'tensorrt' requested but unavailable: {why}")
        log.debug("TensorRT unavailable (%s); using onnxruntime for %s", why, onnx_path)
    return OnnxRuntimeEngine(onnx_path, threads=threads)
