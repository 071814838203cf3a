"""Plays a fault schedule on a world: each fault's beginning and end, at their times.

A process fault acts on the host (crash, pause, SIGTERM, wipe, a spare joining), a partition cuts
and later heals the links between hosts, a burst changes the network's conditions, a DNS fault adds
and removes an override, a skew moves one node's wall clock. ``heal_everything`` ends what is still
going on when the fault window closes.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace
from typing import TYPE_CHECKING

from talentnest.sim import faults as faults_mod
from talentnest.sim.dns import Override
from talentnest.sim.faults import Fault
from talentnest.sim.net import Conditions

if TYPE_CHECKING:
    from talentnest.sim.host import SimHost
    from talentnest.sim.world import World


class Nemesis:
    def __init__(self, world: World):
        self.world = world
        self.active: dict[int, Fault] = {}
        self.overrides: dict[int, Override] = {}
        self.targets: dict[int, tuple[str, ...]] = {}  # what each fault's "leader" turned out to be
        self._ids = itertools.count()

    def schedule(self, faults: list[Fault]) -> None:
        """Each fault's beginning and end, as timers of the world's control loop."""
        control = self.world.control
        for fault in faults:
            fault_id = next(self._ids)
            control.call_at(fault.at, self.begin, fault_id, fault)
            control.call_at(fault.end, self.end, fault_id)

    def _resolve(self, fault_id: int, fault: Fault) -> Fault:
        """The fault with ``leader`` replaced by the node leading now (the same one at its end)."""
        if fault_id not in self.targets:
            self.targets[fault_id] = tuple(self._leader_name() if n == faults_mod.LEADER else n for n in fault.nodes)
        return replace(fault, nodes=self.targets[fault_id])

    def _leader_name(self) -> str:
        members = self.world.members
        leading = [h for h in members if h.incarnation is not None and h.incarnation.node.role == "leader"]
        if leading:
            return max(leading, key=lambda h: h.incarnation.node.term).name
        running = [h for h in members if h.running]
        return max(running or members, key=lambda h: h.address.split(".")[-1].zfill(3)).name

    def _addresses(self, names) -> list[str]:
        return [self.world.by_name[n].address for n in names]

    def _links(self, fault: Fault) -> list[tuple[str, str]]:
        everyone = [h.address for h in self.world.hosts]
        if fault.kind == "isolate":
            (me,) = self._addresses(fault.nodes)
            return [(me, o) for o in everyone if o != me] + [(o, me) for o in everyone if o != me]
        if fault.kind == "split":
            side = set(self._addresses(fault.nodes))
            rest = [a for a in everyone if a not in side]
            return [(a, b) for a in sorted(side) for b in rest] + [(b, a) for a in sorted(side) for b in rest]
        a, b = self._addresses(fault.nodes)
        return [(a, b)] if fault.kind == "cut" else [(a, b), (b, a)]

    def begin(self, fault_id: int, fault: Fault) -> None:
        targeted = faults_mod.LEADER in fault.nodes
        fault = self._resolve(fault_id, fault)
        self.active[fault_id] = fault
        self.world.trace.add(f"fault begins: {fault.describe()}{' (the leader)' if targeted else ''}")
        kind = fault.kind
        if kind in ("crash", "pause", "stop", "wipe", "skew", "join"):
            host = self.world.by_name[fault.nodes[0]]
            if kind == "join":
                self.world.control.create_task(self._join(host, fault_id))
            elif kind == "crash":
                host.crash()
            elif kind == "pause":
                host.pause()
            elif kind == "stop":
                host.terminate()
            elif kind == "wipe":
                host.crash()
                host.wipe()
            else:
                host.skew = float(fault.params["seconds"])
        elif kind in faults_mod.PARTITION_KINDS:
            self.world.network.cut(self._links(fault))
        elif kind == "net":
            p = fault.params
            self.world.network.conditions = Conditions(
                float(p.get("loss", 0)), float(p.get("duplicate", 0)), tuple(p.get("delay", (0.0002, 0.0015)))
            )
        elif kind == "dns":
            p = fault.params
            override = Override(
                p["mode"],
                frozenset(self._addresses(fault.nodes)),
                frozenset(self._addresses(p.get("keep", ()))),
                frozenset(p.get("extra", ())),
            )
            self.overrides[fault_id] = override
            self.world.dns.overrides.append(override)

    def end(self, fault_id: int) -> None:
        fault = self.active.pop(fault_id, None)
        if fault is None:
            return
        self.world.trace.add(f"fault ends: {fault.describe()}")
        kind = fault.kind
        if kind in ("crash", "stop", "wipe"):
            self.world.control.create_task(self._start_when_down(self.world.by_name[fault.nodes[0]]))
        elif kind == "join":
            self.world.by_name[fault.nodes[0]].terminate()
        elif kind == "pause":
            self.world.by_name[fault.nodes[0]].resume()
        elif kind == "skew":
            self.world.by_name[fault.nodes[0]].skew = 0.0
        elif kind in faults_mod.PARTITION_KINDS:
            self.world.network.heal(self._links(fault))
        elif kind == "net":
            self.world.network.conditions = Conditions()
        elif kind == "dns":
            override = self.overrides.pop(fault_id, None)
            if override in self.world.dns.overrides:
                self.world.dns.overrides.remove(override)

    async def _join(self, host: SimHost, fault_id: int) -> None:
        """A new machine joins with an empty disk (once the one before it has left), unless its fault
        ended meanwhile: a join that started after the faults were over left a sixth node running that
        no check counted as a member, leading the others (seed 11246)."""
        while host.running:
            await asyncio.sleep(0.05)
        if fault_id not in self.active:
            return
        host.wipe()
        host.start()

    async def _start_when_down(self, host: SimHost) -> None:
        while host.running:  # a graceful stop still draining
            await asyncio.sleep(0.05)
        host.start()

    def heal_everything(self) -> None:
        for fault_id in sorted(self.active):
            self.end(fault_id)
