"""The one error of video restoration, and the one-line reason of a library's exception."""

from __future__ import annotations


class VideoError(Exception):
    """A video could not be read or written; the message is one line naming the file."""


def reason(exc: BaseException) -> str:
    msg = getattr(exc, "strerror", None) or str(exc)
    return msg.splitlines()[0] if msg else type(exc).__name__
