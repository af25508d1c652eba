"""`adaptinf build split --onnx`: models nobody here designed, cut without training, served.

ResNet-18, MobileNetV2 and U-Net are written from their papers (rig/published_models.py),
EfficientNet-B0 is the efficientnet_pytorch package's; all random weights with non-trivial
BatchNorm statistics, exported by torch.onnx as a user would. Each test's own inputs are
drawn from a seed the build never used.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from adaptinf.bundle import BundleError, load_bundle, write_manifest
from adaptinf.toolchain.onnx_cuts import find_cuts, spread
from adaptinf.toolchain.onnx_split import OnnxSplitConfig, OnnxSplitError, build_onnx_split, prepare
from adaptinf.upload_quant import as_received

torch = pytest.importorskip("torch")
published = pytest.importorskip("adaptinf.rig.published_models")

SIZE = 64
CLASSIFIERS = ("resnet18", "mobilenet_v2", "efficientnet_b0")


def _model(name: str):
    torch.manual_seed(0)
    model = {"resnet18": lambda: published.ResNet18(10, width=16),
             "mobilenet_v2": lambda: published.MobileNetV2(10, width=0.5),
             "efficientnet_b0": lambda: published.efficientnet_b0(10),
             "unet": lambda: published.UNet(3, width=8, depth=3)}[name]()
    return published.randomise_batchnorm(model)


@pytest.fixture(scope="session")
def own_bundles(tmp_path_factory):
    """name -> (original ONNX file, bundle directory): the README's path, --points 4 --samples 32."""
    root = tmp_path_factory.mktemp("own")
    out = {}
    for name in (*CLASSIFIERS, "unet"):
        source = published.export(_model(name), SIZE, root / f"{name}.onnx")
        build_onnx_split(source, root / name, OnnxSplitConfig(points=4, samples=32), progress=False)
        out[name] = (source, root / name)
    return out


def fresh_inputs(n: int, seed: int = 777) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, SIZE, SIZE)).astype(np.float32)


def session(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run(s: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def split_outputs(bundle, point, x: np.ndarray, upload: str | None = None) -> np.ndarray:
    head, tail = session(bundle.path(point.head)), session(bundle.path(point.tail))
    return np.stack([run(tail, as_received(run(head, f[None]), upload or point.upload))[0] for f in x])


# ---- the cut points ------------------------------------------------------------------------
def _graph(nodes, inits, out_shape=(1, 4, 8, 8)):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))], inits)
    return onnx.shape_inference.infer_shapes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))


def _conv(name, src, dst):
    w = numpy_helper.from_array(np.full((4, 4, 1, 1), 0.1, np.float32), f"{name}.w")
    return helper.make_node("Conv", [src, f"{name}.w"], [dst]), w


def test_a_residual_block_is_cut_at_its_boundaries_only():
    nodes, inits = [], []
    for i, (src, dst) in enumerate([("x", "a"), ("a", "b"), ("b", "c")]):
        node, w = _conv(f"c{i}", src, dst)
        nodes.append(node)
        inits.append(w)
    nodes.append(helper.make_node("Add", ["a", "c"], ["d"]))      # a skips over b and c
    node, w = _conv("c3", "d", "y")
    nodes.append(node)
    inits.append(w)
    cuts = find_cuts(_graph(nodes, inits), max_tensors=1)
    assert [c.tensors for c in cuts] == [("a",), ("d",)]         # inside the block, a and b/c both cross
    two = find_cuts(_graph(nodes, inits), max_tensors=2)
    assert ("a", "b") in [c.tensors for c in two] and ("a", "c") in [c.tensors for c in two]
    assert all("x" not in c.tensors for c in two)                 # a cut never needs the frame


def test_points_are_spread_over_the_flops_with_work_on_both_sides(own_bundles):
    model = prepare(own_bundles["resnet18"][0]).model
    cuts = find_cuts(model)
    total = sum(c.head_flops for c in cuts[-1:]) + 1
    chosen = spread(cuts, total, 3)
    assert 1 <= len(chosen) <= 3
    assert [c.after for c in chosen] == sorted(c.after for c in chosen)
    assert all(0 < c.head_flops < total for c in chosen)


def test_an_encoder_decoder_is_cut_at_block_boundaries_of_several_tensors(own_bundles):
    bundle = load_bundle(own_bundles["unet"][1])
    assert len(bundle.split.points) >= 3
    # the skip connections span the model: every usable cut carries a skip beside the main path
    assert all(" + " in p.layer for p in bundle.split.points)


# ---- agreement: split against full, on inputs the build never saw ----------------------------
@pytest.mark.parametrize("name", CLASSIFIERS)
def test_a_classifier_split_agrees_with_the_full_model(own_bundles, name):
    source, root = own_bundles[name]
    bundle = load_bundle(root)
    x = fresh_inputs(100)
    full = np.stack([run(session(source), f[None])[0] for f in x])
    assert not bundle.classes and bundle.output_specs[0].shape == (1, 10)
    assert len(bundle.split.points) == 4
    for point in bundle.split.points:
        agreement = (split_outputs(bundle, point, x).argmax(-1) == full.argmax(-1)).mean()
        assert agreement >= 0.99, (name, point.name, agreement, point.upload)
        assert point.agreement["exact"] and point.upload_bytes < np.prod(bundle.input.shape) * 4


