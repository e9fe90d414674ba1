"""The image sets of `quality.py`: ground-truth pairs built from photos shipped in packages,
plus the real LOL eval15 pairs when they are on disk. Nothing is downloaded.

Each set is a list of `Sample(name, input, truth, held_out)`. Photos are split alternately by
name into a tuning half and a held-out half; a photo's every variant sits in the same half.

* backlit: the synthetic back-lit family (subject / horizon / gradient masks; 2-4 stops down
  inside, 0.5-1.5 stops up outside, shadow noise). Truth: the photo.
* mild: the whole photo 0.5, 1.0 or 1.5 stops down in linear light, light noise. Truth: the photo.
* dark: 2.5, 3.5 or 4.5 stops down with stronger sensor-like noise: our own stand-in for very
  dark frames, tuned on instead of LOL. Same photos as mild.
* well: well-exposed photos, not in mild/dark: the output is scored against the input.
* lowkey: a dark background and a lit subject (two real ones, and photos of `well` whose
  background outside a soft ellipse is taken 6 stops down to near-black); scored vs input.
* lol: LOL eval15 (real short exposures; truth = the long exposure). Evaluation only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from excnet.colour import linear_to_srgb, srgb_to_linear
from excnet.imageio import read_image

SIZE = 480
MASKS = ("subject", "horizon", "gradient")
LOL_DEFAULT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "lol_eval15"

#: Photos of each family (listed in benchmarks/RESULTS.md).
BACKLIT_PHOTOS = ("astronaut", "chelsea", "coffee", "china", "flower", "grace_hopper", "rocket")
MILD_PHOTOS = ("astronaut", "china", "coffee", "flower", "grace_hopper", "motorcycle")
WELL_PHOTOS = ("brick", "camera", "chelsea", "clock", "coins", "immunohistochemistry",
               "present", "rocket")
LOWKEY_REAL = ("hubble", "retina")
LOWKEY_MADE = ("camera", "chelsea", "present", "rocket")


@dataclass(frozen=True)
class Sample:
    name: str
    input: np.ndarray
    truth: np.ndarray
    held_out: bool


def _fit(img: np.ndarray, size: int) -> np.ndarray:
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = img[..., :3]
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    s = size / max(img.shape[:2])
    if s < 1:
        img = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)),
                         interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img, dtype=np.uint8)


def _decode(data: bytes) -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR),
                        cv2.COLOR_BGR2RGB)


def photo(name: str, size: int = SIZE) -> np.ndarray | None:
    """One package photo by our name, long side <= size; None when its package is missing."""
    try:
        if name in ("china", "flower"):
            from sklearn.datasets import load_sample_image
            return _fit(load_sample_image(f"{name}.jpg"), size)
        if name in ("grace_hopper", "present"):
            from matplotlib import cbook
            file = {"grace_hopper": "grace_hopper.jpg",
                    "present": "Minduka_Present_Blue_Pack.png"}[name]
            with cbook.get_sample_data(file) as f:
                return _fit(_decode(f.read()), size)
        from skimage import data
        if name == "motorcycle":
            return _fit(data.stereo_motorcycle()[0], size)
        if name == "hubble":
            return _fit(data.hubble_deep_field(), size)
        return _fit(getattr(data, name)(), size)
    except (ImportError, OSError, AttributeError):
        return None


def photos(names: tuple[str, ...], size: int = SIZE) -> dict[str, np.ndarray]:
    found = {n: photo(n, size) for n in sorted(names)}
    return {n: p for n, p in found.items() if p is not None}


def encode_srgb(lin: np.ndarray) -> np.ndarray:
    """Linear light (clipped to 0..1) as sRGB uint8."""
    return np.rint(linear_to_srgb(np.clip(lin, 0, 1)) * 255).astype(np.uint8)


def _noisy(lin: np.ndarray, rng: np.random.Generator, shot: float, floor: float) -> np.ndarray:
    return lin + rng.standard_normal(lin.shape) * np.sqrt(shot * np.maximum(lin, 0) + floor)


def make_mask(kind: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Soft mask (H, W) in [0, 1]: 1 where the scene is back-lit (dark)."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    cy, cx = rng.uniform(0.35, 0.65) * h / max(h, w), rng.uniform(0.35, 0.65) * w / max(h, w)
    if kind == "subject":
        ry, rx = rng.uniform(0.2, 0.35), rng.uniform(0.15, 0.3)
        d = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
        return 1 / (1 + np.exp((d - 1) / 0.12))
    if kind == "horizon":
        slope = rng.uniform(-0.3, 0.3)
        return 1 / (1 + np.exp(-(yy - cy - slope * (xx - cx)) / 0.03))
    angle = rng.uniform(0, 2 * np.pi)
    t = (yy - cy) * np.sin(angle) + (xx - cx) * np.cos(angle)
    return np.clip(0.5 + t / 0.6, 0, 1)


@dataclass(frozen=True)
class Backlight:
    """How `degrade_backlit` lit a photo: mask (H, W, 1), 1 where darkened; stops down inside
    and up outside."""

    mask: np.ndarray
    dark: float
    bright: float

    def gain(self, inside: bool = True, outside: bool = True) -> np.ndarray:
        """Linear-light gain (H, W, 1) of the darkening inside and/or the brightening outside."""
        m = self.mask
        return (m * 2.0**-self.dark if inside else m) + (1 - m) * (2.0**self.bright if outside
                                                                 else 1.0)


def degrade_backlit(truth: np.ndarray, kind: str, rng: np.random.Generator,
                    lit: list[Backlight] | None = None) -> np.ndarray:
    """A back-lit version of an sRGB uint8 photo (see the module docstring); `lit` collects how
    it was lit."""
    lin = srgb_to_linear(truth / 255.0)
    m = make_mask(kind, *truth.shape[:2], rng)[..., None]
    light = Backlight(m, rng.uniform(2, 4), rng.uniform(0.5, 1.5))
    if lit is not None:
        lit.append(light)
    lin = np.clip(lin * light.gain(), 0, 1)
    return encode_srgb(_noisy(lin, rng, 2e-5, 1e-7))


def backlit_set(size: int = SIZE, seed: int = 7, lit: list[Backlight] | None = None
                ) -> list[Sample]:
    """The synthetic back-lit set; `lit` collects how each sample was lit, in order."""
    rng = np.random.default_rng(seed)
    out = []
    for i, (name, truth) in enumerate(photos(BACKLIT_PHOTOS, size).items()):
        for kind in MASKS:
            out.append(Sample(f"{name}/{kind}", degrade_backlit(truth, kind, rng, lit), truth,
                              i % 2 == 1))
    return out


def _underexposed(stops: tuple[float, ...], shot: float, floor: float, seed: int,
                  size: int) -> list[Sample]:
    rng = np.random.default_rng(seed)
    out = []
    for i, (name, truth) in enumerate(photos(MILD_PHOTOS, size).items()):
        lin = srgb_to_linear(truth / 255.0)
        for s in stops:
            low = encode_srgb(_noisy(lin * 2.0**-s, rng, shot, floor))
            out.append(Sample(f"{name}/-{s:g}EV", low, truth, i % 2 == 1))
    return out


def mild_set(size: int = SIZE, seed: int = 11) -> list[Sample]:
    return _underexposed((0.5, 1.0, 1.5), 1e-5, 1e-7, seed, size)


def dark_set(size: int = SIZE, seed: int = 13) -> list[Sample]:
    return _underexposed((2.5, 3.5, 4.5), 4e-5, 4e-7, seed, size)


def well_set(size: int = SIZE) -> list[Sample]:
    return [Sample(n, p, p, i % 2 == 1)
            for i, (n, p) in enumerate(photos(WELL_PHOTOS, size).items())]


def lowkey_set(size: int = SIZE, seed: int = 17) -> list[Sample]:
    """Two real low-key photos, and made ones: the subject (a soft ellipse) as it is, the rest 6
    stops down in linear light (near-black, little detail left)."""
    rng = np.random.default_rng(seed)
    out = [Sample(n, p, p, i % 2 == 1)
           for i, (n, p) in enumerate(photos(LOWKEY_REAL, size).items())]
    for i, (name, img) in enumerate(photos(LOWKEY_MADE, size).items()):
        h, w = img.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        cy, cx = rng.uniform(0.4, 0.6) * h / max(h, w), rng.uniform(0.4, 0.6) * w / max(h, w)
        d = np.sqrt(((yy - cy) / 0.22) ** 2 + ((xx - cx) / 0.18) ** 2)
        m = (1 / (1 + np.exp((d - 1) / 0.05)))[..., None]
        lin = srgb_to_linear(img / 255.0) * (m + (1 - m) * 2.0**-6)
        made = encode_srgb(_noisy(lin, rng, 2e-6, 1e-8))
        out.append(Sample(f"{name}/lowkey", made, made, i % 2 == 1))
    return out


def lol_set(root: Path = LOL_DEFAULT) -> list[Sample]:
    """LOL eval15 pairs under root/{input,gt}; empty when the folder is not there."""
    root = Path(root)
    if not (root / "gt").is_dir():
        return []
    return [Sample(p.stem, read_image(root / "input" / p.name).pixels,
                   read_image(p).pixels, True)
            for p in sorted((root / "gt").glob("*.png"))]


SETS = {"lol": None, "backlit": backlit_set, "mild": mild_set, "dark": dark_set,
        "well": well_set, "lowkey": lowkey_set}
#: Sets scored against the input (the truth is the input): higher PSNR = less harm.
VERSUS_INPUT = ("well", "lowkey")
