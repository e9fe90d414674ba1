"""Running the service: bearer tokens, Prometheus metrics, the request log, readiness."""

from __future__ import annotations

import json
import logging
import warnings

import numpy as np
import pytest
from conftest import make_backlit
from prometheus_client.parser import text_string_to_metric_families

from excnet import Restorer
from excnet.cli import main
from excnet.imageio import encode_image
from excnet.service import Settings, create_app
from excnet.service.auth import TokenError, Tokens, is_loopback, read_token_file
from excnet.service.logs import ERROR_LOGGER, LOGGER, JsonFormatter, TextFormatter

with warnings.catch_warnings():  # starlette nags about httpx vs httpx2; httpx is what we have
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

API = "/api/v1"
TOKEN, OTHER, METRICS_TOKEN = "token-one-0123456789", "token-two-0123456789", "scrape-0123456789"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def png() -> bytes:
    return encode_image(make_backlit(60, 80, seed=2), "PNG")


def upload(data: bytes, name: str = "photo.png") -> dict:
    return {"file": (name, data, "image/png")}


def metric_samples(text: str) -> dict[tuple, float]:
    """{(sample name, sorted labels...): value} from a Prometheus text page."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, *sorted(s.labels.items()))] = s.value
    return out


# --------------------------------------------------------------------------- authentication


@pytest.fixture(scope="module")
def secured():
    settings = Settings(solver="direct", tokens=Tokens.of([TOKEN, OTHER]))
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.mark.parametrize("headers, message", [
    ({}, "needs a token"),
    (bearer("wrong-token-0123456789"), "not valid"),
    (bearer(TOKEN[:-1]), "not valid"),          # a prefix of a token
    (bearer(TOKEN + "x"), "not valid"),         # a token and more
    ({"Authorization": f"Basic {TOKEN}"}, "not valid"),
    ({"Authorization": "Bearer"}, "not valid"),
])
def test_api_calls_without_a_valid_token_are_401_with_a_json_body(secured, png, headers,
                                                                  message):
    for path in ("restore", "estimate", "apply"):
        r = secured.post(f"{API}/{path}", files=upload(png), headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.headers["content-type"] == "application/json"
        assert r.json()["error"]["code"] == "unauthorized"
        assert message in r.json()["error"]["message"]
    assert secured.get(f"{API}/nothing", headers=headers).status_code == 401


def test_every_token_of_the_set_is_accepted(secured, png):
    for token in (TOKEN, OTHER):
        r = secured.post(f"{API}/restore", files=upload(png), headers=bearer(token))
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    # The scheme is case-insensitive, as HTTP says.
    r = secured.post(f"{API}/estimate", files=upload(png),
                     headers={"Authorization": f"bearer {TOKEN}"})
    assert r.status_code == 200


def test_liveness_readiness_page_and_schema_stay_open(secured):
    health = secured.get(f"{API}/health")
    assert health.status_code == 200 and health.json()["auth"] is True
    assert secured.get(f"{API}/ready").json() == {"status": "ready"}
    assert secured.get(f"{API}/openapi.json").status_code == 200
    assert secured.get("/").status_code == 200 and 'id="auth"' in secured.get("/").text
    assert secured.get("/static/app.js").status_code == 200


def test_metrics_take_the_api_token_or_a_separate_one():
    with TestClient(create_app(Settings(tokens=Tokens.of([TOKEN])))) as c:
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers=bearer(TOKEN)).status_code == 200
    settings = Settings(tokens=Tokens.of([TOKEN]), metrics_tokens=Tokens.of([METRICS_TOKEN]))
    with TestClient(create_app(settings)) as c:
        assert c.get("/metrics", headers=bearer(TOKEN)).status_code == 401
        assert c.get("/metrics", headers=bearer(METRICS_TOKEN)).status_code == 200
        assert c.get(f"{API}/health").status_code == 200
    with TestClient(create_app(Settings(metrics_tokens=Tokens.of([METRICS_TOKEN])))) as c:
        assert c.get("/metrics").status_code == 401  # the API is open, the metrics are not
        assert c.get(f"{API}/health").json()["auth"] is False


def test_tokens_from_a_file_and_bad_tokens(tmp_path):
    path = tmp_path / "tokens"
    path.write_text(f"# deploy tokens\n{TOKEN}\n\n  {OTHER}  \n")
    assert read_token_file(path) == [TOKEN, OTHER]
    tokens = Tokens.of(read_token_file(path))
    assert tokens.accepts(f"Bearer {OTHER}".encode()) and not tokens.accepts(b"Bearer x")
    assert not Tokens.of([]) and not Tokens().accepts(b"Bearer ")
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(TokenError, match="has no token"):
        read_token_file(tmp_path / "empty")
    with pytest.raises(TokenError, match="cannot read"):
        read_token_file(tmp_path / "missing")
    with pytest.raises(TokenError, match="at least 16"):
        Tokens.of(["short"])
    with pytest.raises(TokenError, match="without spaces"):
        Tokens.of(["a token with spaces in it"])


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("::", False), ("192.168.1.5", False),
    ("example.org", False),
])
def test_loopback_addresses(host, loopback):
    assert is_loopback(host) is loopback


def test_serve_refuses_a_network_address_without_a_token(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("EXCNET_TOKEN", raising=False)
    for host in ("0.0.0.0", "::", "192.168.1.5"):
        assert main(["serve", "--host", host, "--port", "0"]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1
        assert f"refusing to serve on {host}" in err and "--token" in err and "--no-auth" in err
    assert main(["serve", "--no-auth", "--token", TOKEN]) == 2
    assert "--no-auth" in capsys.readouterr().err
    assert main(["serve", "--host", "0.0.0.0", "--token", "short"]) == 2
    assert "at least 16" in capsys.readouterr().err
    assert main(["serve", "--host", "0.0.0.0", "--token-file", str(tmp_path / "none")]) == 2
    assert "cannot read token file" in capsys.readouterr().err


def test_a_token_or_no_auth_lets_serve_go_on_to_listen(capsys, monkeypatch):
    """Past the check, serve tries to listen: on a port taken on loopback it stops there."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = str(s.getsockname()[1])
        monkeypatch.setenv("EXCNET_TOKEN", TOKEN)
        assert main(["serve", "--host", "0.0.0.0", "--port", port]) == 1
        assert "cannot listen on 0.0.0.0" in capsys.readouterr().err
        monkeypatch.delenv("EXCNET_TOKEN")
        assert main(["serve", "--host", "0.0.0.0", "--port", port, "--no-auth"]) == 1
        assert "cannot listen on 0.0.0.0" in capsys.readouterr().err


