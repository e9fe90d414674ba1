"""`excnet batch` between S3 URIs, against moto's S3 server on loopback (no network)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_backlit
from s3server import moto_on_loopback

from excnet.cli import main
from excnet.imageio import decode_image, encode_image
from excnet.manifest import read_records

pytest.importorskip("s3fs")
boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto.server")


@pytest.fixture
def s3(monkeypatch):
    """A moto S3 server on 127.0.0.1 and a client for it; dummy credentials only."""
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    with moto_on_loopback() as endpoint:
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket="photos")
        yield endpoint, client


def test_batch_between_s3_uris(s3, tmp_path, capsys):
    endpoint, client = s3
    # 2 EV under, so that the adaptive default certainly lifts them
    sources = {"in/a.jpg": make_backlit(48, 64, seed=1) // 4,
               "in/day/b.png": make_backlit(48, 64, seed=2, dtype=np.uint16) // 4}
    for key, pixels in sources.items():
        fmt = "PNG" if key.endswith(".png") else "JPEG"
        client.put_object(Bucket="photos", Key=key, Body=encode_image(pixels, fmt))
    client.put_object(Bucket="photos", Key="in/day/bad.jpg", Body=b"garbage")
    manifest = tmp_path / "m.jsonl"
    args = ["batch", "s3://photos/in", "s3://photos/out", "--manifest", str(manifest),
            "--storage-option", f"endpoint_url={endpoint}", "--solver", "direct", "-j", "1",
            "--json"]

    assert main(args) == 1  # the bad object is reported, the others restored
    records = {r["input"]: r for r in read_records(manifest)}
    assert records["s3://photos/in/day/bad.jpg"]["status"] == "error"
    for key, pixels in sources.items():
        rec = records[f"s3://photos/{key}"]
        assert rec["status"] == "ok"
        assert rec["output"] == "s3://photos/out/" + key.removeprefix("in/")
        body = client.get_object(Bucket="photos", Key=rec["output"][len("s3://photos/"):])
        out = decode_image(body["Body"].read()).pixels
        assert out.dtype == pixels.dtype and out.shape == pixels.shape
        assert out.mean() > pixels.mean()
        assert client.get_object(Bucket="photos", Key=key)["ContentLength"] > 0  # input kept

    capsys.readouterr()
    assert main(args) == 1  # re-run: only the bad object is tried again
    again = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["input"] for r in again] == ["s3://photos/in/day/bad.jpg"]
