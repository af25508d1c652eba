"""The calibration report: tables and PNG plots in a folder, and one HTML page that shows them.

Plots (matplotlib, Agg):
- latency.png:    per partition, predicted end-to-end latency stacked by component (device,
                  upload, RTT, cloud) under each uplink of paper 004 Table III, as Table IV does;
                  horizontal bars on linear axes, each total written at its end, and each
                  panel's title says what the planner picks there;
- energy.png:     per partition, device energy stacked (compute, radio) under each uplink;
- pareto.png:     latency vs device energy of every partition at the measured link, the
                  Pareto front joined, accuracy in the labels;
- confidence.png: top-1 confidence of right and wrong answers (the full model), and
                  accuracy vs recovery rate: sending every frame below a confidence threshold
                  to the big model, for each partition;
- regression.png: the layer regression's predicted vs measured times.
The predictions and picks come from the planner's own cost model and policy
(policies/split.py). A device measurement whose std exceeds half its median is flagged.
"""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from adaptinf.bundle import Bundle  # noqa: E402
from adaptinf.calib.layer_features import graph_features  # noqa: E402
from adaptinf.calib.regression import LayerRegression  # noqa: E402
from adaptinf.policies.plan import FrameContext, Telemetry  # noqa: E402
from adaptinf.policies.radio_power import RADIOS  # noqa: E402
from adaptinf.policies.split import CostModel, SplitPolicy  # noqa: E402
from adaptinf.profile import Profile  # noqa: E402

COLOURS = {"device": "#4C72B0", "upload": "#DD8452", "rtt": "#937860", "cloud": "#55A868", "radio": "#C44E52"}


def _telemetry(profile: Profile, radio: str) -> Telemetry:
    rtt = profile.link.rtt_ms / 1e3 if profile.link else 0.0
    return Telemetry(uplink_bps=RADIOS[radio].nominal_uplink_bps, rtt_s=rtt, radio=radio)


def _per_radio_plot(profile: Profile, path: Path, title: str, xlabel: str, draw) -> None:
    """One panel per uplink of Table III, stacked vertically; draw(ax, names, candidates)
    fills a panel with horizontal bars: partition names on the y axis never overlap, and
    linear axes with each total written at its bar's end read as they are."""
    model = CostModel(profile)
    n = len(profile.partitions)
    fig, axes = plt.subplots(len(RADIOS), 1, figsize=(9, 0.32 * n * len(RADIOS) + 1.6 * len(RADIOS)))
    for ax, radio in zip(axes, RADIOS):
        cands = model.predict(_telemetry(profile, radio))
        draw(ax, [c.name for c in cands], cands)
        ax.set_title(f"{radio} ({RADIOS[radio].nominal_uplink_bps / 1e6:g} Mbit/s up): "
                     f"the planner picks {_pick(profile, radio, 'latency')} for latency, "
                     f"{_pick(profile, radio, 'energy')} for energy", fontsize=9, loc="left")
        ax.set_xlabel(xlabel)
        # the pick, marked where the eye lands: its name in bold with an arrow
        pick = _pick(profile, radio, "energy" if path.name.startswith("energy") else "latency")
        names = [c.name for c in cands]
        ax.set_yticks(range(len(names)), [f"{n} \u25B6" if n == pick else n for n in names])
        ax.get_yticklabels()[names.index(pick)].set_fontweight("bold")
        ax.invert_yaxis()                        # the partitions in the profile's order, top down
        ax.tick_params(axis="y", labelsize=8)
        ax.margins(x=0.18)                       # room for the value labels
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _stacked(ax, names, parts: list[tuple[str, np.ndarray, str]], unit: str) -> np.ndarray:
    left = np.zeros(len(names))
    for label, values, colour in parts:
        ax.barh(names, values, left=left, label=label, color=colour)
        left = left + values
    bars = ax.barh(names, left, fill=False, linewidth=0)      # invisible totals, to label
    ax.bar_label(bars, labels=[f"{v:.1f} {unit}" for v in left], padding=3, fontsize=7)
    return left


def _latency_plot(profile: Profile, out: Path) -> None:
    def draw(ax, names, cands):
        parts = [(part, np.array(values) * 1e3, COLOURS[part]) for part, values in (
            ("device", [c.device_s for c in cands]), ("upload", [c.upload_s for c in cands]),
            ("rtt", [c.network_s for c in cands]), ("cloud", [c.cloud_s for c in cands]))]
        _stacked(ax, names, parts, "ms")

    _per_radio_plot(profile, out / "latency.png", "End-to-end latency by component (paper 004 Table IV view)",
                    "predicted latency (ms)", draw)


