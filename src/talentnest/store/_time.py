"""Timestamps as they are stored and sent: ISO 8601 UTC with milliseconds."""

from __future__ import annotations

import time

# The formatted second of the last call: every write stamps its log entry, and formatting the
# date part again for each of thousands of writes in the same second costs more than the write.
_last_second: tuple[int, str] = (-1, "")


def iso_now(clock=time.time) -> str:
    return iso_from_epoch(clock())


def iso_from_epoch(seconds: float) -> str:
    global _last_second
    whole, millis = divmod(int(seconds * 1000), 1000)
    cached = _last_second
    if cached[0] != whole:
        cached = (whole, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(whole)))
        _last_second = cached
    return f"{cached[1]}{millis:03d}Z"
