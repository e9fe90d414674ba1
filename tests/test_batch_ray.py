"""The Ray engine (a real local Ray instance with 2 CPUs) against the local engine."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_backlit

from excnet.cli import main
from excnet.imageio import read_image, write_image
from excnet.manifest import read_records

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_instance():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_and_local_engines_agree(tmp_path, ray_instance):
    src = tmp_path / "in"
    for i in range(3):
        write_image(src / ("deep/er" if i == 2 else "") / f"p{i}.png",
                    make_backlit(48, 64, seed=i))
    write_image(src / "wide.png", make_backlit(48, 64, seed=5, dtype=np.uint16))
    (src / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")

    outs = {}
    for engine in ("local", "ray"):
        out = tmp_path / engine
        assert main(["batch", str(src), str(out), "--engine", engine, "-j", "2"]) == 1
        outs[engine] = {r["input"]: r for r in read_records(out / "excnet-manifest.jsonl")}
    local, remote = outs["local"], outs["ray"]
    assert local.keys() == remote.keys() and len(local) == 5
    for name, rec in local.items():
        other = remote[name]
        assert rec["status"] == other["status"]
        if rec["status"] == "error":
            assert name.endswith("bad.png") and other["error"] == rec["error"]
            continue
        assert abs(rec["phi_s"] - other["phi_s"]) < 0.01
        assert abs(rec["phi_h"] - other["phi_h"]) < 0.01
        a, b = read_image(rec["output"]).pixels, read_image(other["output"]).pixels
        assert a.dtype == b.dtype == read_image(name).pixels.dtype  # 16 bits survive
        top = 257 if a.dtype == np.uint16 else 1
        assert np.abs(a.astype(np.int64) - b.astype(np.int64)).max() <= 2 * top
    assert "/ray/deep/er/p2.png" in remote[str(src / "deep/er/p2.png")]["output"]

    # Resume on Ray: nothing left but the bad file.
    (src / "bad.png").unlink()
    assert main(["batch", str(src), str(tmp_path / "ray"), "--engine", "ray"]) == 0
    assert len(list(read_records(tmp_path / "ray" / "excnet-manifest.jsonl"))) == 5
