"""Content-addressed objects on S3-compatible storage with Object Lock: the central object store.

The same interface as ``LocalObjects`` (put, put_bytes, open, read, exists, delete, delete_many,
names, age_seconds, tmp_files, rehash), keyed ``PREFIX/objects/ab/<64-hex SHA-256>`` in one
bucket, plus what the law maps onto the lock:

* **Retention** = the clip's deadline. Every version is written with a retain-until date in
  GOVERNANCE mode, so an ordinary S3 user cannot delete a recording before its deadline. GOVERNANCE,
  not COMPLIANCE: the law itself demands deletions before the deadline (the four-eyes early
  deletion, quarantined material, and expiry, which removes what falls due before the next run),
  and COMPLIANCE cannot be lifted by anyone. Only the store's deletion role may bypass it
  (``s3:BypassGovernanceRetention``); docs/CENTRAL.md has the permission model.
* **Legal hold** = a hold. A held version cannot be deleted even with the bypass right.
* **Deletion** removes every version of the object (and delete markers), with the bypass.

Why versions matter: with versioning, writing a key again adds a version instead of replacing
the bytes, so a forger can only add a newer version; the locked original stays and is what
``check`` compares against. Writing the same object twice (a dock rerunning after a crash) adds a
second, equally locked version of the same bytes, like LocalObjects' replace; ``delete`` removes
them all.

**Already-due objects.** S3 refuses a retain-until date in the past. A clip that arrives after
its deadline (the camera was away longer than two weeks) must still be stored before it is
deleted (the law wants it deleted, the log wants it recorded), and no object may sit unlocked.
So the retention date is never earlier than now + MIN_RETENTION (one hour, which also covers
clock skew between this machine and the storage): expiry, which deletes with the bypass right,
removes such an object at its next run regardless of the date.

**Integrity.** Each upload carries the object's SHA-256 as its checksum (``x-amz-checksum-sha256``,
checked and stored by AWS) and, with payload signing on, as the signed payload hash, which Ceph RGW
checks on receipt although it neither checks nor stores the newer checksum headers. The name
itself is a SHA-256 of the bytes, so ``check`` re-reads and hashes an object (full) or, quick,
trusts the storage's stored size and the SHA-256 recorded in the version's metadata at upload:
quick finds missing, truncated, replaced and unlocked objects, full also finds bytes altered in
place.

Endpoint, region and credentials come from boto3's own conventions (AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, ~/.aws/config and ~/.aws/credentials),
never from a command line. boto3 is imported here only, and only when an S3 store is opened:
the camera and the local store never load it.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import re
import tempfile
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO, BinaryIO

from evidence_store.errors import EvidenceError, IntegrityError, UsageError
from evidence_store.objects import (
    COPY_BLOCK,
    HEX64,
    OBJECT_ALTERED,
    OBJECT_MISSING,
    OBJECT_UNLOCKED,
    LockTarget,
    ObjectFault,
    ObjectRef,
    check_sha256,
    copy_hashed,
)

log = logging.getLogger(__name__)

S3_SCHEME = "s3://"
OBJECTS_PREFIX = "objects/"
LOCK_MODE = "GOVERNANCE"
#: The shortest retention any version gets (see "Already-due objects" above).
MIN_RETENTION = timedelta(hours=1)
#: The retention of an object written before its clip's deadline is known (a segment the dock
#: copies before the ingest checks the manifest): the ingest extends it to the deadline before it
#: commits (store/locks.py). Long enough for any ingest, short enough that an orphan of an ingest
#: that never committed is not locked much longer than it is kept.
ARRIVAL_RETENTION = timedelta(days=1)
#: Objects up to this size go up in one PUT; larger ones in parts of PART_SIZE (S3: 5 MiB..5 GiB).
MULTIPART_THRESHOLD = 256 << 20
PART_SIZE = 64 << 20
#: Bytes of an upload kept in memory while hashing before it is spooled to a temp file.
SPOOL_MEMORY = 128 << 20
#: Metadata key of the SHA-256 recorded with every version (Ceph does not keep sent checksums).
META_SHA256 = "sha256"
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
PREFIX_PART = re.compile(r"^[A-Za-z0-9!_.*'()-]+$")
MAX_PREFIX = 512
CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
                    "InvalidClientTokenId", "AuthorizationHeaderMalformed"}
NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound", "NoSuchVersion"}

HINT_VERSIONS = ("an older, locked version may still hold the original bytes: list the key's versions "
                 "(aws s3api list-object-versions) and compare their SHA-256 with the object's name")


class S3Error(EvidenceError):
    """The S3 storage cannot be used: unreachable, credentials refused, bucket unfit, access denied."""


@dataclass(frozen=True)
class LockStatus:
    """The current version's size and lock as the storage reports them."""

    size: int
    mode: str | None
    retain_until: datetime | None
    legal_hold: bool
    recorded_sha256: str | None
    version_id: str | None
    written: datetime

    def locked_at(self, now: datetime) -> bool:
        return self.legal_hold or (self.mode in ("GOVERNANCE", "COMPLIANCE")
                                   and self.retain_until is not None and self.retain_until > now)


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://BUCKET/PREFIX`` -> (bucket, prefix with a trailing "/" or ""). UsageError if malformed."""
    if not isinstance(url, str) or not url.startswith(S3_SCHEME):
        raise UsageError(f"not an S3 location: {str(url)[:80]!r}", "hint: write s3://BUCKET/PREFIX")
    bucket, _, prefix = url[len(S3_SCHEME):].partition("/")
    if not BUCKET_NAME.match(bucket) or ".." in bucket:
        raise UsageError(f"not an S3 bucket name: {bucket[:70]!r}",
                         "hint: 3-63 characters: lower-case letters, digits, dots and hyphens")
    prefix = prefix.strip("/")
    if len(prefix) > MAX_PREFIX or any(not PREFIX_PART.match(p) or p in (".", "..") for p in prefix.split("/") if prefix):
        raise UsageError(f"not a usable S3 prefix: {prefix[:70]!r}",
                         "hint: letters, digits and !_.*'()- in parts separated by single slashes")
    return bucket, prefix + "/" if prefix else ""


