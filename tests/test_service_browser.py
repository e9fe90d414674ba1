"""The page in a real browser: upload, compare slider, curve tuning, downloads and errors.

Playwright drives Debian's /usr/bin/chromium (never a downloaded browser) against a uvicorn
server on loopback. Screenshots go to test-artifacts/ at the repository root.
"""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
from conftest import make_backlit
from serving import in_thread

from excnet import Curve, Restorer
from excnet.cli import main
from excnet.curve import s_curve
from excnet.imageio import decode_image, encode_image
from excnet.pipeline import gain_map
from excnet.service import Settings, create_app
from excnet.service.auth import Tokens
from excnet.tone import IMPROVED

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
LIMIT = 1_500_000
TOKEN = "page-token-0123456789"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="needs Debian's chromium (apt-get install chromium)")


@pytest.fixture(scope="module")
def server():
    with in_thread(create_app(Settings(solver="direct", max_upload_bytes=LIMIT))) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--headless", "--no-sandbox", "--disable-background-networking", "--disable-gpu",
            "--disable-component-update", "--no-first-run", "--no-proxy-server"])
        yield b
        b.close()


def canvas_pixels(page, selector: str) -> np.ndarray:
    """RGB pixels of a canvas on the page, (H, W, 3) uint8."""
    w, h, data = page.evaluate("""(sel) => {
        const c = document.querySelector(sel);
        const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        return [c.width, c.height, Array.from(d).join(",")];
    }""", selector)
    values = np.array(data.split(","), dtype=np.uint8)
    return values.reshape(h, w, 4)[..., :3]


def page_base_layer(page) -> np.ndarray:
    url = page.evaluate("() => state.estimate.preview.base")
    return decode_image(base64.b64decode(url.split(",", 1)[1])).pixels


def expected_preview(before: np.ndarray, base8: np.ndarray, curve: Curve) -> np.ndarray:
    gain = gain_map(base8.astype(np.float32), curve)
    return np.clip(np.rint(before * gain[..., None]), 0, 255).astype(np.uint8)


def set_controls(page, **values: float) -> None:
    ids = {"phi_s": "#phi-s", "phi_h": "#phi-h", "strength": "#strength",
           "highlight_scale": "#highlight"}
    for name, v in values.items():
        page.fill(ids[name], str(v))


