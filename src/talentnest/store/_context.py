"""What the single write path tells the request that caused it (the LSN it committed)."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class WriteReceipt:
    """Filled in by ``Database.write`` for the request that set it: the last LSN committed, and the
    term and epoch of its entry (which name that entry among any other written at the same LSN)."""

    lsn: int = 0
    term: int = 0
    epoch: int = 0


current_receipt: ContextVar[WriteReceipt | None] = ContextVar("talentnest_write_receipt", default=None)
