"""`adaptinf build split --onnx MODEL.onnx`: a user's trained model to a bundle, no training.

Any single-input ONNX model, from any framework: a classifier, a detector or a segmenter.

1. The model is prepared: batch fixed at 1, shapes inferred, shape computations on
   static shapes folded to constants, and its outputs (any number, any of the
   OUTPUT_DTYPES) packed into the one float32 output every answering graph has; the
   manifest's `outputs` names them for the API.
2. Cut points come from the graph (toolchain/onnx_cuts.py): `points` of them, spread
   over the model's FLOPs, each preferring the smallest upload near its place.
3. Per point the head and tail are cut and checked on sample inputs: head, then the
   upload as the link carries it (core/upload_quant.py `as_received`), then tail, against
   the full model. Without the upload's rounding they must agree to float precision (else
   the point is refused); with it, the agreement is recorded. `upload="auto"` keeps 8 bits
   where the classifier's top-1 holds on every sample, else float16.
4. Samples: images from `calibration` (folder:PATH), or `samples` generated frames, through
   the model's preprocessing. With a labelled `dataset` (folder:PATH, one sub-directory per
   class), a held-out part the checks never saw measures accuracy per point.

The uint8 upload is quantised per frame (its own min and max, carried in the request) as
for the butterfly bundles, not with scales fixed from the samples: a fixed range clips the
frames that are unlike the samples, a per-frame one cannot.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from math import prod
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper, shape_inference, utils
from tqdm import tqdm

from adaptinf.bundle import OUTPUT_DTYPES, RESIZE_MODES, PreprocessSpec, sha256_file, write_manifest
from adaptinf.toolchain.datasets import IMAGE_SUFFIXES
from adaptinf.toolchain.onnx_cuts import Cut, find_cuts, head_and_tail, spread
from adaptinf.toolchain.onnx_flops import count_flops
from adaptinf.toolchain.preprocess_graph import write_preprocess_graph
from adaptinf.upload_quant import as_received

FULL_FILE = "full.onnx"
PREPROCESS_FILE = "preprocess.onnx"
PACKED_OUTPUT = "adaptinf_outputs"
IMAGENET_MEAN = (0.485, 0.456, 0.406)      # torchvision's and timm's defaults, for inputs scaled to [0, 1]
IMAGENET_STD = (0.229, 0.224, 0.225)
EXACT_TOLERANCE = 1e-4                     # head + tail against full, no rounding: float32 noise only
_ELEM_DTYPES = {TensorProto.FLOAT: "float32", TensorProto.FLOAT16: "float16", TensorProto.UINT8: "uint8",
                TensorProto.INT8: "int8"}


class OnnxSplitError(ValueError):
    """A model or an option this build cannot take; the message says what to change."""


@dataclass(frozen=True)
class OnnxSplitConfig:
    name: str = ""                   # default: the file's stem
    points: int = 4
    samples: int = 32                # generated inputs, when no calibration folder is given
    calibration: str = ""            # folder:PATH of images
    dataset: str = ""                # folder:PATH/<class>/<image>: accuracy on a held-out part
    held_out: float = 0.5            # of `dataset`, never used by the checks
    upload: str = "auto"             # auto | uint8 | float16
    resize: str = "stretch"          # how a camera frame is fitted: stretch | letterbox | center-crop
    channel_order: str = "RGB"       # the model's
    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    classes: tuple[str, ...] = ()    # declares a classifier: label, class and confidence in replies
    seed: int = 0


@dataclass
class Prepared:
    model: onnx.ModelProto
    input_name: str
    dtype: str
    shape: tuple[int, ...]
    outputs: list[dict]              # [{name, dtype, shape}], the manifest's


def prepare(path: Path) -> Prepared:
    """The model with batch 1, shapes inferred, static shape arithmetic folded, one float32 output."""
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise OnnxSplitError(f"{path}: not an ONNX model onnx can read ({type(exc).__name__}: {exc})") from None
    graph = model.graph
    weights = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    if len(inputs) != 1:
        raise OnnxSplitError(f"{path}: the model has {len(inputs)} inputs; adaptinf splits single-input models")
    del graph.input[:]
    graph.input.extend(inputs)
    frame = graph.input[0]                 # the graph's own copy: edited in place below
    elem = frame.type.tensor_type.elem_type
    if elem not in _ELEM_DTYPES:
        raise OnnxSplitError(f"{path}: input {frame.name!r} is {TensorProto.DataType.Name(elem)}; "
                             f"adaptinf takes {sorted(_ELEM_DTYPES.values())}")
    dims = frame.type.tensor_type.shape.dim
    for i, d in enumerate(dims):
        if i == 0:
            d.Clear()
            d.dim_value = 1              # one frame at a time
        elif not (d.HasField("dim_value") and d.dim_value > 0):
            raise OnnxSplitError(f"{path}: input dimension {i} of {frame.name!r} is not fixed "
                                 f"({d.dim_param or '?'}); export the model at the size it serves")
    shape = tuple(d.dim_value for d in dims)
    del graph.value_info[:]
    for out in graph.output:                       # re-inferred at batch 1
        out.type.tensor_type.ClearField("shape")
    model = _infer(_fold_constants(model))
    _fold_static_shapes(model)
    model = _infer(model)
    outputs = _pack_outputs(model, path)
    return Prepared(_infer(model), frame.name, _ELEM_DTYPES[elem], shape, outputs)


def _infer(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        return shape_inference.infer_shapes(model, data_prop=True)
    except Exception as exc:
        raise OnnxSplitError(f"onnx shape inference failed on the model ({type(exc).__name__}: {exc})") from None


def _fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxruntime's basic graph optimisations, saved as ONNX: constant subgraphs folded (the
    padding arithmetic of a "same"-padded export, shape computations) and BatchNorm folded into
    its convolution. Semantics-preserving, standard ops only, and what the engines would do at
    load anyway."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="adaptinf-onnx-") as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(Path(tmp) / "folded.onnx")
        options.log_severity_level = 3
        try:
            ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise OnnxSplitError(f"onnxruntime cannot load the model ({type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0][:300]})") from None
        folded = onnx.load(options.optimized_model_filepath)
    if {n.domain for n in model.graph.node} - {"", "ai.onnx"}:   # a model may bring its own domains
        raise OnnxSplitError(f"the model uses operator domains "
                             f"{sorted({n.domain for n in model.graph.node} - {'', 'ai.onnx'})}; "
                             "adaptinf cuts standard ONNX")
    if {n.domain for n in folded.graph.node} - {"", "ai.onnx"}:
        return model     # a fusion into onnxruntime's own ops: keep the model as it was, unfolded
    return folded


def _fold_static_shapes(model: onnx.ModelProto) -> None:
    """Shape (and Size) of a tensor whose shape is known become constants, so shape
    arithmetic is not an activation that would cross a cut."""
    known = {}
    for value in (*model.graph.value_info, *model.graph.input, *model.graph.output):
        d = value.type.tensor_type.shape.dim
        if d and all(x.HasField("dim_value") for x in d):
            known[value.name] = [x.dim_value for x in d]
    for init in model.graph.initializer:
        known[init.name] = list(init.dims)
    for i, node in enumerate(model.graph.node):
        if node.op_type not in ("Shape", "Size") or node.input[0] not in known:
            continue
        dims = known[node.input[0]]
        if node.op_type == "Size":
            value = np.array(prod(dims), np.int64)
        else:
            attrs = {a.name: a.i for a in node.attribute}
            value = np.array(dims[attrs.get("start", 0):attrs.get("end", len(dims))], np.int64)
        model.graph.node[i].CopyFrom(helper.make_node("Constant", [], [node.output[0]],
                                                      value=numpy_helper.from_array(value)))


def _pack_outputs(model: onnx.ModelProto, path: Path) -> list[dict]:
    """Runs the model once for its outputs' real shapes; more than one output, or one that is
    not float32, is packed into one flat float32 tensor (PACKED_OUTPUT)."""
    session = _session(model.SerializeToString())
    x = np.zeros(session.get_inputs()[0].shape, _ELEM_DTYPES[model.graph.input[0].type.tensor_type.elem_type])
    values = session.run(None, {session.get_inputs()[0].name: x})
    outputs = []
    for out, value in zip(model.graph.output, values):
        dtype = str(value.dtype)
        if dtype not in OUTPUT_DTYPES or value.size == 0:
            raise OnnxSplitError(f"{path}: output {out.name!r} is {dtype}{list(value.shape)}; adaptinf serves "
                                 f"non-empty outputs of {list(OUTPUT_DTYPES)}")
        outputs.append({"name": out.name, "dtype": dtype, "shape": list(value.shape)})
    if len(outputs) == 1 and outputs[0]["dtype"] == "float32":
        return outputs
    g = model.graph
    g.initializer.append(numpy_helper.from_array(np.array([1, -1], np.int64), "adaptinf_flat"))
    flat = []
    for out in outputs:
        g.node.append(helper.make_node("Cast", [out["name"]], [f"{out['name']}/f32"], to=TensorProto.FLOAT))
        g.node.append(helper.make_node("Reshape", [f"{out['name']}/f32", "adaptinf_flat"], [f"{out['name']}/flat"]))
        flat.append(f"{out['name']}/flat")
    g.node.append(helper.make_node("Concat", flat, [PACKED_OUTPUT], axis=1))
    del g.output[:]
    g.output.append(helper.make_tensor_value_info(PACKED_OUTPUT, TensorProto.FLOAT,
                                                  [1, sum(prod(o["shape"]) for o in outputs)]))
    return outputs


def _session(model: bytes | str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def image_layout(shape: tuple[int, ...]) -> str | None:
    """NCHW or NHWC for a 3-channel image input; None for an input a camera frame cannot become."""
    if len(shape) == 4 and shape[1] == 3:
        return "NCHW"
    if len(shape) == 4 and shape[3] == 3:
        return "NHWC"
    return None


def _image_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def read_image(path: Path) -> np.ndarray:
    """An image file as the camera would give it: uint8 H x W x 3, RGB."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _folder(spec: str, option: str) -> Path:
    if not spec.startswith("folder:"):
        raise OnnxSplitError(f"{option} takes folder:PATH, got {spec!r}")
    root = Path(spec.split(":", 1)[1])
    if not root.is_dir():
        raise OnnxSplitError(f"{option}: {root} is not a directory")
    return root


