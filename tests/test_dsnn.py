"""The multi-dsNN toolchain (thesis ch.3) on scikit-learn's digits, small enough to run in seconds."""

import json

import numpy as np
import pytest

from adaptinf.drivers.mcu_model import MODEL_BYTES, Tree, parse_system, reference_predict, system_blob
from adaptinf.toolchain.dsnn import (DesignPoint, DsnnConfig, accuracy_optimisation,
                                     energy_optimisation, export, mcu_system, pareto_front)

QUICK = DsnnConfig(baseline_hidden=(32,), thresholds=3, max_width=32, max_hidden_layers=1, max_iter=150)  # conftest's


def test_energy_optimisation_climbs_and_jumps_deterministically():
    config = DsnnConfig(max_width=8, max_hidden_layers=2)
    seen = []

    def evaluate(hidden):
        seen.append(hidden)
        return min(sum(hidden), 6) / 10  # accuracy grows with size, then saturates

    visited = energy_optimisation(evaluate, config)
    assert seen[0] == ()                                   # starts with no hidden layer
    assert (1,) in seen and (2,) in seen and (4,) in seen   # doubling steps
    assert all(len(h) <= 2 and all(n <= 8 for n in h) for h, _ in visited)
    assert (8,) in seen                                     # climbed to the width cap...
    assert any(len(h) == 2 for h in seen)                   # ...then jumped by adding a layer


def test_accuracy_optimisation_shrinks_until_accuracy_drops_then_jumps_to_the_next_layer():
    # the first layer needs 50 neurons; the second costs nothing to shrink
    visited = accuracy_optimisation(lambda h: 0.9 if h[0] >= 50 else 0.5, (64, 16), target=0.9)
    seen = [h for h, _ in visited]
    first = [h[0] for h in seen if h[1] == 16]
    assert first[0] == 64 and first == sorted(first, reverse=True)      # normal steps on layer 1...
    assert min(first) < 50 and min(h[0] for h, acc in visited if acc >= 0.9) >= 50   # ...until it fails
    assert (min(first[:-1]), 1) in seen or any(h[1] == 1 for h in seen)   # then jumps shrink layer 2 to 1
    assert min(h[1] for h, acc in visited if acc >= 0.9) == 1


def test_a_jump_may_cost_at_most_5_percent_and_the_search_is_bounded():
    # layer 1 below 60 neurons costs 11% (no jump may take that); any shrink of layer 2 costs 3%
    def evaluate(h):
        return 0.9 * (1 - 0.11 * (h[0] < 60) - 0.03 * (h[1] < 16))
    visited = accuracy_optimisation(evaluate, (64, 16), target=0.9, max_steps=200)
    kept = [h for h, acc in visited if acc >= 0.95 * 0.9]
    assert min(h[1] for h in kept) == 1                    # jumps shrank layer 2 to its last neuron
    assert min(h[0] for h, _ in visited) >= 57             # nothing was explored from below the 95% floor
    assert len(accuracy_optimisation(evaluate, (64, 16), target=0.9, max_steps=5)) <= 5


def test_pareto_front_keeps_only_undominated_points():
    pts = [DesignPoint(0.1, 0.5, (), (), acc, macs) for acc, macs in ((0.9, 100), (0.95, 200), (0.9, 150), (0.8, 50))]
    assert [(p.accuracy, p.expected_macs) for p in pareto_front(pts)] == [(0.8, 50), (0.9, 100), (0.95, 200)]


@pytest.fixture(scope="module")
def built(dsnn_export):
    return dsnn_export


def test_error_file_and_partitioning_follow_the_monolithic_nets_confidence(built):
    result, *_ = built
    assert result.errors.min() >= 0 and result.errors.max() <= 1
    assert np.mean(result.errors < 0.1) > 0.5                 # the dense low-error "main" part (Fig. 3.4)
    assert {round(p.main_share, 6) for p in result.points}    # the tree routes most inputs to dsNN_main
    assert all(0 < p.main_share < 1 for p in result.points)


def test_chosen_system_meets_the_constraint_with_fewer_macs(built):
    result, manifest, out, *_ = built
    chosen = result.chosen
    assert chosen is not None and chosen in result.pareto
    assert chosen.accuracy >= QUICK.constraint * result.monolithic_accuracy
    assert chosen.expected_macs <= result.monolithic_macs
    assert manifest["chosen"]["accuracy"] == pytest.approx(chosen.accuracy)
    for part in ("main", "tail"):
        assert (out / manifest["chosen"][part]["file"]).stat().st_size <= MODEL_BYTES   # fits the MCU
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "dsnn.json").read_text())["format"] == "adaptinf-dsnn"


def test_flat_tree_routes_exactly_like_the_trained_selector(built):
    result, _, out, x_val, _ = built
    tree = result.chosen.models["tree"]
    flat = parse_system((out / "dsnn_system.aims").read_bytes()).tree   # as the MCU receives it
    assert [flat.route(row) for row in x_val] == tree.predict(x_val.astype(np.float32)).tolist()
    assert flat.depth <= QUICK.tree_depth


def test_system_blob_round_trips_and_keeps_the_accuracy(built):
    result, manifest, out, x_val, y_val = built
    blob = (out / "dsnn_system.aims").read_bytes()
    system = parse_system(blob)
    assert system_blob(system) == blob
    assert [len(labels) for labels in system.labels] == [n.classes for n in system.nets]
    predictions = [reference_predict(system, row) for row in x_val]
    int8_accuracy = np.mean([label == y for (label, _, _), y in zip(predictions, y_val)])
    assert int8_accuracy >= result.chosen.accuracy - 0.03          # int8 costs at most a few points
    routed_main = np.mean([net == 0 for _, net, _ in predictions])
    assert routed_main == pytest.approx(result.chosen.main_share)  # the same routing as the float system
    mono = parse_system((out / "monolithic.aifc").read_bytes())
    assert mono.tree is None and mono.nets[0].macs == result.monolithic_macs


def test_a_system_too_big_for_the_mcu_is_refused(built):
    result, *_ , x_val, _ = built
    system = mcu_system(result.chosen, x_val)
    wide = [np.zeros((256, 256), np.int8)] * 2
    from dataclasses import replace
    from adaptinf.drivers.mcu_model import QuantLayer
    huge = replace(system.nets[0], layers=tuple(QuantLayer(w, np.zeros(256, np.int32), 1.0, True) for w in wide))
    with pytest.raises(ValueError, match="does not fit"):
        system_blob(replace(system, nets=(huge, huge), labels=(tuple(range(256)),) * 2))
