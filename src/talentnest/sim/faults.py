"""Fault schedules: a list of timed faults, drawn from a seed, printable one per line, stored as
JSON, and replayed exactly (also after some faults are removed, when a failing schedule is shrunk).

Each fault starts at ``at`` and ends ``duration`` seconds later (the restart after a crash, the
resume after a pause, the heal after a partition...), so removing a fault removes both. The
generator never overlaps two process faults (crash, pause, stop, wipe) or two skews on one node,
nor two network bursts; partitions and DNS faults may overlap (they compose).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from typing import Any

PROCESS_KINDS = ("crash", "pause", "stop", "wipe", "join")
PARTITION_KINDS = ("isolate", "split", "cut", "link")
KINDS = (*PROCESS_KINDS, *PARTITION_KINDS, "net", "dns", "skew")
LEADER = "leader"  # a target: the node leading when the fault begins (the highest ID up, if none leads)
LEADER_KINDS = ("crash", "pause", "stop", "wipe", "isolate", "split", "skew")
DNS_MODES = ("nxdomain", "empty", "partial", "wrong", "timeout")


@dataclass(frozen=True)
class Fault:
    """One fault. ``nodes`` names its targets (``n1``..``n6``, or ``leader``: whichever node leads when
    the fault begins): the node for process faults and skew (for ``join``, the spare machine that joins
    with an empty disk and leaves gracefully at the end);
    for ``split`` one side (the rest is the other); for ``cut`` the sender then the receiver; for
    ``link`` the two ends; for ``dns`` the nodes whose lookups see it. ``params`` holds the rest:
    ``seconds`` (skew), ``loss``/``duplicate``/``delay`` (net), ``mode``/``keep``/``extra`` (dns)."""

    at: float
    kind: str
    duration: float
    nodes: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)

    @property
    def end(self) -> float:
        return self.at + self.duration

    def describe(self) -> str:
        who = " ".join(self.nodes)
        if self.kind == "cut":
            who = f"{self.nodes[0]}->{self.nodes[1]}"
        elif self.kind == "link":
            who = f"{self.nodes[0]}<->{self.nodes[1]}"
        elif self.kind == "split":
            who = f"{{{' '.join(self.nodes)}}} | rest"
        extra = ""
        if self.params:
            extra = " " + " ".join(f"{k}={_short(v)}" for k, v in sorted(self.params.items()))
        return f"t={self.at:7.3f}s {self.kind:<7} {who}{extra} for {self.duration:.3f}s"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["nodes"] = list(self.nodes)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        kind = data.get("kind")
        if kind not in KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(KINDS)}, got {kind!r}")
        params = dict(data.get("params") or {})
        for key in ("keep", "extra", "delay"):
            if key in params:
                params[key] = tuple(params[key])
        return cls(float(data["at"]), kind, float(data["duration"]), tuple(data.get("nodes") or ()), params)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(_short(v) for v in value) or "-"
    return str(value)


def dumps(faults: list[Fault]) -> str:
    return json.dumps([f.to_json() for f in faults], indent=1)


def loads(text: str) -> list[Fault]:
    """A schedule from JSON: a list of faults, or an object with one under ``faults`` (a finding's case)."""
    data = json.loads(text)
    if isinstance(data, dict) and "faults" in data:
        data = data["faults"]
    if not isinstance(data, list):
        raise ValueError("a schedule is a JSON list of faults")
    return [Fault.from_json(item) for item in data]


def describe(faults: list[Fault]) -> str:
    return "\n".join(f.describe() for f in faults) if faults else "(no faults)"


def generate(
    seed: int, names: list[str], *, start: float, end: float, count: tuple[int, int] = (3, 8), spare: str | None = None
) -> list[Fault]:
    """A random schedule within [start, end): every fault has ended by ``end``. ``spare`` names a
    machine outside the cluster that ``join`` faults bring in (none: no joins)."""
    rng = random.Random(f"{seed}:faults")
    busy: dict[str, list[tuple[float, float]]] = {}  # per node (and "net"): intervals taken by exclusive faults
    faults: list[Fault] = []
    wanted = rng.randint(*count)
    attempts = 0
    while len(faults) < wanted and attempts < wanted * 20:
        attempts += 1
        fault = _draw(rng, names, start, end, spare)
        if fault is None:
            continue
        lanes = _lanes(fault, names)
        if any(_overlaps(busy.get(lane, []), fault.at, fault.end) for lane in lanes):
            continue
        for lane in lanes:
            busy.setdefault(lane, []).append((fault.at, fault.end))
        faults.append(fault)
    faults.sort(key=lambda f: (f.at, f.kind, f.nodes))
    return faults


def without(faults: list[Fault], *, dns_modes: frozenset[str] = frozenset(), max_skew: float | None = None) -> list[Fault]:
    """The schedule with the DNS faults of ``dns_modes`` removed and skews kept within ``max_skew``
    (how a run tolerates a known finding: see ``sim.findings``); the other faults are unchanged."""
    kept = []
    for fault in faults:
        if fault.kind == "dns" and fault.params.get("mode") in dns_modes:
            continue
        if fault.kind == "skew" and max_skew is not None and abs(float(fault.params["seconds"])) > max_skew:
            seconds = max_skew if float(fault.params["seconds"]) > 0 else -max_skew
            fault = Fault(fault.at, fault.kind, fault.duration, fault.nodes, {**fault.params, "seconds": seconds})
        kept.append(fault)
    return kept


def _lanes(fault: Fault, names: list[str]) -> list[str]:
    if fault.kind in PROCESS_KINDS or fault.kind == "skew":
        lane = "proc" if fault.kind in PROCESS_KINDS else "skew"
        if fault.nodes[0] == LEADER:  # whoever leads then: it may be any of them
            return [f"{lane}:{n}" for n in (*names, LEADER)]
        return [f"{lane}:{fault.nodes[0]}", f"{lane}:{LEADER}"]
    if fault.kind == "net":
        return ["net"]
    return []


def _overlaps(intervals: list[tuple[float, float]], start: float, end: float) -> bool:
    # A little room between two faults of one lane: a restart completes before the next crash.
    return any(start < e + 0.5 and s < end + 0.5 for s, e in intervals)


_WEIGHTS = {
    "crash": 5,
    "pause": 3,
    "stop": 2,
    "wipe": 1,
    "isolate": 5,
    "split": 3,
    "cut": 2,
    "link": 2,
    "net": 4,
    "dns": 4,
    "skew": 1,
    "join": 1,
}


def _draw(rng: random.Random, names: list[str], start: float, end: float, spare: str | None) -> Fault | None:
    kind = rng.choices(list(_WEIGHTS), weights=list(_WEIGHTS.values()))[0]
    at = round(rng.uniform(start, end - 0.5), 3)
    # Short faults bite differently from long ones (a blip inside the suspicion time, or an outage
    # beyond FAILURE_TIMEOUT): draw both.
    longest = end - at
    duration = round(min(longest, rng.choice((rng.uniform(0.2, 2.5), rng.uniform(2.5, 9.0)))), 3)
    if duration < 0.1:
        return None
    # Half the faults that hit one node hit the one leading when the fault begins (as Jepsen's
    # nemeses target the primary): the leader is where a fault tests the most.
    targeted = kind in LEADER_KINDS and rng.random() < 0.5
    node = LEADER if targeted else rng.choice(names)
    params: dict[str, Any] = {}
    nodes: tuple[str, ...] = (node,)
    if kind == "join":
        if spare is None:
            return None
        nodes = (spare,)
    elif kind == "split" and not targeted:
        size = rng.randint(1, len(names) // 2)
        nodes = tuple(sorted(rng.sample(names, size)))
    elif kind in ("cut", "link"):
        a, b = rng.sample(names, 2)
        nodes = (a, b)
    elif kind == "net":
        nodes = ()
        params = {
            "loss": round(rng.uniform(0.05, 0.4), 3) if rng.random() < 0.5 else 0.0,
            "duplicate": round(rng.uniform(0.05, 0.4), 3) if rng.random() < 0.6 else 0.0,
            "delay": (0.0002, round(rng.uniform(0.01, 1.2), 4) if rng.random() < 0.7 else 0.002),
        }
    elif kind == "dns":
        mode = rng.choice(DNS_MODES)
        nodes = tuple(names) if rng.random() < 0.6 else tuple(sorted(rng.sample(names, rng.randint(1, len(names)))))
        params = {"mode": mode}
        if mode in ("partial", "wrong"):
            params["keep"] = tuple(sorted(rng.sample(names, rng.randint(0, len(names) - 1))))
        if mode == "wrong":
            params["extra"] = tuple(f"10.0.2.{200 + i}" for i in range(rng.randint(0, 2)))
    elif kind == "skew":
        params = {"seconds": round(rng.choice((-1, 1)) * rng.choice((rng.uniform(1, 25), rng.uniform(25, 45))), 3)}
    return Fault(at, kind, duration, nodes, params)
