"""A dock whose store keeps its objects on S3 (a real Ceph RGW): when the storage cannot be used
(credentials refused, endpoint gone in the middle of a docking) every clip not yet stored stays
on the camera, and what was stored is sound and locked."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from dock.ingest import OUT_STORED
from evidence_store.store import Store
from tests.dock.helpers import assert_store_sound, outbox_clip_names, stored_clips

pytest.importorskip("boto3", reason="boto3 is in the 'test' and 'central' extras")
from evidence_store.objects_s3 import S3Error  # noqa: E402


class _Relay:
    """A TCP relay in front of the S3 endpoint that can be stopped: the endpoint going away
    (a network cut, a stopped gateway) while the dock works."""

    def __init__(self, target: str):
        host, _, port = target.removeprefix("http://").partition(":")
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.open: list[socket.socket] = []
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self.open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        self.stopped = True
        try:  # wakes the accepting thread (a bare close would leave it accepting on Linux)
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        for s in self.open:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


@pytest.fixture
def relay(ceph_rgw):
    relay = _Relay(ceph_rgw.endpoint)
    yield relay
    relay.stop()


@pytest.fixture
def store_root(tmp_path, s3_bucket, relay, monkeypatch) -> Path:
    monkeypatch.setenv("AWS_ENDPOINT_URL", relay.url)
    root = tmp_path / "store"
    Store.init(root, b"correct horse", scrypt_log_n=4, objects=f"s3://{s3_bucket}/dock").close()
    return root


def test_s3_dock_credentials_refused_clips_stay_on_camera(camera, make_ingester, store_root, ceph_rgw, monkeypatch):
    clips = [camera.clip(), camera.clip()]
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(S3Error, match="refused the credentials") as caught:  # the CLI's one line, exit 1
        make_ingester().ingest(camera.outbox.root)
    assert "\n" not in str(caught.value)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ceph_rgw.env()["AWS_SECRET_ACCESS_KEY"])
    assert outbox_clip_names(camera.outbox) == sorted(c.clip_id for c in clips)
    assert stored_clips(store_root) == {}


def test_s3_dock_endpoint_gone_mid_docking_rest_stays_on_camera(camera, make_ingester, store_root, relay, ceph_rgw,
                                                                 monkeypatch):
    clips = [camera.clip() for _ in range(3)]
    starts: list[str] = []

    def cut_after_first(step, clip_id):
        if step == "clip-start":
            starts.append(clip_id)
            if len(starts) == 2:
                relay.stop()

    report = make_ingester(fault=cut_after_first).ingest(camera.outbox.root)
    assert not report.ok
    assert [c.outcome for c in report.clips][0] == OUT_STORED
    assert all(c.outcome != OUT_STORED for c in report.clips[1:])
    assert any("cannot reach the S3 endpoint" in (c.reason or "") for c in report.clips[1:])
    monkeypatch.setenv("AWS_ENDPOINT_URL", ceph_rgw.endpoint)  # the endpoint is back
    assert list(stored_clips(store_root)) == [clips[0].clip_id]
    assert outbox_clip_names(camera.outbox) == sorted(c.clip_id for c in clips[1:])
    assert_store_sound(store_root)


def test_s3_dock_stored_clips_sound_and_locked(camera, ingester, store_root):
    clips = [camera.clip(), camera.clip()]
    report = ingester.ingest(camera.outbox.root)
    assert report.ok and [c.outcome for c in report.clips] == [OUT_STORED] * 2
    assert outbox_clip_names(camera.outbox) == []
    assert set(stored_clips(store_root)) == {c.clip_id for c in clips}
    assert_store_sound(store_root)  # verify: no object missing, altered or unlocked