def test_a_segmenters_error_is_the_uploads_rounding(own_bundles):
    """Without rounding head + tail is the model; with 8 bits the error is what the rounding
    explains: it shrinks with the finer float16 step, by well over 10x."""
    source, root = own_bundles["unet"]
    bundle = load_bundle(root)
    x = fresh_inputs(8)
    full = np.stack([run(session(source), f[None])[0] for f in x])
    for point in bundle.split.points:
        err8 = np.abs(split_outputs(bundle, point, x, "uint8") - full).max()
        err16 = np.abs(split_outputs(bundle, point, x, "float16") - full).max()
        assert point.agreement["exact_max_error"] < 1e-3
        assert err8 < 0.05 * (full.max() - full.min())
        assert err16 * 10 < err8


def test_several_outputs_of_any_dtype_come_back_named(tmp_path):
    """A detector-like head: boxes (float32) and their classes (int64), one packed graph output."""
    class TwoHeads(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = published.ResNet18(8, width=8).features
            self.boxes = torch.nn.Conv2d(64, 4, 1)
            self.scores = torch.nn.Conv2d(64, 3, 1)

        def forward(self, x):
            f = self.body(x)
            return self.boxes(f).flatten(2), self.scores(f).argmax(1)

    torch.manual_seed(1)
    source = published.export(TwoHeads(), SIZE, tmp_path / "det.onnx", output_names=("boxes", "classes"))
    build_onnx_split(source, tmp_path / "det", OnnxSplitConfig(points=2, samples=8), progress=False)
    bundle = load_bundle(tmp_path / "det")
    assert [(o.name, o.dtype, o.shape) for o in bundle.output_specs] == [
        ("boxes", "float32", (1, 4, 4)), ("classes", "int64", (1, 2, 2))]
    full = session(bundle.path("full.onnx"))
    assert len(full.get_outputs()) == 1 and bundle.output_size == 20


# ---- what the build refuses ------------------------------------------------------------------
def test_models_the_build_cannot_take_are_refused_with_a_reason(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(OnnxSplitError, match="not an ONNX model"):
        build_onnx_split(tmp_path / "junk.onnx", tmp_path / "out", progress=False)
    two = helper.make_graph([helper.make_node("Add", ["a", "b"], ["y"])], "g",
                            [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in "ab"],
                            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(two, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "two.onnx"))
    with pytest.raises(OnnxSplitError, match="2 inputs"):
        build_onnx_split(tmp_path / "two.onnx", tmp_path / "out", progress=False)
    dyn = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])],
                            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, "h", "w"])])
    onnx.save(helper.make_model(dyn, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "dyn.onnx"))
    with pytest.raises(OnnxSplitError, match="dimension 2 .* is not fixed"):
        build_onnx_split(tmp_path / "dyn.onnx", tmp_path / "out", progress=False)


def test_confidence_policies_refuse_a_bundle_without_classes(own_bundles, tmp_path):
    import shutil

    root = tmp_path / "b"
    shutil.copytree(own_bundles["resnet18"][1], root)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["dynamic_duo"] = {"little": "full", "big": "full", "thresholds": [0.5] * 10,
                               "power_saving_thresholds": [0.5] * 10, "target_accuracy": 0.5,
                               "recovery_rate": 0.1, "power_saving_recovery_rate": 0.1}
    for key in ("files", "format", "version"):
        manifest.pop(key)
    write_manifest(root, manifest)
    with pytest.raises(BundleError, match="dynamic_duo decides on a classifier's confidence, but this bundle "
                                          "declares no classes"):
        load_bundle(root)


# ---- labelled data: accuracy on a held-out part, and declared classes --------------------------
def test_labelled_images_give_held_out_accuracy_per_point_and_classes(own_bundles, tmp_path):
    from PIL import Image

    from adaptinf.toolchain.glyphs import make_glyphs

    glyphs = make_glyphs(60, seed=99, size=80)
    for i, (image, label) in enumerate(zip(glyphs.images, glyphs.labels)):
        folder = tmp_path / "data" / glyphs.classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i}.png")
    present = sorted({glyphs.classes[label] for label in glyphs.labels})
    source = published.export(published.randomise_batchnorm(published.ResNet18(len(present), width=8)), SIZE,
                              tmp_path / "r.onnx")
    manifest = build_onnx_split(source, tmp_path / "b", OnnxSplitConfig(points=2, dataset=f"folder:{tmp_path}/data"),
                                progress=False)
    bundle = load_bundle(tmp_path / "b")
    assert bundle.classes == tuple(present)
    assert manifest["data"]["n_held_out"] == 30 and manifest["data"]["n_check"] == 30
    assert bundle.full_model.accuracy is not None
    assert all(p.accuracy is not None and abs(p.accuracy - bundle.full_model.accuracy) <= 0.1
               for p in bundle.split.points)


def test_a_dynamic_batch_export_is_served_at_batch_one(tmp_path):
    """torch.onnx.export with dynamic_axes (the most common way) leaves the batch symbolic."""
    import io
    import warnings

    model = _model("mobilenet_v2").eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, SIZE, SIZE),), buffer, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, opset_version=17, dynamo=False)
    (tmp_path / "dyn.onnx").write_bytes(buffer.getvalue())
    build_onnx_split(tmp_path / "dyn.onnx", tmp_path / "b", OnnxSplitConfig(points=2, samples=8), progress=False)
    bundle = load_bundle(tmp_path / "b")
    assert bundle.input.shape == (1, 3, SIZE, SIZE) and bundle.output_specs[0].shape == (1, 10)
    assert len(bundle.split.points) == 2
