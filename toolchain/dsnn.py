"""`adaptinf build dsnn`: the 2-way multi-dsNN of thesis ch.3 (sections 3.3-3.5), for the MCU.

1. Train the monolithic FC net; the error file: error = 1 - confidence on the true class
   of every training instance (3.4.1).
2. Threshold queue: partitioning thresholds at quantiles of the error (3.4.2). Per
   threshold, the ideal partition (main: error <= t, tail: above), a decision tree trained
   to predict it from the input (the selector, 3.3.4), and the training set re-partitioned
   by that tree, because the dsNNs must tolerate the tree's mistakes (3.4.2).
3. dsNN topologies by the heuristic search of 3.5.7: a probe with half the baseline's
   neurons decides between energy optimisation (hill climbing from no hidden layer:
   double the last hidden layer while accuracy improves; deterministic jumps: double the
   last non-full layer, or add a layer of one neuron) and accuracy optimisation (from the
   baseline, shrink the first hidden layer by 5% while accuracy holds; deterministic
   jumps: shrink by 5% the first non-empty layer whose shrinking keeps at least 95% of
   the target accuracy).
4. Every (threshold, dsNN_main, dsNN_tail) is a design point: accuracy of the whole
   system on validation data (tree routing included) and expected MACs (each dsNN's MACs
   weighted by the share of inputs the tree sends it, plus the tree's comparisons). The
   Pareto front of accuracy vs MACs; the pick: fewest MACs at >= the constraint (100% or
   99% of the monolithic accuracy).
Departures: the width cap is the firmware's (256, not 4096) and hidden layers at most 2.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from sklearn.tree import DecisionTreeClassifier
from tqdm import tqdm


@dataclass(frozen=True)
class DsnnConfig:
    baseline_hidden: tuple[int, ...] = (64, 32)
    thresholds: int = 9                  # size of the threshold queue
    main_fractions: tuple[float, float] = (0.5, 0.95)  # thresholds put 50..95% of the training set in main
    tree_depth: int = 6
    max_hidden_layers: int = 2
    max_width: int = 256                 # the firmware's FC_MAX_WIDTH
    max_iter: int = 300
    constraint: float = 0.99             # of the monolithic accuracy
    seed: int = 0
    max_search_steps: int = 60           # accuracy optimisation: topologies tried per dsNN at most


def macs(n_in: int, hidden: tuple[int, ...], n_out: int) -> int:
    sizes = (n_in, *hidden, n_out)
    return sum(a * b for a, b in zip(sizes, sizes[1:]))


def train_mlp(x: np.ndarray, y: np.ndarray, hidden: tuple[int, ...], config: DsnnConfig) -> MLPClassifier:
    clf = MLPClassifier(hidden_layer_sizes=hidden or (), max_iter=config.max_iter, random_state=config.seed)
    with warnings.catch_warnings():
        # the search trains hundreds of small nets on a fixed budget; not converging is expected
        warnings.simplefilter("ignore", ConvergenceWarning)
        return clf.fit(x, y)


def predict(clf: MLPClassifier, x: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Labels for x, also when clf saw only some classes (a tail subset can miss a digit)."""
    return clf.classes_[clf.predict_proba(x).argmax(1)] if len(x) else np.array([], classes.dtype)


