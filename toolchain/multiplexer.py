"""`adaptinf build multiplexer`: the neural model multiplexer of papers 000/001, Algorithm 1.

Step 1, the pool: N glyph CNNs of different widths trained jointly, each with cross-entropy
plus the contrastive loss of eq. 2 on projected embeddings e_i = normalize(h_i^T g_i)
(eq. 1, paper 000): for every pair of models, pull their embeddings together where both
are right, push them apart where exactly one is, leave them alone where both are wrong.
Step 2, the multiplexer: a 4-layer CNN with meta-features m(x); the cost-weighted softmax
aggregator w_i = softmax_i(sum_j v_ij m_j(x) / c_i) (eq. 5-6, c_i = FLOPs relative to the
cheapest model); trained with the pool frozen on L_mux = -log sum_i w_i f_i(x)[y] (eq. 7,
the ensemble's cross-entropy) plus the distillation loss sum_i d(q(x), e_i) (eq. 8, q: the
multiplexer's meta-features projected like the e_i).

Decisions the papers leave open (docs/multiplexer.md):
- d: eq. 3 prints a cosine similarity, but the text asks for a distance in [0, 1] that
  decreases when embeddings are pulled together; d = (1 - cos) / 2 does that.
- The multiplexer trains on frames the pool did not train on: on its own training set a
  pool member is right far more often than on new frames, and the multiplexer must learn
  where they fail.
- Costs are normalised by the cheapest model's FLOPs, so w's logits keep a usable scale.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from adaptinf.toolchain.models import GLYPH_MEAN, GLYPH_STD, Preprocess, StagedModel, glyph_resnet
from adaptinf.toolchain.training import fit

EPS = 1e-6
PAIR_ACCURACY_LOSS = 0.02   # the calibrated device/cloud threshold's bound vs cloud-only (as the split's)
MIN_WIDTH = 8
OBJECTIVES = ("ensemble", "correctness")   # how the multiplexer learns w (Multiplexer)


@dataclass(frozen=True)
class MuxConfig:
    widths: tuple[int, ...] = (8, 16, 32)    # the pool: glyph_resnet at these widths
    projection_dim: int = 32                 # e_i and q live here
    meta_features: int = 32                  # M
    contrastive_weight: float = 0.5
    distill_weight: float = 0.5
    epochs: int = 6                          # step 1
    mux_epochs: int = 10                     # step 2
    lr: float = 3e-3
    batch_size: int = 128
    objective: str = "ensemble"              # or "correctness" (Multiplexer)
    seed: int = 0

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if len(self.widths) < 2:
            raise ValueError("a pool needs at least two models")
        if min(self.widths) < MIN_WIDTH:
            # torch 2.13's oneDNN (jit_avx2_1x1_convolution_bwd_weights) spins forever on the
            # 1x1 shortcut's weight gradient at 4 input channels with 2 threads: found here.
            raise ValueError(f"pool widths must be >= {MIN_WIDTH} (narrower glyph_resnets hang oneDNN's "
                             f"1x1 convolution backward on CPU), got {self.widths}")


class PoolMember(nn.Module):
    """A pool model returning its logits and its embedding g (the classifier's input)."""

    def __init__(self, model: StagedModel):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.model.run_stages(x, 0, -1)
        head = self.model.stages["classifier"]
        g = torch.flatten(head.pool(features), 1)
        return head.fc(g), g


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """d in [0, 1] for L2-normalised rows: 0 when equal, 1 when opposite."""
    return (1.0 - (a * b).sum(-1)) / 2.0


def contrastive_loss(projected: list[torch.Tensor], correct: torch.Tensor) -> torch.Tensor:
    """Eq. 2 over all ordered pairs i != j, averaged over the batch.
    projected[i]: (B, P) normalised; correct: (B, N) bool."""
    total = projected[0].new_zeros(())
    n = len(projected)
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            both = (correct[:, i] & correct[:, j]).float()
            one = (correct[:, i] ^ correct[:, j]).float()
            total = total + (torch.log(cosine_distance(projected[i], projected[j]) + EPS) * (both - one)).mean()
    return total


class Multiplexer(nn.Module):
    """4 conv layers -> meta-features m; scores s = V m / c (eq. 5); q = normalize(P m) (eq. 8).

    objective "ensemble" (eq. 6-7, the papers'): w = softmax(s), trained as the stacked
    ensemble's likelihood. "correctness": w_i = sigmoid(s_i), trained by binary cross-entropy
    on whether model i is right: the papers' stated meaning of w_i, trained directly
    (docs/multiplexer.md measures both)."""

    def __init__(self, n_models: int, costs: np.ndarray, meta_features: int = 32, projection_dim: int = 32,
                 objective: str = "ensemble"):
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        self.objective = objective
        self.preprocess = Preprocess(GLYPH_MEAN, GLYPH_STD)
        layers, cin = [], 3
        for cout in (8, 16, 32, meta_features):
            layers += [nn.Conv2d(cin, cout, 3, 2, 1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin = cout
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.aggregator = nn.Linear(meta_features, n_models, bias=False)        # v_ij
        self.register_buffer("costs", torch.as_tensor(np.asarray(costs, np.float32)))
        self.projection = nn.Linear(meta_features, projection_dim)

    def scores(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(s = V m / c, m)."""
        m = self.features(self.preprocess(x))
        return self.aggregator(m) / self.costs, m

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, m = self.scores(x)
        w = torch.softmax(s, dim=1) if self.objective == "ensemble" else torch.sigmoid(s)
        return w, F.normalize(self.projection(m), dim=1)


def pair_weights(w: torch.Tensor) -> torch.Tensor:
    """The device/cloud multiplexer's output, [w_device, w_cloud = 1 - w_device]: the paper's one
    value in [0, 1] (1: the cloud). Under "ensemble" this is w itself (a softmax over two); under
    "correctness" w_cloud = 1 - P(the device's model is right)."""
    return torch.cat([w[:, :1], 1.0 - w[:, :1]], dim=1)


class WeightsOnly(nn.Module):
    """What the bundle stores: frame -> w (pair: [w_device, w_cloud])."""

    def __init__(self, mux: Multiplexer, pair: bool = False):
        super().__init__()
        self.mux = mux
        self.pair = pair

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.mux(x)[0]
        return pair_weights(w) if self.pair else w


def train_pool(members: list[PoolMember], heads: nn.ModuleList, images: np.ndarray, labels: np.ndarray,
               config: MuxConfig, progress: bool = True) -> None:
    """Algorithm 1, lines 3-9: every model's L_ce plus the shared contrastive loss."""
    x_all, y_all = torch.from_numpy(images), torch.from_numpy(labels)

    def batch_loss(index: torch.Tensor) -> torch.Tensor:
        x, y = x_all[index], y_all[index]
        outputs = [m(x) for m in members]
        ce = sum(F.cross_entropy(logits, y) for logits, _ in outputs)
        correct = torch.stack([logits.argmax(1) == y for logits, _ in outputs], 1)
        projected = [F.normalize(h(g), dim=1) for h, (_, g) in zip(heads, outputs)]
        return ce + config.contrastive_weight * contrastive_loss(projected, correct)

    for m in members:
        m.train()
    fit([p for m in members for p in m.parameters()] + list(heads.parameters()), len(labels), batch_loss,
        epochs=config.epochs, lr=config.lr, batch_size=config.batch_size, seed=config.seed,
        desc="pool (CE + contrastive)", progress=progress)
    for m in members:
        m.eval()


@torch.no_grad()
def pool_outputs(members: list[PoolMember], heads: nn.ModuleList, images: np.ndarray,
                 batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (N, B, C), projected embeddings (N, B, P)) of the frozen pool."""
    probs, embeds = [], []
    for m, h in zip(members, heads):
        m.eval()
        p, e = [], []
        for i in range(0, len(images), batch_size):
            logits, g = m(torch.from_numpy(images[i:i + batch_size]))
            p.append(torch.softmax(logits, 1))
            e.append(F.normalize(h(g), dim=1))
        probs.append(torch.cat(p).numpy())
        embeds.append(torch.cat(e).numpy())
    return np.stack(probs), np.stack(embeds)


def train_multiplexer(mux: Multiplexer, images: np.ndarray, labels: np.ndarray, probs: np.ndarray,
                      embeds: np.ndarray, config: MuxConfig, progress: bool = True) -> None:
    """Algorithm 1, lines 11-19, with the pool's outputs precomputed (the pool is frozen)."""
    x_all, y_all = torch.from_numpy(images), torch.from_numpy(labels)
    p_all = torch.from_numpy(probs).permute(1, 0, 2)        # (B, N, C)
    e_all = torch.from_numpy(embeds).permute(1, 0, 2)       # (B, N, P)
    right_all = (p_all.argmax(2) == y_all.view(-1, 1)).float()   # (B, N): is model i right

    def batch_loss(index: torch.Tensor) -> torch.Tensor:
        s, m = mux.scores(x_all[index])
        q = F.normalize(mux.projection(m), dim=1)
        if mux.objective == "ensemble":
            p_true = p_all[index].gather(2, y_all[index].view(-1, 1, 1).expand(-1, p_all.shape[1], 1))
            ensemble = (torch.softmax(s, 1) * p_true.squeeze(2)).sum(1)   # y_ENS at the true class
            l_mux = -torch.log(ensemble + EPS).mean()                      # eq. 7
        else:
            l_mux = F.binary_cross_entropy_with_logits(s, right_all[index])
        l_distill = cosine_distance(q.unsqueeze(1), e_all[index]).sum(1).mean()   # eq. 8
        return l_mux + config.distill_weight * l_distill

    mux.train()
    fit(mux.parameters(), len(labels), batch_loss, epochs=config.mux_epochs, lr=config.lr,
        batch_size=config.batch_size, seed=config.seed + 1, desc="multiplexer (mux + distill)", progress=progress)
    mux.eval()


@torch.no_grad()
def mux_weights(mux: Multiplexer, images: np.ndarray, batch_size: int = 512, pair: bool = False) -> np.ndarray:
    """w for every frame, as the exported graph computes it (WeightsOnly)."""
    model = WeightsOnly(mux, pair).eval()
    return torch.cat([model(torch.from_numpy(images[i:i + batch_size]))
                      for i in range(0, len(images), batch_size)]).numpy()


@dataclass
class PoolBuild:
    members: list[PoolMember]
    heads: nn.ModuleList
    mux: Multiplexer
    flops: np.ndarray            # per model, from its exported graph
    mux_flops: int
    config: MuxConfig


def _flops(module: nn.Module, path: Path, output: str) -> int:
    from adaptinf.toolchain.onnx_export import export_onnx
    from adaptinf.toolchain.onnx_flops import count_flops

    export_onnx(module, torch.zeros(1, 32, 32, 3, dtype=torch.uint8), path, "image", output)
    return count_flops(path)


class LogitsOnly(nn.Module):
    """A pool member as its exported graph: frame -> logits (the embedding left out)."""

    def __init__(self, member: PoolMember):
        super().__init__()
        self.member = member

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.member(x)[0]


def build_pool(pool_train, mux_train, num_classes: int, config: MuxConfig, workdir: Path,
               progress: bool = True) -> PoolBuild:
    """Algorithm 1 end to end; ONNX files of every model and the multiplexer land in workdir."""
    torch.manual_seed(config.seed)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    members = [PoolMember(glyph_resnet(num_classes, w)) for w in config.widths]
    heads = nn.ModuleList(nn.Linear(4 * w, config.projection_dim) for w in config.widths)   # h_i
    train_pool(members, heads, pool_train.images, pool_train.labels, config, progress)
    flops = np.array([_flops(LogitsOnly(m), workdir / f"pool_w{w}.onnx", "logits")
                      for m, w in zip(members, config.widths)], np.int64)
    probs, embeds = pool_outputs(members, heads, mux_train.images)
    mux = Multiplexer(len(members), flops / flops.min(), config.meta_features, config.projection_dim,
                      config.objective)
    train_multiplexer(mux, mux_train.images, mux_train.labels, probs, embeds, config, progress)
    mux_flops = _flops(WeightsOnly(mux), workdir / "multiplexer.onnx", "weights")
    return PoolBuild(members, heads, mux, flops, mux_flops, config)


def config_dict(config: MuxConfig) -> dict:
    return asdict(config)


# ---- evaluation, and the bundle -----------------------------------------------------------
def evaluate(build: PoolBuild, pair_mux: Multiplexer | None, val, test) -> dict:
    """Accuracy and FLOPs of every model alone and multiplexed, on the test split (eq. 14 for
    FLOPs, the multiplexer included): Algorithm 2's argmax, its threshold ensemble (T best on
    validation), the cheapest model with w_i > T (T: fewest FLOPs within PAIR_ACCURACY_LOSS of
    the largest model on validation), and the device/cloud pair (_evaluate_pair)."""
    from adaptinf.policies import multiplexer as policy

    p_val, _ = pool_outputs(build.members, build.heads, val.images)
    p_test, _ = pool_outputs(build.members, build.heads, test.images)
    w_val, w_test = mux_weights(build.mux, val.images), mux_weights(build.mux, test.images)
    correct = p_test.argmax(2) == test.labels                       # (N, B)
    singles = correct.mean(1)

    def run(w, probs, labels, threshold, cheapest=False):
        mask = policy.select_cheapest(w, threshold) if cheapest else policy.select(w, threshold)
        accuracy = float((policy.combine(probs, mask).argmax(1) == labels).mean())
        called = mask.mean(0)
        return accuracy, called, policy.cloud_pool_cost(called, build.flops) + build.mux_flops

    grid = np.round(np.arange(0.05, 0.96, 0.01), 2)
    sweep = [(t, run(w_val, p_val, val.labels, t)[0]) for t in grid]
    best_t = max(sweep, key=lambda s: s[1])[0]
    argmax_acc, argmax_called, argmax_flops = run(w_test, p_test, test.labels, None)
    ens_acc, ens_called, ens_flops = run(w_test, p_test, test.labels, best_t)
    # the cheapest model with w_i > T, T the fewest FLOPs within PAIR_ACCURACY_LOSS of the largest (on val)
    target = (p_val[-1].argmax(1) == val.labels).mean() - PAIR_ACCURACY_LOSS
    cheap_sweep = [(t, *run(w_val, p_val, val.labels, t, cheapest=True)) for t in grid]
    meeting = [s for s in cheap_sweep if s[1] >= target]
    cheap_t = (min(meeting, key=lambda s: s[3]) if meeting else max(cheap_sweep, key=lambda s: s[1]))[0]
    cheap_acc, cheap_called, cheap_flops = run(w_test, p_test, test.labels, cheap_t, cheapest=True)
    out = {"models": [{"width": w, "accuracy": float(a), "flops": int(f)}
                      for w, a, f in zip(build.config.widths, singles, build.flops)],
           "objective": build.config.objective,
           "multiplexer_flops": build.mux_flops, "oracle_accuracy": float(correct.any(0).mean()),
           "argmax": {"accuracy": argmax_acc, "called": argmax_called.tolist(), "flops": argmax_flops},
           "threshold": {"value": float(best_t), "accuracy": ens_acc, "called": ens_called.tolist(),
                         "flops": ens_flops, "sweep": [[float(t), a] for t, a in sweep]},
           "cheapest": {"value": float(cheap_t), "accuracy": cheap_acc, "called": cheap_called.tolist(),
                        "flops": cheap_flops, "accuracy_loss": PAIR_ACCURACY_LOSS, "met_bound": bool(meeting)}}
    if pair_mux is not None:
        out["pair"] = _evaluate_pair(mux_weights(pair_mux, val.images, pair=True)[:, 1],
                                     mux_weights(pair_mux, test.images, pair=True)[:, 1],
                                     p_val[[0, -1]], p_test[[0, -1]], val.labels, test.labels)
    return out


def _evaluate_pair(w_val, w_test, p_val, p_test, y_val, y_test, accuracy_loss: float = PAIR_ACCURACY_LOSS) -> dict:
    """Paper 001 Table I's shape: share on the device and accuracy, at the paper's 0.5 and at a
    threshold calibrated on validation (the most local within `accuracy_loss` of cloud-only),
    against two routings at the same share: random, and the device model's own confidence."""
    from adaptinf.policies import multiplexer as policy

    right_val, right_test = p_val.argmax(2) == y_val, p_test.argmax(2) == y_test     # (2, B): device, cloud
    device, cloud = right_test

    def at(threshold):
        to_cloud = policy.to_cloud(np.stack([1 - w_test, w_test], 1), threshold)
        share = float(1 - to_cloud.mean())
        k = int(round(share * len(w_test)))
        confident = np.zeros(len(w_test), bool)
        confident[np.argsort(-p_test[0].max(1))[:k]] = True                  # most confident kept local
        return {"threshold": float(threshold), "local_share": share,
                "accuracy": float(np.where(to_cloud, cloud, device).mean()),
                "random_routing": float(share * device.mean() + (1 - share) * cloud.mean()),
                "confidence_routing": float(np.where(confident, device, cloud).mean()),
                # the paper's true negative rate: of the frames the device gets right, the share kept local
                "kept_local_when_device_right": float((~to_cloud[device]).mean()) if device.any() else 0.0}

    calibrated = policy.calibrate_pair_threshold(w_val, right_val[0], right_val[1], accuracy_loss)
    return {"mobile_only": float(device.mean()), "cloud_only": float(cloud.mean()),
            "w_cloud_quantiles": np.quantile(w_test, [0.0, 0.1, 0.5, 0.9, 1.0]).round(4).tolist(),
            "accuracy_loss": accuracy_loss, "paper": at(policy.DEVICE_CLOUD_THRESHOLD), "calibrated": at(calibrated)}


def build_pair_multiplexer(build: PoolBuild, mux_train, workdir: Path, progress: bool = True) -> Multiplexer:
    """The device/cloud case of paper 001: the smallest model on the device, the largest in the cloud."""
    pair = [0, len(build.members) - 1]
    probs, embeds = pool_outputs([build.members[i] for i in pair], nn.ModuleList(build.heads[i] for i in pair),
                                 mux_train.images)
    flops = build.flops[pair]
    mux = Multiplexer(2, flops / flops.min(), build.config.meta_features, build.config.projection_dim,
                      build.config.objective)
    train_multiplexer(mux, mux_train.images, mux_train.labels, probs, embeds, build.config, progress)
    _flops(WeightsOnly(mux, pair=True), Path(workdir) / "multiplexer_pair.onnx", "weights")
    return mux


def write_bundle(build: PoolBuild, results: dict, out: Path, classes: tuple[str, ...], name: str,
                 data: dict) -> str:
    """A bundle (core/bundle.py) whose models are the pool (largest first: the bundle's full
    model), the multiplexer and the pair multiplexer, with a "multiplexer" section."""
    from adaptinf.bundle import write_manifest
    from adaptinf.policies import multiplexer as policy

    widths = build.config.widths
    pool = [{"name": f"pool_w{w}", "file": f"pool_w{w}.onnx", "role": "pool", "accuracy": r["accuracy"],
             "flops": int(f)} for w, r, f in zip(widths, results["models"], build.flops)]
    models = pool[::-1] + [
        {"name": "multiplexer", "file": "multiplexer.onnx", "role": "multiplexer", "accuracy": None,
         "flops": int(build.mux_flops)},
        {"name": "multiplexer_pair", "file": "multiplexer_pair.onnx", "role": "multiplexer", "accuracy": None,
         "flops": int(build.mux_flops)}]
    manifest = {"name": name, "created": __import__("datetime").datetime.now().isoformat(timespec="seconds"),
                "classes": list(classes),
                "input": {"name": "image", "dtype": "uint8", "shape": [1, 32, 32, 3], "layout": "NHWC"},
                "models": models,
                "multiplexer": {"pool": [m["name"] for m in pool], "costs": (build.flops / build.flops.min()).tolist(),
                                "model": "multiplexer", "threshold": results["threshold"]["value"],
                                "objective": build.config.objective,
                                "pair": {"model": "multiplexer_pair", "device": pool[0]["name"],
                                         "cloud": pool[-1]["name"],
                                         "threshold": results["pair"]["calibrated"]["threshold"],
                                         "paper_threshold": policy.DEVICE_CLOUD_THRESHOLD},
                                "results": results},
                "data": {**data, "build_config": config_dict(build.config)}}
    return write_manifest(out, manifest)
