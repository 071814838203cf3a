"""Talent Nest: a talent network's API run as a cluster of identical SQLite nodes."""

__version__ = "0.1.0"