# --------------------------------------------------------------------------- metrics


def test_metrics_count_requests_statuses_stages_and_decode_errors(png):
    app = create_app(Settings(solver="direct", tokens=Tokens.of([TOKEN]), max_pixels=100_000))
    auth = bearer(TOKEN)
    big = encode_image(np.zeros((400, 400), np.uint8), "PNG")  # 160 000 pixels
    with TestClient(app) as c:
        for _ in range(3):
            assert c.post(f"{API}/restore", files=upload(png), headers=auth).status_code == 200
        assert c.post(f"{API}/estimate", files=upload(png), headers=auth).status_code == 200
        assert c.post(f"{API}/restore", files=upload(png)).status_code == 401
        assert c.post(f"{API}/restore", files=upload(b"text"), headers=auth).status_code == 415
        assert c.post(f"{API}/restore", files=upload(png[:300]),
                      headers=auth).status_code == 422
        assert c.post(f"{API}/estimate", files=upload(big), headers=auth).status_code == 413
        page = c.get("/metrics", headers=auth)
        with TestClient(create_app(Settings())) as other:  # its own registry: nothing counted
            fresh = metric_samples(other.get("/metrics").text)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/plain")
    m = metric_samples(page.text)

    def requests(endpoint: str, status: int) -> float:
        key = ("excnet_requests_total", ("endpoint", f"{API}/{endpoint}"), ("method", "POST"),
               ("status", str(status)))
        return m.get(key, 0)

    assert requests("restore", 200) == 3 and requests("estimate", 200) == 1
    assert requests("restore", 401) == 1 and requests("restore", 415) == 1
    assert requests("restore", 422) == 1 and requests("estimate", 413) == 1
    assert m[("excnet_images_restored_total",)] == 3
    assert m[("excnet_megapixels_restored_total",)] == pytest.approx(3 * 60 * 80 / 1e6)
    for kind, n in (("unsupported_type", 1), ("bad_image", 1), ("too_many_pixels", 1)):
        assert m[("excnet_decode_errors_total", ("kind", kind))] == n
    # Every job that ran is in both histograms; the 401 never reached the pool.
    restore = ("endpoint", f"{API}/restore")
    assert m[("excnet_queue_wait_seconds_count", restore)] == 5
    assert m[("excnet_work_seconds_count", restore)] == 5
    assert m[("excnet_work_seconds_sum", restore)] > 0
    assert m[("excnet_admitted_total",)] == 7 and m[("excnet_rejected_total",)] == 0
    assert m[("excnet_queue_depth",)] == 0 and m[("excnet_running",)] == 0
    assert m[("excnet_request_duration_seconds_count", restore)] == 6
    assert m[("excnet_received_bytes_total", restore)] > 3 * len(png)
    assert not any(k[0] == "excnet_requests_total" and k[1] != ("endpoint", "/metrics")
                   for k in fresh)


