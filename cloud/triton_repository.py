"""Export a bundle's cloud side as a Triton Inference Server model repository.

At scale the cloud worker is a thin gateway (CURVE, de-duplication, reply cache) in
front of Triton, which does the batching and the GPU work. Per cloud target (the full
model and every split point's tail) this writes, by backend:

  onnxruntime (NVIDIA's container):
    <repo>/<bundle>_<target>/config.pbtxt       platform onnxruntime_onnx
    <repo>/<bundle>_<target>/1/model.onnx       the bundle's file, byte for byte
  python (any tritonserver with the Python backend, e.g. nvidia-pytriton's on a CPU):
    <repo>/<bundle>_<target>/config.pbtxt       backend python, KIND_CPU
    <repo>/<bundle>_<target>/1/model.onnx       the same file
    <repo>/<bundle>_<target>/1/model.py         runs it with onnxruntime, a batch per call

and, with `add_tensorrt_plans` run once on each cloud GPU type (TensorRT plans are tied
to the compute capability that built them),

    <repo>/<bundle>_<target>_trt/config.pbtxt   platform tensorrt_plan, cc_model_filenames
    <repo>/<bundle>_<target>_trt/1/model_<cc>.plan

Dynamic batching with two priority levels (adaptinf's API priority maps onto them) and
a queue policy that rejects requests past their timeout, so a congested Triton sheds
load instead of answering after the device has fallen back.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import NamedTuple

from adaptinf.bundle import Bundle, sha256_file
from adaptinf.cloud.protocol import FULL_TARGET

TRITON_TYPES = {"uint8": "TYPE_UINT8", "int8": "TYPE_INT8", "float16": "TYPE_FP16", "float32": "TYPE_FP32"}
MAX_BATCH = 8
QUEUE_DELAY_US = 500
DEFAULT_TIMEOUT_US = 1_000_000


def model_name(bundle: Bundle, target: str) -> str:
    return f"{bundle.name}_{target}"


class Target(NamedTuple):
    """What the cloud runs for one target, with the names and sample dims its graph declares."""

    file: str
    input_name: str
    dtype: str
    dims: list[int]
    output_name: str
    output_dims: list[int]


def _graph_io(bundle: Bundle, file: str, dtype: str, dims: list[int]) -> Target:
    """The graph's own input and output names (a cut model's are its tensors' names) and its
    one output's sample dims (the model's outputs, as the bundle's graphs answer)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(bundle.path(file)), options, providers=["CPUExecutionProvider"])
    out = session.get_outputs()[0]
    out_dims = [d if isinstance(d, int) and d > 0 else -1 for d in out.shape[1:]]
    return Target(file, session.get_inputs()[0].name, dtype, dims, out.name, out_dims)


def targets(bundle: Bundle) -> dict[str, Target]:
    """target -> what the cloud runs for it."""
    frame = (bundle.input.dtype, list(bundle.input.shape[1:]))
    out = {FULL_TARGET: _graph_io(bundle, bundle.full_model.file, *frame)}
    for p in bundle.split.points if bundle.split else ():
        out[p.name] = _graph_io(bundle, p.tail, "float32", list(p.reduced_shape[1:]))
    for name in bundle.zoo.models if bundle.zoo else ():
        out[name] = _graph_io(bundle, bundle.model(name).file, *frame)
    return out


BACKENDS = ("onnxruntime", "python", "tensorrt")


def config_pbtxt(name: str, platform: str, target: Target, cc_model_filenames: dict[str, str] | None = None, dynamic_batching: bool = True,
                 parameters: dict[str, str] | None = None) -> str:
    """platform "python" means the Python backend (its own config key), on CPU instances."""
    lines = [
        f'name: "{name}"',
        'backend: "python"' if platform == "python" else f'platform: "{platform}"',
        f"max_batch_size: {MAX_BATCH}",
        f'input [ {{ name: "{target.input_name}" data_type: {TRITON_TYPES[target.dtype]} dims: {target.dims} }} ]',
        f'output [ {{ name: "{target.output_name}" data_type: TYPE_FP32 dims: {target.output_dims} }} ]',
    ]
    if dynamic_batching:
        lines += [
            "dynamic_batching {",
            f"  max_queue_delay_microseconds: {QUEUE_DELAY_US}",
            "  priority_levels: 2",
            "  default_priority_level: 2",
            "  default_queue_policy {",
            "    timeout_action: REJECT",
            f"    default_timeout_microseconds: {DEFAULT_TIMEOUT_US}",
            "    allow_timeout_override: true",
            "    max_queue_size: 256",
            "  }",
            "}",
        ]
    lines.append(f"instance_group [ {{ kind: {'KIND_CPU' if platform == 'python' else 'KIND_GPU'} count: 1 }} ]")
    for key, value in sorted((parameters or {}).items()):
        lines.append(f'parameters {{ key: "{key}" value: {{ string_value: "{value}" }} }}')
    for cc, filename in sorted((cc_model_filenames or {}).items()):
        lines.append(f'cc_model_filenames {{ key: "{cc}" value: "{filename}" }}')
    return "\n".join(lines) + "\n"


