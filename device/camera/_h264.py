"""A software H.264 encoder (libx264 through PyAV) for the cameras that have no hardware encoder."""

from __future__ import annotations

from fractions import Fraction

from device.errors import HardwareError

MICROSECONDS = Fraction(1, 1_000_000)


def open_x264(width: int, height: int, fps: float, bitrate: int):
    """An opened libx264 codec context taking yuv420p frames with microsecond timestamps.
    Raises HardwareError if the encoder cannot be opened."""
    import av

    try:
        codec = av.CodecContext.create("libx264", "w")
        codec.width, codec.height = width, height
        codec.pix_fmt = "yuv420p"
        codec.time_base = MICROSECONDS
        codec.framerate = Fraction(fps).limit_denominator(1001)
        codec.bit_rate = bitrate
        codec.gop_size = max(1, round(fps))  # a keyframe a second: segments rotate on one
        # zerolatency: no B-frames and no look-ahead, so each frame comes out as it goes in and
        # the first frame of an emergency recording reaches the disk at once.
        codec.options = {"preset": "ultrafast", "tune": "zerolatency"}
        codec.open()
    except av.FFmpegError as exc:
        raise HardwareError(f"cannot open the H.264 encoder: {exc}") from exc
    return codec
