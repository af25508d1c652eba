"""`adaptinf build zoo`: classifiers of different families for one task, one bundle.

Papers 000/001 and 003 choose a model per frame from a pool. A pool of one family at
several widths fails on the same frames, so there is little to choose; the zoo mixes
families and input resolutions, so its models differ in what they get wrong:
- an MLP on the frame downscaled to 8x8;
- MobileNet-style depthwise-separable nets at two widths (one on a 16x16 frame);
- ResNet-style nets at two depths and two widths.
Every model takes the camera's frame (uint8 32x32x3, NHWC) and preprocesses it in its
graph, so any of them can serve a frame on the device or in the cloud.

Data: the glyph set, three disjoint splits from one seed: training, validation (kept for
the selection policies' tuning) and a held-out test split that only the final figures
see. Per model the bundle's "zoo" section records test accuracy, FLOPs and the build
host's onnxruntime latency (mean and std); the device's and the cloud's own latencies are
what calibration (or adaptinfd's warm-up) measures into the profile.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from adaptinf.toolchain import datasets, training
from adaptinf.toolchain.models import (GLYPH_MEAN, GLYPH_STD, BasicBlock, Classifier, Downsample, Preprocess,
                                       StagedModel)
from adaptinf.toolchain.onnx_accuracy import model_accuracy_onnx
from adaptinf.toolchain.onnx_export import export_onnx
from adaptinf.toolchain.onnx_flops import count_flops

FRAME = 32
LATENCY_RUNS = 50


def _staged(layers: "OrderedDict[str, nn.Module]", num_classes: int) -> StagedModel:
    return StagedModel(layers, [], (FRAME, FRAME, 3), num_classes)


def _front(resolution: int) -> "OrderedDict[str, nn.Module]":
    layers: OrderedDict[str, nn.Module] = OrderedDict(preprocess=Preprocess(GLYPH_MEAN, GLYPH_STD))
    if resolution < FRAME:
        layers["downsample"] = Downsample(resolution, FRAME)
    return layers


def mlp(num_classes: int, resolution: int = 8, hidden: int = 64) -> StagedModel:
    layers = _front(resolution)
    layers["mlp"] = nn.Sequential(nn.Flatten(), nn.Linear(3 * resolution * resolution, hidden), nn.ReLU(inplace=True),
                                  nn.Linear(hidden, num_classes))
    return _staged(layers, num_classes)


class SeparableBlock(nn.Module):
    """MobileNet's depthwise 3x3 then pointwise 1x1, each with batch norm and ReLU."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def mobilenet(num_classes: int, width: int, resolution: int = FRAME) -> StagedModel:
    w = width
    layers = _front(resolution)
    layers["stem"] = nn.Sequential(nn.Conv2d(3, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True))
    for i, (cin, cout, stride) in enumerate([(w, 2 * w, 2), (2 * w, 2 * w, 1), (2 * w, 4 * w, 2), (4 * w, 4 * w, 1)],
                                            start=1):
        layers[f"SB{i}"] = SeparableBlock(cin, cout, stride)
    layers["classifier"] = Classifier(4 * w, num_classes)
    return _staged(layers, num_classes)


def resnet(num_classes: int, width: int, blocks_per_stage: int, resolution: int = FRAME) -> StagedModel:
    """Three stages (width, 2x, 4x channels; the last two halve the map) of basic blocks,
    after a stride-2 stem: depth is blocks_per_stage x 3 blocks."""
    w = width
    layers = _front(resolution)
    layers["stem"] = nn.Sequential(nn.Conv2d(3, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True))
    cin, k = w, 0
    for stage, cout in enumerate((w, 2 * w, 4 * w)):
        for b in range(blocks_per_stage):
            k += 1
            layers[f"RB{k}"] = BasicBlock(cin, cout, 2 if (b == 0 and stage > 0) else 1)
            cin = cout
    layers["classifier"] = Classifier(cin, num_classes)
    return _staged(layers, num_classes)


