"""The clip format shared by camera, dock and store: age segments, journal, manifest, outbox.

Pure (stdlib + cryptography) so that the camera can import it; docs/FORMAT.md specifies it.
"""
