"""The neural multiplexer at run time (papers 000/001): Algorithm 2 and the cost equations 9-14.

The multiplexer (toolchain/multiplexer.py) maps a frame to weights w over the N models of
a pool, w_i the likelihood that model i gets the frame right, scaled by its cost.
- Algorithm 2: S = argmax(w), or S = {i : w_i > T} (the threshold ensemble; the argmax when
  nothing passes); the answer is the mean of the selected models' class probabilities.
  Also the abstract's rule: the cheapest model with w_i > T (select_cheapest), and eq. 5's
  cost as a price on w (select_by_utility).
- Device/cloud (paper 001): two models, the small one on the device and the large one in
  the cloud; w_cloud > 0.5 sends the frame to the cloud.
- Costs (eq. 9-14) for a cost C that is latency or energy:
  mobile-only C_m; cloud-only C_up + C_cloud + C_down; hybrid, per frame, C_mux plus the
  chosen side; over a stream, the shares of each side; in the cloud, sum of called_i x C_i.
Pure numpy: the daemon, the toolchain's evaluation and the benchmark share it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adaptinf.policies import modes
from adaptinf.policies.execution import run_partition
from adaptinf.policies.fixed import fixed
from adaptinf.policies.plan import Candidate, Plan
from adaptinf.policies.radio_power import uplink_power_w
from adaptinf.profile import CLOUD_ONLY, MOBILE_ONLY

DEVICE_CLOUD_THRESHOLD = 0.5     # paper 001's; a bundle may carry one calibrated on validation


def select(w: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Algorithm 2, line 3, for a batch: a boolean (B, N) mask of the models to run."""
    w = np.atleast_2d(w)
    argmax = np.zeros_like(w, dtype=bool)
    argmax[np.arange(len(w)), w.argmax(1)] = True
    if threshold is None:
        return argmax
    above = w > threshold
    return np.where(above.any(1, keepdims=True), above, argmax)


def select_cheapest(w: np.ndarray, threshold: float) -> np.ndarray:
    """The abstract's rule ("the model that will consume the minimum compute resources for a
    successful inference"): the first model, in pool order (cheapest first), whose w_i > T;
    the argmax when none passes. Meant for w_i = P(model i is right) (objective "correctness")."""
    w = np.atleast_2d(w)
    above = w > threshold
    first = np.where(above.any(1), above.argmax(1), w.argmax(1))
    mask = np.zeros_like(w, dtype=bool)
    mask[np.arange(len(w)), first] = True
    return mask


def select_by_utility(w: np.ndarray, costs: np.ndarray, cost_weight: float) -> np.ndarray:
    """Eq. 5's cost term as a price: the model with the most w_i - cost_weight * c_i, with c_i its
    cost relative to the pool's largest (so cost_weight is accuracy given up per largest-model
    cost). Meant for w_i = P(model i is right): the expected accuracy bought, less what it
    costs. cost_weight 0 is the argmax of w; sweeping it traces the accuracy/cost curve. Eq. 5
    as printed divides the score by c_i instead, which shrinks an expensive model's score
    towards 0 whatever it says, and erases the large models of a wide pool."""
    w = np.atleast_2d(w)
    relative = np.asarray(costs, np.float64) / np.max(costs)
    mask = np.zeros_like(w, dtype=bool)
    mask[np.arange(len(w)), (w - cost_weight * relative).argmax(1)] = True
    return mask


