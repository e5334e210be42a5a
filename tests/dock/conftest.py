"""Fixtures for the dock tests: a real store, an enrolled camera with a real outbox, real signed
clips (tests/clipfactory.py), a fake clock, and an ingester wired to them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from dock.ingest import Ingester
from dock.lock import DeviceLocks
from evidence_store.clip.outbox import DeviceRecord, Outbox
from evidence_store.store import Store
from tests.clipfactory import DeviceFixture, make_clip
from tests.clock import FakeClock


@dataclass
class Camera:
    device: DeviceFixture
    outbox: Outbox
    recipients: list[str]

    @property
    def device_id(self) -> str:
        return self.device.device_id

    def clip(self, **kwargs):
        return make_clip(self.outbox.root, self.device, self.recipients, **kwargs)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store_root(tmp_path) -> Path:
    root = tmp_path / "store"
    Store.init(root, b"correct horse", scrypt_log_n=4).close()
    return root


@pytest.fixture
def store(store_root):
    s = Store.open(store_root)
    yield s
    s.close()


@pytest.fixture
def state_dir(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "dock-state"
    monkeypatch.setenv("BODYCAM_DOCK_STATE", str(path))
    return path


def new_camera(store, root: Path, device_id: str = "cam-07", enroll: bool = True) -> Camera:
    device = DeviceFixture.new(device_id)
    outbox = Outbox(root)
    outbox.init(DeviceRecord(device_id, device.public_key))
    if enroll:
        outbox.write_enrollment(store.enroll(device_id, device.public_key))
    return Camera(device, outbox, store.recipients)


@pytest.fixture
def camera(store, tmp_path) -> Camera:
    return new_camera(store, tmp_path / "outbox")


@pytest.fixture
def make_ingester(store_root, state_dir, clock):
    def make(fault=None, **kwargs) -> Ingester:
        return Ingester(lambda: Store.open(store_root), locks=DeviceLocks(state_dir / "locks"), clock=clock,
                        fault=fault, state_dir=state_dir, **kwargs)

    return make


@pytest.fixture
def ingester(make_ingester) -> Ingester:
    return make_ingester()
