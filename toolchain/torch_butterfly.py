"""`adaptinf build split --torch MODULE:FACTORY --weights CKPT.pt --dataset folder:PATH`:
paper 004's butterfly on a user's own trained PyTorch model. It fine-tunes from the
user's weights; it never trains from scratch.

The model is any torch.nn.Module: a torchvision or timm architecture, or the user's own.
Nothing of its structure is assumed beyond what a forward pass shows:

1. Candidate points are the outputs of the blocks of its sequential containers (a
   residual network's blocks, a MobileNet's inverted residuals), found by running one
   frame with forward hooks, and `points` of them are spread over its FLOPs.
2. Algorithm 1 per point: a butterfly (1x1 reduction D -> D_r, the per-frame 8-bit upload,
   1x1 restoration) is attached to that block's output by a forward hook, started from
   PCA and fine-tuned with the whole model; the smallest D_r within `accuracy_loss` of the
   unsplit model on validation frames is kept (split_builder.search_min_dr).
3. Export: the model with its butterfly goes through torch.onnx, and the ONNX cutter
   (toolchain/onnx_cuts.py) cuts it at the reduction's output. If anything else crosses
   there (a skip connection around the block), the point is refused.
4. Held-out test frames, never used by the search, give each point's accuracy beside the
   plain 8-bit cut at the same block (the raw features uploaded, no butterfly): the
   comparison paper 004 makes.

Frames: the bundle takes uint8 NHWC at the model's size, normalised inside its graph
(`mean`, `std`), and ships a resize-only preprocessing graph for camera frames; the
training and test images are read through that same graph.
"""

from __future__ import annotations

import copy
import datetime as dt
import importlib
import inspect
import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper, utils
from torch import nn
from tqdm import tqdm

from adaptinf.bundle import PreprocessSpec, write_manifest
from adaptinf.toolchain.butterfly import Butterfly, fake_quantize
from adaptinf.toolchain.onnx_cuts import find_cuts, head_and_tail
from adaptinf.toolchain.onnx_export import export_onnx
from adaptinf.toolchain.onnx_flops import count_flops
from adaptinf.toolchain.onnx_split import (IMAGENET_MEAN, IMAGENET_STD, SampleMaker, _folder, _image_files,
                                           _session, prepare, read_image)
from adaptinf.toolchain.models import Preprocess
from adaptinf.toolchain.preprocess_graph import write_preprocess_graph
from adaptinf.toolchain.split_builder import DrSearch, search_min_dr
from adaptinf.toolchain.training import accuracy, correct, predict, set_seed, train
from adaptinf.upload_quant import as_received

FULL_FILE = "full.onnx"
PREPROCESS_FILE = "preprocess.onnx"
BUTTERFLY = "adaptinf_butterfly"


class TorchSplitError(ValueError):
    """A model, checkpoint or data set this build cannot take; the message says what to change."""


@dataclass(frozen=True)
class TorchSplitConfig:
    factory: str                       # "package.module:callable" returning an nn.Module
    weights: str                       # the user's checkpoint: a state_dict (torch.save(model.state_dict()))
    dataset: str                       # folder:PATH/<class>/<image>
    name: str = ""
    size: int = 224                    # the model's input: size x size RGB
    points: int = 4
    accuracy_loss: float = 0.02        # Algorithm 1's bound
    confidence: float = 0.95           # ...met by the loss's upper confidence bound (split_builder.loss_upper_bound)
    max_dr: int = 16                   # the largest D_r tried per point (0: up to D, as the paper)
    finetune_epochs: int = 2
    finetune_samples: int = 2000
    lr: float = 1e-4                   # a trained model: larger steps undo its training in a few batches
    val_fraction: float = 0.2          # Algorithm 1 judges here
    test_fraction: float = 0.3         # held out from everything, only reported
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resize: str = "stretch"
    seed: int = 0


class FrameModel(nn.Module):
    """The user's model behind the normalisation, so it takes uint8 NHWC frames."""

    def __init__(self, model: nn.Module, mean, std):
        super().__init__()
        self.preprocess = Preprocess(tuple(mean), tuple(std))
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.preprocess(x))