def synthetic_frames(n: int, size: tuple[int, int], seed: int) -> list[np.ndarray]:
    """Camera-like frames when the user has no data: smooth colour fields with fine noise,
    at sizes around the model's, so the samples exercise the resize too."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        h, w = (int(s * rng.uniform(0.8, 1.6)) for s in size)
        coarse = rng.uniform(0, 255, (rng.integers(2, 9), rng.integers(2, 9), 3))
        ys = np.linspace(0, coarse.shape[0] - 1, h)
        xs = np.linspace(0, coarse.shape[1] - 1, w)
        field = coarse[np.rint(ys).astype(int)][:, np.rint(xs).astype(int)]
        frames.append(np.clip(field + rng.normal(0, 20, field.shape), 0, 255).astype(np.uint8))
    return frames


class SampleMaker:
    """Model inputs from camera frames, through the bundle's own preprocessing graph."""

    def __init__(self, graph: Path | None, shape: tuple[int, ...], dtype: str, seed: int):
        self.session = _session(str(graph)) if graph is not None else None
        self.shape, self.dtype, self.seed = shape, dtype, seed

    def from_frames(self, frames: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([self.session.run(None, {"frame": f})[0] for f in frames])

    def generated(self, n: int) -> np.ndarray:
        if self.session is not None:
            size = (self.shape[2], self.shape[3]) if self.shape[1] == 3 else (self.shape[1], self.shape[2])
            return self.from_frames(synthetic_frames(n, size, self.seed))
        rng = np.random.default_rng(self.seed)     # not an image: the model's tensor, standard normal
        x = rng.standard_normal((n, *self.shape[1:]))
        return (np.clip(x * 40 + 128, 0, 255) if self.dtype == "uint8" else x).astype(self.dtype)


def _run(session: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i:i + 1]})[0].reshape(1, -1) for i in range(len(x))])