def _energy_plot(profile: Profile, out: Path) -> None:
    def draw(ax, names, cands):
        compute = np.array([c.device_s * profile.partition(c.name).device_power_w for c in cands]) * 1e3
        radio_mj = np.array([c.energy_j for c in cands]) * 1e3 - compute
        _stacked(ax, names, [("compute", compute, COLOURS["device"]), ("uplink radio", radio_mj, COLOURS["radio"])],
                 "mJ")

    sources = {d.get("power_source", "model") for d in profile.extra.get("measurements", {}).get("device", {}).values()}
    compute = ("compute MODELLED at [device].compute_power_w (no power sensor)" if sources <= {"model"} else
               "compute measured by " + ", ".join(sorted(sources)))
    _per_radio_plot(profile, out / "energy.png", f"Device energy by component\n{compute}; uplink radio modelled "
                    "(paper 004 Table III)", "device energy per frame (mJ)", draw)


def _pick(profile: Profile, radio: str, goal: str) -> str:
    """What the planner chooses over this uplink for this goal (its own policy, not a re-derivation)."""
    return SplitPolicy(goal).plan(FrameContext(goal=goal), _telemetry(profile, radio), profile).chosen.name


NOISY = 0.5   # a measurement whose std exceeds half its median is flagged: re-run calibration


def _noisy(median: float, std: float) -> bool:
    return median > 0 and std > NOISY * median


