"""What the simulation watches in every node, as it happens, and hands to the invariants.

After each step of a node's loop: its role and term (``one_leader_per_term``), whether its database
was reopened (a start, a snapshot: everything it held before and no longer holds must be archived),
its LSN (never back without an archive). At each commit: a leader's write (``lease_overlap``) and the
entries it now holds. At each answer leaving a node: a 500, a vote granted before it was stored, a
follower acknowledging what it has not committed. The archives are read from ``DATA_DIR/archive/``.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from talentnest.cluster.discovery import node_id_for
from talentnest.sim.invariants import Commit, Violation

if TYPE_CHECKING:
    from talentnest.sim.host import Incarnation, SimHost
    from talentnest.sim.loop import SimLoop
    from talentnest.sim.world import World

BOOTSTRAP = 1.0  # the first node up leads alone until the others start: by design, not a finding
STATE_FILENAME = "cluster-state.json"  # cluster/state.py: where a node keeps its term and vote
ARCHIVE_DIR = "archive"  # store/divergence.py


def canonical_digest(changes: str | list) -> int:
    """A digest of an entry's changes that does not depend on how a node spelled the JSON."""
    value = json.loads(changes) if isinstance(changes, str) else changes
    return zlib.crc32(json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode())


@dataclass
class _Memory:
    """What the simulation remembers of one host across its incarnations."""

    role: tuple[str, int] | None = None
    lsn: int = 0
    conn: Any = None
    captured_to: int = 0
    entries: dict[int, tuple[int, int]] = field(default_factory=dict)  # lsn -> (term, digest) it held
    archives: dict[str, dict] = field(default_factory=dict)  # archive file name -> parsed


