"""The evidence store (see facade.py for the layout, the permissions and the transaction rule).

Modules by job: facade (Store: open, init, the transaction of one command), keys, devices,
ingest, access (clips, holds, justification, access log), expiry, records (files, limits and
the records commands return), base (what the job modules may use of the Store). None of them
writes SQL or touches the connection: their statements are methods of evidence_store.queries
(``Store.index``), and only the facade holds the connection. Every public name of the former
store.py is importable from here (its SQL constants now live in queries.py).
"""

from evidence_store.clip.clock import SystemClock  # noqa: F401 - tests patch the facade's clock here
from evidence_store.objects import ObjectRef  # noqa: F401
from evidence_store.store.expiry import _refused  # noqa: F401
from evidence_store.store.facade import (  # noqa: F401
    Store,  # noqa: F401
    _Tx,
)
from evidence_store.store.records import (  # noqa: F401
    CHECKPOINT_FILE,
    CHECKPOINT_MAX_BYTES,
    CONFIG_FILES,
    DEFAULT_SCRYPT_LOG_N,
    EXPIRED,
    HELD,
    HINT_CONFIG,
    HOLD_KINDS,
    IDENTITY_FILE,
    JUSTIFICATION_PENDING,
    JUSTIFIED,
    KEY_MODE,
    LOG_KEY_FILE,
    ORPHAN,
    QUARANTINED,
    RECIPIENTS_FILE,
    STORE_FILE,
    STORE_FORMAT,
    STORE_UMASK,
    STORED,
    TEXT_RETENTION,
    TMP_MAX_AGE,
    VKEY_FILE,
    ClipInfo,
    DeviceInfo,
    ExpiryResult,
    Holdings,
    IngestResult,
    NotAStore,
    _require_reason,
    _sha,
    _store_umask,
    current_actor,
)

__all__ = ["Store", "ObjectRef", "DeviceInfo", "IngestResult", "ClipInfo", "ExpiryResult", "NotAStore"]