def _top1(outputs: list[dict], flat: np.ndarray) -> np.ndarray | None:
    """The first output's argmax when it is a classifier's [1, N] scores, else None."""
    first = outputs[0]
    if len(first["shape"]) != 2 or first["shape"][1] < 2:
        return None
    return flat[:, :first["shape"][1]].argmax(1)


def check_point(head: ort.InferenceSession, tail: ort.InferenceSession, x: np.ndarray, full: np.ndarray,
                outputs: list[dict], upload: str) -> dict:
    """Head -> upload as the link carries it -> tail, against the full model on samples x."""
    reduced = _run(head, x).reshape(len(x), *head.get_outputs()[0].shape[1:])
    shape = (1, *reduced.shape[1:])
    exact = np.concatenate([_run(tail, r.reshape(shape)) for r in reduced])
    received = np.concatenate([_run(tail, as_received(r.reshape(shape), upload)) for r in reduced])
    scale = max(1.0, float(np.abs(full).max()))
    figures = {"samples": len(x), "upload": upload,
               "exact_max_error": float(np.abs(exact - full).max()),
               "max_abs_error": float(np.abs(received - full).max()),
               "output_range": float(full.max() - full.min()),
               "upload_range": float(reduced.max() - reduced.min())}
    figures["exact"] = figures["exact_max_error"] <= EXACT_TOLERANCE * scale
    top_full, top_split = _top1(outputs, full), _top1(outputs, received)
    if top_full is not None:
        figures["top1_agreement"] = float((top_full == top_split).mean())
    return figures


