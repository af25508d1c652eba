"""What calibration measures, each component on its own (so each can be re-run alone).

- device:     every graph the device can run (full model, every head, every tail) with the
              daemon's own engines: median and spread of latency; energy per inference from
              the power sensor over the whole timed loop (model-based when there is none,
              and marked so).
- cloud:      the cloud worker times its own engines for the full model and every tail.
- link:       heartbeat RTTs and upload probes through the daemon's own cloud link.
- mcu:        each exported dsNN (adaptinf build dsnn) loaded into the MCU over serial: load
              time, host round trip per inference, and the firmware's SysTick count (under
              QEMU -icount: 0.168 x instructions, not silicon cycles).
- confidence: on held-out frames, every partition's accuracy and confidence distribution
              (correct vs wrong), through the same quantised upload the daemon uses.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
from tqdm import tqdm

from adaptinf.bundle import Bundle
from adaptinf.daemon.device_models import DeviceModels
from adaptinf.daemon.measurement import time_engine
from adaptinf.daemon.power_monitor import PowerMonitor
from adaptinf.engines import Engine
from adaptinf.policies.confidence import probabilities
from adaptinf.profile import MOBILE_ONLY
from adaptinf.upload_quant import dequantize, quantize

CONFIDENCE_BINS = 20
BATCH = 8   # the engines' largest batch (TensorRT plans are built for 1..8)


def device_graphs(bundle: Bundle, models: DeviceModels) -> dict[str, tuple[Engine, str, str]]:
    """name -> (engine, ONNX file, input kind): the full model, each head and each tail,
    every zoo model but the full one ("zoo:<name>"), and the bundle's other models but the
    little ones ("model:<name>": a pool's models, its multiplexers). The little models
    (SIEVE's, Dynamic Duo's) are left to the layer regression, as the thesis (4.3.2)
    estimates L_m and E_m."""
    out = {MOBILE_ONLY: (models.full, bundle.full_model.file, "frame")}
    for p in bundle.split.points if bundle.split else ():
        out[f"{p.name}.head"] = (models.heads[p.name], p.head, "frame")
        out[f"{p.name}.tail"] = (models.tails[p.name], p.tail, p.name)
    for name, engine in (models.zoo or {}).items():
        if name != bundle.full_model.name:
            out[f"zoo:{name}"] = (engine, bundle.model(name).file, "frame")
    files = {file for _, file, _ in out.values()}
    for model in bundle.models:
        if model.role != "little" and model.file not in files and models.open_model is not None:
            out[f"model:{model.name}"] = (models.open_model(model.file), model.file, "frame")
    return out


def _input(bundle: Bundle, kind: str) -> np.ndarray:
    rng = np.random.default_rng(0)
    if kind == "frame":
        return (rng.random(bundle.input.shape) * 255).astype(bundle.input.dtype)
    return rng.random(bundle.point(kind).reduced_shape).astype(np.float32)


def measure_device(bundle: Bundle, models: DeviceModels, power: PowerMonitor | None, model_power_w: float,
                   runs: int, progress: bool = True) -> dict:
    out = {}
    graphs = device_graphs(bundle, models)
    for name, (engine, file, kind) in tqdm(graphs.items(), desc="device", unit="graph", disable=None if progress else True):
        x = _input(bundle, kind)
        engine.run(x)  # warm-up outside the energy window
        loop_start = time.monotonic()
        samples = time_engine(engine, x, runs, warmup=0)
        loop_end = time.monotonic()
        energy = power.energy_between(loop_start, loop_end, computing=True) if power is not None else None
        ms = statistics.median(samples)
        if energy is not None:
            energy_j, power_w, source = energy / runs, energy / (loop_end - loop_start), f"sensor:{power.source.name}"
        else:
            energy_j, power_w, source = model_power_w * ms / 1e3, model_power_w, "model"
        out[name] = {"file": file, "ms": ms, "ms_std": statistics.pstdev(samples), "energy_j": energy_j,
                     "power_w": power_w, "power_source": source}
    return out


def measure_confidence(bundle: Bundle, models: DeviceModels, images: np.ndarray, labels: np.ndarray,
                       progress: bool = True) -> dict:
    """Per partition: accuracy, and histograms of top-1 confidence for its right and wrong
    answers and for the frames the full model (the recovering model) gets right, so the
    recovery curve is measured, not assumed."""
    edges = np.linspace(0.0, 1.0, CONFIDENCE_BINS + 1)

    def split_logits(name: str, x: np.ndarray) -> np.ndarray:
        reduced = models.heads[name].run(x)
        uploaded = np.concatenate([dequantize(*quantize(r[None])) for r in reduced])  # per frame, as live
        return models.tails[name].run(uploaded)

    partitions = {MOBILE_ONLY: models.full.run}
    for p in bundle.split.points if bundle.split else ():
        partitions[p.name] = (lambda name: lambda x: split_logits(name, x))(p.name)
    out, full_right = {}, None
    for name, run in tqdm(partitions.items(), desc="confidence", unit="partition", disable=None if progress else True):
        logits = np.concatenate([run(images[i:i + BATCH]) for i in range(0, len(labels), BATCH)])
        probs = probabilities(logits)
        confidence = probs.max(axis=1)
        correct = probs.argmax(axis=1) == labels
        if full_right is None:          # mobile-only comes first: the full model
            full_right = correct
        out[name] = {"accuracy": float(correct.mean()), "frames": int(len(labels)), "bin_edges": edges.tolist(),
                     "correct": np.histogram(confidence[correct], edges)[0].tolist(),
                     "wrong": np.histogram(confidence[~correct], edges)[0].tolist(),
                     "recovered_right": np.histogram(confidence[full_right], edges)[0].tolist()}
    return out


def measure_mcu(port: str, dsnn_dir, runs: int, progress: bool = True) -> dict:
    import json
    from pathlib import Path

    from adaptinf.drivers.mcu import McuClient

    dsnn_dir = Path(dsnn_dir)
    manifest = json.loads((dsnn_dir / "dsnn.json").read_text())
    out = {"models": {}}
    with McuClient(port, timeout_s=5.0) as mcu:
        hello = mcu.hello()
        out["firmware"] = {"version": hello.firmware_version, "protocol": hello.protocol_version,
                           "model_capacity": hello.model_capacity}
        for part in tqdm(("main", "tail"), desc="mcu", unit="dsNN", disable=None if progress else True):
            entry = manifest["chosen"][part]
            blob = (dsnn_dir / entry["file"]).read_bytes()
            start = time.perf_counter()
            mcu.load_blob(blob)
            load_s = time.perf_counter() - start
            x = np.random.default_rng(0).random(int.from_bytes(blob[8:10], "little")).astype(np.float32)
            round_trips, counts = [], []
            for _ in range(runs):
                start = time.perf_counter()
                result = mcu.infer(x)
                round_trips.append((time.perf_counter() - start) * 1e3)
                counts.append(result.count)
            out["models"][f"dsnn_{part}"] = {
                "file": entry["file"], "macs": entry["macs"], "load_s": load_s,
                "round_trip_ms": statistics.median(round_trips), "round_trip_ms_std": statistics.pstdev(round_trips),
                "systick_ticks": statistics.median(counts), "blob_bytes": len(blob)}
    return out
