"""This node's durable cluster state (term, vote, and the members it knew), kept beside the database,
not inside it: installing a snapshot replaces the database but must never roll the term back."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

from talentnest.errors import StorageFailure

STATE_FILENAME = "cluster-state.json"


@dataclass(frozen=True)
class ElectionState:
    term: int = 0
    voted_for: int | None = None
    # The peers this node counted as voters when it last changed its mind: a restarted node counts
    # them again until each is known gone, whatever its first DNS answer says.
    members: tuple[str, ...] = ()


class DurableState:
    """Reads once at start; every change is written to a new file, fsynced, renamed into place.

    ``existed`` tells whether the node had any durable state when it started: one without is new to
    the cluster (or lost its disk), and must not vote before it has heard from a leader.
    """

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / STATE_FILENAME
        self.existed = self.path.exists()
        self.current = self._load()

    def _load(self) -> ElectionState:
        try:
            raw = json.loads(self.path.read_text())
            members = tuple(str(m) for m in raw.get("members", ()))
            return ElectionState(term=int(raw["term"]), voted_for=raw.get("voted_for"), members=members)
        except FileNotFoundError:
            return ElectionState()
        except (ValueError, KeyError, TypeError) as exc:
            raise RuntimeError(f"{self.path} is damaged ({exc}); remove it to start from term 0") from None

    def save(self, term: int, voted_for: int | None) -> None:
        """Move to ``term`` (never back) with this vote; durable before it returns."""
        if term < self.current.term:
            raise ValueError(f"term may not go back from {self.current.term} to {term}")
        self._write(replace(self.current, term=term, voted_for=voted_for))

    def save_members(self, members: tuple[str, ...]) -> None:
        self._write(replace(self.current, members=tuple(sorted(members))))

    def _write(self, new: ElectionState) -> None:
        """Raises StorageFailure (503 to a peer, never a 500) when the disk refuses; nothing changes then."""
        if new == self.current:
            return
        tmp = self.path.with_suffix(".tmp")
        try:
            with open(tmp, "w") as handle:
                json.dump({"term": new.term, "voted_for": new.voted_for, "members": list(new.members)}, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StorageFailure(f"cannot write {self.path}: {exc.strerror or exc}") from None
        self.current = new