def test_upload_tune_compare_and_download(server, browser, tmp_path):
    photo = make_backlit(240, 320, seed=5)
    path = tmp_path / "backlit.png"
    path.write_bytes(encode_image(photo, "PNG"))
    page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page.goto(server)
    page.set_input_files("#file", str(path))
    page.wait_for_selector("#result:not([hidden])")
    page.select_option("#adapt", "off")  # the curve alone (estimates again); adaptive: below
    page.wait_for_function("() => !document.getElementById('phi-text').textContent"
                           ".includes('adaptive')")
    assert "240" in page.text_content("#status") and "320" in page.text_content("#status")

    # The estimate on the page is the server's (direct solver), shown and set on the sliders.
    est, _ = Restorer("direct", adapt=False).estimate(photo)
    text = page.text_content("#phi-text")
    assert f"φs = {est.phi_s:.3f}" in text and f"φh = {est.phi_h:.3f}" in text
    assert "direct" in text and "0 iterations" in text
    assert float(page.input_value("#phi-s")) == pytest.approx(est.phi_s, abs=1e-3)

    # The restored preview is computed on the page with the method's gain, and is brighter.
    before, after = canvas_pixels(page, "#before"), canvas_pixels(page, "#after")
    base8 = page_base_layer(page)
    shown = Restorer("direct").curve_for(float(page.input_value("#phi-s")),
                                         float(page.input_value("#phi-h")))
    diff = np.abs(after.astype(int) - expected_preview(before, base8, shown))
    assert diff.max() <= 1
    dark = base8 < 60  # the back-lit subject is lifted
    assert after[dark].mean() > before[dark].mean() + 15
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "service-desktop.png"), full_page=True)

    # Identity curve: the preview equals the original, the plot is the diagonal.
    set_controls(page, phi_s=0, phi_h=0)
    assert np.array_equal(canvas_pixels(page, "#after"), before)
    points = [tuple(map(float, p.split(","))) for p in
              page.get_attribute("#curve", "d")[1:].split(" L")]
    assert all(abs((1 - y) - x) < 1e-3 for x, y in points)
    assert "φs = 0.000" in page.text_content("#phi-text")

    # A tuned curve: preview, plot and text follow at once.
    tuned = IMPROVED.curve(1.2, 0.3, strength=0.9, highlight_scale=0.5)
    set_controls(page, phi_s=1.2, phi_h=0.3, strength=0.9, highlight_scale=0.5)
    after = canvas_pixels(page, "#after")
    assert np.abs(after.astype(int) - expected_preview(before, base8, tuned)).max() <= 1
    points = [tuple(map(float, p.split(","))) for p in
              page.get_attribute("#curve", "d")[1:].split(" L")]
    for x, y in points:
        assert 1 - y == pytest.approx(float(tuned(np.float64(x))), abs=5e-4)
    assert tuned.applied[0] < 1.08  # kept monotonic: scaled down from 0.9 * 1.2
    assert tuned.second > 0  # and the rest of the shadow lift applied as a second pass
    assert not np.allclose([1 - y for _, y in points],
                           [float(s_curve(x, *tuned.applied)) for x, _ in points], atol=5e-3)
    assert (f"applied {tuned.applied[0]:.3f}, {tuned.applied[1]:.3f} then "
            f"{tuned.second:.3f}") in page.text_content("#phi-text")

    # The before/after slider moves the split.
    page.fill("#compare", "20")
    assert page.eval_on_selector("#after", "c => c.style.clipPath") == "inset(0px 0px 0px 20%)"
    assert page.eval_on_selector("#divider", "d => d.style.left") == "20%"

    # Full-resolution download: the server applies exactly the tuned curve.
    with page.expect_download() as dl:
        page.click("#download")
    out = tmp_path / dl.value.suggested_filename
    dl.value.save_as(out)
    assert out.name == "backlit.excnet.png"
    restored = decode_image(out.read_bytes()).pixels
    np.testing.assert_array_equal(restored, Restorer("direct").restore(photo, tuned).image)
    page.wait_for_function("() => document.getElementById('status').textContent"
                           ".includes('Downloaded')")

    # The saved curve is the CLI's params file and gives the same image.
    with page.expect_download() as dl:
        page.click("#save-params")
    params = tmp_path / "curve.json"
    dl.value.save_as(params)
    assert Curve.load(params) == tuned
    assert main(["restore", str(path), "-o", str(tmp_path / "cli.png"),
                 "--params", str(params)]) == 0
    np.testing.assert_array_equal(decode_image((tmp_path / "cli.png").read_bytes()).pixels,
                                  restored)
    page.close()


def test_adaptive_preview_and_download_follow_the_server(server, browser, tmp_path):
    """Adaptive on (the default): the page applies the decided exposure and amount exactly as
    the server does, in the preview and in the full-resolution download."""
    photo = (make_backlit(240, 320, seed=5) * 0.2).astype(np.uint8)  # a dark frame
    path = tmp_path / "dark.png"
    path.write_bytes(encode_image(photo, "PNG"))
    page = browser.new_page(accept_downloads=True)
    page.goto(server)
    page.set_input_files("#file", str(path))
    page.wait_for_selector("#result:not([hidden])")
    (curve, _), _ = Restorer("direct").estimate_curve(photo)
    assert curve.exposure > 1.0
    assert f"exposure +{curve.exposure:.2f} EV" in page.text_content("#phi-text")
    before, after = canvas_pixels(page, "#before"), canvas_pixels(page, "#after")
    assert np.abs(after.astype(int)
                  - expected_preview(before, page_base_layer(page), curve)).max() <= 1
    with page.expect_download() as dl:
        page.click("#download")
    out = tmp_path / dl.value.suggested_filename
    dl.value.save_as(out)
    np.testing.assert_array_equal(decode_image(out.read_bytes()).pixels,
                                  Restorer("direct").restore(photo).image)
    page.close()


