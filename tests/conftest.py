"""Shared test fixtures: small synthetic back-lit images made on the fly (no files, no network)."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def make_backlit(h: int = 192, w: int = 256, seed: int = 0, dtype=np.uint8,
                 subject: tuple[float, float] = (0.6, 0.5), stops: float = 3.0) -> np.ndarray:
    """A textured RGB scene, darkened by `stops` inside a soft ellipse and brightened outside.

    Done in linear light, then back to sRGB; deterministic for a seed.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    texture = 0.5 + 0.2 * np.sin(17 * xx + 3 * seed) * np.cos(11 * yy) + 0.05 * rng.standard_normal(
        (h, w))
    tint = np.array([1.0, 0.85, 0.7]) if seed % 2 else np.array([0.7, 0.9, 1.0])
    lin = np.clip(texture[..., None] * tint, 0, 1) ** 2.2
    cy, cx = subject[0] * h / max(h, w), subject[1] * w / max(h, w)
    mask = np.exp(-(((yy - cy) / 0.25) ** 2 + ((xx - cx) / 0.2) ** 2))[..., None]
    lin = lin * (mask * 2.0 ** -stops + (1 - mask) * 2.0)
    srgb = np.clip(lin, 0, 1) ** (1 / 2.2)
    top = np.iinfo(dtype).max
    return np.round(srgb * top).astype(dtype)


@pytest.fixture
def backlit() -> np.ndarray:
    return make_backlit()


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module that trains the small network: it gains nothing from
    more, and on a busy 2-core machine two spinning threads per process slow it down tenfold.
    (Bit-for-bit determinism also needs a fixed count.)"""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
