#!/usr/bin/env python3
"""ResNet-50 (torchvision's architecture) split at its 16 residual blocks: bytes per partition.

    python scripts/resnet50_partitions.py [--export DIR] [--image-size 224]

Paper 004 Fig. 5 and Table IV in numbers for adaptinf's butterfly: per block its
output channels D and spatial size, the float32 feature size without a butterfly,
the uint8 upload with the paper's minimum D_r (1 after RB1-3, 2 after RB4-7, 5
after RB8-13, 10 after RB14-16, Fig. 7), and head/tail FLOPs counted on the exported
ONNX graphs. Random weights: there is no ImageNet here, so accuracy is not measured
(users bring torchvision weights: adaptinf.toolchain.models.load_torchvision_state_dict).
With --export the heads, tails and full model are written as a bundle (accuracy null).
"""

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from tqdm import tqdm

from adaptinf.bundle import write_manifest
from adaptinf.toolchain.butterfly import Butterfly, SplitModel
from adaptinf.toolchain.models import resnet50
from adaptinf.toolchain.onnx_export import export_onnx
from adaptinf.toolchain.onnx_flops import count_flops

PAPER_D_R = {**{i: 1 for i in (1, 2, 3)}, **{i: 2 for i in range(4, 8)}, **{i: 5 for i in range(8, 14)},
             **{i: 10 for i in (14, 15, 16)}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", type=Path, default=None, help="write a bundle here")
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args()
    torch.manual_seed(0)
    size = args.image_size
    model = resnet50(image_size=size).eval()
    x = torch.randint(0, 256, (1, size, size, 3), dtype=torch.uint8)
    out = args.export or Path(tempfile.mkdtemp(prefix="resnet50-"))
    out.mkdir(parents=True, exist_ok=True)
    export_onnx(model, x, out / "full.onnx", "image", "logits")
    full_flops = count_flops(out / "full.onnx")
    raw_bytes = size * size * 3
    rows, points = [], []
    for i in tqdm(range(1, 17), desc="RB1..RB16", unit="point", disable=None):
        name = f"RB{i}"
        split = SplitModel(model, name, None)
        with torch.no_grad():
            feats = split.head_features(x)
        split.butterfly = Butterfly(feats.shape[1], PAPER_D_R[i])
        split.butterfly.init_from_pca(feats)  # a sensible projection even without training
        export_onnx(split.head(), x, out / f"{name}.head.onnx", "image", "reduced")
        with torch.no_grad():
            reduced = split.head()(x)
        export_onnx(split.tail(), reduced, out / f"{name}.tail.onnx", "reduced", "logits")
        d, h, w = feats.shape[1:]
        upload = int(reduced.numel())
        head_flops, tail_flops = count_flops(out / f"{name}.head.onnx"), count_flops(out / f"{name}.tail.onnx")
        rows.append((name, d, f"{h}x{w}", d * h * w * 4, PAPER_D_R[i], upload, head_flops, tail_flops))
        points.append({"name": name, "layer": f"stages.{name}", "D": d, "D_r": PAPER_D_R[i],
                       "reduced_shape": list(reduced.shape), "upload_bytes": upload, "head": f"{name}.head.onnx",
                       "tail": f"{name}.tail.onnx", "head_flops": head_flops, "tail_flops": tail_flops,
                       "accuracy": None, "accuracy_float": None})
    print(f"ResNet-50 at {size}x{size}x3: raw input {raw_bytes} B (uint8), full model {full_flops / 1e9:.2f} GFLOP\n")
    print("| point | D | H x W | float32 features (B) | D_r | uploaded, uint8 (B) | vs raw input | "
          "head GFLOP | tail GFLOP |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, d, hw, fbytes, dr, up, hf, tf in rows:
        print(f"| {name} | {d} | {hw} | {fbytes:,} | {dr} | {up:,} | {raw_bytes / up:.0f}x smaller | "
              f"{hf / 1e9:.2f} | {tf / 1e9:.2f} |")
    if args.export:
        write_manifest(out, {"name": "resnet50-random", "classes": [str(i) for i in range(1000)],
                             "input": {"name": "image", "dtype": "uint8", "shape": [1, size, size, 3]},
                             "models": [{"name": "full", "file": "full.onnx", "role": "big", "accuracy": None,
                                         "flops": full_flops}],
                             "split": {"model": "full", "baseline_accuracy": None, "accuracy_loss_bound": 0.02,
                                       "upload": {"dtype": "uint8", "scheme": "per-tensor-affine"},
                                       "points": points},
                             "data": {"weights": "random init (no ImageNet here)"}})
        print(f"\nbundle written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
