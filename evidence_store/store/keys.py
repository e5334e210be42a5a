"""Keys and signing: the log key, the verifier key, the recipients and identity, the published
checkpoint file and the administrator's files whose hashes the log keeps."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import stat
from datetime import datetime
from pathlib import Path

from evidence_store import checkpoint as cpmod
from evidence_store import events as ev
from evidence_store import logstate
from evidence_store.clip.age import Identity, Passphrase, decrypt_identity
from evidence_store.clip.fsutil import atomic_write
from evidence_store.clip.note import NoteSigner
from evidence_store.errors import EvidenceError, IntegrityError, UsageError
from evidence_store.log import EventLog
from evidence_store.store.base import StoreBase
from evidence_store.store.records import (
    CHECKPOINT_FILE,
    CHECKPOINT_MAX_BYTES,
    CONFIG_FILES,
    HINT_CONFIG,
    IDENTITY_FILE,
    LOG_KEY_FILE,
    RECIPIENTS_FILE,
    VKEY_FILE,
    _sha,
    _store_umask,
)

log = logging.getLogger(__name__)


class KeysMixin(StoreBase):
    """The store's keys methods (mixed into evidence_store.store.Store)."""

    @property
    def verifier_key(self) -> str:
        """The C2SP note verifier key of the store key."""
        return (self.root / VKEY_FILE).read_text().strip()

    @property
    def signer(self) -> NoteSigner:
        if self._signer is None:
            try:
                text = (self.root / LOG_KEY_FILE).read_text()
            except PermissionError:
                raise EvidenceError(f"{self.root / LOG_KEY_FILE}: permission denied",
                                    "hint: commands that write run as a member of the store's group "
                                    "(bodycam-store), and log.key must be group-readable (0640)") from None
            self._signer = NoteSigner.from_skey(text.strip())
        return self._signer

    @property
    def recipients(self) -> list[str]:
        return [line.strip() for line in (self.root / RECIPIENTS_FILE).read_text().splitlines()
                if line.strip() and not line.startswith("#")]

    def identities(self, passphrase: bytes, identity_file: str | os.PathLike | None = None) -> list[Identity]:
        """Open the passphrase-protected identity (``identity_file`` or the store's). Raises
        DecryptError ("wrong passphrase") or EvidenceError if the file is missing."""
        path = Path(identity_file) if identity_file else self.root / IDENTITY_FILE
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise EvidenceError(f"{path}: no identity file",
                                "hint: give it with --identity FILE or BODYCAM_IDENTITY") from None
        return decrypt_identity(data, Passphrase(passphrase))

    def now(self) -> datetime:
        return self.clock.now()

    @property
    def log(self) -> EventLog:
        """The event log for reading (proofs, checkpoints)."""
        return self._log()

    def checkpoint_file(self) -> bytes | None:
        """The signed note in CHECKPOINT_FILE, or None if there is none (a store from before it)."""
        try:
            with open(self.root / CHECKPOINT_FILE, "rb") as f:
                return f.read(CHECKPOINT_MAX_BYTES + 1)[:CHECKPOINT_MAX_BYTES + 1]
        except FileNotFoundError:
            return None

    def _publish_checkpoint(self, note: bytes) -> None:
        """Replace CHECKPOINT_FILE with ``note`` (just committed) unless it holds a checkpoint as
        large or larger: two commands finishing in the other order must not move it back. The
        folder's lock orders the read-compare-rename of concurrent writers. A failure is logged,
        not raised: the command itself has committed, and verify compares what the file holds."""
        new = cpmod.open_checkpoint(note, self.verifier, self.origin)
        try:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                old = self.checkpoint_file()
                if old is not None:
                    try:
                        if cpmod.open_checkpoint(old, self.verifier, self.origin).size >= new.size:
                            return
                    except EvidenceError:
                        log.warning("%s does not verify; replacing it with the checkpoint of size %d",
                                    CHECKPOINT_FILE, new.size)
                with _store_umask():
                    atomic_write(self.root / CHECKPOINT_FILE, note, mode=0o640)
            finally:
                os.close(fd)
        except OSError as exc:
            log.warning("cannot write %s: %s", self.root / CHECKPOINT_FILE, exc)

    def _check_admin_file(self, name: str) -> bytes:
        """The bytes of config file ``name`` after checking that only the store's administrator
        can have written it: a regular file owned by the folder's owner (or root), writable by
        nobody else. A group member can replace a file in the group-writable folder, but not with
        one owned by the folder's owner."""
        path = self.root / name
        try:
            st = os.lstat(path)
            admin = os.stat(self.root).st_uid
            if not stat.S_ISREG(st.st_mode):
                raise IntegrityError(f"{path} is not a regular file", HINT_CONFIG, where=name)
            if st.st_uid not in (0, admin):
                raise IntegrityError(f"{path} is owned by uid {st.st_uid}, not by the store's administrator "
                                     f"(uid {admin}, the folder's owner)", HINT_CONFIG, where=name)
            if st.st_mode & 0o022:
                raise IntegrityError(f"{path} is writable by others than the store's administrator "
                                     f"(mode {stat.S_IMODE(st.st_mode):04o})", HINT_CONFIG, where=name)
            return path.read_bytes()
        except OSError as exc:
            raise IntegrityError(f"cannot read {path}: {exc.strerror}", HINT_CONFIG, where=name) from None

    def config_hashes(self) -> dict[str, str]:
        """SHA-256 of each config file, after _check_admin_file. Raises IntegrityError."""
        return {name: _sha(self._check_admin_file(name)) for name in CONFIG_FILES}

    def logged_config(self) -> tuple[int, dict[str, str]] | None:
        """(log index, files) of the latest config event, or None."""
        row = self.index.latest_event_of_kind(ev.CONFIG)
        if row is None:
            return None
        state = logstate.derive([(row[0], json.loads(bytes(row[1])))], lambda i: "")
        return None if state.config is None else (row[0], state.config)

    def check_config(self, state: logstate.LogState | None = None) -> None:
        """Refuse (IntegrityError, one line) config files that differ from the ones the log recorded,
        or that others than the administrator could have written."""
        logged = (None if state.config is None else (state.config_index, state.config)) if state \
            else self.logged_config()
        current = self.config_hashes()
        if logged is None:
            raise IntegrityError("the log records no hashes of recipients, log.vkey and store.json "
                                 "(a store from before config events)", HINT_CONFIG, where="config")
        index, files = logged
        for name in CONFIG_FILES:
            if current[name] != files.get(name):
                raise IntegrityError(f"{name} differs from the copy recorded in the log (log index {index}); "
                                     "refusing to use it", HINT_CONFIG, where=name)

    def record_config(self) -> bool:
        """The administrator's command after changing recipients, log.vkey or store.json: log
        their hashes (config event). Returns False if the log already has exactly these."""
        admin = os.stat(self.root).st_uid
        if os.geteuid() not in (0, admin):
            raise UsageError("only the store's administrator (the folder's owner) may record its configuration")
        current = self.config_hashes()
        with self._command() as tx:
            logged = self.logged_config()
            if logged is not None and logged[1] == current:
                return False
            tx.append(ev.Event(ev.CONFIG, tx.time, "store", personal={"actor": self.actor},
                               data={"files": current}))
        return True
