"""Redaction: faces found by a DNN detector, tracked, covered; the officer's edits applied.

Runs on the store's machine only (OpenCV, PyAV): nothing here is imported by the package's
``__init__`` or by the camera. ``engine.redact_stream`` is the entry point; ``release.py`` wraps it
into a logged, signed release package.
"""
