"""ONNX Runtime CPU engine: always available, the fallback everywhere."""

from __future__ import annotations

from pathlib import Path

import numpy as np

try:
    import onnxruntime as ort
except ModuleNotFoundError:     # an aarch64 install without JetPack's build or the extra
    ort = None

from adaptinf.bundle import ONNX_TYPE_TO_DTYPE as _ORT_TYPES
from adaptinf.engines.base import EngineError, TensorSpec
from adaptinf.packed_floats import PackedWeightsError, add_to_session_options


# pyproject.toml installs the CPU wheel by itself only on x86_64: on aarch64 it would go
# beside (or over) a Jetson's onnxruntime-gpu, which pip cannot tell provides the same module
ONNXRUNTIME_MISSING = ("onnxruntime is not installed. On a Jetson, use JetPack's onnxruntime-gpu from a "
                       "--system-site-packages virtualenv (docs/deployment.md, 'Jetson Python'); elsewhere: "
                       "pip install 'adaptinf[onnxruntime]'")


def _spec(arg) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else None for d in arg.shape)
    return TensorSpec(arg.name, _ORT_TYPES.get(arg.type, arg.type), shape)


class OnnxRuntimeEngine:
    backend = "onnxruntime"

    def __init__(self, model_path: Path | str, threads: int = 1):
        if ort is None:
            raise EngineError(ONNXRUNTIME_MISSING)
        options = ort.SessionOptions()
        # One thread per engine: the daemon runs engines from several threads and a
        # Jetson-class CPU has few cores; oversubscription costs more than it gives.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            weights = add_to_session_options(options, model_path)      # SIEVE's custom-float weights, expanded
        except PackedWeightsError as exc:
            raise EngineError(f"cannot load the packed weights of {model_path}: {exc}") from None
        try:
            self._session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise EngineError(f"onnxruntime could not load {model_path}: {exc}") from exc
        del weights                     # the session holds its own copy now
        self.inputs = tuple(_spec(a) for a in self._session.get_inputs())
        self.outputs = tuple(_spec(a) for a in self._session.get_outputs())
        self._input_name = self.inputs[0].name
        self._output_name = self.outputs[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        return self._session.run([self._output_name], {self._input_name: x})[0]
