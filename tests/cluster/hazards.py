"""Production hazards made real for cluster tests: full disks (tmpfs), skewed clocks (libfaketime), damaged files.

Each hazard uses the real thing: a small tmpfs mounted as a node's ``DATA_DIR`` and filled up with a
file until the kernel says ENOSPC; libfaketime preloaded into a node so that its wall clock (and
only that: ``CLOCK_MONOTONIC`` stays real, as with a stepped NTP clock) is off by an offset that a
file can change while it runs; bytes overwritten in a stopped node's SQLite file. A hazard whose
tool is missing calls :func:`missing_tool` (``tests/_tools.py``), which skips the test, or fails it
when ``TALENTNEST_REQUIRE_TOOLS=1`` (set by ``.ci/run``), so CI never goes green by skipping.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import random
import shutil
import subprocess
from pathlib import Path

from tests._tools import missing as missing_tool

FAKETIME_LIBRARIES = (
    "/usr/lib/*/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
)
PAGE = 4096


# --- full disks -------------------------------------------------------------------------------------


def tmpfs_unavailable() -> str | None:
    """Why a tmpfs cannot be mounted here, or None when it can."""
    if os.geteuid() != 0:
        return "full-disk tests mount a tmpfs as a node's DATA_DIR, which needs root (CI runs as root)"
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "full-disk tests need mount and umount (util-linux)"
    return None


class Tmpfs:
    """A tmpfs of ``size`` bytes mounted at ``path`` (an empty directory); ``fill`` takes every free byte."""

    FILLER = "disk-filler"

    def __init__(self, path: Path, size: int):
        self.path = Path(path)
        self.size = size
        self.is_mounted = False

    def mount(self) -> Tmpfs:
        reason = tmpfs_unavailable()
        if reason is not None:
            missing_tool(reason)
        self.path.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size},mode=0700", "tmpfs", str(self.path)], capture_output=True, text=True
        )
        if result.returncode != 0:
            missing_tool(f"cannot mount a tmpfs at {self.path}: {result.stderr.strip()}")
        self.is_mounted = True
        return self

    @property
    def filler(self) -> Path:
        return self.path / self.FILLER

    def free_bytes(self) -> int:
        stats = os.statvfs(self.path)
        return stats.f_bavail * stats.f_frsize

    def fill(self, leave: int = 0) -> int:
        """Write the filler file until the disk is full (less ``leave`` bytes); the bytes written."""
        written = 0
        chunk = 1 << 20
        with open(self.filler, "ab") as handle:
            while chunk >= 512:
                room = self.free_bytes() - leave
                if room < chunk:
                    chunk //= 2
                    continue
                try:
                    handle.write(b"\0" * chunk)
                    handle.flush()
                    written += chunk
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    chunk //= 2
        return written

    def free(self) -> None:
        """Remove the filler: the node has room again."""
        self.filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        """Unmount (lazily if something still holds a file open there); safe to call twice."""
        if not self.is_mounted:
            return
        result = subprocess.run(["umount", str(self.path)], capture_output=True, text=True)
        if result.returncode != 0:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True, text=True)
        self.is_mounted = False


# --- clocks -------------------------------------------------------------------------------------------


def faketime_library() -> str | None:
    for pattern in FAKETIME_LIBRARIES:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


def fake_clock_env(offset_file: Path, offset: float = 0.0) -> dict[str, str]:
    """Environment that preloads libfaketime with its wall-clock offset read from ``offset_file``.

    The monotonic clock is left real (as a stepped NTP clock leaves it), and the file is read again
    at most every second, so :func:`set_clock_offset` moves a running process's clock. With the
    monotonic clock left alone, libfaketime 0.9.10 breaks ``clock_nanosleep(CLOCK_MONOTONIC,
    TIMER_ABSTIME)``, so ``time.sleep`` raises EINVAL in such a process (libfaketime issue 426): the
    node never calls it (asyncio waits in epoll), but a helper run this way must not either.
    """
    library = faketime_library()
    if library is None:
        missing_tool("clock tests need libfaketime (apt-get install faketime libfaketime)")
    set_clock_offset(offset_file, offset)
    return {
        "LD_PRELOAD": library,
        "FAKETIME_TIMESTAMP_FILE": str(offset_file),
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "FAKETIME_CACHE_DURATION": "1",
    }


def set_clock_offset(offset_file: Path, seconds: float) -> None:
    """Set the offset (whole seconds, ahead if positive) that libfaketime reads; atomically."""
    temporary = offset_file.with_suffix(".tmp")
    temporary.write_text(f"{round(seconds):+d}s\n")
    os.replace(temporary, offset_file)


# --- damaged files ------------------------------------------------------------------------------------


def damage_file(path: Path, where: str, *, seed: int = 15) -> list[tuple[int, int]]:
    """Overwrite part of a (stopped node's) SQLite file with random bytes; the (offset, length) spans hit.

    ``start``: page 1 after its 100-byte header (the schema) and page 2. ``middle``: a tenth of the
    pages (at least 8) around the middle of the file, where the tables' rows are.
    """
    size = path.stat().st_size
    pages = size // PAGE
    if where == "start":
        spans = [(100, 2 * PAGE - 100)]
    elif where == "middle":
        count = max(8, pages // 10)
        first = max(2, pages // 2 - count // 2)
        spans = [(first * PAGE, min(count, pages - first) * PAGE)]
    else:
        raise ValueError(f"where must be start or middle, got {where!r}")
    noise = random.Random(seed)
    with open(path, "r+b") as handle:
        for offset, length in spans:
            handle.seek(offset)
            handle.write(noise.randbytes(length))
        handle.flush()
        os.fsync(handle.fileno())
    return spans


def remove_sidecars(database: Path) -> None:
    """Drop the WAL and shared-memory files of a stopped node's database (a clean stop leaves none)."""
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{database}{suffix}")