def _pareto_plot(profile: Profile, out: Path) -> None:
    cands = CostModel(profile).predict(Telemetry(
        uplink_bps=profile.link.uplink_bps if profile.link else 1e9,
        rtt_s=profile.link.rtt_ms / 1e3 if profile.link else 0.0, radio="4g"))
    lat = np.array([c.latency_s for c in cands]) * 1e3
    energy = np.array([c.energy_j for c in cands]) * 1e3
    front = sorted((i for i in range(len(cands)) if not any(
        lat[j] <= lat[i] and energy[j] <= energy[i] and (lat[j] < lat[i] or energy[j] < energy[i])
        for j in range(len(cands)))), key=lambda i: lat[i])
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.scatter(lat, energy, color="#999999", zorder=2)
    ax.plot(lat[front], energy[front], "-o", color=COLOURS["radio"], label="Pareto front", zorder=3)
    for i, c in enumerate(cands):
        acc = f" (accuracy {c.accuracy:.1%})" if c.accuracy is not None else ""
        ax.annotate(c.name + acc, (lat[i], energy[i]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    link = f"{profile.link.uplink_bps / 1e6:.2f} Mbit/s, RTT {profile.link.rtt_ms:.1f} ms" if profile.link else "none"
    ax.set_title(f"Partitions at the measured link ({link})", fontsize=10)
    ax.set_xlabel("predicted latency (ms)")
    ax.set_ylabel("device energy (mJ)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "pareto.png", dpi=110)
    plt.close(fig)


def recovery_curve(entry: dict) -> tuple[np.ndarray, np.ndarray, bool]:
    """Recovery rate vs accuracy when every frame below a confidence threshold is answered by the
    full model instead, from the stored histograms: measured where the profile has the full
    model's answers per bin (`recovered_right`), else (older profiles) assuming it is always
    right, the thesis' upper bound. The third value says which."""
    correct, wrong = np.array(entry["correct"]), np.array(entry["wrong"])
    measured = "recovered_right" in entry
    big_right = np.array(entry["recovered_right"]) if measured else correct + wrong
    total = correct.sum() + wrong.sum()
    rates, accuracy = [], []
    for k in range(len(correct) + 1):  # recover bins below k
        rates.append((correct[:k].sum() + wrong[:k].sum()) / total)
        accuracy.append((correct[k:].sum() + big_right[:k].sum()) / total)
    return np.array(rates), np.array(accuracy), measured


def _confidence_plot(confidence: dict, out: Path) -> None:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    full = confidence["mobile-only"]
    edges = np.array(full["bin_edges"])
    centres, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
    ax1.bar(centres, full["correct"], width=width, alpha=0.7, label="right", color=COLOURS["cloud"])
    ax1.bar(centres, full["wrong"], width=width, alpha=0.7, label="wrong", color=COLOURS["radio"])
    ax1.set_xlabel("top-1 confidence")
    ax1.set_ylabel("frames")
    ax1.set_title(f"Full model on {full['frames']} held-out frames ({full['accuracy']:.1%} right)")
    ax1.legend()
    assumed = False
    for name, entry in confidence.items():
        if name == "mobile-only":       # the recovering model itself: recovery changes nothing
            continue
        rates, acc, measured = recovery_curve(entry)
        assumed |= not measured
        ax2.plot(rates * 100, acc * 100, label=name)
    ax2.axhline(full["accuracy"] * 100, color="black", ls="--", lw=1, label="full model")
    ax2.set_xlabel("recovery rate (% of frames answered by the full model)")
    ax2.set_ylabel("accuracy (%)")
    ax2.set_title("Accuracy vs recovery rate, " + ("ASSUMING the full model always right (an older profile)"
                                                    if assumed else "measured on the same frames"), fontsize=9)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "confidence.png", dpi=110)
    plt.close(fig)


def _regression_points(bundle: Bundle, profile: Profile, side: str) -> tuple[list, list, list]:
    """(measured, predicted, names) of one side's fit (device or cloud)."""
    reg = LayerRegression.from_json(profile.extra["regression"][side])
    measurements = profile.extra["measurements"][side]
    if side == "device":
        files = {name: d["file"] for name, d in measurements.items()}
    else:   # the cloud runs the full model, the tails and the zoo models (calib/calibrate.py)
        files = {"full": bundle.full_model.file, **{p.name: p.tail for p in (bundle.split.points if bundle.split else ())},
                 **{n: bundle.model(n).file for n in (bundle.zoo.models if bundle.zoo else ())}}
    measured, predicted, names = [], [], []
    for name, d in measurements.items():
        if name in files:
            measured.append(d["ms"])
            predicted.append(reg.predict(graph_features(bundle.path(files[name]))))
            names.append(name)
    return measured, predicted, names


def _regression_plot(bundle: Bundle, profile: Profile, out: Path) -> None:
    """Predicted against measured, one panel per fit (device, and the cloud where there is one).
    Only the points furthest off are named, so labels do not pile up where fits are good."""
    sides = [s for s in ("device", "cloud") if s in profile.extra["regression"] and s in profile.extra["measurements"]]
    fig, axes = plt.subplots(1, len(sides), figsize=(5.5 * len(sides), 5), squeeze=False)
    for ax, side in zip(axes[0], sides):
        measured, predicted, names = _regression_points(bundle, profile, side)
        reg = profile.extra["regression"][side]
        top = max(max(measured), max(predicted)) * 1.1
        ax.plot([0, top], [0, top], "--", color="#999999", label="predicted = measured")
        ax.scatter(measured, predicted, color=COLOURS[side], zorder=3, label=f"{len(names)} graphs")
        errors = [abs(p - m) / m if m > 0 else 0.0 for m, p in zip(measured, predicted)]
        for i in sorted(range(len(names)), key=lambda i: -errors[i])[:3]:     # the worst three, named
            ax.annotate(f"{names[i]} ({errors[i]:+.0%})".replace("+", "±"), (measured[i], predicted[i]),
                        fontsize=7, xytext=(4, -10), textcoords="offset points")
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_xlabel(f"measured {side} time (ms)")
        ax.set_ylabel("layer-regression estimate (ms)")
        ax.set_title(f"{side}: leave-one-out error {reg['loo_mean_relative_error']:.1%} mean, "
                     f"{max(errors):.1%} max here", fontsize=10)
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(out / "regression.png", dpi=110)
    plt.close(fig)


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(bundle: Bundle, profile: Profile, out: Path | str) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    m = profile.extra["measurements"]
    images = []
    if len(profile.partitions) > 1:
        _latency_plot(profile, out)
        _energy_plot(profile, out)
        _pareto_plot(profile, out)
        images += [("latency.png", "Latency by component"), ("energy.png", "Energy by component"),
                   ("pareto.png", "Latency vs energy")]
    if m.get("confidence"):
        _confidence_plot(m["confidence"], out)
        images.append(("confidence.png", "Confidence and recovery"))
    _regression_plot(bundle, profile, out)
    images.append(("regression.png", "Layer regression"))

    # cloud-only computes nothing on the device: no device time or power to show
    parts = _table(["partition", "device ms", "device W", "cloud ms", "upload B", "accuracy"],
                   [[p.name, f"{p.device_ms:.3f}" if p.kind != "cloud" else "-",
                     f"{p.device_power_w:.2f}" if p.kind != "cloud" else "-", f"{p.cloud_ms:.3f}", p.upload_bytes,
                     f"{p.accuracy:.3f}" if p.accuracy is not None else "-"] for p in profile.partitions])
    noisy = [k for k, v in m["device"].items() if _noisy(v["ms"], v["ms_std"])]
    graphs = _table(["device graph", "median ms", "std ms", "mJ / inference", "power source", ""],
                    [[k, f"{v['ms']:.3f}", f"{v['ms_std']:.3f}", f"{v['energy_j'] * 1e3:.3f}", v["power_source"],
                      "NOISY: std > median/2" if k in noisy else ""] for k, v in m["device"].items()])
    if noisy:
        graphs = (f'<p class="warn">{len(noisy)} measurement(s) are noisy (std above half the median): '
                  f'{html.escape(", ".join(noisy))}. Re-run calibration on a quiet device.</p>' + graphs)
    headlines = "".join(
        f"<li><b>{html.escape(radio)}</b> ({RADIOS[radio].nominal_uplink_bps / 1e6:g} Mbit/s up): the planner "
        f"picks <b>{html.escape(_pick(profile, radio, 'latency'))}</b> for latency and "
        f"<b>{html.escape(_pick(profile, radio, 'energy'))}</b> for energy</li>" for radio in RADIOS) \
        if len(profile.partitions) > 1 else "<li>mobile-only: no cloud was measured</li>"
    link = m.get("link")
    link_html = _table(["uplink Mbit/s", "+-", "RTT ms", "+-", "samples (RTT / bandwidth)"],
                       [[f"{link['uplink_bps'] / 1e6:.2f}", f"{link['uplink_bps_std'] / 1e6:.2f}",
                         f"{link['rtt_ms']:.2f}", f"{link['rtt_ms_std']:.2f}",
                         f"{link['rtt_samples']} / {link['bandwidth_samples']}"]]) if link else "<p>no cloud link</p>"
    regs = profile.extra["regression"]
    reg_html = _table(["fit", "leave-one-out mean error", "max error", "intercept"],
                      [[side, f"{r['loo_mean_relative_error']:.1%}", f"{r['loo_max_relative_error']:.1%}",
                        f"{r['intercept']:.3f} {r['unit']}"] for side, r in regs.items() if side != "predicted"])
    predicted = regs.get("predicted", {})
    reg_html += _table(["model (not measured)", "predicted ms", "predicted mJ"],
                       [[name, f"{p['ms']:.3f}", f"{p['mj']:.3f}"] for name, p in predicted.items()]) \
        if predicted else ""
    mcu = m.get("mcu")
    mcu_html = _table(["MCU model", "MACs", "blob B", "load s", "round trip ms", "SysTick ticks"],
                      [[k, v["macs"], v["blob_bytes"], f"{v['load_s']:.2f}", f"{v['round_trip_ms']:.2f}",
                        v["systick_ticks"]] for k, v in mcu["models"].items()]) + \
        "<p>Ticks of a 168 MHz SysTick; under QEMU -icount they are 0.168 x instructions, not silicon cycles.</p>" \
        if mcu else ""
    figures = "".join(f'<h2>{html.escape(t)}</h2><img src="{f}" alt="{html.escape(t)}">' for f, t in images)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>adaptinf calibration: {html.escape(bundle.name)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}img{{max-width:100%}}
.warn{{color:#a00;font-weight:bold}}</style></head><body>
<h1>Calibration of {html.escape(bundle.name)}</h1>
<p>bundle {bundle.manifest_sha256[:16]} &middot; host {html.escape(str(profile.device.get('host')))} &middot;
backend {html.escape(str(profile.device.get('backend')))} &middot; power {html.escape(str(profile.device.get('power_source')))}
&middot; {html.escape(profile.extra['calibration']['at'])}</p>
<h2>What the planner picks, per link</h2><ul>{headlines}</ul>
<h2>Partitions (what the planner uses)</h2>{parts}<h2>Device graphs</h2>{graphs}<h2>Link</h2>{link_html}
<h2>Layer regression (thesis 4.3.2, after Neurosurgeon)</h2>{reg_html}
{"<h2>MCU</h2>" + mcu_html if mcu else ""}{figures}</body></html>"""
    index = out / "index.html"
    index.write_text(page)
    return index
