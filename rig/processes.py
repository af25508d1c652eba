"""Start adaptinf's real processes (cloud worker, daemon) and wait until they serve.

Both print "READY <endpoint>" on stdout once bound; anything else they print before
that is kept for the error message if they die instead.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now (for a child process to bind)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resident_mib(pid: int) -> float:
    """A process's resident memory (VmRSS), MiB: what the soak benchmarks track."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class ProcessFailed(RuntimeError):
    pass


@dataclass
class Service:
    name: str
    process: subprocess.Popen
    endpoint: str
    output: list[str] = field(default_factory=list)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def spawn(name: str, module: str, args: list[str], timeout_s: float = 60.0, env: dict | None = None) -> Service:
    return _spawn(name, [sys.executable, "-u", "-m", module, *args], timeout_s, env)


def spawn_script(name: str, source: str, args: list[str], timeout_s: float = 30.0) -> Service:
    """A Python snippet in its own process (benchmark peers); it must print READY <endpoint>."""
    return _spawn(name, [sys.executable, "-u", "-c", source, *args], timeout_s, None)


def _spawn(name: str, command: list[str], timeout_s: float, env: dict | None) -> Service:
    proc = subprocess.Popen(command, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})})
    output: list[str] = []
    ready = threading.Event()
    endpoint: list[str] = []

    def pump() -> None:  # keep reading so the child never blocks on a full pipe
        for line in proc.stdout:
            output.append(line.rstrip())
            if line.startswith("READY ") and not ready.is_set():
                endpoint.append(line.split(" ", 1)[1].strip())
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout_s
    while not ready.wait(0.05):
        if time.monotonic() > deadline:
            proc.kill()
            raise ProcessFailed(f"{name} did not become ready in {timeout_s:.0f} s:\n" + "\n".join(output[-20:]))
    if not endpoint:
        proc.wait(5)
        raise ProcessFailed(f"{name} exited with {proc.returncode}:\n" + "\n".join(output[-20:]))
    return Service(name, proc, endpoint[0], output)


def spawn_cloud(bundle: Path | str, endpoint: str = "tcp://127.0.0.1:*", threads: int = 1,
                extra_args: tuple[str, ...] = ()) -> Service:
    return spawn("adaptinf-cloud", "adaptinf.cloud.main",
                 ["--bundle", str(bundle), "--endpoint", endpoint, "--threads", str(threads), *extra_args])


def write_daemon_config(path: Path, **sections: dict) -> Path:
    """A TOML config from {section: {key: value}} (strings, numbers, booleans)."""
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if isinstance(value, bool):
                lines.append(f"{key} = {str(value).lower()}")
            elif isinstance(value, str):
                lines.append(f'{key} = "{value}"')
            else:
                lines.append(f"{key} = {value!r}")
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


def spawn_daemon(config: Path | str, timeout_s: float = 120.0, env: dict | None = None) -> Service:
    return spawn("adaptinfd", "adaptinf.daemon.main", ["--config", str(config), "--log-level", "WARNING"],
                 timeout_s=timeout_s, env=env)
