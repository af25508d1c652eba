"""The model bundle: a directory with manifest.json and ONNX files (format version 1).

Made by the toolchain (`adaptinf build split`), read by the daemon, the cloud worker
and calibration. This module is the one definition of the manifest; it needs no torch.

manifest.json, version 1:
  {"format": "adaptinf-bundle", "version": 1, "name": str, "created": iso8601,
   "classes": [str, ...]   (empty: not a classifier; no label, no confidence policies),
   "input": {"name": "image", "dtype": "uint8", "shape": [1, H, W, C], "layout": "NHWC"},
   optional "outputs": [{"name", "dtype", "shape"}]: the model's named outputs; every graph
             that answers a frame (full, tails, zoo models) has ONE output, these tensors
             flattened and concatenated in order as float32 (absent: one output, the
             classes' logits [1, len(classes)]),
   optional "preprocess": {"graph": "preprocess.onnx", "resize": "stretch"|"letterbox"|"center-crop",
             "size": [h, w], "channel_order": "RGB"|"BGR", "layout": "NCHW"|"NHWC",
             "scale", "mean": [3], "std": [3]}: a camera frame (uint8 H x W x 3 RGB, any
             size) -> the input tensor (toolchain/preprocess_graph.py),
   "models": [{"name", "file", "role", "accuracy", "flops", "params",
               optional: "size_bytes", "activation_bytes", "derivation": {"method", ...},
               "confidence": {"bins", "correct", "correctable", "uncorrectable"},
               "packed_weights": <file beside "file", same stem, .cfw: SIEVE's custom floats,
               core/packed_floats.py>}]
             (role "little": a small model from `adaptinf build little`),
   "split": {"model": <name in models>, "baseline_accuracy", "accuracy_loss_bound",
             "upload": {"dtype": "uint8", "scheme": "per-tensor-affine"},
             "points": [{"name", "layer", "D", "D_r", "reduced_shape", "upload_bytes",
                         "head", "tail", "head_flops", "tail_flops", "accuracy",
                         "accuracy_float", "search": [{"D_r", "accuracy"}...],
                         optional "upload": "uint8" (default: per-frame affine) | "float16",
                         optional "agreement": {...}: split against full on sample inputs}]},
   "multiplexer": {"pool": [model names, cheapest first], "costs": [FLOPs / the cheapest's],
                   "model": <the pool's multiplexer, a model>, "threshold": T (Algorithm 2),
                   "pair": {"model": <the device/cloud multiplexer>, "device": <pool model>,
                            "cloud": <pool model: the bundle's full model>, "threshold": 0.5}}
                  (optional: papers 000/001, made by `adaptinf build multiplexer`),
   "dynamic_duo": {"little": <model>, "big": <the bundle's full model>, "thresholds": [one per class],
                   "power_saving_thresholds": [one per class], "target_accuracy", "recovery_rate",
                   "power_saving_recovery_rate", "confidence": {model: {"bins", "correct",
                   "correctable", "uncorrectable"}},
                   optional "alternatives": [{"little", "thresholds", "power_saving_thresholds",
                                              "recovery_rate", "power_saving_recovery_rate"}]}
                  (optional: thesis ch.6, added by `adaptinf build duo`),
   "mmnet": {"minions": [<model>, <model>], "master": <the bundle's full model>,
             "thresholds": [t_1, t_2], "recovery_rate", "accuracy", "target_accuracy"}
            (optional: thesis ch.5, added by `adaptinf build mmnet`),
   "data": {...provenance...},
   "files": {relative path: {"sha256", "bytes"}}}

Every referenced file must be listed under "files" with its hash; loading verifies
them all, and the manifest's own sha256 identifies the bundle in profiles.
"""

from __future__ import annotations

import hashlib
import math
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from adaptinf.packed_floats import PackedWeightsError, add_to_session_options, packed_path

FORMAT = "adaptinf-bundle"
VERSION = 1
MANIFEST = "manifest.json"

# dtypes a bundle input (and the local API) may use: numpy names.
INPUT_DTYPES = ("uint8", "int8", "float16", "float32")
# dtypes a model's named outputs come back as (carried as float32: exact for these up to 2**24)
OUTPUT_DTYPES = ("float32", "float16", "int64", "int32", "uint8", "int8", "bool")


# what a preprocessing graph may do: how the frame is fitted to the model's size
RESIZE_MODES = ("stretch", "letterbox", "center-crop")
UPLOAD_DTYPES = ("uint8", "float16")


