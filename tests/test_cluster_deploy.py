"""docs/cluster.yaml, the Ray cluster-launcher deployment: valid for Ray's launcher, installs
excnet from the locks on every node, keeps the cluster private, and runs a batch command that
the CLI accepts (the same one docs/cluster.md shows)."""

from __future__ import annotations

import copy
import shlex
from pathlib import Path

import pytest

from excnet.cli import build_parser

yaml = pytest.importorskip("yaml")

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load((DOCS / "cluster.yaml").read_text())


def test_ray_launcher_accepts_it(config):
    util = pytest.importorskip("ray.autoscaler._private.util")
    pytest.importorskip("jsonschema")
    util.validate_config(util.prepare_config(copy.deepcopy(config)))  # what `ray up` checks


def test_every_node_installs_excnet_from_the_locks(config):
    root = Path(__file__).resolve().parents[1]
    assert config["file_mounts"]["/home/ray/excnet"] == "."
    setup = " ".join(config["setup_commands"])  # run on the head and on every worker
    assert "cd /home/ray/excnet" in setup
    assert "pip install --no-deps --require-hashes -r requirements.lock" in setup
    assert setup.rstrip().endswith("pip install --no-deps .")
    for lock in ("requirements.lock", "requirements-ray.lock"):
        assert f"-r {lock}" in setup and (root / lock).is_file()
    assert "requirements-dev.lock" not in setup  # no test tools on the nodes
    ray_pin = next(line for line in (root / "requirements-ray.lock").read_text().splitlines()
                   if line.startswith("ray=="))
    assert config["docker"]["image"].startswith(
        f"rayproject/ray:{ray_pin.split('==')[1].split()[0]}-py311")  # the lock's Ray


def test_cluster_is_private(config):
    assert "--env RAY_AUTH_MODE=token" in config["docker"]["run_options"]
    assert config["file_mounts"]["/home/ray/.ray/auth_token"] == "~/.ray/auth_token"
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
    assert "0.0.0.0" not in yaml.safe_dump(config)


def test_batch_command_is_one_the_cli_accepts(config):
    command = config["metadata"]["excnet_batch"]
    argv = shlex.split(command)
    assert argv[0] == "excnet"
    args = build_parser().parse_args(argv[1:])  # exits (fails the test) on a bad option
    assert args.command == "batch" and args.engine == "ray" and args.address == "auto"
    assert args.input.startswith("s3://") and args.output.startswith("s3://")
    assert args.manifest is not None  # required with a URI as OUT
    assert command in (DOCS / "cluster.md").read_text().replace("\n    ", " ")