def combine(probabilities: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Algorithm 2, line 4: the mean of the selected models' class probabilities.
    probabilities: (N, B, C); mask: (B, N) -> (B, C)."""
    weights = mask.T[..., None].astype(np.float64)                      # (N, B, 1)
    return (probabilities * weights).sum(0) / weights.sum(0)


def to_cloud(w: np.ndarray, threshold: float = DEVICE_CLOUD_THRESHOLD) -> np.ndarray:
    """The device/cloud case: w = [w_device, w_cloud]; True where the cloud is called."""
    return np.atleast_2d(w)[:, 1] > threshold


def calibrate_pair_threshold(w_cloud: np.ndarray, device_right: np.ndarray, cloud_right: np.ndarray,
                             accuracy_loss: float) -> float:
    """The threshold on w_cloud that keeps the most frames on the device while the pair's
    accuracy stays within `accuracy_loss` of cloud-only (on the frames given: validation).
    Candidates are the observed w_cloud values, so the answer moves with the multiplexer's
    actual range rather than assuming it straddles 0.5."""
    target = cloud_right.mean() - accuracy_loss
    best = -np.inf                                   # below every w: everything to the cloud
    for t in np.unique(np.quantile(w_cloud, np.linspace(0, 1, 201))):
        local = w_cloud <= t
        if np.where(local, device_right, cloud_right).mean() >= target:
            best = max(best, float(t))
    return best if np.isfinite(best) else float(np.nextafter(w_cloud.min(), -np.inf))


@dataclass(frozen=True)
class SideCost:
    """One side's cost of a frame (latency in s, or device energy in J)."""

    mux: float = 0.0          # C_mobile-mux
    mobile: float = 0.0       # C_mobile-compute-inference
    upload: float = 0.0       # C_upload
    cloud: float = 0.0        # C_cloud-compute
    download: float = 0.0     # C_download

    def mobile_only(self) -> float:                       # eq. 9
        return self.mobile

    def cloud_only(self) -> float:                        # eq. 10
        return self.upload + self.cloud + self.download

    def hybrid_local(self) -> float:                      # eq. 11
        return self.mux + self.mobile

    def hybrid_cloud(self) -> float:                      # eq. 12
        return self.mux + self.upload + self.cloud + self.download

    def hybrid(self, local_share: float) -> float:        # eq. 13
        return local_share * self.hybrid_local() + (1 - local_share) * self.hybrid_cloud()


def cloud_pool_cost(called_share: np.ndarray, model_costs: np.ndarray) -> float:
    """Eq. 14: sum_i called_i x C_i (a frame that calls several models pays for each)."""
    return float(np.dot(called_share, model_costs))


class MultiplexerPolicy:
    """Paper 001's device/cloud multiplexer in adaptinfd (Candidate kind "multiplex").

    The decision needs the frame, so the plan carries both sides and the executor picks per
    frame: the multiplexer runs on the device, w_cloud > 0.5 sends the frame to the cloud's
    model (the bundle's full model), else the device runs the pair's small model. Both
    candidates carry their predicted cost, eq. 11 (device side) and eq. 12 (cloud side):
    the device's times are the profiled full model's scaled by FLOPs (the profile measures
    only the full model), the cloud's are the cloud-only partition's. In private mode, or
    with the cloud down, only the device side is possible; mission-critical runs the full
    model for every frame, in the cloud when it is up.
    """

    name = "multiplexer"

    def __init__(self, frame_bytes: int, full_flops: int, device_flops: int, multiplexer_flops: int,
                 device_accuracy: float | None = None):
        self.frame_bytes = frame_bytes
        self.device_accuracy = device_accuracy
        self.device_share = device_flops / full_flops
        self.multiplexer_share = multiplexer_flops / full_flops

    def costs(self, telemetry, profile) -> tuple[SideCost, float]:
        """Latency terms of eq. 9-12 (s), and the device's power (W) for the energy ones; without
        a measured cloud (none configured) the cloud terms are infinite."""
        mobile = profile.partition(MOBILE_ONLY)
        full_s = telemetry.compute_s(mobile.device_s)
        upload_s, cloud_s = float("inf"), float("inf")
        if profile.has(CLOUD_ONLY):
            cloud = profile.partition(CLOUD_ONLY)
            upload_s = self.frame_bytes * 8.0 / telemetry.uplink_bps
            cloud_s = telemetry.cloud_s(cloud.cloud_s)
        side = SideCost(mux=full_s * self.multiplexer_share, mobile=full_s * self.device_share,
                        upload=upload_s, cloud=cloud_s, download=telemetry.rtt_s)
        return side, telemetry.device_power_w or mobile.device_power_w

    def plan(self, frame, telemetry, profile, explain: bool = False):
        c, power_w = self.costs(telemetry, profile)
        radio_j = c.upload * uplink_power_w(telemetry.radio, telemetry.uplink_bps)
        local = Candidate("device", "multiplex", c.hybrid_local(), 0.0, 0.0, 0.0, c.hybrid_local(),
                          c.hybrid_local() * power_w, self.device_accuracy)
        cloud_ok = modes.cloud_allowed(frame, telemetry, profile)
        if modes.most_accurate_only(frame):
            # the most accurate model for every frame (thesis 4.3.2): the full one, in the cloud if it can
            from dataclasses import replace

            full = fixed(CLOUD_ONLY if cloud_ok else MOBILE_ONLY).plan(frame, telemetry, profile)
            return replace(full, policy=self.name)
        if not cloud_ok:
            return Plan(local, frame.goal, frame.mode, self.name, (local,))
        remote = Candidate("cloud", "multiplex", c.mux, c.upload, c.download, c.cloud, c.hybrid_cloud(),
                           c.mux * power_w + radio_j, profile.partition(CLOUD_ONLY).accuracy)
        return Plan(remote, frame.goal, frame.mode, self.name, (remote, local))

    def execute(self, job, plan, steps):
        """Paper 001 (Algorithm 2, two models): the multiplexer runs on the device and w_cloud > 0.5
        sends the frame to the cloud's model, else the device runs the pair's small model. The
        cloud side falls back to the small model like any cloud step. served_by gets w, the side
        and both sides' predicted cost (eq. 11, eq. 12)."""
        if plan.chosen.kind != "multiplex":
            return run_partition(plan, steps)
        pair, served = steps.models.pair, steps.served
        w = np.asarray(steps.on_device(pair.multiplexer, "mux"), dtype=np.float64).reshape(-1)
        wants_cloud = bool(to_cloud(w, steps.bundle.multiplexer.pair.threshold)[0])
        sides = {c.name: c for c in plan.candidates}
        served.w, served.wants = [round(float(v), 4) for v in w], "cloud" if wants_cloud else "device"
        served.predicted_side_s = {name: c.latency_s for name, c in sides.items()}
        if wants_cloud and plan.chosen.name == "cloud":
            answer = steps.full_in_cloud(pair.device)
            served.answered_by = "device" if served.fallback else "cloud"
            return answer
        if wants_cloud:
            served.device_reason = "private mode" if plan.mode == "private" else "cloud down"
        served.answered_by = "device"
        # not profiled, only FLOPs-scaled: no evidence for the device slowdown estimate
        return steps.on_device(pair.device, "device"), 0