class BundleError(ValueError):
    """A bundle that cannot be used; the message names the problem and the file."""


@dataclass(frozen=True)
class InputSpec:
    name: str
    dtype: str
    shape: tuple[int, ...]
    layout: str = "NHWC"

    @property
    def nbytes(self) -> int:
        import numpy as np

        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class OutputSpec:
    """One named output of the model, as the API returns it."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return int(math.prod(self.shape))


@dataclass(frozen=True)
class PreprocessSpec:
    """How a camera frame becomes the model's input; `graph` computes it (the one implementation)."""

    graph: str
    resize: str
    size: tuple[int, int]
    channel_order: str = "RGB"
    layout: str = "NCHW"
    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def to_manifest(self) -> dict:
        return {"graph": self.graph, "resize": self.resize, "size": list(self.size),
                "channel_order": self.channel_order, "layout": self.layout, "scale": self.scale,
                "mean": list(self.mean), "std": list(self.std)}


@dataclass(frozen=True)
class ModelEntry:
    name: str
    file: str
    role: str
    accuracy: float | None     # None: not measured (random weights)
    flops: int
    params: int = 0
    # `adaptinf build little` (toolchain/little_models.py) also records these; 0 / empty: not recorded
    size_bytes: int = 0                  # the weights as stored (custom floats, sparse bitmaps)
    activation_bytes: int = 0            # one frame's layer-input activations as stored
    derivation: dict = field(default_factory=dict, hash=False, compare=False)
    confidence: dict = field(default_factory=dict, hash=False, compare=False)
    packed_weights: str = ""             # the .cfw file the graph's custom-float weights expand from


@dataclass(frozen=True)
class SplitPoint:
    name: str
    layer: str
    D: int
    D_r: int
    reduced_shape: tuple[int, ...]
    upload_bytes: int
    head: str
    tail: str
    head_flops: int
    tail_flops: int
    accuracy: float | None
    accuracy_float: float | None
    search: tuple[dict, ...] = ()
    upload: str = "uint8"               # what crosses the link: per-frame affine uint8, or float16
    agreement: dict = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class SplitSpec:
    model: str
    baseline_accuracy: float | None
    accuracy_loss_bound: float
    points: tuple[SplitPoint, ...]


@dataclass(frozen=True)
class MultiplexerPair:
    """Paper 001's device/cloud case: `model` maps a frame to [w_device, w_cloud]."""

    model: str
    device: str
    cloud: str
    threshold: float


@dataclass(frozen=True)
class MultiplexerSpec:
    pool: tuple[str, ...]
    costs: tuple[float, ...]
    model: str
    threshold: float
    pair: MultiplexerPair


@dataclass(frozen=True)
class SpeculativeModel:
    """One little model with its own probes: SIEVE's selector picks among these per frame."""

    little: str
    thresholds: tuple[float, ...]
    power_saving_thresholds: tuple[float, ...]
    recovery_rate: float
    power_saving_recovery_rate: float


@dataclass(frozen=True)
class DynamicDuoSpec:
    """Thesis ch.6: `own.little` answers; below its class's threshold, `big` recovers."""

    own: SpeculativeModel                 # the little `adaptinf build duo` chose, with its probes
    big: str
    target_accuracy: float
    alternatives: tuple[SpeculativeModel, ...] = ()   # every little that reaches the target, this one included
    # validation confidence histograms per model ({"bins", "correct", "correctable", "uncorrectable"})
    confidence: dict = field(default_factory=dict, hash=False, compare=False)

    # the chosen little's fields, as the policies and the executor read them
    little = property(lambda self: self.own.little)
    thresholds = property(lambda self: self.own.thresholds)
    power_saving_thresholds = property(lambda self: self.own.power_saving_thresholds)
    recovery_rate = property(lambda self: self.own.recovery_rate)                  # on validation
    power_saving_recovery_rate = property(lambda self: self.own.power_saving_recovery_rate)

    def speculative(self, name: str | None) -> SpeculativeModel:
        """The probes of little model `name` (None: the duo's own little)."""
        if name is None or name == self.little:
            return self.own
        for alternative in self.alternatives:
            if alternative.little == name:
                return alternative
        raise KeyError(f"no speculative model {name!r} in the dynamic_duo section")


