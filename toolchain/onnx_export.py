"""Export torch modules to ONNX with a dynamic batch dimension."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch

OPSET = 17


def export_onnx(module: torch.nn.Module, example: torch.Tensor, path: Path,
                input_name: str, output_name: str) -> None:
    module.eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of dynamo, which needs
        # onnxscript and emits larger graphs; this one makes small, stable files.
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), buffer, input_names=[input_name], output_names=[output_name],
                          dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
                          opset_version=OPSET, dynamo=False)
    Path(path).write_bytes(buffer.getvalue())
