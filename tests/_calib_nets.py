"""The small BN-folded CNNs of the calibration tests: built under one seed, with BatchNorm
statistics that are not the identity (so folding moves the weights), and seeded images."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def seeded_with_bn_stats(make: Callable[[], nn.Module]) -> nn.Module:
    """``make()`` under ``torch.manual_seed(0)``, its ``c1[1]`` BatchNorm given running mean
    N(0, 0.3) and variance U(0.5, 2); in eval mode."""
    torch.manual_seed(0)
    m = make()
    with torch.no_grad():
        m.c1[1].running_mean.normal_(0, 0.3)
        m.c1[1].running_var.uniform_(0.5, 2)
    return m.eval()


def images(n: int, seed: int = 1, size: int = 16) -> torch.Tensor:
    """(n, 3, size, size) standard normal float32 images."""
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))
