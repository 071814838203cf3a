"""The run's trace: every event of a run, hashed as it happens (replays compare the hash), with
the last few thousand lines kept for the report of a failing seed."""

from __future__ import annotations

import hashlib
from collections import deque


class Trace:
    def __init__(self, clock, keep: int = 4000):
        self._clock = clock
        self._hash = hashlib.blake2b(digest_size=16)
        self.tail: deque[str] = deque(maxlen=keep)
        self.events = 0

    def add(self, text: str) -> None:
        line = f"{self._clock.now:12.6f} {text}"
        self._hash.update(line.encode())
        self._hash.update(b"\n")
        self.tail.append(line)
        self.events += 1

    def digest(self) -> str:
        return self._hash.hexdigest()
