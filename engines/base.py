"""The engine interface: one graph, named inputs and outputs, `run`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


class EngineError(RuntimeError):
    """An engine could not be built, loaded or run; the message says which and why."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str                       # numpy dtype name
    shape: tuple[int | None, ...]    # None for a dynamic dimension (batch)


class Engine(Protocol):
    backend: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def run(self, x: np.ndarray) -> np.ndarray:
        """One input tensor in, the first output out (all adaptinf graphs are single-input)."""
        ...


def run_batched(engine: Engine, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The engine over many inputs (an evaluation split), `batch_size` at a time."""
    return np.concatenate([engine.run(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
