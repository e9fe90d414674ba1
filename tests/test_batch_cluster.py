"""`excnet batch --engine ray` on a Ray cluster of three nodes on this machine (Ray's own
`ray.cluster_utils.Cluster`: a head without CPUs and two worker nodes of 1 CPU, 80 MB of
object store each), all bound to 127.0.0.1 in a private network (`ray_env`), joined through a
loopback `--address`; photos on a shared folder and on the local S3 server (moto). Worker
nodes and the driver are killed hard mid-batch: nothing is lost, nothing finished is redone,
nothing is left behind, and every output is byte for byte the local engine's."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import ray_env  # noqa: F401 - Ray's settings, before Ray is imported
from conftest import make_backlit
from ray_env import interfaces, private_network
from s3server import moto_on_loopback

from excnet.batch import default_workers
from excnet.cli import main
from excnet.imageio import write_image
from excnet.manifest import read_records

ray = pytest.importorskip("ray")
pytest.importorskip("excnet.batch_ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")
boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto.server")

PHOTOS = 16
KILL_AFTER = 4  # finished photos before a worker node is killed
MB = 2**20
NODE = {"node_ip_address": "127.0.0.1", "num_cpus": 1, "object_store_memory": 80 * MB}
# Ray declares a silent node dead after 3 missed checks 0.5 s apart (default: 5 x 3 s).
HEAD = {**NODE, "num_cpus": 0, "include_dashboard": False,
        "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 3}}
SUMMARY = re.compile(r"excnet: ray: (\d+) workers on (\d+) nodes, ready in [\d.]+ s; (\d+) "
                     r"photos retried, (\d+) workers lost, (\d+) nodes lost")


@pytest.fixture(scope="module")
def cluster():
    """The cluster, in a private network (the moto server below joins it there)."""
    with private_network() as sealed:
        if sealed:
            assert interfaces() == {"lo"}
        c = cluster_utils.Cluster(initialize_head=True, head_node_args=HEAD)
        try:
            yield c
        finally:
            ray.shutdown()
            c.shutdown()


@pytest.fixture
def two_workers(cluster):
    """The cluster with (again) two live worker nodes."""
    while len(cluster.worker_nodes) < 2:
        cluster.add_node(**NODE)
    cluster.wait_for_nodes()
    return cluster


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """PHOTOS photos in three folders (JPEG, 8- and 16-bit PNG) and the local engine's
    outputs for them: {relative input: input path}, {relative output: bytes}."""
    root = tmp_path_factory.mktemp("photos")
    src, ref = root / "in", root / "local"
    inputs = {}
    for i in range(PHOTOS):
        rel = f"d{i % 3}/p{i:02d}." + ("png" if i % 4 == 3 else "jpg")
        dtype = np.uint16 if i % 8 == 3 else np.uint8
        write_image(src / rel, make_backlit(96, 128, seed=i, dtype=dtype) // 2)
        inputs[rel] = src / rel
    assert main(["batch", str(src), str(ref), "-j", str(default_workers())]) == 0
    outputs = {p.relative_to(ref).as_posix(): p.read_bytes() for p in ref.rglob("*.*")
               if p.name != "excnet-manifest.jsonl"}
    assert len(outputs) == PHOTOS
    return inputs, outputs


@pytest.fixture(scope="module")
def s3(cluster):
    """A moto S3 server on 127.0.0.1 (inside the private network) with a bucket "photos";
    (client, storage options for excnet)."""
    with moto_on_loopback() as endpoint:
        creds = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing",
                 "region_name": "us-east-1"}
        client = boto3.client("s3", endpoint_url=endpoint, **creds)
        client.create_bucket(Bucket="photos")
        options = [f"endpoint_url={endpoint}", "key=testing", "secret=testing",
                   'client_kwargs={"region_name": "us-east-1"}']
        yield client, [arg for o in options for arg in ("--storage-option", o)]


def _node_pids(node) -> set[int]:
    """Every process of a worker node (raylet, agents, workers)."""
    pids = {info.process.pid for infos in node.all_processes.values() for info in infos}
    for pid in list(pids):
        try:
            pids |= {p.pid for p in psutil.Process(pid).children(recursive=True)}
        except psutil.Error:
            pass
    return pids


def _busy_node(cluster, patience: float = 30.0):
    """A worker node whose excnet worker is restoring a photo now (its process title says
    `_Worker.restore`), so that killing it loses work in flight; on a slow machine one node's
    worker may still be starting when the other has finished the first photos."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        for node in cluster.worker_nodes:
            for pid in _node_pids(node):
                try:
                    if "_Worker.restore" in " ".join(psutil.Process(pid).cmdline()):
                        return node
                except psutil.Error:
                    continue
        time.sleep(0.01)
    return next(iter(cluster.worker_nodes))


def _kill_node(cluster, node) -> None:
    """SIGKILL every process of a worker node at once (raylet, agents, workers)."""
    pids = _node_pids(node)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    cluster.worker_nodes.discard(node)


