"""Band-by-band restoration: the gains looked up per band, and the banded passes, give exactly
the pixels of the whole-image computations they replace."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import make_backlit

from excnet import Curve, gainmap, strips
from excnet.base import _box_mean, fast_guided_filter, upsample
from excnet.colour import apply_gain, apply_gains, chroma_gain_map, luminance
from excnet.curve import gain_lut
from excnet.denoise import lift
from excnet.gainmap import LUT_SIZE, ChromaMap, GainMap, render


def noisy_dark(h: int = 300, w: int = 451, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = make_backlit(h, w, seed=seed).astype(np.float32) * 0.35
    return np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)


def test_bands_cover_the_image_once() -> None:
    for shape, multiple in (((1000, 333), 1), ((97, 4000), 14), ((5, 7), 3)):
        parts = strips.bands(shape, multiple=multiple)
        rows = np.concatenate([np.arange(shape[0])[p] for p in parts])
        np.testing.assert_array_equal(rows, np.arange(shape[0]))
        assert all((p.stop - p.start) % multiple == 0 for p in parts[:-1])


def test_for_each_gives_each_thread_a_run_of_neighbouring_bands() -> None:
    import os
    import threading

    parts = strips.bands((1000, 333), pixels=20 * 333)  # 50 bands
    seen: list[tuple[int, slice]] = []
    strips.for_each(lambda rows: seen.append((threading.get_ident(), rows)), parts, threads=2)
    assert sorted(r.start for _, r in seen) == [p.start for p in parts]  # each band once
    by_thread: dict[int, list[int]] = {}
    for ident, rows in seen:
        by_thread.setdefault(ident, []).append(parts.index(rows))
    assert len(by_thread) == min(2, os.cpu_count() or 1)
    for indices in by_thread.values():  # a run of neighbours, in order
        assert indices == list(range(indices[0], indices[0] + len(indices)))


def test_for_each_raises_a_helper_threads_error_and_takes_no_bands() -> None:
    parts = strips.bands((1000, 333), pixels=20 * 333)

    def work(rows: slice) -> None:
        if rows.start >= 900:  # the last run, a helper's when there are two threads
            raise MemoryError("no room")

    with pytest.raises(MemoryError, match="no room"):
        strips.for_each(work, parts, threads=2)
    strips.for_each(work, [], threads=2)  # nothing to do


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_restoring_on_two_threads_gives_the_one_thread_pixels(dtype) -> None:
    from excnet.pipeline import Restorer

    img = noisy_dark(700, 1100, seed=5).astype(dtype)
    if dtype == np.uint16:
        img = img * 257
    restorer = Restorer(denoise="strong")  # cleans from a gain of 1.41 (auto from 3.8)
    one = restorer.restore(img, threads=1)
    two = restorer.restore(img, threads=2)
    assert one.denoise["cleaned"] > 0.3  # clean lifting's per-span maps are exercised
    np.testing.assert_array_equal(two.image, one.image)
    assert not np.array_equal(one.image, img)


def test_gain_map_reads_like_the_whole_table() -> None:
    base = luminance(make_backlit(120, 160, seed=3))
    curve = Curve(0.8, 0.3, exposure=1.2, monotonic=True)
    lut = gain_lut(curve, LUT_SIZE)
    whole = lut[np.clip(np.rint(base * ((LUT_SIZE - 1) / 255.0)), 0, LUT_SIZE - 1).astype(int)]
    gains = GainMap.of(base, curve)
    np.testing.assert_array_equal(gains[...], whole)
    np.testing.assert_array_equal(gains[7:50:3, 11::5], whole[7:50:3, 11::5])
    chroma = ChromaMap.of(gains, curve)
    expected = chroma_gain_map(base, whole)
    assert np.abs(chroma[...] - expected).max() < 0.02 * whole.max()  # 8-bit factor table
    assert np.all(chroma[...] <= whole + 1e-6)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [None, 2, 3, 4])
def test_render_is_the_whole_image_application(dtype, channels) -> None:
    rgb = make_backlit(150, 260, seed=1)
    img = rgb if channels == 3 else (
        luminance(rgb).astype(np.uint8) if channels is None else
        np.dstack([luminance(rgb).astype(np.uint8), np.full(rgb.shape[:2], 200, np.uint8)])
        if channels == 2 else np.dstack([rgb, np.full(rgb.shape[:2], 99, np.uint8)]))
    if dtype == np.uint16:
        img = img.astype(np.uint16) * 257
    y = luminance(img)
    curve = Curve(0.9, 0.2, exposure=2.0, monotonic=True)
    gains = GainMap.of(y, curve)
    chroma = ChromaMap.of(gains, curve)
    g, c = gains[...], chroma[...]
    np.testing.assert_array_equal(render(img, y, gains), apply_gain(img, g))
    np.testing.assert_array_equal(render(img, y, gains, chroma), apply_gains(img, g, c, y))
    np.testing.assert_array_equal(render(img, y, g, c), apply_gains(img, g, c, y))
    if channels == 3:  # the colour gain does something here
        assert not np.array_equal(apply_gains(img, g, c, y), apply_gain(img, g))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_a_gain_within_half_a_level_of_one_leaves_the_pixels_as_they_are(dtype,
                                                                         monkeypatch) -> None:
    """render skips the band loop when every gain rounds back to the input, and gives what
    the loop gives: the input itself; a gain just outside that changes the brightest pixels."""
    top = np.iinfo(dtype).max
    img = make_backlit(90, 120, seed=2).astype(dtype) * (257 if dtype == np.uint16 else 1)
    img[0, 0] = top
    y = luminance(img)
    for step, unchanged in ((0.45, True), (0.6, False)):
        table = np.full(LUT_SIZE, 1 + step / top, np.float32)
        gains = GainMap(y, table)
        chroma = ChromaMap(gains, np.ones(256, np.float32))
        looped = apply_gains(img, gains[...], chroma[...], y)
        for out in (render(img, y, gains), render(img, y, gains, chroma),
                    render(img.copy(), y, gains, chroma, out=None)):
            np.testing.assert_array_equal(out, looped)
            assert np.array_equal(out, img) == unchanged
    # colour offsets gained differently from luma: applied, although the luma gain is 1
    gains = GainMap(y, np.ones(LUT_SIZE, np.float32))
    chroma = ChromaMap(gains, np.full(256, 0.9, np.float32))
    out = render(img, y, gains, chroma)
    np.testing.assert_array_equal(out, apply_gains(img, gains[...], chroma[...], y))
    assert not np.array_equal(out, img)

    def no_bands(*args: object) -> None:
        raise AssertionError("the band loop ran")

    monkeypatch.setattr(gainmap, "apply_band", no_bands)
    unchanged = GainMap(y, np.full(LUT_SIZE, 1 + 0.45 / top, np.float32))
    np.testing.assert_array_equal(render(img, y, unchanged), img)  # no band was applied


def test_clean_lifting_is_the_same_with_maps_or_arrays() -> None:
    img = noisy_dark()
    y = luminance(img)
    curve = Curve(0.5, 0.1, exposure=2.5, monotonic=True)
    gains = GainMap.of(y, curve)
    chroma = ChromaMap.of(gains, curve)
    g, c = gains[...], chroma[...]
    g_before, c_before = g.copy(), c.copy()
    by_map = lift(img, y, gains, "strong", chroma_gain=chroma)
    by_array = lift(img, y, g, "strong", chroma_gain=c)
    assert by_map.cleaned > 0.5  # the cleaning ran
    np.testing.assert_array_equal(by_map.image, by_array.image)
    np.testing.assert_array_equal(g, g_before)  # the caller's arrays are left alone
    np.testing.assert_array_equal(c, c_before)


def whole_image_guided_filter(y: np.ndarray, radius: int, eps: float, low: int = 8
                              ) -> np.ndarray:
    """The fast guided filter as whole-image passes (the computation before banding)."""
    s = max(1, (2 * radius + 1) // (2 * low + 1))
    r_low = max(1, round(((2 * radius + 1) / s - 1) / 2))
    h, w = y.shape
    hp, wp = -(-h // s) * s, -(-w // s) * s
    img = cv2.copyMakeBorder(y, 0, hp - h, 0, wp - w, cv2.BORDER_REPLICATE)
    size = (wp // s, hp // s)
    mean_y = cv2.resize(img, size, interpolation=cv2.INTER_AREA).astype(np.float64)
    mean_yy = cv2.resize(cv2.multiply(img, img), size, interpolation=cv2.INTER_AREA)
    mean = _box_mean(mean_y, r_low)
    var = _box_mean(mean_yy.astype(np.float64), r_low) - mean * mean
    a = var / (var + eps)
    b = mean - a * mean
    a, b = _box_mean(a, r_low).astype(np.float32), _box_mean(b, r_low).astype(np.float32)
    full = (a.shape[1] * s, a.shape[0] * s)
    q = cv2.resize(a, full, interpolation=cv2.INTER_LINEAR)[:h, :w] * y
    return q + cv2.resize(b, full, interpolation=cv2.INTER_LINEAR)[:h, :w]


@pytest.mark.parametrize("shape", [(301, 457), (1200, 1601), (2000, 700)])
def test_banded_guided_filter_is_the_whole_image_one(shape) -> None:
    rng = np.random.default_rng(2)
    y = cv2.GaussianBlur((rng.random(shape) * 255).astype(np.float32), (0, 0), 2)
    radius = int(0.04 * min(shape))
    np.testing.assert_array_equal(fast_guided_filter(y, radius, 3200.0),
                                  whole_image_guided_filter(y, radius, 3200.0))


def test_upsample_of_a_region_is_that_region_of_the_whole() -> None:
    grid = np.random.default_rng(4).random((9, 13)).astype(np.float32)
    whole = cv2.resize(grid, (13 * 7, 9 * 7), interpolation=cv2.INTER_LINEAR)
    for rows, cols in ((slice(0, 63), slice(0, 91)), (slice(5, 40), slice(30, 31)),
                       (slice(62, 63), slice(3, 90))):
        np.testing.assert_array_equal(upsample(grid, 7, rows, cols), whole[rows, cols])


@pytest.mark.parametrize("width", [451, 2100])
def test_clean_lifting_does_not_depend_on_the_band_size(monkeypatch, width) -> None:
    """Cleaning is decided per block of 64 rows; bands of any size must give the same pixels
    (a band spanning two blocks once took the first block's columns for both)."""
    img = noisy_dark(256, width, seed=3)
    yy, xx = np.mgrid[0:256, 0:width]
    img[xx > yy * width / 256] = 225  # dark only below a diagonal: each block's span differs
    y = luminance(img)
    curve = Curve(0.5, 0.1, exposure=2.5, monotonic=True)
    gains = GainMap.of(y, curve)
    chroma = ChromaMap.of(gains, curve)
    outs = []
    for pixels in (1 << 10, 1 << 16, 1 << 22):
        monkeypatch.setattr(gainmap, "BAND_PIXELS", pixels)
        lifted = lift(img, y, gains, "auto", chroma_gain=chroma)
        assert 0.2 < lifted.cleaned < 1.0  # some blocks cleaned, not all
        outs.append(lifted.image)
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])


@pytest.mark.parametrize("denoise", ["off", "auto"])
def test_restoring_in_place_gives_the_same_pixels(denoise) -> None:
    from excnet import Restorer

    img = noisy_dark(240, 320, seed=5)
    r = Restorer(denoise=denoise)
    copy = img.copy()
    expected = r.restore(img).image
    np.testing.assert_array_equal(img, copy)  # the default leaves the input alone
    res = r.restore(img, in_place=True)
    assert res.image is img
    np.testing.assert_array_equal(img, expected)
    frozen = copy.copy()
    frozen.setflags(write=False)  # a read-only input is copied, not written
    np.testing.assert_array_equal(r.restore(frozen, in_place=True).image, expected)
    np.testing.assert_array_equal(frozen, copy)
