"""Engines: run one ONNX graph on one backend (onnxruntime CPU, TensorRT FP16)."""

from adaptinf.engines.base import Engine, EngineError, TensorSpec
from adaptinf.engines.factory import available_backends, open_engine

__all__ = ["Engine", "EngineError", "TensorSpec", "available_backends", "open_engine"]