@dataclass(frozen=True)
class MmNetSpec:
    """Thesis ch.5: two Minions answer when both are confident and agree; else the Master."""

    minions: tuple[str, str]
    master: str
    thresholds: tuple[float, float]
    recovery_rate: float
    target_accuracy: float


@dataclass(frozen=True)
class ZooSpec:
    """`adaptinf build zoo`: classifiers of different families for the same task, any of
    which can serve a frame on the device or in the cloud (MDInference's pool)."""

    models: tuple[str, ...]             # cheapest first
    figures: dict = field(default_factory=dict, hash=False, compare=False)   # per model: family, host_ms, ...
    multiplexer: str | None = None      # a model: frame -> w over `models` (bench/zoo_multiplexer.py --save)
    threshold: float = 0.5              # Algorithm 2's T: the cheapest model with w_i > T


@dataclass(frozen=True)
class Bundle:
    root: Path
    name: str
    classes: tuple[str, ...]
    input: InputSpec
    models: tuple[ModelEntry, ...]
    split: SplitSpec | None
    manifest_sha256: str
    data: dict = field(default_factory=dict)
    multiplexer: MultiplexerSpec | None = None
    dynamic_duo: DynamicDuoSpec | None = None
    mmnet: MmNetSpec | None = None
    zoo: ZooSpec | None = None
    outputs: tuple[OutputSpec, ...] = ()        # () : the classes' logits, one output
    preprocess: PreprocessSpec | None = None

    @cached_property
    def output_specs(self) -> tuple[OutputSpec, ...]:
        """The model's named outputs; a bundle that declares none answers its classes' logits."""
        return self.outputs or (OutputSpec("logits", "float32", (1, len(self.classes))),)

    @cached_property
    def output_size(self) -> int:
        """Values in the one float32 output of every answering graph (all outputs, flattened)."""
        return sum(o.size for o in self.output_specs)

    def path(self, relative: str) -> Path:
        return self.root / relative

    def model(self, name: str) -> ModelEntry:
        for entry in self.models:
            if entry.name == name:
                return entry
        raise KeyError(f"bundle {self.name!r} has no model {name!r}; it has {[m.name for m in self.models]}")

    def point(self, name: str) -> SplitPoint:
        for point in self.split.points if self.split else ():
            if point.name == name:
                return point
        raise KeyError(f"bundle {self.name!r} has no split point {name!r}")

    @property
    def full_model(self) -> ModelEntry:
        """The unsplit model: mobile-only and cloud-only run it."""
        return self.model(self.split.model) if self.split else self.models[0]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _require(mapping: dict, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        raise BundleError(f"manifest: {where} is missing {key!r}")
    value = mapping[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise BundleError(f"manifest: {where}.{key} has the wrong type ({type(value).__name__})")
    return value


def _optional(raw: dict, key: str, kind: type | tuple[type, ...], default: Any, where: str) -> Any:
    """An optional field: absent gives the default; present, it must have the type."""
    if key not in raw:
        return default
    return _require(raw, key, kind, where)


def _count(raw: dict, key: str, where: str, required: bool = True) -> int:
    """A non-negative integer field (FLOPs, bytes, parameters)."""
    value = _require(raw, key, int, where) if required else _optional(raw, key, int, 0, where)
    if value < 0:
        raise BundleError(f"manifest: {where}.{key} must be a non-negative integer, got {value}")
    return value


def _number(raw: dict, key: str, where: str) -> float:
    value = _require(raw, key, (int, float), where)
    if not math.isfinite(value):
        raise BundleError(f"manifest: {where}.{key} must be a finite number, got {value}")
    return float(value)


def _names(raw: dict, key: str, where: str) -> tuple[str, ...]:
    values = _require(raw, key, list, where)
    if not all(isinstance(v, str) for v in values):
        raise BundleError(f"manifest: {where}.{key} must be a list of names (strings)")
    return tuple(values)


def _shape(raw: dict, key: str, where: str) -> tuple[int, ...]:
    shape = _require(raw, key, list, where)
    if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise BundleError(f"manifest: {where}.{key} must be a list of positive integers, got {shape}")
    return tuple(shape)


def _parse_input(raw: dict) -> InputSpec:
    dtype = _require(raw, "dtype", str, "input")
    if dtype not in INPUT_DTYPES:
        raise BundleError(f"manifest: input.dtype {dtype!r} is not one of {INPUT_DTYPES}")
    return InputSpec(_require(raw, "name", str, "input"), dtype, _shape(raw, "shape", "input"),
                     _optional(raw, "layout", str, "NHWC", "input"))


def _accuracy(raw: dict, key: str, where: str) -> float | None:
    """A measured accuracy, or null: not measured (e.g. an architecture exported with random weights)."""
    if not isinstance(raw, dict) or key not in raw:
        raise BundleError(f"manifest: {where} is missing {key!r}")
    if raw[key] is None:
        return None
    value = _require(raw, key, (int, float), where)
    if not 0.0 <= value <= 1.0:
        raise BundleError(f"manifest: {where}.{key} = {value} is not a fraction in [0, 1]")
    return float(value)


def _parse_point(raw: dict, i: int) -> SplitPoint:
    where = f"split.points[{i}]"
    ints = {k: _count(raw, k, where) for k in ("D", "D_r", "upload_bytes", "head_flops", "tail_flops")}
    floats = {k: _accuracy(raw, k, where) for k in ("accuracy", "accuracy_float")}
    if not 1 <= ints["D_r"] <= ints["D"]:
        raise BundleError(f"manifest: {where} has D_r={ints['D_r']} outside [1, D={ints['D']}]")
    return SplitPoint(name=_require(raw, "name", str, where), layer=_require(raw, "layer", str, where),
                      reduced_shape=_shape(raw, "reduced_shape", where),
                      head=_require(raw, "head", str, where), tail=_require(raw, "tail", str, where),
                      search=tuple(_optional(raw, "search", list, [], where)),
                      upload=_choice(raw, "upload", UPLOAD_DTYPES, "uint8", where),
                      agreement=dict(_optional(raw, "agreement", dict, {}, where)), **ints, **floats)


def _choice(raw: dict, key: str, allowed: tuple[str, ...], default: str, where: str) -> str:
    value = _optional(raw, key, str, default, where)
    if value not in allowed:
        raise BundleError(f"manifest: {where}.{key} is {value!r}; one of {list(allowed)}")
    return value


def _parse_outputs(raw: Any) -> tuple[OutputSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise BundleError("manifest: outputs must be a non-empty list of {name, dtype, shape}")
    outputs = []
    for i, o in enumerate(raw):
        where = f"outputs[{i}]"
        dtype = _require(o, "dtype", str, where)
        if dtype not in OUTPUT_DTYPES:
            raise BundleError(f"manifest: {where}.dtype {dtype!r} is not one of {OUTPUT_DTYPES}")
        outputs.append(OutputSpec(_require(o, "name", str, where), dtype, _shape(o, "shape", where)))
    if len({o.name for o in outputs}) != len(outputs):
        raise BundleError("manifest: outputs names a tensor twice")
    return tuple(outputs)


def _parse_preprocess(raw: Any, input_spec: InputSpec) -> PreprocessSpec:
    where = "preprocess"
    size = _shape(raw, "size", where)
    mean, std = (_require(raw, k, list, where) for k in ("mean", "std"))
    if len(size) != 2 or len(mean) != 3 or len(std) != 3 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (*mean, *std)) \
            or not all(v != 0 for v in std):
        raise BundleError(f"manifest: {where} needs size [h, w], and 3 finite means and 3 non-zero stds")
    spec = PreprocessSpec(graph=_require(raw, "graph", str, where),
                          resize=_choice(raw, "resize", RESIZE_MODES, "stretch", where), size=tuple(size),
                          channel_order=_choice(raw, "channel_order", ("RGB", "BGR"), "RGB", where),
                          layout=_choice(raw, "layout", ("NCHW", "NHWC"), "NCHW", where),
                          scale=_number(raw, "scale", where), mean=tuple(float(v) for v in mean),
                          std=tuple(float(v) for v in std))
    produced = (1, 3, *size) if spec.layout == "NCHW" else (1, *size, 3)
    if tuple(input_spec.shape) != produced:
        raise BundleError(f"manifest: preprocess makes {spec.layout} {list(produced)} but the input is "
                          f"{list(input_spec.shape)}")
    return spec


def _parse_model(raw: dict, i: int) -> ModelEntry:
    where = f"models[{i}]"
    if not isinstance(raw, dict):
        raise BundleError(f"manifest: {where} must be an object")
    confidence = _optional(raw, "confidence", dict, {}, where)
    if confidence:
        bins = confidence.get("bins")
        parts = [confidence.get(k) for k in ("correct", "correctable", "uncorrectable")] if bins else []
        if not isinstance(bins, list) or not all(isinstance(p, list) and len(p) == len(bins) - 1 for p in parts):
            raise BundleError(f"manifest: {where}.confidence needs bins and correct, correctable and uncorrectable "
                              f"counts (one fewer than bins)")
    return ModelEntry(name=_require(raw, "name", str, where), file=_require(raw, "file", str, where),
                      role=_optional(raw, "role", str, "model", where), accuracy=_accuracy(raw, "accuracy", where),
                      flops=_count(raw, "flops", where), params=_count(raw, "params", where, required=False),
                      size_bytes=_count(raw, "size_bytes", where, required=False),
                      activation_bytes=_count(raw, "activation_bytes", where, required=False),
                      derivation=dict(_optional(raw, "derivation", dict, {}, where)), confidence=dict(confidence),
                      packed_weights=_packed_weights(raw, where))


def _packed_weights(raw: dict, where: str) -> str:
    """The engines find a graph's packed weights beside it, by name (packed_floats.packed_path)."""
    name = _optional(raw, "packed_weights", str, "", where)
    if name:
        expected = packed_path(_require(raw, "file", str, where)).as_posix()
        if name != expected:
            raise BundleError(f"manifest: {where}.packed_weights is {name!r}, but the engines read a graph's packed "
                              f"weights from {expected!r}")
    return name


def load_bundle(root: Path | str, verify: bool = True) -> Bundle:
    """Read and check a bundle; raises BundleError naming the first problem found."""
    root = Path(root)
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{root}: not a bundle (no {MANIFEST})")
    try:
        raw_bytes = manifest_path.read_bytes()
        raw = json.loads(raw_bytes)
    except OSError as exc:
        raise BundleError(f"{manifest_path}: cannot read it ({exc.strerror or exc})") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, and bytes that are not UTF-8
        raise BundleError(f"{manifest_path}: not valid JSON ({exc})") from None
    try:
        return _parse_bundle(root, manifest_path, raw, raw_bytes, verify)
    except BundleError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError, IndexError) as exc:
        # a field of an unexpected shape that no check above names: still a refusal, not a traceback
        raise BundleError(f"{manifest_path}: malformed manifest ({type(exc).__name__}: {exc})") from None


def _parse_bundle(root: Path, manifest_path: Path, raw: Any, raw_bytes: bytes, verify: bool) -> Bundle:
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise BundleError(f"{manifest_path}: not an adaptinf bundle manifest (format != {FORMAT!r})")
    version = raw.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise BundleError(f"{manifest_path}: manifest version missing or not an integer")
    if version > VERSION:
        raise BundleError(f"{manifest_path}: manifest version {version} is newer than this adaptinf "
                          f"supports ({VERSION}); upgrade adaptinf or rebuild the bundle")

    files = _require(raw, "files", dict, "manifest")
    models = tuple(_parse_model(m, i) for i, m in enumerate(_require(raw, "models", list, "manifest")))
    if not models:
        raise BundleError(f"{manifest_path}: bundle has no models")
    split = None
    if raw.get("split") is not None:
        s = _require(raw, "split", dict, "manifest")
        split = SplitSpec(model=_require(s, "model", str, "split"),
                          baseline_accuracy=_accuracy(s, "baseline_accuracy", "split"),
                          accuracy_loss_bound=_number(s, "accuracy_loss_bound", "split"),
                          points=tuple(_parse_point(p, i) for i, p in enumerate(_require(s, "points", list, "split"))))
        if split.model not in {m.name for m in models}:
            raise BundleError(f"manifest: split.model {split.model!r} is not one of the bundle's models")
    full = split.model if split else models[0].name
    classes = _names(raw, "classes", "manifest")
    if not classes:
        deciders = [k for k in ("multiplexer", "dynamic_duo", "mmnet", "zoo") if raw.get(k) is not None]
        if deciders:
            raise BundleError(f"manifest: {deciders[0]} decides on a classifier's confidence, but this bundle "
                              "declares no classes: add \"classes\" or remove that section")
    multiplexer = _parse_multiplexer(raw["multiplexer"], models, full) if raw.get("multiplexer") is not None else None
    duo = (_parse_dynamic_duo(raw["dynamic_duo"], models, full, len(classes))
           if raw.get("dynamic_duo") is not None else None)
    mmnet = _parse_mmnet(raw["mmnet"], models, full) if raw.get("mmnet") is not None else None
    zoo = _parse_zoo(raw["zoo"], models) if raw.get("zoo") is not None else None
    input_spec = _parse_input(raw.get("input"))
    outputs = _parse_outputs(raw["outputs"]) if raw.get("outputs") is not None else ()
    if not outputs and not classes:
        raise BundleError(f"{manifest_path}: a bundle needs \"classes\" (a classifier) or \"outputs\"")
    if outputs and classes and sum(o.size for o in outputs) < len(classes):
        raise BundleError("manifest: the outputs have fewer values than there are classes")
    preprocess = (_parse_preprocess(raw["preprocess"], input_spec)
                  if raw.get("preprocess") is not None else None)
    bundle = Bundle(root=root, name=_require(raw, "name", str, "manifest"),
                    classes=classes, input=input_spec, outputs=outputs, preprocess=preprocess,
                    models=models, split=split, manifest_sha256=hashlib.sha256(raw_bytes).hexdigest(),
                    data=_optional(raw, "data", dict, {}, "manifest"), multiplexer=multiplexer, dynamic_duo=duo, mmnet=mmnet,
                    zoo=zoo)
    if verify:
        _verify_files(bundle, files)
    return bundle


def _parse_multiplexer(raw: dict, models: tuple[ModelEntry, ...], full: str) -> MultiplexerSpec:
    names = {m.name for m in models}
    p = _require(raw, "pair", dict, "multiplexer")
    pair = MultiplexerPair(*(_require(p, k, str, "multiplexer.pair") for k in ("model", "device", "cloud")),
                           threshold=float(_require(p, "threshold", (int, float), "multiplexer.pair")))
    costs = _require(raw, "costs", list, "multiplexer")
    if not all(isinstance(c, (int, float)) and not isinstance(c, bool) and math.isfinite(c) for c in costs):
        raise BundleError("manifest: multiplexer.costs must be finite numbers")
    spec = MultiplexerSpec(pool=_names(raw, "pool", "multiplexer"), costs=tuple(float(c) for c in costs),
                           model=_require(raw, "model", str, "multiplexer"),
                           threshold=float(_require(raw, "threshold", (int, float), "multiplexer")), pair=pair)
    for name in (*spec.pool, spec.model, pair.model, pair.device, pair.cloud):
        if name not in names:
            raise BundleError(f"manifest: multiplexer names {name!r}, which is not one of the bundle's models")
    if len(spec.costs) != len(spec.pool) or len(spec.pool) < 2:
        raise BundleError("manifest: multiplexer.pool needs two or more models and one cost for each")
    if pair.cloud != full:
        # the cloud worker serves the bundle's full model: the pair's cloud model must be it
        raise BundleError(f"manifest: multiplexer.pair.cloud {pair.cloud!r} is not the bundle's full model {full!r}")
    return spec


def _parse_speculative(raw: dict, num_classes: int, where: str) -> SpeculativeModel:
    thresholds = {}
    for key in ("thresholds", "power_saving_thresholds"):
        values = _require(raw, key, list, where)
        if len(values) != num_classes or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                 and 0.0 <= v <= 1.0 for v in values):
            raise BundleError(f"manifest: {where}.{key} must be {num_classes} numbers in [0, 1], one per class")
        thresholds[key] = tuple(float(v) for v in values)
    return SpeculativeModel(little=_require(raw, "little", str, where),
                            recovery_rate=float(_require(raw, "recovery_rate", (int, float), where)),
                            power_saving_recovery_rate=float(_require(raw, "power_saving_recovery_rate",
                                                                      (int, float), where)), **thresholds)


