"""The launcher's errors: each message says what went wrong and what to do about it."""

from __future__ import annotations


class LaunchError(Exception):
    """A cluster command cannot go on; nothing was half-done (a failed start leaves no process behind)."""


class NoCluster(LaunchError):
    """No supervisor answers for the state directory: no cluster is running there."""


class ClusterRunning(LaunchError):
    """A cluster already runs in the state directory; a second one would fight over its files and addresses."""


class UnknownNode(LaunchError):
    """The name is not one of the cluster's nodes."""


class AddressUnavailable(LaunchError):
    """A loopback address cannot be bound on this machine (macOS has only 127.0.0.1 until aliased)."""


class PortInUse(LaunchError):
    """Another process holds a port the cluster needs."""
