"""`adaptinf build split --torch MODULE:FACTORY --weights CKPT.pt`: paper 004's butterfly on a
user's trained PyTorch model, fine-tuned from its weights, beside the plain 8-bit cut."""

from __future__ import annotations

import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from adaptinf.bundle import load_bundle  # noqa: E402
from adaptinf.rig.published_models import ResNet18  # noqa: E402
from adaptinf.toolchain.torch_butterfly import (FrameModel, TorchSplitConfig, TorchSplitError,  # noqa: E402
                                                build_torch_split, candidate_blocks, load_user_model)
from adaptinf.toolchain.training import train  # noqa: E402

pytestmark = pytest.mark.slow
USER_MODULE = '''
from adaptinf.rig.published_models import ResNet18


def resnet18_small(num_classes=16):
    return ResNet18(num_classes, width=16)
'''


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    """What a user arrives with: their module on sys.path, a checkpoint they trained, and a
    folder of labelled images (glyphs here, 40x40 PNGs read at 32x32)."""
    from PIL import Image

    from adaptinf.toolchain.glyphs import make_glyphs

    root = tmp_path_factory.mktemp("user")
    (root / "usermodel.py").write_text(USER_MODULE)
    sys.path.insert(0, str(root))
    glyphs = make_glyphs(1600, seed=5, size=40)
    classes = sorted(set(glyphs.classes))
    for i, (image, label) in enumerate(zip(glyphs.images, glyphs.labels)):
        folder = root / "data" / glyphs.classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i}.png")
    torch.manual_seed(0)
    model = ResNet18(len(classes), width=16)
    frames = np.stack([np.asarray(Image.fromarray(x).resize((32, 32), Image.BILINEAR)) for x in glyphs.images])
    labels = np.array([classes.index(glyphs.classes[label]) for label in glyphs.labels])
    train(FrameModel(model, (0.5,) * 3, (0.25,) * 3), frames, labels, epochs=15, lr=3e-3, progress=False)
    torch.save(model.state_dict(), root / "user.pt")
    yield root
    sys.path.remove(str(root))


@pytest.fixture(scope="module")
def butterflied(user):
    config = TorchSplitConfig(factory="usermodel:resnet18_small", weights=str(user / "user.pt"),
                              dataset=f"folder:{user / 'data'}", size=32, points=2, mean=(0.5,) * 3, std=(0.25,) * 3,
                              finetune_samples=800, accuracy_loss=0.08)   # 320 validation frames: a 2-point bound is not provable
    return build_torch_split(config, user / "bundle", progress=False), user / "bundle"


def test_the_users_weights_are_kept_and_each_point_is_measured_on_held_out_images(butterflied):
    manifest, root = butterflied
    bundle = load_bundle(root)
    split = manifest["split"]
    assert split["baseline_accuracy_test"] > 0.5                # the user's training, not ours from scratch
    assert manifest["data"]["n_test"] == 480 and bundle.preprocess is not None
    assert bundle.split.points, manifest["split"]["rejected_points"]
    for point, raw in zip(bundle.split.points, split["points"]):
        # Algorithm 1 with the sampling error: the smallest D_r whose loss's upper confidence
        # bound on validation is within the bound (so its point estimate is too)
        bound = split["accuracy_loss_bound"]
        assert raw["search"][-1]["loss_ucb"] <= bound
        assert raw["accuracy"] >= split["baseline_accuracy"] - bound - 1e-9
        assert all(t["loss_ucb"] > bound for t in raw["search"][:-1])
        assert point.D_r < point.D and point.upload_bytes < raw["plain_8bit"]["upload_bytes"]
        assert 0 <= raw["accuracy_test"] <= 1 and 0 <= raw["plain_8bit"]["accuracy_test"] <= 1
    for raw in split["rejected_points"]:
        assert raw["reason"]


def test_the_butterfly_bundle_is_served_with_camera_frames(butterflied, tmp_short):
    from adaptinf.client import Client
    from adaptinf.rig.processes import spawn_cloud, spawn_daemon, write_daemon_config

    _, root = butterflied
    bundle = load_bundle(root)
    cloud = spawn_cloud(root)
    config = write_daemon_config(tmp_short / "d.toml", daemon={"api_endpoint": f"ipc://{tmp_short}/a.sock",
                                                                "bundle": str(root), "state_dir": str(tmp_short),
                                                                "warmup_runs": 2},
                                 cloud={"endpoint": cloud.endpoint, "timeout_ms": 3000.0})
    daemon = spawn_daemon(config)
    try:
        with Client(f"ipc://{tmp_short}/a.sock", timeout_s=20) as c:
            frame = np.random.default_rng(1).integers(0, 256, (120, 90, 3), dtype=np.uint8)
            answers = {p: c.infer(frame, policy=p) for p in ("mobile-only", "cloud-only", bundle.split.points[0].name)}
    finally:
        daemon.stop()
        cloud.stop()
    for placement, r in answers.items():
        assert r.served_by["partition"] == placement and not r.served_by["fallback"]
        assert r.label_name in bundle.classes and r.outputs["logits"].shape == (1, len(bundle.classes))
    assert answers["mobile-only"].label == answers["cloud-only"].label


def test_blocks_inside_a_residual_block_are_not_candidates():
    model = ResNet18(4, width=8)
    blocks, total = candidate_blocks(model, torch.zeros(1, 3, 32, 32))
    names = [b.name for b in blocks]
    assert "features.2" in names and "features.8" in names          # whole blocks
    assert not any(".body." in n or "shortcut" in n for n in names)  # never their insides
    assert total > blocks[-1].flops_before > blocks[0].flops_before > 0


def test_a_checkpoint_that_does_not_fit_is_refused_by_name(user, tmp_path):
    torch.save(ResNet18(3, width=8).state_dict(), tmp_path / "other.pt")
    with pytest.raises(TorchSplitError, match="does not fit usermodel:resnet18_small"):
        load_user_model("usermodel:resnet18_small", tmp_path / "other.pt", 16)
    with pytest.raises(TorchSplitError, match="MODULE:FACTORY"):
        load_user_model("usermodel.resnet18_small", tmp_path / "other.pt", 16)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(TorchSplitError, match="not a checkpoint torch can read"):
        load_user_model("usermodel:resnet18_small", tmp_path / "junk.pt", 16)


def _torchvision_importable() -> str | None:
    try:
        import torchvision  # noqa: F401
    except Exception as exc:          # the PyPI wheel links CUDA torch: RuntimeError beside the CPU build
        return f"torchvision does not import here ({type(exc).__name__}: {str(exc)[:80]})"
    return None


@pytest.mark.skipif(_torchvision_importable() is not None, reason=str(_torchvision_importable()))
def test_torchvision_names_work_directly(tmp_path):
    import torchvision

    torch.save(torchvision.models.mobilenet_v3_small(num_classes=5).state_dict(), tmp_path / "tv.pt")
    model = load_user_model("torchvision.models:mobilenet_v3_small", tmp_path / "tv.pt", 5)
    blocks, _ = candidate_blocks(model, torch.zeros(1, 3, 64, 64))
    assert len(blocks) >= 4


def test_torchvision_missing_is_said_not_a_traceback(tmp_path):
    if _torchvision_importable() is None:
        pytest.skip("torchvision imports here")
    with pytest.raises(TorchSplitError, match="cannot import torchvision"):
        load_user_model("torchvision.models:resnet18", tmp_path / "x.pt", 5)
