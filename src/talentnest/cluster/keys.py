"""Which JWT key signs new tokens while a key rotation rolls through the cluster: the newest one every
live member already accepts, as their heartbeats say (``NodeInfo.token_keys``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from talentnest.cluster.protocols import Core


def newest_accepted(ours: Sequence[str], theirs: Iterable[Sequence[str] | None]) -> str:
    """The first of ``ours`` (current first) that every member in ``theirs`` accepts. A member whose keys
    are unknown (``None``: it has not answered yet, or runs an older release) most likely still runs the
    previous settings, so then, as when no key is accepted by all, the oldest of ours."""
    accepted = list(theirs)
    if any(keys is None for keys in accepted):
        return ours[-1]
    for kid in ours:
        if all(kid in keys for keys in accepted):  # type: ignore[operator]
            return kid
    return ours[-1]


def token_key_for(node: Core, ours: Sequence[str]) -> str:
    """``newest_accepted`` over this node's members: those alive as they last said, and those not heard
    from yet (just started) as unknown; members heard from before but silent now are left out."""
    if len(ours) == 1:
        return ours[0]
    membership = node.membership
    theirs: list[Sequence[str] | None] = []
    for peer in membership.peers.values():
        if peer.last_ok is None or peer.info is None:
            theirs.append(None)
        elif membership.alive(peer):
            theirs.append(peer.info.token_keys)
    return newest_accepted(ours, theirs)
