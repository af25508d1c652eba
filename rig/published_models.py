"""Published architectures, written from their papers, to try `build split --onnx` on models
nobody here designed: ResNet-18 and ResNet-50 (He et al., CVPR 2016, Table 1), MobileNetV2 (Sandler et
al., CVPR 2018, Table 2) and U-Net (Ronneberger et al., MICCAI 2015, Fig. 1: an
encoder-decoder whose skip connections span the model). EfficientNet-B0 comes from the
efficientnet_pytorch package instead (`efficientnet_b0`).

Weights are random (or trained briefly by the caller): nothing is downloaded. `width`
scales the channels, so tests can run the real topology in seconds. Needs torch (the
`build` extra).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def _conv_bn(cin: int, cout: int, stride: int = 1, groups: int = 1, act: type = nn.ReLU, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout),
                         act())


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(_conv_bn(cin, cout, stride), nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(cout))
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout else
                         nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x):
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, num_classes: int = 1000, width: int = 64):
        super().__init__()
        w = [width, width * 2, width * 4, width * 8]
        layers = [_conv_bn(3, w[0], 2, k=7), nn.MaxPool2d(3, 2, 1)]
        cin = w[0]
        for i, c in enumerate(w):
            layers += [BasicBlock(cin, c, 1 if i == 0 else 2), BasicBlock(c, c, 1)]
            cin = c
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


class Bottleneck(nn.Module):
    def __init__(self, cin: int, mid: int, stride: int):
        super().__init__()
        cout = mid * 4
        self.body = nn.Sequential(_conv_bn(cin, mid, k=1), _conv_bn(mid, mid, stride),
                                  nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout else
                         nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x):
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNet50(nn.Module):
    """Bottleneck blocks, [3, 4, 6, 3] (the paper's Table 1): 25.6 M parameters at width 64."""

    def __init__(self, num_classes: int = 1000, width: int = 64):
        super().__init__()
        layers, cin = [_conv_bn(3, width, 2, k=7), nn.MaxPool2d(3, 2, 1)], width
        for i, repeats in enumerate((3, 4, 6, 3)):
            mid = width * 2 ** i
            for j in range(repeats):
                layers.append(Bottleneck(cin, mid, 2 if j == 0 and i > 0 else 1))
                cin = mid * 4
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers = [] if expand == 1 else [_conv_bn(cin, hidden, act=nn.ReLU6, k=1)]
        layers += [_conv_bn(hidden, hidden, stride, groups=hidden, act=nn.ReLU6),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetV2(nn.Module):
    # (expansion t, channels c, repeats n, stride s): the paper's Table 2
    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1))

    def __init__(self, num_classes: int = 1000, width: float = 1.0):
        super().__init__()
        c = lambda n: max(8, int(n * width))   # noqa: E731
        layers, cin = [_conv_bn(3, c(32), 2, act=nn.ReLU6)], c(32)
        for t, ch, n, s in self.SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(cin, c(ch), s if i == 0 else 1, t))
                cin = c(ch)
        layers.append(_conv_bn(cin, c(1280), act=nn.ReLU6, k=1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c(1280), num_classes)

    def forward(self, x):
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


class UNet(nn.Module):
    """Four levels down, four up, each decoder level concatenating the encoder's features:
    a per-pixel segmenter with `num_classes` maps."""

    def __init__(self, num_classes: int = 2, width: int = 64, depth: int = 4):
        super().__init__()
        chans = [width * 2 ** i for i in range(depth + 1)]
        self.down = nn.ModuleList()
        cin = 3
        for c in chans:
            self.down.append(nn.Sequential(_conv_bn(cin, c), _conv_bn(c, c)))
            cin = c
        self.up = nn.ModuleList(nn.ConvTranspose2d(chans[i + 1], chans[i], 2, 2) for i in reversed(range(depth)))
        self.merge = nn.ModuleList(nn.Sequential(_conv_bn(2 * chans[i], chans[i]), _conv_bn(chans[i], chans[i]))
                                   for i in reversed(range(depth)))
        self.head = nn.Conv2d(chans[0], num_classes, 1)

    def forward(self, x):
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else nn.functional.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for up, merge in zip(self.up, self.merge):
            x = merge(torch.cat([up(x), skips.pop()], 1))
        return self.head(x)


def efficientnet_b0(num_classes: int = 1000) -> nn.Module:
    """EfficientNet-B0 from the efficientnet_pytorch package (Tan and Le, ICML 2019), exportable."""
    from efficientnet_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-b0", num_classes=num_classes)
    model.set_swish(memory_efficient=False)     # the memory-efficient swish is a custom autograd op
    return model


def randomise_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics, as a trained model has (fresh ones are the identity)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model


def export(model: nn.Module, size: int, path: Path | str, input_name: str = "input",
           output_names: tuple[str, ...] = ("output",)) -> Path:
    """As a user would: torch.onnx.export at opset 17, one float32 NCHW input."""
    import io
    import warnings

    model.eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, size, size),), buffer, input_names=[input_name],
                          output_names=list(output_names), opset_version=17, dynamo=False)
    Path(path).write_bytes(buffer.getvalue())
    return Path(path)
