"""Rendering options for the estimated curve: each does what its docstring claims."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_backlit

from excnet import Curve, Restorer, s_curve, tone
from excnet.base import network_input
from excnet.colour import luminance, srgb_to_linear
from excnet.curve import monotonic_limit
from excnet.pipeline import gain_map
from excnet.solvers import solve_direct


@pytest.mark.parametrize("options", [tone.FAITHFUL, tone.IMPROVED, tone.ToneOptions(
    chroma="linear", clip="hue", monotonic="scale", eps=1600.0, highlight_scale=0.3)])
def test_the_pipeline_renders_as_the_tone_options_say(options) -> None:
    img = make_backlit(96, 128, seed=2)
    base = tone.base_for(luminance(img), options)
    est = solve_direct(network_input(base))
    curve = options.curve(est.phi_s, est.phi_h)
    out = tone.apply_tone_gain(img, tone.gain_for(base, curve, options), options, base)
    ref = Restorer(solver="direct", tone=options, exact=True, adapt=False,
                   denoise="off").restore(img)
    assert ref.curve == curve
    np.testing.assert_array_equal(out, ref.image)


def test_faithful_flag_and_default() -> None:
    assert Restorer(faithful=True).tone == tone.FAITHFUL
    assert Restorer().tone == tone.IMPROVED
    assert Restorer().curve_for(1.0, 1.0).monotonic
    assert not Restorer(faithful=True).curve_for(1.0, 1.0).monotonic


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="chroma"):
        tone.ToneOptions(chroma="vivid")
    with pytest.raises(ValueError, match="monotonic"):
        tone.ToneOptions(monotonic="yes")


@pytest.mark.parametrize("phi", [(1.2, 0.0), (0.9, 0.9), (2.0, -0.5), (0.0, 1.5)])
def test_monotonic_limit_makes_the_curve_non_decreasing(phi) -> None:
    x = np.linspace(0, 1, 2001)
    assert np.diff(s_curve(x, *phi)).min() < 0  # the cases really are non-monotonic
    limited = monotonic_limit(*phi)
    assert np.diff(s_curve(x, *limited)).min() >= -1e-6
    t = limited[0] / phi[0] if phi[0] else limited[1] / phi[1]
    assert 0 < t < 1 and limited == pytest.approx((t * phi[0], t * phi[1]))


def test_monotonic_limit_leaves_monotonic_curves_alone() -> None:
    assert monotonic_limit(0.4, 0.3) == (0.4, 0.3)
    assert monotonic_limit(1.0, 0.0)[0] == pytest.approx(1 / 1.575, abs=2e-3)


def test_monotone_envelope_is_the_running_maximum() -> None:
    b = np.linspace(0, 1, 500)
    env = tone.monotone_envelope(b, 1.5, 0.3)
    f = s_curve(b, 1.5, 0.3)
    assert np.diff(env).min() >= 0
    assert np.all(env >= f - 1e-4)
    assert env[10] == pytest.approx(f[10], abs=1e-4)  # equal before the first dip


def test_gain_for_monotonic_modes_change_only_non_monotonic_curves() -> None:
    base = np.linspace(0, 255, 64, dtype=np.float32).reshape(8, 8)
    mild = Curve(0.3, 0.2)
    for mode in ("scale", "envelope"):
        opts = tone.ToneOptions(monotonic=mode)
        np.testing.assert_allclose(tone.gain_for(base, mild, opts),
                                   tone.gain_for(base, mild), rtol=1e-5)
        strong = Curve(1.5, 0.5)
        lifted = tone.gain_for(base, strong, opts) * (base / 255 + 1e-5)
        assert np.diff(lifted.ravel()).min() >= -1e-5


def test_scale_linear_keeps_linear_chromaticity_and_grey_luma() -> None:
    rgb = np.array([[[0.02, 0.05, 0.01], [0.2, 0.1, 0.05], [0.3, 0.3, 0.3]]])
    gain = np.array([[4.0, 2.0, 2.5]])
    out = tone.scale_linear(rgb, gain)
    ratio_in = srgb_to_linear(rgb) / srgb_to_linear(rgb).sum(-1, keepdims=True)
    ratio_out = srgb_to_linear(out) / srgb_to_linear(out).sum(-1, keepdims=True)
    np.testing.assert_allclose(ratio_out, ratio_in, rtol=1e-9)
    np.testing.assert_allclose(out[0, 2], 0.75, rtol=1e-9)  # grey: luma lands at gain * Y
    # The faithful gamma-space gain over-saturates the deep shadow pixel; this one does not.
    faithful = tone.scale_gamma(rgb, gain)
    sat = srgb_to_linear(faithful[0, 0]).max() / srgb_to_linear(faithful[0, 0]).min()
    assert sat > 1.2 * ratio_in[0, 0].max() / ratio_in[0, 0].min()


def test_scale_damped_limits() -> None:
    rgb = np.random.default_rng(0).uniform(0, 0.3, (4, 5, 3))
    gain = np.full((4, 5), 2.5)
    np.testing.assert_allclose(tone.scale_damped(rgb, gain, 0.0), tone.scale_gamma(rgb, gain))
    y = rgb @ np.array([0.299, 0.587, 0.114])
    out = tone.scale_damped(rgb, gain, 1.0)
    np.testing.assert_allclose(out - (gain * y)[..., None], rgb - y[..., None], atol=1e-12)


def test_preserve_hue_clip_keeps_luma_and_hue_direction() -> None:
    rgb = np.array([[[1.6, 0.8, 0.2], [0.5, 0.4, 0.3], [2.0, 2.0, 2.0]]])
    out = tone.preserve_hue_clip(rgb)
    assert out.min() >= 0 and out.max() <= 1
    np.testing.assert_array_equal(out[0, 1], rgb[0, 1])  # in range: untouched
    assert out[0, 0].max() == pytest.approx(1.0)
    w = np.array([0.299, 0.587, 0.114])
    y = rgb[0, 0] @ w
    assert out[0, 0] @ w == pytest.approx(y)
    chroma_in, chroma_out = rgb[0, 0] - y, out[0, 0] - y
    np.testing.assert_allclose(chroma_out / chroma_in, chroma_out[0] / chroma_in[0])
    np.testing.assert_allclose(out[0, 2], 1.0)


@pytest.mark.parametrize("channels", [None, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_apply_tone_gain_keeps_shape_dtype_and_alpha(channels, dtype) -> None:
    img = make_backlit(32, 40, dtype=dtype)
    if channels is None:
        img = img[..., 0]
    elif channels == 2:
        img = np.dstack([img[..., 0], np.full(img.shape[:2], 7, dtype)])
    elif channels == 4:
        img = np.dstack([img, np.full(img.shape[:2], 7, dtype)])
    gain = np.full(img.shape[:2], 1.8, np.float32)
    opts = tone.ToneOptions(chroma="linear", clip="hue")
    out = tone.apply_tone_gain(img, gain, opts)
    assert out.shape == img.shape and out.dtype == img.dtype
    if channels in (2, 4):
        np.testing.assert_array_equal(out[..., -1], img[..., -1])
    assert out.astype(float).mean() > img.astype(float).mean()


def test_limited_curve_renders_like_gain_for() -> None:
    base = np.linspace(0, 255, 64, dtype=np.float32).reshape(8, 8)
    curve = Curve(1.4, 0.6, strength=0.9, highlight_scale=0.5)
    opts = tone.ToneOptions(monotonic="scale")
    limited = tone.limited_curve(curve, opts)
    assert limited.applied == pytest.approx(monotonic_limit(*curve.applied))
    np.testing.assert_allclose(gain_map(base, limited), tone.gain_for(base, curve, opts),
                               rtol=1e-6)
    assert tone.limited_curve(curve) is curve


def test_improved_default_brightens_shadows() -> None:
    img = make_backlit(96, 128, seed=1)
    res = Restorer(adapt=False).restore(img)
    out, curve = res.image, res.curve
    dark = img.mean(axis=2) < 40
    assert out[dark].mean() > img[dark].mean() + 10
    assert curve.highlight_scale == 0.5


def test_given_curve_is_one_rule_for_cli_and_service() -> None:
    from dataclasses import replace

    from excnet.tone import FAITHFUL, IMPROVED, BothGiven, given_curve

    def never() -> Curve:
        raise AssertionError("the saved curve must not be read when both are given")

    with pytest.raises(BothGiven):
        given_curve(never, 0.5, None, IMPROVED)
    with pytest.raises(BothGiven):
        given_curve(never, None, None, IMPROVED, exposure=1.0)
    assert given_curve(None, None, None, IMPROVED) is None
    saved = Curve(0.3, 0.1, 0.7, 0.4, exposure=1.5, amount=0.5)
    assert given_curve(lambda: saved, None, None, IMPROVED) is saved
    manual = given_curve(None, 0.6, None, IMPROVED, exposure=0.75)
    assert manual == replace(IMPROVED.curve(0.6, 0.0), exposure=0.75)
    assert given_curve(None, 0.6, 0.2, FAITHFUL) == FAITHFUL.curve(0.6, 0.2)
