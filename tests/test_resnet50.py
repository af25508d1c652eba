"""torchvision's ResNet-50 architecture with butterfly units: the real architecture splits."""

import numpy as np
import pytest
import torch

from adaptinf.toolchain.butterfly import Butterfly, SplitModel
from adaptinf.toolchain.models import resnet50, torchvision_key_to_staged
from adaptinf.toolchain.onnx_accuracy import split_logits_onnx
from adaptinf.toolchain.onnx_export import export_onnx


def test_same_size_as_torchvision_resnet50():
    model = resnet50()
    assert sum(p.numel() for p in model.parameters()) == 25_557_032  # torchvision resnet50(): 25,557,032
    assert model.points == [f"RB{i}" for i in range(1, 17)]


def test_torchvision_keys_map_onto_the_staged_model():
    names = dict(resnet50().named_parameters())
    for key in ("conv1.weight", "bn1.bias", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
                "layer3.5.bn3.weight", "layer4.2.conv3.weight", "fc.weight"):
        assert torchvision_key_to_staged(key) in names
    assert torchvision_key_to_staged("layer4.2.conv3.weight").startswith("stages.RB16.")


@pytest.mark.parametrize("point,d_r", [("RB3", 1), ("RB14", 10)])
def test_head_plus_tail_reproduce_resnet50_split(tmp_path, point, d_r):
    torch.manual_seed(0)
    base = resnet50(num_classes=10, image_size=64).eval()
    x = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    split = SplitModel(base, point, None)
    with torch.no_grad():
        feats = split.head_features(x)
    split.butterfly = Butterfly(feats.shape[1], d_r)
    split.butterfly.init_from_pca(feats)
    split.butterfly.quantize_upload = False
    split.eval()
    export_onnx(split.head(), x[:1], tmp_path / "h.onnx", "image", "reduced")
    with torch.no_grad():
        reduced = split.head()(x[:1])
        expected = split(x).numpy()
    export_onnx(split.tail(), reduced, tmp_path / "t.onnx", "reduced", "logits")
    got = split_logits_onnx(tmp_path / "h.onnx", tmp_path / "t.onnx", x.numpy(), quantized=False)
    assert reduced.shape[1] == d_r
    assert np.allclose(got, expected, rtol=1e-3, atol=1e-3)
