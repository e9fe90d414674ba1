"""The REST API through an HTTP client: results equal the library's, every limit and bad input."""

from __future__ import annotations

import base64
import json
import threading
import warnings

import numpy as np
import pytest
from conftest import make_backlit
from test_adapt import silhouette

from excnet import Curve, Restorer
from excnet.cli import main
from excnet.imageio import decode_image, encode_image
from excnet.service import Settings, create_app

with warnings.catch_warnings():  # starlette nags about httpx vs httpx2; httpx is what we have
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

API = "/api/v1"


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return make_backlit(96, 128, seed=3)


@pytest.fixture(scope="module")
def png(photo) -> bytes:
    return encode_image(photo, "PNG")


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(Settings(solver="direct", max_upload_bytes=300_000,
                                        max_pixels=200_000))) as c:
        yield c


def upload(data: bytes, name: str = "photo.png", kind: str = "image/png") -> dict:
    return {"file": (name, data, kind)}


def error_of(r) -> dict:
    assert r.headers["content-type"] == "application/json"
    body = r.json()["error"]
    assert body["code"] and body["message"]
    return body


# --------------------------------------------------------------------------- results


def test_health_reports_limits_and_pool(client):
    body = client.get(f"{API}/health").json()
    assert body["status"] == "ok"
    assert body["limits"] == {"max_upload_bytes": 300_000, "max_pixels": 200_000}
    assert body["pool"]["workers"] == 2 and body["pool"]["queue"] == 8
    assert body["default_solver"] == "direct"


def test_restore_returns_the_library_result_with_the_curve_in_headers(client, photo, png):
    r = client.post(f"{API}/restore", files=upload(png))
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert 'filename="photo.excnet.png"' in r.headers["content-disposition"]
    expected = Restorer("direct").restore(photo)
    got = decode_image(r.content).pixels
    np.testing.assert_array_equal(got, expected.image)
    assert float(r.headers["x-excnet-phi-s"]) == expected.curve.phi_s
    assert float(r.headers["x-excnet-phi-h"]) == expected.curve.phi_h
    assert Curve.from_dict(json.loads(r.headers["x-excnet-curve"])) == expected.curve
    assert r.headers["x-excnet-needs-correction"] == str(expected.needs_correction).lower()
    assert float(r.headers["x-excnet-mean-gain"]) == expected.mean_gain
    # adapt off: the curve alone, which lifts this (mildly) back-lit subject
    r = client.post(f"{API}/restore", files=upload(png), data={"adapt": "off"})
    got = decode_image(r.content).pixels
    np.testing.assert_array_equal(got, Restorer("direct", adapt=False).restore(photo).image)
    dark = photo.mean(axis=2) < 60
    assert got[dark].mean() > photo[dark].mean() + 10  # the back-lit subject was lifted


def test_restore_json_variant_and_controls(client, photo, png):
    r = client.post(f"{API}/restore?response=json", files=upload(png),
                    data={"strength": "0.5", "highlight_scale": "0.6", "format": "tiff",
                          "adapt": "off"})
    assert r.status_code == 200
    body = r.json()
    assert body["needs_correction"] in (True, False) and body["mean_gain"] > 1.0
    assert body["curve"]["strength"] == 0.5 and body["curve"]["highlight_scale"] == 0.6
    assert body["format"] == "TIFF" and body["filename"] == "photo.excnet.tif"
    curve = Curve.from_dict(body["curve"])
    assert body["applied"]["phi_h"] == pytest.approx(0.6 * 0.5 * curve.phi_h)
    got = decode_image(base64.b64decode(body["image_base64"])).pixels
    np.testing.assert_array_equal(got, Restorer("direct").restore(photo, curve).image)


def test_estimate_returns_phi_and_a_preview_with_its_base_layer(client, photo, png):
    r = client.post(f"{API}/estimate?preview=64", files=upload(png))
    assert r.status_code == 200
    body = r.json()
    (curve, est), base = Restorer("direct").estimate_curve(photo)
    assert body["curve"] == curve.to_dict()
    assert (body["curve"]["exposure"], body["curve"]["amount"]) == (curve.exposure, curve.amount)
    # the curve restore applies, highlights held as restore holds them on a back-lit photo
    lit = silhouette()
    held = client.post(f"{API}/estimate", files=upload(encode_image(lit, "PNG"))).json()
    restored = Restorer("direct").restore(lit).curve
    assert restored.amount > 0.5 and Curve.from_dict(held["curve"]) == restored
    assert (body["width"], body["height"], body["format"]) == (128, 96, "PNG")
    prev = body["preview"]
    assert (prev["width"], prev["height"]) == (64, 48)
    img = decode_image(base64.b64decode(prev["image"].split(",", 1)[1])).pixels
    b8 = decode_image(base64.b64decode(prev["base"].split(",", 1)[1])).pixels
    assert img.shape == (48, 64, 3) and b8.shape == (48, 64) and b8.dtype == np.uint8
    # The preview's base is the full image's base layer, downscaled 2x2 -> 1.
    coarse = base.reshape(48, 2, 64, 2).mean(axis=(1, 3))
    assert np.abs(b8.astype(float) - coarse).max() <= 1.0
    assert client.post(f"{API}/estimate", files=upload(png)).json()["preview"] is None


