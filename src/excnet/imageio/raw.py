"""Camera RAW files developed by LibRaw (through rawpy, imported on first use).

A RAW file becomes a 16-bit RGB image the restorer can lift: full-resolution AHD demosaic,
the camera's white balance and colour matrix into the chosen output space, no automatic
brightening (the restorer decides the lift), an optional exposure shift and a highlight mode
for clipped skies. LibRaw applies the file's orientation itself, so the pixels come out
upright and the carried EXIF says Orientation 1.

Nothing that loads OpenCV is imported before LibRaw starts (the tone table's roll-off and
the ICC profiles are imported when needed): a command's first RAW file is decoded while the
restorer's modules load, and OpenCV's import would hold the GIL for 0.1-0.2 s first.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import cache

import numpy as np

from .. import strips
from ..memory import mapped_ahead
from .formats import RAW, ImageError, tiff_data_cut
from .metadata import read_metadata
from .rawoptions import COLORSPACES, DEMOSAIC, HIGHLIGHT_MODES, RawOptions
from .reading import ImageFile, short, too_many_pixels

#: Bytes per sensor pixel that LibRaw's development allocates: its 4-channel 16-bit working
#: image and the 3-channel 16-bit output.
DEVELOP_BYTES = 8 + 6


class NotRawError(ImageError):
    """LibRaw does not recognise the file (it may still be a plain image with a RAW suffix)."""


def decode_raw(data: bytes, name: str, max_pixels: int, options: RawOptions) -> ImageFile:
    """Develop an in-memory camera RAW file (see the module docstring).

    The frame size is checked against ``max_pixels`` from the header, before anything is
    unpacked or demosaiced. Every failure raises ImageError with a one-line message.
    """
    if tiff_data_cut(data):  # LibRaw would print its own line to stderr, then fail
        raise ImageError(f"{name}: truncated or corrupt RAW data (image data runs past the end "
                         "of the file)")
    # The metadata is read (exiv2) while LibRaw develops the pixels without the GIL.
    with ThreadPoolExecutor(1, thread_name_prefix="excnet-meta") as side:
        meta = side.submit(read_metadata, data)
        pixels = _decode(data, name, max_pixels, options)
    space = COLORSPACES[options.colorspace][0]
    icc = None
    if space != "sRGB":
        from . import iccprofiles

        icc = iccprofiles.profile(options.colorspace)
    found = meta.result()
    return ImageFile(pixels=pixels, format=RAW, exif=found.exif, icc_profile=icc, bit_depth=16,
                     xmp=found.xmp, iptc=found.iptc)


def _decode(data: bytes, name: str, max_pixels: int, options: RawOptions) -> np.ndarray:
    """Open, check and develop the RAW file's pixels in LibRaw."""
    import rawpy

    raw = rawpy.RawPy()
    try:
        with _corrupt_data(name):
            try:
                raw.open_buffer(io.BytesIO(data))
            except rawpy.LibRawFileUnsupportedError:
                raise NotRawError(f"{name}: not a camera RAW file LibRaw can read") from None
        sizes = raw.sizes
        width, height = int(sizes.width), int(sizes.height)
        if width <= 0 or height <= 0 or sizes.raw_width <= 0 or sizes.raw_height <= 0:
            raise ImageError(f"{name}: zero-sized image ({width}x{height} pixels)")
        if width * height > max_pixels:
            raise too_many_pixels(name, width, height, max_pixels)
        # LibRaw unpacks on one thread; meanwhile another maps the memory the development
        # will allocate (0.2-0.5 s of page faults at 24 MP, measured, taken off the path).
        with mapped_ahead(DEVELOP_BYTES * int(sizes.raw_width) * int(sizes.raw_height)), \
                _corrupt_data(name):
            raw.unpack()
        _check_sensor(raw, name)
        return _develop(raw, options, name)
    finally:
        raw.close()


@contextmanager
def _corrupt_data(name: str) -> Iterator[None]:
    """LibRaw's failures on bad data as the one-line ImageError naming the file."""
    import rawpy

    try:
        yield
    except (rawpy.LibRawError, rawpy.LibRawFatalError, ValueError) as exc:
        raise ImageError(f"{name}: truncated or corrupt RAW data ({short(exc)})") from None


def _check_sensor(raw, name: str) -> None:  # noqa: ANN001 - rawpy.RawPy
    """Refuse mosaics LibRaw would demosaic into nonsense: an unknown colour filter array."""
    import rawpy

    try:
        kind = raw.raw_type
        pattern = raw.raw_pattern
        colours = raw.num_colors
    except rawpy.LibRawError as exc:
        raise ImageError(f"{name}: truncated or corrupt RAW data ({short(exc)})") from None
    if kind == rawpy.RawType.Flat:
        if pattern is None or colours < 3 or len(np.unique(pattern)) < 3:
            raise ImageError(f"{name}: unknown colour filter array (cannot demosaic)")


def _headroom(raw) -> float:  # noqa: ANN001 - rawpy.RawPy
    """How much darker LibRaw renders when it keeps highlights: the ratio of the largest to
    the smallest white-balance multiplier (it scales by the largest instead of the smallest)."""
    for mul in (raw.camera_whitebalance, raw.daylight_whitebalance):
        rgb = [float(m) for m in mul[:3]]
        if min(rgb) > 0:
            return max(rgb) / min(rgb)
    return 1.0


def _develop(raw, options: RawOptions, name: str) -> np.ndarray:  # noqa: ANN001
    """Demosaic to linear 16-bit RGB in LibRaw, then expose and encode with one table."""
    import rawpy

    params: dict[str, object] = {
        "demosaic_algorithm": getattr(rawpy.DemosaicAlgorithm, DEMOSAIC),
        "use_camera_wb": True,
        "output_color": getattr(rawpy.ColorSpace, COLORSPACES[options.colorspace][0]),
        "output_bps": 16,
        "no_auto_bright": True,
        "gamma": (1.0, 1.0),  # linear: exposure and the transfer curve are ours (tone_table)
        "highlight_mode": HIGHLIGHT_MODES[options.highlights],
        "adjust_maximum_thr": 0.0,  # LibRaw's default 0.75 rescales dim frames: a brightening
    }
    gain = 2.0 ** options.exposure
    if options.highlights != "clip":
        gain *= _headroom(raw)
    try:
        with _corrupt_data(name):
            linear = raw.postprocess(**params)
    except MemoryError:
        raise ImageError(f"{name}: not enough memory to develop the RAW image") from None
    if linear.ndim != 3 or linear.shape[2] != 3 or 0 in linear.shape:
        raise ImageError(f"{name}: zero-sized image after developing (shape {linear.shape})")
    # In place: no second 144 MB array (at 24 MP) to fault in.
    return strips.look_up(tone_table(gain, COLORSPACES[options.colorspace][1]), linear, linear)


@cache
def tone_table(gain: float, transfer: float | str) -> np.ndarray:
    """65536-entry table: linear value → gain, highlights rolled off (`colour.roll_off`: up
    to its knee the gain is exact, above it recovered highlights keep their gradation instead
    of clipping), then the transfer curve."""
    from ..colour import roll_off

    t = roll_off(np.arange(65536, dtype=np.float64) / 65535.0, gain)
    if transfer == "srgb":
        v = np.where(t <= 0.0031308, 12.92 * t, 1.055 * np.power(t, 1 / 2.4) - 0.055)
    else:
        v = np.power(t, 1.0 / float(transfer))
    return np.round(np.clip(v, 0.0, 1.0) * 65535.0).astype(np.uint16)
