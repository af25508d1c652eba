"""Latency (or energy) of a graph from its layer features: non-negative least squares.

time = sum_k coef_k x feature_k + intercept, every coefficient >= 0 (a layer never takes
negative time). Its accuracy is stated by leave-one-out: each measured graph predicted
from a fit to all the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls

from adaptinf.calib.layer_features import FEATURES


@dataclass(frozen=True)
class LayerRegression:
    coefficients: dict[str, float]   # ms per unit of each feature
    intercept_ms: float
    loo_mean_abs_error: float        # leave-one-out, relative: mean |predicted - measured| / measured
    loo_max_abs_error: float

    def predict_ms(self, features: dict[str, float]) -> float:
        return self.intercept_ms + sum(self.coefficients[k] * features[k] for k in FEATURES)

    def to_json(self) -> dict:
        return {"features": list(FEATURES), "coefficients_ms": self.coefficients, "intercept_ms": self.intercept_ms,
                "loo_mean_relative_error": self.loo_mean_abs_error,
                "loo_max_relative_error": self.loo_max_abs_error}


def _fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    design = np.hstack([x, np.ones((len(x), 1))])
    scale = np.maximum(design.max(axis=0), 1e-12)  # columns of very different magnitude: normalise
    weights, _ = nnls(design / scale, y)
    return weights / scale


def fit(samples: list[tuple[dict[str, float], float]]) -> LayerRegression:
    """samples: (graph features, measured ms)."""
    if len(samples) < 3:
        raise ValueError("need at least three measured graphs to fit the layer regression")
    x = np.array([[f[k] for k in FEATURES] for f, _ in samples])
    y = np.array([ms for _, ms in samples])
    errors = []
    for i in range(len(samples)):
        keep = np.arange(len(samples)) != i
        w = _fit(x[keep], y[keep])
        predicted = float(np.dot(np.append(x[i], 1.0), w))
        errors.append(abs(predicted - y[i]) / max(y[i], 1e-9))
    w = _fit(x, y)
    return LayerRegression(dict(zip(FEATURES, map(float, w[:-1]))), float(w[-1]), float(np.mean(errors)),
                           float(np.max(errors)))