_LOADER = None


def make_client():
    """A boto3 S3 client configured by boto3's own conventions (environment, shared files).

    Checksums only where an operation requires them (Ceph Pacific ignores the newer headers; our
    uploads send their SHA-256 explicitly), payload signing also over HTTPS (so the storage checks
    the body's SHA-256 on receipt), few quick retries (an unreachable endpoint fails in seconds)."""
    try:
        import boto3
        import botocore.session
        from botocore.config import Config
    except ImportError:
        raise UsageError("objects on S3 need boto3, which is not installed",
                         "hint: pip install 'bodycam[central]'") from None
    # A new session per client (credentials and endpoint are read afresh, as boto3 documents),
    # but one loader of the service models per process: parsing them took 0.5 s per client.
    global _LOADER
    if _LOADER is None:
        import botocore.loaders

        _LOADER = botocore.loaders.create_loader()
    core = botocore.session.get_session()
    core.register_component("data_loader", _LOADER)
    config = Config(request_checksum_calculation="when_required", response_checksum_validation="when_required",
                    retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=60,
                    s3={"payload_signing_enabled": True}, max_pool_connections=16)
    with _translated("open the S3 client"):
        return boto3.session.Session(botocore_session=core).client("s3", config=config)


@contextmanager
def _translated(action: str, bucket: str | None = None, endpoint: str | None = None):
    """Turn botocore's exceptions into one-line S3Errors naming the problem."""
    from botocore import exceptions as bx

    where = f" at {endpoint}" if endpoint else ""
    try:
        yield
    except (bx.NoCredentialsError, bx.PartialCredentialsError) as exc:
        raise S3Error(f"no usable S3 credentials: {exc}",
                      "hint: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with "
                      "~/.aws/credentials (boto3's conventions; never on the command line)") from None
    except bx.NoRegionError:
        raise S3Error("no S3 region configured", "hint: set AWS_DEFAULT_REGION or region in ~/.aws/config") from None
    except (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError, bx.ConnectionClosedError) as exc:
        raise S3Error(f"cannot reach the S3 endpoint{where}: {type(exc).__name__}",
                      "hint: check AWS_ENDPOINT_URL (or endpoint_url in ~/.aws/config) and the network") from None
    except bx.ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "?"))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in CREDENTIAL_CODES:
            raise S3Error(f"the S3 storage{where} refused the credentials ({code})",
                          "hint: check the access key and secret that boto3 reads") from None
        if code == "NoSuchBucket" or (code == "404" and action.startswith("check bucket")):
            raise S3Error(f"S3 bucket {bucket} does not exist{where}") from None
        if code in ("AccessDenied", "403") or status == 403:
            raise S3Error(f"the S3 storage denied {action} in bucket {bucket} ({code})",
                          "hint: the S3 user lacks a permission; see the permission model in the README") from None
        message = " ".join(str(error.get("Message") or "").split())[:200]
        raise S3Error(f"S3 could not {action} in bucket {bucket}: {code} {message}".rstrip()) from None
    except bx.BotoCoreError as exc:
        raise S3Error(f"S3 could not {action}: {' '.join(str(exc).split())}") from None


