"""Export a bundle's cloud side as a Triton Inference Server model repository.

At scale the cloud worker is a thin gateway (CURVE, de-duplication, reply cache) in
front of Triton, which does the batching and the GPU work. Per cloud target (the full
model and every split point's tail) this writes

    <repo>/<bundle>_<target>/config.pbtxt       platform onnxruntime_onnx (runs anywhere)
    <repo>/<bundle>_<target>/1/model.onnx       the bundle's file, byte for byte

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

from adaptinf.bundle import Bundle, sha256_file
from adaptinf.cloud.protocol import FULL_TARGET

TRITON_TYPES = {"uint8": "TYPE_UINT8", "int8": "TYPE_INT8", "float16": "TYPE_FP16", "float32": "TYPE_FP32"}
MAX_BATCH = 8
QUEUE_DELAY_US = 500
DEFAULT_TIMEOUT_US = 1_000_000


def model_name(bundle: Bundle, target: str) -> str:
    return f"{bundle.name}_{target}"


def targets(bundle: Bundle) -> dict[str, tuple[str, str, list[int]]]:
    """target -> (ONNX file, input name, input dtype, sample dims) of what the cloud runs."""
    out = {FULL_TARGET: (bundle.full_model.file, bundle.input.name, bundle.input.dtype, list(bundle.input.shape[1:]))}
    for p in bundle.split.points if bundle.split else ():
        out[p.name] = (p.tail, "reduced", "float32", list(p.reduced_shape[1:]))
    return out


def config_pbtxt(name: str, platform: str, input_name: str, input_dtype: str, dims: list[int], classes: int,
                 cc_model_filenames: dict[str, str] | None = None) -> str:
    lines = [
        f'name: "{name}"',
        f'platform: "{platform}"',
        f"max_batch_size: {MAX_BATCH}",
        f'input [ {{ name: "{input_name}" data_type: {TRITON_TYPES[input_dtype]} dims: {dims} }} ]',
        f'output [ {{ name: "logits" data_type: TYPE_FP32 dims: [ {classes} ] }} ]',
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
        "instance_group [ { kind: KIND_GPU count: 1 } ]",
    ]
    for cc, filename in sorted((cc_model_filenames or {}).items()):
        lines.append(f'cc_model_filenames {{ key: "{cc}" value: "{filename}" }}')
    return "\n".join(lines) + "\n"


def export_repository(bundle: Bundle, out: Path | str) -> list[str]:
    """Write the ONNX Runtime models; returns the model names."""
    out = Path(out)
    names = []
    for target, (file, input_name, dtype, dims) in targets(bundle).items():
        name = model_name(bundle, target)
        version = out / name / "1"
        version.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(bundle.path(file), version / "model.onnx")
        (out / name / "config.pbtxt").write_text(
            config_pbtxt(name, "onnxruntime_onnx", input_name, dtype, dims, len(bundle.classes)))
        names.append(name)
    (out / "adaptinf-export.json").write_text(json.dumps(
        {"bundle": bundle.name, "manifest_sha256": bundle.manifest_sha256, "models": names,
         "sources": {n: sha256_file(bundle.path(t[0])) for n, t in
                     zip(names, targets(bundle).values())}}, indent=1) + "\n")
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
    for target, (file, input_name, dtype, dims) in targets(bundle).items():
        name = model_name(bundle, target) + "_trt"
        version = out / name / "1"
        version.mkdir(parents=True, exist_ok=True)
        filename = f"model_{major}{minor}.plan"
        (version / filename).write_bytes(build_plan(bundle.path(file), fp16=True, max_batch=MAX_BATCH))
        plans_file = out / name / "plans.json"  # every GPU type built so far
        plans = json.loads(plans_file.read_text()) if plans_file.exists() else {}
        plans[cc] = filename
        plans_file.write_text(json.dumps(plans, indent=1) + "\n")
        (out / name / "config.pbtxt").write_text(
            config_pbtxt(name, "tensorrt_plan", input_name, dtype, dims, len(bundle.classes), plans))
        names.append(name)
    return names
