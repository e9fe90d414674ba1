"""Folder walks leave out excnet's own earlier outputs (NAME.excnet.EXT beside a NAME.* source),
say how many, and take them with --include-outputs: `restore DIR` (with and without -o),
`estimate DIR` and `batch`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import make_backlit
from dngfile import mosaic, srgb_to_linear, write_dng

from excnet.batch import Skipped, list_images
from excnet.cli import main
from excnet.imageio import write_image

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SOURCES = ["a.jpg", "IMG_1.dng", "sub/c.png"]
#: outputs beside their sources: of a JPEG, of a RAW (TIFF), of a video (not itself listed),
#: and one restored twice
EARLIER = ["a.excnet.jpg", "IMG_1.excnet.tif", "clip.excnet.jpg", "a.excnet.excnet.jpg",
           "sub/c.excnet.png"]
#: named like an output, but nothing of its name stands beside it: a photo like any other
LONE = "lone.excnet.jpg"


@pytest.fixture()
def shoot(tmp_path: Path) -> Path:
    root = tmp_path / "shoot"
    (root / "sub").mkdir(parents=True)
    for i, name in enumerate([n for n in SOURCES + EARLIER + [LONE] if not n.endswith(".dng")]):
        write_image(root / name, make_backlit(32, 48, seed=i))
    scene = make_backlit(32, 48, seed=9).astype(np.float64)
    (root / "IMG_1.dng").write_bytes(write_dng(mosaic(srgb_to_linear(scene / 255.0))))
    (root / "clip.mp4").write_bytes(b"not opened: only its name counts")
    return root


def taken(stdout: str) -> list[str]:
    return sorted(Path(json.loads(line)["input"]).name for line in stdout.splitlines())


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_images_counts_what_it_leaves_out(shoot):
    skipped = Skipped()
    names = list(list_images(str(shoot), skipped=skipped))
    assert names == sorted(["IMG_1.dng", "a.jpg", LONE, "sub/c.png"])
    assert skipped.outputs == len(EARLIER)
    every = list(list_images(str(shoot), include_outputs=True))
    assert sorted(every) == sorted(SOURCES + EARLIER + [LONE])


@pytest.mark.parametrize("argv", [["restore", "{dir}", "-o", "{out}"], ["restore", "{dir}"],
                                  ["estimate", "{dir}"], ["batch", "{dir}", "{out}"]])
def test_commands_skip_earlier_outputs(capsys, shoot, tmp_path, argv):
    args = [a.format(dir=shoot, out=tmp_path / "out") for a in argv] + ["--json"]
    code, out, err = cli(capsys, *args)
    assert code == 0, err
    assert taken(out) == sorted(["IMG_1.dng", "a.jpg", LONE, "c.png"])
    assert f"skipped {len(EARLIER)} earlier excnet outputs" in err


def test_include_outputs_takes_them(capsys, shoot, tmp_path):
    code, out, err = cli(capsys, "restore", shoot, "-o", tmp_path / "out", "--json",
                         "--include-outputs")
    assert code == 0, err
    assert len(taken(out)) == len(SOURCES + EARLIER) + 1
    assert "skipped" not in err
