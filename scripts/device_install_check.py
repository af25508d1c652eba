"""Run by scripts/check_device_install.sh inside a no-extras install of adaptinf.

1. Every module of the run-time packages imports (daemon, drivers, engines, policies,
   cloud, and the package root), and the build-only modules are really absent.
2. adaptinfd, as the installed console script, starts on the shipped bundle with no
   cloud and answers an `infer` from the installed client.
3. Commands that need an extra say which one instead of a traceback.

Prints `N passed, N failed` and exits non-zero on any failure.
"""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import tempfile
from pathlib import Path

RUNTIME_PACKAGES = ("adaptinf", "adaptinf.client", "adaptinf.daemon", "adaptinf.drivers", "adaptinf.engines", "adaptinf.policies",
                    "adaptinf.cloud")
NOT_INSTALLED = ("torch", "onnx", "matplotlib", "PIL", "sklearn")    # extras only: a device install lacks them
# modules of the run-time packages that are programs needing an extra (they say so when run)
NEEDS_EXTRA = {"adaptinf.programs.demo"}
NOT_A_LIBRARY = {"adaptinf.__main__"}              # `python -m adaptinf`: runs the CLI when imported

results: list[tuple[str, str | None]] = []


def check(name: str, fn) -> None:
    try:
        fn()
        results.append((name, None))
    except Exception as exc:  # a failed check is reported, never a traceback that hides the others
        results.append((name, f"{type(exc).__name__}: {exc}"))


def import_everything() -> None:
    failed = []
    for package in RUNTIME_PACKAGES:
        module = importlib.import_module(package)
        for info in pkgutil.iter_modules(module.__path__, package + "."):
            if info.ispkg or info.name in NEEDS_EXTRA | NOT_A_LIBRARY:
                continue
            try:
                importlib.import_module(info.name)
            except Exception as exc:
                failed.append(f"{info.name}: {type(exc).__name__}: {exc}")
    if failed:
        raise AssertionError("; ".join(failed))


def extras_absent() -> None:
    present = [name for name in NOT_INSTALLED if importlib.util.find_spec(name) is not None]
    if present:
        raise AssertionError(f"a no-extras install should not have {present}")


def serve_a_frame(bundle: Path) -> None:
    import numpy as np

    from adaptinf.client import Client
    from adaptinf.rig.processes import spawn

    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "adaptinfd.toml"
        config.write_text(f'[daemon]\napi_endpoint = "ipc://{tmp}/api.sock"\nbundle = "{bundle}"\n'
                          f'state_dir = "{tmp}"\nwarmup_runs = 3\n[cloud]\nendpoint = ""\n[power]\nsource = "none"\n')
        daemon = spawn("adaptinfd", "adaptinf.daemon.main", ["--config", str(config)])
        try:
            with Client(f"ipc://{tmp}/api.sock", timeout_s=10) as client:
                shape = client.models()[0]["inputs"][0]["shape"]
                reply = client.infer(np.zeros((1, *shape[1:]), np.uint8), policy="split")
                if reply.served_by["partition"] != "mobile-only":
                    raise AssertionError(f"with no cloud the frame must run on the device: {reply.served_by}")
        finally:
            if daemon.stop() != 0:
                raise AssertionError("adaptinfd did not exit 0 on SIGTERM:\n" + "\n".join(daemon.output[-10:]))


def command_says(argv: list[str], expected: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if done.returncode == 0 or expected not in done.stderr or "Traceback" in done.stderr:
        raise AssertionError(f"{argv}: exit {done.returncode}, stderr {done.stderr[-400:]!r}")


def shipped_demo_data() -> None:
    """The demo's defaults are package data: the 224x224 bundle and the synthetic traces."""
    from adaptinf.bundle import load_bundle
    from adaptinf.programs.demo import DEFAULT_TRACES, DEMO_BUNDLE
    from adaptinf.rig.uplink_trace import parse_trace_spec

    if "site-packages" not in str(DEMO_BUNDLE):
        raise AssertionError(f"the demo bundle should be the installed copy, not {DEMO_BUNDLE}")
    load_bundle(DEMO_BUNDLE)
    for spec in DEFAULT_TRACES:
        parse_trace_spec(spec)


def selftest_a_built_model_without_extras() -> None:
    """`adaptinf mcu selftest --model DIR` reaches the serial port with no torch and no sklearn."""
    import numpy as np

    from adaptinf.drivers.mcu_model import McuSystem, quantize_net, system_blob

    rng = np.random.default_rng(0)
    net = quantize_net([rng.normal(size=(16, 64)), rng.normal(size=(10, 16))], [np.zeros(16), np.zeros(10)],
                       rng.random((20, 64)))
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "dsnn_system.aims").write_bytes(system_blob(McuSystem((net,), (tuple(range(10)),))))
        argv = [Path(sys.executable).parent / "adaptinf", "mcu", "selftest", "--port", "socket://127.0.0.1:9",
                "--model", tmp, "--count", "1"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if done.returncode != 1 or "serial:" not in done.stdout or "pip install" in done.stdout + done.stderr \
                or "Traceback" in done.stderr:
            raise AssertionError(f"exit {done.returncode}: {done.stdout[-300:]!r} {done.stderr[-300:]!r}")


def main() -> int:
    bundle = Path(sys.argv[1]).resolve()
    bin_dir = Path(sys.executable).parent
    check("imports every run-time module", import_everything)
    check("has no build extras", extras_absent)
    check("adaptinfd serves a frame with no cloud and no torch", lambda: serve_a_frame(bundle))
    check("adaptinfd --version", lambda: subprocess.run([bin_dir / "adaptinfd", "--version"], check=True,
                                                       capture_output=True))
    check("adaptinf demo names its extra", lambda: command_says(
        [bin_dir / "adaptinf", "demo", "--seconds", "1"], "pip install 'adaptinf[demo]'"))
    check("the demo's bundle and traces are installed with it", shipped_demo_data)
    check("mcu selftest of a built model needs no extra", selftest_a_built_model_without_extras)
    check("adaptinf build names its extra", lambda: command_says(
        [bin_dir / "adaptinf", "build", "split", "--out", "/tmp/never"], "pip install 'adaptinf[build]'"))
    check("adaptinf-calib names its extra", lambda: command_says(
        [bin_dir / "adaptinf-calib", "--config", "/nonexistent.toml"], "pip install 'adaptinf[calib]'"))
    for name, error in results:
        print(f"{'ok  ' if error is None else 'FAIL'} {name}" + (f": {error}" if error else ""))
    failed = sum(error is not None for _, error in results)
    print(f"device install: {len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