def export_repository(bundle: Bundle, out: Path | str, backend: str = "onnxruntime",
                      dynamic_batching: bool = True) -> list[str]:
    """Write the models for `backend` (onnxruntime or python); returns the model names."""
    if backend not in ("onnxruntime", "python"):
        raise ValueError(f"export_repository writes onnxruntime or python models, not {backend!r}")
    out = Path(out)
    names = []
    for target, io in targets(bundle).items():
        name = model_name(bundle, target)
        version = out / name / "1"
        version.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(bundle.path(io.file), version / "model.onnx")
        if backend == "python":
            # the backend's stub has its own interpreter, which does not see this environment's
            # packages (triton-on-cpu.md): the model puts them on sys.path before any import
            (version / "model.py").write_text(PYTHON_MODEL.replace("@SITE_PACKAGES@",
                                                                   _site_packages_of("onnxruntime")))
        (out / name / "config.pbtxt").write_text(
            config_pbtxt(name, "python" if backend == "python" else "onnxruntime_onnx", io,
                         dynamic_batching=dynamic_batching))
        names.append(name)
    (out / "adaptinf-export.json").write_text(json.dumps(
        {"bundle": bundle.name, "manifest_sha256": bundle.manifest_sha256, "models": names,
         "sources": {n: sha256_file(bundle.path(t.file)) for n, t in zip(names, targets(bundle).values())}},
        indent=1) + "\n")
    return names


def add_tensorrt_plans(bundle: Bundle, out: Path | str) -> list[str]:
    """Build FP16 plans on this GPU and add them beside those of other GPU types (needs TensorRT)."""
    import pycuda.driver as cuda

    from adaptinf.engines.tensorrt_engine import build_plan, tensorrt_available

    ok, why = tensorrt_available()
    if not ok:
        raise RuntimeError(f"TensorRT plans need TensorRT and a GPU here: {why}")
    major, minor = cuda.Device(0).compute_capability()
    cc = f"{major}.{minor}"
    out = Path(out)
    names = []
    for target, io in targets(bundle).items():
        name = model_name(bundle, target) + "_trt"
        version = out / name / "1"
        version.mkdir(parents=True, exist_ok=True)
        filename = f"model_{major}{minor}.plan"
        (version / filename).write_bytes(build_plan(bundle.path(io.file), fp16=True, max_batch=MAX_BATCH))
        plans_file = out / name / "plans.json"  # every GPU type built so far
        plans = json.loads(plans_file.read_text()) if plans_file.exists() else {}
        plans[cc] = filename
        plans_file.write_text(json.dumps(plans, indent=1) + "\n")
        (out / name / "config.pbtxt").write_text(
            config_pbtxt(name, "tensorrt_plan", io, plans))
        names.append(name)
    return names


def _site_packages_of(package: str) -> str:
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{package} is not installed here: the python backend's models need it")
    return str(Path(next(iter(spec.submodule_search_locations))).parent)


# The Python-backend model: one onnxruntime session; a batch of requests runs as one call
# (dynamic batching hands over several), split back per request. Written into each model's
# version folder; it imports nothing from adaptinf.
PYTHON_MODEL = '''"""Triton Python-backend model written by `adaptinf export triton --backend python`."""

import json
import os
import sys

# numpy and onnxruntime, from the environment that exported this repository (the stub's
# interpreter sees only its own paths); set ADAPTINF_SITE_PACKAGES to use another
SITE_PACKAGES = os.environ.get("ADAPTINF_SITE_PACKAGES", "@SITE_PACKAGES@")
if SITE_PACKAGES not in sys.path:
    sys.path.append(SITE_PACKAGES)

import triton_python_backend_utils as pb_utils  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        import numpy as np
        import onnxruntime as ort

        self.np = np
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        self.ort_input = self.session.get_inputs()[0].name

    def execute(self, requests):
        np = self.np
        batches = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        sizes = [b.shape[0] for b in batches]
        logits = self.session.run(None, {self.ort_input: np.concatenate(batches)})[0].astype(np.float32)
        responses, start = [], 0
        for n in sizes:
            out = pb_utils.Tensor(self.output_name, np.ascontiguousarray(logits[start:start + n]))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
            start += n
        return responses
'''
