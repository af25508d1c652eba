"""`adaptinf mcu selftest --port PORT`: is this board (or QEMU) working? For a person at a bench.

Handshake (versions, capacity), an echo of 500 bytes with zeros in it, a model load, then
digits through the MCU compared bit for bit with the host reference (class, chosen net and
int8 logits). Prints each step; exit status 0 only when all of them pass.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from adaptinf.drivers import mcu_protocol as proto
from adaptinf.drivers.mcu import McuClient, McuError
from adaptinf.drivers.mcu_model import McuSystem, parse_system, reference_predict


def default_system() -> McuSystem:
    """A 64-32-10 int8 MLP trained on scikit-learn's digits in a second or two."""
    from sklearn.neural_network import MLPClassifier

    from adaptinf.drivers.mcu_model import quantize_net
    from adaptinf.toolchain.datasets import digits_features

    x, y = digits_features()
    with warnings.catch_warnings():   # a fixed small budget; convergence is not the point here
        warnings.simplefilter("ignore")
        clf = MLPClassifier((32,), max_iter=200, random_state=0).fit(x[:1400], y[:1400])
    net = quantize_net([w.T for w in clf.coefs_], clf.intercepts_, x[:200])
    return McuSystem((net,), (tuple(int(c) for c in clf.classes_),))


def test_inputs(system: McuSystem, count: int) -> tuple[np.ndarray, np.ndarray | None, str]:
    """What to send: sklearn's digits (labelled) where the model takes 64 features and sklearn is
    installed; otherwise seeded uniform features in [0, 1] of the model's width. Bit-exactness
    with the host reference needs no labels, so a device install (no sklearn, no torch) can
    check a built model too."""
    width = system.nets[0].input_dim
    if width == 64:
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            pass
        else:
            d = load_digits()
            x, y = (d.data / 16.0).astype(np.float32), d.target.astype(np.int64)
            return x[-count:], y[-count:], "digits"
    x = np.random.default_rng(0).random((count, width), dtype=np.float32)
    return x, None, f"random {width}-feature inputs"


def selftest(port: str, model_dir: Path | None = None, count: int = 100,
             say: Callable[[str], None] = print) -> bool:
    from adaptinf.drivers.mcu_model import system_blob

    ok = True

    def check(passed: bool, what: str) -> None:
        nonlocal ok
        ok &= passed
        say(f"  {'PASS' if passed else 'FAIL'}  {what}")

    system = parse_system((model_dir / "dsnn_system.aims").read_bytes()) if model_dir else default_system()
    blob = system_blob(system)
    say(f"adaptinf mcu selftest on {port}")
    try:
        with McuClient(port, timeout_s=2.0) as mcu:
            hello = mcu.hello(attempts=5)
            check(hello.protocol_version == proto.VERSION,
                  f"handshake: firmware {hello.firmware_version}, protocol {hello.protocol_version} "
                  f"(host {proto.VERSION}), max payload {hello.max_payload} B, model buffer {hello.model_capacity} B")
            pattern = bytes(i % 7 for i in range(500))      # zeros every 7 bytes: exercises COBS
            start = time.monotonic()
            echoed = mcu.ping(pattern)
            check(echoed == pattern, f"echo of 500 bytes in {(time.monotonic() - start) * 1e3:.1f} ms")
            start = time.monotonic()
            mcu.load_blob(blob)
            check(mcu.hello().model_loaded == len(blob),
                  f"load of {len(blob)} B ({len(system.nets)} net(s), tree: {system.tree is not None}) "
                  f"in {time.monotonic() - start:.2f} s")
            x, y, what = test_inputs(system, count)
            agree, correct, ticks = 0, 0, []
            for i, row in enumerate(x):
                r = mcu.infer(row)
                ref_label, ref_net, ref_logits = reference_predict(system, row)
                agree += (r.label, r.net) == (ref_label, ref_net) and r.logits is not None and \
                    r.logits.tobytes() == ref_logits.astype(np.float32).tobytes()
                correct += y is not None and r.label == y[i]
                ticks.append(r.count)
            accuracy = f"accuracy {correct / len(x):.1%}; " if y is not None else ""
            check(agree == len(x), f"{agree}/{len(x)} {what} bit-exact with the host reference "
                                   f"({accuracy}{np.mean(ticks):.0f} SysTick ticks each)")
            check(mcu.bad_frames == 0, f"{mcu.bad_frames} broken frames, {mcu.retransmissions} retransmissions, "
                                       f"{mcu.boot_hellos} resets on the line")
    except (McuError, OSError) as exc:
        check(False, f"serial: {exc}")
    say("adaptinf mcu selftest: " + ("all passed" if ok else "FAILED"))
    return ok
