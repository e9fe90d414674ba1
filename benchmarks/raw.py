"""Camera RAW: speed of a 24 MP DNG to JPEG, the banding benefit, and the highlight modes.

    python benchmarks/raw.py                    # all three tables (files cached in --work)
    python benchmarks/raw.py --only speed --runs 5
    python benchmarks/raw.py --only banding --crop benchmarks/raw_banding_crop.png

speed: `excnet restore X -o out.jpg --json` as a fresh process per run (wall time from process
start to exit, CPU time and peak RSS of that process), for a 24 MP 14-bit DNG written as cameras do
(lossless JPEG) and uncompressed, against a 24 MP JPEG of the same scene in the same run;
medians over --runs. The DNGs are made here (tests/dngfile.py) from scikit-image's
astronaut, scaled up, with sensor noise; nothing is downloaded.

banding: one back-lit scene (linear light, subject 4 stops under) recorded as a 12-bit DNG and
as the camera's 8-bit JPEG of the same sensor data (developed identically, then 8 bits, q95).
Both are restored with the same curve and written as the same 8-bit JPEG q95; the truth is
that curve applied to the noiseless scene at full precision. Measured in the input's darkest
25 %: PSNR against the truth and the number of distinct levels.

highlights: a bluish sky brightening until every sensor channel clips, developed with each
highlight mode (and LibRaw's unclipped "ignore", not offered, for reference): colour cast
where the sensor clipped, and how many distinct levels the transition keeps.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from skimage import data as skdata

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from dngfile import linear_to_srgb, mosaic, srgb_to_linear, write_dng  # noqa: E402

from excnet import Restorer, restore  # noqa: E402
from excnet.imageio import RawOptions, decode_image, encode_image, write_image  # noqa: E402

EXCNET = Path(sys.executable).with_name("excnet")
SIZE_24MP = (4000, 6000)


def backlit_linear(shape: tuple[int, int], stops: float = 4.0,
                   photo: str = "astronaut") -> np.ndarray:
    """A scikit-image photo scaled to shape, in linear light, `stops` under, below a bright
    bluish sky across the top quarter: the back-lit frame a camera records."""
    h, w = shape
    img = cv2.resize(getattr(skdata, photo)()[..., :3], (w, h), interpolation=cv2.INTER_CUBIC)
    lin = srgb_to_linear(img.astype(np.float64) / 255.0)
    yy = np.mgrid[0:h, 0:w][0][..., None] / h
    sky = 1.0 / (1.0 + np.exp(-(0.25 - yy) / 0.03))
    sky_colour = np.array([0.7, 0.8, 1.0]) * (0.8 + 0.2 * (1.0 - yy))
    return np.clip(sky * sky_colour + (1.0 - sky) * lin * 2.0 ** -stops, 0.0, 1.0)


# --------------------------------------------------------------------------- speed


def speed_files(work: Path) -> dict[str, Path]:
    files = {"DNG 14-bit lossless JPEG": work / "24mp-ljpeg.dng",
             "DNG 14-bit uncompressed": work / "24mp-plain.dng",
             "JPEG q95 (baseline)": work / "24mp.jpg"}
    if all(p.exists() for p in files.values()):
        return files
    lin = backlit_linear(SIZE_24MP, stops=3.0).astype(np.float32)
    raw = mosaic(lin, bits=14, black=512, noise=6.0)
    del lin
    files["DNG 14-bit lossless JPEG"].write_bytes(write_dng(raw, compress=True))
    files["DNG 14-bit uncompressed"].write_bytes(write_dng(raw))
    del raw
    developed = decode_image(files["DNG 14-bit uncompressed"].read_bytes(), name="x.dng")
    write_image(files["JPEG q95 (baseline)"], developed.pixels, quality=95)
    return files


def run_once(path: Path, out: Path) -> tuple[float, float, int, dict]:
    """Wall seconds from process start to exit, CPU seconds (user + system), peak RSS (bytes,
    from /usr/bin/time: a child forked from this large process would report our RSS) and the
    JSON record of one `excnet restore` process."""
    report = out.with_suffix(".time")
    cmd = ["/usr/bin/time", "-f", "%U %S %M", "-o", str(report), str(EXCNET), "restore",
           str(path), "-o", str(out), "--json", "--overwrite"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"excnet failed on {path}: {proc.stderr.strip()}")
    user, system, rss_kb = report.read_text().split()[-3:]
    return wall, float(user) + float(system), int(rss_kb) * 1024, json.loads(proc.stdout)


def speed(work: Path, runs: int) -> None:
    files = speed_files(work)
    rows = []
    # Interleaved (one run of each file, then the next round), so a slow spell of a shared
    # machine falls on every row alike.
    by_file: dict[str, list] = {label: [] for label in files}
    for _ in range(runs):
        for label, path in files.items():
            by_file[label].append(run_once(path, work / "out.jpg"))
    for label, path in files.items():
        results = by_file[label]
        walls = [r[0] for r in results]
        stage = {key: statistics.median(r[3]["seconds"][key] for r in results)
                 for key in ("decode", "base", "estimate", "apply", "encode")}
        restore_s = stage["base"] + stage["estimate"] + stage["apply"]
        rows.append((label, path.stat().st_size / 1e6, statistics.median(walls), min(walls),
                     statistics.median(r[1] for r in results), stage["decode"], restore_s,
                     stage["encode"], max(r[2] for r in results)))
    base = rows[-1][2]
    print(f"\n24 MP ({SIZE_24MP[1]}x{SIZE_24MP[0]}) to JPEG q95, `excnet restore`, {runs} runs, "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print("| input | MB | wall from start (median) | min | CPU s (user+sys) | decode | restore "
          "| encode | peak RSS | wall vs JPEG |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, mb, wall, low, cpu, dec, rest, enc, rss in rows:
        print(f"| {label} | {mb:.1f} | {wall:.2f} s | {low:.2f} s | {cpu:.2f} | {dec:.2f} "
              f"| {rest:.2f} | {enc:.2f} | {rss / 2**20:.0f} MB | {wall / base:.2f}x |")


# --------------------------------------------------------------------------- banding


def banding_case(photo: str, stops: float, shape: tuple[int, int]) -> dict:
    """Restore one scene through the RAW and the JPEG path; outputs, truth and the mask."""
    lin = backlit_linear(shape, stops, photo)
    truth_in = np.round(linear_to_srgb(lin) * 65535).astype(np.uint16)  # ideal development
    dng = write_dng(mosaic(lin, bits=12, black=256, noise=0.8, seed=1), bits=12, black=256)
    raw_in = decode_image(dng, name="scene.dng", raw=RawOptions(highlights="clip")).pixels
    jpeg_in = decode_image(encode_image(raw_in, "JPEG", quality=95)).pixels  # camera JPEG
    curve = Restorer().restore(raw_in).curve  # one curve for all three renderings
    out = {}
    for name, pixels in (("RAW", raw_in), ("JPEG", jpeg_in)):
        written = encode_image(restore(pixels, curve).image, "JPEG", quality=95)
        out[name] = decode_image(written).pixels
    truth = restore(truth_in, curve).image
    out["truth"] = ((truth.astype(np.uint32) + 128) // 257).astype(np.uint8)
    luma = jpeg_in.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return {"out": out, "dark": luma <= np.percentile(luma, 25), "curve": curve,
            "in_levels": len(np.unique(jpeg_in[luma <= np.percentile(luma, 25)][:, 1]))}


# y, x, size of the crop (coffee, 4 stops under): of the 160-pixel windows that are >= 70 %
# in the darkest quartile, mean level >= 25, the one where the two paths differ most
# (chosen to show the effect; the table above is over the whole darkest quartile).
CROP = (832, 576, 160)


def crop_sheet(tiles: list[np.ndarray]) -> np.ndarray:
    """The same crop of each image at 3x (nearest), and below it with contrast x4."""
    y, x, s = CROP
    crops = [t[y:y + s, x:x + s].astype(np.float64) for t in tiles]
    centre = crops[-1].mean()
    rows = [crops, [np.clip((c - centre) * 4 + 128, 0, 255) for c in crops]]
    return np.concatenate([np.concatenate([cv2.resize(c.round().astype(np.uint8), (3 * s, 3 * s),
                                                      interpolation=cv2.INTER_NEAREST)
                                           for c in row], 1) for row in rows], 0)


def banding(crop_path: Path | None) -> None:
    shape = (1024, 1536)
    print(f"\nBanding: {shape[1]}x{shape[0]} back-lit scenes (12-bit DNG vs the 8-bit JPEG of "
          "the same sensor data, both restored with one curve, written as JPEG q95); darkest "
          "25 % of the input")
    print("| scene | phi_s / phi_h | green levels in the input JPEG | PSNR vs truth: RAW path "
          "| JPEG path | distinct green levels: RAW path | JPEG path | truth |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for photo in ("astronaut", "coffee"):
        for stops in (3.0, 4.0, 5.0):
            case = banding_case(photo, stops, shape)
            dark, out, curve = case["dark"], case["out"], case["curve"]
            psnr, levels = {}, {}
            for name, img in out.items():
                err = img[dark].astype(np.float64) - out["truth"][dark]
                psnr[name] = 10 * np.log10(255.0**2 / max(np.mean(err**2), 1e-12))
                levels[name] = len(np.unique(img[dark][:, 1]))
            print(f"| {photo}, {stops:g} stops under | {curve.phi_s:.3f} / {curve.phi_h:.3f} "
                  f"| {case['in_levels']} | {psnr['RAW']:.2f} dB | {psnr['JPEG']:.2f} dB "
                  f"| {levels['RAW']} | {levels['JPEG']} | {levels['truth']} |")
            if crop_path is not None and (photo, stops) == ("coffee", 4.0):
                write_image(crop_path, crop_sheet([out["JPEG"], out["RAW"], out["truth"]]))
    if crop_path is not None:
        print(f"crop: coffee, 4 stops; {CROP[2]}x{CROP[2]} at x={CROP[1]}, y={CROP[0]} (a "
              "smooth shadow in the darkest 25 %), 3x nearest; columns JPEG path | RAW path | "
              f"truth; bottom row: contrast x4 around the truth's mean -> {crop_path}")


# --------------------------------------------------------------------------- highlights


def highlights() -> None:
    import rawpy

    from excnet.imageio.raw import tone_table

    x = np.linspace(0.0, 1.0, 512)[None, :, None]
    sky = np.broadcast_to(np.array([0.75, 0.85, 1.0]) * (0.3 + 2.2 * x), (32, 512, 3))
    data = write_dng(mosaic(sky))
    clipped = sky[0, :, 1] >= 1.0  # the green sensor channel saturates first
    band = clipped & (sky[0, :, 0] * 0.5 < 1.0)  # some channels clipped, red not
    rows = {}
    for mode in ("clip", "blend", "reconstruct"):
        rows[mode] = decode_image(data, name="sky.dng", raw=RawOptions(highlights=mode)).pixels
    with rawpy.imread(io.BytesIO(data)) as rp:  # LibRaw's "ignore": no clipping at all
        linear = rp.postprocess(use_camera_wb=True, output_bps=16, no_auto_bright=True,
                                gamma=(1, 1), highlight_mode=1, adjust_maximum_thr=0.0)
        rows["ignore (LibRaw 1, not offered)"] = tone_table(1.0, "srgb")[linear]
    print(f"\nClipped sky (512 columns; the green sensor channel clips from column "
          f"{int(np.argmax(clipped))}, blue from {int(np.argmax(sky[0, :, 2] * 0.7 >= 1.0))}, "
          "red never)")
    print("| mode | cast where clipped: mean / max (max-min of RGB, 0..1) | sky colour at the "
          "end | distinct levels in the transition | mid-tone level (column 32) |")
    print("|---|---:|---|---:|---:|")
    for mode, img in rows.items():
        row = img[16].astype(np.float64) / 65535
        cast = row.max(1) - row.min(1)
        end = row[-8]
        print(f"| {mode} | {cast[clipped][4:-4].mean():.3f} / {cast[clipped][4:-4].max():.3f} "
              f"| {end[0]:.2f}/{end[1]:.2f}/{end[2]:.2f} "
              f"| {len(np.unique(img[16][band].mean(1).round()))} | {row[32].mean():.3f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", choices=("speed", "banding", "highlights"), action="append")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "excnet-raw-bench")
    p.add_argument("--crop", type=Path, default=None, help="write the banding crop here (PNG)")
    args = p.parse_args()
    only = args.only or ["highlights", "banding", "speed"]
    args.work.mkdir(parents=True, exist_ok=True)
    if "highlights" in only:
        highlights()
    if "banding" in only:
        banding(args.crop)
    if "speed" in only:
        speed(args.work, args.runs)


if __name__ == "__main__":
    main()
