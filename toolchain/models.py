"""Splittable models: a network as an ordered list of named stages.

A split point is the boundary after a named stage. Every model here takes the raw
frame the daemon receives (uint8, NHWC) and does its own preprocessing in the graph,
so a bundle's input spec is exactly what a camera hands over and cloud-only uploads
exactly those bytes.

- GlyphResNet: a small residual CNN for the 32x32 glyph set (6 residual blocks,
  candidate points RB1..RB6); trains on a 2-core CPU in about a minute.
- resnet50: torchvision's ResNet-50 architecture (bottleneck blocks [3, 4, 6, 3],
  16 residual blocks = candidate points RB1..RB16, paper 004 Fig. 4). Random init;
  `load_torchvision_state_dict` takes a torchvision checkpoint a user brings.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


class Preprocess(nn.Module):
    """uint8 NHWC -> normalised float32 NCHW, inside the exported graph."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1) * 255.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2).to(torch.float32)
        return (x - self.mean) / self.std


class Downsample(nn.Module):
    """The resolution multiplier rho (thesis eq. 5.3) inside the graph: the frame is resized
    to size x size, so every later feature map shrinks by rho while the bundle's input stays
    the camera's frame. Bilinear (ONNX Resize); at rho = 1/2 it is a 2x2 mean."""

    def __init__(self, size: int, frame: int):
        super().__init__()
        self.scale = size / frame

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # a constant scale (not a size) keeps the exported Resize's output shape inferable
        return F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False,
                             recompute_scale_factor=False)


class StagedModel(nn.Module):
    """A model made of named stages; `points` names the stages a split may follow."""

    def __init__(self, stages: "OrderedDict[str, nn.Module]", points: list[str],
                 input_shape: tuple[int, int, int], num_classes: int):
        super().__init__()
        unknown = [p for p in points if p not in stages]
        if unknown:
            raise ValueError(f"candidate points {unknown} are not stages of the model")
        self.stages = nn.ModuleDict(stages)
        self.points = list(points)
        self.input_shape = input_shape  # (H, W, C) of the uint8 frame
        self.num_classes = num_classes

    def stage_names(self) -> list[str]:
        return list(self.stages.keys())

    def run_stages(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        for module in list(self.stages.values())[start:stop]:
            x = module(x)
        return x

    def index_after(self, point: str) -> int:
        """Index of the first stage after `point` (the tail starts there)."""
        return self.stage_names().index(point) + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run_stages(x)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Classifier(nn.Module):
    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(x), 1))


GLYPH_MEAN = (0.5, 0.5, 0.5)
GLYPH_STD = (0.25, 0.25, 0.25)


def glyph_resnet(num_classes: int = 16, width: int = 16, resolution: int = 32) -> StagedModel:
    """Residual CNN for 32x32 glyphs: stem, RB1..RB6, classifier. `width` is the width
    multiplier's channel count; `resolution` < 32 resizes the frame first (Downsample)."""
    if not 8 <= resolution <= 32:
        raise ValueError(f"resolution must be in [8, 32] (the frame is 32x32), got {resolution}")
    w = width
    plan = [(w, w, 1), (w, 2 * w, 2), (2 * w, 2 * w, 1), (2 * w, 4 * w, 2), (4 * w, 4 * w, 1), (4 * w, 4 * w, 1)]
    stages: OrderedDict[str, nn.Module] = OrderedDict()
    stages["preprocess"] = Preprocess(GLYPH_MEAN, GLYPH_STD)
    if resolution < 32:
        stages["downsample"] = Downsample(resolution, 32)
    stages["stem"] = nn.Sequential(nn.Conv2d(3, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True))
    for i, (cin, cout, stride) in enumerate(plan, start=1):
        stages[f"RB{i}"] = BasicBlock(cin, cout, stride)
    stages["classifier"] = Classifier(4 * w, num_classes)
    return StagedModel(stages, [f"RB{i}" for i in range(1, len(plan) + 1)], (32, 32, 3), num_classes)


