"""Helpers for multi-process cluster tests: real nodes on loopback addresses, real DNS, signals, iptables.

Modelled on rqlite's ``system_test/e2e/helpers.py``. A :class:`Cluster` runs a
:class:`~talentnest.launcher.supervisor.LocalCluster` (the same supervisor as ``talentnest cluster up``)
on an event loop in a background thread; each :class:`Node` starts, stops (SIGTERM or SIGKILL),
pauses (SIGSTOP) and partitions its node. Every wait polls a condition with a deadline, and every
timeout fails with what was last seen plus the tail of every node's log.

Beyond signals and cuts, a cluster can misanswer DNS on purpose (:meth:`Cluster.dns`), give a node a
full disk (``disks=``: a tmpfs as its ``DATA_DIR``), a skewed wall clock (``fake_clocks=``: libfaketime)
or its own variables (``node_env=``); see ``hazards.py``.

Environment: ``TN_TEST_SUBNET`` (default 127.0.2) and ``TN_TEST_PUBLISH_BASE`` (default 3000; 0
publishes nothing) choose where test clusters live, so that several people can run tests at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import shutil
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from talentnest.cluster.auth import HEADER as SIGNATURE_HEADER
from talentnest.cluster.auth import check_answer, cluster_key, sign
from talentnest.launcher.probe import agreed_leader, disagreement
from talentnest.launcher.supervisor import ClusterConfig, DnsFault, LocalCluster, is_alive, parse_subnet
from talentnest.store import DB_FILENAME
from tests.cluster.hazards import Tmpfs, fake_clock_env, missing_tool, set_clock_offset

ROOT = Path(__file__).resolve().parents[2]
TEST_SUBNET = parse_subnet(os.environ.get("TN_TEST_SUBNET", "127.0.2"))
TEST_PUBLISH_BASE = int(os.environ.get("TN_TEST_PUBLISH_BASE", "3000"))
# Cheap password hashing: signups in tests cost milliseconds, not a second of CPU each.
FAST_HASHING = {"ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "1024", "ARGON2_PARALLELISM": "1"}
# Load from a few accounts on one address is what these clusters carry; the write limits that would
# refuse it are tested on their own (tests/api/test_accounts.py, test_account_control.py), with this overridden.
NO_WRITE_LIMITS = {"WRITE_LIMIT_PER_ACCOUNT": "0", "WRITE_LIMIT_PER_ADDRESS": "0"}
REAL_NODE_COMMAND = (sys.executable, "-m", "talentnest", "node")
FAKE_NODE_COMMAND = (sys.executable, str(ROOT / "tests" / "launcher" / "fake_node.py"))
DEFAULT_TIMEOUT = 30.0
LOG_TAIL_LINES = 40
REQUEST_TIMEOUT = 5.0
# How long a careful write (signup, post) retries a 503 with its Idempotency-Key before it fails.
WRITE_RETRY_SECONDS = 30.0

T = TypeVar("T")


# --- waiting --------------------------------------------------------------------------------------


def wait_until(
    condition: Callable[[], T],
    *,
    timeout: float,
    what: str,
    report: Callable[[], str] | None = None,
    interval: float = 0.1,
) -> T:
    """Poll ``condition()`` until it returns something truthy and return that.

    On timeout fail the test with ``what`` and ``report()`` (what was last seen, the nodes' logs).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            details = report() if report is not None else ""
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}\n{details}", pytrace=False)
        time.sleep(interval)


# --- the event loop the supervisor runs on ------------------------------------------------------