def _parse_dynamic_duo(raw: dict, models: tuple[ModelEntry, ...], full: str, num_classes: int) -> DynamicDuoSpec:
    where = "dynamic_duo"
    own = _parse_speculative(raw, num_classes, where)
    alternatives = tuple(_parse_speculative(a, num_classes, f"{where}.alternatives[{i}]")
                         for i, a in enumerate(_optional(raw, "alternatives", list, [], where)))
    spec = DynamicDuoSpec(own=own, big=_require(raw, "big", str, where),
                          target_accuracy=float(_require(raw, "target_accuracy", (int, float), where)),
                          alternatives=alternatives,
                          confidence=dict(_optional(raw, "confidence", dict, {}, where)))
    for name in (spec.little, *(a.little for a in alternatives)):
        if name not in {m.name for m in models}:
            raise BundleError(f"manifest: {where} names little model {name!r}, which is not one of the bundle's models")
    if spec.big != full:
        # recovery runs the full model, on the device or in the cloud worker
        raise BundleError(f"manifest: {where}.big {spec.big!r} is not the bundle's full model {full!r}")
    return spec


def _parse_mmnet(raw: dict, models: tuple[ModelEntry, ...], full: str) -> MmNetSpec:
    where = "mmnet"
    minions = _names(raw, "minions", where)
    thresholds = _require(raw, "thresholds", list, where)
    if len(minions) != 2 or len(thresholds) != 2 or not all(
            isinstance(t, (int, float)) and not isinstance(t, bool) and 0.0 <= t <= 1.0 for t in thresholds):
        raise BundleError(f"manifest: {where} needs two minions and two thresholds in [0, 1]")
    for name in minions:
        if name not in {m.name for m in models}:
            raise BundleError(f"manifest: {where}.minions names {name!r}, which is not one of the bundle's models")
    master = _require(raw, "master", str, where)
    if master != full:
        raise BundleError(f"manifest: {where}.master {master!r} is not the bundle's full model {full!r}")
    return MmNetSpec(tuple(minions), master, tuple(float(t) for t in thresholds),
                     float(_require(raw, "recovery_rate", (int, float), where)),
                     float(_require(raw, "target_accuracy", (int, float), where)))


