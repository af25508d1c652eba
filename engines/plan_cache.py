"""Where built TensorRT plans live, keyed by what makes a plan valid.

A plan is valid only for the exact ONNX graph (its sha256), the TensorRT version that
built it, the GPU (name and compute capability) and the precision. The key is stored
next to the plan; a plan whose stored key differs is stale and is rebuilt, never run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from adaptinf.packed_floats import packed_path


@dataclass(frozen=True)
class PlanKey:
    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str  # "fp16" or "fp32"

    def filename(self) -> str:
        gpu = re.sub(r"[^A-Za-z0-9]+", "-", self.gpu_name).strip("-").lower()
        return f"{self.onnx_sha256[:16]}-trt{self.tensorrt_version}-{gpu}-sm{self.compute_capability}-{self.precision}.plan"


def onnx_sha256(path: Path) -> str:
    """The graph's hash, and its packed custom-float weights' where it has them (the plan
    bakes the weights in)."""
    digest = hashlib.sha256(Path(path).read_bytes())
    packed = packed_path(path)
    if packed.exists():
        digest.update(packed.read_bytes())
    return digest.hexdigest()


class PlanCache:
    def __init__(self, root: Path | str):
        self.root = Path(root)

    def _paths(self, key: PlanKey) -> tuple[Path, Path]:
        plan = self.root / key.filename()
        return plan, plan.with_suffix(".json")

    def load(self, key: PlanKey) -> bytes | None:
        """The cached plan for key, or None if absent or stale."""
        plan, meta = self._paths(key)
        if not plan.is_file() or not meta.is_file():
            return None
        try:
            stored = json.loads(meta.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if stored != asdict(key):
            return None
        return plan.read_bytes()

    def store(self, key: PlanKey, plan_bytes: bytes) -> Path:
        """Write atomically: a crash mid-write never leaves a truncated plan under the key."""
        self.root.mkdir(parents=True, exist_ok=True)
        plan, meta = self._paths(key)
        for path, data in ((plan, plan_bytes), (meta, json.dumps(asdict(key)).encode())):
            tmp = path.with_name(path.name + f".tmp{os.getpid()}")
            tmp.write_bytes(data)
            tmp.replace(path)
        return plan
