"""Back-lit video restoration: stream frames in, restore them on their Y'CbCr planes, stream out.

* `restore` : `restore_video`, the frame loop, and what it reports (`VideoSummary`);
* `yuv`     : the method's luminance read from Y'CbCr planes, and the gain applied to them;
* `output`  : the output file: encoder settings, carried streams and tags, the encoder thread;
* `errors`  : `VideoError`, the one error (a line naming the file).

PyAV and torch are imported here: import this package only where video is restored.
"""

from .errors import VideoError
from .output import DEFAULT_CODECS, PRESETS, encoder_formats
from .restore import (
    HDR_TRANSFERS,
    LOW_RADIUS,
    VideoSummary,
    expected_frames,
    make_estimator,
    restore_video,
)
from .yuv import MATRICES, Scratch, YuvSpec, apply_gain_yuv, colour_tags, yuv_luminance

__all__ = ["DEFAULT_CODECS", "HDR_TRANSFERS", "LOW_RADIUS", "MATRICES", "PRESETS", "Scratch",
           "VideoError", "VideoSummary", "YuvSpec", "apply_gain_yuv", "colour_tags",
           "encoder_formats", "expected_frames", "make_estimator", "restore_video",
           "yuv_luminance"]
