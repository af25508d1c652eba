"""adaptinfd composed: bundle, engines, profile, policies, cloud link, executor, API.

The request path: ApiServer (socket) -> ApiHandlers (daemon/api_handlers.py) -> WorkerPool -> Executor
(policy -> engines / cloud link) -> reply frames back through the ApiServer.
"""

from __future__ import annotations

import fcntl
import json
import logging
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import zmq

from adaptinf import __version__
from adaptinf import api_protocol as api
from adaptinf.bundle import Bundle, OutputSpec, load_bundle
from adaptinf.daemon.api_handlers import ApiHandlers
from adaptinf.daemon.api_server import ApiServer, ApiStartError
from adaptinf.daemon.client_shares import ClientShares
from adaptinf.cloud import curve_auth
from adaptinf.daemon.cloud_link import CloudLink
from adaptinf.daemon.config import MCU_POLICIES, Config, ConfigError
from adaptinf.daemon.device_models import DeviceModels
from adaptinf.daemon.device_queue import DeviceQueue
from adaptinf.daemon.executor import Executor
from adaptinf.daemon.frame import Job
from adaptinf.daemon.infer_request import ServedModel
from adaptinf.daemon.mcu_runtime import McuRuntime
from adaptinf.daemon import metrics
from adaptinf.daemon.link_estimator import LinkEstimator
from adaptinf.daemon.metrics import MetricsServer
from adaptinf.daemon.recorder import FlightRecorder
from adaptinf.daemon.power_monitor import PowerMonitor
from adaptinf.drivers.ina226 import SensorError
from adaptinf.drivers.jetson_board import JetsonBoard
from adaptinf.drivers.power_sources import PowerSource, open_power_source
from adaptinf.daemon.stats import Stats
from adaptinf.daemon.status import CloudStatus, DaemonStatus, DeviceStatus, LinkStatus
from adaptinf.daemon.systemd_notify import Notifier
from adaptinf.daemon.telemetry import TelemetryTracker
from adaptinf.daemon.warmup import DeviceTimes, cloud_partitions, measure_profile, median_ms, profile_from
from adaptinf.engines.tensorrt_engine import tensorrt_available
from adaptinf.daemon.worker_pool import WorkerPool
from adaptinf.policies.mcu_placement import FcObservations, McuCostModel, McuPlacementPolicy
from adaptinf.policies import registry as policy_registry
from adaptinf.profile import CLOUD_ONLY, MOBILE_ONLY, ModelProfile, Profile, ProfileError, load_profile, save_profile

log = logging.getLogger(__name__)

STEP_TIMEOUT_S = 900.0            # EXTEND_TIMEOUT_USEC per start-up step: a TensorRT build takes minutes
LINK_WAIT_S = 3.0                 # at start-up, how long to wait for the cloud before profiling without it


class StartupError(RuntimeError):
    pass


def _warn_if_unresolvable(endpoint: str) -> None:
    """libzmq resolves a tcp host in the background and retries silently: say it here."""
    import socket

    if not endpoint.startswith("tcp://"):
        return
    host = endpoint[len("tcp://"):].rsplit(":", 1)[0].strip("[]")
    try:
        socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError) as exc:
        log.warning("[cloud].endpoint %s: host %r does not resolve (%s); frames run on the device "
                    "until it does", endpoint, host, exc)


