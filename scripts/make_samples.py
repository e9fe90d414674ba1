"""Make the small synthetic back-lit sample images in ``examples/``.

What it does
    Takes four photos that ship inside scikit-image (``skimage.data``: astronaut, coffee,
    chelsea, rocket; bundled with the package, so no network is needed), scales each to a
    long side of 640 px, and turns it into a back-lit photo:

    1. sRGB -> linear light;
    2. a soft subject mask (blurred ellipses around the subject; for the rocket landscape,
       the ground below the horizon plus the rocket) is darkened by 2.5-3.5 stops and
       the rest, the "light source" background, is brightened by about one stop and
       clipped at 1.0 (blown highlights), with a little veiling glare over the subject;
    3. linear -> sRGB, plus mild noise that is stronger in the shadows, as in a real
       under-exposed subject.

    It writes ``examples/backlit_<name>.jpg`` (quality 88, each < 150 kB) and one 16-bit
    PNG, ``examples/backlit16.png`` (256 px long side, computed in floating point and
    stored in 16 bits so that 16-bit I/O is exercised), all through
    ``excnet.imageio.write_image``. Everything is deterministic (fixed seeds).

Usage
    python scripts/make_samples.py [--out examples]

Needs only the project's packages with the ``dev`` extra (scikit-image).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from skimage import data as skdata

from excnet.colour import linear_to_srgb, srgb_to_linear
from excnet.imageio import ImageFile, read_image, write_image

ROOT = Path(__file__).resolve().parent.parent
LONG_SIDE = 640
LONG_SIDE_16 = 256
JPEG_QUALITY = 88
MAX_JPEG_BYTES = 150_000

# An ellipse: centre x, centre y, radius x, radius y, all as fractions of width / height.
Ellipse = tuple[float, float, float, float]


@dataclass(frozen=True)
class Sample:
    name: str
    loader: str  # skimage.data function name
    ellipses: tuple[Ellipse, ...]
    horizon: float | None = None  # fraction of the height below which everything is subject
    darken_stops: float = 3.0
    brighten_stops: float = 1.0
    seed: int = 0


SAMPLES: tuple[Sample, ...] = (
    Sample(
        "astronaut",
        "astronaut",
        # body, head, helmet; the flag, backdrop and shuttle model are the bright background
        ellipses=((0.38, 0.74, 0.36, 0.40), (0.43, 0.22, 0.15, 0.19), (0.76, 0.86, 0.22, 0.18)),
        darken_stops=3.0,
        seed=1,
    ),
    Sample("coffee", "coffee", ellipses=((0.50, 0.52, 0.36, 0.48),), darken_stops=2.5, seed=2),
    Sample("chelsea", "chelsea", ellipses=((0.50, 0.58, 0.40, 0.62),), darken_stops=3.5, seed=3),
    Sample(
        "rocket",
        "rocket",
        ellipses=((0.50, 0.62, 0.06, 0.36),),
        horizon=0.86,
        darken_stops=3.0,
        brighten_stops=1.5,
        seed=4,
    ),
)


def resize_long_side(img: np.ndarray, long_side: int) -> np.ndarray:
    h, w = img.shape[:2]
    scale = long_side / max(h, w)
    size = (round(w * scale), round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(img, size, interpolation=interp)


def subject_mask(sample: Sample, h: int, w: int) -> np.ndarray:
    """A soft mask in [0, 1]: 1 on the subject, 0 on the bright background."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    mask = np.zeros((h, w), np.float32)
    for cx, cy, rx, ry in sample.ellipses:
        inside = ((xx - cx * w) / (rx * w)) ** 2 + ((yy - cy * h) / (ry * h)) ** 2 <= 1.0
        mask = np.maximum(mask, inside.astype(np.float32))
    if sample.horizon is not None:
        mask = np.maximum(mask, (yy >= sample.horizon * h).astype(np.float32))
    sigma = 0.035 * max(h, w)
    return np.clip(cv2.GaussianBlur(mask, (0, 0), sigma), 0.0, 1.0)


