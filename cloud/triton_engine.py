"""An engine that runs on a Triton Inference Server (the cloud worker's gateway mode).

`adaptinf-cloud --triton HOST:8001` keeps the worker's own duties (CURVE, de-duplication,
reply cache, load reports) and forwards each inference to the model Triton serves for
that target (cloud/triton_repository.py names them), over gRPC with tritonclient. This
needs the `tritonclient[grpc]` package and a running Triton; neither is available on
this project's test machines, so its test runs only where both are (see tests).
"""

from __future__ import annotations

import numpy as np

from adaptinf.engines.base import EngineError, TensorSpec

TRITON_DATATYPES = {"uint8": "UINT8", "int8": "INT8", "float16": "FP16", "float32": "FP32"}


class TritonEngine:
    backend = "triton"

    def __init__(self, url: str, model: str, input_name: str, input_dtype: str, sample_dims: list[int],
                 output_name: str, output_dims: list[int], client_timeout_s: float = 2.0, priority: int = 0):
        import tritonclient.grpc as grpcclient  # the 'triton' extra; adaptinf-cloud names it when missing
        self._grpc = grpcclient
        self._client = grpcclient.InferenceServerClient(url=url)
        try:
            ready = self._client.is_model_ready(model)
        except Exception as exc:  # InferenceServerException: unreachable, TLS, ...
            raise EngineError(f"cannot reach Triton at {url}: {exc}") from exc
        if not ready:
            raise EngineError(f"Triton at {url} does not serve a ready model {model!r}")
        self.model = model
        self.inputs = (TensorSpec(input_name, input_dtype, (None, *sample_dims)),)
        self.outputs = (TensorSpec(output_name, "float32", (None, *output_dims)),)
        self._timeout_s = client_timeout_s
        self._priority = priority

    def run(self, x: np.ndarray) -> np.ndarray:
        spec = self.inputs[0]
        tensor = self._grpc.InferInput(spec.name, list(x.shape), TRITON_DATATYPES[spec.dtype])
        tensor.set_data_from_numpy(np.ascontiguousarray(x, dtype=spec.dtype))
        try:
            result = self._client.infer(self.model, [tensor], outputs=[self._grpc.InferRequestedOutput(self.outputs[0].name)],
                                        priority=self._priority, timeout=int(self._timeout_s * 1e6),
                                        client_timeout=self._timeout_s)
        except Exception as exc:  # tritonclient raises InferenceServerException
            raise EngineError(f"Triton {self.model}: {exc}") from exc
        return result.as_numpy(self.outputs[0].name)
