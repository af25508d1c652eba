"""The model's preprocessing as an ONNX graph: a camera frame in, the model's exact tensor out.

    frame uint8 [H, W, 3] RGB, any H and W
      -> float, channel order the model's (RGB or BGR)
      -> resize to the model's h x w: stretch, letterbox (fit, pad) or center-crop (fill, crop),
         bilinear with antialiasing (what PIL does when it shrinks a photo)
      -> x * scale, then (x - mean) / std per channel
      -> the model's layout (NCHW or NHWC) and dtype (float32, float16, or uint8 rounded)

The bundle ships it as preprocess.onnx (core/bundle.py `PreprocessSpec`). adaptinfd runs it
on the device for every frame that is not already the model's tensor, and the toolchain
runs the same file when it measures a bundle's accuracy on image files, so the two cannot
drift. Built here with the `onnx` package; a device only needs onnxruntime to run it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from adaptinf.bundle import PreprocessSpec

OPSET = 18                  # Resize's antialias and keep_aspect_ratio_policy
INPUT = "frame"
OUTPUT = "tensor"
LETTERBOX_FILL = 114        # the grey letterbox bars of YOLO-style preprocessing, in pixel units
_ONNX_DTYPES = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "uint8": TensorProto.UINT8}


def _const(name: str, values, dtype=np.int64) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


def preprocess_graph(spec: PreprocessSpec, dtype: str) -> onnx.ModelProto:
    """The graph for `spec`, producing the model's input `dtype`."""
    if dtype not in _ONNX_DTYPES:
        raise ValueError(f"preprocessing can produce {sorted(_ONNX_DTYPES)}, not {dtype}")
    h, w = spec.size
    # All in NHWC, the frame's own layout (a Transpose before a Resize with axes trips
    # onnxruntime's layout optimiser); the model's layout is made at the end.
    inits = [_const("p/hw", [h, w]), _const("p/unsq0", [0])]
    nodes = [
        helper.make_node("Cast", [INPUT], ["p/f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["p/f", "p/unsq0"], ["p/nhwc"]),
    ]
    x = "p/nhwc"
    if spec.channel_order == "BGR":
        inits.append(_const("p/bgr", [2, 1, 0]))
        nodes.append(helper.make_node("Gather", [x, "p/bgr"], ["p/ordered"], axis=3))
        x = "p/ordered"
    policy = {"stretch": "stretch", "letterbox": "not_larger", "center-crop": "not_smaller"}[spec.resize]
    nodes.append(helper.make_node("Resize", [x, "", "", "p/hw"], ["p/resized"], mode="linear", antialias=1,
                                  axes=[1, 2], keep_aspect_ratio_policy=policy,
                                  coordinate_transformation_mode="half_pixel"))
    x = "p/resized"
    if spec.resize != "stretch":
        # the resized frame's own h' x w' (one side is the model's): pad up or crop down, centred
        inits.append(_const("p/axes_hw", [1, 2]))
        nodes += [
            helper.make_node("Shape", [x], ["p/shape"]),
            helper.make_node("Gather", ["p/shape", "p/axes_hw"], ["p/rhw"], axis=0),
        ]
        if spec.resize == "letterbox":
            inits.append(_const("p/two", [2]))
            inits.append(_const("p/zero1", [0]))
            inits.append(numpy_helper.from_array(np.array(LETTERBOX_FILL, np.float32), "p/fill"))
            nodes += [
                helper.make_node("Sub", ["p/hw", "p/rhw"], ["p/gap"]),
                helper.make_node("Div", ["p/gap", "p/two"], ["p/before"]),
                helper.make_node("Sub", ["p/gap", "p/before"], ["p/after"]),
                # pads: [n, top, left, c, n, bottom, right, c]
                helper.make_node("Concat", ["p/zero1", "p/before", "p/zero1", "p/zero1", "p/after", "p/zero1"],
                                 ["p/pads"], axis=0),
                helper.make_node("Pad", [x, "p/pads", "p/fill"], ["p/boxed"], mode="constant"),
            ]
            x = "p/boxed"
        else:
            inits.append(_const("p/two", [2]))
            nodes += [
                helper.make_node("Sub", ["p/rhw", "p/hw"], ["p/excess"]),
                helper.make_node("Div", ["p/excess", "p/two"], ["p/start"]),
                helper.make_node("Add", ["p/start", "p/hw"], ["p/end"]),
                helper.make_node("Slice", [x, "p/start", "p/end", "p/axes_hw"], ["p/cropped"]),
            ]
            x = "p/cropped"
    if dtype == "uint8":
        # a uint8 model takes pixels: only the resize applies (scale, mean and std are 1, 0, 1)
        inits += [numpy_helper.from_array(np.array(0, np.float32), "p/lo"),
                  numpy_helper.from_array(np.array(255, np.float32), "p/hi")]
        nodes += [helper.make_node("Round", [x], ["p/round"]),
                  helper.make_node("Clip", ["p/round", "p/lo", "p/hi"], ["p/clipped"])]
        x = "p/clipped"
    else:
        inits += [numpy_helper.from_array(np.array(spec.scale, np.float32), "p/scale"),
                  numpy_helper.from_array(np.asarray(spec.mean, np.float32).reshape(1, 1, 1, 3), "p/mean"),
                  numpy_helper.from_array(np.asarray(spec.std, np.float32).reshape(1, 1, 1, 3), "p/std")]
        nodes += [helper.make_node("Mul", [x, "p/scale"], ["p/scaled"]),
                  helper.make_node("Sub", ["p/scaled", "p/mean"], ["p/centred"]),
                  helper.make_node("Div", ["p/centred", "p/std"], ["p/normalised"])]
        x = "p/normalised"
    if spec.layout == "NCHW":
        nodes.append(helper.make_node("Transpose", [x], ["p/layout"], perm=[0, 3, 1, 2]))
        x = "p/layout"
    nodes.append(helper.make_node("Cast", [x], [OUTPUT], to=_ONNX_DTYPES[dtype]))
    out_shape = [1, 3, h, w] if spec.layout == "NCHW" else [1, h, w, 3]
    graph = helper.make_graph(nodes, "adaptinf_preprocess",
                              [helper.make_tensor_value_info(INPUT, TensorProto.UINT8, ["H", "W", 3])],
                              [helper.make_tensor_value_info(OUTPUT, _ONNX_DTYPES[dtype], out_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="adaptinf")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def write_preprocess_graph(spec: PreprocessSpec, dtype: str, path: Path) -> None:
    onnx.save(preprocess_graph(spec, dtype), str(path))


def add_to_bundle(root: Path, resize: str = "stretch") -> dict:
    """Give a bundle that takes uint8 NHWC frames of one size (the toolchain's own) the
    preprocessing for camera frames of any size: resize only. Returns the new manifest."""
    import json

    from adaptinf.bundle import MANIFEST, RESIZE_MODES, load_bundle, write_manifest

    bundle = load_bundle(root)
    shape = bundle.input.shape
    if bundle.input.dtype != "uint8" or len(shape) != 4 or shape[3] != 3:
        raise ValueError(f"{root}: takes {bundle.input.dtype}{list(shape)}; resize-only preprocessing is for "
                         "uint8 [1, H, W, 3] frames (build split --onnx writes its own for other inputs)")
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize {resize!r}: one of {list(RESIZE_MODES)}")
    spec = PreprocessSpec("preprocess.onnx", resize, (shape[1], shape[2]), "RGB", "NHWC", 1.0, (0.0, 0.0, 0.0),
                          (1.0, 1.0, 1.0))
    write_preprocess_graph(spec, "uint8", Path(root) / spec.graph)
    manifest = json.loads((Path(root) / MANIFEST).read_text())
    for key in ("files", "format", "version"):
        manifest.pop(key, None)
    manifest["preprocess"] = spec.to_manifest()
    write_manifest(Path(root), manifest)
    return manifest
