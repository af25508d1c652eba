"""Measurement primitives shared by the daemon's warm-up and calibration (which sits above it).

- time_engine:   an engine's run time, after untimed warm-up runs;
- measure_cloud: the cloud worker's own compute time per target (its `timing` op);
- measure_link:  upload probes through the daemon's cloud link, read back from its estimator.
"""

from __future__ import annotations

import time

import numpy as np
from tqdm import tqdm

from adaptinf.cloud import protocol
from adaptinf.daemon.cloud_link import PROBE_BYTES, CloudError, CloudLink
from adaptinf.daemon.link_estimator import LinkEstimator
from adaptinf.engines import Engine


def time_engine(engine: Engine, x: np.ndarray, runs: int, warmup: int = 3) -> list[float]:
    """Milliseconds of `runs` timed runs after `warmup` untimed ones (allocations, caches)."""
    for _ in range(warmup):
        engine.run(x)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        engine.run(x)
        samples.append((time.perf_counter() - start) * 1e3)
    return samples



def measure_cloud(link: CloudLink, runs: int) -> dict:
    try:
        reply = link.call(protocol.Timing(runs).header(), None, 120.0).wait(120.0)
    except CloudError as exc:
        raise RuntimeError(f"the cloud worker did not answer the timing request: {exc}") from None
    timings = reply.header.get("timings")
    try:
        return {str(name): {"ms": float(t["median_s"]) * 1e3, "ms_std": float(t["std_s"]) * 1e3}
                for name, t in timings.items()}
    except (AttributeError, KeyError, TypeError, ValueError):   # a reply that is not a timing table
        raise RuntimeError(f"the cloud worker's timing reply is malformed: {str(timings)[:200]}") from None



def measure_link(link: CloudLink, estimator: LinkEstimator, probes: int, progress: bool = True) -> dict:
    for _ in tqdm(range(probes), desc="link", unit="probe", disable=None if progress else True):
        try:
            link.call(protocol.PROBE, bytes(PROBE_BYTES), 10.0, upload_bytes=PROBE_BYTES).wait(10.0)
        except CloudError as exc:
            raise RuntimeError(f"link probe failed: {exc}") from None
    est = estimator.estimate()
    if est.uplink_bps is None or est.rtt_s is None:
        raise RuntimeError("the link gave no bandwidth or RTT sample")
    return {"uplink_bps": est.uplink_bps, "uplink_bps_std": est.uplink_bps_std, "rtt_ms": est.rtt_s * 1e3,
            "rtt_ms_std": est.rtt_s_std * 1e3, "rtt_samples": est.rtt_samples,
            "bandwidth_samples": est.bandwidth_samples}
