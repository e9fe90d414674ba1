"""`excnet batch` with the local engine: mirror tree, manifest, resume, bad files, a kill."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_backlit

from excnet.batch import list_images, plan, restore_file
from excnet.cli import main
from excnet.imageio import read_image, write_image
from excnet.manifest import DoneSet, ManifestWriter, read_records
from excnet.pipeline import Restorer


def _tree(root: Path, n: int = 4, size: tuple[int, int] = (48, 64)) -> list[Path]:
    """n small back-lit JPEGs, half in a sub-folder, plus a non-image and a hidden file."""
    files = []
    for i in range(n):
        f = root / ("sub" if i % 2 else "") / f"img{i}.jpg"
        write_image(f, make_backlit(*size, seed=i))
        files.append(f)
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.jpg").write_bytes(b"x")
    return files


def _digest(paths) -> dict:
    return {str(p): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


def test_manifest_streams_and_survives_a_cut_line(tmp_path):
    m = tmp_path / "m.jsonl"
    with ManifestWriter(m) as w:
        w.write({"input": "a", "status": "ok"})
        w.write({"input": "b", "status": "error"})
    with open(m, "ab") as f:
        f.write(b'{"input": "c", "sta')  # a crash mid-line
    with ManifestWriter(m) as w:
        w.write({"input": "d", "status": "ok"})
    assert [r["input"] for r in read_records(m)] == ["a", "b", "d"]
    done = DoneSet.from_manifest(m)
    assert len(done) == 2 and "a" in done and "d" in done
    assert "b" not in done and "c" not in done  # errors are retried
    assert len(DoneSet.from_manifest(tmp_path / "missing.jsonl")) == 0


def test_list_and_plan_mirror_the_tree(tmp_path):
    _tree(tmp_path / "in")
    rels = list(list_images(str(tmp_path / "in")))
    assert rels == ["img0.jpg", "img2.jpg", "sub/img1.jpg", "sub/img3.jpg"]
    done = DoneSet(iter([str(tmp_path / "in" / "img2.jpg")]))
    jobs = list(plan(str(tmp_path / "in"), str(tmp_path / "out"), done))
    assert [Path(d).relative_to(tmp_path / "out").as_posix() for _, d in jobs] == [
        "img0.jpg", "sub/img1.jpg", "sub/img3.jpg"]


def test_restore_file_keeps_16_bit_and_records_fields(tmp_path):
    src, dst = tmp_path / "a.png", tmp_path / "o" / "a.png"
    # 2 EV under, so that the adaptive default certainly lifts it
    write_image(src, (make_backlit(48, 64, dtype=np.uint16) // 4).astype(np.uint16))
    rec = restore_file(Restorer("direct"), src, dst)
    assert rec["status"] == "ok" and rec["error"] is None
    assert set(rec) == {"input", "output", "status", "error", "phi_s", "phi_h", "iterations",
                        "loss", "exposure", "amount", "needs_correction", "mean_gain",
                        "denoise", "seconds"}
    assert rec["needs_correction"] is True and rec["mean_gain"] > 1.5
    assert set(rec["seconds"]) == {"decode", "base", "estimate", "apply", "encode", "total"}
    out = read_image(dst).pixels
    assert out.dtype == np.uint16 and out.shape == (48, 64, 3)
    assert out.mean() > read_image(src).pixels.mean()  # shadows lifted


def test_an_unwritable_output_format_is_named_once(tmp_path):
    src = tmp_path / "a.png"
    write_image(src, make_backlit(48, 64))
    rec = restore_file(Restorer("direct"), src, tmp_path / "o" / "a.xyz")
    assert rec["status"] == "error"
    assert rec["error"].startswith(f"{src}: a.xyz: cannot tell the image format")
    assert rec["error"].count("a.xyz") == 1


def test_restore_file_takes_an_image_already_being_decoded(tmp_path):
    """The CLI decodes its first file while it loads the restorer: restore_file restores what
    that decode gives (here a different picture from the file's) and records its failure."""
    from concurrent.futures import Future

    from excnet.imageio import ImageError, decode_image, encode_image

    src, dst = tmp_path / "a.png", tmp_path / "a.out.png"
    write_image(src, make_backlit(48, 64))
    other = make_backlit(32, 40, seed=5)
    ahead: Future = Future()
    ahead.set_result(decode_image(encode_image(other, "PNG"), name="a.png"))
    rec = restore_file(Restorer(), src, dst, image=ahead)
    assert rec["status"] == "ok"
    assert read_image(dst).pixels.shape == (32, 40, 3)  # the decoded picture, not a re-read

    failed: Future = Future()
    failed.set_exception(ImageError("a.png: truncated or corrupt image data"))
    rec = restore_file(Restorer(), src, tmp_path / "b.out.png", image=failed)
    assert rec["status"] == "error" and "truncated" in rec["error"]
    assert not (tmp_path / "b.out.png").exists()


def test_cli_restores_its_read_ahead_first_file_and_the_rest(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"not a jpeg")  # sorted first: the file decoded ahead fails
    for i, name in enumerate(("b.jpg", "c.png")):
        write_image(folder / name, make_backlit(40 + 8 * i, 56, seed=i))
    code = main(["restore", str(folder), "-o", str(tmp_path / "out"), "--json"])
    recs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1
    assert [Path(r["input"]).name for r in recs] == ["a.jpg", "b.jpg", "c.png"]
    assert recs[0]["status"] == "error" and "a.jpg" in recs[0]["error"]
    for r in recs[1:]:
        assert r["status"] == "ok"
        assert read_image(r["output"]).pixels.shape == read_image(r["input"]).pixels.shape

    code = main(["restore", str(folder / "c.png"), "-o", str(tmp_path / "one.png")])
    assert code == 0
    assert read_image(tmp_path / "one.png").pixels.shape == (48, 56, 3)


def test_batch_mirrors_records_and_resumes(tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    files = _tree(src)
    bad = src / "sub" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    before = _digest([*files, bad])
    rc = main(["batch", str(src), str(out), "--solver", "direct", "-j", "1", "--json"])
    assert rc == 1  # one bad file: reported, not fatal
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(printed) == 5
    manifest = list(read_records(out / "excnet-manifest.jsonl"))
    assert {r["input"]: r["status"] for r in manifest} == {
        **{str(f): "ok" for f in files}, str(bad): "error"}
    assert "broken.jpg" in next(r["error"] for r in manifest if r["status"] == "error")
    for f in files:
        o = out / f.relative_to(src)
        assert read_image(o).pixels.shape == read_image(f).pixels.shape
    assert _digest([*files, bad]) == before  # inputs untouched
    assert not (out / "notes.txt").exists() and not (out / ".hidden.jpg").exists()

    # Re-run after fixing the bad file: only that one is done again.
    write_image(bad, make_backlit(48, 64, seed=9))
    stamps = {f: os.stat(out / f.relative_to(src)).st_mtime_ns for f in files}
    assert main(["batch", str(src), str(out), "--solver", "direct", "-j", "1", "--json"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["input"] for r in printed] == [str(bad)]
    assert stamps == {f: os.stat(out / f.relative_to(src)).st_mtime_ns for f in files}
    assert len(list(read_records(out / "excnet-manifest.jsonl"))) == 6


def test_batch_refuses_overlapping_trees(tmp_path, capsys):
    _tree(tmp_path / "in", n=1)
    assert main(["batch", str(tmp_path / "in"), str(tmp_path / "in" / "out")]) == 2
    assert "OUT must not be IN" in capsys.readouterr().err
    assert main(["batch", str(tmp_path / "nope"), str(tmp_path / "out")]) == 2
    assert main(["batch", str(tmp_path / "in"), "s3://bucket/out"]) == 2  # needs --manifest


def test_kill_mid_batch_then_resume_redoes_nothing_finished(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    files = _tree(src, n=10, size=(64, 96))
    manifest = out / "excnet-manifest.jsonl"
    cmd = [sys.executable, "-c", "import sys; from excnet.cli import main; sys.exit(main())",
           "batch", str(src), str(out), "-j", "2",
           "--solver", "excnet"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if manifest.exists() and len(manifest.read_bytes().splitlines()) >= 2:
            break
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.skip("the batch finished before it could be killed")
    os.killpg(proc.pid, signal.SIGKILL)  # the whole batch, workers included
    proc.wait()
    finished = {r["input"] for r in read_records(manifest) if r["status"] == "ok"}
    assert 2 <= len(finished) < len(files)
    stamps = {}
    for f in finished:
        st = os.stat(out / Path(f).relative_to(src))
        stamps[f] = (st.st_ino, st.st_mtime_ns)

    rerun = subprocess.run([*cmd[:-4], "-j", "1", "--solver", "direct", "--json"],
                           capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    redone = {json.loads(line)["input"] for line in rerun.stdout.splitlines()}
    assert redone == {str(f) for f in files} - finished
    for f, stamp in stamps.items():
        st = os.stat(out / Path(f).relative_to(src))
        assert (st.st_ino, st.st_mtime_ns) == stamp
    records = list(read_records(manifest))
    assert sorted(r["input"] for r in records if r["status"] == "ok") == sorted(
        str(f) for f in files)  # one "ok" line per file: nothing done twice
    leftovers = [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    for f in files:
        assert read_image(out / f.relative_to(src)).pixels.shape == (64, 96, 3)