def make_backlit(rgb8: np.ndarray, sample: Sample) -> np.ndarray:
    """The back-lit version of an sRGB image, as float sRGB in [0, 1] (before noise)."""
    h, w = rgb8.shape[:2]
    lin = srgb_to_linear(rgb8.astype(np.float64) / 255.0)
    mask = subject_mask(sample, h, w)[..., None].astype(np.float64)
    gain = mask * 2.0 ** (-sample.darken_stops) + (1.0 - mask) * 2.0**sample.brighten_stops
    out = lin * gain
    # Veiling glare: light from the bright background scattered over the dark subject.
    background = np.clip(out * (1.0 - mask), 0.0, 1.0).mean(axis=2).astype(np.float32)
    glare = cv2.GaussianBlur(background, (0, 0), 0.08 * max(h, w))[..., None]
    out = out + 0.04 * glare * mask
    return linear_to_srgb(np.clip(out, 0.0, 1.0))  # clipping = blown highlights


def shadow_noise(srgb: np.ndarray, seed: int, strength: float = 1.0) -> np.ndarray:
    """Gaussian noise (in 0..1 units) that is strongest in the shadows."""
    rng = np.random.default_rng(seed)
    luma = srgb @ np.array([0.299, 0.587, 0.114])
    sigma = (0.6 + 2.4 * (1.0 - luma) ** 3) / 255.0 * strength
    return rng.normal(0.0, 1.0, srgb.shape) * sigma[..., None]


def provenance(sample: Sample, bits: int) -> ImageFile:
    """A template ImageFile whose EXIF says where the sample comes from."""
    exif = Image.Exif()
    exif[0x010E] = (
        f"Synthetic back-lit sample ({bits}-bit) made from skimage.data.{sample.loader} "
        f"by scripts/make_samples.py"
    )
    exif[0x0131] = "excnet scripts/make_samples.py"
    return ImageFile(np.zeros((1, 1, 3), np.uint8), "JPEG", exif=exif.tobytes())


def load(sample: Sample) -> np.ndarray:
    img = getattr(skdata, sample.loader)()
    return np.ascontiguousarray(img[..., :3])


def make_all(out_dir: Path) -> list[Path]:
    written: list[Path] = []
    for sample in SAMPLES:
        rgb = resize_long_side(load(sample), LONG_SIDE)
        srgb = make_backlit(rgb, sample)
        srgb = srgb + shadow_noise(srgb, sample.seed)
        pixels = np.clip(np.round(srgb * 255.0), 0, 255).astype(np.uint8)
        path = out_dir / f"backlit_{sample.name}.jpg"
        write_image(path, pixels, like=provenance(sample, 8), quality=JPEG_QUALITY)
        size = path.stat().st_size
        if size >= MAX_JPEG_BYTES:
            raise SystemExit(f"{path.name}: {size} bytes, over the {MAX_JPEG_BYTES} byte budget")
        written.append(path)

    # The 16-bit sample: computed in floating point from an area-downscaled source, so the
    # values carry far more than 256 levels; only a faint noise to keep the PNG small.
    sample = SAMPLES[1]
    small = resize_long_side(load(sample).astype(np.float32), LONG_SIDE_16)
    srgb = make_backlit(np.clip(small, 0, 255), sample)
    srgb = srgb + shadow_noise(srgb, sample.seed + 100, strength=0.5)
    pixels16 = np.clip(np.round(srgb * 65535.0), 0, 65535).astype(np.uint16)
    path = out_dir / "backlit16.png"
    write_image(path, pixels16, like=provenance(sample, 16))
    written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "examples", help="output folder")
    args = parser.parse_args(argv)
    for path in make_all(args.out):
        img = read_image(path)
        h, w = img.pixels.shape[:2]
        print(f"{path.name}: {w}x{h}, {img.bit_depth}-bit, {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
