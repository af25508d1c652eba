"""The one registry of adaptinfd's policies: which exist, and how each is built for a bundle.

The daemon builds its policies here at start-up, its config accepts exactly these names,
and reload checks a new [policy] name against what was built. A policy whose bundle
section is missing (no multiplexer, no dynamic_duo, no mmnet) is simply not built:
asking for it is then NOT_FOUND, and naming it in the config is a start-up error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


from adaptinf.policies.dynamic_duo import DynamicDuoPolicy
from adaptinf.policies.fixed import FixedPolicy
from adaptinf.policies.mdinference import MdInferencePolicy
from adaptinf.policies.mmnet import MmNetPolicy
from adaptinf.policies.multiplexer import MultiplexerPolicy
from adaptinf.policies.plan import Policy
from adaptinf.policies.sieve import SievePolicy, SpeculationHistory, threshold_detector
from adaptinf.policies.zoo_multiplexer import ZooMultiplexerPolicy
from adaptinf.policies.split import SplitPolicy

# Every policy name a config or a request may use; partitions (RB1, ...) are policies too.
NAMES = ("split", "mobile-only", "cloud-only", "mdinference", "multiplexer", "dynamic-duo", "sieve", "mmnet")


@dataclass(frozen=True)
class BuildContext:
    bundle: Any                                 # adaptinf.bundle.Bundle
    models: Any                                 # the device's engines (daemon/device_models.py)
    placements: tuple[str, ...]                 # every partition a request can pin
    goal: str                                   # [policy].goal
    history_s: float                            # [policy].history_ms, as seconds
    default_sla_s: float                        # [cloud].timeout_ms, as seconds
    time_share: Callable[[list[str]], float]    # named models' device time over the full model's (profile)
    sieve_detector: str = "probe"               # [policy].sieve_detector
    energy_share: Callable[[list[str]], float] | None = None   # the same for energy; None: the time share


def build(ctx: BuildContext) -> dict[str, Policy]:
    frame_bytes = ctx.bundle.input.nbytes
    policies: dict[str, Policy] = {"split": SplitPolicy(ctx.goal)}
    policies.update({name: FixedPolicy(name) for name in ctx.placements})
    policies["mdinference"] = MdInferencePolicy(ctx.default_sla_s, frame_bytes,
                                                zoo=tuple(ctx.bundle.zoo.models) if ctx.bundle.zoo else ())
    bundle, models = ctx.bundle, ctx.models
    energy_share = ctx.energy_share or ctx.time_share
    if models.pair is not None:
        small = bundle.model(bundle.multiplexer.pair.device)
        policies["multiplexer"] = MultiplexerPolicy(frame_bytes, bundle.full_model.flops, small.flops,
                                                    models.pair.multiplexer_flops, small.accuracy)
    elif bundle.zoo is not None and bundle.zoo.multiplexer:    # the multiplexer over a zoo (N models)
        policies["multiplexer"] = ZooMultiplexerPolicy(tuple(bundle.zoo.models), bundle.zoo.multiplexer,
                                                       bundle.zoo.threshold, frame_bytes)
    if bundle.dynamic_duo is not None:
        duo = bundle.dynamic_duo
        specs = (duo.own, *(a for a in duo.alternatives if a.little != duo.little))

        def duo_policies(specs) -> dict:
            return {s.little: DynamicDuoPolicy(frame_bytes, ctx.time_share([s.little]), s.recovery_rate,
                                               s.power_saving_recovery_rate, bundle.model(s.little).accuracy,
                                               duo.target_accuracy, energy_share([s.little])) for s in specs}

        policies["dynamic-duo"] = duo_policies(specs)[duo.little]
        detectors = {}
        if ctx.sieve_detector == "threshold":       # SIEVE's own detector: other thresholds, other P_r
            detectors = {s.little: threshold_detector(s, duo.confidence.get(s.little) or bundle.model(s.little).confidence,
                                                      duo.target_accuracy, len(bundle.classes)) for s in specs}
        speculative = duo_policies(detectors.values() if detectors else specs)
        own = speculative.pop(duo.little)           # the rest: SIEVE's alternatives
        policies["sieve"] = SievePolicy(own, SpeculationHistory(ctx.history_s), speculative, detectors)
    if bundle.mmnet is not None:
        minions = list(bundle.mmnet.minions)
        policies["mmnet"] = MmNetPolicy(frame_bytes, ctx.time_share(minions), bundle.mmnet.recovery_rate,
                                        bundle.mmnet.target_accuracy, energy_share(minions))
    return policies
