"""The ExCNet network: base layer (N, 1, 128, 128) in, curve parameters (N, 2) = (phi_s, phi_h) out.

The reference architecture (about 8.3 M parameters) is five blocks of
3x3 conv -> per-channel affine -> ReLU -> 3x3/2 max-pool (TF "SAME"), then dense 512-256-128
with the same affine + ReLU, then two linear heads. The affine stands in for the reference's
batch norm, which runs in inference mode with mean 0 and variance 1 (eps 1e-3).

Narrower widths reach the same fixed point (the loss is convex in phi, section 7 of the method
notes) much faster; `ARCHITECTURES` names the presets.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

INPUT_SIZE = 128

ARCHITECTURES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    # name: (conv channels, dense widths)
    "reference": ((64, 128, 256, 512, 512), (512, 256, 128)),
    "small": ((8, 16, 32, 32, 32), (64, 32, 16)),
}


class Affine(nn.Module):
    """Batch norm in inference mode with mean 0, variance 1: gamma * x / sqrt(1 + eps) + beta."""

    def __init__(self, channels: int, eps: float = 1e-3) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))
        self.scale = 1.0 / math.sqrt(1.0 + eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * (self.gamma * self.scale).view(shape) + self.beta.view(shape)


def max_pool_same(x: torch.Tensor) -> torch.Tensor:
    """3x3 max-pool, stride 2, TensorFlow "SAME" padding (the extra row/column goes last)."""
    h, w = x.shape[-2:]
    pad_h = max((math.ceil(h / 2) - 1) * 2 + 3 - h, 0)
    pad_w = max((math.ceil(w / 2) - 1) * 2 + 3 - w, 0)
    x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=-math.inf)
    return F.max_pool2d(x, 3, 2)


class ExCNet(nn.Module):
    """The curve-estimation CNN. forward: (N, 1, 128, 128) in [0, 1] -> (N, 2) = (phi_s, phi_h).

    init="identity" (ours, the default) zeroes the heads so the first prediction is the
    identity curve phi = (0, 0) and keeps PyTorch's default initialisation elsewhere;
    init="reference" is the notebook's: conv weights truncated normal (sigma 0.1), conv bias
    0.1, dense Glorot uniform with zero bias.
    """

    def __init__(self, arch: str = "small", init: str = "identity") -> None:
        super().__init__()
        if arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {arch!r}; choose from {sorted(ARCHITECTURES)}")
        if init not in ("identity", "reference"):
            raise ValueError(f"unknown init {init!r}; choose 'identity' or 'reference'")
        channels, dense = ARCHITECTURES[arch]
        self.arch = arch
        self.convs = nn.ModuleList()
        self.conv_affines = nn.ModuleList()
        c_in = 1
        for c in channels:
            self.convs.append(nn.Conv2d(c_in, c, 3, padding=1))
            self.conv_affines.append(Affine(c))
            c_in = c
        side = INPUT_SIZE // 2 ** len(channels)
        self.dense = nn.ModuleList()
        self.dense_affines = nn.ModuleList()
        d_in = c_in * side * side
        for d in dense:
            self.dense.append(nn.Linear(d_in, d))
            self.dense_affines.append(Affine(d))
            d_in = d
        self.head_s = nn.Linear(d_in, 1)
        self.head_h = nn.Linear(d_in, 1)
        self._initialise(init)

    def _initialise(self, init: str) -> None:
        if init == "reference":
            for conv in self.convs:
                nn.init.trunc_normal_(conv.weight, std=0.1, a=-0.2, b=0.2)
                nn.init.constant_(conv.bias, 0.1)
            for lin in [*self.dense, self.head_s, self.head_h]:
                nn.init.xavier_uniform_(lin.weight)
                nn.init.zeros_(lin.bias)
        else:
            for head in (self.head_s, self.head_h):
                nn.init.zeros_(head.weight)
                nn.init.zeros_(head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, affine in zip(self.convs, self.conv_affines, strict=True):
            x = max_pool_same(F.relu(affine(conv(x))))
        x = x.flatten(1)
        for lin, affine in zip(self.dense, self.dense_affines, strict=True):
            x = F.relu(affine(lin(x)))
        return torch.cat([self.head_s(x), self.head_h(x)], dim=1)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