def error_file(clf: MLPClassifier, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """3.4.1: error = 1 - confidence on the true class."""
    proba = clf.predict_proba(x)
    index = {c: i for i, c in enumerate(clf.classes_)}
    return 1.0 - proba[np.arange(len(y)), [index[c] for c in y]]


def energy_optimisation(evaluate, config: DsnnConfig) -> list[tuple[tuple[int, ...], float]]:
    """3.5.7: hill climbing from no hidden layer with deterministic jumps; returns every visited point."""
    visited, current = [], ()
    best = evaluate(current)
    visited.append((current, best))

    def jump(h: tuple[int, ...]) -> tuple[int, ...] | None:
        for i in range(len(h) - 1, -1, -1):          # double the last non-full hidden layer
            if h[i] < config.max_width:
                return h[:i] + (min(h[i] * 2, config.max_width),) + h[i + 1:]
        if len(h) < config.max_hidden_layers:        # all full: a new layer of one neuron after the input
            return (1,) + h
        return None

    while True:
        step = None
        if current and current[-1] < config.max_width:
            step = current[:-1] + (min(current[-1] * 2, config.max_width),)
        candidate = step if step is not None else jump(current)
        if candidate is None:
            return visited
        acc = evaluate(candidate)
        visited.append((candidate, acc))
        if step is not None and acc <= best:          # no improvement by growing: jump instead
            candidate = jump(candidate)
            if candidate is None:
                return visited
            acc = evaluate(candidate)
            visited.append((candidate, acc))
        current, best = candidate, max(best, acc)


JUMP_KEEP = 0.95      # a jump may cost at most 5% of normalized accuracy


def _shrunk(hidden: tuple[int, ...], layer: int) -> tuple[int, ...] | None:
    """hidden with `layer` 5% narrower (at least one neuron fewer); None when it has one left."""
    if hidden[layer] <= 1:
        return None
    return hidden[:layer] + (min(hidden[layer] - 1, int(hidden[layer] * 0.95)),) + hidden[layer + 1:]


def accuracy_optimisation(evaluate, baseline: tuple[int, ...], target: float,
                          max_steps: int = 60) -> list[tuple[tuple[int, ...], float]]:
    """3.5.7, accuracy optimisation: from the baseline, the normal step shrinks the first
    hidden layer by 5% while the normalized accuracy (accuracy / target) stays >= 100%. When
    it drops below, or the first layer is down to one neuron, the search jumps: it shrinks
    by 5% the first hidden layer whose shrinking keeps the normalized accuracy >= 95%, and
    goes on from there. It ends when no jump is left, or after max_steps topologies."""
    current = baseline
    seen = {current: evaluate(current)}
    visited = [(current, seen[current])]

    def tried(hidden):
        if hidden not in seen:
            seen[hidden] = evaluate(hidden)
            visited.append((hidden, seen[hidden]))
        return seen[hidden]

    while len(visited) < max_steps:
        step = _shrunk(current, 0) if current else None
        if step is not None and step not in seen and tried(step) >= target:
            current = step                                   # a normal step
            continue
        jump = next((h for h in (_shrunk(current, k) for k in range(len(current)))
                     if h is not None and h not in seen and len(visited) < max_steps
                     and tried(h) >= JUMP_KEEP * target), None)
        if jump is None:
            break
        current = jump
    return visited


@dataclass
class DesignPoint:
    threshold: float
    main_share: float          # of validation inputs the tree sends to dsNN_main
    main_hidden: tuple[int, ...]
    tail_hidden: tuple[int, ...]
    accuracy: float
    expected_macs: float
    models: dict = field(default_factory=dict, repr=False)


@dataclass
class DsnnResult:
    monolithic_accuracy: float
    monolithic_macs: int
    points: list[DesignPoint]
    pareto: list[DesignPoint]
    chosen: DesignPoint | None
    errors: np.ndarray
    monolithic: MLPClassifier | None = field(default=None, repr=False)


def pareto_front(points: list[DesignPoint]) -> list[DesignPoint]:
    front = [p for p in points if not any(
        q.accuracy >= p.accuracy and q.expected_macs <= p.expected_macs and
        (q.accuracy > p.accuracy or q.expected_macs < p.expected_macs) for q in points)]
    return sorted(front, key=lambda p: p.expected_macs)


def build_dsnn(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
               config: DsnnConfig = DsnnConfig(), progress: bool = True) -> DsnnResult:
    classes = np.unique(y_train)
    n_in, n_out = x_train.shape[1], len(classes)
    mono = train_mlp(x_train, y_train, config.baseline_hidden, config)
    mono_acc = float((predict(mono, x_val, classes) == y_val).mean())
    errors = error_file(mono, x_train, y_train)
    target = config.constraint * mono_acc
    quantiles = np.linspace(*config.main_fractions, config.thresholds)
    points = []
    for threshold in tqdm(np.quantile(errors, quantiles), desc="thresholds", unit="t", disable=None if progress else True):
        ideal = (errors > threshold).astype(int)                 # 0: main, 1: tail
        if ideal.min() == ideal.max():
            continue
        tree = DecisionTreeClassifier(max_depth=config.tree_depth, random_state=config.seed).fit(x_train, ideal)
        routed = tree.predict(x_train)                           # the dsNNs learn from the tree's split
        val_route = tree.predict(x_val)
        share = float((val_route == 0).mean())
        if routed.min() == routed.max():
            continue
        candidates = {}
        for part in (0, 1):
            xs, ys = x_train[routed == part], y_train[routed == part]
            vx, vy = x_val[val_route == part], y_val[val_route == part]
            cache = {}

            def evaluate(hidden, xs=xs, ys=ys, vx=vx, vy=vy, cache=cache):
                if hidden not in cache:
                    clf = train_mlp(xs, ys, hidden, config)
                    acc = float((predict(clf, vx, classes) == vy).mean()) if len(vy) else 1.0
                    cache[hidden] = (clf, acc)
                return cache[hidden][1]

            half = tuple(max(1, h // 2) for h in config.baseline_hidden)
            if evaluate(half) >= mono_acc:                        # normalized accuracy > 100%: save energy
                energy_optimisation(evaluate, config)
            else:
                accuracy_optimisation(evaluate, config.baseline_hidden, mono_acc, config.max_search_steps)
            candidates[part] = [(h, clf) for h, (clf, _) in cache.items()]   # every topology trained
        tree_cost = config.tree_depth                           # comparisons per input
        for main_h, main_clf in candidates[0]:
            for tail_h, tail_clf in candidates[1]:
                pred = np.where(val_route == 0, predict(main_clf, x_val, classes), predict(tail_clf, x_val, classes))
                points.append(DesignPoint(
                    float(threshold), share, main_h, tail_h, float((pred == y_val).mean()),
                    share * macs(n_in, main_h, n_out) + (1 - share) * macs(n_in, tail_h, n_out) + tree_cost,
                    {"tree": tree, "main": main_clf, "tail": tail_clf}))
    front = pareto_front(points)
    meeting = [p for p in front if p.accuracy >= target]
    chosen = min(meeting, key=lambda p: p.expected_macs) if meeting else None
    return DsnnResult(mono_acc, macs(n_in, config.baseline_hidden, n_out), points, front, chosen, errors, mono)


def mcu_net(clf: MLPClassifier, x_calibration: np.ndarray, dtype: str = "int8"):
    from adaptinf.drivers.mcu_model import quantize_net

    return quantize_net([w.T for w in clf.coefs_], clf.intercepts_, x_calibration, dtype)


def mcu_system(point: DesignPoint, x_calibration: np.ndarray, dtype: str = "int8"):
    """The design point as the MCU runs it: the tree selector, dsNN_main and dsNN_tail, each
    net quantised on the calibration inputs the tree sends it."""
    from adaptinf.drivers.mcu_model import McuSystem, Tree

    tree = Tree.from_sklearn(point.models["tree"])
    routes = np.array([tree.route(x) for x in x_calibration])
    nets, labels = [], []
    for k, part in enumerate(("main", "tail")):
        clf = point.models[part]
        calibration = x_calibration[routes == k] if (routes == k).sum() >= 10 else x_calibration
        nets.append(mcu_net(clf, calibration, dtype))
        labels.append(tuple(int(c) for c in clf.classes_))
    return McuSystem(tuple(nets), tuple(labels), tree)


def export(result: DsnnResult, out, x_calibration: np.ndarray) -> dict:
    """The chosen system for the MCU (dsnn_system.aims: tree + both int8 dsNNs), each dsNN alone
    and the monolithic net (for measuring them one by one), and the design space (dsnn.json)."""
    import json
    from pathlib import Path

    from adaptinf.drivers.mcu_model import system_blob, to_blob

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if result.chosen is None:
        raise ValueError("no design point meets the accuracy constraint: relax it or widen the search")
    c = result.chosen
    system = mcu_system(c, x_calibration)
    files = {}
    for k, part in enumerate(("main", "tail")):
        net = system.nets[k]
        (out / f"dsnn_{part}.aifc").write_bytes(to_blob(net))
        files[part] = {"file": f"dsnn_{part}.aifc", "hidden": list(getattr(c, f"{part}_hidden")),
                       "classes": list(system.labels[k]), "macs": net.macs}
    (out / "dsnn_system.aims").write_bytes(system_blob(system))
    monolithic = {"accuracy": result.monolithic_accuracy, "macs": result.monolithic_macs}
    if result.monolithic is not None:
        (out / "monolithic.aifc").write_bytes(to_blob(mcu_net(result.monolithic, x_calibration)))
        monolithic.update(file="monolithic.aifc", hidden=list(result.monolithic.hidden_layer_sizes))
    t = system.tree
    manifest = {"format": "adaptinf-dsnn", "version": 1, "input_dim": system.input_dim,
                "classes": sorted({label for labels in system.labels for label in labels}),
                "monolithic": monolithic,
                "chosen": {"threshold": c.threshold, "main_share": c.main_share, "accuracy": c.accuracy,
                           "expected_macs": c.expected_macs, "system": "dsnn_system.aims",
                           "tree_depth": t.depth, "tree_nodes": len(t.feature), **files},
                "pareto": [{"threshold": p.threshold, "main": list(p.main_hidden), "tail": list(p.tail_hidden),
                            "accuracy": p.accuracy, "expected_macs": p.expected_macs} for p in result.pareto],
                "design_points": len(result.points)}
    (out / "dsnn.json").write_text(json.dumps(manifest, indent=1) + "\n")
    _plot(result, out / "pareto.png")
    return manifest


def _plot(result: DsnnResult, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.scatter([p.expected_macs for p in result.points], [p.accuracy * 100 for p in result.points], s=6,
               color="#bbbbbb", label="design points")
    ax.plot([p.expected_macs for p in result.pareto], [p.accuracy * 100 for p in result.pareto], "-o",
            color="#C44E52", label="Pareto front")
    ax.scatter([result.monolithic_macs], [result.monolithic_accuracy * 100], marker="*", s=150, color="#4C72B0",
               label="monolithic NN", zorder=4)
    if result.chosen is not None:
        ax.scatter([result.chosen.expected_macs], [result.chosen.accuracy * 100], marker="D", s=60,
                   color="#55A868", label="chosen", zorder=5)
    ax.set_xscale("log")
    ax.set_xlabel("expected MACs per input (tree routing included)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("2-way multi-dsNN design space (thesis ch.3)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