def _parse_zoo(raw: Any, models: tuple[ModelEntry, ...]) -> ZooSpec:
    if not isinstance(raw, dict):
        raise BundleError("manifest: zoo must be an object")
    names = _names(raw, "models", "zoo")
    if len(names) < 2:
        raise BundleError("manifest: zoo.models needs at least two models (a pool to choose from)")
    if len(set(names)) != len(names):
        raise BundleError("manifest: zoo.models names a model twice")
    known = {m.name: m for m in models}
    for name in names:
        if name not in known:
            raise BundleError(f"manifest: zoo.models names {name!r}, which is not one of the bundle's models")
        if known[name].accuracy is None:
            raise BundleError(f"manifest: zoo model {name!r} has no accuracy (selection needs it)")
    mux = _optional(raw, "multiplexer", dict, None, "zoo")
    if mux is not None:
        model = _require(mux, "model", str, "zoo.multiplexer")
        threshold = _require(mux, "threshold", (int, float), "zoo.multiplexer")
        if model not in known:
            raise BundleError(f"manifest: zoo.multiplexer.model {model!r} is not one of the bundle's models")
        if isinstance(threshold, bool) or not 0.0 <= threshold <= 1.0:
            raise BundleError("manifest: zoo.multiplexer.threshold must be a number in [0, 1]")
        return ZooSpec(names, dict(_optional(raw, "figures", dict, {}, "zoo")), model, float(threshold))
    return ZooSpec(names, dict(_optional(raw, "figures", dict, {}, "zoo")))


