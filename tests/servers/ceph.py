"""A real S3 server with Object Lock for tests: a one-node Ceph cluster (Debian's ceph-mon,
ceph-osd, radosgw) on 127.0.0.1, started and stopped by the tests themselves.

Follows the measured recipe (shared/ceph-rgw.md): monitor, one OSD (memstore, or bluestore on a
sparse file), radosgw's beast frontend; no ceph-mgr, no systemd. Every file (configuration,
keyrings, data, logs, pid files, admin sockets) lives in one private temp folder, and the ports
of the monitor and radosgw are picked free, so two runs on one machine cannot collide (the OSD's
messenger tries each port of its range until one binds). S3 answers about 15 s after start with
memstore, 20 s with bluestore; stop takes about 5 s.

    server = CephRGW.start()               # ServerUnavailable(reason) if it cannot
    s3 = server.client()                   # boto3 client of the test user (bucket owner)
    server.env()                           # AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ... for boto3
    server.stop()                          # SIGTERM each daemon, wait for its PID to exit

Ceph runs as the test's user (root in a container): unlike PostgreSQL, its daemons do not refuse
root, and everything they touch is inside the private folder.

Run ``python -m tests.servers.ceph`` to start one by hand; it prints the boto3 variables and waits.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers._process import (
    Reaper,
    ServerUnavailable,
    current_user,
    free_ports,
    missing_programs,
    pid_alive,
    private_folder,
    run,
    stop_pid,
    tail,
)

#: Debian packages this fixture needs (for the project's set-up; about 270 MB).
PACKAGES = "ceph-mon ceph-osd radosgw ceph-common"
PROGRAMS = ["ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph", "ceph-authtool", "monmaptool"]
MON_ID = "a"
RGW_NAME = "client.rgw.a"
REGION = "default"  # RGW's default zonegroup; SigV4 needs some region name and RGW accepts this one
START_TIMEOUT = 120.0


@dataclass
class CephRGW:
    folder: Path
    objectstore: str
    mon_ports: tuple[int, int]
    rgw_port: int
    fsid: str = field(default_factory=lambda: str(uuid.uuid4()))
    access_key: str = ""
    secret_key: str = ""
    user: str = "bodycam-test"
    pids: dict[str, int] = field(default_factory=dict)
    _procs: dict[str, subprocess.Popen] = field(default_factory=dict, repr=False)
    _reaper: Reaper | None = field(default=None, repr=False)

    # -- life cycle -------------------------------------------------------------------------------

    @classmethod
    def start(cls, *, objectstore: str = "memstore") -> CephRGW:
        """Start monitor, OSD and radosgw; create an S3 user. ``objectstore``: "memstore" (RAM,
        fastest start; objects cost memory) or "bluestore" (a 20 GiB sparse file; for benchmarks).
        Raises ServerUnavailable with the reason (and the failing daemon's last log lines)."""
        if objectstore not in ("memstore", "bluestore"):
            raise ValueError(objectstore)
        reason = missing_programs(PROGRAMS, PACKAGES)
        if reason:
            raise ServerUnavailable(reason)
        folder = private_folder("bodycam-ceph-", current_user())
        v2, v1, rgw = free_ports(3)
        server = cls(folder=folder, objectstore=objectstore, mon_ports=(v2, v1), rgw_port=rgw,
                     _reaper=Reaper(folder))
        try:
            server._start()
        except BaseException:
            server.stop()
            raise
        return server

    @property
    def conf(self) -> Path:
        return self.folder / "ceph.conf"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.rgw_port}"

    def _write_conf(self) -> None:
        d = self.folder
        v2, v1 = self.mon_ports
        store = {
            "memstore": "osd objectstore = memstore\nmemstore device bytes = 4294967296",
            "bluestore": ("osd objectstore = bluestore\nbluestore block create = true\n"
                          "bluestore block size = 21474836480\nbluestore fsck on mkfs = false\n"
                          "osd memory target = 1073741824"),
        }[self.objectstore]
        self.conf.write_text(f"""\
[global]
fsid = {self.fsid}
mon host = [v2:127.0.0.1:{v2},v1:127.0.0.1:{v1}]
mon initial members = {MON_ID}
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv4 = true
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
run dir = {d}/run
admin socket = {d}/run/$cluster-$name.asok
pid file = {d}/run/$cluster-$name.pid
log file = {d}/log/$cluster-$name.log
mon cluster log file = {d}/log/cluster.log
crash dir = {d}/crash
log to stderr = false
err to stderr = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000

[mon]
mon data = {d}/mon/$cluster-$id

[osd]
osd data = {d}/osd/$cluster-$id
{store}

[client]
keyring = {d}/keyring.$name

[{RGW_NAME}]
rgw data = {d}/rgw
rgw frontends = beast endpoint=127.0.0.1:{self.rgw_port}
rgw enable usage log = false
""")

    def _ceph(self, *args: str, timeout: float = 60) -> str:
        return run(["ceph", "-c", str(self.conf), "-n", "client.admin", "--connect-timeout", "20", *args],
                   cwd=self.folder, timeout=timeout)

    def radosgw_admin(self, *args: str) -> str:
        """Run ``radosgw-admin`` as the cluster's admin (user and bucket administration)."""
        return run(["radosgw-admin", "-c", str(self.conf), "-n", "client.admin", *args], cwd=self.folder)

    def _spawn(self, name: str, args: list[str]) -> None:
        with open(self.folder / "log" / f"{name}.out", "ab") as log:  # the child keeps its own copy
            proc = subprocess.Popen(args, cwd=self.folder, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT)
        self._procs[name] = proc
        self.pids[name] = proc.pid
        self._reaper.watch(proc.pid)

    def _wait(self, what: str, ready, daemon: str, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            proc = self._procs[daemon]
            if proc.poll() is not None:
                raise ServerUnavailable(f"{daemon} exited ({proc.returncode}) before {what}: {self._log_tail(daemon)}")
            if ready():
                return
            if time.monotonic() > deadline:
                raise ServerUnavailable(f"no {what} after {timeout:.0f} s: {self._log_tail(daemon)}")
            time.sleep(0.3)

    def _log_tail(self, daemon: str) -> str:
        name = {"mon": f"mon.{MON_ID}", "osd": "osd.0", "rgw": RGW_NAME}[daemon]
        return tail(self.folder / "log" / f"ceph-{name}.log") or tail(self.folder / "log" / f"{daemon}.out")

    def _start(self) -> None:
        d = self.folder
        for sub in ("run", "log", "crash", "mon", "osd", "rgw"):
            (d / sub).mkdir()
        self._write_conf()
        conf = str(self.conf)
        # 1. Keys: the monitor's, and the admin's imported into the monitor's keyring.
        mon_keyring, admin_keyring = d / "keyring.mon", d / "keyring.client.admin"
        run(["ceph-authtool", "--create-keyring", str(mon_keyring), "--gen-key", "-n", "mon.", "--cap", "mon", "allow *"], cwd=d)
        run(["ceph-authtool", "--create-keyring", str(admin_keyring), "--gen-key", "-n", "client.admin",
             "--cap", "mon", "allow *", "--cap", "osd", "allow *", "--cap", "mds", "allow *", "--cap", "mgr", "allow *"], cwd=d)
        run(["ceph-authtool", str(mon_keyring), "--import-keyring", str(admin_keyring)], cwd=d)
        # 2. Monitor map, monitor file system, monitor.
        v2, v1 = self.mon_ports
        run(["monmaptool", "--create", "--fsid", self.fsid, "--addv", MON_ID,
             f"[v2:127.0.0.1:{v2},v1:127.0.0.1:{v1}]", str(d / "monmap")], cwd=d)
        run(["ceph-mon", "-c", conf, "--mkfs", "-i", MON_ID, "--monmap", str(d / "monmap"),
             "--keyring", str(mon_keyring)], cwd=d)
        self._spawn("mon", ["ceph-mon", "-f", "-c", conf, "-i", MON_ID])
        # 3. The OSD: its key made first and handed to "osd new" (ceph-osd --mkkey fails here).
        osd_uuid = str(uuid.uuid4())
        osd_key = run(["ceph-authtool", "--gen-print-key"], cwd=d).strip()
        (d / "osd-secrets.json").write_text(json.dumps({"cephx_secret": osd_key}))
        osd_id = self._ceph("osd", "new", osd_uuid, "-i", str(d / "osd-secrets.json"), timeout=90).strip()
        osd_data = d / "osd" / f"ceph-{osd_id}"
        osd_data.mkdir()
        (osd_data / "keyring").write_text(f"[osd.{osd_id}]\n\tkey = {osd_key}\n")
        run(["ceph-osd", "-c", conf, "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid], cwd=d, timeout=120)
        self._spawn("osd", ["ceph-osd", "-f", "-c", conf, "-i", osd_id])
        self._wait("OSD up", lambda: self._osd_up(osd_id), "osd")
        # 4. radosgw with its own key; ready when anonymous ListBuckets answers 200.
        self._ceph("auth", "get-or-create", RGW_NAME, "mon", "allow rw", "osd", "allow rwx",
                   "-o", str(d / f"keyring.{RGW_NAME}"))
        self._spawn("rgw", ["radosgw", "-f", "-c", conf, "-n", RGW_NAME])
        self._wait("S3 answer", self._rgw_answers, "rgw")
        # 5. The S3 user of the tests (owner of their buckets).
        self.access_key, self.secret_key = self.create_user(self.user)

    def _osd_up(self, osd_id: str) -> bool:
        try:
            dump = json.loads(self._ceph("osd", "dump", "--format", "json"))
        except (ServerUnavailable, ValueError):
            return False
        return any(str(o["osd"]) == osd_id and o["up"] == 1 and o["in"] == 1 for o in dump.get("osds", []))

    def _rgw_answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint + "/", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        """Stop radosgw, the OSD and the monitor (in that order), each by its PID, waiting for
        each to exit; then remove the folder."""
        for name in ("rgw", "osd", "mon"):
            proc = self._procs.get(name)
            if proc is not None and proc.poll() is None:
                stop_pid(proc.pid)
                proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
        if self._reaper is not None:
            self._reaper.release()

    def alive(self) -> bool:
        return all(pid_alive(pid) for pid in self.pids.values())

    # -- for tests --------------------------------------------------------------------------------

    def create_user(self, uid: str) -> tuple[str, str]:
        """A new S3 user; returns (access key, secret key)."""
        access, secret = secrets.token_hex(10).upper(), secrets.token_urlsafe(30)
        self.radosgw_admin("user", "create", f"--uid={uid}", f"--display-name={uid}",
                           f"--access-key={access}", f"--secret-key={secret}")
        return access, secret

    def env(self, access_key: str | None = None, secret_key: str | None = None) -> dict[str, str]:
        """boto3's own variables for this server and a user (default: the test user). The shared
        config and credentials files are pointed at nothing, so a developer's ~/.aws cannot mix in."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": access_key or self.access_key,
            "AWS_SECRET_ACCESS_KEY": secret_key or self.secret_key,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            # Pacific ignores the newer checksum headers (recipe); send them only where required.
            "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
            "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
        }

    def client(self, access_key: str | None = None, secret_key: str | None = None):
        """A boto3 S3 client for this server (path-style addressing, the test user by default)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=REGION,
            aws_access_key_id=access_key or self.access_key, aws_secret_access_key=secret_key or self.secret_key,
            config=Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required",
                          response_checksum_validation="when_required", retries={"max_attempts": 2, "mode": "standard"}))

    def create_bucket(self, name: str | None = None, *, object_lock: bool = True, versioning: bool = True,
                      client=None) -> str:
        """A new bucket (Object Lock implies versioning, as S3 defines it); returns its name."""
        client = client or self.client()
        name = name or f"test-{secrets.token_hex(6)}"
        client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=object_lock)
        if versioning and not object_lock:
            client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    began = time.monotonic()
    try:
        server = CephRGW.start(objectstore=argv[0] if argv else "memstore")
    except ServerUnavailable as exc:
        print(f"cannot start Ceph RGW: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"S3 answers after {time.monotonic() - began:.1f} s; folder {server.folder}")
        for key, value in server.env().items():
            print(f"export {key}={value}")
        print("Ctrl-C (or SIGTERM) stops it.", flush=True)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        began = time.monotonic()
        server.stop()
        print(f"stopped in {time.monotonic() - began:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
