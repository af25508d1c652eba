"""Models nobody here designed, through `build split --onnx` and `--torch`: build time,
per-point agreement with the full model, and held-out accuracy of a fine-tuned one.

    python bench/own_models.py                 # everything (about 15 min on 2 cores)
    python bench/own_models.py --only build    # ResNet-50's build time alone (about 2 min)

1. build: ResNet-50 (25.6 M parameters, 224x224, random weights) exported by torch.onnx as a
   user would, then `build split --onnx --points 4 --samples 32`, timed end to end
   (the issue's bound: under 2 minutes on 2 cores).
2. agreement: ResNet-18, MobileNetV2, EfficientNet-B0 (efficientnet_pytorch) and a U-Net at
   224x224, random weights with non-trivial BatchNorm statistics, built the same way; per
   point, top-1 agreement (classifiers) or the largest output error (U-Net) against the
   full model on 100 inputs drawn from a seed the build never saw.
3. accuracy: ResNet-18 (quarter width) trained briefly on 224x224 glyphs, as a user would on
   their own data, saved as a checkpoint; then (a) `--onnx --dataset folder:` gives the
   plain 8-bit cut's held-out accuracy per point, (b) `--torch --weights` gives the
   butterfly's, beside the plain cut at the same blocks.

Writes build/bench/own_models.json and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from adaptinf.bundle import load_bundle
from adaptinf.rig import published_models as pm
from adaptinf.toolchain.onnx_split import OnnxSplitConfig, build_onnx_split
from adaptinf.upload_quant import as_received

SIZE = 224
RESULTS = Path(__file__).resolve().parent.parent / "build" / "bench"    # git-ignored


def session(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run(s, x):
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def build_time(tmp: Path) -> dict:
    torch.manual_seed(0)
    start = time.perf_counter()
    source = pm.export(pm.randomise_batchnorm(pm.ResNet50()), SIZE, tmp / "resnet50.onnx")
    exported = time.perf_counter()
    build_onnx_split(source, tmp / "resnet50", OnnxSplitConfig(points=4, samples=32), progress=False)
    built = time.perf_counter()
    bundle = load_bundle(tmp / "resnet50")
    return {"model": "ResNet-50", "onnx_mb": source.stat().st_size / 1e6, "export_s": exported - start,
            "build_s": built - exported, "points": [(p.name, p.upload_bytes) for p in bundle.split.points]}


def agreement(tmp: Path) -> list[dict]:
    models = {"ResNet-18": lambda: pm.ResNet18(1000), "MobileNetV2": lambda: pm.MobileNetV2(1000),
              "EfficientNet-B0": lambda: pm.efficientnet_b0(1000), "U-Net": lambda: pm.UNet(2, width=16, depth=4)}
    rows = []
    x = np.random.default_rng(4242).standard_normal((100, 3, SIZE, SIZE)).astype(np.float32)
    for name, make in models.items():
        torch.manual_seed(0)
        source = pm.export(pm.randomise_batchnorm(make()), SIZE, tmp / f"{name}.onnx")
        start = time.perf_counter()
        build_onnx_split(source, tmp / name, OnnxSplitConfig(points=4, samples=32), progress=False)
        seconds = time.perf_counter() - start
        bundle = load_bundle(tmp / name)
        full = np.stack([run(session(source), f[None])[0] for f in x])
        for p in bundle.split.points:
            head, tail = session(bundle.path(p.head)), session(bundle.path(p.tail))
            split = np.stack([run(tail, as_received(run(head, f[None]), p.upload))[0] for f in x])
            row = {"model": name, "build_s": seconds, "point": p.name, "upload": p.upload,
                   "upload_bytes": p.upload_bytes, "input_bytes": bundle.input.nbytes,
                   "head_share": p.head_flops / bundle.full_model.flops}
            if name == "U-Net":
                row.update(max_abs_error=float(np.abs(split - full).max()), output_range=float(full.max() - full.min()))
            else:
                row["top1_agreement"] = float((split.argmax(-1) == full.argmax(-1)).mean())
            rows.append(row)
    return rows


def accuracy(tmp: Path) -> dict:
    from PIL import Image

    from adaptinf.toolchain.glyphs import make_glyphs
    from adaptinf.toolchain.torch_butterfly import FrameModel, TorchSplitConfig, build_torch_split
    from adaptinf.toolchain.training import train

    glyphs = make_glyphs(4000, seed=77_000, size=SIZE)       # a seed no shipped bundle trained on
    classes = sorted(set(glyphs.classes))
    labels = np.array([classes.index(glyphs.classes[label]) for label in glyphs.labels])
    data = tmp / "glyphs224"
    for i, (image, label) in enumerate(zip(glyphs.images, glyphs.labels)):
        (data / glyphs.classes[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(data / glyphs.classes[label] / f"{i}.png")
    module = tmp / "usermodel.py"
    module.write_text("from adaptinf.rig.published_models import ResNet18\n\n\n"
                      "def resnet18_quarter(num_classes=16):\n    return ResNet18(num_classes, width=16)\n")
    sys.path.insert(0, str(tmp))
    torch.manual_seed(0)
    model = pm.ResNet18(len(classes), width=16)
    start = time.perf_counter()
    train(FrameModel(model, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), glyphs.images[:2800], labels[:2800],
          epochs=6, lr=3e-3, batch_size=64, desc="user training")
    trained_s = time.perf_counter() - start
    torch.save(model.state_dict(), tmp / "user.pt")
    pm.export(model, SIZE, tmp / "user.onnx")
    onnx_manifest = build_onnx_split(tmp / "user.onnx", tmp / "user_onnx",
                                     OnnxSplitConfig(points=4, dataset=f"folder:{data}", held_out=0.3))
    torch_manifest = build_torch_split(TorchSplitConfig(factory="usermodel:resnet18_quarter",
                                                        weights=str(tmp / "user.pt"), dataset=f"folder:{data}",
                                                        size=SIZE, points=4, finetune_samples=1200), tmp / "user_bf")
    return {"train_s": trained_s, "onnx": onnx_manifest["split"] | {"full": onnx_manifest["models"][0]["accuracy"]},
            "butterfly": torch_manifest["split"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["build", "agreement", "accuracy"], default=None)
    args = parser.parse_args()
    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="adaptinf-own-") as tmp:
        tmp = Path(tmp)
        if args.only in (None, "build"):
            out["build"] = build_time(tmp)
            b = out["build"]
            print(f"ResNet-50 ({b['onnx_mb']:.0f} MB ONNX): build split --onnx --points 4 --samples 32 took "
                  f"{b['build_s']:.1f} s (export {b['export_s']:.1f} s); points {b['points']}")
        if args.only in (None, "agreement"):
            out["agreement"] = agreement(tmp)
            print(f"{'model':16} {'build s':>7} {'point':5} {'upload':7} {'bytes':>8} {'of frame':>8} {'head':>5}  "
                  "agreement with the full model (100 fresh inputs)")
            for r in out["agreement"]:
                what = (f"top-1 {r['top1_agreement']:.0%}" if "top1_agreement" in r else
                        f"max error {r['max_abs_error']:.4f} of a {r['output_range']:.2f} range")
                print(f"{r['model']:16} {r['build_s']:7.1f} {r['point']:5} {r['upload']:7} {r['upload_bytes']:8d} "
                      f"{r['upload_bytes'] / r['input_bytes']:8.1%} {r['head_share']:5.0%}  {what}")
        if args.only in (None, "accuracy"):
            out["accuracy"] = acc = accuracy(tmp)
            print(f"ResNet-18/4 trained {acc['train_s']:.0f} s on 2800 glyphs at 224 (the user's checkpoint); "
                  "held-out accuracy:")
            print(f"  ONNX path: full {acc['onnx']['full']:.3f}; " + ", ".join(
                f"{p['name']} {p['accuracy']:.3f} ({p['upload_bytes']} B)" for p in acc["onnx"]["points"]))
            bf = acc["butterfly"]
            print(f"  butterfly: full {bf['baseline_accuracy_test']:.3f} test")
            for p in bf["points"]:
                print(f"    {p['name']} {p['layer']}: D_r {p['D_r']}/{p['D']}, {p['upload_bytes']} B, test "
                      f"{p['accuracy_test']:.3f}; plain 8-bit cut {p['plain_8bit']['upload_bytes']} B, test "
                      f"{p['plain_8bit']['accuracy_test']:.3f}")
            for p in bf["rejected_points"]:
                print(f"    {p['name']} {p['layer']}: rejected ({p['reason']}); plain 8-bit cut test "
                      f"{p['plain_8bit']['accuracy_test']:.3f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "own_models.json").write_text(json.dumps(out, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
