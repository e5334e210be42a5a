"""Camera backends: each produces H.264 in MPEG-TS, one access unit at a time, to a sink.

``open_camera(config, clock)`` picks the backend named by the configuration. Heavy libraries
(PyAV, picamera2, OpenCV) are imported inside the backends that need them, so that importing this
package costs nothing and a missing library only matters for the backend that uses it.
"""

from device.camera.base import NULL_PACKET, TS_PACKET_SIZE, Camera, Sink, TsUnit, open_camera

__all__ = ["Camera", "Sink", "TsUnit", "NULL_PACKET", "TS_PACKET_SIZE", "open_camera"]