def test_unknown_paths_share_one_metric_label():
    with TestClient(create_app(Settings())) as c:
        for i in range(5):
            assert c.get(f"/nothing/{i}").status_code == 404
        m = metric_samples(c.get("/metrics").text)
    assert m[("excnet_requests_total", ("endpoint", "other"), ("method", "GET"),
              ("status", "404"))] == 5


# --------------------------------------------------------------------------- request log


def test_one_log_line_per_request_with_the_request_id(png, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    with TestClient(create_app(Settings(solver="direct"))) as c:
        r = c.post(f"{API}/restore", files=upload(png), headers={"X-Request-ID": "lb-42.a"})
        assert r.headers["x-request-id"] == "lb-42.a"
        bad = c.post(f"{API}/restore", files=upload(b"nope", "x.jpg"),
                     headers={"X-Request-ID": "bad id with spaces"})
        generated = bad.headers["x-request-id"]
        assert len(generated) == 32 and generated != "bad id with spaces"
        assert c.get(f"{API}/health").headers["x-request-id"] != generated
    records = [rec for rec in caplog.records if rec.name == LOGGER]
    assert len(records) == 3
    line = json.loads(JsonFormatter().format(records[0]))
    assert line["request_id"] == "lb-42.a" and line["status"] == 200
    assert (line["method"], line["path"]) == ("POST", f"{API}/restore")
    assert line["bytes_in"] > len(png) and line["bytes_out"] == len(r.content)
    assert line["megapixels"] == pytest.approx(0.0048)
    assert line["phi_s"] == pytest.approx(float(r.headers["x-excnet-phi-s"]), abs=1e-5)
    assert line["phi_h"] == pytest.approx(float(r.headers["x-excnet-phi-h"]), abs=1e-5)
    assert set(line["seconds"]) == {"queue", "decode", "base", "estimate", "apply", "encode",
                                    "total"}
    assert line["seconds"]["total"] >= line["seconds"]["decode"]
    assert line["client"] and line["time"].endswith("Z")
    failed = json.loads(JsonFormatter().format(records[1]))
    assert failed["request_id"] == generated and failed["status"] == 415
    assert failed["error"] == "unsupported_type" and failed["megapixels"] is None
    text = TextFormatter().format(records[0])
    assert '"POST /api/v1/restore" 200' in text and "id=lb-42.a" in text and "\n" not in text


class BrokenRestorer(Restorer):
    """A restorer with a bug: its restore raises."""

    def restore(self, image, curve=None, **_kw):
        raise RuntimeError("secret detail of the bug")


def test_an_internal_error_is_a_json_500_with_the_request_id_and_its_traceback_logged(
        png, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    caplog.set_level(logging.INFO, logger=ERROR_LOGGER)
    app = create_app(Settings(solver="direct"), make_restorer=lambda s: BrokenRestorer(s))
    with TestClient(app) as c:
        r = c.post(f"{API}/restore", files=upload(png), headers={"X-Request-ID": "bug-1"})
        assert r.status_code == 500 and r.headers["x-request-id"] == "bug-1"
        error = r.json()["error"]
        assert error["code"] == "internal" and "bug-1" in error["message"]
        assert "secret" not in r.text  # the details stay in the log
        assert c.get(f"{API}/health").json()["pool"]["admitted"] == 0  # its slot is free
    access = [rec for rec in caplog.records if rec.name == LOGGER]
    line = json.loads(JsonFormatter().format(access[0]))
    assert (line["status"], line["error"], line["bytes_out"]) == (500, "internal", len(r.content))
    [err] = [rec for rec in caplog.records if rec.name == ERROR_LOGGER]
    logged = json.loads(JsonFormatter().format(err))
    assert "bug-1" in logged["message"] and logged["level"] == "ERROR"
    assert "RuntimeError: secret detail of the bug" in logged["traceback"]
    assert "RuntimeError: secret detail of the bug" in TextFormatter().format(err)


# --------------------------------------------------------------------------- readiness


def test_a_draining_pool_is_not_ready_and_refuses_work(png):
    app = create_app(Settings(solver="direct"))
    with TestClient(app) as c:
        assert c.get(f"{API}/ready").status_code == 200
        app.state.pool.draining = True
        r = c.get(f"{API}/ready")
        assert r.status_code == 503 and r.json()["error"]["code"] == "shutting_down"
        r = c.post(f"{API}/restore", files=upload(png))
        assert r.status_code == 503 and r.json()["error"]["code"] == "shutting_down"
        assert c.get(f"{API}/health").json()["status"] == "ok"  # alive all the same
        # probes that ask with HEAD get the same statuses, without a body
        assert (c.head(f"{API}/ready").status_code, c.head(f"{API}/health").status_code) == (
            503, 200)
        app.state.pool.draining = False
        r = c.head(f"{API}/ready")
        assert r.status_code == 200 and r.content == b""
        assert c.head("/").status_code == 200