def _run_killing_a_node(argv: list[str], cluster, manifest: Path,
                        finished: int) -> tuple[int, str]:
    """Run `excnet` with argv in a process of its own (its S3 client's threads stay there) and
    kill a worker node once `finished` photos are in the manifest; (exit status, stderr).
    The driver is attached to the head node (Ray prefers it on a shared host)."""
    command = [sys.executable, "-c", "from excnet.cli import run; run()", *argv]
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True) as driver:
        while len(list(read_records(manifest))) < finished and driver.poll() is None:
            time.sleep(0.02)
        assert driver.poll() is None, "the batch ended before the node was killed"
        _kill_node(cluster, _busy_node(cluster))
        _, stderr = driver.communicate()
    return driver.returncode, stderr


def _summary(stderr: str) -> dict:
    m = SUMMARY.search(stderr)
    assert m, stderr
    keys = ("workers", "nodes", "retried", "workers_lost", "nodes_lost")
    return dict(zip(keys, map(int, m.groups()), strict=True))


def _check_manifest(path: Path, inputs: list[str]) -> list[dict]:
    records = list(read_records(path))
    assert sorted(r["input"] for r in records) == sorted(inputs)  # one line per photo
    assert {r["status"] for r in records} == {"ok"}
    return records


def test_node_killed_mid_batch_loses_nothing_shared_folder(two_workers, photos, tmp_path):
    inputs, reference = photos
    src = next(iter(inputs.values())).parents[1]
    out = tmp_path / "out"
    argv = ["batch", str(src), str(out), "--engine", "ray", "--address", two_workers.address]

    code, stderr = _run_killing_a_node(argv, two_workers, out / "excnet-manifest.jsonl",
                                       KILL_AFTER)
    assert code == 0, stderr
    stats = _summary(stderr)
    assert stats["workers"] == 2 and stats["nodes"] == 2
    assert stats["retried"] >= 1 and stats["workers_lost"] == 1 and stats["nodes_lost"] == 1
    _check_manifest(out / "excnet-manifest.jsonl", [str(p) for p in inputs.values()])
    written = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*")
               if p.is_file() and p.name != "excnet-manifest.jsonl"}
    assert written == reference  # byte for byte, and no temp file left
    print(f"node killed after {KILL_AFTER} photos (folder): {stats}")
    print(stderr)


def test_node_killed_mid_batch_loses_nothing_s3(two_workers, photos, s3, tmp_path):
    client, storage = s3
    inputs, reference = photos
    for rel, path in inputs.items():
        client.put_object(Bucket="photos", Key=f"in/{rel}", Body=path.read_bytes())
    # What a writer killed during a multipart upload leaves; the run removes it.
    upload = client.create_multipart_upload(Bucket="photos", Key="out/d0/big.tif")
    client.upload_part(Bucket="photos", Key="out/d0/big.tif", PartNumber=1, Body=b"x" * 1024,
                       UploadId=upload["UploadId"])
    client.create_multipart_upload(Bucket="photos", Key="elsewhere/kept.tif")  # not ours
    manifest = tmp_path / "job.jsonl"
    argv = ["batch", "s3://photos/in", "s3://photos/out", "--engine", "ray", "--address",
            two_workers.address, "--manifest", str(manifest), *storage]

    code, stderr = _run_killing_a_node(argv, two_workers, manifest, KILL_AFTER)
    assert code == 0, stderr
    stats = _summary(stderr)
    assert stats["retried"] >= 1 and stats["workers_lost"] == 1 and stats["nodes_lost"] == 1
    _check_manifest(manifest, [f"s3://photos/in/{rel}" for rel in inputs])
    listing = client.list_objects_v2(Bucket="photos", Prefix="out/")["Contents"]
    written = {o["Key"].removeprefix("out/"): client.get_object(
        Bucket="photos", Key=o["Key"])["Body"].read() for o in listing}
    assert written == reference  # one whole object per photo, byte for byte
    uploads = client.list_multipart_uploads(Bucket="photos").get("Uploads", [])
    assert [u["Key"] for u in uploads] == ["elsewhere/kept.tif"]
    print(f"node killed after {KILL_AFTER} photos (S3): {stats}")


def test_driver_killed_resumes(two_workers, photos, tmp_path):
    """SIGKILL the driver mid-batch; the same command finishes the batch, restores nothing
    that was finished again and removes what the killed run left."""
    inputs, reference = photos
    src = next(iter(inputs.values())).parents[1]
    out = tmp_path / "out"
    manifest = out / "excnet-manifest.jsonl"
    argv = ["batch", str(src), str(out), "--engine", "ray", "--address", two_workers.address]
    command = [sys.executable, "-c", "from excnet.cli import run; run()", *argv]
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while len(list(read_records(manifest))) < KILL_AFTER:
            assert driver.poll() is None, driver.stderr.read().decode()
            time.sleep(0.02)
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.wait()
        driver.stderr.close()
    first = [r["input"] for r in read_records(manifest)]
    assert KILL_AFTER <= len(first) < PHOTOS
    # What a write cut short leaves (whether or not the kill left one): removed on resume.
    (out / "d1").mkdir(exist_ok=True)
    (out / "d1" / ".p04.jpg.0123abcd.tmp").write_bytes(b"partial")

    assert main(argv) == 0
    records = _check_manifest(manifest, [str(p) for p in inputs.values()])
    again = [r["input"] for r in records[len(first):]]
    assert not set(first) & set(again)  # nothing finished was restored again
    written = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*")
               if p.is_file() and p.name != "excnet-manifest.jsonl"}
    assert written == reference
    print(f"driver killed after {len(first)} photos; resumed: {len(again)} restored")