def _not_found(exc) -> bool:
    error = getattr(exc, "response", {}).get("Error", {})
    return str(error.get("Code")) in NOT_FOUND_CODES


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


class _BodyReader(io.RawIOBase):
    """A botocore StreamingBody as a raw stream, so that ``open`` returns a buffered BinaryIO."""

    def __init__(self, body):
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class S3Objects:
    """Objects in ``s3://BUCKET/PREFIX``. Opening checks the bucket (versioning and Object Lock
    enabled) and raises one S3Error naming what is wrong, including an unreachable endpoint or
    refused credentials. Safe for concurrent writers: a PUT lands whole or not at all.

    ``default_retention``: used for ``put`` calls without ``retain_until`` (now + it); without
    either, a version is written without a retention of its own (the bucket's default, if any,
    applies; ``check`` reports it unlocked otherwise)."""

    #: The storage enforces retention and legal hold (verify checks them).
    locking = True

    def __init__(self, url: str, *, client=None, check: bool = True, default_retention: timedelta | None = None,
                 multipart_threshold: int = MULTIPART_THRESHOLD, part_size: int = PART_SIZE,
                 spool_dir: str | None = None, clock=None):
        self.url = url
        self.bucket, self.prefix = parse_s3_url(url)
        self.client = client or make_client()
        self.default_retention = default_retention
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.spool_dir = spool_dir
        self._now = clock or (lambda: datetime.now(UTC))
        if check:
            self.check_bucket()

    @property
    def endpoint(self) -> str:
        return self.client.meta.endpoint_url

    def _errors(self, action: str):
        return _translated(action, self.bucket, self.endpoint)

    def key(self, sha256: str) -> str:
        check_sha256(sha256)
        return f"{self.prefix}{OBJECTS_PREFIX}{sha256[:2]}/{sha256}"

    # -- the bucket --------------------------------------------------------------------------------

    def check_bucket(self) -> None:
        """S3Error unless the bucket exists, answers these credentials, and has versioning and
        Object Lock enabled (without both, retention dates and legal holds do not exist)."""
        with self._errors("check bucket versioning"):
            versioning = self.client.get_bucket_versioning(Bucket=self.bucket).get("Status")
        from botocore.exceptions import ClientError

        lock = None
        with self._errors("check bucket Object Lock"):
            try:
                config = self.client.get_object_lock_configuration(Bucket=self.bucket)
                lock = config.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ObjectLockConfigurationNotFoundError":
                    raise
        problems = []
        if versioning != "Enabled":
            problems.append(f"versioning is {(versioning or 'off').lower()}")
        if lock != "Enabled":
            problems.append("Object Lock is not enabled")
        if problems:
            raise S3Error(f"S3 bucket {self.bucket} cannot hold evidence: {' and '.join(problems)}",
                          "hint: Object Lock can only be chosen when a bucket is created: create a new "
                          "bucket with it (aws s3api create-bucket --object-lock-enabled-for-bucket)")

    # -- writing -----------------------------------------------------------------------------------

    def _retention(self, retain_until: datetime | None) -> datetime | None:
        now = self._now()
        if retain_until is None:
            if self.default_retention is None:
                return None
            retain_until = now + self.default_retention
        if retain_until.tzinfo is None:
            raise ValueError("retain_until must carry a time zone")
        # Whole seconds, rounded up: storage keeps seconds, and a date cut down to the second
        # would end the lock a fraction before the deadline.
        if retain_until.microsecond:
            retain_until = retain_until.replace(microsecond=0) + timedelta(seconds=1)
        floor = (now + MIN_RETENTION).replace(microsecond=0) + timedelta(seconds=1)
        return max(retain_until.astimezone(UTC), floor)

    def _lock_args(self, retain_until: datetime | None, legal_hold: bool) -> dict:
        args: dict = {}
        until = self._retention(retain_until)
        if until is not None:
            args.update(ObjectLockMode=LOCK_MODE, ObjectLockRetainUntilDate=until)
        if legal_hold:
            args["ObjectLockLegalHoldStatus"] = "ON"
        return args

    def put(self, src: BinaryIO, max_bytes: int, retain_until: datetime | None = None,
            legal_hold: bool = False) -> ObjectRef:
        """Copy ``src`` into the bucket under its SHA-256, locked until ``retain_until`` (GOVERNANCE;
        never earlier than now + MIN_RETENTION), with S3 legal hold if ``legal_hold``.

        The bytes are read once into a private spool (memory, then a temp file) while hashed, so
        what is uploaded is exactly what was hashed even if ``src`` changes meanwhile. Raises
        ObjectTooLarge if more than ``max_bytes`` arrive (nothing is stored), S3Error if the
        storage refuses."""
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY, dir=self.spool_dir) as spool:
            ref = copy_hashed(src, spool.write, max_bytes)
            spool.seek(0)
            self._upload(spool, ref, bytes.fromhex(ref.sha256), self._lock_args(retain_until, legal_hold))
        return ref

    def put_bytes(self, data: bytes, retain_until: datetime | None = None, legal_hold: bool = False) -> ObjectRef:
        digest = hashlib.sha256(data)
        ref = ObjectRef(digest.hexdigest(), len(data))
        self._upload(io.BytesIO(data), ref, digest.digest(), self._lock_args(retain_until, legal_hold))
        return ref

    def _upload(self, body: IO[bytes], ref: ObjectRef, digest: bytes, lock: dict) -> None:
        key = self.key(ref.sha256)
        common = dict(Bucket=self.bucket, Key=key, Metadata={META_SHA256: ref.sha256}, **lock)
        if ref.size <= self.multipart_threshold:
            with self._errors(f"store object {ref.sha256}"):
                self.client.put_object(Body=body, ContentLength=ref.size, ChecksumSHA256=_b64(digest), **common)
            return
        with self._errors(f"store object {ref.sha256}"):
            upload = self.client.create_multipart_upload(ChecksumAlgorithm="SHA256", **common)["UploadId"]
        try:
            parts = []
            for number, _offset in enumerate(range(0, ref.size, self.part_size), start=1):
                chunk = body.read(self.part_size)
                checksum = _b64(hashlib.sha256(chunk).digest())
                with self._errors(f"store part {number} of object {ref.sha256}"):
                    answer = self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload, PartNumber=number,
                                                     Body=chunk, ContentLength=len(chunk), ChecksumSHA256=checksum)
                parts.append({"ETag": answer["ETag"], "PartNumber": number, "ChecksumSHA256": checksum})
            with self._errors(f"complete object {ref.sha256}"):
                done = self.client.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload,
                                                             MultipartUpload={"Parts": parts})
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload)
            except Exception:  # the original error matters; the abort is best effort
                log.warning("could not abort the multipart upload of %s", ref.sha256)
            raise
        # Ceph RGW 16 (Pacific) ignores the lock headers of CreateMultipartUpload (measured): set
        # them on the new version. Until then the version is unlocked; a crash in between leaves
        # an object that ``check`` reports unlocked. On AWS this repeats the same lock, which S3 allows.
        version = {"VersionId": done["VersionId"]} if done.get("VersionId") else {}
        with self._errors(f"lock object {ref.sha256}"):
            if "ObjectLockRetainUntilDate" in lock:
                self.client.put_object_retention(Bucket=self.bucket, Key=key, **version, Retention={
                    "Mode": lock["ObjectLockMode"], "RetainUntilDate": lock["ObjectLockRetainUntilDate"]})
            if lock.get("ObjectLockLegalHoldStatus") == "ON":
                self.client.put_object_legal_hold(Bucket=self.bucket, Key=key, **version, LegalHold={"Status": "ON"})

    # -- reading -----------------------------------------------------------------------------------

    def exists(self, sha256: str) -> bool:
        from botocore.exceptions import ClientError

        with self._errors(f"look up object {sha256}"):
            try:
                self.client.head_object(Bucket=self.bucket, Key=self.key(sha256))
            except ClientError as exc:
                if _not_found(exc):
                    return False
                raise
        return True

    def open(self, sha256: str) -> BinaryIO:
        """Open the current version for reading. IntegrityError if it is missing."""
        from botocore.exceptions import ClientError

        with self._errors(f"read object {sha256}"):
            try:
                answer = self.client.get_object(Bucket=self.bucket, Key=self.key(sha256))
            except ClientError as exc:
                if _not_found(exc):
                    raise IntegrityError(f"object {sha256} is missing", where=sha256) from None
                raise
        return io.BufferedReader(_BodyReader(answer["Body"]), buffer_size=COPY_BLOCK)

    def read(self, sha256: str) -> bytes:
        with self.open(sha256) as f:
            return f.read()

    def rehash(self, sha256: str) -> tuple[str, int]:
        """SHA-256 and size of the current version's bytes. IntegrityError if missing."""
        digest = hashlib.sha256()
        size = 0
        with self.open(sha256) as f, self._errors(f"read object {sha256}"):
            while block := f.read(COPY_BLOCK):
                digest.update(block)
                size += len(block)
        return digest.hexdigest(), size

    def names(self) -> Iterator[str]:
        """Every object name in the bucket under the prefix, in order (for orphan checks)."""
        paginator = self.client.get_paginator("list_objects_v2")
        root = self.prefix + OBJECTS_PREFIX
        with self._errors("list objects"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=root):
                for entry in page.get("Contents", []):
                    name = entry["Key"].rpartition("/")[2]
                    if HEX64.match(name) and entry["Key"] == self.key(name):
                        yield name

    def age_seconds(self, name: str, now: float) -> float:
        """Seconds since the current version was written (0 if the object is gone)."""
        status = self.lock_status(name)
        return 0.0 if status is None else now - status.written.timestamp()

    def tmp_files(self) -> Iterator:
        """Nothing: an S3 PUT lands whole or not at all, so there are no half-written files.
        Interrupted multipart uploads are listed by ``incomplete_uploads``."""
        return iter(())

    def size(self, sha256: str) -> int | None:
        """The current version's size in bytes; None if the object is missing."""
        status = self.lock_status(sha256)
        return None if status is None else status.size

    def leftovers(self) -> int:
        """How many multipart uploads under the prefix are unfinished (in progress or interrupted)."""
        return sum(1 for _ in self.incomplete_uploads())

    def remove_stale(self, cutoff: float) -> int:
        """Abort the multipart uploads started before ``cutoff`` (a crashed upload of a large
        object; its camera still holds the clip). Their parts are no object and no evidence."""
        count = 0
        for key, upload_id, started in list(self.incomplete_uploads()):
            if started.timestamp() < cutoff:
                self.abort_upload(key, upload_id)
                count += 1
        return count

    def incomplete_uploads(self) -> Iterator[tuple[str, str, datetime]]:
        """(key, upload id, started) of every unfinished multipart upload under the prefix."""
        paginator = self.client.get_paginator("list_multipart_uploads")
        with self._errors("list unfinished uploads"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + OBJECTS_PREFIX):
                for upload in page.get("Uploads", []):
                    yield upload["Key"], upload["UploadId"], upload["Initiated"]

    def abort_upload(self, key: str, upload_id: str) -> None:
        with self._errors(f"abort upload {key}"):
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)

    # -- lock --------------------------------------------------------------------------------------

    def _versions(self, sha256: str) -> list[tuple[str, bool]]:
        """(version id, is a delete marker) of every version of the object's key."""
        key = self.key(sha256)
        found = []
        paginator = self.client.get_paginator("list_object_versions")
        with self._errors(f"list versions of object {sha256}"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=key):
                found += [(v["VersionId"], False) for v in page.get("Versions", []) if v["Key"] == key]
                found += [(m["VersionId"], True) for m in page.get("DeleteMarkers", []) if m["Key"] == key]
        return found

    def lock_status(self, sha256: str) -> LockStatus | None:
        """Size, lock and recorded SHA-256 of the current version; None if there is none."""
        from botocore.exceptions import ClientError

        with self._errors(f"look up object {sha256}"):
            try:
                head = self.client.head_object(Bucket=self.bucket, Key=self.key(sha256))
            except ClientError as exc:
                if _not_found(exc):
                    return None
                raise
        return LockStatus(size=head["ContentLength"], mode=head.get("ObjectLockMode"),
                          retain_until=head.get("ObjectLockRetainUntilDate"),
                          legal_hold=head.get("ObjectLockLegalHoldStatus") == "ON",
                          recorded_sha256=head.get("Metadata", {}).get(META_SHA256),
                          version_id=head.get("VersionId"), written=head["LastModified"])

    def set_legal_hold(self, sha256: str, on: bool) -> int:
        """Switch S3 legal hold on or off for every version of the object; returns how many.
        IntegrityError if the object has no version (it is missing)."""
        versions = [v for v, marker in self._versions(sha256) if not marker]
        if not versions:
            raise IntegrityError(f"object {sha256} is missing", where=sha256)
        for version in versions:
            with self._errors(f"set the legal hold of object {sha256}"):
                self.client.put_object_legal_hold(Bucket=self.bucket, Key=self.key(sha256), VersionId=version,
                                                  LegalHold={"Status": "ON" if on else "OFF"})
        return len(versions)

    def extend_retention(self, sha256: str, retain_until: datetime) -> int:
        """Move every version's retain-until date to ``retain_until`` where that is later (never
        earlier: shortening would need the bypass right); returns how many versions changed."""
        until = self._retention(retain_until)
        changed = 0
        for version, marker in self._versions(sha256):
            if marker:
                continue
            with self._errors(f"read the retention of object {sha256}"):
                head = self.client.head_object(Bucket=self.bucket, Key=self.key(sha256), VersionId=version)
            current = head.get("ObjectLockRetainUntilDate")
            if current is not None and current >= until:
                continue
            with self._errors(f"extend the retention of object {sha256}"):
                self.client.put_object_retention(Bucket=self.bucket, Key=self.key(sha256), VersionId=version,
                                                 Retention={"Mode": head.get("ObjectLockMode") or LOCK_MODE,
                                                            "RetainUntilDate": until})
            changed += 1
        return changed

    # -- deleting ----------------------------------------------------------------------------------

    def delete(self, sha256: str) -> bool:
        """Remove every version of the object, bypassing GOVERNANCE retention (expiry, lawful early
        deletion). Returns False if it was already gone. S3Error if a version is legally held
        (or under COMPLIANCE) or the user lacks the bypass right; the other versions are gone then."""
        return self.delete_many([sha256]) == 1

    def delete_many(self, sha256s: Iterable[str]) -> int:
        """``delete`` for many objects, in batches of up to 1,000 versions per request; returns how
        many objects had versions. Raises S3Error after the whole run if any version was refused."""
        batch: list[dict] = []
        refused: list[str] = []
        count = 0

        def flush():
            if not batch:
                return
            with self._errors("delete object versions"):
                answer = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": list(batch), "Quiet": True},
                                                    BypassGovernanceRetention=True)
            refused.extend(f"{e['Key'].rpartition('/')[2]} ({e.get('Code')})" for e in answer.get("Errors", []))
            batch.clear()

        for sha256 in sha256s:
            versions = self._versions(sha256)
            if not versions:
                continue
            count += 1
            for version, _marker in versions:
                batch.append({"Key": self.key(sha256), "VersionId": version})
                if len(batch) == 1000:
                    flush()
        flush()
        if refused:
            raise S3Error(f"S3 refused to delete {len(refused)} object version(s), first {refused[0]}",
                          "hint: a legal hold (a hold in the store) or COMPLIANCE retention protects them, "
                          "or this S3 user lacks s3:BypassGovernanceRetention")
        return count

    # -- checking ----------------------------------------------------------------------------------

    def check(self, sha256: str, size: int | None = None, *, quick: bool = False, deadline: datetime | None = None,
              held: bool | None = None, now: datetime | None = None) -> list[ObjectFault]:
        """Every fault of one object: missing, altered (size, recorded or re-hashed SHA-256), or
        unlocked (no retention in force and no legal hold; retained only until before
        ``deadline``; legal hold off although ``held``). ``quick`` trusts the storage's stored size
        and the SHA-256 recorded at upload instead of re-reading the bytes."""
        now = now or self._now()
        status = self.lock_status(sha256)
        if status is None:
            return [ObjectFault(OBJECT_MISSING, sha256, "is missing", HINT_VERSIONS)]
        faults = []
        if size is not None and status.size != size:
            faults.append(ObjectFault(OBJECT_ALTERED, sha256, f"has {status.size} bytes, the index says {size}",
                                      HINT_VERSIONS))
        elif status.recorded_sha256 != sha256:
            faults.append(ObjectFault(OBJECT_ALTERED, sha256, "its current version was not written by the store "
                                      f"(recorded SHA-256 {str(status.recorded_sha256)[:16]})", HINT_VERSIONS))
        elif not quick:
            try:
                digest, _ = self.rehash(sha256)
            except IntegrityError:
                return [ObjectFault(OBJECT_MISSING, sha256, "vanished while being read", HINT_VERSIONS)]
            if digest != sha256:
                faults.append(ObjectFault(OBJECT_ALTERED, sha256, f"was altered (its bytes hash to {digest[:16]}...)",
                                          HINT_VERSIONS))
        faults += self._lock_faults(sha256, status, deadline, held, now)
        return faults

    @staticmethod
    def _lock_faults(sha256: str, status: LockStatus, deadline, held, now) -> list[ObjectFault]:
        hint = "set the lock again (the store's deletion role can; see the README's permission model)"
        if held and not status.legal_hold:
            return [ObjectFault(OBJECT_UNLOCKED, sha256, "its clip is held but its legal hold is off", hint)]
        if status.legal_hold:
            return []
        until = status.retain_until
        if deadline is not None and (until is None or until < deadline.replace(microsecond=0)):
            return [ObjectFault(OBJECT_UNLOCKED, sha256, f"is retained only until {until or 'never'}, before its "
                                f"deadline {deadline.isoformat()}", hint)]
        if not status.locked_at(now):
            return [ObjectFault(OBJECT_UNLOCKED, sha256, "has no retention in force and no legal hold", hint)]
        return []

    def check_many(self, targets: Iterable[LockTarget], *, quick: bool = False, workers: int = 4
                   ) -> list[ObjectFault]:
        """``check`` for many objects, each against its own deadline and hold, on ``workers``
        threads (each request waits on the network); faults in the order of ``targets``."""
        targets = list(targets)
        now = self._now()
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            results = list(pool.map(lambda t: self.check(t.sha256, t.size, quick=quick, deadline=t.deadline,
                                                         held=t.held, now=now), targets))
        return [fault for faults in results for fault in faults]