class Daemon:
    def __init__(self, config: Config, context: zmq.Context | None = None, progress: bool = False,
                 power_source: PowerSource | None = None, notifier: Notifier | None = None):
        """power_source: injected hardware (an emulated sensor in tests); None: per [power].
        notifier: systemd's, told what start-up is doing (STATUS=) and to wait for engine builds."""
        self.config = config
        self._notifier = notifier
        self.board: JetsonBoard | None = None
        self._power_source = power_source
        self.power: PowerMonitor | None = None
        self._ctx = context or zmq.Context.instance()
        self._progress = progress
        self.mode = config.policy.mode
        self.stopping = False
        self._stopped = False
        self.inline_max_s = config.daemon.inline_max_s   # a device frame this quick is answered on the API thread
        self.served: dict[str, ServedModel] = {}        # model name -> how it is served (set at start)
        self.started = time.monotonic()
        self.stats = Stats()
        self.shares = ClientShares(config.daemon.max_in_flight_per_client,
                                   config.daemon.queue_size + config.daemon.workers)
        self.estimator = LinkEstimator()
        self.link: CloudLink | None = None
        self.profile: Profile | None = None
        self.profile_source = ""
        self._lock_file: Any = None
        self._claimed: Path | None = None     # the ipc socket path whose lock this daemon holds
        self.api: ApiServer | None = None
        self.pool: WorkerPool | None = None
        self.metrics: MetricsServer | None = None
        self.mcu: McuRuntime | None = None
        self.recorder: FlightRecorder | None = None
        self.mcu_policies: dict[str, McuPlacementPolicy] = {}
        self._device_times: DeviceTimes | None = None   # a warm-up profile's device side
        self._cloud_measure: threading.Thread | None = None
        self.handlers = ApiHandlers(self)

    # ---- life cycle ---------------------------------------------------------------
    def start(self) -> "Daemon":
        """Start serving; a start that fails (or is stopped) releases what it took (threads,
        sockets, the endpoint's lock) before the error leaves."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> "Daemon":
        cfg = self.config
        self._claim_endpoint(cfg.daemon.api_endpoint)
        self._starting(f"loading bundle {cfg.daemon.bundle}")
        self.bundle: Bundle = load_bundle(cfg.daemon.bundle)
        if cfg.recorder.enabled:
            self.recorder = self._start_recorder(cfg)
        builds = cfg.device.engine != "onnxruntime" and tensorrt_available()[0]
        self.models = DeviceModels.load(self.bundle, cfg.device.engine, cfg.device.plan_cache,
                                        cfg.device.emulate_slowdown,
                                        on_engine=lambda file: builds and self._starting(
                                            f"TensorRT engine for {file} (built once, then cached)"))
        if cfg.cloud.endpoint:
            curve = None
            if cfg.cloud.curve_secret_key or cfg.cloud.curve_server_key:
                if not (cfg.cloud.curve_secret_key and cfg.cloud.curve_server_key):
                    raise StartupError("[cloud] CURVE needs both curve_secret_key and curve_server_key")
                curve = (cfg.cloud.curve_secret_key, cfg.cloud.curve_server_key)
                try:
                    curve_auth.check_client_keys(*curve)
                except curve_auth.KeyFileError as exc:
                    raise StartupError(str(exc)) from None
            self._starting(f"connecting to the cloud at {cfg.cloud.endpoint}")
            _warn_if_unresolvable(cfg.cloud.endpoint)
            self.link = CloudLink(cfg.cloud.endpoint, cfg.cloud.device_id, self.estimator, self._ctx,
                                  curve=curve, bundle_sha256=self.bundle.manifest_sha256)
            if self.recorder is not None:
                self.link.on_state = lambda state: self.recorder.event("link_state", {"state": state})
            self.link.start()
            deadline = time.monotonic() + LINK_WAIT_S
            while not self.link.up and time.monotonic() < deadline:
                time.sleep(0.02)
        self._starting("measuring the device and the cloud (warm-up)" if not cfg.daemon.profile
                       else f"loading profile {cfg.daemon.profile}")
        self.profile = self._load_or_measure_profile()
        # "split" plans per frame; every partition is also a fixed policy (mobile-only, cloud-only,
        # RB3, ...) that a request can pin, for baselines, debugging and calibration checks.
        try:
            self.policies = policy_registry.build(policy_registry.BuildContext(
                self.bundle, self.models, tuple(self._placements()), cfg.policy.goal, cfg.policy.history_s,
                cfg.cloud.timeout_s, self._time_share, cfg.policy.sieve_detector, self._energy_share))
        except ValueError as exc:       # e.g. a detector the bundle has no data for
            raise StartupError(f"bundle {self.bundle.name!r}: {exc}") from None
        try:
            self._check_policy(cfg)
        except ConfigError as exc:
            raise StartupError(str(exc)) from None
        self.power = self._open_power()
        self.board = JetsonBoard.open()
        self.registry, self.frame_metrics = metrics.make_registry(
            self.status, self.stats_body, lambda: self.shares.total(),
            {"version": __version__, "bundle": self.bundle.name, "bundle_sha256": self.bundle.manifest_sha256[:12]})
        self.device = DeviceQueue()
        self.telemetry = TelemetryTracker(self.estimator, self.link, cfg.cloud.radio, self.power, self.device)
        self.executor = Executor(self.bundle, self.models, self.policies, lambda: self.profile, self.link,
                                 self.telemetry, self.stats, cfg.device.compute_power_w, cfg.cloud.timeout_s,
                                 self.power, device=self.device)
        self._apply_live(cfg)
        if cfg.mcu.port:
            self.mcu_policies = self._start_mcu()
            self.executor.mcu = self.mcu
            self.executor.model_policies[cfg.mcu.name] = self.mcu_policies
        self.served = self.served_models()
        results = f"inproc://adaptinfd-results-{id(self)}"
        self.api = ApiServer(cfg.daemon.api_endpoint, self.handlers.table(), self.stats, cfg.daemon.max_message_bytes,
                             results, self._ctx, cfg.daemon.max_in_flight_per_client)
        try:
            self.api.start()
        except ApiStartError as exc:
            raise StartupError(str(exc)) from None
        self.pool = WorkerPool(cfg.daemon.workers, cfg.daemon.queue_size, results, self.handlers.answer, self._ctx)
        self.pool.start()
        if cfg.daemon.metrics_endpoint:
            try:
                self.metrics = MetricsServer(cfg.daemon.metrics_endpoint, self.registry).start()
            except (OSError, ValueError) as exc:
                raise StartupError(f"[daemon].metrics_endpoint {cfg.daemon.metrics_endpoint}: cannot serve "
                                   f"metrics there ({exc})") from None
        log.info("adaptinfd %s serving %s on %s (profile: %s)", __version__, self.bundle.name,
                 self.api.bound_endpoint, self.profile_source)
        return self

    def _starting(self, what: str) -> None:
        """One start-up step: logged, shown by `systemctl status`, and given a fresh start timeout."""
        log.info("start-up: %s", what)
        if self._notifier is not None:
            self._notifier.status(what, extend_timeout_s=STEP_TIMEOUT_S)

    def stop(self) -> None:
        """Stop taking frames, answer every queued one explicitly, then close. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self.stopping = True  # from here on, new frames get UNAVAILABLE instead of a queue slot
        if self.link is not None:
            # frames waiting on the cloud (a stalled one holds them for its whole timeout)
            # finish on the device now, so the workers drain well inside TimeoutStopSec
            self.link.cut_calls("the daemon is stopping")
        if self.pool is not None:
            for job in self.pool.stop():
                self._push_unavailable(job)
        if self.api is not None:
            self.api.stop()
        if self.link is not None:
            self.link.stop()
        if self.mcu is not None:
            self.mcu.close()
        if self.power is not None:
            self.power.stop()
        if self.board is not None:
            self.board.close()
        if self.metrics is not None:
            self.metrics.stop()
        if self.recorder is not None:
            self.recorder.stop()            # after the last frame's record
        if self._claimed is not None:
            # ours (we held the lock): a stopped daemon leaves no socket for a client to wait
            # on, and no lock file behind
            for leftover in (self._claimed, self._claimed.with_name(self._claimed.name + ".lock")):
                leftover.unlink(missing_ok=True)
            self._claimed = None
        if self._lock_file is not None:
            self._lock_file.close()

    def health_problem(self) -> str | None:
        """None when every part that frames depend on is alive; else what is not (no watchdog ping then)."""
        if self.api is None or not self.api.alive():
            return f"API thread stopped: {self.api.thread_error if self.api else 'never started'}"
        if self.pool is None or not self.pool.alive():
            return "a frame worker thread stopped"
        if self.link is not None and not self.link.alive():
            return f"cloud link thread stopped: {self.link.thread_error}"
        if self.metrics is not None and not self.metrics.alive():
            return "the /metrics server thread stopped"
        if self.mcu is not None and not self.mcu.prober_alive():
            return "the MCU prober thread stopped"
        if self.recorder is not None and not self.recorder.alive():
            return "the flight recorder's writer thread stopped"
        return None

    def reload(self, new: Config) -> list[str]:
        """SIGHUP: apply what can change live, reload the profile; returns what changed.

        Live: [policy], [cloud].timeout_ms and radio, [device].compute_power_w, and the
        profile ([daemon].profile). Anything else is logged as needing a restart.
        """
        old = self.config
        self._check_policy(new)
        changes = []
        fixed = [f"{section}.{key}" for section in ("daemon", "device", "cloud", "power", "mcu")
                 for key, value in vars(getattr(new, section)).items()
                 if value != getattr(getattr(old, section), key)
                 and (section, key) not in {("daemon", "profile"), ("cloud", "timeout_ms"), ("cloud", "radio"),
                                            ("device", "compute_power_w")}]
        for name in fixed:
            log.warning("SIGHUP: %s changed but needs a restart; keeping the running value", name)
        if new.daemon.profile:  # re-read on every SIGHUP: calibration may have rewritten it
            self.config = replace(old, daemon=replace(old.daemon, profile=new.daemon.profile))
            try:
                self.profile = self._load_or_measure_profile()
                changes.append(f"profile {self.profile_source}")
            except StartupError as exc:
                self.config = old
                log.error("SIGHUP: keeping the running profile: %s", exc)
                changes.append(f"profile refused: {exc}")
        if new.policy != old.policy:
            changes.append(f"policy {new.policy}")
        # a mode the file did not change stays as set_mode left it
        self._apply_live(new if new.policy.mode != old.policy.mode
                         else replace(new, policy=replace(new.policy, mode=self.mode)))
        self.config = replace(self.config, policy=new.policy,
                              cloud=replace(old.cloud, timeout_ms=new.cloud.timeout_ms, radio=new.cloud.radio),
                              device=replace(old.device, compute_power_w=new.device.compute_power_w))
        for section, key in (("cloud", "timeout_ms"), ("cloud", "radio"), ("device", "compute_power_w")):
            if getattr(getattr(new, section), key) != getattr(getattr(old, section), key):
                changes.append(f"{section}.{key}")
        log.info("SIGHUP: reloaded (%s)", ", ".join(changes) or "nothing changed")
        if self.recorder is not None:
            self.recorder.event("reload", {"changes": changes})
        return changes

    def _check_policy(self, cfg: Config) -> None:
        """The same check at start-up and on reload: [policy].name must be one the bundle allows."""
        if cfg.policy.name not in self.policies:
            raise ConfigError(f"[policy] name = {cfg.policy.name!r} is not available with bundle "
                              f"{self.bundle.name!r} (it has no {cfg.policy.name} section); "
                              f"available: {list(self.policies)}")

    def _apply_live(self, cfg: Config) -> None:
        """What a config sets that can change while serving; start-up and SIGHUP both apply it here."""
        self.policies["split"].default_goal = cfg.policy.goal
        self.mode = cfg.policy.mode
        self.executor.cloud_timeout_s = cfg.cloud.timeout_s
        self.executor.compute_power_w = cfg.device.compute_power_w
        self.telemetry.radio = cfg.cloud.radio

    def _placements(self) -> list[str]:
        """Every placement a request can pin: the profile's, and with a cloud configured also
        those it will measure when the cloud comes up."""
        names = [MOBILE_ONLY]
        if self.config.cloud.endpoint:
            names += [CLOUD_ONLY, *(p.name for p in (self.bundle.split.points if self.bundle.split else ()))]
        return names + [p.name for p in self.profile.partitions if p.name not in names]

    def usable_partitions(self) -> list[str]:
        """What the planner can choose now: the cloud's partitions only while the link is up."""
        up = self.link is not None and self.link.up
        return [p.name for p in self.profile.partitions if up or p.kind == "device"]

    def tick(self) -> None:
        """The main loop's periodic work: a cloud that was down at start-up is measured when it
        comes up (in the background; frames keep flowing), and its partitions join the profile."""
        if (self._device_times is None or self.link is None or not self.link.up or self.profile.has(CLOUD_ONLY)
                or (self._cloud_measure is not None and self._cloud_measure.is_alive())):
            return
        self._cloud_measure = threading.Thread(target=self._measure_cloud_late, name="cloud-measure", daemon=True)
        self._cloud_measure.start()

    def _measure_cloud_late(self) -> None:
        cfg = self.config
        try:
            cloud, link, cloud_models = cloud_partitions(self.bundle, self._device_times, self.link, self.estimator,
                                           cfg.device.compute_power_w, max(3, cfg.daemon.warmup_runs // 2))
        except Exception as exc:  # the link went again, or the cloud answered nonsense: retried next tick
            log.warning("measuring the cloud's partitions failed (%s: %s); retrying", type(exc).__name__, exc)
            return
        if not cloud:
            log.warning("the cloud is up but did not answer the measurements; retrying")
            return
        fresh = profile_from(self.bundle, self.models, self._device_times, cfg.device.compute_power_w, cloud, link,
                             cloud_models)
        measured = {m.name for m in fresh.models}   # the zoo's, now with cloud times; keep the others since start-up
        self.profile = replace(fresh, models=fresh.models + tuple(m for m in self.profile.models
                                                                  if m.name not in measured))
        self._save_warmup_profile(self.profile)
        log.info("cloud up: measured %s; the planner uses them from now on", [p.name for p in cloud])

    def _push_unavailable(self, job: Job) -> None:
        self.shares.give_back(job.peer)
        push = self._ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 1000)
        push.connect(self.api.results_endpoint)
        push.send_multipart([job.peer, *api.encode_reply(job.id, api.UNAVAILABLE, "daemon shutting down")])
        push.close()

    def _start_recorder(self, cfg: Config) -> FlightRecorder:
        """The flight recorder, writing under state_dir/recordings; the link estimator tells it
        every sample (its replay needs exactly those)."""
        r = cfg.recorder
        recorder = FlightRecorder(Path(cfg.daemon.state_dir) / "recordings", r.max_bytes, r.max_age, r.ring,
                                  r.record_frames,
                                  {"daemon": __version__, "bundle": self.bundle.name,
                                   "bundle_sha256": self.bundle.manifest_sha256, "device_id": cfg.cloud.device_id,
                                   "started": time.time()})
        try:
            recorder.start()
        except OSError as exc:
            raise StartupError(f"[recorder]: cannot write under {recorder.directory} ({exc.strerror or exc}); "
                               "fix [daemon].state_dir, or set [recorder] enabled = false") from None
        self.estimator.observer = recorder.event
        return recorder

    def _claim_endpoint(self, endpoint: str) -> None:
        """A second daemon must not silently steal an ipc path (a second bind would)."""
        if not endpoint.startswith("ipc://"):
            return
        path = Path(endpoint[len("ipc://"):])
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            self._lock_file = open(path.with_name(path.name + ".lock"), "w")
        except OSError as exc:
            raise StartupError(f"[daemon].api_endpoint {endpoint}: cannot create its directory or lock file "
                               f"({exc.strerror or exc}: {exc.filename or path.parent})") from None
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StartupError(f"another adaptinfd already serves {endpoint}") from None
        self._claimed = path
        if path.exists():
            path.unlink()  # stale socket of a daemon that died: we hold the lock now

    def _open_power(self) -> PowerMonitor | None:
        """The configured (or injected) sensor, sampled; None means model-based energy."""
        cfg = self.config.power
        source = self._power_source
        if source is None and cfg.source != "none":
            try:
                source = open_power_source(cfg)
            except SensorError as exc:
                log.warning("no power sensor (%s): device energy is model-based", exc)
        if source is None:
            return None
        log.info("power sensor: %s at %.0f Hz", source.name, cfg.rate_hz)
        return PowerMonitor(source, cfg.rate_hz).start()

    def _start_mcu(self) -> dict[str, McuPlacementPolicy]:
        """The FC model on the MCU; a missing or silent MCU is not fatal: frames run on the host
        until the prober brings it up."""
        cfg = self.config.mcu
        directory = Path(cfg.model)
        try:
            manifest = json.loads((directory / "dsnn.json").read_text())
            self.mcu = McuRuntime(cfg.port, directory / manifest["chosen"]["system"], cfg.timeout_s,
                                  baudrate=cfg.baudrate)
        except (OSError, KeyError, ValueError) as exc:
            raise StartupError(f"[mcu].model {cfg.model}: not an exported multi-dsNN ({exc}); "
                               "build one with `adaptinf build dsnn --out DIR`") from None
        self.mcu_classes = len(manifest["classes"])
        if not self.mcu.connect():
            log.warning("MCU on %s not ready (%s): serving %s on the host until it is", cfg.port,
                        self.mcu.last_error, cfg.name)
        self.mcu.start_prober()
        cost = McuCostModel(cfg.clock_hz, cfg.cycles_per_tick, cfg.energy_per_cycle_nj, cfg.baudrate)
        seen, mcu = FcObservations(), self.mcu      # one MCU: its policies share what it measured
        return {name: McuPlacementPolicy(name, cost, mcu.system.input_dim, self.mcu_classes,
                                         self.config.device.compute_power_w, seen, lambda: mcu.up)
                for name in MCU_POLICIES}

    def _time_share(self, names: list[str]) -> float:
        """The named models' summed device time over the full model's, from the profile: the one
        source of model times the daemon plans with (calibration measures them)."""
        return sum(self._model_device_ms(n) for n in names) / self._model_device_ms(self.bundle.full_model.name)

    def _energy_share(self, names: list[str]) -> float:
        """The same for energy: time x the profile's power of each model (calibration's layer
        regression gives a little model its own; otherwise the device's)."""
        def mj(name: str) -> float:
            ms = self._model_device_ms(name)
            known = next((m for m in self.profile.models if m.name == name), None)
            power = known.device_power_w if known and known.device_power_w > 0 else \
                self.profile.partition(MOBILE_ONLY).device_power_w
            return ms * power
        return sum(mj(n) for n in names) / mj(self.bundle.full_model.name)

    def _model_device_ms(self, name: str) -> float:
        """A model's device time from the profile's models; one the profile lacks is measured
        here, once, and added to the profile in memory."""
        known = next((m for m in self.profile.models if m.name == name), None)
        if known is not None:
            return known.device_ms
        if name == self.bundle.full_model.name:         # the full model is the mobile-only partition
            return self.profile.partition(MOBILE_ONLY).device_ms
        engine = self._engine_of(name)
        ms = median_ms(engine, self.bundle.input, max(3, self.config.daemon.warmup_runs // 2))
        entry = self.bundle.model(name)
        self.profile = replace(self.profile, models=self.profile.models + (ModelProfile(
            name, ms, accuracy=entry.accuracy, flops=entry.flops,
            device_power_w=self.config.device.compute_power_w),))
        return ms

    def _engine_of(self, name: str):
        if self.models.littles and name in self.models.littles:
            return self.models.littles[name]
        if self.bundle.mmnet is not None and name in self.bundle.mmnet.minions:
            return self.models.minions[list(self.bundle.mmnet.minions).index(name)]
        raise KeyError(f"no device engine for model {name!r}")

    def _load_or_measure_profile(self) -> Profile:
        cfg = self.config
        if cfg.daemon.profile:
            try:
                profile = load_profile(cfg.daemon.profile)
            except ProfileError as exc:
                raise StartupError(str(exc)) from None
            if profile.bundle != self.bundle.manifest_sha256:
                raise StartupError(
                    f"profile {cfg.daemon.profile} was measured for bundle {profile.bundle[:12]}, not this bundle "
                    f"({self.bundle.manifest_sha256[:12]}): recalibrate (adaptinf-calib) or clear [daemon].profile "
                    "to let adaptinfd measure at start-up")
            self.profile_source = cfg.daemon.profile
            self._device_times = None  # calibrated: nothing to add later
            return profile
        profile, self._device_times = measure_profile(self.bundle, self.models, self.link, self.estimator,
                                                      cfg.device.compute_power_w, cfg.daemon.warmup_runs,
                                                      self._progress)
        self._save_warmup_profile(profile)
        return profile

    def _save_warmup_profile(self, profile: Profile) -> None:
        path = Path(self.config.daemon.state_dir) / "profile.json"
        try:
            save_profile(profile, path)
            self.profile_source = f"warm-up ({path})"
        except OSError as exc:
            log.warning("could not write the warm-up profile to %s: %s", path, exc)
            self.profile_source = "warm-up (not saved)"

    # ---- what the API and metrics read -------------------------------------------
    def status(self) -> DaemonStatus:
        est = self.estimator.estimate()
        link = self.link.status() if self.link else None
        t = self.telemetry.snapshot(self.profile)
        state = link.state if link else "none"
        return DaemonStatus(
            self.mode, self.config.policy.name, self.config.policy.goal, self.bundle.name,
            self.bundle.manifest_sha256, self.profile_source, time.monotonic() - self.started,
            LinkStatus(state, est.uplink_bps, est.uplink_bps_std, est.rtt_s, est.rtt_s_std, est.rtt_samples,
                       est.bandwidth_samples, est.uplink_age_s, t.uplink_backlog_s, self.config.cloud.radio),
            self._power_status(),
            CloudStatus(state, link.queue_depth if link else 0, link.service_s if link else 0.0, t.cloud_slowdown,
                        link.retries if link else 0, link.reconnects if link else 0,
                        link.late_replies if link else 0, link.in_flight if link else 0),
            DeviceStatus(self.models.backend, t.device_slowdown, self.config.device.emulate_slowdown,
                         self.board.snapshot() if self.board else None, self.pool.depth(), self.pool.busy,
                         self.device.depth(), t.device_queue_s),
            self.stats.latency_percentiles(),
            dict(self.mcu.status(), model=self.config.mcu.name) if self.mcu else None)

    def status_body(self) -> dict:
        return self.status().to_reply()

    def _power_status(self) -> dict:
        model = {"model_compute_power_w": self.config.device.compute_power_w}
        if self.power is None:
            return {"source": "model", "sensor": None, **model}
        p = self.power.status()
        return {"source": f"sensor:{p.source}" if p.healthy else "model (sensor failing)", "sensor": p.source,
                "healthy": p.healthy, "power_w": p.power_w, "idle_power_w": p.idle_power_w,
                "active_power_w": p.active_power_w, "samples": p.samples, "errors": p.errors,
                "last_error": p.last_error, **model}

    def stats_body(self) -> dict:
        body = self.stats.snapshot()
        if self.link:
            body["cloud"] = {"late_replies_dropped": self.link.late_replies, "bad_load_reports": self.link.bad_loads,
                             "retries": self.link.retries,
                             "reconnects": self.link.reconnects}
        return body

    def served_models(self) -> dict[str, ServedModel]:
        """The models a request may name, each with what serves it: the bundle's (the executor),
        and the MCU's FC model when there is one (the FC executor, MCU or host)."""
        b = self.bundle
        models = {b.name: ServedModel(b.name, b.input.shape, b.input.dtype, tuple(self.policies),
                                      self.config.policy.name, tuple(b.classes), self.executor.execute,
                                      outputs=b.output_specs, camera=b.preprocess is not None)}
        if self.mcu_policies:
            name = self.config.mcu.name
            models[name] = ServedModel(name, (self.mcu.system.input_dim,), "float32", MCU_POLICIES,
                                       self.config.mcu.policy, tuple(str(c) for c in range(self.mcu_classes)),
                                       self.executor.execute, on_mcu=True,
                                       outputs=(OutputSpec("logits", "float32", (1, self.mcu_classes)),))
        return models