def referenced_files(bundle: Bundle) -> list[str]:
    names = [m.file for m in bundle.models] + [m.packed_weights for m in bundle.models if m.packed_weights]
    if bundle.preprocess is not None:
        names.append(bundle.preprocess.graph)
    for p in bundle.split.points if bundle.split else ():
        names += [p.head, p.tail]
    return names


def _verify_files(bundle: Bundle, files: dict) -> None:
    for name in referenced_files(bundle):
        entry = files.get(name)
        if not isinstance(entry, dict) or "sha256" not in entry:
            raise BundleError(f"{bundle.root}: {name} is used but has no hash under 'files'")
        path = bundle.root / name
        if not path.is_file():
            raise BundleError(f"{bundle.root}: missing file {name}")
        if sha256_file(path) != entry["sha256"]:
            raise BundleError(f"{bundle.root}: {name} does not match its sha256 in the manifest (corrupt or replaced)")
    _verify_input_spec(bundle)


def _verify_input_spec(bundle: Bundle) -> None:
    """The models that take the frame must declare the manifest's input name, dtype and shape.

    Read through onnxruntime's own input metadata, so a device install needs no `onnx`
    package; a file onnxruntime cannot load is refused here, by name, not at first use.
    """
    import onnxruntime as ort

    takers = [m.file for m in bundle.models] + [p.head for p in (bundle.split.points if bundle.split else ())]
    answerers = {bundle.full_model.file, *(p.tail for p in (bundle.split.points if bundle.split else ()))}
    if bundle.preprocess is not None:
        _verify_preprocess(bundle)
    for name in dict.fromkeys(takers + sorted(answerers - set(takers))):
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # metadata only: load fast
        options.log_severity_level = 3
        try:
            weights = add_to_session_options(options, bundle.root / name)
        except PackedWeightsError as exc:
            raise BundleError(f"{bundle.root}: {exc}") from None
        try:
            session = ort.InferenceSession(str(bundle.root / name), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidProtobuf / RuntimeException types
            raise BundleError(f"{bundle.root}: {name} is not a model onnxruntime can load "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
        del weights                     # the session holds its own copy now
        if name in answerers:
            _verify_answer(bundle, name, session)
        if name not in takers:
            continue
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise BundleError(f"{bundle.root}: {name} has {len(inputs)} inputs, expected 1")
        value = inputs[0]
        dtype = ONNX_TYPE_TO_DTYPE.get(value.type, value.type)
        dims = [d if isinstance(d, int) and d > 0 else None for d in value.shape]
        expected = list(bundle.input.shape)
        shape_ok = len(dims) == len(expected) and all(d is None or d == e for d, e in zip(dims, expected))
        if value.name != bundle.input.name or dtype != bundle.input.dtype or not shape_ok:
            raise BundleError(
                f"{bundle.root}: {name} takes {value.name}:{dtype}{dims} but the manifest's input spec is "
                f"{bundle.input.name}:{bundle.input.dtype}{expected}")


def _verify_answer(bundle: Bundle, name: str, session: Any) -> None:
    """A graph that answers a frame has one float32 output of the bundle's output size."""
    outputs = session.get_outputs()
    if len(outputs) != 1 or outputs[0].type != "tensor(float)":
        raise BundleError(f"{bundle.root}: {name} must have one float32 output (the model's outputs, "
                          f"concatenated), it has {[(o.name, o.type) for o in outputs]}")
    dims = outputs[0].shape
    if all(isinstance(d, int) for d in dims[1:]) and math.prod(dims[1:]) != bundle.output_size:
        raise BundleError(f"{bundle.root}: {name} answers {math.prod(dims[1:])} values per frame, but the "
                          f"manifest's outputs have {bundle.output_size}")


def _verify_preprocess(bundle: Bundle) -> None:
    import onnxruntime as ort

    name = bundle.preprocess.graph
    try:
        session = ort.InferenceSession(str(bundle.root / name), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise BundleError(f"{bundle.root}: {name} is not a model onnxruntime can load "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    (frame,), (out,) = session.get_inputs(), session.get_outputs()
    if frame.type != "tensor(uint8)" or len(frame.shape) != 3 or ONNX_TYPE_TO_DTYPE.get(out.type) != bundle.input.dtype:
        raise BundleError(f"{bundle.root}: {name} must take a uint8 [H, W, 3] frame and give "
                          f"{bundle.input.dtype}, it takes {frame.type}{frame.shape} and gives {out.type}")


# onnxruntime's tensor type names -> numpy's
ONNX_TYPE_TO_DTYPE = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
                      "tensor(uint8)": "uint8", "tensor(int8)": "int8", "tensor(int32)": "int32",
                      "tensor(int64)": "int64", "tensor(uint16)": "uint16", "tensor(int16)": "int16",
                      "tensor(bool)": "bool"}


def write_manifest(root: Path, manifest: dict) -> str:
    """Fill in "files" with hashes of everything referenced, write atomically, return its sha256."""
    root = Path(root)
    manifest = dict(manifest, format=FORMAT, version=VERSION)
    names = [m["file"] for m in manifest["models"]] + [m["packed_weights"] for m in manifest["models"]
                                                       if m.get("packed_weights")]
    for p in (manifest.get("split") or {}).get("points", []):
        names += [p["head"], p["tail"]]
    if manifest.get("preprocess"):
        names.append(manifest["preprocess"]["graph"])
    manifest["files"] = {n: {"sha256": sha256_file(root / n), "bytes": (root / n).stat().st_size} for n in names}
    text = json.dumps(manifest, indent=1, sort_keys=False) + "\n"
    tmp = root / (MANIFEST + ".tmp")
    tmp.write_text(text)
    tmp.replace(root / MANIFEST)
    return hashlib.sha256(text.encode()).hexdigest()
