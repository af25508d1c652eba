"""A real Triton Inference Server for tests and benchmarks: the tritonserver binary that the
nvidia-pytriton wheel ships, on this CPU, bound to loopback.

The wheel carries `tritonserver`, its Python backend and one backend stub per Python
version; the stub for the running Python is put beside the backend in a private backend
directory (../shared/notes/triton-on-cpu.md). Readiness is Triton's own HTTP
/v2/health/ready. Without a GPU it logs CUDA/NVML errors at start and carries on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from importlib import metadata
from pathlib import Path

from adaptinf.rig.processes import free_port


class TritonUnavailable(RuntimeError):
    pass


def pytriton_root() -> Path:
    """The wheel's tritonserver tree, found through the installed distribution's files (the
    wheel is only a carrier for the binary: nothing of pytriton's Python is imported)."""
    try:
        dist = metadata.distribution("nvidia-pytriton")
    except metadata.PackageNotFoundError:
        raise TritonUnavailable("the nvidia-pytriton wheel is not installed (pip install 'adaptinf[test]')") from None
    root = Path(dist.locate_file("pytriton/tritonserver"))
    if not (root / "bin" / "tritonserver").is_file():
        raise TritonUnavailable(f"{root} has no bin/tritonserver")
    return root


class TritonServer:
    def __init__(self, repository: Path | str, grpc_port: int = 0, http_port: int = 0):
        self.root = pytriton_root()
        self.repository = Path(repository)
        self.grpc_port = grpc_port or free_port()
        self.http_port = http_port or free_port()
        self.metrics_port = free_port()
        self._backends = Path(tempfile.mkdtemp(prefix="adaptinf-triton-backends-"))
        python = self._backends / "python"
        shutil.copytree(self.root / "backends" / "python", python)
        stub = self.root / "python_backend_stubs" / f"{sys.version_info.major}.{sys.version_info.minor}" / \
            "triton_python_backend_stub"
        if not stub.is_file():
            raise TritonUnavailable(f"no Python backend stub for Python {sys.version_info.major}."
                                    f"{sys.version_info.minor} in {stub.parent.parent}")
        shutil.copy2(stub, python / "triton_python_backend_stub")
        self.process: subprocess.Popen | None = None
        self.log = self._backends / "tritonserver.log"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self, timeout_s: float = 120.0) -> "TritonServer":
        binary = self.root / "bin" / "tritonserver"
        # the stub, copied out of the wheel, no longer finds the wheel's libraries by its RPATH
        libs = self.root.parent.parent / "nvidia_pytriton.libs"
        env = dict(os.environ, LD_LIBRARY_PATH=os.pathsep.join(
            p for p in (str(libs), os.environ.get("LD_LIBRARY_PATH", "")) if p))
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [str(binary), f"--model-repository={self.repository}", f"--backend-directory={self._backends}",
                 "--http-address=127.0.0.1", f"--http-port={self.http_port}",
                 "--grpc-address=127.0.0.1", f"--grpc-port={self.grpc_port}",
                 "--allow-metrics=true", f"--metrics-port={self.metrics_port}", "--log-verbose=0"],
                stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise TritonUnavailable(f"tritonserver exited with {self.process.returncode}: {self.tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/v2/health/ready", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.25)
        self.stop()
        raise TritonUnavailable(f"tritonserver not ready within {timeout_s:.0f} s: {self.tail()}")

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def kill(self) -> None:
        """Abruptly, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._backends, ignore_errors=True)