def test_errors_are_shown_in_plain_words(server, browser, tmp_path):
    page = browser.new_page()
    page.goto(server)
    page.wait_for_function("() => document.getElementById('limits').textContent.includes('MB')")
    fake = tmp_path / "holiday.jpg"
    fake.write_text("this is not a photo")
    page.set_input_files("#file", str(fake))
    page.wait_for_selector("#error:not([hidden])")
    message = page.text_content("#error")
    assert "not a photo excnet can read" in message and "holiday.jpg" in message
    assert page.is_hidden("#result")

    big = tmp_path / "huge.png"
    big.write_bytes(b"\x89PNG" + bytes(LIMIT + 10))
    page.set_input_files("#file", str(big))
    page.wait_for_function("() => document.getElementById('error').textContent"
                           ".includes('too large')")
    assert str(LIMIT) in page.text_content("#error")

    # a photo that fails after a good one takes its place: no stale result to download
    good = tmp_path / "good.png"
    good.write_bytes(encode_image(make_backlit(48, 64), "PNG"))
    page.set_input_files("#file", str(good))
    page.wait_for_selector("#result:not([hidden])")
    page.set_input_files("#file", str(fake))
    page.wait_for_selector("#error:not([hidden])")
    assert page.is_hidden("#result") and page.evaluate("() => state.file") is None
    page.close()


def test_phone_layout_fits_the_screen(server, browser, tmp_path):
    path = tmp_path / "phone.jpg"
    path.write_bytes(encode_image(make_backlit(300, 200, seed=2), "JPEG", quality=90))
    page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                            is_mobile=True, has_touch=True)
    page.goto(server)
    page.set_input_files("#file", str(path))
    page.wait_for_selector("#result:not([hidden])")
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390
    viewer = page.locator(".viewer").bounding_box()
    panel = page.locator(".panel").bounding_box()
    assert panel["y"] >= viewer["y"] + viewer["height"] - 1  # stacked, not side by side
    assert viewer["width"] <= 390 and panel["width"] <= 390
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "service-phone.png"), full_page=True)
    assert page.eval_on_selector("#after", "c => [c.width, c.height]") == [200, 300]
    page.close()


def test_page_asks_for_the_token_once_and_keeps_it_for_the_tab(browser, tmp_path):
    app = create_app(Settings(solver="direct", tokens=Tokens.of([TOKEN])))
    path = tmp_path / "backlit.jpg"
    path.write_bytes(encode_image(make_backlit(120, 160, seed=4), "JPEG", quality=90))
    token_in_tab = "() => sessionStorage.getItem('excnet-token')"
    with in_thread(app) as url:
        context = browser.new_context()
        page = context.new_page()
        page.goto(url)
        page.wait_for_selector("#auth:not([hidden])")  # health says a token is needed
        assert "needs an access token" in page.text_content("#auth-message")

        # A wrong token: the server refuses the upload and the page asks again.
        page.fill("#token", "wrong-token-0123456789")
        page.click("#auth button[type=submit]")
        assert page.is_hidden("#auth")
        page.set_input_files("#file", str(path))
        page.wait_for_selector("#auth:not([hidden])")
        assert "did not accept" in page.text_content("#auth-message")
        # the dialog opens on the 401 itself; the error line follows once the body is read
        page.wait_for_function(
            "() => document.getElementById('error').textContent.includes('access token')")
        assert page.evaluate(token_in_tab) is None and page.is_hidden("#result")

        # The right token: the upload is retried with it and the photo comes back.
        page.fill("#token", TOKEN)
        page.click("#auth button[type=submit]")
        page.wait_for_selector("#result:not([hidden])")
        assert page.evaluate(token_in_tab) == TOKEN and page.is_hidden("#error")

        # Reloading the tab keeps the token: no prompt, and it is still sent.
        page.reload()
        page.wait_for_function("() => document.getElementById('limits').textContent"
                               ".includes('MB')")
        assert page.is_hidden("#auth")
        page.set_input_files("#file", str(path))
        page.wait_for_selector("#result:not([hidden])")
        with page.expect_download() as dl:
            page.click("#download")
        assert decode_image(Path(dl.value.path()).read_bytes()).pixels.shape == (120, 160, 3)

        # Another tab has its own session: it asks again.
        other = context.new_page()
        other.goto(url)
        other.wait_for_selector("#auth:not([hidden])")
        context.close()
    counts = {(s.labels["endpoint"], s.labels["status"]): s.value
              for s in app.state.metrics.requests.collect()[0].samples
              if s.name == "excnet_requests_total"}
    assert counts[("/api/v1/estimate", "401")] == 1
    assert counts[("/api/v1/estimate", "200")] == 2
    assert counts[("/api/v1/apply", "200")] == 1
