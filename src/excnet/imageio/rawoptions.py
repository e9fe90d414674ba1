"""How a camera RAW file is developed before restoration (the choices, not the decoder).

No NumPy or rawpy here: the command line builds its options from these names.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Output colour spaces: name → (LibRaw colour space, transfer curve: "srgb" or a gamma).
COLORSPACES: dict[str, tuple[str, float | str]] = {
    "srgb": ("sRGB", "srgb"),
    "adobe-rgb": ("Adobe", 563 / 256),
    "display-p3": ("P3D65", "srgb"),
}
#: LibRaw highlight modes offered: clip (every channel cut at white), blend (clipped areas
#: blended toward neutral; the default: least colour cast and the most levels in a clipped
#: sky's transition, see benchmarks/raw.py), reconstruct (LibRaw's rebuild, level 5 of 3..9).
HIGHLIGHT_MODES: dict[str, int] = {"clip": 0, "blend": 2, "reconstruct": 5}
#: The demosaic: Adaptive Homogeneity-Directed interpolation at full resolution.
DEMOSAIC = "AHD"
#: Exposure compensation range, in stops.
EXPOSURE_RANGE = (-3.0, 3.0)


@dataclass(frozen=True)
class RawOptions:
    """RAW development: camera white balance and colour matrix, no automatic brightening.

    ``exposure``: compensation in stops (highlights rolled off, not clipped). With a
    recovering highlight mode LibRaw leaves headroom above white; it is given back to the
    mid-tones (a fixed gain from the white balance, not from the image), so every mode
    renders mid-tones as bright as plain clipping does.
    ``colorspace``: a key of :data:`COLORSPACES`. ``highlights``: a key of
    :data:`HIGHLIGHT_MODES`.
    """

    exposure: float = 0.0
    colorspace: str = "srgb"
    highlights: str = "blend"

    def __post_init__(self) -> None:
        low, high = EXPOSURE_RANGE
        if not low <= self.exposure <= high:
            raise ValueError(f"exposure must be within {low:+g}..{high:+g} stops, "
                             f"got {self.exposure}")
        if self.colorspace not in COLORSPACES:
            raise ValueError(f"unknown colour space {self.colorspace!r} "
                             f"(choose from {', '.join(COLORSPACES)})")
        if self.highlights not in HIGHLIGHT_MODES:
            raise ValueError(f"unknown highlight mode {self.highlights!r} "
                             f"(choose from {', '.join(HIGHLIGHT_MODES)})")
