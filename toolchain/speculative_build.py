"""`adaptinf build duo` and `adaptinf build mmnet`: configure Dynamic Duo (thesis ch.6) or
M&MNet (ch.5) on a bundle that holds a pool of models, in place.

Dynamic Duo:

The big model is the bundle's full model: adaptinfd recovers with it, on the device or in
the cloud worker. Among the cheaper pool models (FLOPs), the little is the one with the
smallest E_pair = FLOPs_little + FLOPs_big x P_r whose per-class probe reaches the big
model's validation accuracy. A second probe, for power-saving mode, allows
POWER_SAVING_LOSS less. The bundle also stores each model's confidence distribution on
validation, split into correct, correctable (the little is wrong and the big is right)
and uncorrectable frames.

M&MNet: the Master is the full model; the Minions are the pair of cheaper pool models
(summed FLOPs below the Master's) with the smallest L = L_m1 + L_m2 + L_Master x P_r whose
detector thresholds reach the Master's validation accuracy (policies/mmnet.py).

Both read the validation split regenerated from the seed in the manifest: of `adaptinf
build multiplexer` (a pool, and `adaptinf build little`'s small models) or of `adaptinf
build zoo` (six models of three families; the full model is the most accurate).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from adaptinf.bundle import load_bundle, write_manifest
from adaptinf.engines import open_engine
from adaptinf.engines.base import run_batched
from adaptinf.policies.dynamic_duo import ModelOutputs, evaluate_pair
from adaptinf.policies.modes import POWER_SAVING_LOSS   # one definition, shared with the detector
from adaptinf.toolchain.datasets import glyph_bundle_splits

BINS = np.linspace(0.0, 1.0, 21)


def model_outputs(bundle, name: str, images: np.ndarray, labels: np.ndarray) -> ModelOutputs:
    engine = open_engine(bundle.path(bundle.model(name).file), "onnxruntime")
    return ModelOutputs.from_logits(name, run_batched(engine, images), labels, float(bundle.model(name).flops))


def confidence_histograms(model: ModelOutputs, big: ModelOutputs) -> dict:
    subsets = {"correct": model.right, "correctable": ~model.right & big.right,
               "uncorrectable": ~model.right & ~big.right}
    return {"bins": BINS.tolist(),
            **{k: np.histogram(model.confidence[m], BINS)[0].tolist() for k, m in subsets.items()}}


def pool_splits(bundle_dir: Path):
    """(train, val, test, classes) of a pool or zoo bundle, regenerated from its manifest's seed."""
    from adaptinf.toolchain.multiplexer_build import split4

    data = json.loads((Path(bundle_dir) / "manifest.json").read_text()).get("data", {})
    if "n_pool_train" in data:
        train, _, val, test, classes = split4(data["n_pool_train"], data["seed"], data["n_val"])
        return train, val, test, classes
    try:                                                     # adaptinf build zoo
        train, val, test = glyph_bundle_splits(data, str(bundle_dir))
    except ValueError as exc:
        raise SystemExit(f"{exc}; a pool bundle (`adaptinf build multiplexer`) or a zoo (`adaptinf build zoo`) "
                         "is needed") from None
    return train, val, test, test.classes


def candidates(bundle) -> list:
    """The models that may speculate: the pool's, `build little`'s or the zoo's, cheaper than the full model."""
    return [m for m in bundle.models if m.role in ("pool", "little", "zoo") and m.flops < bundle.full_model.flops]


def _pool(bundle_dir: Path):
    """(bundle, manifest, the full model's and the candidates' validation outputs, classes)."""
    bundle = load_bundle(bundle_dir)
    manifest = json.loads((Path(bundle_dir) / "manifest.json").read_text())
    _, val, _, classes = pool_splits(bundle_dir)
    big = model_outputs(bundle, bundle.full_model.name, val.images, val.labels)
    littles = [model_outputs(bundle, m.name, val.images, val.labels) for m in candidates(bundle)]
    if not littles:
        raise SystemExit(f"{bundle_dir}: no pool model cheaper than the full model {bundle.full_model.name!r}")
    return bundle, manifest, big, littles, classes


def rewrite_manifest(bundle_dir: Path, manifest: dict) -> None:
    manifest.pop("files", None)
    write_manifest(bundle_dir, manifest)
    load_bundle(bundle_dir)          # the new sections must read back


