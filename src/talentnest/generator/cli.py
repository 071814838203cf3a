"""``talentnest generate DIR``: fill a node's data directory with a synthetic network, with a progress bar."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from talentnest.generator.network import PER_MEMBER, NetworkSize, generate
from talentnest.store import DB_FILENAME, Retention

DEFAULT_PASSWORD = "password123"
# The generated log is not needed to start nodes (they start from the file), so little is kept.
RETENTION = Retention(max_entries=1_000, max_bytes=16 * 1024 * 1024)
CACHE_MIB = 1024

# soft_wrap: a message is never cut into lines at rich's 80 columns when stderr is a file or a pipe.
console = Console(stderr=True, soft_wrap=True)


def _count(text: str) -> int:
    """``1000000``, ``1_000_000``, ``1M``, ``100k``."""
    cleaned = text.strip().lower().replace("_", "").replace(",", "")
    factor = 1
    if cleaned[-1:] in ("k", "m"):
        factor = 1_000 if cleaned[-1] == "k" else 1_000_000
        cleaned = cleaned[:-1]
    try:
        value = float(cleaned) * factor
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count such as 100000, 100k or 1M, got '{text}'") from None
    if value < 0 or value != int(value):
        raise argparse.ArgumentTypeError(f"expected a whole count of 0 or more, got '{text}'")
    return int(value)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="fill a node's data directory with a synthetic network (members, follows, posts, likes, comments)",
        description="Fill an empty data directory with a synthetic talent network, written through the store's "
        "write path (real log entries and LSNs). Counts not given scale with --members: "
        + ", ".join(f"{name} {per:g} per member" for name, per in PER_MEMBER.items())
        + ". Start a local cluster on it with `talentnest cluster up --data-from DIR`.",
    )
    parser.add_argument("data_dir", type=Path, metavar="DIR", help="the data directory to create (a node's DATA_DIR)")
    parser.add_argument("--members", type=_count, default=_count("1000"), help="members (default 1000; 100k and 1M work)")
    for name in PER_MEMBER:
        parser.add_argument(f"--{name}", type=_count, default=None, help=f"{name} (default {PER_MEMBER[name]:g} per member)")
    parser.add_argument("--seed", type=int, default=1, help="random seed: the same seed and counts give the same network")
    parser.add_argument(
        "--password", default=DEFAULT_PASSWORD, help=f"every generated member's password (default {DEFAULT_PASSWORD})"
    )


class _Rate(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} rows/s" if speed and task.total and task.total > 100 else "", style="cyan")


class _Bar:
    """The generator's Progress, as a rich progress bar: one line per phase, with its rate."""

    def __init__(self, progress: Progress):
        self._progress = progress
        self._task = None

    def phase(self, name: str, total: int) -> None:
        if self._task is not None:
            self._progress.update(self._task, completed=self._progress.tasks[-1].total)
        self._task = self._progress.add_task(name, total=max(total, 1))

    def advance(self, rows: int) -> None:
        self._progress.advance(self._task, rows)


class _Lines:
    """The generator's Progress when the output is not a terminal: a line every ``every`` seconds."""

    def __init__(self, out, every: float = 10.0):
        self._out = out
        self._every = every
        self._name, self._total, self._done = "", 0, 0
        self._started = self._shown = 0.0

    def phase(self, name: str, total: int) -> None:
        if self._name:
            self._show(final=True)
        self._name, self._total, self._done = name, total, 0
        self._started = self._shown = time.monotonic()

    def advance(self, rows: int) -> None:
        self._done += rows
        if self._done < self._total and time.monotonic() - self._shown >= self._every:
            self._show()

    def finish(self) -> None:
        if self._name:
            self._show(final=True)

    def _show(self, *, final: bool = False) -> None:
        self._shown = now = time.monotonic()
        elapsed = max(now - self._started, 1e-9)
        rate = self._done / elapsed
        share = f" ({100 * self._done / self._total:.0f}%)" if self._total else ""
        left = f", {(self._total - self._done) / rate:,.0f} s left" if rate and not final and self._total > self._done else ""
        speed = f", {rate:,.0f} rows/s" if self._total > 100 else ""
        done = " done" if final else ""
        print(
            f"{self._name}{done}: {self._done:,} of {self._total:,}{share} in {elapsed:,.0f} s{speed}{left}",
            file=self._out,
            flush=True,
        )


def run(args: argparse.Namespace) -> int:
    from talentnest.services import Passwords
    from talentnest.store.schema import product_database

    try:
        size = NetworkSize.scaled(args.members, **{name: getattr(args, name) for name in PER_MEMBER})
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    data_dir: Path = args.data_dir
    if (data_dir / DB_FILENAME).exists():
        console.print(f"[red]error:[/] {data_dir / DB_FILENAME} already exists; generate into a new directory")
        return 1
    console.print(
        f"generating {size.members:,} members, {size.follows:,} follows, {size.posts:,} posts, "
        f"{size.likes:,} likes and {size.comments:,} comments into {data_dir} (seed {args.seed})",
        highlight=False,
    )
    password_hash = asyncio.run(Passwords(time_cost=3, memory_kib=64 * 1024, parallelism=4).hash(args.password))
    db = product_database(data_dir, retention=RETENTION)
    db.open()
    started = time.monotonic()
    try:
        db.term = 1
        db.conn.execute(f"PRAGMA cache_size=-{CACHE_MIB * 1024}")
        db.conn.execute("PRAGMA wal_autocheckpoint=50000")
        db.conn.execute("PRAGMA threads=2")  # the final index builds sort on both cores
        if console.is_terminal:
            columns = (TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(), _Rate())
            with Progress(*columns, TimeElapsedColumn(), TimeRemainingColumn(), console=console) as progress:
                report = generate(db, size, password_hash=password_hash, seed=args.seed, progress=_Bar(progress))
        else:
            lines = _Lines(sys.stderr)
            report = generate(db, size, password_hash=password_hash, seed=args.seed, progress=lines)
            lines.finish()
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted[/]: {data_dir} holds part of a network; delete it")
        return 130
    finally:
        db.shutdown()
    seconds = time.monotonic() - started
    written = report.size
    file_bytes = (data_dir / DB_FILENAME).stat().st_size
    print(
        f"wrote {written.members:,} members, {written.follows:,} follows, {written.posts:,} posts, {written.likes:,} likes, "
        f"{written.comments:,} comments in {seconds:,.0f} s as LSN {report.first_lsn}-{report.last_lsn} "
        f"({file_bytes / 1e9:.2f} GB, {DB_FILENAME}); every member's password is '{args.password}'.",
        file=sys.stdout,
    )
    print(f"Start a local cluster on it: talentnest cluster up --data-from {data_dir}", file=sys.stdout)
    return 0
