"""Which chroma subsampling to re-encode a restored JPEG with: 4:4:4 or the input's own 4:2:0.

    .venv/bin/python benchmarks/jpeg_sampling.py              # 6 photos of 12 MP
    .venv/bin/python benchmarks/jpeg_sampling.py --photos 3 --mp 1

The photos are speed.py's camera-like back-lit JPEGs, saved at quality 95 with 4:2:0 chroma as
phones and most cameras write them. Each is restored (default settings), then encoded at
quality 95 both ways; the table gives how close each file decodes to the restored pixels
(PSNR over the image, mean CIEDE2000 over its central 512 x 512), its size, and the encode
time (median of 5, in this process).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from skimage.color import deltaE_ciede2000, rgb2lab

sys.path.insert(0, str(Path(__file__).resolve().parent))

from speed import make_files  # noqa: E402

from excnet import Restorer  # noqa: E402
from excnet.imageio import read_image  # noqa: E402

FACTORS = {"4:4:4": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
           "4:2:0": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420}


def encode(rgb: np.ndarray, sampling: str) -> bytes:
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95,
                                          cv2.IMWRITE_JPEG_SAMPLING_FACTOR, FACTORS[sampling]])
    assert ok
    return data.tobytes()


def scores(out: np.ndarray, data: bytes) -> tuple[float, float]:
    back = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR),
                        cv2.COLOR_BGR2RGB)
    d = (back.astype(np.float64) - out) / 255.0
    psnr = 10 * np.log10(1 / max(float(np.mean(d * d)), 1e-12))
    h, w = out.shape[:2]
    c = (slice(h // 2 - 256, h // 2 + 256), slice(w // 2 - 256, w // 2 + 256))
    de = float(np.mean(deltaE_ciede2000(rgb2lab(out[c]), rgb2lab(back[c]))))
    return psnr, de


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=6)
    ap.add_argument("--mp", type=int, default=12, choices=(1, 12, 24))
    args = ap.parse_args()
    restorer = Restorer()
    print("| photo | 4:4:4 PSNR / dE00 / MB / encode ms | 4:2:0 PSNR / dE00 / MB / encode ms |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="excnet-sampling-") as tmp:
        for path in make_files(Path(tmp), args.mp, args.photos, first_seed=7000):
            out = restorer.restore(read_image(path).pixels).image
            cells = []
            for sampling in FACTORS:
                times = []
                for _ in range(5):
                    start = time.perf_counter()
                    data = encode(out, sampling)
                    times.append(time.perf_counter() - start)
                psnr, de = scores(out, data)
                cells.append(f"{psnr:.2f} / {de:.3f} / {len(data) / 1e6:.2f} / "
                             f"{1000 * statistics.median(times):.0f}")
            print(f"| {path.name} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