def configure_mmnet(bundle_dir: Path) -> dict:
    from adaptinf.policies.mmnet import select_minions

    _, manifest, master, pool, _ = _pool(bundle_dir)
    pair = select_minions(pool, master, master.accuracy)
    if pair is None:
        raise SystemExit(f"{bundle_dir}: no two pool models, together cheaper than {master.name}, reach its accuracy")
    section = {"minions": list(pair.minions), "master": master.name, "thresholds": list(pair.thresholds),
               "recovery_rate": pair.recovery_rate, "accuracy": pair.accuracy, "target_accuracy": master.accuracy,
               "l_flops": pair.cost}
    manifest["mmnet"] = section
    rewrite_manifest(bundle_dir, manifest)
    return section


def configure_mmnet_and_report(bundle_dir: Path) -> int:
    s = configure_mmnet(bundle_dir)
    print(f"M&MNet on {bundle_dir}: Minions {s['minions'][0]} + {s['minions'][1]} (thresholds "
          f"{s['thresholds'][0]:.2f}, {s['thresholds'][1]:.2f}), Master {s['master']}")
    print(f"recovery {s['recovery_rate']:6.1%}, validation accuracy {s['accuracy']:.2%} "
          f"(target {s['target_accuracy']:.2%}); "
          f"L = {s['l_flops'] / 1e6:.2f} MFLOPs per frame")
    return 0


def configure(bundle_dir: Path, little: str | None = None) -> dict:
    """Dynamic Duo; `little` forces the little model (else: the smallest E_pair)."""
    bundle, manifest, big, littles, classes = _pool(bundle_dir)
    if little is not None and little not in {m.name for m in littles}:
        raise SystemExit(f"{bundle_dir}: {little!r} is not a candidate little model (cheaper than "
                         f"{big.name}): {[m.name for m in littles]}")
    pairs = [p for m in littles if (p := evaluate_pair(m, big, big.accuracy, len(classes))) is not None]
    chosen = [p for p in pairs if p.little == little] if little else pairs
    if not chosen:
        raise SystemExit(f"{bundle_dir}: {little or 'no candidate'} reaches {big.name}'s validation accuracy "
                         f"{big.accuracy:.2%} with any threshold")
    pair = min(chosen, key=lambda p: p.cost)
    relaxed_pairs = {p.little: evaluate_pair(next(m for m in littles if m.name == p.little), big,
                                             big.accuracy - POWER_SAVING_LOSS, len(classes)) for p in pairs}
    relaxed = relaxed_pairs[pair.little]
    section = {"little": pair.little, "big": big.name, "thresholds": pair.probe.thresholds.tolist(),
               "power_saving_thresholds": relaxed.probe.thresholds.tolist(), "target_accuracy": big.accuracy,
               "recovery_rate": pair.recovery_rate, "power_saving_recovery_rate": relaxed.recovery_rate,
               "accuracy": pair.accuracy, "power_saving_accuracy": relaxed.accuracy,
               "candidates": [{"little": p.little, "recovery_rate": p.recovery_rate, "e_pair_flops": p.cost}
                              for p in pairs],
               # every little that reaches the target, with its probes: SIEVE's selector picks per frame
               "alternatives": [{"little": p.little, "thresholds": p.probe.thresholds.tolist(),
                                 "power_saving_thresholds": relaxed_pairs[p.little].probe.thresholds.tolist(),
                                 "recovery_rate": p.recovery_rate,
                                 "power_saving_recovery_rate": relaxed_pairs[p.little].recovery_rate} for p in pairs],
               "confidence": {m.name: confidence_histograms(m, big) for m in [*littles, big]}}
    manifest["dynamic_duo"] = section
    rewrite_manifest(bundle_dir, manifest)
    return section


def configure_and_report(bundle_dir: Path, little: str | None = None) -> int:
    s = configure(bundle_dir, little)
    print(f"Dynamic Duo on {bundle_dir}: {s['little']} answers, {s['big']} recovers")
    for c in s["candidates"]:
        print(f"  candidate {c['little']:16} recovery {c['recovery_rate']:6.1%}  "
              f"E_pair {c['e_pair_flops'] / 1e6:8.2f} MFLOPs")
    print(f"normal:       recovery {s['recovery_rate']:6.1%}, validation accuracy {s['accuracy']:.2%} "
          f"(target: {s['big']} at {s['target_accuracy']:.2%})")
    print(f"power-saving: recovery {s['power_saving_recovery_rate']:6.1%}, validation accuracy "
          f"{s['power_saving_accuracy']:.2%} (target {s['target_accuracy'] - POWER_SAVING_LOSS:.2%})")
    return 0
