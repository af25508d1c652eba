"""Latency or energy of a graph from its layer features: non-negative least squares.

value = sum_k coef_k x feature_k + intercept, every coefficient >= 0 (a layer never takes
negative time or energy). Calibration fits one for device time (ms) and one for device
energy (mJ per inference, from the sensor where there is one). Its accuracy is stated by
leave-one-out: each measured graph predicted from a fit to all the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls

from adaptinf.calib.layer_features import FEATURES


@dataclass(frozen=True)
class LayerRegression:
    unit: str                        # "ms" or "mJ"
    coefficients: dict[str, float]   # `unit` per unit of each feature
    intercept: float
    loo_mean_abs_error: float        # leave-one-out, relative: mean |predicted - measured| / measured
    loo_max_abs_error: float

    def predict(self, features: dict[str, float]) -> float:
        return self.intercept + sum(self.coefficients[k] * features[k] for k in FEATURES)

    def to_json(self) -> dict:
        return {"unit": self.unit, "features": list(FEATURES), "coefficients": self.coefficients,
                "intercept": self.intercept, "loo_mean_relative_error": self.loo_mean_abs_error,
                "loo_max_relative_error": self.loo_max_abs_error}

    @classmethod
    def from_json(cls, raw: dict) -> "LayerRegression":
        return cls(raw["unit"], dict(raw["coefficients"]), float(raw["intercept"]),
                   float(raw["loo_mean_relative_error"]), float(raw["loo_max_relative_error"]))


def _fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    design = np.hstack([x, np.ones((len(x), 1))])
    scale = np.maximum(design.max(axis=0), 1e-12)  # columns of very different magnitude: normalise
    weights, _ = nnls(design / scale, y)
    return weights / scale


def fit(samples: list[tuple[dict[str, float], float]], unit: str = "ms") -> LayerRegression:
    """samples: (graph features, measured value in `unit`)."""
    if len(samples) < 3:
        raise ValueError("need at least three measured graphs to fit the layer regression")
    x = np.array([[f[k] for k in FEATURES] for f, _ in samples])
    y = np.array([value for _, value in samples])
    errors = []
    for i in range(len(samples)):
        keep = np.arange(len(samples)) != i
        w = _fit(x[keep], y[keep])
        predicted = float(np.dot(np.append(x[i], 1.0), w))
        errors.append(abs(predicted - y[i]) / max(y[i], 1e-9))
    w = _fit(x, y)
    return LayerRegression(unit, dict(zip(FEATURES, map(float, w[:-1]))), float(w[-1]), float(np.mean(errors)),
                           float(np.max(errors)))