def glyph_resnet224(num_classes: int = 16, width: int = 8) -> StagedModel:
    """Residual CNN for 224x224 frames (the split demo): a 4x4 stride-4 stem to 56x56, then
    RB1..RB8 over four resolutions (56, 28, 14, 7) with widths w, 2w, 4w, 8w. The stem
    makes the first feature map 3x smaller than the frame in elements, and each stage
    halves it again, so the split points span a wide range of upload sizes and device
    shares, as ResNet-50's do (paper 004 Fig. 4)."""
    w = width
    plan = [(w, w, 1), (w, 2 * w, 2), (2 * w, 2 * w, 1), (2 * w, 4 * w, 2), (4 * w, 4 * w, 1),
            (4 * w, 8 * w, 2), (8 * w, 8 * w, 1), (8 * w, 8 * w, 1)]
    stages: OrderedDict[str, nn.Module] = OrderedDict()
    stages["preprocess"] = Preprocess(GLYPH_MEAN, GLYPH_STD)
    stages["stem"] = nn.Sequential(nn.Conv2d(3, w, 4, 4, 0, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True))
    for i, (cin, cout, stride) in enumerate(plan, start=1):
        stages[f"RB{i}"] = BasicBlock(cin, cout, stride)
    stages["classifier"] = Classifier(8 * w, num_classes)
    return StagedModel(stages, [f"RB{i}" for i in range(1, len(plan) + 1)], (224, 224, 3), num_classes)


class Bottleneck(nn.Module):
    """torchvision's ResNet-50 bottleneck (stride on the 3x3, "ResNet v1.5")."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESNET50_LAYERS = (3, 4, 6, 3)


def resnet50(num_classes: int = 1000, image_size: int = 224) -> StagedModel:
    """ResNet-50 as torchvision builds it; stages RB1..RB16 are its residual blocks."""
    stages: OrderedDict[str, nn.Module] = OrderedDict()
    stages["preprocess"] = Preprocess(IMAGENET_MEAN, IMAGENET_STD)
    stages["stem"] = nn.Sequential(
        OrderedDict(conv1=nn.Conv2d(3, 64, 7, 2, 3, bias=False), bn1=nn.BatchNorm2d(64),
                    relu=nn.ReLU(inplace=True), maxpool=nn.MaxPool2d(3, 2, 1)))
    cin, block = 64, 0
    for layer, (planes, count) in enumerate(zip((64, 128, 256, 512), RESNET50_LAYERS)):
        for i in range(count):
            block += 1
            stride = 2 if (i == 0 and layer > 0) else 1
            stages[f"RB{block}"] = Bottleneck(cin, planes, stride)
            cin = planes * Bottleneck.expansion
    stages["classifier"] = Classifier(cin, num_classes)
    return StagedModel(stages, [f"RB{i}" for i in range(1, 17)], (image_size, image_size, 3), num_classes)


def torchvision_key_to_staged(key: str) -> str:
    """Map a torchvision resnet50 state_dict key onto this module's names."""
    if key.startswith(("conv1.", "bn1.")):
        return "stages.stem." + key
    if key.startswith("fc."):
        return "stages.classifier." + key
    if key.startswith("layer"):
        layer, index, rest = key.split(".", 2)
        block = sum(RESNET50_LAYERS[: int(layer[5:]) - 1]) + int(index) + 1
        return f"stages.RB{block}.{rest}"
    raise KeyError(f"unexpected key in a torchvision ResNet-50 checkpoint: {key}")


def load_torchvision_state_dict(model: StagedModel, state_dict: dict[str, torch.Tensor]) -> None:
    """Load torchvision `resnet50().state_dict()` weights (users bring their own)."""
    mapped = {torchvision_key_to_staged(k): v for k, v in state_dict.items()}
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    missing = [m for m in missing if not m.startswith("stages.preprocess.")]
    if missing or unexpected:
        raise ValueError(f"checkpoint does not fit ResNet-50: missing {missing[:5]}, unexpected {unexpected[:5]}")


MODELS = {"glyph_resnet": glyph_resnet, "glyph_resnet224": glyph_resnet224, "resnet50": resnet50}
