"""The S-curve f(x; phi_s, phi_h) and the Curve parameters: known values, controls, persistence."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from excnet.colour import linear_to_srgb
from excnet.curve import (
    FAITHFUL_HIGHLIGHT_SCALE,
    Curve,
    expose,
    f_delta,
    gain_lut,
    monotonic_limit,
    s_curve,
)

# f_delta(1) = 5 exp(-14): the curve's ends move by phi times this, not exactly zero.
F_DELTA_AT_1 = 5 * math.exp(-14)


def test_f_delta_peak_location_and_value():
    # d/dx [x exp(-k2 x^k3)] = 0  <=>  k2 k3 x^k3 = 1  <=>  x = (1 / 22.4) ** (1 / 1.6) = 0.14325
    # value there: 5 * 0.14325 * exp(-1 / 1.6) = 0.38338
    x = np.linspace(0, 1, 100_001)
    y = f_delta(x)
    assert x[np.argmax(y)] == pytest.approx(0.14325, abs=1e-5)
    assert y.max() == pytest.approx(0.38338, abs=1e-5)
    assert float(f_delta(np.float64(0.143))) == pytest.approx(0.383, abs=1e-3)


@pytest.mark.parametrize(
    "x, expected",
    [
        # 5 * x * exp(-14 * x ** 1.6), worked out with a calculator
        (0.0, 0.0),
        (0.1, 0.351758),  # 0.5 * exp(-14 * 0.025119) = 0.5 * 0.703516
        (0.25, 0.272445),  # 1.25 * exp(-14 * 0.108819) = 1.25 * 0.217956
        (0.5, 0.0246745),  # 2.5 * exp(-14 * 0.329877) = 2.5 * 0.0098698
        (0.75, 0.000545591),
        (1.0, F_DELTA_AT_1),
    ],
)
def test_f_delta_hand_values(x, expected):
    assert float(f_delta(np.float64(x))) == pytest.approx(expected, rel=1e-5, abs=1e-12)


def test_s_curve_hand_values():
    # f(0.25; 0.5, 0.3) = 0.25 + 0.5 * f_delta(0.25) - 0.3 * f_delta(0.75)
    #                   = 0.25 + 0.136222 - 0.000164 = 0.386059
    assert float(s_curve(np.float64(0.25), 0.5, 0.3)) == pytest.approx(0.386059, abs=1e-6)
    # f(0.8; 0.5, 0.3) = 0.8 + 0.5 * f_delta(0.8) - 0.3 * f_delta(0.2) = 0.696801
    assert float(s_curve(np.float64(0.8), 0.5, 0.3)) == pytest.approx(0.696801, abs=1e-6)


def test_identity_at_phi_zero():
    x = np.linspace(0, 1, 1001)
    np.testing.assert_array_equal(s_curve(x, 0.0, 0.0), x)


@pytest.mark.parametrize("phi_s, phi_h", [(0.0, 0.0), (0.8, 0.0), (0.0, 1.5), (-0.3, 2.0), (3, -1)])
def test_end_points_fixed(phi_s, phi_h):
    # f(0) = -phi_h f_delta(1) and f(1) = 1 + phi_s f_delta(1): fixed up to 4.2e-6 * |phi|
    assert float(s_curve(np.float64(0.0), phi_s, phi_h)) == pytest.approx(
        -phi_h * F_DELTA_AT_1, abs=1e-15)
    assert float(s_curve(np.float64(1.0), phi_s, phi_h)) == pytest.approx(
        1 + phi_s * F_DELTA_AT_1, abs=1e-15)
    assert abs(float(s_curve(np.float64(0.0), phi_s, phi_h))) < 1e-5
    assert abs(float(s_curve(np.float64(1.0), phi_s, phi_h)) - 1) < 2e-5


def test_shadows_lifted_and_highlights_pulled():
    assert float(s_curve(np.float64(0.15), 0.5, 0.0)) > 0.15 + 0.18
    assert float(s_curve(np.float64(0.85), 0.0, 0.5)) < 0.85 - 0.18


def test_numpy_and_torch_agree():
    x = np.linspace(0, 1, 257)
    from_np = s_curve(x, 0.7, 0.4)
    from_torch = s_curve(torch.from_numpy(x), 0.7, 0.4)
    assert isinstance(from_torch, torch.Tensor)
    np.testing.assert_allclose(from_torch.numpy(), from_np, rtol=0, atol=1e-12)


def test_curve_applied_combines_strength_and_highlight_scale():
    c = Curve(0.8, 0.5, strength=0.5, highlight_scale=0.4)
    assert c.applied == pytest.approx((0.4, 0.1))  # (0.5 * 0.8, 0.4 * 0.5 * 0.5)
    x = np.linspace(0, 1, 101)
    np.testing.assert_allclose(c(x), s_curve(x, 0.4, 0.1), rtol=0, atol=1e-15)


def test_curve_defaults_follow_the_reference():
    c = Curve(1.0, 1.0)
    assert c.strength == 1.0
    assert c.highlight_scale == FAITHFUL_HIGHLIGHT_SCALE == 0.2
    assert c.applied == pytest.approx((1.0, 0.2))


def test_curve_strength_zero_is_identity():
    x = np.linspace(0, 1, 101)
    np.testing.assert_array_equal(Curve(0.9, 0.7, strength=0.0)(x), x)


def test_curve_save_load_round_trip(tmp_path):
    c = Curve(0.123456789012345, -0.0987654321, strength=0.75, highlight_scale=0.35,
              exposure=2.345678901, amount=0.456789)
    path = tmp_path / "curve.json"
    c.save(path)
    data = json.loads(path.read_text())
    assert data == {"phi_s": c.phi_s, "phi_h": c.phi_h, "strength": 0.75,
                    "highlight_scale": 0.35, "monotonic": False,
                    "exposure": 2.345678901, "amount": 0.456789, "second_pass": False}
    assert Curve.load(path) == c
    assert Curve.from_dict(c.to_dict()) == c
    x = np.linspace(0, 1, 257)
    np.testing.assert_array_equal(Curve.load(path)(x), c(x))


def test_curve_saved_before_the_adaptive_fields_renders_as_before(tmp_path):
    """A 0.1 file has no exposure/amount: it loads as the plain curve, pixel for pixel."""
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"phi_s": 0.8, "phi_h": 0.4, "strength": 0.9,
                                "highlight_scale": 0.5, "monotonic": True}))
    c = Curve.load(path)
    assert (c.exposure, c.amount) == (0.0, 1.0)
    x = np.linspace(0, 1, 1001)
    a_s, a_h = monotonic_limit(0.9 * 0.8, 0.5 * 0.9 * 0.4)
    np.testing.assert_array_equal(c(x), s_curve(x, a_s, a_h))


def test_exposure_lifts_linear_light_and_rolls_the_highlights_onto_white():
    x = np.linspace(0, 1, 2001)
    y = expose(x, 2.0)
    assert np.all(np.diff(y) >= 0) and y[-1] == pytest.approx(1.0, abs=1e-12)
    assert np.all(np.diff(y[y < 0.999]) > 0)  # increasing until the roll-off meets white
    # 2 EV is 4x in linear light where no roll-off applies (linear 0.05 -> 0.2)
    lo = linear_to_srgb(0.05)
    np.testing.assert_allclose(expose(np.array([lo]), 2.0), linear_to_srgb(0.2), rtol=1e-12)
    assert expose(x, 0.0) is x
    c = Curve(0.3, 0.1, exposure=1.5, amount=0.5, strength=2.0, monotonic=True)
    assert c.applied_exposure == 3.0
    assert c.applied == monotonic_limit(2.0 * 0.5 * 0.3, 0.2 * 2.0 * 0.5 * 0.1)
    np.testing.assert_allclose(c(x), s_curve(expose(x, 3.0), *c.applied))


@pytest.mark.parametrize("stops", [1e-4, 0.01, 0.1])
def test_a_small_exposure_changes_every_level_a_little(stops):
    """Continuous in the exposure: white stays white and no level moves by more than the
    exposure's own gain would move it (a tiny exposure once dimmed white by 10 levels)."""
    x = np.linspace(0, 1, 4097)
    moved = np.abs(expose(x, stops) - x).max() * 255
    assert moved <= (2.0**stops - 1) * 255 + 1e-9
    assert expose(np.array([1.0]), stops)[0] == pytest.approx(1.0, abs=1e-12)


