"""Accuracy of exported graphs through ONNX Runtime, exactly as the daemon runs them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from adaptinf.upload_quant import dequantize, quantize


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def split_logits_onnx(head: Path, tail: Path, images: np.ndarray, quantized: bool = True,
                      batch_size: int = 256) -> np.ndarray:
    """Head on the frames, per-frame uint8 upload quantisation, tail on what arrives."""
    head_s, tail_s = _session(head), _session(tail)
    out = []
    for start in range(0, len(images), batch_size):
        reduced = head_s.run(None, {"image": images[start:start + batch_size]})[0]
        if quantized:
            reduced = np.stack([dequantize(*quantize(r[None]))[0] for r in reduced])
        out.append(tail_s.run(None, {"reduced": reduced})[0])
    return np.concatenate(out)


def split_accuracy_onnx(head: Path, tail: Path, images: np.ndarray, labels: np.ndarray) -> float:
    return float((split_logits_onnx(head, tail, images).argmax(1) == labels).mean())


def model_logits_onnx(model: Path, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    session = _session(model)
    return np.concatenate([session.run(None, {"image": images[i:i + batch_size]})[0]
                           for i in range(0, len(images), batch_size)])


def model_accuracy_onnx(model: Path, images: np.ndarray, labels: np.ndarray, batch_size: int = 256) -> float:
    return float((model_logits_onnx(model, images, batch_size).argmax(1) == labels).mean())
