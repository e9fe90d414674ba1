"""HEIC output: x265's preset (libheif's "slow" against excnet's "medium"), 8- and 10-bit.

    .venv/bin/python benchmarks/heic.py                 # 2 photos of 12 MP, 3 runs each
    .venv/bin/python benchmarks/heic.py --photos 1 --mp 1 --runs 5

The photos are speed.py's camera-like back-lit JPEGs, restored with the default settings
(8 bits) and, for the 10-bit rows, the same restored pixels scaled to 16 bits. Each is encoded
at quality 90 with each preset, alternately, in this process; the table gives the median
encode time, the size, and how close the file decodes to the pixels encoded (PSNR over the
image, 8-bit scale).
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pillow_heif

sys.path.insert(0, str(Path(__file__).resolve().parent))

from speed import make_files  # noqa: E402

from excnet import Restorer  # noqa: E402
from excnet.imageio import decode_image, read_image, writing  # noqa: E402

PRESETS = {"slow (libheif's)": {"preset": "slow"}, "medium (excnet)": writing.HEIC_ENCODER}


def encode(pixels: np.ndarray, enc_params: dict) -> bytes:
    mode = "RGB;16" if pixels.dtype == np.uint16 else "RGB"
    heif = pillow_heif.from_bytes(mode, (pixels.shape[1], pixels.shape[0]), pixels.tobytes())
    buf = io.BytesIO()
    heif.save(buf, quality=90, enc_params=enc_params)
    return buf.getvalue()


def psnr(pixels: np.ndarray, data: bytes) -> float:
    back = decode_image(data, name="x.heic").pixels.astype(np.float64)
    scale = 65535.0 if pixels.dtype == np.uint16 else 255.0
    d = (back - pixels) / scale
    return 10 * np.log10(1 / max(float(np.mean(d * d)), 1e-12))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=2)
    ap.add_argument("--mp", type=int, default=12, choices=(1, 12, 24))
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    restorer = Restorer()
    print(f"quality 90, median of {args.runs} encodes, alternately")
    print("| photo | bits | preset | encode s | MB | PSNR (dB) | time vs slow |")
    print("|---|---:|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="excnet-heic-") as tmp:
        for path in make_files(Path(tmp), args.mp, args.photos, first_seed=7100):
            out = restorer.restore(read_image(path).pixels).image
            for pixels in (out, out.astype(np.uint16) * 257):
                times: dict[str, list[float]] = {name: [] for name in PRESETS}
                data: dict[str, bytes] = {}
                for _ in range(args.runs):
                    for name, params in PRESETS.items():
                        start = time.perf_counter()
                        data[name] = encode(pixels, params)
                        times[name].append(time.perf_counter() - start)
                base = statistics.median(times["slow (libheif's)"])
                bits = 10 if pixels.dtype == np.uint16 else 8
                for name in PRESETS:
                    t = statistics.median(times[name])
                    print(f"| {path.name} | {bits} | {name} | {t:.2f} | "
                          f"{len(data[name]) / 1e6:.2f} | {psnr(pixels, data[name]):.2f} | "
                          f"{t / base:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
