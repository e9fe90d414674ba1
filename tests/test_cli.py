"""`excnet restore` / `excnet estimate`: outputs, JSON records, curve options, and bad input."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import make_backlit

import excnet
from excnet import Curve
from excnet.cli import main
from excnet.imageio import encode_image, read_image, write_image
from excnet.tone import IMPROVED

EXCNET = Path(sys.executable).with_name("excnet")
RECORD_KEYS = {"input", "output", "status", "error", "phi_s", "phi_h", "iterations", "loss",
               "exposure", "amount", "needs_correction", "mean_gain", "seconds", "denoise"}
SECONDS_KEYS = {"decode", "base", "estimate", "apply", "encode", "total"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cli(capsys, *argv: str | Path) -> tuple[int, str, str]:
    """Run `excnet ARGV` in-process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def image_file(path: Path, seed: int = 0, h: int = 48, w: int = 64, dark: bool = False) -> Path:
    """A small back-lit scene; dark=True takes it 2 EV down, so that the adaptive default
    certainly corrects it (it leaves the plain scene nearly alone)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = make_backlit(h, w, seed=seed)
    write_image(path, (img * 0.25).round().astype(np.uint8) if dark else img)
    return path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims width x height RGB pixels (a tiny IDAT follows)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b""))


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if p.suffix == ".tmp"]


def no_traceback(err: str) -> None:
    assert "Traceback" not in err


# --------------------------------------------------------------------------- outputs


def test_restore_one_file_to_a_file(tmp_path, capsys):
    src = image_file(tmp_path / "in.png", dark=True)
    code, out, err = cli(capsys, "restore", src, "-o", tmp_path / "out.png", "--solver", "direct")
    assert code == 0
    assert out == "" and err == ""  # quiet by default
    restored = read_image(tmp_path / "out.png").pixels
    original = read_image(src).pixels
    assert restored.shape == original.shape and restored.dtype == original.dtype
    assert not np.array_equal(restored, original)
    np.testing.assert_array_equal(restored, excnet.restore(original).image)
    assert temp_files(tmp_path) == []


def test_default_output_is_beside_the_input(tmp_path, capsys):
    a = image_file(tmp_path / "a.png")
    b = image_file(tmp_path / "b.jpg", seed=1)
    code, _, _ = cli(capsys, "restore", a, b, "--solver", "direct")
    assert code == 0
    assert (tmp_path / "a.excnet.png").is_file()
    assert read_image(tmp_path / "b.excnet.jpg").format == "JPEG"
    # a second run over the folder does not restore its own outputs again
    code, out, _ = cli(capsys, "restore", tmp_path, "--solver", "direct", "--json")
    assert code == 0
    assert sorted(Path(json.loads(line)["input"]).name for line in out.splitlines()) == [
        "a.png", "b.jpg"]


def test_several_files_into_a_folder(tmp_path, capsys):
    a = image_file(tmp_path / "x" / "a.png")
    b = image_file(tmp_path / "y" / "b.png", seed=1)
    code, _, _ = cli(capsys, "restore", a, b, "-o", tmp_path / "out", "--solver", "direct")
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]


def test_folder_tree_is_mirrored(tmp_path, capsys):
    root = tmp_path / "photos"
    image_file(root / "a.png")
    image_file(root / "trip" / "b.jpg", seed=1)
    image_file(root / "trip" / "day2" / "c.png", seed=2)
    (root / "notes.txt").write_text("not an image")
    code, _, err = cli(capsys, "restore", root, "-o", tmp_path / "out", "--solver", "direct")
    assert code == 0, err
    made = sorted(p.relative_to(tmp_path / "out").as_posix()
                  for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert made == ["a.png", "trip/b.jpg", "trip/day2/c.png"]


def test_folder_walk_is_the_batch_walk(tmp_path, capsys):
    """Hidden files and folders (macOS's ._NAME resource forks, .thumbnails/) are not photos,
    a link to a folder is not followed, and a broken link is reported as one: the same
    files as `excnet batch` sees."""
    root = tmp_path / "photos"
    image_file(root / "a.png")
    (root / "._a.png").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")
    image_file(root / ".thumbnails" / "t.png", seed=1)
    (root / "again").symlink_to(root, target_is_directory=True)
    (root / "gone.png").symlink_to(tmp_path / "nowhere.png")
    code, out, err = cli(capsys, "restore", root, "-o", tmp_path / "out", "--json")
    assert code == 1
    records = {Path(r["input"]).name: r for r in map(json.loads, out.splitlines())}
    assert sorted(records) == ["a.png", "gone.png"]
    assert records["a.png"]["status"] == "ok"
    assert "gone.png: broken link (its target" in records["gone.png"]["error"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.png"]
    no_traceback(err)


def test_json_records(tmp_path, capsys):
    good = image_file(tmp_path / "good.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    code, out, err = cli(capsys, "restore", good, bad, "-o", tmp_path / "out", "--json")
    assert code == 1
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 2
    for rec in records:
        assert set(rec) == RECORD_KEYS
    ok, failed = records
    assert ok["input"] == str(good) and ok["output"] == str(tmp_path / "out" / "good.png")
    assert ok["status"] == "ok" and ok["error"] is None
    assert set(ok["seconds"]) == SECONDS_KEYS
    assert all(v >= 0 for v in ok["seconds"].values())
    assert ok["seconds"]["total"] >= ok["seconds"]["estimate"]
    direct = excnet.restore(read_image(good).pixels)
    assert ok["phi_s"] == pytest.approx(direct.phi_s, abs=1e-6)
    assert ok["phi_h"] == pytest.approx(direct.phi_h, abs=1e-6)
    assert isinstance(ok["iterations"], int) and isinstance(ok["loss"], float)
    assert failed["status"] == "error" and "bad.png" in failed["error"]
    assert failed["phi_s"] is None and failed["seconds"] is None
    no_traceback(err)


def test_json_with_the_network_solver(tmp_path, capsys):
    src = image_file(tmp_path / "in.png", h=64, w=64)
    code, out, _ = cli(capsys, "restore", src, "--solver", "excnet", "--json")
    assert code == 0
    rec = json.loads(out)
    assert rec["iterations"] > 0
    direct = excnet.restore(read_image(src).pixels, solver="direct")
    assert abs(rec["phi_s"] - direct.phi_s) < 0.02 and abs(rec["phi_h"] - direct.phi_h) < 0.02


# --------------------------------------------------------------------------- curve options


def test_adapt_switch_and_recorded_decision_reproduce_results(tmp_path, capsys):
    src = image_file(tmp_path / "in.png", dark=True)
    pixels = read_image(src).pixels
    code, out, _ = cli(capsys, "restore", src, "-o", tmp_path / "a.png", "--json")
    assert code == 0
    rec = json.loads(out)
    res = excnet.restore(pixels)
    assert rec["exposure"] == res.curve.exposure > 0.5 and rec["amount"] == res.curve.amount
    assert rec["needs_correction"] is True and rec["mean_gain"] == pytest.approx(res.mean_gain)
    # the recorded numbers reproduce the image exactly
    code, _, _ = cli(capsys, "restore", src, "-o", tmp_path / "b.png", "--phi-s",
                     repr(rec["phi_s"]), "--phi-h", repr(rec["phi_h"]), "--exposure",
                     repr(rec["exposure"]), "--amount", repr(rec["amount"]))
    assert code == 0
    np.testing.assert_array_equal(read_image(tmp_path / "b.png").pixels,
                                  read_image(tmp_path / "a.png").pixels)
    # --adapt off is the rendering without the adaptive rule
    code, out, _ = cli(capsys, "restore", src, "-o", tmp_path / "c.png", "--adapt", "off",
                       "--json")
    rec = json.loads(out)
    assert code == 0 and (rec["exposure"], rec["amount"]) == (0.0, 1.0)
    np.testing.assert_array_equal(read_image(tmp_path / "c.png").pixels,
                                  excnet.restore(pixels, adapt=False).image)
    assert not np.array_equal(read_image(tmp_path / "c.png").pixels, res.image)


def test_manual_phi_is_applied(tmp_path, capsys):
    src = image_file(tmp_path / "in.png")
    code, out, _ = cli(capsys, "restore", src, "-o", tmp_path / "out.png", "--phi-s", "0.7",
                       "--phi-h", "0.3", "--json")
    assert code == 0
    rec = json.loads(out)
    assert (rec["phi_s"], rec["phi_h"], rec["iterations"]) == (0.7, 0.3, 0)
    expected = excnet.restore(read_image(src).pixels, IMPROVED.curve(0.7, 0.3)).image
    np.testing.assert_array_equal(read_image(tmp_path / "out.png").pixels, expected)


def test_strength_and_highlight_scale_are_honoured(tmp_path, capsys):
    src = image_file(tmp_path / "in.png", dark=True)
    pixels = read_image(src).pixels
    code, _, _ = cli(capsys, "restore", src, "-o", tmp_path / "m.png", "--phi-s", "0.7",
                     "--phi-h", "0.9", "--strength", "0.5", "--highlight-scale", "0.6")
    assert code == 0
    expected = excnet.restore(pixels, Curve(0.7, 0.9, 0.5, 0.6)).image
    np.testing.assert_array_equal(read_image(tmp_path / "m.png").pixels, expected)
    # with an estimated curve too
    code, _, _ = cli(capsys, "restore", src, "-o", tmp_path / "e.png", "--solver", "direct",
                     "-s", "0.4", "--highlight-scale", "1")
    assert code == 0
    expected = excnet.restore(pixels, solver="direct", strength=0.4, highlight_scale=1.0).image
    np.testing.assert_array_equal(read_image(tmp_path / "e.png").pixels, expected)
    assert not np.array_equal(expected, excnet.restore(pixels, solver="direct").image)


def test_estimate_save_then_restore_with_params(tmp_path, capsys):
    a = image_file(tmp_path / "a.png", seed=0)
    b = image_file(tmp_path / "b.png", seed=1)
    params = tmp_path / "curve.json"
    code, out, _ = cli(capsys, "estimate", a, b, "--solver", "direct", "--save", params)
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{a}\tphi_s=")
    curve = Curve.load(params)
    phis = [excnet.restore(read_image(p).pixels, solver="direct") for p in (a, b)]
    assert curve.phi_s == pytest.approx(np.median([r.phi_s for r in phis]))
    assert curve.phi_h == pytest.approx(np.median([r.phi_h for r in phis]))
    code, _, _ = cli(capsys, "restore", b, "-o", tmp_path / "out.png", "--params", params)
    assert code == 0
    expected = excnet.restore(read_image(b).pixels, curve).image
    np.testing.assert_array_equal(read_image(tmp_path / "out.png").pixels, expected)
    # --strength on top of --params scales the saved curve
    code, _, _ = cli(capsys, "restore", b, "-o", tmp_path / "half.png", "--params", params,
                     "-s", "0.5")
    assert code == 0
    expected = excnet.restore(read_image(b).pixels, replace(curve, strength=0.5)).image
    np.testing.assert_array_equal(read_image(tmp_path / "half.png").pixels, expected)


def test_estimate_json(tmp_path, capsys):
    src = image_file(tmp_path / "a.png")
    missing = tmp_path / "missing.png"
    code, out, err = cli(capsys, "estimate", src, missing, "--solver", "direct", "--json")
    assert code == 1
    ok, failed = (json.loads(line) for line in out.splitlines())
    assert set(ok) == RECORD_KEYS and ok["status"] == "ok"
    direct = excnet.restore(read_image(src).pixels, solver="direct")
    assert ok["phi_s"] == pytest.approx(direct.phi_s, abs=1e-6)
    assert failed["status"] == "error"
    assert failed["error"] == f"{missing}: missing file (no such file or directory)"
    no_traceback(err)


def test_estimate_reports_an_empty_folder_and_refuses_a_curve(tmp_path, capsys):
    (tmp_path / "nothing").mkdir()
    code, out, err = cli(capsys, "estimate", tmp_path / "nothing", "--solver", "direct")
    assert code == 1 and out == ""
    assert err.strip() == f"excnet: {tmp_path / 'nothing'}: no image files found in this folder"
    src = image_file(tmp_path / "a.png")
    code, _, err = cli(capsys, "estimate", src, "--phi-s", "0.5")
    assert code == 2 and "estimate computes phi" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--phi-s", "0.5", "--params", "PARAMS"], "either"),
        (["--quality", "0"], "quality"),
        (["--max-iters", "0"], "max-iters"),
        (["--phi-s", "nan"], "finite"),
        (["--phi-s", "0.5", "--strength", "inf"], "finite"),
        (["--strength", "nan"], "finite"),
        (["--params", "BADPARAMS"], "bad.json"),
        (["--params", "NOPARAMS"], "none.json"),
        (["-o", "-", "--json"], "--json prints to standard output"),
        (["-o", "OUT", "--format", "png"], "--format is for standard output"),
        (["-", "-o", "-"], "exactly one input"),
        (["--amount", "0.5"], "amount goes with phi_s/phi_h or saved curve parameters"),
        (["-o", "OUTXYZ"], "out.xyz: cannot tell the image format from the suffix '.xyz'"),
    ],
)
def test_usage_errors_exit_2_with_one_line(tmp_path, capsys, args, message):
    src = image_file(tmp_path / "in.png")
    (tmp_path / "curve.json").write_text(json.dumps({"phi_s": 0.5, "phi_h": 0.5}))
    (tmp_path / "bad.json").write_text("{oops")
    subs = {"PARAMS": tmp_path / "curve.json", "BADPARAMS": tmp_path / "bad.json",
            "NOPARAMS": tmp_path / "none.json", "OUT": tmp_path / "out.png",
            "OUTXYZ": tmp_path / "out.xyz"}
    args = [str(subs.get(a, a)) for a in args]
    code, out, err = cli(capsys, "restore", src, *args)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err
    no_traceback(err)
    assert not (tmp_path / "in.excnet.png").exists()


# --------------------------------------------------------------------------- bad input


def _bad_inputs(tmp_path: Path) -> dict[str, Path]:
    good = image_file(tmp_path / "good.png")
    data = good.read_bytes()
    files = {
        "corrupt": (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, ".png"),
        "truncated": (data[: len(data) // 2], ".png"),
        "empty": (b"", ".png"),
        "text": (b"this is not a picture\n" * 10, ".jpg"),
        "zero": (png_claiming(0, 16), ".png"),
        "bomb": (png_claiming(100_000, 100_000), ".png"),
    }
    paths = {"good": good}
    for name, (content, suffix) in files.items():
        paths[name] = tmp_path / f"{name}{suffix}"
        paths[name].write_bytes(content)
    paths["missing"] = tmp_path / "missing.png"
    (tmp_path / "empty_dir" / "sub").mkdir(parents=True)
    (tmp_path / "empty_dir" / "readme.txt").write_text("no images here")
    paths["no_images"] = tmp_path / "empty_dir"
    return paths


@pytest.mark.parametrize("case", ["corrupt", "truncated", "empty", "text", "zero", "bomb",
                                  "missing", "no_images"])
def test_bad_input_is_one_line_naming_the_file(tmp_path, capsys, case):
    path = _bad_inputs(tmp_path)[case]
    code, out, err = cli(capsys, "restore", path, "--solver", "direct")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("excnet: ") and str(path) in lines[0]
    no_traceback(err)
    assert out == ""
    assert sorted(p.name for p in tmp_path.rglob("*excnet*")) == []
    assert temp_files(tmp_path) == []


def test_bad_input_messages_say_what_is_wrong(tmp_path, capsys):
    paths = _bad_inputs(tmp_path)
    expected = {"empty": "empty", "zero": "zero-sized", "bomb": "exceeds", "missing": "missing",
                "no_images": "no image"}
    for case, words in expected.items():
        _, _, err = cli(capsys, "restore", paths[case], "--solver", "direct")
        assert words in err, (case, err)


def test_batch_goes_on_past_bad_files(tmp_path, capsys):
    paths = _bad_inputs(tmp_path)
    second = image_file(tmp_path / "second.png", seed=3)
    order = [paths["corrupt"], paths["good"], paths["missing"], paths["bomb"], second]
    code, out, err = cli(capsys, "restore", *order, "-o", tmp_path / "out", "--json")
    assert code == 1
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["status"] for r in records] == ["error", "ok", "error", "error", "ok"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.png", "second.png"]
    # the end of stderr sums up: a count, then each failure naming its file
    tail = err.strip().splitlines()[-4:]
    assert "restored 2 of 5; 3 failed" in tail[0]
    for line, path in zip(tail[1:], [paths["corrupt"], paths["missing"], paths["bomb"]],
                          strict=True):
        assert str(path) in line
    no_traceback(err)
    assert temp_files(tmp_path) == []


def test_exit_code_zero_only_if_all_restored(tmp_path, capsys):
    good = image_file(tmp_path / "good.png")
    assert cli(capsys, "restore", good, "--solver", "direct")[0] == 0
    assert cli(capsys, "restore", good, tmp_path / "nope.png", "--solver", "direct")[0] == 1


# --------------------------------------------------------------------------- never clobber


def test_output_onto_the_input_is_refused(tmp_path, capsys):
    src = image_file(tmp_path / "in.png")
    before = src.read_bytes()
    code, _, err = cli(capsys, "restore", src, "-o", src, "--solver", "direct")
    assert code == 1
    assert "overwrite" in err and str(src) in err
    assert src.read_bytes() == before
    # through another spelling of the same path too
    code, _, _ = cli(capsys, "restore", src, "-o", tmp_path / "." / "in.png", "--solver", "direct")
    assert code == 1 and src.read_bytes() == before
    code, _, _ = cli(capsys, "restore", src, "-o", src, "--solver", "direct", "--overwrite")
    assert code == 0
    np.testing.assert_array_equal(read_image(src).pixels,
                                  excnet.restore(make_backlit(48, 64)).image)
    assert temp_files(tmp_path) == []


def test_folder_restored_onto_itself_is_refused(tmp_path, capsys):
    a = image_file(tmp_path / "d" / "a.png")
    before = a.read_bytes()
    code, _, err = cli(capsys, "restore", tmp_path / "d", "-o", tmp_path / "d")
    assert code == 1 and "overwrite" in err
    assert a.read_bytes() == before


def test_two_inputs_with_one_output_name_do_not_overwrite_each_other(tmp_path, capsys):
    a = image_file(tmp_path / "x" / "same.png", seed=0)
    b = image_file(tmp_path / "y" / "same.png", seed=1)
    code, out, err = cli(capsys, "restore", a, b, "-o", tmp_path / "out", "--json")
    assert code == 1
    first, second = (json.loads(line) for line in out.splitlines())
    assert first["status"] == "ok" and second["status"] == "error"
    assert str(b) in second["error"]
    expected = excnet.restore(read_image(a).pixels).image
    np.testing.assert_array_equal(read_image(tmp_path / "out" / "same.png").pixels, expected)


def test_interrupt_during_write_leaves_nothing(tmp_path, capsys, monkeypatch):
    src = image_file(tmp_path / "in.png")
    dst = tmp_path / "out.png"

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("excnet.imageio.writing.os.replace", interrupted)
    code, _, err = cli(capsys, "restore", src, "-o", dst, "--solver", "direct")
    assert code == 130
    assert "interrupted" in err
    no_traceback(err)
    assert not dst.exists()
    assert temp_files(tmp_path) == []
    # an existing output is left as it was
    dst.write_bytes(b"old")
    cli(capsys, "restore", src, "-o", dst, "--solver", "direct")
    assert dst.read_bytes() == b"old"
    assert temp_files(tmp_path) == []


# --------------------------------------------------------------------------- the real command


def run_excnet(*argv: str | Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(EXCNET), *map(str, argv)], capture_output=True, text=True,
                          env=env, timeout=120)


def test_entry_point_end_to_end(tmp_path):
    assert EXCNET.is_file()
    good = image_file(tmp_path / "good.png")
    bad = tmp_path / "bad.jpg"
    bad.write_text("plain text, not a JPEG")
    proc = run_excnet("restore", good, bad, "-o", tmp_path / "out", "--json")
    assert proc.returncode == 1
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["status"] for r in records] == ["ok", "error"]
    assert set(records[0]["seconds"]) == SECONDS_KEYS
    assert (tmp_path / "out" / "good.png").is_file()
    assert not (tmp_path / "out" / "bad.jpg").exists()
    assert "Traceback" not in proc.stderr and str(bad) in proc.stderr


def test_a_damaged_tiff_is_one_line_without_the_libraries_chatter(tmp_path):
    """Pillow warns about each broken tag and tifffile logs each one it skips: on a terminal
    that was ten lines of library internals before our own line."""
    data = bytearray(encode_image(make_backlit(48, 64).astype(np.uint16) * 257, "TIFF"))
    assert data[:2] == b"II"
    ifd = struct.unpack_from("<I", data, 4)[0]
    for i in range(struct.unpack_from("<H", data, ifd)[0]):
        entry = ifd + 2 + 12 * i
        if struct.unpack_from("<H", data, entry)[0] in (257, 258):  # length, bits per sample
            struct.pack_into("<I", data, entry + 4, 1 << 20)  # their values past the file's end
    bad = tmp_path / "bad.tif"
    bad.write_bytes(bytes(data))
    proc = run_excnet("restore", bad, "-o", tmp_path / "out.jpg")
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"excnet: {bad}: truncated or corrupt image data (TIFF header not readable)"]


def test_entry_point_usage_error(tmp_path):
    proc = run_excnet("restore", tmp_path / "x.png", "--quality", "500")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "quality" in proc.stderr



# --------------------------------------------------------------------------- pipes


def run_piped(*argv: str | Path, stdin: bytes = b"") -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(EXCNET), *map(str, argv)], input=stdin, capture_output=True,
                          env=env, timeout=120)


def test_standard_input_to_standard_output_is_the_file_result(tmp_path):
    """`cat a.jpg | excnet restore - > b.jpg` gives the bytes `excnet restore a.jpg -o b.jpg`
    writes; `-o - --format` chooses the format on standard output."""
    src = image_file(tmp_path / "a.jpg", dark=True)
    assert run_excnet("restore", src, "-o", tmp_path / "b.jpg").returncode == 0
    assert run_excnet("restore", src, "-o", tmp_path / "b.png").returncode == 0
    piped = run_piped("restore", "-", stdin=src.read_bytes())
    assert piped.returncode == 0 and piped.stderr == b""
    assert piped.stdout == (tmp_path / "b.jpg").read_bytes()
    as_png = run_piped("restore", src, "-o", "-", "--format", "png")
    assert as_png.returncode == 0 and as_png.stdout == (tmp_path / "b.png").read_bytes()


def test_standard_input_to_a_file_with_a_record(tmp_path):
    src = image_file(tmp_path / "a.png", dark=True)
    out = tmp_path / "sub" / "out.webp"
    proc = run_piped("restore", "-", "-o", out, "--json", stdin=src.read_bytes())
    assert proc.returncode == 0
    rec = json.loads(proc.stdout)
    assert set(rec) == RECORD_KEYS and set(rec["seconds"]) == SECONDS_KEYS
    assert rec["input"] == "<stdin>" and rec["output"] == str(out) and rec["status"] == "ok"
    assert rec["needs_correction"] is True and read_image(out).format == "WEBP"
    est = run_piped("estimate", "-", "--json", stdin=src.read_bytes())
    assert est.returncode == 0
    assert json.loads(est.stdout)["phi_s"] == pytest.approx(rec["phi_s"])


def test_bad_standard_input_is_one_line_and_writes_nothing(tmp_path):
    proc = run_piped("restore", "-", stdin=b"plain text, not an image")
    assert proc.returncode == 1 and proc.stdout == b""
    assert proc.stderr.decode() == "excnet: <stdin>: not an image file (unrecognised format)\n"


def test_image_data_is_never_written_to_a_terminal(tmp_path, capsys, monkeypatch):
    src = image_file(tmp_path / "a.png")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    code, out, err = cli(capsys, "restore", src, "-o", "-")
    assert code == 2 and out == "" and "refusing to write image data to a terminal" in err


def test_a_reader_that_has_gone_is_one_line(tmp_path):
    src = image_file(tmp_path / "a.png")
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written
    try:
        proc = subprocess.run([str(EXCNET), "restore", str(src), "-o", "-"], stdout=write_end,
                              stderr=subprocess.PIPE, timeout=120)
    finally:
        os.close(write_end)
    assert proc.returncode == 1
    assert proc.stderr.decode() == (f"excnet: {src}: standard output was closed before the "
                                    "image was written\n")
