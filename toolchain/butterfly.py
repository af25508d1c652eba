"""The butterfly unit of paper 004 (Fig. 1-2) and the split model around it.

Reduction: a 1x1 convolution D -> D_r on the device, whose output is quantised to
8 bits and uploaded. Restoration: a 1x1 convolution D_r -> D on the cloud, after
which the rest of the network runs unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from adaptinf.upload_quant import QMAX
from adaptinf.toolchain.models import StagedModel


def fake_quantize(x: torch.Tensor) -> torch.Tensor:
    """Per-sample affine uint8 quantise-dequantise with a straight-through gradient.

    Same arithmetic as adaptinf.upload_quant (per tensor = per frame at run time).
    """
    dims = tuple(range(1, x.dim()))
    lo = x.detach().amin(dim=dims, keepdim=True).clamp(max=0.0)
    hi = x.detach().amax(dim=dims, keepdim=True).clamp(min=0.0)
    scale = (hi - lo) / QMAX
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero_point = torch.clamp(torch.round(-lo / scale), 0, QMAX)
    q = torch.clamp(torch.round(x / scale) + zero_point, 0, QMAX)
    return x + ((q - zero_point) * scale - x).detach()


class Butterfly(nn.Module):
    def __init__(self, channels: int, reduced: int):
        super().__init__()
        if not 1 <= reduced <= channels:
            raise ValueError(f"D_r must be in [1, D={channels}], got {reduced}")
        self.reduction = nn.Conv2d(channels, reduced, 1)
        self.restoration = nn.Conv2d(reduced, channels, 1)
        self.quantize_upload = True

    @torch.no_grad()
    def init_from_pca(self, features: torch.Tensor) -> None:
        """Start from the top-D_r principal components of the features at the point.

        Not in the paper: a PCA start makes the reduction a good projection before
        any training, so end-to-end fine-tuning converges in one short epoch.
        """
        d, k = self.reduction.in_channels, self.reduction.out_channels
        flat = features.permute(0, 2, 3, 1).reshape(-1, d).double()
        mean = flat.mean(0)
        cov = torch.cov((flat - mean).T)
        _, vectors = torch.linalg.eigh(cov)  # ascending eigenvalues
        basis = vectors[:, -k:].flip(1).float()  # (D, k), strongest first
        mean = mean.float()
        self.reduction.weight.copy_(basis.T.reshape(k, d, 1, 1))
        self.reduction.bias.copy_(-(basis.T @ mean))
        self.restoration.weight.copy_(basis.reshape(d, k, 1, 1))
        self.restoration.bias.copy_(mean)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.reduction(x)
        if self.quantize_upload:
            r = fake_quantize(r)
        return self.restoration(r)


class SplitModel(nn.Module):
    """A staged model with a butterfly unit after `point`."""

    def __init__(self, base: StagedModel, point: str, butterfly: Butterfly):
        super().__init__()
        self.base = base
        self.point = point
        self.cut = base.index_after(point)
        self.butterfly = butterfly

    def head_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.base.run_stages(x, 0, self.cut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base.run_stages(self.butterfly(self.head_features(x)), self.cut)

    def head(self) -> nn.Module:
        """Device side: frame -> reduced tensor (float; quantised outside the graph)."""
        return _Head(self)

    def tail(self) -> nn.Module:
        """Cloud side: reduced tensor (dequantised) -> logits."""
        return _Tail(self)


class _Head(nn.Module):
    def __init__(self, split: SplitModel):
        super().__init__()
        self.split = split

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.split.butterfly.reduction(self.split.head_features(x))


class _Tail(nn.Module):
    def __init__(self, split: SplitModel):
        super().__init__()
        self.split = split

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        restored = self.split.butterfly.restoration(r)
        return self.split.base.run_stages(restored, self.split.cut)
