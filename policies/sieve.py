"""SIEVE's CNN selector (thesis ch.4.3.2) over a Dynamic Duo bundle's models.

The speculative CNN is the bundle's little model, on the device. The original CNN is its
full model, in the cloud. The misspeculation detector is either the duo's per-class probe
("probe") or the thesis's own (section 4.3.1, "threshold"): one confidence threshold, from
the speculative CNN's validation confidence distributions of correct, correctable (wrong,
but the original CNN is right) and uncorrectable (both wrong) outputs: the lowest
threshold whose recomputations bring the output quality to the target, which is the one
with the fewest recomputations. `[policy].sieve_detector` chooses.
- Selector: with L_t (E_t) the cost of sending the frame to the original CNN, and L_m
  (E_m) that of the speculative CNN on the device, SIEVE speculates when
  L_m + L_t × P_r < L_t, and otherwise sends the frame straight to the cloud.
- Server load: a cloud answering far slower than its profile means a loaded server.
  SIEVE then turns the detector off, so there are no recoveries and the frame stays on
  the device, until the load falls.
- Speculation history, for temporally close frames of one client (one camera stream):
  - rule 1: if the previous frame was recovered and the original CNN agreed with the
    speculative one, the next frame runs on the device without detection;
  - rule 2: if the original CNN disagreed, the next frame bypasses the speculative CNN
    and goes straight to the server.
- Modes: mission-critical sends everything to the original CNN; private keeps
  everything on the device, recovering with the full model there; power-saving uses
  the relaxed probe and plans for energy.

- CNN selector over several speculative CNNs (4.5: SIEVE keeps exact, accurate and
  approximate CNNs "for different wireless connection speeds"): given the other littles
  of the bundle's section, each with its own probe and P_r, the frame speculates with
  the one whose L_m + L_t × P_r (E likewise) is lowest under the live link.
The speculative CNNs themselves, custom-float ones included, come from `adaptinf build
little` (toolchain/little_models.py).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

import numpy as np

from adaptinf.policies.dynamic_duo import DIRECT_TO_CLOUD, NORMAL, TRUST_LITTLE, speculate
from adaptinf.policies.fixed import fixed
from adaptinf.policies.modes import POWER_SAVING_LOSS
from adaptinf.policies.plan import Plan
from adaptinf.profile import CLOUD_ONLY

DETECTORS = ("probe", "threshold")
HISTORY_WINDOW_S = 0.1       # "temporal distance below a predetermined threshold": 3 frames at 30 fps
OVERLOAD_SLOWDOWN = 3.0      # cloud service this many times its profile: a loaded server


def distribution_threshold(confidence: dict, target_accuracy: float) -> tuple[float, float]:
    """Thesis 4.3.1's misspeculation detector from the validation histograms (`bins` edges;
    `correct`, `correctable`, `uncorrectable` counts per bin): (threshold, recovery rate).

    Recomputing every frame below threshold t makes its correctable errors right:
    quality(t) = (correct + correctable below t) / all, rising with t. The detector is the
    lowest bin edge where quality(t) reaches the target (the fewest recomputations that
    meet it); the top edge when none does. A correct speculative output that is recomputed
    is counted as staying correct (the histograms do not say whether the original CNN
    agrees there)."""
    try:
        bins = np.asarray(confidence["bins"], np.float64)
        correct, correctable, uncorrectable = (np.asarray(confidence[k], np.float64)
                                               for k in ("correct", "correctable", "uncorrectable"))
    except (KeyError, TypeError, ValueError):
        raise ValueError("no confidence histograms (bins, correct, correctable, uncorrectable) for the "
                         "speculative CNN: rebuild the section with `adaptinf build duo`") from None
    total = correct.sum() + correctable.sum() + uncorrectable.sum()
    if total <= 0:
        raise ValueError("the confidence histograms are empty")
    below_correctable = np.concatenate([[0.0], np.cumsum(correctable)])          # below bins[k]
    below_all = np.concatenate([[0.0], np.cumsum(correct + correctable + uncorrectable)])
    quality = (correct.sum() + below_correctable) / total
    meets = np.nonzero(quality >= target_accuracy - 1e-12)[0]
    k = int(meets[0]) if meets.size else len(bins) - 1
    return float(bins[k]), float(below_all[k] / total)


def threshold_detector(spec, confidence: dict, target_accuracy: float, classes: int):
    """A SpeculativeModel (core/bundle.py) with the thesis's one threshold for every class,
    in normal and power-saving mode, and the recovery rates it gives on validation."""
    normal, p_r = distribution_threshold(confidence, target_accuracy)
    relaxed, p_r_relaxed = distribution_threshold(confidence, target_accuracy - POWER_SAVING_LOSS)
    return replace(spec, thresholds=(normal,) * classes, power_saving_thresholds=(relaxed,) * classes,
                   recovery_rate=p_r, power_saving_recovery_rate=p_r_relaxed)


@dataclass(frozen=True)
class _Last:
    at: float
    advice: str


class SpeculationHistory:
    """Per client: what the last recovered frame says about the next close one."""

    def __init__(self, window_s: float = HISTORY_WINDOW_S):
        self.window_s = window_s
        self._last: dict[bytes, _Last] = {}
        self._lock = threading.Lock()      # workers run frames of one client concurrently

    def advice(self, client: bytes, now: float) -> str:
        with self._lock:
            last = self._last.get(client)
        return last.advice if last is not None and 0 <= now - last.at <= self.window_s else NORMAL

    def record(self, client: bytes, now: float, recovered: bool, agreed: bool = True) -> None:
        """After a speculated frame: recovered by the original CNN (which agreed or not), or not."""
        advice = NORMAL if not recovered else (TRUST_LITTLE if agreed else DIRECT_TO_CLOUD)
        with self._lock:
            self._last[client] = _Last(now, advice)


class SievePolicy:
    """Candidates: "speculate" (name "cloud": recover in the cloud; "device": private, on the
    device; "detector-off": server loaded) or the full model alone ("cloud" / "device")."""

    name = "sieve"

    def __init__(self, duo_policy, history: SpeculationHistory | None = None, alternatives: dict | None = None,
                 detectors: dict | None = None):
        self.duo = duo_policy          # DynamicDuoPolicy: the same models and costs, P_r of this detector
        self.history = history or SpeculationHistory()
        self.alternatives = alternatives or {}   # other speculative CNNs' DynamicDuoPolicy, by model name
        self.detectors = detectors or {}         # little -> SpeculativeModel of the thesis's detector; empty: the probes

    def plan(self, frame, telemetry, profile, explain: bool = False):
        duo_plan = self.duo.plan(frame, telemetry, profile)
        if frame.mode == "mission-critical" or not any(c.name == "cloud" for c in duo_plan.candidates):
            return replace(duo_plan, policy=self.name)        # the full model alone, or private / no cloud
        speculate = next(c for c in duo_plan.candidates if c.name == "cloud")
        if telemetry.cloud_slowdown > OVERLOAD_SLOWDOWN:
            off = replace(speculate, name="detector-off", latency_s=speculate.device_s, cloud_s=0.0,
                          upload_s=0.0, network_s=0.0)
            return Plan(off, duo_plan.goal, frame.mode, self.name, (off,))
        key = (lambda c: c.energy_j) if duo_plan.goal == "energy" else (lambda c: c.latency_s)
        for name, policy in self.alternatives.items():       # the cheapest speculative CNN on this link
            alternative = next(c for c in policy.plan(frame, telemetry, profile).candidates if c.name == "cloud")
            if key(alternative) < key(speculate):
                speculate = replace(alternative, model=name)
        original = fixed(CLOUD_ONLY).plan(frame, telemetry, profile).chosen   # L_t, E_t
        chosen = min((speculate, original), key=key)
        return Plan(chosen, duo_plan.goal, frame.mode, self.name, (speculate, original))

    def execute(self, job, plan, steps):
        """Dynamic Duo's speculation, with this policy's speculation history and detector."""
        return speculate(job, plan, steps, history=self.history, detectors=self.detectors)