@dataclass(frozen=True)
class ZooMember:
    name: str
    family: str
    width: int
    resolution: int
    depth: int          # blocks (or layers for the MLP)

    def build(self, num_classes: int) -> StagedModel:
        if self.family == "mlp":
            return mlp(num_classes, self.resolution, self.width)
        if self.family == "mobilenet":
            return mobilenet(num_classes, self.width, self.resolution)
        return resnet(num_classes, self.width, self.depth // 3, self.resolution)


# Cheapest first. Widths >= 8: narrower convolutions hang oneDNN's backward pass on CPU.
ZOO = (
    ZooMember("mlp_r8", "mlp", 64, 8, 2),
    ZooMember("mobilenet_w8_r16", "mobilenet", 8, 16, 4),
    ZooMember("mobilenet_w16", "mobilenet", 16, FRAME, 4),
    ZooMember("resnet3_w8", "resnet", 8, FRAME, 3),
    ZooMember("resnet6_w16", "resnet", 16, FRAME, 6),
    ZooMember("resnet9_w24", "resnet", 24, FRAME, 9),
)


@dataclass(frozen=True)
class ZooConfig:
    n_train: int = 8000
    n_val: int = 1000
    n_test: int = 2000
    epochs: int = 8
    seed: int = 0
    members: tuple[str, ...] = tuple(m.name for m in ZOO)   # a subset, for tests


def host_latency_ms(path: Path, frame: np.ndarray, runs: int = LATENCY_RUNS) -> tuple[float, float]:
    """Mean and std of one frame through onnxruntime on this host (after a warm-up run)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    session.run(None, {name: frame})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, {name: frame})
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.fmean(times), statistics.pstdev(times)


def build(out: Path, config: ZooConfig = ZooConfig(), progress: bool = True) -> dict:
    """Train and export every member; write the bundle; return the figures."""
    members = [m for m in ZOO if m.name in config.members]
    if len(members) != len(config.members):
        raise ValueError(f"unknown zoo members {sorted(set(config.members) - {m.name for m in ZOO})}; "
                         f"the zoo has {[m.name for m in ZOO]}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = datasets.glyphs(config.n_train + config.n_val + config.n_test, config.seed)
    cuts = np.cumsum([config.n_train, config.n_val])
    train_x, train_y = data.images[:cuts[0]], data.labels[:cuts[0]]
    val_x, val_y = data.images[cuts[0]:cuts[1]], data.labels[cuts[0]:cuts[1]]
    test_x, test_y = data.images[cuts[1]:], data.labels[cuts[1]:]
    classes = len(data.classes)
    rows = []
    for member in tqdm(members, desc="zoo", unit="model", disable=None if progress else True):
        training.set_seed(config.seed)
        model = member.build(classes)
        training.train(model, train_x, train_y, epochs=config.epochs, seed=config.seed, desc=member.name,
                       progress=progress)
        path = out / f"{member.name}.onnx"
        export_onnx(model, torch.from_numpy(train_x[:1]), path, "image", "logits")
        mean, std = host_latency_ms(path, test_x[:1])
        rows.append({**asdict(member), "file": path.name, "flops": count_flops(path),
                     "params": int(sum(p.numel() for p in model.parameters())),
                     "accuracy": model_accuracy_onnx(path, test_x, test_y),
                     "val_accuracy": model_accuracy_onnx(path, val_x, val_y),
                     "host_ms": mean, "host_ms_std": std})
    write_bundle(out, rows, data.classes, config)
    return {"models": rows, "config": asdict(config)}


def write_bundle(out: Path, rows: list[dict], classes: tuple[str, ...], config: ZooConfig) -> str:
    """The bundle: the zoo's models (the most accurate first: the bundle's full model) and a
    "zoo" section with each one's figures."""
    from adaptinf.bundle import write_manifest

    by_accuracy = sorted(rows, key=lambda r: -r["accuracy"])
    models = [{"name": r["name"], "file": r["file"], "role": "zoo", "accuracy": r["accuracy"], "flops": r["flops"],
               "params": r["params"]} for r in by_accuracy]
    manifest = {"name": "glyph-zoo", "created": __import__("datetime").datetime.now().isoformat(timespec="seconds"),
                "classes": list(classes),
                "input": {"name": "image", "dtype": "uint8", "shape": [1, FRAME, FRAME, 3], "layout": "NHWC"},
                "models": models,
                "zoo": {"models": [r["name"] for r in sorted(rows, key=lambda r: r["flops"])],   # cheapest first
                        "figures": {r["name"]: {k: r[k] for k in ("family", "width", "resolution", "depth",
                                                                  "val_accuracy", "host_ms", "host_ms_std")}
                                    for r in rows}},
                "data": {"dataset": "glyphs", "seed": config.seed, "n_train": config.n_train, "n_val": config.n_val,
                         "n_test": config.n_test, "accuracy": "the held-out test split", "epochs": config.epochs}}
    return write_manifest(out, manifest)


def report(result: dict) -> str:
    rows = result["models"]
    lines = [f"{'model':18} {'family':9} {'test acc':>8} {'val acc':>8} {'MFLOPs':>8} {'host ms':>8} {'± std':>6}"]
    for r in rows:
        lines.append(f"{r['name']:18} {r['family']:9} {r['accuracy']:8.2%} {r['val_accuracy']:8.2%} "
                     f"{r['flops'] / 1e6:8.3f} {r['host_ms']:8.3f} {r['host_ms_std']:6.3f}")
    flops = [r["flops"] for r in rows]
    ms = [r["host_ms"] for r in rows]
    lines.append(f"spread: {max(flops) / min(flops):.0f}x in FLOPs, {max(ms) / min(ms):.1f}x in host latency")
    return "\n".join(lines)


def save_report(out: Path, result: dict) -> None:
    (Path(out) / "zoo.json").write_text(json.dumps(result, indent=1))


def build_and_report(out: Path, config: ZooConfig) -> int:
    result = build(out, config)
    save_report(out, result)
    print(report(result))
    print(f"-> {out} (manifest.json, {len(result['models'])} zoo models, zoo.json)")
    return 0