class Watcher:
    def __init__(self, world: World, hosts: int):
        self.world = world
        self.of = {i: _Memory() for i in range(hosts)}
        self.counted_out = False  # a node led having counted out members that run (async mode's hole)

    def _long_running(self, seconds: float) -> set[int]:
        """The node IDs of the processes that have been serving for at least ``seconds``."""
        now = self.world.clock.now
        return {
            h.node_id
            for h in self.world.hosts
            if h.incarnation is not None and h.incarnation.started and now - h.incarnation.started_at >= seconds
        }

    def started(self, host: SimHost, inc: Incarnation) -> None:
        """A new incarnation: its loop belongs to ``host``; its commits are watched."""
        inc.loop.owner = host
        inc.db.add_commit_listener(lambda lsn: self._committed(host, inc, lsn))
        self.of[host.index].conn = None

    def wiped(self, host: SimHost) -> None:
        """The host lost its disk: what it held is forgotten, and the loss is on record."""
        self.of[host.index] = _Memory()
        self.world.checker.wiped.append((self.world.clock.now, node_id_for(host.address)))

    def answered(self, host: SimHost, inc: Incarnation, exchange, reply) -> None:
        """Checks on what leaves a node, at the instant it leaves."""
        if self.world.closing:
            return
        request = exchange.request
        if reply.status >= 500 and reply.status != 503:
            self.world.violation(
                Violation(
                    "server_error",
                    f"{host.name} answered {request.method} {request.target} with {reply.status}: {reply.body[:300]!r}",
                    self.world.clock.now,
                )
            )
            return
        path = request.target.split("?")[0]
        if reply.status != 200 or path not in ("/cluster/vote", "/cluster/replicate"):
            return
        answer = json.loads(reply.body)
        if path == "/cluster/vote":
            asked = json.loads(request.body)
            if answer.get("granted") and not asked.get("pre_vote"):
                term, candidate = int(asked["term"]), int(asked["candidate_id"])
                if not self._vote_on_disk(host, term, candidate):
                    self.world.violation(
                        Violation(
                            "vote_not_durable",
                            f"{host.name} granted its vote in term {term} to node {candidate} before storing it",
                            self.world.clock.now,
                        )
                    )
        else:
            applied = int(answer.get("applied_lsn", 0))
            if applied > inc.db.last_lsn:
                self.world.violation(
                    Violation(
                        "ack_beyond_commit",
                        f"{host.name} answered replicate with applied_lsn {applied} while it has committed {inc.db.last_lsn}",
                        self.world.clock.now,
                    )
                )

    def _vote_on_disk(self, host: SimHost, term: int, candidate: int) -> bool:
        try:
            stored = json.loads((host.data_dir / STATE_FILENAME).read_text())
        except (OSError, ValueError):
            return False
        return int(stored.get("term", 0)) > term or (int(stored.get("term", 0)) == term and stored.get("voted_for") == candidate)

    def stepped(self, loop: SimLoop) -> None:
        """After every step of a node's loop: its role and term, its database, its LSN."""
        host = loop.owner
        if host is None:
            return
        inc = host.incarnation
        if inc is None or inc.loop is not loop:
            return
        watch = self.of[host.index]
        node, db = inc.node, inc.db
        role = (node.role, node.term)
        if role != watch.role:
            watch.role = role
            self.world.trace.add(f"{host.name} is {role[0]} in term {role[1]}")
            if role[0] == "leader":
                members = self._long_running(BOOTSTRAP) - {node.node_id}
                if node.voters() < 1 + len(members) and not self.counted_out:
                    # Async mode's documented hole (findings F8): it counted out members whose processes run.
                    self.counted_out = True
                    counted = f"{node.voters()} voters of {1 + len(members)}"
                    self.world.trace.add(f"{host.name} leads term {role[1]} counting {counted}")
                if node.voters() == 1 and len(self.world.hosts) > 1 and self.world.clock.now > BOOTSTRAP:
                    text = f"{host.name} leads term {role[1]} with a voter set of 1 (itself)"
                    if self.world.known_trigger("led-alone", text):
                        return
                self.world.checker.leader(self.world.clock.now, role[1], node.node_id)
        try:
            conn = db.conn
        except RuntimeError:
            return  # not open yet (or closing): its LSN is not its data's
        if conn is not watch.conn:
            watch.conn = conn
            self._database_opened(host, inc)
        lsn = db.last_lsn
        if lsn != watch.lsn:
            if lsn < watch.lsn:
                self._lsn_went_back(host, watch.lsn, lsn)
            watch.lsn = lsn

    def _committed(self, host: SimHost, inc: Incarnation, lsn: int) -> None:
        if inc.loop.dead or self.world.closing:
            return
        node, db = inc.node, inc.db
        if node.role == "leader":
            self.world.checker.commit(Commit(self.world.clock.now, node.node_id, db.last_term, lsn))
        watch = self.of[host.index]
        for row_lsn, term, changes in db.conn.execute(
            "SELECT lsn, term, changes FROM _tn_log WHERE lsn > ? ORDER BY lsn", (watch.captured_to,)
        ):
            watch.entries[row_lsn] = (term, canonical_digest(changes))
            watch.captured_to = row_lsn

    def log_of(self, inc: Incarnation) -> dict[int, tuple[int, int]]:
        return {
            lsn: (term, canonical_digest(ch)) for lsn, term, ch in inc.db.conn.execute("SELECT lsn, term, changes FROM _tn_log")
        }

    def _database_opened(self, host: SimHost, inc: Incarnation) -> None:
        """The database file was (re)opened (a start, or a snapshot installed): everything this host
        held before and no longer holds must be in its archive."""
        watch = self.of[host.index]
        now_held = self.log_of(inc)
        self.check_archived(host, watch.entries, now_held)
        watch.entries = now_held
        watch.captured_to = max(now_held, default=0)

    def check_archived(self, host: SimHost, before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]) -> None:
        gone = {lsn: v for lsn, v in before.items() if after.get(lsn) != v}
        if not gone:
            return
        archived = self._archived_entries(host)
        missing = sorted(lsn for lsn, v in gone.items() if v not in archived.get(lsn, ()))
        if missing:
            self.world.violation(
                Violation(
                    "divergent_not_archived",
                    f"{host.name} no longer holds entries {_ranges(missing)} it held before, and no archive has them",
                    self.world.clock.now,
                )
            )

    def archives(self, host: SimHost) -> dict[str, dict]:
        watch = self.of[host.index]
        directory = host.data_dir / ARCHIVE_DIR
        if directory.is_dir():
            for path in sorted(directory.glob("*.jsonl")):
                if path.name not in watch.archives:
                    lines = path.read_text().splitlines()
                    watch.archives[path.name] = {"header": json.loads(lines[0]), "entries": [json.loads(x) for x in lines[1:]]}
        return watch.archives

    def _archived_entries(self, host: SimHost) -> dict[int, set[tuple[int, int]]]:
        held: dict[int, set[tuple[int, int]]] = {}
        for archive in self.archives(host).values():
            for entry in archive["entries"]:
                held.setdefault(int(entry["lsn"]), set()).add((int(entry["term"]), canonical_digest(entry["changes"])))
        return held

    def _lsn_went_back(self, host: SimHost, before: int, after: int) -> None:
        for archive in self.archives(host).values():
            header = archive["header"]
            if header["from_lsn"] <= after + 1 and header["to_lsn"] >= before:
                self.world.trace.add(f"{host.name} LSN {before} -> {after}, archived LSN {header['from_lsn']}-{header['to_lsn']}")
                return
        self.world.violation(
            Violation(
                "lsn_backwards",
                f"{host.name}'s LSN went from {before} to {after} with no archive of LSN {after + 1}-{before}",
                self.world.clock.now,
            )
        )

    def _archived_changes(self, table: str, operations: tuple[str, ...]):
        """Every row change to ``table`` in any host's archive (where async mode may put an acknowledged write)."""
        for host in self.world.hosts:
            for archive in self.archives(host).values():
                for entry in archive["entries"]:
                    for change in entry["changes"]:
                        if change.get("table") == table and change.get("operation") in operations:
                            yield change["data"]

    def archived_token_keys(self) -> set[str]:
        """The token key of every account whose signup is in an archive (a signup async mode lost)."""
        return {str(data.get("token_key")) for data in self._archived_changes("users", ("INSERT",))}

    def archived_contents(self) -> set[str]:
        """Every post content in any host's archive."""
        return {data.get("content") for data in self._archived_changes("posts", ("INSERT", "UPDATE"))}


def _ranges(numbers: list[int]) -> str:
    parts, start, prev = [], None, None
    for n in numbers:
        if start is None:
            start = prev = n
        elif n == prev + 1:
            prev = n
        else:
            parts.append(f"{start}-{prev}" if start != prev else str(start))
            start = prev = n
    if start is not None:
        parts.append(f"{start}-{prev}" if start != prev else str(start))
    return ", ".join(parts)
