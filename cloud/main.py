"""adaptinf-cloud: run the cloud worker for a bundle until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import logging
import sys

from adaptinf import __version__, memory
from adaptinf.bundle import BundleError, load_bundle
from adaptinf.extras import run_needing_extra
from adaptinf.cloud.worker import CloudWorker
from adaptinf import logging_setup
from adaptinf.engines import EngineError
from adaptinf.policies.mdinference import read_model_table
from adaptinf.router_loop import wait_until_terminated

log = logging.getLogger("adaptinf-cloud")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="adaptinf-cloud", description="Serve a bundle's tails and full model to devices.")
    parser.add_argument("--bundle", required=True, help="bundle directory")
    parser.add_argument("--endpoint", default="tcp://0.0.0.0:5601", help="ZeroMQ endpoint to bind (default %(default)s)")
    parser.add_argument("--backend", default="auto", choices=["auto", "tensorrt", "onnxruntime"])
    parser.add_argument("--threads", type=int, default=1, help="compute threads (default 1: one GPU)")
    parser.add_argument("--plan-cache", default=None, help="TensorRT plan cache directory")
    parser.add_argument("--curve-secret", default=None, help="this server's .key_secret file (enables CURVE)")
    parser.add_argument("--allowed-devices", default=None, help="directory of allowed <device-id>.key files")
    parser.add_argument("--triton", default=None, metavar="HOST:PORT",
                        help="gateway mode: run inference on this Triton server (gRPC), see adaptinf export triton")
    parser.add_argument("--emulate-times", default=None, metavar="CSV",
                        help="emulation only: zoo models take these times (name,accuracy%%,mean_ms,std_ms per line, "
                             "adaptinf sim's table); see docs/model-selection.md")
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds the emulated times and MDInference's choices (default %(default)s)")
    parser.add_argument("--log-level", default="INFO", type=logging_setup.log_level,
                        help=f"one of {', '.join(logging_setup.LEVELS)} (default %(default)s)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    args = parser.parse_args(argv)
    logging_setup.configure(args.log_level, "adaptinf-cloud")
    memory.keep_large_blocks_returnable()
    if args.triton:  # the gateway's client library is the 'triton' extra
        return run_needing_extra("adaptinf-cloud --triton", "triton", lambda: _serve(args))
    return _serve(args)


def _serve(args: argparse.Namespace) -> int:
    if args.threads < 1:
        # a worker that answers pings but never computes would keep every device waiting
        print(f"adaptinf-cloud: --threads must be at least 1 (got {args.threads})", file=sys.stderr)
        return 2
    try:
        bundle = load_bundle(args.bundle)
    except BundleError as exc:
        print(f"adaptinf-cloud: {exc}", file=sys.stderr)
        return 2
    try:
        emulated = {m.name: (m.mean_s, m.std_s) for m in read_model_table(args.emulate_times)} \
            if args.emulate_times else None
        worker = CloudWorker(bundle, args.endpoint, args.backend, args.threads, plan_cache_dir=args.plan_cache,
                             curve_secret_file=args.curve_secret, allowed_devices_dir=args.allowed_devices,
                             triton_url=args.triton, emulate_times=emulated, seed=args.seed).start()
    except (ValueError, OSError, EngineError) as exc:
        print(f"adaptinf-cloud: {exc}", file=sys.stderr)
        return 2
    log.info("serving bundle %s (%s) on %s", bundle.name, bundle.manifest_sha256[:12], worker.bound_endpoint)
    print(f"READY {worker.bound_endpoint}", flush=True)  # parents (demo, tests) wait for this line
    terminated = wait_until_terminated(worker.failed)
    worker.stop()
    if not terminated:
        print(f"adaptinf-cloud: a worker thread died ({type(worker.failure).__name__}: {worker.failure}); "
              "exiting so that the supervisor restarts it", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
