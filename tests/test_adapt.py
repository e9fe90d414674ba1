"""The adaptive default: much correction where it is needed, little or none where it is not."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from conftest import make_backlit

from excnet import Curve, Restorer, adapt
from excnet.base import fast_base_layer, network_input
from excnet.batch import restore_file
from excnet.colour import apply_gain, exposure_chroma, linear_to_srgb, luminance, srgb_to_linear
from excnet.gainmap import GainMap
from excnet.imageio import read_image, write_image
from excnet.solvers import solve_direct
from excnet.temporal import TemporalGuide
from excnet.tone import IMPROVED


def scene(h: int = 120, w: int = 160, seed: int = 0) -> np.ndarray:
    """Linear-light RGB (H, W, 3): an ordinary well-exposed scene, textured, tones from deep
    shadow to near-white (sRGB ~0.15 .. 0.95, median about mid-grey)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    srgb = (0.55 + 0.3 * np.sin(9 * xx + seed) * np.cos(7 * yy) + 0.1 * np.sin(40 * xx * yy)
            + 0.02 * rng.standard_normal((h, w)))
    tint = np.array([1.0, 0.95, 0.85])
    return srgb_to_linear(np.clip(srgb[..., None] * tint, 0, 1))


def encode(lin: np.ndarray) -> np.ndarray:
    return np.rint(linear_to_srgb(np.clip(lin, 0, 1)) * 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def low_key(h: int = 120, w: int = 160) -> np.ndarray:
    """A lit subject (ellipse, ordinary exposure) on a near-black background with no detail."""
    lin = scene(h, w, seed=3)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    inside = (((yy - 0.37) / 0.2) ** 2 + ((xx - 0.5) / 0.16) ** 2) < 1
    return encode(np.where(inside[..., None], lin, 0.0005))


def test_a_very_dark_frame_gets_a_strong_lift() -> None:
    lin = scene()
    img = encode(lin * 2.0**-4)
    res = Restorer().restore(img)
    assert res.curve.exposure > 2.5  # most of the 4 EV come back
    assert res.needs_correction and res.mean_gain > 2.5
    assert luminance(res.image).mean() > 3 * luminance(img).mean()
    # much closer to the scene than the input (and than the 0.1 default, which cannot lift
    # this far without folding its curve)
    truth = encode(lin)
    assert psnr(res.image, truth) > psnr(img, truth) + 10
    assert psnr(res.image, truth) > psnr(Restorer(adapt=False).restore(img).image, truth) + 3


def test_a_slightly_dark_photo_gets_a_gentle_lift() -> None:
    lin = scene()
    img = encode(lin * 2.0**-1)
    res = Restorer().restore(img)
    assert 0.1 < res.curve.exposure < 1.0  # some of the 1 EV, not more
    assert res.needs_correction and 1.05 < res.mean_gain < 2.0
    truth = encode(lin)
    assert psnr(res.image, truth) > psnr(img, truth) + 1


def test_a_well_exposed_photo_is_left_alone() -> None:
    img = encode(scene())
    res = Restorer().restore(img)
    # no exposure, and at most a trace of the curve (its shadows are not a subject's)
    assert res.curve.exposure == 0.0 and res.curve.amount < 0.01
    assert not res.needs_correction and res.mean_gain == pytest.approx(1.0, abs=1e-3)
    assert psnr(res.image, img) > 45
    # the 0.1 default pulled every block toward mid-grey and changed it visibly
    assert psnr(Restorer(adapt=False).restore(img).image, img) < 35


def test_a_low_key_photo_stays_dark() -> None:
    img = low_key()
    res = Restorer().restore(img)
    assert res.curve.exposure < 0.1 and res.curve.amount < 0.1
    assert not res.needs_correction
    assert psnr(res.image, img) > 40
    background = luminance(img) < 5
    assert luminance(res.image)[background].mean() < 3


def test_a_back_lit_photo_gets_the_excnet_curve() -> None:
    # bright sky above (1.5 EV up, clipping), a subject below in its shadow (3 EV down)
    lin = scene(seed=1)
    lin[:50] *= 2.0**1.5
    lin[50:] *= 2.0**-3
    img = encode(lin)
    res = Restorer().restore(img)
    assert res.curve.amount > 0.5 and res.curve.exposure < 0.1
    assert res.needs_correction
    dark = luminance(img) < 40
    assert luminance(res.image)[dark].mean() > luminance(img)[dark].mean() + 15
    # phi is ExCNet's fixed point on the (barely) exposed input
    x = network_input(fast_base_layer(luminance(img), IMPROVED.eps))
    _, exposed = adapt.decide(x)
    est = solve_direct(exposed)
    assert (res.curve.phi_s, res.curve.phi_h) == (est.phi_s, est.phi_h)


def test_a_dark_frame_is_not_taken_for_back_lit_by_its_own_lifted_highlights() -> None:
    # a whole scene about 4 EV down: a sky (a third of the frame) over darker ground
    x = np.full((128, 128), 0.06, np.float32)
    x[:43] = 0.3
    decision, exposed = adapt.decide(x)
    assert decision.exposure > 2.5
    # exposed, the sky is bright and the ground dim, as in a back-lit photo ...
    assert adapt.decide_amount(exposed) == 1.0
    # ... but as shot nothing is bright: no S-curve, only the exposure
    assert decision.amount == 0.0


def test_the_exposure_follows_the_stops_not_the_smoothing() -> None:
    # a scene with a few bright patches (lamps, windows) about the size of the filter radius
    lin = scene(240, 320, seed=3) * 0.5
    rng = np.random.default_rng(1)
    for _ in range(8):
        r, c = rng.integers(10, 230), rng.integers(10, 310)
        lin[r - 5:r + 5, c - 5:c + 5] = 0.9
    restorer = Restorer()

    def headroom(x: np.ndarray) -> float:
        return adapt._stops(adapt.HIGH_TARGET, float(np.percentile(x, 99.5)))

    plain, levelled = [], []
    for stops in range(6):
        img = encode(lin * 2.0**-stops)
        y = luminance(img)
        plain.append(headroom(network_input(fast_base_layer(y, IMPROVED.eps))) - stops)
        levels = restorer.levels(y)
        levelled.append(headroom(levels) - stops)
        assert restorer.restore(img).curve.exposure == adapt.decide_exposure(levels)
    # the base layer smooths a dark frame's highlights away: more headroom the darker it is
    assert plain[5] - plain[0] > 0.35
    # the levels the rule reads do not drift so
    assert max(levelled) - min(levelled) < 0.25


def test_strength_scales_the_adaptive_result() -> None:
    img = encode(scene() * 2.0**-3)
    full = Restorer().restore(img)
    half = Restorer(strength=0.5).restore(img)
    assert half.curve.exposure == full.curve.exposure
    assert half.curve.applied_exposure == pytest.approx(0.5 * full.curve.exposure)
    assert 1.0 < half.mean_gain < full.mean_gain
    # applying the saved curve reproduces the result exactly
    again = Restorer().restore(img, Curve.from_dict(full.curve.to_dict()))
    np.testing.assert_array_equal(again.image, full.image)


def test_adapt_off_applies_the_plain_estimated_curve() -> None:
    """adapt off + the faithful chroma step + denoise off: ExCNet's phi for the image as shot,
    all of it, kept monotonic with its second pass, pixel for pixel."""
    img = make_backlit(96, 128, seed=1)
    res = Restorer(adapt=False, denoise="off", tone=replace(IMPROVED, chroma="faithful")
                   ).restore(img)
    r = Restorer()
    base = fast_base_layer(luminance(img), IMPROVED.eps)
    est = solve_direct(network_input(base))
    curve = Curve(est.phi_s, est.phi_h, 1.0, 0.5, monotonic=True, second_pass=True)
    assert res.curve == curve
    np.testing.assert_array_equal(res.image, apply_gain(img, GainMap.of(base, curve)[...]))
    assert r.adapt and not Restorer(faithful=True).adapt


@pytest.mark.parametrize("denoise", ["off", "auto"])
def test_a_deep_lift_keeps_the_colour_of_a_longer_exposure(denoise: str) -> None:
    """Lifting a frame 4 EV under brings its colours back as saturated as the scene, not more:
    the encoded gain alone (0.1's chroma step) overshoots in the sRGB toe."""
    lin = scene() * np.array([1.0, 0.7, 0.45])  # warm: clearly coloured
    truth, img = encode(lin), encode(lin * 2.0**-4)
    res = Restorer(denoise=denoise).restore(img)
    old = Restorer(denoise=denoise, tone=replace(IMPROVED, chroma="faithful")).restore(img)
    assert res.curve == old.curve

    def saturation(a: np.ndarray) -> float:  # mean (max - min) / max of the encoded channels
        a = a.astype(float)
        return float(np.mean((a.max(-1) - a.min(-1)) / np.maximum(a.max(-1), 1)))

    assert saturation(old.image) > saturation(truth) + 0.1  # the overshoot being fixed
    assert abs(saturation(res.image) - saturation(truth)) < 0.04
    assert psnr(res.image, truth) > psnr(old.image, truth) + 1
    # the luma is the same either way: only the colour offsets are scaled
    diff = luminance(res.image).mean() - luminance(old.image).mean()
    assert abs(diff) < 1.0


def test_the_colour_gain_is_the_exposure_slope() -> None:
    """colour.exposure_chroma: 1 without a lift, and the slope of a real exposure otherwise
    (finite differences of enc(F dec(v)) at the luma)."""
    b = np.array([0.005, 0.02, 0.1, 0.4])
    g = np.array([16.0, 6.0, 3.0, 1.5])
    factor = exposure_chroma(b, g)
    F = srgb_to_linear(g * b) / srgb_to_linear(b)
    h = 1e-4
    slope = (linear_to_srgb(srgb_to_linear(b + h) * F)
             - linear_to_srgb(srgb_to_linear(b - h) * F)) / (2 * h)
    np.testing.assert_allclose(factor, slope / g, rtol=1e-3)
    assert np.all(factor < 1)
    assert exposure_chroma(np.array([0.3]), np.array([1.0]))[0] == pytest.approx(1.0, abs=1e-12)


def test_faithful_stays_the_paper_bit_for_bit() -> None:
    """--faithful: eps 800, the raw phi, 0.2 phi_h, no monotonic limit, no adaptive step."""
    for img in (make_backlit(96, 128, seed=0), encode(scene() * 2.0**-4)):
        res = Restorer(faithful=True).restore(img)
        base = fast_base_layer(luminance(img), 800.0)
        est = solve_direct(network_input(base))
        curve = Curve(est.phi_s, est.phi_h, 1.0, 0.2, monotonic=False)
        assert res.curve == curve and (res.curve.exposure, res.curve.amount) == (0.0, 1.0)
        np.testing.assert_array_equal(res.image, apply_gain(img, GainMap.of(base, curve)[...]))


def test_report_fields_in_the_batch_record(tmp_path) -> None:
    dark = tmp_path / "dark.png"
    good = tmp_path / "good.png"
    write_image(dark, encode(scene() * 2.0**-4))
    write_image(good, encode(scene()))
    r = Restorer()
    recs = {p.stem: restore_file(r, p, tmp_path / f"{p.stem}.out.png") for p in (dark, good)}
    assert recs["dark"]["needs_correction"] is True and recs["dark"]["mean_gain"] > 2.5
    assert recs["dark"]["exposure"] > 2.5 and 0 <= recs["dark"]["amount"] <= 1
    assert recs["good"]["needs_correction"] is False
    assert recs["good"]["mean_gain"] == pytest.approx(1.0, abs=1e-3)
    res = r.restore(read_image(dark).pixels)
    assert recs["dark"]["mean_gain"] == res.mean_gain
    assert recs["dark"]["exposure"] == res.curve.exposure


def test_decision_pieces() -> None:
    assert adapt.soft_dead_zone(-1.0) == 0.0
    assert adapt.soft_dead_zone(2 * adapt.DEAD_ZONE) == pytest.approx(adapt.DEAD_ZONE)
    # the hedge falls from DEAD_ZONE to DEEP_HEDGE as the deficit grows to DEEP_FROM
    mid = (2 * adapt.DEAD_ZONE + adapt.DEEP_FROM) / 2
    assert adapt.soft_dead_zone(mid) == pytest.approx(
        mid - (adapt.DEAD_ZONE + adapt.DEEP_HEDGE) / 2)
    deep = adapt.DEEP_FROM + 1.5
    assert adapt.soft_dead_zone(deep) == pytest.approx(deep - adapt.DEEP_HEDGE)
    # continuous and increasing, never steeper than 1.25
    grid = np.linspace(0.0, 7.0, 7001)
    steps = np.diff([adapt.soft_dead_zone(e) for e in grid])
    assert np.all(steps > 0) and steps.max() <= 1.25 * (grid[1] - grid[0]) + 1e-12
    flat = np.full((128, 128), 0.5, np.float32)
    assert adapt.decide_amount(flat) == 0.0
    half = flat.copy()
    half[:64] = 0.95  # bright sky
    half[64:] = 0.15  # dim subject with the same area
    assert adapt.decide_amount(half) == 1.0
    assert adapt.decide_exposure(flat) == 0.0
    assert adapt.decide_exposure(flat * 0.1) > 2.0


def test_video_smooths_the_decision_like_phi() -> None:
    """A jump in the decided exposure is followed smoothly (time constant tau), not in one
    frame; a cut resets it at once."""
    targets = iter([(0.5, 0.2, 0.0, 1.0)] + [(0.5, 0.2, 2.0, 0.5)] * 40)
    guide = TemporalGuide(lambda x, fresh: next(targets), every=1, tau=0.5,
                          cut_threshold=math.inf)
    x = np.full((128, 128), 0.3, np.float32)
    steps = [guide.step(x, i / 30) for i in range(31)]
    assert (steps[0].exposure, steps[0].amount) == (0.0, 1.0)
    a = 1 - math.exp(-(1 / 30) / 0.5)
    assert steps[1].exposure == pytest.approx(2.0 * a)
    assert steps[1].amount == pytest.approx(1.0 - 0.5 * a)
    assert np.all(np.diff([s.exposure for s in steps]) > 0)  # a glide, no step
    assert steps[30].exposure == pytest.approx(2.0 * (1 - (1 - a) ** 30))
    # a cut jumps straight to the new decision
    cut = TemporalGuide(lambda x, fresh: (0.5, 0.2, 3.0 if fresh else 0.0, 0.0), every=1)
    cut.step(x, 0.0)
    step = cut.step(x * 3, 1 / 30)
    assert step.cut and step.exposure == 3.0


def test_a_video_frame_levels_are_made_only_when_estimated() -> None:
    made, seen = [], []
    guide = TemporalGuide(lambda x, fresh, levels: seen.append(levels) or (0.5, 0.2, 1.0, 0.0),
                          every=3, tau=0.5, cut_threshold=math.inf)
    x = np.full((128, 128), 0.3, np.float32)
    for i in range(7):
        guide.step(x, i / 30, lambda i=i: made.append(i) or np.full((128, 128), i, np.float32))
    assert made == [0, 3, 6]  # the first frame, then every third
    assert [float(v[0, 0]) for v in seen] == [0.0, 3.0, 6.0]


def test_percentiles_are_numpys() -> None:
    """adapt's quantiles (np.partition, no numpy.ma import) are np.percentile's, bit for bit."""
    rng = np.random.default_rng(5)
    for n in (1, 2, 7, 128 * 128):
        x = (rng.random(n) ** rng.uniform(0.3, 4)).astype(np.float32)
        for qs in ((99.5, 50.0), (0.0, 100.0), (12.5,)):
            assert adapt._percentiles(x, qs) == list(np.percentile(x, qs))


def silhouette(h: int = 180, w: int = 240, sky: float = 0.05, haze: float = 0.2,
               seed: int = 5) -> np.ndarray:
    """A textured subject in shadow (sRGB about 0.08-0.2) under a bright sky strip (the top
    `sky` of the frame, sRGB about 0.9) and a hazy distance (`haze`, about 0.6): a skyline or
    people seen against the sky."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    ground = 0.14 + 0.05 * np.sin(25 * xx) * np.cos(19 * yy) + 0.01 * rng.standard_normal((h, w))
    row = np.arange(h)[:, None]
    srgb = np.where(row < sky * h, 0.92 - 0.05 * yy,
                    np.where(row < (sky + haze) * h, 0.6 + 0.03 * np.sin(30 * xx), ground))
    return np.rint(np.clip(srgb[..., None] * np.array([0.95, 1.0, 1.05]), 0, 1)
                   * 255).astype(np.uint8)


def test_a_silhouette_against_a_small_bright_sky_is_lifted_and_the_sky_held() -> None:
    img = silhouette()
    x = network_input(fast_base_layer(luminance(img), IMPROVED.eps))
    # by its areas alone (a sky of 5 %) it would count as barely back-lit ...
    assert adapt.decide(x)[0].amount < 0.5
    res = Restorer().restore(img)
    # ... but the loss pulls the sky down: the bright background is there, and it is lifted
    assert res.curve.amount > 0.5 and res.curve.exposure == 0.0 and res.needs_correction
    y_in, y_out = luminance(img), luminance(res.image)
    shadow, sky = y_in < 60, y_in > 200
    assert y_out[shadow].mean() > y_in[shadow].mean() + 20  # the subject comes up
    # the highlights are held: less of the pull than the tone's scale, the sky nearly as shot
    assert res.curve.highlight_scale < IMPROVED.highlight_scale
    moved = abs(y_out[sky].mean() - y_in[sky].mean())
    assert moved < 0.06 * 255  # a sky at 0.9 sits where the pull is strongest
    unheld = Restorer(highlight_scale=IMPROVED.highlight_scale).restore(img)
    assert abs(luminance(unheld.image)[sky].mean() - y_in[sky].mean()) > 1.5 * moved


def test_a_low_key_portrait_on_black_is_not_lifted() -> None:
    # a lit face (an ellipse, highlights near white) on a black ground with a little noise
    h, w = 180, 240
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    face = (((yy - 0.35) / 0.25) ** 2 + ((xx - 0.5) / 0.16) ** 2) < 1
    srgb = np.where(face, 0.55 + 0.35 * np.cos(6 * xx) * np.cos(5 * yy), 0.015)
    srgb = srgb + 0.004 * rng.standard_normal((h, w))
    img = np.rint(np.clip(srgb[..., None] * np.array([1.0, 0.85, 0.75]), 0, 1)
                  * 255).astype(np.uint8)
    res = Restorer().restore(img)
    assert res.curve.exposure == 0.0 and res.curve.amount == 0.0
    assert not res.needs_correction
    background = ~face
    assert abs(luminance(res.image)[background].mean() - luminance(img)[background].mean()) < 1
    assert psnr(res.image, img) > 45


def dusk(h: int = 180, w: int = 240, band: tuple[float, float] = (0.4, 0.5), spot: bool = False,
         seed: int = 8) -> np.ndarray:
    """A dim textured scene (sRGB about 0.05-0.15: clouds, buildings, water) with one bright
    part (about 0.55): a sunset band from edge to edge at rows `band`, or with `spot` an
    ellipse in the middle, enclosed by the dim scene (a spotlit subject)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    dim = 0.09 + 0.04 * np.sin(23 * xx) * np.cos(17 * yy) + 0.01 * rng.standard_normal((h, w))
    if spot:
        bright = (((yy - 0.37) / 0.15) ** 2 + ((xx - 0.5) / 0.12) ** 2) < 1
    else:
        row = np.arange(h)[:, None] / h
        bright = np.broadcast_to((row >= band[0]) & (row < band[1]), (h, w))
    srgb = np.where(bright, 0.55 + 0.03 * np.sin(30 * xx), dim)
    return np.rint(np.clip(srgb[..., None] * np.array([1.05, 0.95, 0.8]), 0, 1)
                   * 255).astype(np.uint8)


def test_a_dusk_skyline_is_back_lit_by_its_band_of_sunset() -> None:
    # nothing is bright in absolute terms (the band sits at 0.55), but the band is the
    # frame's bright part and spans it edge to edge: the background, with a dim subject
    img = dusk()
    res = Restorer().restore(img)
    assert res.curve.amount > 0.5 and res.curve.exposure == 0.0 and res.needs_correction
    y_in, y_out = luminance(img), luminance(res.image)
    shadow, band = y_in < 40, y_in > 120
    assert y_out[shadow].mean() > y_in[shadow].mean() + 15  # the skyline comes up
    assert abs(y_out[band].mean() - y_in[band].mean()) < 0.06 * 255  # the sunset stays


def test_a_spotlit_subject_in_a_dim_scene_is_not_lifted() -> None:
    # the same levels, the bright part enclosed by the dim scene: a low-key photo
    img = dusk(spot=True)
    res = Restorer().restore(img)
    assert res.curve.amount < 0.1 and res.curve.exposure < 0.1
    assert not res.needs_correction
    assert psnr(res.image, img) > 40


def test_background_is_the_bright_part_touching_the_border() -> None:
    x = np.full((128, 128), 0.1, np.float32)
    x[40:60, :] = 0.6  # a band from edge to edge: 20 rows of 128
    assert adapt.background(x) == pytest.approx(20 / 128)
    x = np.full((128, 128), 0.1, np.float32)
    x[40:60, 40:60] = 0.6  # enclosed
    assert adapt.background(x) == 0.0
    assert adapt.background(np.zeros((128, 128), np.float32)) == 0.0
