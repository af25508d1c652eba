"""Shared fixtures: the committed demo bundle, and a cloud worker + daemon on loopback."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEMO_BUNDLE = REPO / "bundles" / "glyphnet"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def bundle():
    from adaptinf.bundle import load_bundle

    return load_bundle(DEMO_BUNDLE)


@pytest.fixture(scope="session")
def glyph_frames():
    from adaptinf.toolchain.glyphs import make_glyphs

    return make_glyphs(64, seed=4242)


@pytest.fixture
def tmp_short():
    """A short temp dir: ipc:// paths must fit in sun_path (108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="ai-") as d:
        yield Path(d)


@pytest.fixture(scope="session")
def dsnn_export(tmp_path_factory):
    """A small multi-dsNN on scikit-learn's digits (seconds), exported for the MCU:
    (result, manifest, directory, x_val, y_val); the validation split is the test split."""
    import numpy as np

    from adaptinf.toolchain.datasets import digits_features
    from adaptinf.toolchain.dsnn import DsnnConfig, build_dsnn, export

    x, y = digits_features()
    order = np.random.default_rng(0).permutation(len(y))
    val, train = order[:450], order[450:]
    config = DsnnConfig(baseline_hidden=(32,), thresholds=3, max_width=32, max_hidden_layers=1, max_iter=150)
    result = build_dsnn(x[train], y[train], x[val], y[val], config, progress=False)
    out = tmp_path_factory.mktemp("dsnn")
    manifest = export(result, out, x[train][:200])
    return result, manifest, out, x[val], y[val]


@pytest.fixture(scope="session")
def zoo_bundle(tmp_path_factory):
    """A tiny `adaptinf build zoo`: six models of three families, trained for seconds."""
    from adaptinf.toolchain import zoo

    out = tmp_path_factory.mktemp("zoo")
    zoo.build(out, zoo.ZooConfig(n_train=800, n_val=200, n_test=300, epochs=2), progress=False)
    return out


# The tiny zoo trains for seconds, so its models' accuracies barely differ (the cheapest may
# be the best): tests of what chooses among them give a copy a ladder by cost, as a full zoo
# build has (docs/model-selection.md); the models and their times stay the zoo's.
ZOO_LADDER = (0.40, 0.50, 0.60, 0.66, 0.72, 0.78)


def laddered_zoo_copy(zoo: Path, dest: Path) -> Path:
    """A copy of `zoo` whose models' accuracies rise with their cost (the most accurate first:
    the full model)."""
    import json
    import shutil

    from adaptinf.bundle import load_bundle, write_manifest

    shutil.copytree(zoo, dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    cheapest_first = load_bundle(zoo).zoo.models
    for entry in manifest["models"]:
        entry["accuracy"] = ZOO_LADDER[cheapest_first.index(entry["name"])]
    manifest["models"].sort(key=lambda m: -m["accuracy"])
    for key in ("files", "format", "version"):
        manifest.pop(key, None)
    write_manifest(dest, manifest)
    return dest


@pytest.fixture(scope="session")
def mux_build(tmp_path_factory):
    """Algorithm 1 end to end on a tiny pool (glyph_resnet widths 8 and 16, one epoch; seconds):
    (bundle directory, results)."""
    from adaptinf.toolchain.multiplexer import MuxConfig
    from adaptinf.toolchain.multiplexer_build import build

    out = tmp_path_factory.mktemp("mux")
    config = MuxConfig(widths=(8, 16), epochs=1, mux_epochs=2, batch_size=64)
    return out, build(out, config, n_train=256, n_eval=128, progress=False)


def mcu_rig():
    """The firmware built and running in QEMU (skip when the Debian toolchain is missing)."""
    from adaptinf.rig.qemu_mcu import QemuMcu, build_firmware, toolchain_missing

    if toolchain_missing():
        pytest.skip(toolchain_missing())
    build_firmware()
    rig = QemuMcu()
    try:
        yield rig
    finally:
        rig.stop()


mcu = pytest.fixture(scope="module", name="mcu")(mcu_rig)


def served_probabilities(model_path, frames) -> "np.ndarray":
    """Each frame's class probabilities exactly as adaptinfd computes them: its onnxruntime
    engine (one thread, batch 1) and the one probability function its policies decide with,
    so a threshold placed on an observed confidence falls on the same side in the test."""
    import numpy as np

    from adaptinf.engines.onnxruntime_engine import OnnxRuntimeEngine
    from adaptinf.policies.confidence import probabilities

    engine = OnnxRuntimeEngine(model_path)
    return np.stack([probabilities(engine.run(f).reshape(-1)) for f in frames])


@pytest.fixture(scope="session")
def shared_traces():
    """The recorded uplink traces beside the checkout (shared/traces: test data, not product)."""
    root = Path(__file__).resolve().parents[2] / "shared" / "traces"
    if not (root / "TMobile-UMTS-driving.up").exists():
        pytest.skip(f"no recorded traces at {root}")
    return root


def serve_bundle(tmp_path_factory, bundle_dir, name: str = "d", **sections):
    """Start a real adaptinfd on `bundle_dir` (no cloud unless sections say so); returns
    (api endpoint, Service). `sections`: extra config, e.g. daemon={...}, device={...}."""
    import tempfile

    from adaptinf.rig.processes import spawn_daemon, write_daemon_config

    short = tempfile.mkdtemp(prefix="ai-")        # ipc paths must fit in sun_path
    state = tmp_path_factory.mktemp(name)
    endpoint = f"ipc://{short}/api.sock"
    daemon = {"api_endpoint": endpoint, "bundle": str(bundle_dir), "state_dir": str(state), "warmup_runs": 2,
              **sections.pop("daemon", {})}
    return endpoint, spawn_daemon(write_daemon_config(state / "adaptinfd.toml", daemon=daemon, **sections))