def load_user_model(factory: str, weights: str | Path, num_classes: int) -> nn.Module:
    """factory() (with num_classes= when it takes it), with the checkpoint's weights, strictly."""
    module_name, _, attr = factory.partition(":")
    if not module_name or not attr:
        raise TorchSplitError(f"--torch takes MODULE:FACTORY (e.g. torchvision.models:resnet18), got {factory!r}")
    try:
        make = getattr(importlib.import_module(module_name), attr)
    except (ImportError, RuntimeError) as exc:     # torchvision raises RuntimeError beside a CPU-only torch
        raise TorchSplitError(f"--torch {factory}: cannot import {module_name} ({type(exc).__name__}: {exc})") from None
    except AttributeError:
        raise TorchSplitError(f"--torch {factory}: {module_name} has no {attr!r}") from None
    try:
        takes_classes = "num_classes" in inspect.signature(make).parameters
    except (TypeError, ValueError):
        takes_classes = False
    model = make(num_classes=num_classes) if takes_classes else make()
    if not isinstance(model, nn.Module):
        raise TorchSplitError(f"--torch {factory} returned {type(model).__name__}, not a torch.nn.Module")
    try:
        state = torch.load(str(weights), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TorchSplitError(f"--weights {weights}: not a checkpoint torch can read safely "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); save "
                              "model.state_dict() with torch.save") from None
    for key in ("state_dict", "model"):          # the common wrappers of a training checkpoint
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise TorchSplitError(f"--weights {weights}: expected a state_dict, got {type(state).__name__}")
    state = {k.removeprefix("module."): v for k, v in state.items()}     # saved from DataParallel
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise TorchSplitError(f"--weights {weights} does not fit {factory}"
                              f"{f'(num_classes={num_classes})' if takes_classes else '()'}: "
                              f"{str(exc).splitlines()[0][:300]}") from None
    return model.eval()


@dataclass(frozen=True)
class Block:
    name: str             # module path inside the user's model
    channels: int
    flops_before: int     # multiply-adds x 2 of the convolutions and linears up to its output


