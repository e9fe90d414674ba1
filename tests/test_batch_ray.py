"""The Ray engine on a local Ray instance that excnet starts (2 CPUs), against the local engine;
what that instance listens on."""

from __future__ import annotations

import builtins
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import ray_env  # noqa: F401 - Ray's settings, before Ray is imported
from conftest import make_backlit
from ray_env import FAKE_LAN, family, interfaces, is_loopback, listening, private_network

from excnet.batch import BatchConfig, default_workers, plan
from excnet.cli import main
from excnet.imageio import read_image, write_image
from excnet.manifest import DoneSet, read_records

ray = pytest.importorskip("ray")
batch_ray = pytest.importorskip("excnet.batch_ray")


def test_worker_is_warm_when_it_says_ready():
    """A worker's constructor (after which it answers the readiness call) has already restored
    a picture: the modules a first photo would load are loaded, so that time is start-up."""
    code = textwrap.dedent("""
        import sys
        from excnet import batch_ray, pipeline
        from excnet.batch import BatchConfig

        calls = []
        restore = pipeline.Restorer.restore
        pipeline.Restorer.restore = lambda self, *a, **k: calls.append(1) or restore(self, *a, **k)
        assert "PIL.JpegImagePlugin" not in sys.modules  # what the warm-up is for
        batch_ray._Worker(BatchConfig(), 2)
        print(len(calls), "PIL.JpegImagePlugin" in sys.modules,
              "excnet.imageio.jpegstrips" in sys.modules)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(batch_ray.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["1", "True", "True"]


def test_warm_up_failure_does_not_stop_the_worker():
    """The warm-up is a head start only: a worker whose warm-up fails still starts (its photos
    report what is wrong, each in its record)."""
    batch_ray._Worker(BatchConfig(options={"no_such_option": 1}), 1)


def test_unreachable_address_is_a_clear_error(tmp_path, capsys):
    assert not ray.is_initialized()  # runs before the module's instance starts
    write_image(tmp_path / "in" / "p.png", make_backlit(48, 64))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    code = main(["batch", str(tmp_path / "in"), str(tmp_path / "out"), "--engine", "ray",
                 "--address", f"127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert f"excnet: cannot reach the Ray cluster at 127.0.0.1:{port}: Connection refused" in err


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance started the way `excnet batch --engine ray` starts one, in a
    private network (`ray_env.private_network`); yields whether the network is private."""
    with private_network() as sealed:
        assert batch_ray.connect(None, num_cpus=2)
        try:
            yield sealed
        finally:
            ray.shutdown()


def test_local_instance_listens_on_loopback_only(tmp_path, local_ray):
    """Every socket the Ray processes excnet started listen on (and the driver's own) is on
    127.0.0.0/8, although Ray sees a network address (FAKE_LAN) in the private network."""
    if local_ray:
        assert interfaces() == {"lo"}
    src = tmp_path / "in"
    for i in range(12):
        write_image(src / f"p{i:02d}.png", make_backlit(48, 64, seed=i))
    taken = []  # the jobs the driver has taken from the listing

    def listing():
        for job in plan(str(src), str(tmp_path / "out"), DoneSet(iter(()))):
            taken.append(job)
            yield job

    records = batch_ray.run_ray(listing(), BatchConfig())
    first = next(records)  # the workers are up and working now
    # Streamed: no more jobs taken than the worker's queue holds (2 per thread, 3 threads).
    assert len(taken) <= batch_ray.QUEUED_PER_THREAD * 3
    sockets = listening(family(os.getpid()))
    rest = list(records)
    assert [r["status"] for r in [first, *rest]] == ["ok"] * 12
    names = {name for name, _, _ in sockets}
    assert {"gcs_server", "raylet"} <= names
    assert any(name.startswith("ray::_Worker") for name in names), names  # the actor itself
    for name, address, pid in sorted(sockets):  # shown with pytest -s
        print(f"listening: {name:<18} pid {pid:<8} {address}")
    exposed = [s for s in sockets if not is_loopback(s[1])]
    assert exposed == [], f"listening beyond loopback (network address {FAKE_LAN}): {exposed}"


def test_startup_counts_from_the_call(tmp_path, local_ray, monkeypatch):
    """RayStats.startup counts from the call on, the driver's `import ray` included (about a
    second in a fresh driver), so none of Ray's start-up is counted as the photos' time."""
    write_image(tmp_path / "in" / "p.png", make_backlit(48, 64))
    jobs = list(plan(str(tmp_path / "in"), str(tmp_path / "out"), DoneSet(iter(()))))
    skew = []  # importing Ray "takes" 1000 s on run_ray's clock
    monkeypatch.setattr(batch_ray, "time", SimpleNamespace(
        monotonic=lambda: time.monotonic() + sum(skew), sleep=time.sleep))
    real_import = builtins.__import__

    def slow_ray_import(name, globals=None, *args, **kwargs):  # noqa: A002 - __import__'s
        if name == "ray" and not skew and (globals or {}).get("__name__") == batch_ray.__name__:
            skew.append(1000.0)
        return real_import(name, globals, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", slow_ray_import)
    stats = batch_ray.RayStats()
    records = list(batch_ray.run_ray(iter(jobs), BatchConfig(), stats=stats))
    monkeypatch.undo()
    assert [r["status"] for r in records] == ["ok"] and skew == [1000.0]
    assert stats.startup >= 1000.0


def test_ray_and_local_engines_agree(tmp_path, local_ray):
    src = tmp_path / "in"
    for i in range(3):
        write_image(src / ("deep/er" if i == 2 else "") / f"p{i}.png",
                    make_backlit(48, 64, seed=i))
    write_image(src / "wide.png", make_backlit(48, 64, seed=5, dtype=np.uint16))
    (src / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")

    outs = {}
    for engine in ("local", "ray"):
        out = tmp_path / engine
        argv = ["batch", str(src), str(out), "--engine", engine]
        assert main(argv + (["-j", str(default_workers())] if engine == "local" else [])) == 1
        outs[engine] = {r["input"]: r for r in read_records(out / "excnet-manifest.jsonl")}
    local, remote = outs["local"], outs["ray"]
    assert local.keys() == remote.keys() and len(local) == 5
    for name, rec in local.items():
        other = remote[name]
        assert rec["status"] == other["status"]
        if rec["status"] == "error":
            assert name.endswith("bad.png") and other["error"] == rec["error"]
            continue
        assert (rec["phi_s"], rec["phi_h"]) == (other["phi_s"], other["phi_h"])
        with open(rec["output"], "rb") as a, open(other["output"], "rb") as b:
            assert a.read() == b.read()  # byte for byte
        assert read_image(other["output"]).pixels.dtype == read_image(name).pixels.dtype
    assert "/ray/deep/er/p2.png" in remote[str(src / "deep/er/p2.png")]["output"]

    # Resume on Ray: nothing left but the bad file.
    (src / "bad.png").unlink()
    assert main(["batch", str(src), str(tmp_path / "ray"), "--engine", "ray"]) == 0
    assert len(list(read_records(tmp_path / "ray" / "excnet-manifest.jsonl"))) == 5
