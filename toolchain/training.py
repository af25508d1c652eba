"""Training and evaluation loops (CPU, small batches, progress bars)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm


def set_seed(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def fit(params, n: int, batch_loss: Callable[[torch.Tensor], torch.Tensor], *, epochs: int, lr: float = 3e-3,
        batch_size: int = 128, seed: int = 0, desc: str = "train", progress: bool = True) -> None:
    """The one training loop: Adam with a one-cycle schedule over `epochs` shuffled passes of
    n examples; batch_loss(indices) returns the loss of that batch."""
    if epochs <= 0:
        return
    generator = torch.Generator().manual_seed(seed)
    steps = epochs * ((n + batch_size - 1) // batch_size)
    optimiser = torch.optim.Adam(params, lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps, pct_start=0.15)
    with tqdm(total=steps, desc=desc, unit="step", disable=None if progress else True, leave=False) as bar:
        for _ in range(epochs):
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, batch_size):
                loss = batch_loss(order[start:start + batch_size])
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                schedule.step()
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
                bar.update()


def train(model: nn.Module, images: np.ndarray, labels: np.ndarray, *, epochs: int,
          lr: float = 3e-3, batch_size: int = 128, seed: int = 0, desc: str = "train",
          progress: bool = True, freeze_batchnorm: bool = False) -> None:
    """Cross-entropy classification; images are uint8 NHWC (the model preprocesses).
    freeze_batchnorm keeps a trained model's BatchNorm statistics (fine-tuning on few frames)."""
    x_all = torch.from_numpy(images)
    y_all = torch.from_numpy(labels)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    if freeze_batchnorm:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
    fit(model.parameters(), len(labels), lambda index: loss_fn(model(x_all[index]), y_all[index]), epochs=epochs,
        lr=lr, batch_size=batch_size, seed=seed, desc=desc, progress=progress)
    model.eval()


@torch.no_grad()
def predict(model: nn.Module, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Logits for uint8 NHWC images."""
    model.eval()
    out = [model(torch.from_numpy(images[i:i + batch_size])) for i in range(0, len(images), batch_size)]
    return torch.cat(out).numpy()


def correct(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per frame: whether the model's top-1 is the label (the paired test of Algorithm 1 needs
    which frames, not only how many)."""
    return predict(model, images).argmax(1) == labels


def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    return float(correct(model, images, labels).mean())
