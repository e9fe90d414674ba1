"""ICC profiles (v2, matrix/TRC) of the wide-gamut spaces a RAW file can be developed into.

Built from the published primaries, white point and transfer curve, so that no profile file
has to ship: Bradford-adapted to the D50 connection space as ICC requires.
"""

from __future__ import annotations

import struct
from functools import cache

import numpy as np

from ..colour import srgb_to_linear
from .rawoptions import COLORSPACES

_D50 = np.array([0.9642, 1.0, 0.8249])
_D65_XY = (0.3127, 0.3290)
_BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367],
                      [0.0389, -0.0685, 1.0296]])
# name → (description, primaries xy (R, G, B)); the transfer curves are in COLORSPACES
_SPACES: dict[str, tuple[str, tuple[tuple[float, float], ...]]] = {
    "adobe-rgb": ("Adobe RGB (1998) compatible", ((0.64, 0.33), (0.21, 0.71), (0.15, 0.06))),
    "display-p3": ("Display P3", ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060))),
}


def _xyz(xy: tuple[float, float]) -> np.ndarray:
    x, y = xy
    return np.array([x / y, 1.0, (1 - x - y) / y])


def _colorants(primaries: tuple[tuple[float, float], ...]) -> np.ndarray:
    """RGB → XYZ (D50) matrix: columns are the adapted colorants."""
    white = _xyz(_D65_XY)
    prim = np.stack([_xyz(p) for p in primaries], axis=1)
    m = prim * np.linalg.solve(prim, white)
    cone = _BRADFORD @ _D50 / (_BRADFORD @ white)
    adapt = np.linalg.inv(_BRADFORD) @ np.diag(cone) @ _BRADFORD
    return adapt @ m


def _s15(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def _xyz_tag(v: np.ndarray) -> bytes:
    return b"XYZ \0\0\0\0" + b"".join(_s15(c) for c in v)


def _curve_tag(transfer: float | str) -> bytes:
    if isinstance(transfer, float):
        return b"curv\0\0\0\0" + struct.pack(">IH", 1, round(transfer * 256)) + b"\0\0"
    x = np.linspace(0.0, 1.0, 1024)
    y = srgb_to_linear(x)
    table = np.round(y * 65535).astype(">u2").tobytes()
    return b"curv\0\0\0\0" + struct.pack(">I", 1024) + table


def _text_tag(kind: bytes, text: str) -> bytes:
    raw = text.encode("ascii") + b"\0"
    if kind == b"desc":  # textDescriptionType: ASCII, then empty Unicode and ScriptCode parts
        return b"desc\0\0\0\0" + struct.pack(">I", len(raw)) + raw + b"\0" * 12 + b"\0" * 67
    return b"text\0\0\0\0" + raw


@cache
def profile(name: str) -> bytes:
    """The ICC profile of colour space ``name`` (a key of rawoptions.COLORSPACES, not sRGB)."""
    desc, primaries = _SPACES[name]
    m = _colorants(primaries)
    curve = _curve_tag(COLORSPACES[name][1])
    tags = [(b"desc", _text_tag(b"desc", desc)), (b"cprt", _text_tag(b"text", "No copyright")),
            (b"wtpt", _xyz_tag(_D50)), (b"rXYZ", _xyz_tag(m[:, 0])),
            (b"gXYZ", _xyz_tag(m[:, 1])), (b"bXYZ", _xyz_tag(m[:, 2])),
            (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    offset = 128 + 4 + 12 * len(tags)
    table, body, placed = [], b"", {}
    for sig, data in tags:
        if data not in placed:  # the three identical curves share one copy
            placed[data] = offset + len(body)
            body += data + b"\0" * (-len(data) % 4)
        table.append(struct.pack(">4sII", sig, placed[data], len(data)))
    size = offset + len(body)
    header = struct.pack(">I4sI4s4s4s12s4s4sI4s4sQI", size, b"none", 0x02100000, b"mntr",
                         b"RGB ", b"XYZ ", b"\0" * 12, b"acsp", b"APPL", 0, b"none", b"none",
                         0, 0)
    header += _s15(_D50[0]) + _s15(_D50[1]) + _s15(_D50[2]) + b"none"
    header += b"\0" * (128 - len(header))
    return header + struct.pack(">I", len(tags)) + b"".join(table) + body