def test_apply_uses_the_given_curve_and_the_saved_file_works_with_the_cli(
        client, photo, png, tmp_path):
    tuned = Curve(0.7, 0.3, strength=0.8, highlight_scale=0.5, monotonic=True, exposure=0.5,
                  amount=0.9, second_pass=True)
    fields = {k: str(v) for k, v in tuned.to_dict().items()
              if k not in ("monotonic", "second_pass")}  # the server's rendering's
    r = client.post(f"{API}/apply", files=upload(png), data=fields)
    assert r.status_code == 200 and r.headers["x-excnet-iterations"] == "0"
    api_pixels = decode_image(r.content).pixels
    np.testing.assert_array_equal(api_pixels, Restorer("direct").restore(photo, tuned).image)
    # The same curve as a params file: through the API and through `excnet restore --params`.
    r2 = client.post(f"{API}/apply", files=upload(png),
                     data={"params": json.dumps(tuned.to_dict())})
    np.testing.assert_array_equal(decode_image(r2.content).pixels, api_pixels)
    (tmp_path / "in.png").write_bytes(png)
    (tmp_path / "curve.json").write_text(json.dumps(tuned.to_dict()))
    assert main(["restore", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"),
                 "--params", str(tmp_path / "curve.json")]) == 0
    np.testing.assert_array_equal(decode_image((tmp_path / "out.png").read_bytes()).pixels,
                                  api_pixels)


def test_apply_takes_the_recorded_exposure_and_amount_as_the_cli_does(client, png, tmp_path):
    fields = {"phi_s": "0.7", "phi_h": "0.3", "exposure": "1.5", "amount": "0.6"}
    r = client.post(f"{API}/apply?response=json", files=upload(png), data=fields)
    assert r.status_code == 200
    body = r.json()
    assert (body["curve"]["exposure"], body["curve"]["amount"]) == (1.5, 0.6)
    assert (body["exposure"], body["amount"]) == (1.5, 0.6)  # as the CLI's --json records
    api_pixels = decode_image(base64.b64decode(body["image_base64"])).pixels
    (tmp_path / "in.png").write_bytes(png)
    assert main(["restore", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"),
                 "--phi-s", "0.7", "--phi-h", "0.3", "--exposure", "1.5",
                 "--amount", "0.6"]) == 0
    np.testing.assert_array_equal(decode_image((tmp_path / "out.png").read_bytes()).pixels,
                                  api_pixels)
    # amount also replaces a saved curve's; exposure goes with phi_s/phi_h only (as the CLI)
    saved = json.dumps({**Curve.from_dict(body["curve"]).to_dict(), "amount": 1.0})
    r = client.post(f"{API}/apply", files=upload(png), data={"params": saved, "amount": "0.6"})
    np.testing.assert_array_equal(decode_image(r.content).pixels, api_pixels)
    r = client.post(f"{API}/apply", files=upload(png), data={"params": saved, "exposure": "1"})
    assert r.status_code == 422 and "not both" in error_of(r)["message"]
    r = client.post(f"{API}/restore", files=upload(png), data={"amount": "0.5"})
    assert r.status_code == 422 and "amount" in error_of(r)["message"]


def test_restore_with_given_phi_skips_estimation(client, photo, png):
    r = client.post(f"{API}/restore", files=upload(png), data={"phi_s": "0.4"})
    assert r.status_code == 200
    assert float(r.headers["x-excnet-phi-s"]) == 0.4 and float(r.headers["x-excnet-phi-h"]) == 0
    np.testing.assert_array_equal(decode_image(r.content).pixels,
                                  Restorer("direct").restore(photo, Curve(0.4, 0.0)).image)


