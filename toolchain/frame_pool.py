"""`adaptinf build frame-pool`: a pool on the camera's frame, for the speculative systems'
premise. SIEVE (thesis ch.4) and M&MNet (ch.5) speculate on the device with small CNNs and
recover with a big one in the cloud, on ImageNet frames (224x224x3, 150 KB). On 32x32
glyphs an upload is 3 KB and costs the radio less than the small models cost the device,
which hides what speculation buys.

This bundle takes the frame of a big model's bundle (bundles/glyphnet224): the big model
is its full model, and each small model of a pool or zoo bundle (trained on 32x32 frames)
sits behind an area downscale in its graph, so it takes the same camera frame:

    frame (N, H, W, C) uint8 -> mean of each (H/h x W/w) block -> round -> (N, h, w, C) uint8 -> small model

The glyph generator draws the same glyph at every size from one seed, so a downscaled
224x224 render is a 32x32 glyph of the same class. The validation and test frames are
rendered at the big model's size from a seed neither bundle trained on (the manifest's
data section says how, for pool_splits). The big model's and each small model's accuracy
are measured on those test frames. `adaptinf build duo|mmnet` then configure it like any
zoo.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, compose, helper

from adaptinf.bundle import load_bundle, write_manifest
from adaptinf.engines import open_engine
from adaptinf.engines.base import run_batched
from adaptinf.packed_floats import load_onnx_model
from adaptinf.toolchain.datasets import glyph_bundle_splits
from adaptinf.toolchain.onnx_flops import count_flops

FRESH_SEED = 30_000      # validation and test renders: a seed no build here trains on
BIG_FILE = "big.onnx"
SMALL_ROLES = ("pool", "little", "zoo")      # the pool's models that take its frame (not its multiplexers)


def area_downscale(images: np.ndarray, size: int) -> np.ndarray:
    """What `downscale_graph` computes, in numpy: NHWC uint8 to size x size by block means."""
    n, h, w, c = images.shape
    if h % size or w % size:
        raise ValueError(f"a {h}x{w} frame does not downscale to {size}x{size} by whole blocks")
    blocks = images.reshape(n, size, h // size, size, w // size, c).mean(axis=(2, 4))
    return np.round(blocks).astype(np.uint8)


def downscale_graph(frame: tuple[int, int, int], small: tuple[int, int], input_name: str, output_name: str,
                    opset: int, ir_version: int) -> onnx.ModelProto:
    """uint8 NHWC frame -> uint8 NHWC small frame, by the mean of each block (area downscale)."""
    (h, w, c), (sh, sw) = frame, small
    if h % sh or w % sw:
        raise ValueError(f"a {h}x{w} frame does not downscale to {sh}x{sw} by whole blocks")
    kernel = [h // sh, w // sw]
    nodes = [
        helper.make_node("Cast", [input_name], ["downscale/float"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["downscale/float"], ["downscale/nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("AveragePool", ["downscale/nchw"], ["downscale/pooled"], kernel_shape=kernel, strides=kernel),
        helper.make_node("Round", ["downscale/pooled"], ["downscale/rounded"]),
        helper.make_node("Transpose", ["downscale/rounded"], ["downscale/nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("Cast", ["downscale/nhwc"], [output_name], to=TensorProto.UINT8),
    ]
    graph = helper.make_graph(nodes, "downscale",
                              [helper.make_tensor_value_info(input_name, TensorProto.UINT8, ["batch", h, w, c])],
                              [helper.make_tensor_value_info(output_name, TensorProto.UINT8, ["batch", sh, sw, c])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version)


def on_frame(small_path: Path, frame: tuple[int, int, int], out: Path) -> None:
    """The small model behind the downscale: it takes the camera frame under its own input name."""
    small = load_onnx_model(small_path)         # packed custom-float weights come inline
    (name,) = [i.name for i in small.graph.input]
    dims = [d.dim_value for d in small.graph.input[0].type.tensor_type.shape.dim]
    opset = next(o.version for o in small.opset_import if o.domain in ("", "ai.onnx"))
    front = downscale_graph(frame, (dims[1], dims[2]), name, "downscale/frame", opset, small.ir_version)
    small = compose.add_prefix(small, "small/")
    merged = compose.merge_models(front, small, io_map=[("downscale/frame", f"small/{name}")])
    onnx.checker.check_model(merged)
    onnx.save(merged, str(out))


def build_frame_pool(big_dir: Path, pool_dir: Path, out: Path, n_val: int = 1000, n_test: int = 2000,
                     seed: int = FRESH_SEED) -> dict:
    big, pool = load_bundle(big_dir), load_bundle(pool_dir)
    if tuple(big.classes) != tuple(pool.classes):
        raise SystemExit(f"{big_dir} answers {big.classes}, {pool_dir} {pool.classes}: they must answer the same")
    frame = tuple(big.input.shape[1:])
    if big.input.dtype != "uint8" or pool.input.dtype != "uint8":
        raise SystemExit("both bundles must take uint8 NHWC frames")
    out.mkdir(parents=True, exist_ok=False)
    data = {"dataset": "glyphs", "n_train": 0, "n_val": n_val, "n_test": n_test, "seed": seed, "size": frame[0],
            "frame_pool": {"big": str(big_dir), "pool": str(pool_dir)}}
    _, _, test = glyph_bundle_splits(data, str(out))

    def accuracy(path: Path) -> float:
        return float((run_batched(open_engine(path, "onnxruntime"), test.images).argmax(1) == test.labels).mean())

    shutil.copyfile(big.path(big.full_model.file), out / BIG_FILE)
    models = [{"name": f"{big.name}_{big.full_model.name}", "file": BIG_FILE, "role": "big",
               "accuracy": accuracy(out / BIG_FILE), "flops": big.full_model.flops, "params": big.full_model.params}]
    for model in [m for m in pool.models if m.role in SMALL_ROLES]:
        file = f"frame_{model.name}.onnx"
        on_frame(pool.path(model.file), frame, out / file)
        models.append({"name": model.name, "file": file, "role": "zoo", "accuracy": accuracy(out / file),
                       "flops": count_flops(out / file), "params": model.params})
    manifest = {"name": f"{pool.name}-on-{big.name}", "classes": list(big.classes),
                "input": {"name": big.input.name, "dtype": "uint8", "shape": list(big.input.shape),
                          "layout": "NHWC"},
                "models": models, "data": data}
    write_manifest(out, manifest)
    load_bundle(out)
    return manifest


def build_and_report(big_dir: Path, pool_dir: Path, out: Path) -> int:
    manifest = build_frame_pool(big_dir, pool_dir, out)
    frame = manifest["input"]["shape"]
    print(f"{out}: the pool of {pool_dir} on {frame[1]}x{frame[2]} frames "
          f"({int(np.prod(frame))} bytes), test accuracy on {manifest['data']['n_test']} fresh frames:")
    for m in manifest["models"]:
        print(f"  {m['name']:24} {m['role']:4} {m['accuracy']:7.2%} {m['flops'] / 1e6:8.2f} MFLOPs")
    print(f"next: adaptinf build duo|mmnet --bundle {out}")
    return 0
