"""The SQLite file: its connection, the single write path, change capture, the log and apply.

Every write of the product goes through ``Database.write()``. Inside that transaction, TEMP
triggers generated from the schema hand each row change (the full row, primary key included,
as seed-form JSON) to ``tn_capture``; at commit the changes become one entry of the replication
log (``_tn_log``) with the next LSN and the current term, in the same SQLite transaction as the
data. Followers apply entries with ``Database.apply()``, strictly in LSN order, idempotently,
with the capture triggers removed, so applying never captures.

Each entry also carries its leader's *epoch*: a random number the leader draws when it starts leading
a term. Two processes never share one, so two logs that differ at an LSN differ in their term history
``(term, epoch, start_lsn)`` even when two leaders somehow wrote in the same term (issue 15, case 2).

The triggers live on this connection only (they are not in the file): a snapshot carries no
trigger, and a follower that never writes never pays for them. Product triggers must not write
to replicated tables: the leader captures their effect, and a follower would run them again.

A *request transaction* (``Database.request_transaction``) lets one request's writes and a last
statement of its caller (the answer kept for an Idempotency-Key) form one transaction and one entry.

**Derived tables** (``Derived``: a search index) are the product's tables that each node computes
from replicated ones: never captured, never in ``checksum()``, kept right by TEMP triggers that
the store installs on this connection at every open and keeps while it applies. A virtual table
must be declared derived (its shadow tables go with it); the store refuses to open otherwise.

**Entries of an older schema version** (a leader not yet upgraded) may lack columns this node
has: they are applied to the columns they carry, and the product's ``older_entries`` hook then
fixes what the newer schema derives from them (counters), in the same transaction.

All methods are synchronous and meant to be called from one thread (the event loop's), except
``read()``, which runs a function in a reader thread on a connection of its own
(``store._readers``); long work (snapshots) opens its own connections elsewhere.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import sqlite3
import struct
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from talentnest.errors import InvalidInput, LogDiverged, LogTruncated, SnapshotError, StaleTerm, StorageFailure, WriterBusy
from talentnest.store._context import WriteReceipt, current_receipt
from talentnest.store._readers import ReaderPool
from talentnest.store._time import iso_from_epoch

log = logging.getLogger("talentnest.store")

DB_FILENAME = "talentnest.db"
WAL_SIZE_LIMIT = 8 << 20  # bytes the WAL is cut back to when it restarts after a checkpoint
# With reader threads, the bulk of each checkpoint leaves the writer's connection (``_checkpoint_if_due``).
CHECKPOINT_FRAMES = 1000  # pages in the WAL that call for one: SQLite's own automatic checkpoint's threshold
CHECKPOINT_CHECK_EVERY = 32  # commits between two looks at the WAL's header
_WAL_INDEX = struct.Struct("=I12xI76xI")  # the -shm file's first bytes: version, mxFrame (at 16), nBackfill (at 96)
_WAL_INDEX_VERSION = 3007000
MAX_INT64 = 2**63 - 1
# Tables of the store itself that are never captured: the log, the term history, local metadata.
LOCAL_TABLES = ("_tn_log", "_tn_terms", "_tn_meta")
# _tn_meta keys that travel with a snapshot; every other key belongs to the node that wrote it.
SHARED_META = ("schema_version",)
INTERNAL_SCHEMA = """
CREATE TABLE IF NOT EXISTS _tn_log (
    lsn INTEGER PRIMARY KEY,
    term INTEGER NOT NULL,
    ts TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    changes TEXT NOT NULL,
    epoch INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS _tn_terms (term INTEGER PRIMARY KEY, start_lsn INTEGER NOT NULL, epoch INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS _tn_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS _tn_requests (
    key TEXT PRIMARY KEY,
    lsn INTEGER NOT NULL,
    created REAL NOT NULL,
    status INTEGER,
    headers TEXT,
    body TEXT
);
"""
_CAPTURE_PREFIX = "tn_capture_"
T = TypeVar("T")
_INSERT_LOG = "INSERT INTO _tn_log(lsn, term, ts, schema_version, changes, epoch) VALUES (?, ?, ?, ?, ?, ?)"
_INSERT_TERM = "INSERT OR IGNORE INTO _tn_terms(term, start_lsn, epoch) VALUES (?, ?, ?)"
# Columns later releases added to the store's own tables (an older file gains them when it opens).
_ADDED_COLUMNS = (("_tn_log", "epoch", "INTEGER NOT NULL DEFAULT 0"), ("_tn_terms", "epoch", "INTEGER NOT NULL DEFAULT 0"))
_SELECT_ENTRIES = "SELECT lsn, term, ts, schema_version, changes, epoch FROM _tn_log"
# SQLite's primary result codes that blame the disk or the file, not the statement.
_STORAGE_CODES = {
    sqlite3.SQLITE_FULL: "the disk is full",
    sqlite3.SQLITE_IOERR: "a disk I/O error",
    sqlite3.SQLITE_READONLY: "the database file is read-only",
    sqlite3.SQLITE_CANTOPEN: "the database file cannot be opened",
    sqlite3.SQLITE_CORRUPT: "the database file is damaged",
    sqlite3.SQLITE_NOTADB: "the database file is damaged",
}
_DAMAGE_CODES = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
# What the writability check writes (and deletes): enough that a nearly full disk fails it too.
_WRITABLE_PROBE_BYTES = 256 * 1024


def storage_failure(exc: BaseException) -> StorageFailure | None:
    """``exc`` as a StorageFailure when SQLite blames the disk or the file for it, else None."""
    if isinstance(exc, StorageFailure):
        return exc
    code = getattr(exc, "sqlite_errorcode", None) if isinstance(exc, sqlite3.Error) else None
    if code is None or (code & 0xFF) not in _STORAGE_CODES:
        return None
    primary = code & 0xFF
    return StorageFailure(f"{_STORAGE_CODES[primary]} ({exc})", damaged=primary in _DAMAGE_CODES)


@dataclass(frozen=True)
class LogEntry:
    """One committed write transaction: its LSN, term, time, schema version and row changes.

    ``changes`` is the JSON text of a list of ``{"operation", "table", "data"}`` objects, kept
    as text so that it travels to followers without being parsed and re-encoded.
    """

    lsn: int
    term: int
    timestamp: str
    schema_version: int
    changes: str
    epoch: int = 0  # the random identity of the leader that wrote it (0: written before epochs)
    # ``changes`` parsed, when the entry came parsed off the wire (apply uses it instead of parsing again).
    decoded: list | None = field(default=None, compare=False, repr=False)

    @property
    def position(self) -> tuple[int, int]:
        """(term, epoch): which leader's history this entry belongs to."""
        return (self.term, self.epoch)

    def to_json(self) -> str:
        return (
            f'{{"lsn":{self.lsn},"term":{self.term},"epoch":{self.epoch},"timestamp":{json.dumps(self.timestamp)},'
            f'"schema_version":{self.schema_version},"changes":{self.changes}}}'
        )

    @classmethod
    def from_dict(cls, item: dict, *, changes_text: str | None = None) -> LogEntry:
        """Build from a decoded wire entry; raise InvalidInput on any malformed field. ``changes_text`` is the
        JSON text ``item["changes"]`` was parsed from, when the caller kept it: it is kept as it came,
        instead of being written out again."""
        try:
            lsn, term = item["lsn"], item["term"]
            changes = item["changes"]
            timestamp = item.get("timestamp") or ""
            schema_version = item.get("schema_version", 1)
            epoch = item.get("epoch", 0)
        except (KeyError, TypeError, AttributeError):
            raise InvalidInput("log entry needs lsn, term and changes") from None
        if not (_is_int(lsn) and _is_int(term) and _is_int(schema_version) and _is_int(epoch)):
            raise InvalidInput("log entry lsn, term, epoch and schema_version must be integers")
        if not 0 <= epoch <= MAX_INT64:
            raise InvalidInput(f"log entry epoch must be 64-bit, got {epoch}")
        if not (0 < lsn <= MAX_INT64 and 0 <= term <= MAX_INT64 and 0 <= schema_version <= MAX_INT64):
            raise InvalidInput(
                f"log entry lsn (from 1), term and schema_version must be 64-bit, got {lsn}, {term}, {schema_version}"
            )
        if not isinstance(changes, list) or not isinstance(timestamp, str):
            raise InvalidInput("log entry changes must be a list")
        for change in changes:
            if not (
                isinstance(change, dict)
                and change.get("operation") in ("INSERT", "UPDATE", "DELETE")
                and isinstance(change.get("table"), str)
                and isinstance(change.get("data"), dict)
            ):
                raise InvalidInput("each change needs operation INSERT/UPDATE/DELETE, table and data")
        if changes_text is None:
            text = json.dumps(changes, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            return cls(lsn, term, timestamp, schema_version, text, epoch)
        return cls(lsn, term, timestamp, schema_version, changes_text, epoch, changes)


@dataclass(frozen=True)
class Derived:
    """A table the product derives from replicated tables, which every node keeps for itself.

    ``name`` is the table (an FTS5 table's shadow tables go with it). ``functions`` are the SQL
    functions its triggers and ``fill`` call, registered on every connection of the store before
    migrations run. ``triggers`` are ``CREATE TEMP TRIGGER`` statements that keep it right
    through every write and every apply. The statements of ``clear`` then ``fill`` rebuild it
    from scratch.
    """

    name: str
    functions: Mapping[str, tuple[int, Callable]] = field(default_factory=dict)
    triggers: Sequence[str] = ()
    fill: Sequence[str] = ()
    clear: Sequence[str] = ()


OlderEntries = Callable[[sqlite3.Connection, int, list[dict]], None]


@dataclass(frozen=True)
class ApplyResult:
    """What ``apply`` did: the LSN now applied, how many entries it applied, and whether it
    stopped at a gap (the caller must then fetch entries after ``applied_lsn``)."""

    applied_lsn: int
    applied: int
    gap: bool


@dataclass(frozen=True)
class Retention:
    """How much of the log a node keeps; older positions are served by a snapshot.

    ``max_bytes`` counts the characters of the entries' change text (their size on the wire).
    """

    max_entries: int = 100_000
    max_bytes: int = 64 * 1024 * 1024


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _drop_temp_triggers(conn: sqlite3.Connection, *, capture: bool) -> None:
    """Drop this connection's capture triggers (``capture``), or its other (derived tables') ones."""
    compare = "=" if capture else "!="
    for (name,) in conn.execute(
        f"SELECT name FROM temp.sqlite_master WHERE type = 'trigger' AND substr(name, 1, ?) {compare} ?",
        (len(_CAPTURE_PREFIX), _CAPTURE_PREFIX),
    ).fetchall():
        conn.execute(f"DROP TRIGGER temp.{_sql_ident(name)}")


def _sql_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _exact_real(value: float) -> str:
    """A REAL as JSON text that reads back as the same double (SQLite's JSON keeps 15 digits)."""
    return repr(value)


class _Table:
    """A replicated table's shape, its capture triggers, and the statements that apply a change."""

    def __init__(self, name: str, columns: list[str], pk: list[str], text_columns: set[str]):
        self.name = name
        self.columns = columns
        self.column_set = frozenset(columns)
        self.pk = pk
        self.text_columns = text_columns
        cols = ", ".join(_sql_ident(c) for c in columns)
        marks = ", ".join("?" for _ in columns)
        updates = ", ".join(f"{_sql_ident(c)} = excluded.{_sql_ident(c)}" for c in columns if c not in pk)
        conflict = ", ".join(_sql_ident(c) for c in pk)
        action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
        table = _sql_ident(name)
        self.upsert_sql = f"INSERT INTO {table} ({cols}) VALUES ({marks}) ON CONFLICT ({conflict}) {action}"
        self.delete_sql = f"DELETE FROM {table} WHERE " + " AND ".join(f"{_sql_ident(c)} = ?" for c in pk)
        self.select_sql = f"SELECT {cols} FROM {table} ORDER BY {conflict}"
        self._partial_upserts: dict[frozenset[str], str] = {}

    def upsert_sql_for(self, columns: frozenset[str]) -> tuple[str, list[str]]:
        """The upsert of a change that carries only ``columns`` (an older schema's row): the others
        keep their value, or take their default on insert."""
        ordered = [c for c in self.columns if c in columns]
        sql = self._partial_upserts.get(columns)
        if sql is None:
            names = ", ".join(_sql_ident(c) for c in ordered)
            marks = ", ".join("?" for _ in ordered)
            updates = ", ".join(f"{_sql_ident(c)} = excluded.{_sql_ident(c)}" for c in ordered if c not in self.pk)
            conflict = ", ".join(_sql_ident(c) for c in self.pk)
            action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
            sql = f"INSERT INTO {_sql_ident(self.name)} ({names}) VALUES ({marks}) ON CONFLICT ({conflict}) {action}"
            self._partial_upserts[columns] = sql
        return sql, ordered

    def triggers(self) -> list[str]:
        """TEMP triggers handing each changed row, as one seed-form change, to ``tn_capture``.

        The change text is built in SQL (one call into Python per row). An UPDATE that moves
        the primary key is captured as a DELETE of the old row before the UPDATE, so a
        follower's upsert by key does not leave the old row behind.
        """

        def change(op: str, prefix: str) -> str:
            head = f'{{"operation":"{op}","table":{json.dumps(self.name)},"data":'
            pairs = ", ".join(f"{_sql_text(c)}, {self._value(prefix, c)}" for c in self.columns)
            return f"tn_capture({_sql_text(head)} || json_object({pairs}) || '}}')"

        moved = " OR ".join(f"OLD.{_sql_ident(c)} IS NOT NEW.{_sql_ident(c)}" for c in self.pk)
        bodies = {
            "INSERT": f"SELECT {change('INSERT', 'NEW')};",
            "UPDATE": f"SELECT {change('DELETE', 'OLD')} WHERE {moved}; SELECT {change('UPDATE', 'NEW')};",
            "DELETE": f"SELECT {change('DELETE', 'OLD')};",
        }
        return [
            f"CREATE TEMP TRIGGER {_sql_ident(f'{_CAPTURE_PREFIX}{self.name}_{op.lower()}')} "
            f"AFTER {op} ON main.{_sql_ident(self.name)} BEGIN {body} END"
            for op, body in bodies.items()
        ]

    def _value(self, prefix: str, column: str) -> str:
        ref = f"{prefix}.{_sql_ident(column)}"
        if column in self.text_columns:
            return ref  # TEXT affinity stores every number as text: never a REAL here
        return f"CASE WHEN typeof({ref}) = 'real' THEN json(tn_real({ref})) ELSE {ref} END"


Migration = tuple[int, str]


class Database:
    """One node's SQLite database with its replication log.

    ``write()`` is the only way to change product data. ``apply()`` is the only way a follower
    changes it. ``write_guard`` (set by whoever decides leadership) is called before every
    write and raises ``NotLeader`` to refuse it; ``term`` tags new entries.

    ``capture=False`` builds a database without triggers and without log (for benchmarks only:
    nothing written through it can be replicated).

    ``derived`` declares the product's derived tables; ``older_entries(conn, schema_version,
    changes)`` is called after applying an older schema's entry (see the module docstring);
    ``readers`` is the number of reader threads of ``read()`` (0: none of its own, reads run in the
    event loop's default executor; the simulation's runs them inline, see ``store._readers``). Two
    by default: one slow read still leaves another thread for the next, and each thread more only
    adds contention for the GIL, which SQLite drops and takes back at every row (with two, a list
    read costs 20-36% less CPU under 8 clients than with four: benchmarks/README.md, issue 12).
    """

    def __init__(
        self,
        data_dir: Path,
        migrations: Sequence[Migration],
        *,
        retention: Retention | None = None,
        clock: Callable[[], float] = time.time,
        synchronous: str = "NORMAL",
        capture: bool = True,
        derived: Sequence[Derived] = (),
        older_entries: OlderEntries | None = None,
        readers: int = 2,
    ):
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / DB_FILENAME
        self.migrations = list(migrations)
        self.schema_version = max((v for v, _ in self.migrations), default=0)
        self.retention = retention or Retention()
        self.clock = clock
        self.synchronous = synchronous
        self.capture = capture
        self.term = 0
        self.epoch = 0  # set with ``term`` by whoever leads: the leader's random identity for this term
        self.write_guard: Callable[[], None] | None = None
        self._conn: sqlite3.Connection | None = None
        self._tables: dict[str, _Table] = {}
        self._triggers_installed = False
        # The triggers append to this very list (its bound append is the SQL function).
        self._pending: list[str] = []
        self._listeners: list[Callable[[int], None]] = []
        self._failure_listeners: list[Callable[[StorageFailure], None]] = []
        self._release_listeners: list[Callable[[], None]] = []
        self._last_lsn = 0
        self._last_term = 0
        self._last_epoch = 0
        self._first_lsn = 0
        self._log_bytes = 0
        self._writes_since_trim = 0
        self._writes_since_checkpoint_check = 0
        self._checkpoints_finished = 0  # the reader threads' checkpoint count when the writer last finished one
        self.inline_checkpoints = 0  # checkpoints the writer ran itself (each finishing a reader thread's)
        self.derived = list(derived)
        self.older_entries = older_entries
        self._functions: dict[str, tuple[int, Callable]] = {}
        for item in self.derived:
            self._functions.update(item.functions)
        self._checksum: tuple[int, str] | None = None
        self._readers = ReaderPool(self.path, readers, self._functions)
        self._request: ContextVar[RequestTransaction | None] = ContextVar(f"talentnest_request_{id(self)}", default=None)

    def now(self) -> str:
        """The current time as it is stored (ISO 8601 UTC, milliseconds), from this database's clock."""
        return iso_from_epoch(self.clock())

    def register_function(self, name: str, nargs: int, fn: Callable) -> None:
        """A deterministic SQL function the product's queries use (kept across reopen)."""
        self._functions[name] = (nargs, fn)
        if self._conn is not None:
            self._conn.create_function(name, nargs, fn, deterministic=True)

    # --- lifecycle -------------------------------------------------------------------------

    def open(self) -> Database:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=5000")
        # Rows that INSERT OR REPLACE deletes fire delete triggers only with this on.
        conn.execute("PRAGMA recursive_triggers=ON")
        conn.execute("PRAGMA temp_store=MEMORY")
        # A long read (a snapshot being sent, a reader thread's transaction) holds checkpoints back and the
        # WAL grows past its usual 4 MiB; without a limit the file keeps its largest size for ever (20 MiB
        # seen on a 64 MiB disk in the nemesis run). With it the next reset cuts the file back.
        conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        if self._readers.size:
            conn.execute("PRAGMA wal_autocheckpoint=0")  # the reader threads checkpoint: ``_checkpoint_if_due``
        conn.create_function("tn_capture", 1, self._pending.append)
        conn.create_function("tn_real", 1, _exact_real, deterministic=True)
        for name, (nargs, fn) in self._functions.items():
            conn.create_function(name, nargs, fn, deterministic=True)
        self._conn = conn
        self._triggers_installed = False
        self._checksum = None
        conn.executescript(INTERNAL_SCHEMA)
        self._add_internal_columns()
        self._migrate()
        self._drop_stored_triggers()
        self._load_tables()
        self._install_derived_triggers()
        self._load_log_state()
        self._readers.open()
        return self

    def close(self) -> None:
        """Close the readers' connections (once their reads are done) and the writer's."""
        with suppress(TimeoutError):
            self._readers.close()
        if self._conn is not None:
            with suppress(sqlite3.Error):
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()
            self._conn = None
            self._triggers_installed = False

    def reopen(self) -> None:
        """Close and open again."""
        self.close()
        self.open()

    def shutdown(self) -> None:
        """Close, and stop the reader threads for good."""
        self.close()
        self._readers.shutdown()

    @property
    def conn(self) -> sqlite3.Connection:
        """The writer's connection, for the store's own reads and for reads on the event loop thread."""
        if self._conn is None:
            raise RuntimeError("database is closed")
        return self._conn

    @property
    def reader(self) -> sqlite3.Connection:
        """The connection a repository reads with: the reader thread's own inside ``read()``, else ``conn``."""
        return self._readers.current() or self.conn

    @property
    def reads_paused(self) -> bool:
        """True while ``replace_file`` holds new reads back."""
        return self._readers.is_paused

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in a reader thread, in one read transaction, and return what it returns.

        ``fn`` reads through ``reader`` (repositories do); it must not write (``write()`` refuses
        there). It waits while a snapshot is being installed; ReadersClosed if the database is closed.
        """
        return await self._readers.run(fn, *args)

    def _migrate(self) -> None:
        current = int(self.get_meta("schema_version") or 0)
        if current > self.schema_version:
            raise RuntimeError(
                f"database {self.path} has schema version {current}, newer than this program's "
                f"{self.schema_version}; run a newer talentnest"
            )
        for version, sql in self.migrations:
            if version <= current:
                continue
            with self._transaction() as conn:
                # Migrations run on every node on its own data (DDL is not captured, and the
                # capture triggers are not installed yet), so they must be deterministic.
                for statement in _split_sql(sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO _tn_meta(key, value) VALUES('schema_version', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (str(version),),
                )
            log.info("store: migrated %s to schema version %d", self.path, version)

    def _add_internal_columns(self) -> None:
        for table, column, declaration in _ADDED_COLUMNS:
            if column not in {r["name"] for r in self.conn.execute(f"PRAGMA main.table_info({table})")}:
                with self._transaction() as conn:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

    def _drop_stored_triggers(self) -> None:
        """Remove capture triggers an older version stored in the file (they are TEMP now)."""
        names = [
            r[0]
            for r in self.conn.execute(
                "SELECT name FROM main.sqlite_master WHERE type = 'trigger' AND name LIKE 'tn\\_capture\\_%' ESCAPE '\\'"
            )
        ]
        if names:
            with self._transaction() as conn:
                for name in names:
                    conn.execute(f"DROP TRIGGER main.{_sql_ident(name)}")

    def _load_tables(self) -> None:
        tables: dict[str, _Table] = {}
        derived = {item.name for item in self.derived}
        listed = self.conn.execute("PRAGMA main.table_list").fetchall()
        undeclared = sorted(r["name"] for r in listed if r["type"] == "virtual" and r["name"] not in derived)
        if undeclared:
            # A virtual table's rows cannot be captured: it must be something each node derives.
            raise RuntimeError(f"virtual table(s) {undeclared} in {self.path} are not declared derived; they cannot replicate")
        # Shadow tables (an FTS5 index's storage) are reported as such, not as 'table'.
        names = [
            r["name"]
            for r in listed
            if r["type"] == "table"
            and not r["name"].startswith("sqlite_")
            and r["name"] not in LOCAL_TABLES
            and r["name"] not in derived
        ]
        for name in sorted(names):
            info = self.conn.execute(f"PRAGMA main.table_info({_sql_ident(name)})").fetchall()
            if any((row["type"] or "").upper() == "BLOB" for row in info):
                raise RuntimeError(f"replicated table {name} has a BLOB column; changes travel as JSON")
            columns = [row["name"] for row in info]
            pk = [row["name"] for row in sorted((r for r in info if r["pk"]), key=lambda r: r["pk"])]
            if not pk:
                raise RuntimeError(f"replicated table {name} needs a primary key")
            tables[name] = _Table(name, columns, pk, {row["name"] for row in info if _has_text_affinity(row["type"])})
        self._tables = tables

    def _install_derived_triggers(self) -> None:
        """The derived tables' TEMP triggers: on this connection for as long as it is open."""
        statements = [statement for item in self.derived for statement in item.triggers]
        if statements:
            with self._transaction() as conn:
                for statement in statements:
                    conn.execute(statement)

    def rebuild_derived(self) -> None:
        """Rebuild every derived table from scratch from the replicated tables (one transaction)."""
        with self._transaction() as conn:
            for item in self.derived:
                for statement in item.clear:
                    conn.execute(statement)
            for item in self.derived:
                for statement in item.fill:
                    conn.execute(statement)

    @contextmanager
    def derived_paused(self) -> Iterator[None]:
        """Writes without the derived tables' triggers, then one rebuild of those tables.

        For a bulk load into a new database (``talentnest generate``): rebuilding once from the
        finished rows costs a fraction of keeping the tables right row by row. The rebuild and the
        triggers come back even if the writes fail, so the derived tables always match the rows.
        """
        with self._transaction() as conn:
            _drop_temp_triggers(conn, capture=False)
        try:
            yield
        finally:
            self._install_derived_triggers()
            self.rebuild_derived()

    def _set_triggers(self, installed: bool) -> None:
        """Install the capture triggers before a write, remove them before an apply.

        A node writes while it leads and applies while it follows, so this DDL runs only
        when its role changes. The derived tables' triggers stay.
        """
        if installed == self._triggers_installed:
            return
        with self._transaction() as conn:
            _drop_temp_triggers(conn, capture=True)
            if installed:
                for table in self._tables.values():
                    for statement in table.triggers():
                        conn.execute(statement)
        self._triggers_installed = installed

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _load_log_state(self) -> None:
        row = self.conn.execute("SELECT MIN(lsn), MAX(lsn), COALESCE(SUM(length(changes)), 0) FROM _tn_log").fetchone()
        self._first_lsn = row[0] or 0
        self._last_lsn = row[1] or 0
        self._log_bytes = row[2]
        self._last_term, self._last_epoch = self.position_at(self._last_lsn)

    @property
    def replicated_tables(self) -> list[str]:
        return sorted(self._tables)

    # --- metadata --------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM _tn_meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        """Store a value of this node only (not replicated; kept when a snapshot is installed)."""
        if key in SHARED_META:
            raise ValueError(f"{key} is managed by the store")
        self.conn.execute(
            "INSERT INTO _tn_meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def local_meta(self) -> list[tuple[str, str]]:
        """This node's own metadata (not replicated, kept across a snapshot install)."""
        marks = ", ".join("?" for _ in SHARED_META)
        return [
            (r[0], r[1]) for r in self.conn.execute(f"SELECT key, value FROM _tn_meta WHERE key NOT IN ({marks})", SHARED_META)
        ]

    # --- the write path --------------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction. Raises what ``write_guard`` raises (NotLeader) before any work.

        On success the row changes are committed together with their log entry; on any
        exception everything, data and entry, is rolled back. Inside a request transaction of
        this context, the write joins it instead (and commits with it).
        """
        if self._readers.current() is not None:
            raise RuntimeError("write() inside read(): writes go through the owner's connection only")
        request = self._request.get()
        if request is not None:
            with request.join() as conn:
                yield conn
            return
        conn = self._begin()
        try:
            yield conn
        except BaseException as exc:
            self._abort(conn)
            self._raise_failure(exc)
            raise
        self._finish(conn)

    def _begin(self) -> sqlite3.Connection:
        if self.write_guard is not None:
            self.write_guard()
        if self.term < self._last_term:
            raise StaleTerm(f"writing in term {self.term}, but the log already holds term {self._last_term}")
        if self.term == self._last_term and self.epoch != self._last_epoch:
            raise StaleTerm(f"the log already holds term {self.term} from another leader")
        conn = self.conn
        if conn.in_transaction:
            raise WriterBusy("another request's write transaction is open; retry")
        try:
            if self.capture and not self._triggers_installed:
                self._set_triggers(True)
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._raise_failure(exc)
            raise
        self._pending.clear()
        return conn

    def _raise_failure(self, exc: BaseException) -> None:
        """Raise a storage failure (full disk, I/O error, damaged file) as StorageFailure, after telling
        the failure listeners; return for any other exception (the caller re-raises it as it is)."""
        failure = storage_failure(exc)
        if failure is None:
            return
        self.report_failure(failure)
        if failure is exc:
            raise failure
        raise failure from exc

    def report_failure(self, failure: StorageFailure) -> None:
        """Tell the failure listeners of a storage failure met outside the write path (a read)."""
        for listener in list(self._failure_listeners):
            listener(failure)

    def add_failure_listener(self, listener: Callable[[StorageFailure], None]) -> None:
        """Call ``listener(failure)`` whenever a write or an apply fails for a reason of storage."""
        self._failure_listeners.append(listener)

    def add_release_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` before the file is replaced (``replace_file``): let go of what pins it
        (a snapshot kept for a receiver to resume, say), so the swap does not find it held."""
        self._release_listeners.append(listener)

    def check_writable(self) -> None:
        """Raise StorageFailure unless a write of a few hundred KiB commits here now (and is undone)."""
        try:
            for value in (os.urandom(_WRITABLE_PROBE_BYTES // 2).hex(), None):
                with self._transaction() as conn:
                    if value is None:
                        conn.execute("DELETE FROM _tn_meta WHERE key = 'writable_probe'")
                    else:
                        conn.execute("INSERT OR REPLACE INTO _tn_meta(key, value) VALUES ('writable_probe', ?)", (value,))
        except sqlite3.Error as exc:
            self._raise_failure(exc)
            raise

    @contextmanager
    def request_transaction(self) -> Iterator[RequestTransaction]:
        """Make every ``write()`` of this context (one request) part of one transaction, committed by
        ``RequestTransaction.commit`` with a last statement of the caller; rolled back otherwise."""
        request = RequestTransaction(self)
        token = self._request.set(request)
        try:
            yield request
        finally:
            self._request.reset(token)
            request.rollback()

    def _finish(self, conn: sqlite3.Connection, last: Callable[[sqlite3.Connection, int], None] | None = None) -> int:
        """Commit the open transaction with its entry (running ``last(conn, lsn)`` in it first, when
        it changed anything); roll everything back on any failure. The entry's LSN, or 0 if none."""
        receipt = current_receipt.get()
        size = 0
        try:
            if self._pending:
                if last is not None:
                    last(conn, self._last_lsn + 1)
                size = self._append_entry(conn, self._pending)
            conn.execute("COMMIT")
        except BaseException as exc:
            self._abort(conn)
            self._raise_failure(exc)
            raise
        self._pending.clear()
        if not size:
            return 0
        self._committed(size, receipt)
        return self._last_lsn

    def _abort(self, conn: sqlite3.Connection) -> None:
        self._pending.clear()
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error as exc:  # the failure being handled says more than this one
                log.warning("store: rollback failed: %s", exc)

    def _append_entry(self, conn: sqlite3.Connection, pending: list[str]) -> int:
        """Add the open transaction's entry (LSN last + 1) to the log; return its size."""
        lsn = self._last_lsn + 1
        changes = "[" + ",".join(pending) + "]"
        conn.execute(_INSERT_LOG, (lsn, self.term, iso_from_epoch(self.clock()), self.schema_version, changes, self.epoch))
        if (self.term, self.epoch) != (self._last_term, self._last_epoch):
            conn.execute(_INSERT_TERM, (self.term, lsn, self.epoch))
        return len(changes)

    def _committed(self, entry_size: int, receipt: WriteReceipt | None) -> None:
        """The entry of a write is durable: advance the log state (only now, so a failed COMMIT changes nothing)."""
        lsn = self._last_lsn = self._last_lsn + 1
        self._last_term, self._last_epoch = self.term, self.epoch
        self._log_bytes += entry_size
        if not self._first_lsn:
            self._first_lsn = lsn
        if receipt is not None:
            receipt.lsn, receipt.term, receipt.epoch = lsn, self._last_term, self._last_epoch
        self._after_commit(lsn)

    def _after_commit(self, lsn: int) -> None:
        self._writes_since_checkpoint_check += 1
        if self._writes_since_checkpoint_check >= CHECKPOINT_CHECK_EVERY:
            self._writes_since_checkpoint_check = 0
            self._checkpoint_if_due()
        self._writes_since_trim += 1
        if self._writes_since_trim >= 64:
            self._writes_since_trim = 0
            try:
                self.trim_log()
            except sqlite3.Error as exc:
                # The entry is committed: a failed trim must not make its write look failed.
                log.warning("store: could not trim the log: %s", exc)
        for listener in list(self._listeners):
            listener(lsn)

    def wal_frames(self) -> tuple[int, int] | None:
        """(pages in the WAL since it last restarted, pages of them copied back into the database file), from
        the header of the WAL index (the -shm file), which SQLite keeps in this documented layout; None when
        it cannot be read. Read without SQLite's lock: a figure to decide on, not to rely on."""
        try:
            with open(f"{self.path}-shm", "rb") as shm:
                head = shm.read(_WAL_INDEX.size)
        except OSError:
            return None
        if len(head) < _WAL_INDEX.size:
            return None
        version, frames, copied = _WAL_INDEX.unpack(head)
        return (frames, copied) if version == _WAL_INDEX_VERSION else None

    def _checkpoint_if_due(self) -> None:
        """With reader threads, SQLite's automatic checkpoint is off and this keeps the WAL short instead.
        Once ``CHECKPOINT_FRAMES`` pages are waiting, a reader thread copies them back (the megabytes and
        their sync, off the event loop); after it, the writer finishes the pages written meanwhile (a sync
        of a few pages) so that the next write restarts the WAL from its start: the WAL restarts only once
        every page in it has been copied back, which a checkpoint beside a busy writer never sees, and a
        WAL that only grows makes every page lookup dearer."""
        if not self._readers.size:
            return
        position = self.wal_frames()
        if position is None:
            self._readers.checkpoint_soon()  # the header could not be read: copying back early costs little
            return
        frames, copied = position
        if frames - copied >= CHECKPOINT_FRAMES:
            self._readers.checkpoint_soon()
        elif frames >= CHECKPOINT_FRAMES and self._readers.checkpoints != self._checkpoints_finished:
            self._checkpoints_finished = self._readers.checkpoints  # once per reader thread's checkpoint
            self.inline_checkpoints += 1
            try:
                self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as exc:  # the write is committed: a failed checkpoint must not fail it
                log.warning("store: checkpoint of %s failed: %s", self.path, exc)

    def add_commit_listener(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(lsn)`` after every commit, written here or applied from a leader."""
        self._listeners.append(listener)

    # --- the log ---------------------------------------------------------------------------

    @property
    def last_lsn(self) -> int:
        """The LSN of the last entry in this database (written here or applied)."""
        return self._last_lsn

    @property
    def last_term(self) -> int:
        return self._last_term

    @property
    def last_epoch(self) -> int:
        return self._last_epoch

    @property
    def first_lsn(self) -> int:
        """The oldest LSN still in the log (0 when the log is empty)."""
        return self._first_lsn

    def entries_after(self, lsn: int, *, max_entries: int = 1000, max_bytes: int = 4 * 1024 * 1024) -> list[LogEntry]:
        """Entries with LSN > ``lsn``, in order, up to the given bounds (at least one entry).

        Raises LogTruncated when entries right after ``lsn`` are no longer retained.
        """
        if lsn >= self._last_lsn:
            return []
        if lsn + 1 < self._first_lsn:
            raise LogTruncated(
                f"entries after LSN {lsn} are no longer in the log (it starts at {self._first_lsn}); install a snapshot"
            )
        entries: list[LogEntry] = []
        size = 0
        for row in self.conn.execute(
            f"{_SELECT_ENTRIES} WHERE lsn > ? ORDER BY lsn LIMIT ?",
            (lsn, max_entries),
        ):
            entry = LogEntry(*row)
            if entries and size + len(entry.changes) > max_bytes:
                break
            entries.append(entry)
            size += len(entry.changes)
        return entries

    def term_at(self, lsn: int) -> int:
        """The term of the entry at ``lsn`` (0 for LSN 0), from the term history."""
        return self.position_at(lsn)[0]

    def position_at(self, lsn: int) -> tuple[int, int]:
        """(term, epoch) of the entry at ``lsn`` ((0, 0) for LSN 0), from the term history."""
        if lsn <= 0:
            return (0, 0)
        row = self.conn.execute(
            "SELECT term, epoch FROM _tn_terms WHERE start_lsn <= ? ORDER BY start_lsn DESC, term DESC LIMIT 1", (lsn,)
        ).fetchone()
        return (0, 0) if row is None else (row[0], row[1])

    def term_history(self) -> list[tuple[int, int, int]]:
        """Each stretch of this log written by one leader: (term, start LSN, epoch), oldest first."""
        return [tuple(r) for r in self.conn.execute("SELECT term, start_lsn, epoch FROM _tn_terms ORDER BY start_lsn, term")]

    def trim_log(self) -> int:
        """Drop the oldest entries beyond the retention window; the last entry is always kept.

        Returns how many entries were dropped. (The term history is kept whole: it is tiny,
        and divergence checks need it for trimmed positions too.)
        """
        if self._last_lsn == 0:
            return 0
        conn = self.conn
        cutoff = self._last_lsn - self.retention.max_entries  # delete lsn <= cutoff
        excess = self._log_bytes - self.retention.max_bytes
        if excess > 0:
            freed = 0
            for lsn, size in conn.execute("SELECT lsn, length(changes) FROM _tn_log ORDER BY lsn"):
                if lsn >= self._last_lsn or freed >= excess:
                    break
                freed += size
                cutoff = max(cutoff, lsn)
        cutoff = min(cutoff, self._last_lsn - 1)
        if cutoff < self._first_lsn:
            return 0
        with self._transaction() as conn:
            freed = conn.execute("SELECT COALESCE(SUM(length(changes)), 0) FROM _tn_log WHERE lsn <= ?", (cutoff,)).fetchone()[0]
            deleted = conn.execute("DELETE FROM _tn_log WHERE lsn <= ?", (cutoff,)).rowcount
        self._first_lsn = cutoff + 1
        self._log_bytes -= freed
        return deleted

    # --- apply -----------------------------------------------------------------------------

    def apply(
        self, entries: Sequence[LogEntry], *, sender_term: int | None = None, current_term: int | None = None
    ) -> ApplyResult:
        """Apply a leader's entries in LSN order, in one transaction, idempotently.

        Entries at or below the applied LSN are skipped. Application stops at the first gap
        (``gap=True``: fetch entries after ``applied_lsn`` and call again). A batch sent in a
        term older than ``current_term`` raises StaleTerm; an entry whose term is lower than the
        term of the entry before it raises StaleTerm too (a log never goes back in term). A
        re-sent copy of this node's last entry with another term raises LogDiverged (this log
        holds entries the sender's does not: archive them and install a snapshot). An entry of
        a newer schema version, or for a table or column this node lacks, raises InvalidInput.
        Nothing is applied when an error is raised. Applying never captures.
        """
        if sender_term is not None and current_term is not None and sender_term < current_term:
            raise StaleTerm(f"entries sent in term {sender_term}, this node is in term {current_term}")
        todo: list[LogEntry] = []
        expected = self._last_lsn + 1
        prev = (self._last_term, self._last_epoch)
        gap = False
        for entry in sorted(entries, key=lambda e: e.lsn):
            if entry.lsn < expected:
                if entry.lsn == self._last_lsn and entry.position != prev:
                    raise LogDiverged(
                        f"entry {entry.lsn} arrived from term {entry.term} (epoch {entry.epoch}), but this node holds it "
                        f"from term {prev[0]} (epoch {prev[1]})"
                    )
                continue
            if entry.lsn > expected:
                gap = True
                break
            if entry.term < prev[0]:
                raise StaleTerm(f"entry {entry.lsn} has term {entry.term}, older than the term {prev[0]} before it")
            if entry.term == prev[0] and entry.epoch != prev[1] and expected > 1:
                raise LogDiverged(f"entry {entry.lsn} is of term {entry.term} from another leader than the entry before it")
            if entry.schema_version > self.schema_version:
                raise InvalidInput(
                    f"entry {entry.lsn} was written with schema version {entry.schema_version}; "
                    f"this node has {self.schema_version}: upgrade it"
                )
            todo.append(entry)
            prev = entry.position
            expected += 1
        if todo:
            try:
                self._apply_entries(todo)
            except sqlite3.Error as exc:
                self._raise_failure(exc)
                raise
        return ApplyResult(self._last_lsn, len(todo), gap)

    def _apply_entries(self, entries: list[LogEntry]) -> None:
        conn = self.conn
        if conn.in_transaction:
            raise RuntimeError("apply inside a transaction")
        self._set_triggers(False)
        # The leader captured every row its foreign keys touched (cascades included), so the
        # follower replays rows exactly, without running the actions a second time.
        conn.execute("PRAGMA foreign_keys=OFF")
        added = 0
        try:
            with self._transaction() as conn:
                position = (self._last_term, self._last_epoch)
                for entry in entries:
                    older = entry.schema_version < self.schema_version
                    changes = entry.decoded if entry.decoded is not None else json.loads(entry.changes)
                    for change in changes:
                        self._apply_change(conn, change, older=older)
                    if older and self.older_entries is not None:
                        self.older_entries(conn, entry.schema_version, changes)
                    conn.execute(
                        _INSERT_LOG, (entry.lsn, entry.term, entry.timestamp, entry.schema_version, entry.changes, entry.epoch)
                    )
                    if entry.position != position:
                        conn.execute(_INSERT_TERM, (entry.term, entry.lsn, entry.epoch))
                        position = entry.position
                    added += len(entry.changes)
        finally:
            conn.execute("PRAGMA foreign_keys=ON")
        last = entries[-1]
        self._log_bytes += added
        self._last_lsn = last.lsn
        self._last_term, self._last_epoch = last.position
        if not self._first_lsn:
            self._first_lsn = entries[0].lsn
        self._after_commit(last.lsn)

    def _apply_change(self, conn: sqlite3.Connection, change: dict, *, older: bool = False) -> None:
        table = self._tables.get(change["table"])
        if table is None:
            raise InvalidInput(f"change for table {change['table']!r}, which this node does not have: upgrade it")
        data = change["data"]
        if change["operation"] == "DELETE":
            if any(c not in data for c in table.pk):
                raise InvalidInput(f"DELETE from {table.name} lacks its primary key {table.pk}")
            conn.execute(table.delete_sql, [data[c] for c in table.pk])
        elif data.keys() == table.column_set:
            conn.execute(table.upsert_sql, [data[c] for c in table.columns])
        elif older and data.keys() < table.column_set and all(c in data for c in table.pk):
            # Written by an older schema: the columns added since keep their value (or default).
            sql, columns = table.upsert_sql_for(frozenset(data))
            try:
                conn.execute(sql, [data[c] for c in columns])
            except sqlite3.IntegrityError as exc:
                raise InvalidInput(f"change for {table.name} from an older schema cannot be applied: {exc}") from None
        else:
            raise InvalidInput(
                f"change for {table.name} has columns {sorted(data)}, this node has {sorted(table.columns)}: upgrade it"
            )

    # --- the file --------------------------------------------------------------------------

    def replace_file(self, source: Path) -> None:
        """Replace this database by the SQLite file ``source`` (beside it), and continue from its log.

        The old database is closed out of WAL mode (so it is whole in its one file and no stale WAL
        can ever be replayed onto the new one), the new file is renamed over it, the directory is
        synced, and the database reopens (migrations, triggers, log state). A crash at any point
        leaves either the old or the new database whole. Raises SnapshotError, leaving the old
        database open and unchanged, when another connection holds the file.
        """
        source = Path(source)
        if source.parent.resolve() != self.data_dir.resolve():
            raise SnapshotError(f"{source} must be in {self.data_dir} to be renamed into place")
        conn = self.conn
        if conn.in_transaction:
            raise RuntimeError("replace_file inside a transaction")
        for listener in list(self._release_listeners):
            listener()
        try:
            # The readers let go of the file first; reads that arrive meanwhile wait in their threads.
            self._readers.pause()
        except TimeoutError as exc:
            raise SnapshotError(f"cannot swap {self.path}: {exc}; retry") from None
        try:
            conn.execute("PRAGMA busy_timeout=0")
            try:
                mode = conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
            except sqlite3.OperationalError as exc:
                mode = str(exc)
            if mode.lower() != "delete":
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA busy_timeout=5000")
                raise SnapshotError(f"cannot swap {self.path} while another connection holds it ({mode}); retry")
            self._swap_in(source)
        finally:
            self._readers.resume()

    def _swap_in(self, source: Path) -> None:
        conn = self.conn
        conn.close()
        self._conn = None
        self._triggers_installed = False
        for suffix in ("-wal", "-shm", "-journal"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        os.replace(source, self.path)
        self.fsync_dir()
        self.open()

    # --- content ---------------------------------------------------------------------------

    def checksum(self, *, reuse: bool = False) -> str:
        """A digest of every replicated table's rows in primary-key order (equal data, equal digest).

        It reads every row (through ``reader``: ``await db.read(db.checksum)`` runs it off the event
        loop). With ``reuse`` (for a status page), the digest computed last is returned while the LSN
        has not moved: data changes only with a new entry.
        """
        if reuse and self.capture and self._checksum is not None and self._checksum[0] == self._last_lsn:
            return self._checksum[1]
        digest = hashlib.sha256()
        for name in sorted(self._tables):
            table = self._tables[name]
            digest.update(f"\x00table {name}\x00".encode())
            for row in self.reader.execute(table.select_sql):
                digest.update(json.dumps(list(row), separators=(",", ":"), ensure_ascii=False).encode())
                digest.update(b"\n")
        self._checksum = (self._last_lsn, digest.hexdigest())
        return self._checksum[1]

    def fsync_dir(self) -> None:
        fsync_dir(self.data_dir)


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _has_text_affinity(declared: str | None) -> bool:
    # SQLite's affinity rules: INT first, then CHAR/CLOB/TEXT.
    declared = (declared or "").upper()
    return "INT" not in declared and any(word in declared for word in ("CHAR", "CLOB", "TEXT"))


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements (triggers with inner semicolons are kept whole)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements


class RequestTransaction:
    """One request's writes as one transaction: the first ``write()`` begins it, later ones join it,
    and ``commit`` ends it with a last statement of the caller in the same log entry.

    The transaction stays open across the request's code between its first write and its answer,
    which must not await meanwhile: no other request may use the writer then (a write from another
    request is refused with WriterBusy). ``suspended`` tells whether the event loop ran anything else
    while it was open, so that the caller can report a route that breaks the rule.
    """

    def __init__(self, db: Database):
        self.db = db
        self.is_open = False
        self.suspended = False

    @contextmanager
    def join(self) -> Iterator[sqlite3.Connection]:
        db = self.db
        if not self.is_open:
            db._begin()
            self.is_open = True
            self._watch()
        try:
            yield db.conn
        except BaseException:
            self.rollback()
            raise

    def _watch(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        loop.call_soon(self._ran_while_open)

    def _ran_while_open(self) -> None:
        if self.is_open:
            self.suspended = True

    def commit(self, last: Callable[[sqlite3.Connection, int], None]) -> int:
        """Run ``last(conn, lsn)`` and commit, all in the entry at ``lsn``; the LSN, or 0 when the
        request changed nothing (then nothing is written, ``last`` included)."""
        if not self.is_open:
            return 0
        self.is_open = False
        return self.db._finish(self.db.conn, last)

    def rollback(self) -> None:
        if self.is_open:
            self.is_open = False
            self.db._abort(self.db.conn)