def test_curve_from_dict_fills_defaults():
    c = Curve.from_dict({"phi_s": 0.5, "phi_h": 0.25})
    assert c == Curve(0.5, 0.25, 1.0, FAITHFUL_HIGHLIGHT_SCALE)


@pytest.mark.parametrize("field", ["phi_s", "phi_h", "strength", "highlight_scale"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_curve_rejects_non_finite(field, bad):
    values = {"phi_s": 0.5, "phi_h": 0.5, "strength": 1.0, "highlight_scale": 0.2}
    values[field] = bad
    with pytest.raises(ValueError, match=field):
        Curve(**values)


@pytest.mark.parametrize(
    "data",
    [{}, {"phi_s": 0.5}, {"phi_h": 0.5}, {"phi_s": "abc", "phi_h": 0.1},
     {"phi_s": None, "phi_h": 0.1}, [0.5, 0.5], 3, "phi", None,
     {"phi_s": "nan", "phi_h": 0.1}],
)
def test_curve_from_dict_rejects_bad_data(data):
    with pytest.raises(ValueError, match="curve|phi_s"):
        Curve.from_dict(data)


@pytest.mark.parametrize("flag", ["false", 0, None, "yes"])
def test_curve_from_dict_takes_monotonic_only_as_a_json_bool(flag):
    with pytest.raises(ValueError, match="monotonic must be true or false"):
        Curve.from_dict({"phi_s": 0.5, "phi_h": 0.1, "monotonic": flag})
    assert Curve.from_dict({"phi_s": 0.5, "phi_h": 0.1, "monotonic": True}).monotonic is True


def test_an_absurd_exposure_is_refused_and_a_huge_product_is_clamped():
    with pytest.raises(ValueError, match="within ±64 EV"):
        Curve(0.5, 0.1, exposure=2000.0)
    x = np.linspace(0, 1, 11, dtype=np.float32)
    # strength times a valid exposure may still be absurd: black or white, never an overflow
    white = Curve(0.0, 0.0, strength=1e300, exposure=4.0)(x)
    black = Curve(0.0, 0.0, strength=1e300, exposure=-4.0)(x)
    assert np.all(white[1:] > 0.999) and white[0] == 0
    assert np.all(black[:-1] < 1e-3)


@pytest.mark.parametrize("text", ["", "{not json", "[1, 2]", '{"phi_s": 1}'])
def test_curve_load_rejects_bad_files(tmp_path, text):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ValueError):
        Curve.load(path)


def test_curve_load_missing_file_names_it(tmp_path):
    path = tmp_path / "nowhere.json"
    with pytest.raises(ValueError, match="nowhere.json"):
        Curve.load(path)


def test_gain_lut_matches_the_curve():
    c = Curve(0.9, 0.6)
    lut = gain_lut(c, size=11)
    b = np.linspace(0, 1, 11)
    np.testing.assert_allclose(lut, (c(b) + 1e-5) / (b + 1e-5), rtol=1e-6)
    assert lut.dtype == np.float32


def test_the_second_pass_gives_the_withheld_shadow_lift_and_keeps_the_order():
    x = np.linspace(0, 1, 4097)
    # phi_s 0.9 folds the curve over: limited to about 0.63, the rest applied as a second pass
    c = Curve(0.9, 0.3, highlight_scale=0.5, monotonic=True, second_pass=True)
    one = replace(c, second_pass=False)
    a_s, a_h = c.applied
    assert a_s < 0.9 and c.second == pytest.approx(monotonic_limit(0.9 - a_s, 0.0)[0])
    np.testing.assert_allclose(c(x), s_curve(s_curve(x, a_s, a_h), c.second, 0.0))
    assert np.all(np.diff(c(x)) >= -1e-9)  # still non-decreasing (as one pass: to 1e-10)
    shadows = (x > 0.01) & (x < 0.3)
    assert np.all(c(x)[shadows] > one(x)[shadows])  # lifted further than one limited pass
    # the deepest shadows as far as the folded curve lifts them, at least
    folded = s_curve(x, 0.9, 0.5 * 0.3)
    deep = (x > 0.002) & (x < 0.05)
    assert np.all(c(x)[deep] >= folded[deep])
    assert abs(c(1.0) - 1.0) < 1e-3  # white stays white
    # nothing withheld, nothing added: a curve within the limit renders as one pass
    small = Curve(0.4, 0.2, monotonic=True, second_pass=True)
    assert small.second == 0.0
    np.testing.assert_array_equal(small(x), replace(small, second_pass=False)(x))
    # without monotonic (the paper's rendering) there is no second pass
    assert Curve(0.9, 0.3, second_pass=True).second == 0.0


def test_the_default_tone_renders_with_the_second_pass():
    from excnet.tone import FAITHFUL, IMPROVED

    assert IMPROVED.curve(0.9, 0.3).second_pass and IMPROVED.curve(0.9, 0.3).second > 0
    assert not FAITHFUL.curve(0.9, 0.3).second_pass
