"""Sizes and amounts as people read them in log lines and tables."""

from __future__ import annotations


def human_bytes(size: float) -> str:
    """1536 -> '1.5 KB' (decimal units, as disk and network tools count)."""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"
