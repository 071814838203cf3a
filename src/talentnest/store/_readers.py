"""Reads off the event loop: a few long-lived threads, each with its own read-only connection on the WAL.

SQLite releases the GIL while a statement runs, so a slow query in a reader thread delays no
other request, heartbeat or replication call on the event loop. Each thread keeps one
connection for its whole life (never shared: see the deadlock note in ``api/deps.py``), opened
on its first read, ``query_only`` and in WAL mode like the writer's. Every call runs in one read
transaction, so all its statements see the same committed state.

With ``size=0`` the pool starts no thread of its own: each read runs through the running loop's
default executor (``run_in_executor``), on a connection of the executor thread's own. The
deterministic simulation uses it: its event loops run their executor inline, so a read runs on the
loop's thread, at once, on virtual time (docs/simulation.md, "Processes and virtual time").

``pause()`` closes every connection once the reads in progress are done, and holds back new
ones (they wait in their thread, not on the event loop) until ``resume()``: the owner swaps the
database file in between (``Database.replace_file``, under ``snapshot.install``), and a read never sees half of it.

The threads also copy the WAL back into the database file when the owner asks (``checkpoint_soon``):
copying a thousand pages and syncing them held the writer's event loop 3-5 ms every few hundred
writes (benchmarks/README.md, issue 13). It runs as a thread's job, outside any read transaction, and
``pause()`` waits for it as for a read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger("talentnest.store")
_CHECKPOINT = object()  # the work item that asks a thread for a checkpoint

# What the current thread reads with, when it is a reader thread of some pool.
_current = threading.local()


class ReadersClosed(RuntimeError):
    """The database is closed: no read can run."""


class ReaderPool:
    """``size`` reader threads for the database at ``path``; ``run(fn, *args)`` awaits ``fn`` in one of them
    (``size=0``: in the loop's default executor, see the module docstring)."""

    def __init__(self, path: Path, size: int, functions: Mapping[str, tuple[int, Callable]], *, pause_timeout: float = 30.0):
        if size < 0:
            raise ValueError(f"a reader pool needs 0 or more threads, got {size}")
        self.path = Path(path)
        self.size = size
        self._functions = functions
        self._pause_timeout = pause_timeout
        # Work for the threads: (loop, future, fn, args), or None to stop one. A queue and
        # call_soon_threadsafe cost about a third less CPU per read than run_in_executor's futures.
        self._work: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._state = threading.Condition()
        self._is_open = False
        self._is_paused = False
        self._active = 0
        self._generation = 0
        self._connections: dict[int, tuple[int, sqlite3.Connection]] = {}  # thread id -> (generation, conn)
        self._checkpoint_queued = False
        self.checkpoints = 0  # checkpoints the threads have run

    @property
    def is_paused(self) -> bool:
        """True while reads are held back (a snapshot is being swapped in)."""
        return self._is_paused

    # --- the owner's side (the event loop's thread) --------------------------------------------------

    def open(self) -> None:
        with self._state:
            self._is_open = True
            self._is_paused = False
            self._generation += 1
            self._state.notify_all()

    def pause(self) -> None:
        """Wait for the reads in progress, close every connection, and hold new reads back.

        Raises TimeoutError (and stays unpaused) if reads are still running after ``pause_timeout``.
        """
        deadline = time.monotonic() + self._pause_timeout
        with self._state:
            self._is_paused = True
            while self._active:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._is_paused = False
                    self._state.notify_all()
                    raise TimeoutError(f"{self._active} read(s) of {self.path} still running after {self._pause_timeout:g} s")
                self._state.wait(left)
            self._close_connections()

    def resume(self) -> None:
        """Let reads go on, each on a new connection to the (new) file."""
        with self._state:
            self._is_paused = False
            self._generation += 1
            self._state.notify_all()

    def close(self) -> None:
        """Close every connection; reads fail with ReadersClosed until ``open()``."""
        self.pause()
        with self._state:
            self._is_open = False
            self._is_paused = False
            self._state.notify_all()

    def shutdown(self) -> None:
        """Close, and stop the threads (the pool cannot be used again)."""
        self.close()
        threads, self._threads = self._threads, []
        for _ in threads:
            self._work.put(None)
        for thread in threads:
            thread.join()

    def _close_connections(self) -> None:
        for _, conn in self._connections.values():
            conn.close()
        self._connections.clear()

    # --- reads ---------------------------------------------------------------------------------------

    def run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """``fn(*args)`` in a reader thread, in one read transaction: a future of its result or exception."""
        loop = asyncio.get_running_loop()
        if not self.size:
            return loop.run_in_executor(None, self._call, fn, args)
        future = loop.create_future()
        if not self._threads:
            self._start_threads()
        self._work.put((loop, future, fn, args))
        return future

    def checkpoint_soon(self) -> bool:
        """Have a thread copy the WAL back into the database file (``PRAGMA wal_checkpoint(PASSIVE)``, which
        waits for no reader and no writer), unless one is queued already. False, doing nothing, for a pool
        without threads (``size=0``). A checkpoint that fails (a full disk) is logged; the next asks again."""
        if not self.size:
            return False
        if not self._checkpoint_queued:
            self._checkpoint_queued = True
            if not self._threads:
                self._start_threads()
            self._work.put(_CHECKPOINT)
        return True

    def _checkpoint(self) -> None:
        self._checkpoint_queued = False  # a request from now on queues another: this one may miss its frames
        try:
            conn = self._enter()
        except (ReadersClosed, TimeoutError):
            return  # closed, or paused too long (the file is being swapped): the owner asks again later
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self.checkpoints += 1
        except sqlite3.Error as exc:
            log.warning("store: checkpoint of %s failed: %s", self.path, exc)
        finally:
            self._leave()

    def _start_threads(self) -> None:
        with self._state:
            while len(self._threads) < self.size:
                thread = threading.Thread(target=self._serve, name=f"tn-reader-{len(self._threads) + 1}", daemon=True)
                thread.start()
                self._threads.append(thread)

    def _serve(self) -> None:
        work = self._work
        while (item := work.get()) is not None:
            if item is _CHECKPOINT:
                self._checkpoint()
                continue
            loop, future, fn, args = item
            try:
                outcome = (self._call(fn, args), None)
            except BaseException as exc:  # handed to the awaiting coroutine, as run_in_executor does
                outcome = (None, exc)
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody awaits it
                loop.call_soon_threadsafe(_settle, future, *outcome)

    def _call(self, fn: Callable[..., T], args: tuple) -> T:
        conn = self._enter()
        try:
            _current.pool, _current.conn = self, conn
            conn.execute("BEGIN")
            try:
                return fn(*args)
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")
        finally:
            _current.pool = _current.conn = None
            self._leave()

    def _enter(self) -> sqlite3.Connection:
        ident = threading.get_ident()
        deadline = time.monotonic() + self._pause_timeout
        with self._state:
            while self._is_paused:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"reads of {self.path} have been paused for more than {self._pause_timeout:g} s")
                self._state.wait(left)
            if not self._is_open:
                raise ReadersClosed(f"database {self.path} is closed")
            held = self._connections.get(ident)
            if held is None or held[0] != self._generation:
                if held is not None:
                    held[1].close()
                held = self._connections[ident] = (self._generation, self._connect())
            self._active += 1
            return held[1]

    def _leave(self) -> None:
        with self._state:
            self._active -= 1
            if not self._active:
                self._state.notify_all()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA query_only=ON")
        conn.execute("PRAGMA temp_store=MEMORY")
        for name, (nargs, fn) in self._functions.items():
            conn.create_function(name, nargs, fn, deterministic=True)
        return conn

    def current(self) -> sqlite3.Connection | None:
        """The connection of this pool's read running in the calling thread, if any."""
        return _current.conn if getattr(_current, "pool", None) is self else None


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
