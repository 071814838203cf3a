"""This node's durable election state (term and vote), kept beside the database, not inside it:
installing a snapshot replaces the database but must never roll the term back."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

STATE_FILENAME = "cluster-state.json"


@dataclass(frozen=True)
class ElectionState:
    term: int = 0
    voted_for: int | None = None


class DurableState:
    """Reads once at start; every change is written to a new file, fsynced, renamed into place."""

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / STATE_FILENAME
        self.current = self._load()

    def _load(self) -> ElectionState:
        try:
            raw = json.loads(self.path.read_text())
            return ElectionState(term=int(raw["term"]), voted_for=raw.get("voted_for"))
        except FileNotFoundError:
            return ElectionState()
        except (ValueError, KeyError, TypeError) as exc:
            raise RuntimeError(f"{self.path} is damaged ({exc}); remove it to start from term 0") from None

    def save(self, term: int, voted_for: int | None) -> None:
        if term < self.current.term:
            raise ValueError(f"term may not go back from {self.current.term} to {term}")
        new = ElectionState(term, voted_for)
        if new == self.current:
            return
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as handle:
            json.dump({"term": term, "voted_for": voted_for}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self.current = new
