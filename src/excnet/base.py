"""Luminance to base layer to network input: the smooth layer the curve is fitted to and applied on.

Base layer: the self-guided filter of He et al. (guide = input = Y) with radius
r = int(0.04 * min(H, W)) and eps = 800 on the 0..255 scale. The network (and the loss) see the
base layer scaled to [0, 1] and resized to 128 x 128.
"""

from __future__ import annotations

import cv2
import numpy as np

EPS = 800.0
RADIUS_FRACTION = 0.04
INPUT_SIZE = 128


def radius_for(shape: tuple[int, ...]) -> int:
    """Guided-filter radius of the method: 4 % of the short side."""
    return int(RADIUS_FRACTION * min(shape[0], shape[1]))


def _box_mean(img: np.ndarray, r: int) -> np.ndarray:
    """Mean over the (2r+1)^2 window clipped to the image, as in He's reference code."""
    k = (2 * r + 1, 2 * r + 1)
    total = cv2.boxFilter(img, -1, k, normalize=False, borderType=cv2.BORDER_CONSTANT)
    ones = np.ones(img.shape[:2], img.dtype)
    count = cv2.boxFilter(ones, -1, k, normalize=False, borderType=cv2.BORDER_CONSTANT)
    return total / count


def guided_filter(y: np.ndarray, radius: int, eps: float = EPS) -> np.ndarray:
    """Exact self-guided filter of a 2-D float array (float64 internally). Returns float32."""
    if radius < 1:
        return y.astype(np.float32)
    img = y.astype(np.float64)
    mean = _box_mean(img, radius)
    var = _box_mean(img * img, radius) - mean * mean
    a = var / (var + eps)
    b = mean - a * mean
    return (_box_mean(a, radius) * img + _box_mean(b, radius)).astype(np.float32)


def base_layer(y: np.ndarray) -> np.ndarray:
    """The method's base layer of luminance y (H, W) on 0..255 -> float32 (H, W) on 0..255."""
    return guided_filter(y, radius_for(y.shape))


def network_input(base: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """Base layer (H, W) on 0..255 -> float32 (size, size) in [0, 1].

    Area averaging when shrinking (plain bilinear would alias a 12 MP image down to a few
    sampled pixels), bilinear when enlarging.
    """
    h, w = base.shape
    interp = cv2.INTER_AREA if h >= size and w >= size else cv2.INTER_LINEAR
    x = cv2.resize(base.astype(np.float32, copy=False), (size, size), interpolation=interp)
    return np.clip(x / 255.0, 0.0, 1.0)
