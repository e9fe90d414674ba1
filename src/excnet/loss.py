"""The block-based, MRF-inspired loss of ExCNet and its convex twin G.

Both work on the network input x (the base layer in [0, 1], 128 x 128) and y = f(x; phi):
    B_i, B'_i = 4 x 4 block means of x and y                       (32 x 32 blocks)
    E = sum_i sign(B'_i - 0.5) (B'_i - B_i) + lam * sum_<ij> ((B'_i - B'_j) - (B_i - B_j))^2
over 4-neighbour pairs <ij>, each counted once. E and
    G = sum_i |B'_i - 0.5| + lam * sum_<ij> (...)^2
have the same gradient almost everywhere, and G is convex in phi, so training settles at G's
minimiser.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used: the direct solver needs only BLOCK
    import torch

BLOCK = 4
LAMBDA = 12.0


def block_means(x: torch.Tensor, block: int = BLOCK) -> torch.Tensor:
    """Non-overlapping block means. x: (N, 1, H, W) -> (N, 1, H/block, W/block)."""
    import torch.nn.functional as F

    return F.avg_pool2d(x, block)


def _pair_term(b_out: torch.Tensor, b_in: torch.Tensor) -> torch.Tensor:
    d = b_out - b_in
    return (d[..., 1:, :] - d[..., :-1, :]).pow(2).sum((-1, -2, -3)) + (
        d[..., :, 1:] - d[..., :, :-1]
    ).pow(2).sum((-1, -2, -3))


def block_energy(bx: torch.Tensor, by: torch.Tensor, lam: float = LAMBDA) -> torch.Tensor:
    """E from block means of input (bx) and output (by), both (N, 1, h, w) -> (N,)."""
    import torch

    unary = (torch.sign(by - 0.5) * (by - bx)).sum((-1, -2, -3))
    return unary + lam * _pair_term(by, bx)


def block_loss(x: torch.Tensor, y: torch.Tensor, lam: float = LAMBDA) -> torch.Tensor:
    """E of the paper, per image. x, y: (N, 1, H, W) in [0, 1] -> (N,)."""
    return block_energy(block_means(x), block_means(y), lam)


def convex_loss(x: torch.Tensor, y: torch.Tensor, lam: float = LAMBDA) -> torch.Tensor:
    """G: E with the sign term replaced by |B' - 0.5|. Same shapes as `block_loss`."""
    bx, by = block_means(x), block_means(y)
    return (by - 0.5).abs().sum((-1, -2, -3)) + lam * _pair_term(by, bx)