def candidate_blocks(model: nn.Module, example: torch.Tensor) -> tuple[list[Block], int]:
    """The blocks of the model's sequential containers whose output is a feature map, in the
    order they run, with the FLOPs done by then; and the model's total FLOPs. A container
    inside a block (a residual block's body) is not walked into: a skip connection may
    cross it."""
    sequential_children = set()

    def walk(module: nn.Module) -> None:
        for child in module.children():
            if isinstance(module, nn.Sequential):
                sequential_children.add(id(child))
            if isinstance(child, nn.Sequential) or module is model:
                walk(child)
    walk(model)
    done = [0]
    blocks: list[Block] = []
    hooks = []

    def count(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            done[0] += 2 * output.numel() * (module.in_channels // module.groups) * int(np.prod(module.kernel_size))
        elif isinstance(module, nn.Linear):
            done[0] += 2 * output.numel() // output.shape[-1] * module.in_features * module.out_features

    def record(name):
        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor) and output.dim() == 4 and name not in {b.name for b in blocks}:
                blocks.append(Block(name, int(output.shape[1]), done[0]))
        return hook

    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            hooks.append(module.register_forward_hook(count))
        if id(module) in sequential_children and name:
            hooks.append(module.register_forward_hook(record(name)))
    training = model.training
    model.eval()
    with torch.no_grad():
        model(example)
    model.train(training)
    for h in hooks:
        h.remove()
    return blocks, done[0]


def spread_blocks(blocks: list[Block], total: int, n: int) -> list[Block]:
    """n blocks nearest to evenly spaced shares of the FLOPs, each with work on both sides."""
    useful = [b for b in blocks if 0 < b.flops_before < total]
    chosen: list[Block] = []
    for k in range(1, n + 1):
        pool = [b for b in useful if b not in chosen]
        if pool:
            chosen.append(min(pool, key=lambda b: abs(b.flops_before - total * k / (n + 1))))
    return sorted(chosen, key=lambda b: b.flops_before)


def attach(model: FrameModel, block: str, butterfly: nn.Module) -> FrameModel:
    """The butterfly on `block`'s output (its parameters become the model's)."""
    model.add_module(BUTTERFLY, butterfly)
    dict(model.model.named_modules())[block].register_forward_hook(lambda m, i, out: butterfly(out))
    return model


class _Plain8Bit(nn.Module):
    """The ONNX path's plain cut, for comparison: the block's features as the link carries them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fake_quantize(x)


def _block_features(model: FrameModel, block: str, images: np.ndarray) -> torch.Tensor:
    captured = []
    handle = dict(model.model.named_modules())[block].register_forward_hook(
        lambda m, i, out: captured.append(out.detach()))
    predict(model, images)
    handle.remove()
    return torch.cat(captured)


def _split(data: tuple[np.ndarray, np.ndarray], config: TorchSplitConfig):
    images, labels = data
    order = np.random.default_rng(config.seed).permutation(len(labels))
    n_test = max(1, int(len(labels) * config.test_fraction))
    n_val = max(1, int(len(labels) * config.val_fraction))
    parts = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    if len(parts[2]) < 1:
        raise TorchSplitError("--dataset is too small to keep test, validation and fine-tuning images apart")
    return [(images[p], labels[p]) for p in parts]


def build_torch_split(config: TorchSplitConfig, out: Path, progress: bool = True) -> dict:
    """Fine-tune butterflies into the user's model, cut, check; returns the manifest written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    set_seed(config.seed)
    root = _folder(config.dataset, "--dataset")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    files = [(f, label) for label, name in enumerate(classes) for f in _image_files(root / name)]
    if len(classes) < 2 or len(files) < 10:
        raise TorchSplitError(f"--dataset {root}: expected <class>/<image> files of two or more classes")
    preprocess = PreprocessSpec(PREPROCESS_FILE, config.resize, (config.size, config.size), "RGB", "NHWC", 1.0,
                                (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    write_preprocess_graph(preprocess, "uint8", out / PREPROCESS_FILE)
    frames = SampleMaker(out / PREPROCESS_FILE, (1, config.size, config.size, 3), "uint8", config.seed)
    images = frames.from_frames([read_image(f) for f, _ in files])
    (test_x, test_y), (val_x, val_y), (train_x, train_y) = _split((images, np.array([l for _, l in files])), config)

    base = FrameModel(load_user_model(config.factory, config.weights, len(classes)), config.mean, config.std).eval()
    base_correct = correct(base, val_x, val_y)
    baseline, baseline_test = float(base_correct.mean()), accuracy(base, test_x, test_y)
    example = torch.from_numpy(val_x[:1])
    export_onnx(base, example, out / FULL_FILE, "image", "logits")
    blocks, total = candidate_blocks(base.model, base.preprocess(example))
    chosen = spread_blocks(blocks, total, config.points)
    if not chosen:
        raise TorchSplitError(f"--torch {config.factory}: no block of a sequential container outputs a feature map "
                              "with work on both sides; use --onnx, which cuts at any graph tensor")
    points, rejected = [], []
    tune = np.random.default_rng(config.seed).permutation(len(train_y))[:config.finetune_samples]
    for k, block in enumerate(tqdm(chosen, desc="split points", unit="point", disable=None if progress else True), 1):
        models: dict[int, FrameModel] = {}
        features = _block_features(base, block.name, train_x[:256])

        def evaluate(d_r: int) -> np.ndarray:
            butterfly = Butterfly(block.channels, d_r)
            butterfly.init_from_pca(features)
            model = attach(copy.deepcopy(base), block.name, butterfly)
            train(model, train_x[tune], train_y[tune], epochs=config.finetune_epochs, lr=config.lr,
                  seed=config.seed + d_r, desc=f"{block.name} D_r={d_r}", progress=progress, freeze_batchnorm=True)
            models[d_r] = model
            return correct(model, val_x, val_y)

        search = search_min_dr(block.channels, evaluate, base_correct, config.accuracy_loss, config.confidence,
                               config.max_dr)
        plain = attach(copy.deepcopy(base), block.name, _Plain8Bit())
        plain_test = accuracy(plain, test_x, test_y)
        record = {"name": f"B{k}", "layer": block.name, "D": block.channels,
                  "search": [{"D_r": d, "accuracy": a, "loss_ucb": ucb} for d, a, ucb in search.trials],
                  "plain_8bit": {"accuracy_test": plain_test}}
        if search.chosen is None:
            rejected.append(dict(record, reason=f"no D_r up to {config.max_dr or block.channels} met the bound"))
            continue
        point = _export_point(models[search.chosen], record, search, out, (val_x, val_y), (test_x, test_y))
        (points if "reason" not in point else rejected).append(point)
    manifest = {
        "name": config.name or config.factory.rpartition(":")[2],
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "classes": classes,
        "input": {"name": "image", "dtype": "uint8", "shape": [1, config.size, config.size, 3], "layout": "NHWC"},
        "preprocess": preprocess.to_manifest(),
        "models": [{"name": "full", "file": FULL_FILE, "role": "big", "accuracy": baseline,
                    "accuracy_test": baseline_test, "flops": count_flops(out / FULL_FILE),
                    "params": sum(p.numel() for p in base.parameters())}],
        "split": {"model": "full", "baseline_accuracy": baseline, "baseline_accuracy_test": baseline_test,
                  "accuracy_loss_bound": config.accuracy_loss,
                  "upload": {"dtype": "uint8", "scheme": "per-tensor-affine"},
                  "points": points, "rejected_points": rejected},
        "data": {"dataset": str(root), "n_train": len(train_y), "n_val": len(val_y), "n_test": len(test_y),
                 "source": config.factory, "weights": str(config.weights), "build_config": asdict(config)},
    }
    write_manifest(out, manifest)
    return json.loads((out / "manifest.json").read_text())


def _export_point(model: FrameModel, record: dict, search: DrSearch, out: Path, val, test) -> dict:
    """The fine-tuned model with its butterfly, exported whole and cut at the reduction's output."""
    butterfly: Butterfly = getattr(model, BUTTERFLY)
    butterfly.quantize_upload = False          # the daemon quantises each frame outside the graph
    with tempfile.TemporaryDirectory(prefix="adaptinf-butterfly-") as tmp:
        export_onnx(model, torch.from_numpy(val[0][:1]), Path(tmp) / "m.onnx", "image", "logits")
        graph = prepare(Path(tmp) / "m.onnx").model
    reduced = _reduction_output(graph, butterfly.reduction.weight.detach().numpy())
    if reduced is None or (reduced,) not in [c.tensors for c in find_cuts(graph, max_tensors=1)]:
        return dict(record, reason="something besides the butterfly crosses this block (a skip connection): "
                                   "the head cannot hand over the reduced tensor alone")
    cut = next(c for c in find_cuts(graph, max_tensors=1) if c.tensors == (reduced,))
    head, tail = head_and_tail(graph, cut, utils.Extractor(graph))
    name = record["name"]
    onnx.save(head, str(out / f"{name}.head.onnx"))
    onnx.save(tail, str(out / f"{name}.tail.onnx"))
    head_s, tail_s = _session(str(out / f"{name}.head.onnx")), _session(str(out / f"{name}.tail.onnx"))

    def split_accuracy(images: np.ndarray, labels: np.ndarray) -> float:
        right = 0
        for image, label in zip(images, labels):
            r = head_s.run(None, {head_s.get_inputs()[0].name: image[None]})[0]
            logits = tail_s.run(None, {tail_s.get_inputs()[0].name: as_received(r)})[0]
            right += int(logits.argmax() == label)
        return right / len(labels)

    shape = [1, *cut.shapes[0][1:]]
    return dict(record, **{
        "D_r": int(search.chosen), "reduced_shape": shape, "upload": "uint8",
        "upload_bytes": int(np.prod(shape)), "head": f"{name}.head.onnx", "tail": f"{name}.tail.onnx",
        "head_flops": count_flops(out / f"{name}.head.onnx"), "tail_flops": count_flops(out / f"{name}.tail.onnx"),
        "accuracy": split_accuracy(*val), "accuracy_float": None, "accuracy_test": split_accuracy(*test),
        "plain_8bit": dict(record["plain_8bit"], upload_bytes=int(np.prod(shape)) // search.chosen * record["D"])})


def _reduction_output(graph: onnx.ModelProto, weight: np.ndarray) -> str | None:
    """The output of the Conv whose weight is the butterfly's reduction."""
    inits = {i.name: i for i in graph.graph.initializer}
    for node in graph.graph.node:
        if node.op_type == "Conv" and node.input[1] in inits:
            w = numpy_helper.to_array(inits[node.input[1]])
            if w.shape == weight.shape and np.allclose(w, weight, atol=1e-6):
                return node.output[0]
    return None
