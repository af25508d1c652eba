"""`adaptinf build little`: the small models of thesis ch.4-7, added to a pool bundle.

From one width W, each model trained alone on the pool's training split (the thesis trains
each small model separately; the pool of `adaptinf build multiplexer` was trained jointly):
- dense_wW: glyph_resnet at width W (the width multiplier, ch.5.3.1);
- resR_wW: the same at input resolution R < 32 (the resolution multiplier, eq. 5.3: the
  frame is resized in the graph, so the bundle's input stays the camera's frame);
- prunedP_wW: dense_wW pruned by double shot (ch.7) to P% sparsity and retrained;
- cf_V_wW: dense_wW with its BatchNorms folded and SIEVE's custom floats (4.4.1), variant
  V in exact / accurate / approximate, without retraining. The ONNX graph holds weights
  that the per-layer format can represent and rounds each layer's input activation to its
  format, so the engine computes in full precision on exactly the compressed values.

Each goes into the manifest's models with role "little", its test accuracy, FLOPs
(non-zero weights only for a pruned one: what a sparse kernel executes), params, and:
- size_bytes: its weights as stored. Per weight tensor, the cheaper of dense and a
  non-zero bitmap plus the non-zeros, at 32 bits or the layer's custom-float width.
  Other initializers (biases) are 32-bit;
- activation_bytes: one frame's layer-input activations, at 32 bits or the layer's
  custom-float width;
- derivation: how it was made;
- confidence: its validation confidence histograms split into correct, correctable (the
  bundle's full model is right) and uncorrectable frames.
`adaptinf build duo` and `build mmnet` then choose among these and the pool.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from adaptinf import packed_floats
from adaptinf.bundle import load_bundle
from adaptinf.engines import open_engine
from adaptinf.engines.base import run_batched
from adaptinf.packed_floats import load_onnx_model
from adaptinf.policies.dynamic_duo import ModelOutputs
from adaptinf.toolchain import custom_float as cf
from adaptinf.toolchain import pruning
from adaptinf.toolchain.models import glyph_resnet
from adaptinf.toolchain.onnx_export import export_onnx
from adaptinf.toolchain.onnx_flops import count_flops, weighted_layers
from adaptinf.toolchain.speculative_build import confidence_histograms, pool_splits, rewrite_manifest
from adaptinf.toolchain.training import set_seed, train


@dataclass(frozen=True)
class LittleConfig:
    width: int = 16
    resolutions: tuple[int, ...] = (24, 16)
    keep: float = 0.1                        # double shot keeps this share of weights (0: no pruned model)
    custom_floats: tuple[str, ...] = ("exact", "accurate")
    epochs: int = 4
    n_explore: int = 500                     # validation frames the custom-float search measures on
    seed: int = 0

    def __post_init__(self):
        from adaptinf.toolchain.multiplexer import MIN_WIDTH

        if self.width < MIN_WIDTH:
            raise ValueError(f"width must be >= {MIN_WIDTH} (narrower glyph_resnets hang oneDNN's weight-gradient "
                             f"kernel on 2 threads), got {self.width}")
        if not all(8 <= r < 32 for r in self.resolutions):
            raise ValueError(f"resolutions must be in [8, 32) (the frame is 32x32), got {list(self.resolutions)}")
        if not 0.0 <= self.keep < 1.0:
            raise ValueError(f"keep must be in [0, 1) (0: no pruned model), got {self.keep}")
        unknown = set(self.custom_floats) - {"exact", "accurate", "approximate"}
        if unknown:
            raise ValueError(f"unknown custom-float variants {sorted(unknown)}; known: exact, accurate, approximate")
        if self.epochs < 1 or self.n_explore < 1:
            raise ValueError("epochs and n_explore must be >= 1")


def _key(weight: np.ndarray) -> bytes:
    return np.asarray(weight, np.float32).tobytes()


def tensor_bytes(weight: np.ndarray, bits: int) -> float:
    """Dense, or a non-zero bitmap plus the non-zeros: whichever is smaller."""
    dense = weight.size * bits
    sparse = weight.size + np.count_nonzero(weight) * bits
    return min(dense, sparse) / 8


def storage(path: Path, weight_formats: dict[bytes, cf.Format] | None = None,
            activation_formats: list[cf.Format | None] | None = None) -> tuple[int, int]:
    """(size_bytes, activation_bytes) of an ONNX model; formats found by the weight's bytes
    (a custom-float model's weights are exported as they are quantized) and by layer order."""
    import onnx

    weight_formats = weight_formats or {}
    layers = weighted_layers(path)
    size = 0.0
    layer_weights = {_key(layer.weight) for layer in layers if layer.weight is not None}
    for key in layer_weights:
        fmt = weight_formats.get(key)
        size += tensor_bytes(np.frombuffer(key, np.float32), fmt.bits if fmt else 32)
    for init in load_onnx_model(path).graph.initializer:
        array = onnx.numpy_helper.to_array(init)
        if _key(array) not in layer_weights:
            size += array.nbytes
    acts = activation_formats or [None] * len(layers)
    activation_bits = sum(layer.input_numel * (fmt.bits if fmt else 32) for layer, fmt in zip(layers, acts))
    return int(round(size)), int(round(activation_bits / 8))


def pack_graph(path: Path, weight_formats: dict[bytes, cf.Format]) -> str:
    """Store the custom-float weights of an exported graph packed (core/packed_floats.py):
    the graph keeps them as external data that the engines expand from the .cfw file.
    Returns the .cfw file's name."""
    import onnx
    from onnx.external_data_helper import set_external_data

    model = onnx.load(str(path))
    entries, tensors = [], []
    for init in model.graph.initializer:
        array = onnx.numpy_helper.to_array(init)
        fmt = weight_formats.get(_key(array)) if init.data_type == onnx.TensorProto.FLOAT else None
        if fmt is not None:
            entries.append(packed_floats.pack_tensor(init.name, array, fmt))
            tensors.append((init.name, array))
    offsets = packed_floats.expanded_offsets(tensors)
    for init in model.graph.initializer:
        if init.name in offsets:
            set_external_data(init, packed_floats.expanded_location(path), *offsets[init.name])
            init.ClearField("raw_data")
            init.data_location = onnx.TensorProto.EXTERNAL
    onnx.save(model, str(path))
    packed = packed_floats.packed_path(path)
    packed.write_bytes(packed_floats.dumps(entries))
    return packed.name


class _Builder:
    def __init__(self, bundle_dir: Path, config: LittleConfig, progress: bool):
        self.dir, self.config, self.progress = Path(bundle_dir), config, progress
        self.bundle = load_bundle(bundle_dir)
        self.train_split, self.val, self.test, self.classes = pool_splits(bundle_dir)
        full = self.bundle.full_model
        engine = open_engine(self.bundle.path(full.file), "onnxruntime")
        self.big_val = ModelOutputs.from_logits(full.name, run_batched(engine, self.val.images), self.val.labels, 0.0)
        self.entries: list[dict] = []

    def train(self, model: torch.nn.Module, desc: str) -> torch.nn.Module:
        train(model, self.train_split.images, self.train_split.labels, epochs=self.config.epochs, seed=self.config.seed,
              desc=desc, progress=self.progress)
        return model

    def add(self, name: str, model: torch.nn.Module, derivation: dict, sparse: bool = False,
            weight_formats: dict[str, cf.Format] | None = None,
            activation_formats: dict[str, cf.Format] | None = None) -> None:
        """Export `model` (with its custom floats applied while tracing, if any) and describe it."""
        file = f"little_{name}.onnx"
        path = self.dir / file
        example = torch.zeros(1, *model.input_shape, dtype=torch.uint8)
        with cf.Compressed(model, weight_formats or {}, activation_formats or {}):
            export_onnx(model, example, path, self.bundle.input.name, "logits")
            # the graph holds each layer's weight as it is while tracing: its bytes name the layer
            layer_of = {_key(m.weight.data.numpy()): n for n, m in cf.layers(model)}
        by_bytes = {key: weight_formats[n] for key, n in layer_of.items() if n in (weight_formats or {})}
        acts = None
        if activation_formats:
            acts = [activation_formats.get(layer_of.get(_key(layer.weight))) if layer.weight is not None else None
                    for layer in weighted_layers(path)]
        size, activation_bytes = storage(path, by_bytes, acts)
        packed = pack_graph(path, by_bytes) if by_bytes else ""     # measured below as stored
        engine = open_engine(path, "onnxruntime")
        test = ModelOutputs.from_logits(name, run_batched(engine, self.test.images), self.test.labels, 0.0)
        val = ModelOutputs.from_logits(name, run_batched(engine, self.val.images), self.val.labels, 0.0)
        self.entries.append({
            "name": name, "file": file, "role": "little", "accuracy": test.accuracy,
            "flops": count_flops(path, sparse=sparse), "params": int(sum(p.numel() for p in model.parameters())),
            "size_bytes": size, "activation_bytes": activation_bytes, "derivation": derivation,
            "confidence": confidence_histograms(val, self.big_val), **({"packed_weights": packed} if packed else {})})


def build_littles(bundle_dir: Path, config: LittleConfig = LittleConfig(), progress: bool = True) -> list[dict]:
    """Train and derive the small models, add them to the bundle (replacing same-named ones)."""
    b = _Builder(bundle_dir, config, progress)
    w, n = config.width, len(b.classes)
    set_seed(config.seed)
    initial = glyph_resnet(n, w)
    counts = (pruning.snip_keep_counts(copy.deepcopy(initial), b.train_split.images, b.train_split.labels,
                                       config.keep, seed=config.seed) if config.keep else None)
    dense = b.train(copy.deepcopy(initial), f"dense_w{w}")
    b.add(f"dense_w{w}", dense, {"method": "width", "width": w, "resolution": 32})
    for r in config.resolutions:
        set_seed(config.seed)
        b.add(f"res{r}_w{w}", b.train(glyph_resnet(n, w, r), f"res{r}_w{w}"),
              {"method": "resolution", "width": w, "resolution": r})
    if counts is not None:
        sparsity = round(100 * (1 - config.keep))
        pruned = pruning.prune_trained(initial, copy.deepcopy(dense), counts,
                                       lambda m: b.train(m, f"pruned{sparsity}_w{w}"))
        b.add(f"pruned{sparsity}_w{w}", pruned,
              {"method": "double-shot", "width": w, "keep": config.keep, "sparsity": pruning.sparsity(pruned),
               "dense_flops": b.entries[0]["flops"]}, sparse=True)
    if config.custom_floats:
        folded = cf.fold_batchnorm(dense)
        explore = slice(0, config.n_explore)
        explored = cf.explore(folded, b.val.images[explore], b.val.labels[explore], progress)
        counts_per_frame = cf.input_counts(folded, b.val.images[:1])
        for variant in tqdm(config.custom_floats, desc="custom-float networks", disable=None if progress else True, leave=False):
            weights, acts = cf.pick(explored, variant)
            w_ratio, a_ratio = cf.compression(folded, weights, acts, counts_per_frame)
            b.add(f"cf_{variant}_w{w}", folded,
                  {"method": "custom-float", "variant": variant, "width": w,
                   "weight_bits_ratio": w_ratio, "activation_bits_ratio": a_ratio,
                   "weights": {k: asdict(f) for k, f in sorted(weights.items())},
                   "activations": {k: asdict(f) for k, f in sorted(acts.items())}},
                  weight_formats=weights, activation_formats=acts)
    manifest = json.loads((b.dir / "manifest.json").read_text())
    added = {e["name"] for e in b.entries}
    manifest["models"] = [m for m in manifest["models"] if m["name"] not in added] + b.entries
    manifest.setdefault("data", {})["little_config"] = asdict(config)
    rewrite_manifest(b.dir, manifest)
    return b.entries


def report(entries: list[dict], full_name: str, full_accuracy: float | None) -> str:
    lines = [f"{'model':22} {'method':13} {'test acc':>8} {'MFLOPs':>8} {'size kB':>8} {'act kB':>7}"]
    for e in entries:
        lines.append(f"{e['name']:22} {e['derivation']['method']:13} {e['accuracy']:8.2%} {e['flops'] / 1e6:8.2f} "
                     f"{e['size_bytes'] / 1e3:8.1f} {e['activation_bytes'] / 1e3:7.1f}")
    if full_accuracy is not None:
        lines.append(f"(the bundle's full model {full_name}: {full_accuracy:.2%})")
    return "\n".join(lines)


def build_and_report(bundle_dir: Path, config: LittleConfig) -> int:
    entries = build_littles(bundle_dir, config)
    full = load_bundle(bundle_dir).full_model
    print(report(entries, full.name, full.accuracy))
    print(f"-> {bundle_dir}: {len(entries)} little models added; next: adaptinf build duo --bundle {bundle_dir}")
    return 0