def _accuracy(flat: np.ndarray, labels: np.ndarray, outputs: list[dict]) -> float | None:
    top = _top1(outputs, flat)
    return None if top is None else float((top == labels).mean())


def build_onnx_split(source: Path, out: Path, config: OnnxSplitConfig = OnnxSplitConfig(),
                     progress: bool = True) -> dict:
    """Cut, check and write the bundle; returns the manifest written to out/manifest.json."""
    source, out = Path(source), Path(out)
    if config.upload not in ("auto", "uint8", "float16"):
        raise OnnxSplitError(f"--upload {config.upload!r}: use auto, uint8 or float16")
    if config.resize not in RESIZE_MODES:
        raise OnnxSplitError(f"--resize {config.resize!r}: use one of {list(RESIZE_MODES)}")
    if config.points < 1:
        raise OnnxSplitError("--points must be at least 1")
    prepared = prepare(source)
    out.mkdir(parents=True, exist_ok=True)
    model = prepared.model
    onnx.save(model, str(out / FULL_FILE))

    layout = image_layout(prepared.shape)
    preprocess = None
    if layout is not None:
        size = prepared.shape[2:4] if layout == "NCHW" else prepared.shape[1:3]
        uint8 = prepared.dtype == "uint8"
        preprocess = PreprocessSpec(PREPROCESS_FILE, config.resize, tuple(size), config.channel_order, layout,
                                    1.0 if uint8 else config.scale, (0.0,) * 3 if uint8 else tuple(config.mean),
                                    (1.0,) * 3 if uint8 else tuple(config.std))
        write_preprocess_graph(preprocess, prepared.dtype, out / PREPROCESS_FILE)
    maker = SampleMaker(out / PREPROCESS_FILE if preprocess else None, prepared.shape, prepared.dtype, config.seed)

    # samples for the checks; a labelled data set's held-out part for accuracy
    classes = tuple(config.classes)
    held_x = held_y = None
    data_note: dict = {"source": source.name, "source_sha256": sha256_file(source)}
    if config.dataset:
        if preprocess is None:
            raise OnnxSplitError("--dataset needs an image model (a 3-channel input)")
        root = _folder(config.dataset, "--dataset")
        names = sorted(p.name for p in root.iterdir() if p.is_dir())
        files = [(f, label) for label, name in enumerate(names) for f in _image_files(root / name)]
        if len(files) < 4:
            raise OnnxSplitError(f"--dataset {root}: expected <class>/<image> files, found {len(files)}")
        order = np.random.default_rng(config.seed).permutation(len(files))
        n_held = max(1, int(len(files) * config.held_out))
        held = [files[i] for i in order[:n_held]]
        check = [files[i] for i in order[n_held:]]
        held_x = maker.from_frames([read_image(f) for f, _ in held])
        held_y = np.array([label for _, label in held])
        x = maker.from_frames([read_image(f) for f, _ in check])
        classes = classes or tuple(names)
        data_note.update(dataset=str(root), n_check=len(check), n_held_out=n_held)
    elif config.calibration:
        if preprocess is None:
            raise OnnxSplitError("--calibration images need an image model (a 3-channel input)")
        files = _image_files(_folder(config.calibration, "--calibration"))
        if not files:
            raise OnnxSplitError(f"--calibration: no images ({sorted(IMAGE_SUFFIXES)}) under {config.calibration}")
        x = maker.from_frames([read_image(f) for f in files])
        data_note.update(calibration=config.calibration, n_check=len(files))
    else:
        if config.samples < 1:
            raise OnnxSplitError("--samples must be at least 1")
        x = maker.generated(config.samples)
        data_note.update(generated_samples=config.samples, seed=config.seed)
    if classes and prepared.outputs[0]["shape"][-1] != len(classes):
        raise OnnxSplitError(f"{len(classes)} classes, but the first output {prepared.outputs[0]['name']!r} has "
                             f"shape {prepared.outputs[0]['shape']}")

    full_session = _session(str(out / FULL_FILE))
    full_out = _run(full_session, x)
    baseline = None if held_x is None else _accuracy(_run(full_session, held_x), held_y, prepared.outputs)
    total = count_flops(out / FULL_FILE)
    try:
        cuts = spread(find_cuts(model), total, config.points)
    except (KeyError, ValueError, IndexError) as exc:       # a graph whose shapes the scan cannot read
        raise OnnxSplitError(f"{source}: cannot scan the graph for cut points ({type(exc).__name__}: {exc})") \
            from None
    if not cuts:
        raise OnnxSplitError(f"{source}: no point splits this graph into a head and a tail with work on both "
                             "sides (every activation crossing is bigger than "
                             "a few tensors, or needs the frame itself)")
    extractor = utils.Extractor(model)
    points, rejected = [], []
    for k, cut in enumerate(tqdm(cuts, desc="split points", unit="point", disable=None if progress else True), start=1):
        name = f"P{len(points) + 1}"
        try:
            point = _build_point(name, cut, model, extractor, out, x, full_out, prepared.outputs, config,
                                 held_x, held_y)
        except Exception as exc:     # onnx's extractor or checker, onnxruntime: this cut is refused, not the build
            rejected.append({"name": f"cut{k}", "layer": " + ".join(cut.tensors),
                             "reason": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"})
            _remove_point_files(out, name)
            continue
        if point.pop("usable"):
            points.append(point)
        else:
            _remove_point_files(out, name)
            rejected.append(dict(point, name=f"cut{k}", reason="head + tail do not reproduce the model "
                                                              f"(max error {point['agreement']['exact_max_error']:.3g})"))
    if not points:
        raise OnnxSplitError(f"{source}: no cut of this graph reproduces the model: "
                             + "; ".join(f"{r['layer'][:60]}: {r['reason']}" for r in rejected))
    manifest = {
        "name": config.name or source.stem,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "classes": list(classes),
        "input": {"name": prepared.input_name, "dtype": prepared.dtype, "shape": list(prepared.shape),
                  "layout": layout or "NCHW"},
        "outputs": prepared.outputs,
        **({"preprocess": preprocess.to_manifest()} if preprocess else {}),
        "models": [{"name": "full", "file": FULL_FILE, "role": "big", "accuracy": baseline, "flops": total,
                    "params": sum(int(prod(i.dims)) for i in model.graph.initializer)}],
        "split": {"model": "full", "baseline_accuracy": baseline, "accuracy_loss_bound": 0.02,
                  "upload": {"dtype": "uint8", "scheme": "per-tensor-affine"},
                  "points": points, "rejected_points": rejected},
        "data": {**data_note, "build_config": asdict(config)},
    }
    write_manifest(out, manifest)
    return json.loads((out / "manifest.json").read_text())


def _build_point(name: str, cut: Cut, model: onnx.ModelProto, extractor: utils.Extractor, out: Path,
                 x: np.ndarray, full_out: np.ndarray, outputs: list[dict], config: OnnxSplitConfig,
                 held_x: np.ndarray | None, held_y: np.ndarray | None) -> dict:
    head_file, tail_file = f"{name}.head.onnx", f"{name}.tail.onnx"
    head, tail = head_and_tail(model, cut, extractor)
    onnx.save(head, str(out / head_file))
    onnx.save(tail, str(out / tail_file))
    head_s, tail_s = _session(str(out / head_file)), _session(str(out / tail_file))
    upload = "uint8" if config.upload == "auto" else config.upload
    figures = check_point(head_s, tail_s, x, full_out, outputs, upload)
    if config.upload == "auto" and figures.get("top1_agreement", 1.0) < 0.99:
        upload = "float16"           # 8 bits change the answer here; 16 keep it
        figures = dict(check_point(head_s, tail_s, x, full_out, outputs, upload),
                       uint8_top1_agreement=figures["top1_agreement"])
    reduced_shape = [1, *head_s.get_outputs()[0].shape[1:]]
    channels = sum(s[1] if len(s) > 1 else 1 for s in cut.shapes)
    accuracy = None
    if held_x is not None:
        split_out = np.concatenate([_run(tail_s, as_received(_run(head_s, held_x[i:i + 1]).reshape(reduced_shape),
                                                             upload)) for i in range(len(held_x))])
        accuracy = _accuracy(split_out, held_y, outputs)
    return {
        "name": name, "layer": " + ".join(cut.tensors), "D": channels, "D_r": channels,
        "reduced_shape": reduced_shape, "upload": upload,
        "upload_bytes": int(prod(reduced_shape)) * (1 if upload == "uint8" else 2),
        "head": head_file, "tail": tail_file,
        "head_flops": count_flops(out / head_file), "tail_flops": count_flops(out / tail_file),
        "accuracy": accuracy, "accuracy_float": None, "agreement": figures, "usable": bool(figures["exact"]),
    }


def _remove_point_files(out: Path, name: str) -> None:
    for suffix in (".head.onnx", ".tail.onnx"):
        (out / f"{name}{suffix}").unlink(missing_ok=True)