def test_content_is_checked_by_decoding_not_by_name(client, png):
    r = client.post(f"{API}/estimate", files=upload(png, "notes.txt", "text/plain"))
    assert r.status_code == 200 and r.json()["format"] == "PNG"


def test_each_worker_keeps_a_warm_restorer():
    built: list[Restorer] = []

    def factory(solver: str) -> Restorer:
        built.append(Restorer(solver, max_iters=2))
        return built[-1]

    data = encode_image(make_backlit(64, 64, seed=1), "PNG")
    with TestClient(create_app(Settings(workers=1), make_restorer=factory)) as c:
        for _ in range(3):
            assert c.post(f"{API}/estimate", files=upload(data),
                          data={"solver": "excnet"}).status_code == 200
    assert len(built) == 1 and built[0].network.images_seen == 3


# --------------------------------------------------------------------------- limits and bad input


def test_upload_over_the_byte_limit_is_413(client):
    big = encode_image(np.random.default_rng(0).integers(0, 255, (400, 400, 3), np.uint8), "PNG")
    assert len(big) > 300_000
    r = client.post(f"{API}/restore", files=upload(big))
    assert r.status_code == 413 and error_of(r)["code"] == "too_large"


def test_chunked_upload_over_the_limit_is_cut_off_with_413(client):
    def chunks():
        for _ in range(50):
            yield b"x" * 10_000

    r = client.post(f"{API}/restore", content=chunks(),
                    headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413 and error_of(r)["code"] == "too_large"


def test_image_over_the_pixel_limit_is_413(client):
    data = encode_image(np.zeros((500, 500), np.uint8), "PNG")  # small file, 250 000 pixels
    r = client.post(f"{API}/estimate", files=upload(data))
    assert r.status_code == 413
    body = error_of(r)
    assert body["code"] == "too_many_pixels" and "200000" in body["message"]


@pytest.mark.parametrize("data, name, status, code", [
    (b"just some text", "photo.jpg", 415, "unsupported_type"),
    (b"GIF89a" + bytes(40), "anim.gif", 415, "unsupported_type"),
    (b"", "empty.png", 400, "empty_file"),
])
def test_not_an_image(client, data, name, status, code):
    r = client.post(f"{API}/restore", files=upload(data, name))
    assert r.status_code == status
    body = error_of(r)
    assert body["code"] == code and name in body["message"]


def test_truncated_image_is_422(client, png):
    r = client.post(f"{API}/restore", files=upload(png[: len(png) // 2], "cut.png"))
    assert r.status_code == 422
    assert error_of(r)["code"] == "bad_image" and "cut.png" in error_of(r)["message"]


@pytest.mark.parametrize("path, fields, needle", [
    ("restore", {"strength": "nan"}, "strength"),
    ("restore", {"strength": "strong"}, "strength"),
    ("restore", {"phi_s": "1", "params": "{}"}, "not both"),
    ("restore", {"quality": "0"}, "quality"),
    ("restore", {"solver": "magic"}, "solver"),
    ("restore", {"format": "bmp"}, "format"),
    ("apply", {}, "phi_s"),
    ("apply", {"params": "{not json"}, "curve"),
    ("apply", {"params": '{"phi_s": 1}'}, "phi_h"),
    ("apply", {"phi_s": "inf"}, "phi_s"),
    ("apply", {"params": '{"phi_s": 0.5, "phi_h": 0, "exposure": 2000}'}, "within ±64 EV"),
    ("restore", {"amount": "0.5"}, "amount goes with"),
    ("estimate?preview=99999", {}, "preview"),
    ("restore?response=xml", {}, "response"),
])
def test_bad_parameters_are_422_with_a_message(client, png, path, fields, needle):
    r = client.post(f"{API}/{path}", files=upload(png), data=fields)
    assert r.status_code == 422
    assert needle in error_of(r)["message"]


def test_missing_file_and_unknown_routes(client):
    r = client.post(f"{API}/restore", data={"strength": "1"})
    assert r.status_code == 422 and "field 'file'" in error_of(r)["message"]
    assert client.get(f"{API}/nothing").status_code == 404
    assert error_of(client.get(f"{API}/restore"))["code"] == "method_not_allowed"


@pytest.mark.parametrize("path, fields, needle", [
    ("restore", {"strenght": "0.5"}, "unknown form field 'strenght'"),   # a typo
    ("restore", {"faithful": "true"}, "unknown form field 'faithful'"),  # not an API option
    ("apply", {"phi_s": "0.5", "adapt": "off"}, "unknown form field 'adapt'"),
    ("estimate", {"format": "png"}, "unknown form field 'format'"),
    ("restore?format=png", {}, "unknown query parameter 'format'"),  # a form field, misplaced
    ("estimate?preveiw=64", {}, "unknown query parameter 'preveiw'"),
])
def test_unknown_or_misplaced_options_are_refused_not_ignored(client, png, path, fields, needle):
    r = client.post(f"{API}/{path}", files=upload(png), data=fields)
    assert r.status_code == 422
    message = error_of(r)["message"]
    assert needle in message and "file" in message  # and it names what the endpoint takes


def test_the_photo_must_be_one_file_in_a_multipart_form(client, png):
    r = client.post(f"{API}/restore", files={"image": ("a.png", png, "image/png")})
    assert r.status_code == 422 and "unknown form field 'image'" in error_of(r)["message"]
    r = client.post(f"{API}/restore", files=[("file", ("a.png", png, "image/png")),
                                             ("file", ("b.png", png, "image/png"))])
    assert r.status_code == 422 and "one photo per request" in error_of(r)["message"]
    r = client.post(f"{API}/restore", files={"file": (None, "a.png")})  # a text field
    assert r.status_code == 422 and "must be a file upload" in error_of(r)["message"]
    for kind in ("image/png", "application/json", None):
        headers = {"content-type": kind} if kind else {}
        r = client.post(f"{API}/restore", content=png, headers=headers)
        assert r.status_code == 415
        body = error_of(r)
        assert body["code"] == "not_multipart" and "multipart/form-data" in body["message"]


def test_nothing_is_left_on_disk(png, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    noisy = np.random.default_rng(1).integers(0, 255, (700, 700, 3), np.uint8)
    big = encode_image(noisy, "PNG")  # > 1 MB: the multipart parser spools it to a temp file
    assert len(big) > 1_100_000
    with TestClient(create_app(Settings(solver="direct"))) as c:
        assert c.post(f"{API}/restore", files=upload(big)).status_code == 200
        assert c.post(f"{API}/restore", files=upload(big[:-5000])).status_code == 422
        assert c.post(f"{API}/estimate", files=upload(png)).status_code == 200
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- concurrency


class BlockingRestorer(Restorer):
    """A direct restorer whose estimate waits for a gate: holds a worker as long as we like."""

    def __init__(self, gate: threading.Event, started: threading.Event) -> None:
        super().__init__("direct")
        self.gate, self.started = gate, started

    def estimate_curve(self, image):
        self.started.set()
        assert self.gate.wait(20)
        return super().estimate_curve(image)


def test_a_busy_pool_answers_503_with_retry_after_and_the_loop_stays_free(png):
    gate, started = threading.Event(), threading.Event()
    app = create_app(Settings(workers=1, queue=0),
                     make_restorer=lambda _s: BlockingRestorer(gate, started))
    with TestClient(app) as c:
        first: dict = {}
        t = threading.Thread(target=lambda: first.update(
            r=c.post(f"{API}/estimate", files=upload(png))))
        t.start()
        try:
            assert started.wait(20)
            # The worker is stuck, the event loop is not: health answers at once.
            health = c.get(f"{API}/health").json()
            assert health["pool"]["running"] == 1 and health["pool"]["admitted"] == 1
            r = c.post(f"{API}/estimate", files=upload(png))
            assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
            assert error_of(r)["code"] == "busy"
            assert "r" not in first  # the first request is still waiting for the gate
        finally:
            gate.set()
            t.join(30)
        assert first["r"].status_code == 200
        assert c.get(f"{API}/health").json()["pool"]["rejected"] == 1


# --------------------------------------------------------------------------- page, docs, CLI


def test_page_and_openapi_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="before"' in page.text and "app.js" in page.text
    js = client.get("/static/app.js")
    assert js.status_code == 200 and "fDelta" in js.text
    paths = client.get(f"{API}/openapi.json").json()["paths"]
    assert {f"{API}/{p}" for p in ("restore", "estimate", "apply", "health")} <= set(paths)
    assert client.get("/api/docs").status_code == 200


def test_serve_rejects_bad_options_and_a_busy_port(capsys):
    assert main(["serve", "--workers", "0"]) == 2
    assert "--workers" in capsys.readouterr().err
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("excnet: cannot listen on 127.0.0.1:") and len(err.splitlines()) == 1


def test_settings_reject_an_unknown_solver():
    with pytest.raises(ValueError):
        create_app(Settings(solver="magic"))
