"""What the single write path tells the request that caused it (the LSN it committed)."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class WriteReceipt:
    """Filled in by ``Database.write`` for the request that set it: the last LSN committed."""

    lsn: int = 0


current_receipt: ContextVar[WriteReceipt | None] = ContextVar("talentnest_write_receipt", default=None)