class _LoopThread:
    """An asyncio loop in a daemon thread; ``run`` executes a coroutine there and returns its result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="cluster-supervisor", daemon=True)
        self._thread.start()

    def run(self, coroutine, timeout: float | None = None):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()


# --- partitions -----------------------------------------------------------------------------------


def firewall_unavailable() -> str | None:
    """Why iptables partitions cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "partitions need root (iptables rules on loopback addresses); run the cluster tests as root, as CI does"
    if shutil.which("iptables") is None:
        return "partitions need iptables, which is not installed (apt-get install iptables)"
    probe = subprocess.run(["iptables", "-w", "-n", "-L", "INPUT"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"iptables does not work here: {probe.stderr.strip()}"
    return None


def require_firewall() -> None:
    """Skip the test when partitions cannot be made here (fail it when CI requires every tool)."""
    reason = firewall_unavailable()
    if reason is not None:
        missing_tool(reason)


class Firewall:
    """DROP rules between pairs of addresses, kept in a chain of our own jumped to from INPUT and OUTPUT.

    The chain is named after this process (``TN-TEST-<pid>``), so that concurrent test runs never
    flush each other's rules; chains left by dead test processes are removed on first use.
    """

    _STALE = re.compile(r"^-N (TN-TEST-(\d+))$", re.MULTILINE)

    def __init__(self) -> None:
        self.chain = f"TN-TEST-{os.getpid()}"
        self._pairs: set[frozenset[str]] = set()
        self._redirects: list[list[str]] = []
        self._is_set_up = False
        self._nat_is_set_up = False

    @staticmethod
    def _iptables(*arguments: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(["iptables", "-w", *arguments], capture_output=True, text=True)
        if check and result.returncode != 0:
            raise RuntimeError(f"iptables {' '.join(arguments)} failed: {result.stderr.strip()}")
        return result

    def _remove_chain(self, chain: str) -> None:
        for hook in ("INPUT", "OUTPUT"):
            while self._iptables("-D", hook, "-j", chain, check=False).returncode == 0:
                pass
        self._iptables("-F", chain, check=False)
        self._iptables("-X", chain, check=False)

    def _set_up(self) -> None:
        if self._is_set_up:
            return
        reason = firewall_unavailable()
        if reason is not None:
            missing_tool(reason)
        for chain, pid in self._STALE.findall(self._iptables("-S").stdout):
            if int(pid) != os.getpid() and not is_alive(int(pid)):
                self._remove_chain(chain)
        self._remove_chain(self.chain)
        self._iptables("-N", self.chain)
        self._iptables("-I", "INPUT", "1", "-j", self.chain)
        self._iptables("-I", "OUTPUT", "1", "-j", self.chain)
        self._is_set_up = True

    def _rules(self, a: str, b: str) -> list[list[str]]:
        return [["-s", a, "-d", b, "-j", "DROP"], ["-s", b, "-d", a, "-j", "DROP"]]

    def cut(self, a: str, b: str) -> None:
        """Drop every packet between ``a`` and ``b``, both ways (established connections too)."""
        self._set_up()
        pair = frozenset((a, b))
        if pair in self._pairs:
            return
        for rule in self._rules(a, b):
            self._iptables("-A", self.chain, *rule)
        self._pairs.add(pair)

    def restore(self, a: str, b: str) -> None:
        pair = frozenset((a, b))
        if pair not in self._pairs:
            return
        for rule in self._rules(a, b):
            self._iptables("-D", self.chain, *rule, check=False)
        self._pairs.discard(pair)

    def _set_up_nat(self) -> None:
        self._set_up()
        if self._nat_is_set_up:
            return
        for chain, pid in self._STALE.findall(self._iptables("-t", "nat", "-S").stdout):
            if int(pid) != os.getpid() and not is_alive(int(pid)):
                self._remove_nat_chain(chain)
        self._remove_nat_chain(self.chain)
        self._iptables("-t", "nat", "-N", self.chain)
        self._iptables("-t", "nat", "-I", "OUTPUT", "1", "-j", self.chain)
        self._nat_is_set_up = True

    def _remove_nat_chain(self, chain: str) -> None:
        while self._iptables("-t", "nat", "-D", "OUTPUT", "-j", chain, check=False).returncode == 0:
            pass
        self._iptables("-t", "nat", "-F", chain, check=False)
        self._iptables("-t", "nat", "-X", chain, check=False)

    def redirect(self, source: str, destination: str, port: int, to: tuple[str, int]) -> None:
        """New TCP connections from ``source`` to ``destination:port`` go to ``to`` instead (DNAT): a man in
        the middle between two nodes. Connections already open are not affected."""
        self._set_up_nat()
        rule = [
            "-s",
            source,
            "-d",
            destination,
            "-p",
            "tcp",
            "--dport",
            str(port),
            "-j",
            "DNAT",
            "--to-destination",
            f"{to[0]}:{to[1]}",
        ]
        self._iptables("-t", "nat", "-A", self.chain, *rule)
        self._redirects.append(rule)

    def restore_involving(self, address: str) -> None:
        for pair in [pair for pair in self._pairs if address in pair]:
            self.restore(*sorted(pair))

    @property
    def cuts(self) -> set[frozenset[str]]:
        return set(self._pairs)

    def close(self) -> None:
        """Remove the chain and its jumps; safe to call when nothing was ever cut."""
        if self._nat_is_set_up:
            self._remove_nat_chain(self.chain)
            self._nat_is_set_up = False
        if self._is_set_up:
            self._remove_chain(self.chain)
            self._is_set_up = False
        self._pairs.clear()
        self._redirects.clear()


# --- nodes ----------------------------------------------------------------------------------------


@dataclass
class Reply:
    """An HTTP answer: status, parsed JSON body (None if not JSON), headers, and the LSN the node reported."""

    status: int
    body: object
    headers: Mapping[str, str] = field(repr=False)

    @property
    def lsn(self) -> int | None:
        value = self.headers.get("x-cluster-lsn")
        return int(value) if value and value.isdigit() else None


class Node:
    """One node of a test cluster, driven from the test thread."""

    def __init__(self, cluster: Cluster, name: str):
        self.cluster = cluster
        self.name = name
        local = cluster._local.node(name)
        self.address = local.address
        self.node_id = local.node_id
        self.url = f"{cluster.scheme}://{local.address}:{local.port}"
        self.published_url = f"http://localhost:{local.publish_port}" if local.publish_port else None
        self.log_path = local.log_path
        self.data_dir = local.data_dir
        self.database = local.data_dir / DB_FILENAME
        self.clock_file = local.dir / "faketime.rc"

    def __repr__(self) -> str:
        return f"<Node {self.name} {self.address} id={self.node_id} {self.state}>"

    @property
    def _local(self):
        return self.cluster._local.node(self.name)

    @property
    def state(self) -> str:
        return self._local.state

    @property
    def pid(self) -> int | None:
        return self._local.pid

    @property
    def is_running(self) -> bool:
        """The process exists (perhaps paused): what DNS lists."""
        return self._local.is_running

    @property
    def is_paused(self) -> bool:
        return self.is_running and self._local.is_paused

    @property
    def env(self) -> dict[str, str]:
        """Variables for this node alone, applied at its next start (on top of the cluster's)."""
        return self._local.env

    @property
    def disk(self) -> Tmpfs:
        """The tmpfs that is this node's ``DATA_DIR`` (the cluster was made with ``disks=``)."""
        disk = self.cluster.disks.get(self.name)
        assert disk is not None, f"{self.name} has no disk of its own: make the cluster with disks={{'{self.name}': size}}"
        return disk

    def set_clock(self, offset: float) -> None:
        """Move this node's wall clock to ``offset`` seconds from the real one (it runs under libfaketime:
        the cluster was made with ``fake_clocks=``); a running node follows within a second."""
        assert "FAKETIME_TIMESTAMP_FILE" in self.env, f"{self.name} was not started with a fake clock"
        set_clock_offset(self.clock_file, offset)

    # life cycle

    def start(self, *, wait: bool = True, timeout: float = DEFAULT_TIMEOUT, env: Mapping[str, str] | None = None) -> Node:
        """``docker start``; with ``wait``, return once ``/readyz`` answers 200. ``env``: this node's own
        settings over the cluster's, from this start on (as a container recreated with other variables)."""
        if env is not None:
            self._local.env.update(env)
        self.cluster._run(self.cluster._local.start_node(self.name))
        if wait:
            self.wait_ready(timeout=timeout)
        return self

    def stop(self, *, graceful: bool = True, timeout: float | None = None) -> int | None:
        """SIGTERM (``docker stop``, SIGKILL after ``timeout``) or, if not graceful, SIGKILL; waits for the exit.

        Returns the exit code, negative for the signal that ended it: -9 after SIGKILL, and -15 after a
        clean SIGTERM shutdown of the real node (uvicorn re-raises the signal once it has shut down).
        The node leaves DNS as soon as its process is gone.
        """
        if graceful:
            self.cluster._run(self.cluster._local.stop_node(self.name, timeout))
        else:
            self.cluster._run(self.cluster._local.kill_node(self.name))
        return self._local.exit_code

    def pause(self) -> None:
        """SIGSTOP: the node hangs (no answers, no heartbeats) but stays in DNS."""
        self.cluster._run(self.cluster._local.pause_node(self.name))

    def resume(self) -> None:
        self.cluster._run(self.cluster._local.resume_node(self.name))

    # partitions

    def partition(self, *others: Node) -> None:
        """Drop all traffic between this node's address and each of ``others`` (all of them if none given)."""
        for other in others or [node for node in self.cluster.nodes if node is not self]:
            self.cluster.firewall.cut(self.address, other.address)

    def heal(self) -> None:
        """Remove every cut that involves this node."""
        self.cluster.firewall.restore_involving(self.address)

    # HTTP

    def request(
        self,
        method: str,
        path: str,
        *,
        json: object = None,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = REQUEST_TIMEOUT,
    ) -> Reply:
        """One HTTP request to this node's own address (not through the published port)."""
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        response = self.cluster.http.request(method, f"{self.url}{path}", json=json, headers=sent, timeout=timeout)
        try:
            body = response.json()
        except ValueError:
            body = None
        return Reply(response.status_code, body, response.headers)

    def status(self, timeout: float = 2.0) -> dict:
        """``GET /cluster/status``; raises (httpx errors, AssertionError) if the node does not answer 200."""
        reply = self.request("GET", "/cluster/status", timeout=timeout)
        assert reply.status == 200, f"{self.name}: /cluster/status answered {reply.status}: {reply.body}"
        return reply.body

    def try_status(self, timeout: float = 2.0) -> dict | None:
        """The status, or None when the node does not answer (down, paused, cut off, starting)."""
        try:
            return self.status(timeout)
        except (httpx.HTTPError, AssertionError):
            return None

    def is_ready(self) -> bool:
        try:
            return self.request("GET", "/readyz", timeout=2.0).status == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        wait_until(self.is_ready, timeout=timeout, what=f"{self.name} to be ready (/readyz 200)", report=self.cluster.report)

    def checksum(self) -> dict:
        """``GET /cluster/checksum``, signed as a peer would sign it: ``{"checksum", "applied_lsn"}``."""
        target = "/cluster/checksum"
        sent = sign(self.cluster.cluster_key, "GET", target)
        response = self.cluster.http.get(f"{self.url}{target}", headers={SIGNATURE_HEADER: sent}, timeout=REQUEST_TIMEOUT)
        assert response.status_code == 200, f"{self.name}: {target} answered {response.status_code}: {response.text}"
        # The answer must be the node's, signed for this very request (as a peer would check it).
        check_answer(
            self.cluster.cluster_key, sent, response.status_code, response.headers.get(SIGNATURE_HEADER), response.content
        )
        return response.json()

    def logs(self, tail: int | None = None) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-tail:]) if tail else text


# --- the cluster ----------------------------------------------------------------------------------


class Cluster:
    """A test cluster in its own state directory; ``close()`` stops everything and removes partitions."""

    _usernames = itertools.count(1)

    def __init__(
        self,
        directory: Path,
        *,
        env: Mapping[str, str] | None = None,
        node_command: Sequence[str] = REAL_NODE_COMMAND,
        subnet: str = TEST_SUBNET,
        publish_base: int = TEST_PUBLISH_BASE,
        stop_timeout: float = 10.0,
        node_env: Mapping[str, Mapping[str, str]] | None = None,
        disks: Mapping[str, int] | None = None,
        fake_clocks: Mapping[str, float] | None = None,
        scheme: str = "http",
        verify: ssl.SSLContext | bool = True,
    ):
        """``node_env``: name -> variables for that node alone; ``disks``: name -> bytes of a tmpfs mounted
        as its ``DATA_DIR``; ``fake_clocks``: name -> starting offset (s) of its libfaketime wall clock;
        ``scheme`` and ``verify`` (an SSL context with the CA and a client certificate) for nodes that speak TLS."""
        self.env = {**FAST_HASHING, **NO_WRITE_LIMITS, **(env or {})}
        self.directory = Path(directory).resolve()
        self._node_env = {name: dict(values) for name, values in (node_env or {}).items()}
        self._disk_sizes = dict(disks or {})
        self.disks: dict[str, Tmpfs] = {}
        for name, offset in (fake_clocks or {}).items():
            clock_file = self.directory / name / "faketime.rc"
            clock_file.parent.mkdir(parents=True, exist_ok=True)
            self._node_env.setdefault(name, {}).update(fake_clock_env(clock_file, offset))
        self.config = ClusterConfig(
            state_dir=Path(directory),
            subnet=subnet,
            publish_base=publish_base,
            env=self.env,
            node_command=tuple(node_command),
            stop_timeout=stop_timeout,
        )
        self.events: list[str] = []
        self._local = LocalCluster(self.config, on_event=self.events.append)
        self._loop: _LoopThread | None = None
        self._nodes: dict[str, Node] = {}
        self.firewall = Firewall()
        self.scheme = scheme
        self.http = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), trust_env=False, verify=verify)

    def _run(self, coroutine, timeout: float | None = 120.0):
        assert self._loop is not None, "start() the cluster first"
        return self._loop.run(coroutine, timeout)

    # life cycle

    def start(self, nodes: int = 3, *, wait: bool = True, timeout: float = DEFAULT_TIMEOUT) -> Cluster:
        """Start DNS, ports and ``nodes`` nodes; with ``wait``, return once every one agrees on a leader (the
        highest ID, unless nodes were given settings of their own)."""
        self._local.preflight(nodes)
        for name, size in self._disk_sizes.items():
            self.disks[name] = Tmpfs(self.directory / name / "data", size).mount()
        self._loop = _LoopThread()
        self._run(self._local.start(0))
        for index in range(1, nodes + 1):
            name = f"backend-{index}"
            self._run(self._local.add_node(name, env=self._node_env.get(name)))
            self._nodes[name] = Node(self, name)
        if wait:
            # The steady state tests assume: the highest ID leads (under load it may start last and be handed
            # the lead a moment after the others agreed). Nodes set up to differ may never get there.
            plain = not self._node_env and not self._disk_sizes
            self.wait_for_leader(expect=self._nodes[f"backend-{nodes}"] if plain and nodes > 1 else None, timeout=timeout)
        return self

    def add_node(
        self,
        name: str | None = None,
        *,
        wait: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        env: Mapping[str, str] | None = None,
    ) -> Node:
        """``docker run`` of one more node (backend-N on <subnet>.N), with ``env`` for it alone; with
        ``wait``, until it is ready."""
        local = self._run(self._local.add_node(name, env=env))
        node = self._nodes[local.name] = Node(self, local.name)
        if wait:
            node.wait_ready(timeout=timeout)
        return node

    def close(self) -> None:
        """Stop every node, the DNS server and the ports; remove every iptables rule. Safe to call twice."""
        try:
            self.firewall.close()
        finally:
            try:
                if self._loop is not None:
                    self._run(self._local.shutdown())
            finally:
                if self._loop is not None:
                    self._loop.close()
                    self._loop = None
                self.http.close()
                for disk in self.disks.values():
                    disk.unmount()

    # looking up

    @property
    def nodes(self) -> list[Node]:
        # A node being added is in the supervisor's list a moment before it is in ours (client threads ask meanwhile).
        return [self._nodes[local.name] for local in self._local.nodes if local.name in self._nodes]

    def node(self, key: str | int) -> Node:
        """By name (``"backend-2"``), by ID (514) or by position in ``nodes`` (0-based, if small)."""
        if isinstance(key, str):
            return self._nodes[self._local.node(key).name]
        for node in self.nodes:
            if node.node_id == key:
                return node
        return self.nodes[key]

    __getitem__ = node

    @property
    def jwt_secret(self) -> str:
        return self.env.get("JWT_SECRET") or self._local.jwt_secret

    @property
    def cluster_key(self) -> bytes:
        return cluster_key(jwt_secret=self.jwt_secret, cluster_secret=self.env.get("CLUSTER_SECRET"))

    @property
    def dns_address(self) -> tuple[str, int]:
        return self._local.dns_address

    def dns(self, kind: str | None, addresses: Iterable[str] = ()) -> None:
        """Make the cluster's DNS misanswer the service name from now on (``nxdomain``, ``empty``,
        ``servfail``, ``silent``, or ``only`` the given addresses: partial or wrong); None answers
        truthfully again."""
        fault = None if kind is None else DnsFault(kind, tuple(addresses))
        self._loop.loop.call_soon_threadsafe(setattr, self._local, "dns_fault", fault)
        self.events.append(f"DNS answers {kind or 'truthfully'}" + (f" {list(addresses)}" if addresses else ""))

    def live_nodes(self, exclude: Iterable[Node | str] = ()) -> list[Node]:
        """Nodes whose process runs and is not paused, minus ``exclude`` (nodes or names)."""
        excluded = {item.name if isinstance(item, Node) else item for item in exclude}
        return [node for node in self.nodes if node.is_running and not node.is_paused and node.name not in excluded]

    def statuses(self, nodes: Iterable[Node] | None = None) -> dict[str, dict | None]:
        return {node.name: node.try_status() for node in (self.live_nodes() if nodes is None else nodes)}

    # waiting

    def wait_for_leader(
        self, *, exclude: Iterable[Node | str] = (), expect: Node | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> Node:
        """Wait until every live node not in ``exclude`` names the same leader, one of them, which says it leads
        (and, with ``expect``, until that leader is ``expect``)."""
        excluded = list(exclude)
        last: dict[str, dict | None] = {}

        def agreed() -> Node | None:
            nonlocal last
            last = self.statuses(self.live_nodes(excluded))
            leader_id = agreed_leader(last)
            if leader_id is None or (expect is not None and leader_id != expect.node_id):
                return None
            return self.node(leader_id)

        names = ", ".join(node.name for node in self.live_nodes(excluded))
        return wait_until(
            agreed,
            timeout=timeout,
            what=(f"{expect.name} agreed as leader" if expect else "one leader agreed") + f" by {names or 'no live node'}",
            report=lambda: f"last seen: {disagreement(last)}\n{self.report()}",
        )

    def wait_for_applied(self, lsn: int, *, nodes: Iterable[Node] | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until each node (default: every live one) has applied ``lsn``."""
        chosen = list(self.live_nodes() if nodes is None else nodes)
        last: dict[str, dict | None] = {}

        def applied() -> bool:
            nonlocal last
            last = self.statuses(chosen)
            return all(status is not None and (status.get("applied_lsn") or 0) >= lsn for status in last.values())

        wait_until(
            applied,
            timeout=timeout,
            what=f"LSN {lsn} applied on {', '.join(node.name for node in chosen)}",
            report=lambda: (
                "last seen: "
                + "; ".join(f"{name}: {(status or {}).get('applied_lsn', 'no answer')}" for name, status in last.items())
                + f"\n{self.report()}"
            ),
        )

    def wait_converged(self, nodes: Iterable[Node] | None = None, timeout: float = 15.0) -> str:
        """Wait until every node (default: every live one) is at one LSN with one content checksum; that checksum."""
        chosen = list(self.live_nodes() if nodes is None else nodes)
        seen: dict = {}

        def same() -> bool:
            seen.clear()
            seen.update({n.name: n.checksum() for n in chosen})
            return len({(c["checksum"], c["applied_lsn"]) for c in seen.values()}) == 1

        wait_until(same, timeout=timeout, what="equal checksums", report=lambda: f"{seen}\n{self.report()}")
        return next(iter(seen.values()))["checksum"]

    def checksums(self, nodes: Iterable[Node] | None = None) -> dict[str, str]:
        """name -> database checksum, from every live node (or ``nodes``)."""
        return {node.name: node.checksum()["checksum"] for node in (self.live_nodes() if nodes is None else nodes)}

    # the product over HTTP

    def _writer(self, node: Node | None) -> Node:
        if node is not None:
            return node
        live = self.live_nodes()
        assert live, "no live node to send the request to"
        return live[0]

    def _careful_write(self, node: Node | None, path: str, body: dict, *, token: str | None = None, what: str) -> Reply:
        """One write as a careful client makes it: with an Idempotency-Key, a 503 (no leader yet, the
        entry not applied on this node yet...) is retried with the same key until it is answered;
        asserts 201. The key makes a retry safe: the cluster applies the write once."""
        writer = self._writer(node)
        headers = {"Idempotency-Key": f"harness-{uuid.uuid4().hex}"}
        deadline = time.monotonic() + WRITE_RETRY_SECONDS
        while True:
            reply = writer.request("POST", path, json=body, token=token, headers=headers)
            if reply.status != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert reply.status == 201, f"{what} answered {reply.status}: {reply.body}\n{self.report()}"
        return reply

    def signup(self, node: Node | None = None, *, username: str | None = None, password: str = "password123") -> Reply:
        """``POST /api/auth/signup`` of a fresh user; asserts 201. ``reply.body["token"]``, ``reply.lsn``."""
        username = username or f"user{next(self._usernames)}"
        body = {"name": username.title(), "username": username, "email": f"{username}@example.com", "password": password}
        return self._careful_write(node, "/api/auth/signup", body, what=f"signup of {username}")

    def post(self, token: str, content: str, node: Node | None = None) -> Reply:
        """``POST /api/posts``; asserts 201."""
        return self._careful_write(node, "/api/posts", {"content": content}, token=token, what="post")

    # failure reports

    def report(self, lines: int = LOG_TAIL_LINES) -> str:
        """Every node's state and the tail of its log, for failure messages."""
        parts = []
        for node in self.nodes:
            where = f"{node.address}, id {node.node_id}, {node.state}, pid {node.pid}"
            parts.append(f"--- {node.name} ({where}): last {lines} log lines")
            parts.append(node.logs(tail=lines) or "(empty log)")
        if self.firewall.cuts:
            parts.append("--- partitions: " + ", ".join(" x ".join(sorted(pair)) for pair in self.firewall.cuts))
        parts.append("--- supervisor events: " + " | ".join(self.events[-20:]))
        return "\n".join(parts)


def operator_command(*arguments: str, env: Mapping[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """``talentnest ARGUMENTS`` as an operator runs it, with nothing of the test's environment but PATH and PYTHONPATH."""
    environment = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT / "src"), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "talentnest", *arguments], env=environment, capture_output=True, text=True, timeout=timeout
    )


@contextlib.contextmanager
def running_cluster(directory: Path, nodes: int = 3, **options):
    """A started cluster that is always closed, for use outside the pytest fixture."""
    cluster = Cluster(directory, **options)
    try:
        cluster.start(nodes)
        yield cluster
    finally:
        cluster.close()
