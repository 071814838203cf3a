"""SQLite storage: the product's tables and repositories, and the generic replication machinery
(change capture, ordered apply, the log, snapshots, divergence archives) that knows no product."""

from talentnest.store._context import WriteReceipt, current_receipt
from talentnest.store._db import DB_FILENAME, ApplyResult, Database, Derived, LogEntry, Retention, storage_failure
from talentnest.store._time import iso_from_epoch, iso_now

__all__ = [
    "DB_FILENAME",
    "ApplyResult",
    "Database",
    "Derived",
    "LogEntry",
    "Retention",
    "WriteReceipt",
    "current_receipt",
    "iso_from_epoch",
    "iso_now",
    "storage_failure",
]
