"""The supervisor of a local cluster: node processes on loopback addresses, their DNS, ports and control.

It plays Docker's part for the seed's commands: ``docker run`` (``add_node``), ``docker stop``
(``stop_node``: SIGTERM, then SIGKILL after a grace period), ``docker kill``, ``docker start``,
``docker pause``; a DNS server that lists the nodes whose process is alive; ``-p 300i:3000``
port publishing. It restarts nothing by itself: a stopped or crashed node stays down.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import talentnest
from talentnest.cluster.state import DurableState
from talentnest.launcher import _control
from talentnest.launcher._dns import DNSServer, NoAnswer, ServerFailure, normalise
from talentnest.launcher._proxy import PortPublisher
from talentnest.launcher.errors import AddressUnavailable, ClusterRunning, LaunchError, NoCluster, PortInUse, UnknownNode

log = logging.getLogger("talentnest.launcher")

DEFAULT_STATE_DIR = Path(".talentnest/cluster")
NAME_PREFIX = "backend"
SECRET_FILE = "jwt_secret"
# Variables a node reads (DESIGN.md section 1): the supervisor's own environment must not leak
# them into the nodes (a stray NODE_ID would give every node the same ID); --env sets them.
NODE_VARIABLES = frozenset(
    {
        "PORT",
        "HOST",
        "SERVICE_NAME",
        "JWT_SECRET",
        "CLUSTER_SECRET",
        "ADVERTISE_ADDRESS",
        "NODE_ID",
        "DNS_SERVER",
        "PEERS",
        "DATA_DIR",
        "ELECTION_INTERVAL",
        "HEARTBEAT_INTERVAL",
        "FAILURE_TIMEOUT",
        "REPLICATION_MODE",
        "CLUSTER_SIZE",
        "LOG_FORMAT",
        "LOG_LEVEL",
        "JWT_SECRET_FILE",
        "CLUSTER_SECRET_FILE",
        "JWT_SECRET_PREVIOUS",
        "JWT_SECRET_PREVIOUS_FILE",
        "CLUSTER_SECRET_PREVIOUS",
        "CLUSTER_SECRET_PREVIOUS_FILE",
        "PREVIOUS_SECRETS_UNTIL",
        "CLUSTER_ACCEPT_LEGACY_SIGNATURES",
        "TLS_CERT_FILE",
        "TLS_KEY_FILE",
        "TLS_CA_FILE",
        "TLS_CLIENT_CERTS",
        "SNAPSHOT_COMPRESSION",
    }
)
DB_FILENAME = "talentnest.db"  # the node's file in DATA_DIR (talentnest.store.DB_FILENAME)
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_INDEXED_NAME = re.compile(rf"^{NAME_PREFIX}-(\d+)$")
_PR_SET_PDEATHSIG = 1

EventSink = Callable[[str], None]


def _last_term(db_path: Path) -> int:
    """The term of the last entry of the log in the database at ``db_path`` (0 without one)."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT term FROM _tn_log ORDER BY lsn DESC LIMIT 1").fetchone()
    except sqlite3.Error as exc:
        raise LaunchError(f"--data-from: cannot read the log of {db_path}: {exc}") from None
    finally:
        conn.close()
    return int(row[0]) if row else 0


def default_node_command() -> tuple[str, ...]:
    return (sys.executable, "-m", "talentnest", "node")


def node_id_of(address: str) -> int:
    """The seed's ID: the last two octets of the IPv4, ``a.b.c.d -> c*256 + d``."""
    octets = [int(part) for part in address.split(".")]
    return octets[2] * 256 + octets[3]


def parse_subnet(subnet: str) -> str:
    """Validate ``a.b.c`` (the first three octets of the nodes' addresses); return it normalised."""
    parts = subnet.strip().rstrip(".").split(".")
    try:
        if len(parts) != 3:
            raise ValueError
        address = ipaddress.IPv4Address(".".join([*parts, "1"]))
    except ValueError:
        raise LaunchError(f"--subnet must be three octets such as 127.0.2, got '{subnet}'") from None
    if not address.is_loopback:
        raise LaunchError(f"--subnet must be a loopback subnet (127.x.y) so nothing leaves this machine, got '{subnet}'")
    return ".".join(str(address).split(".")[:3])


@dataclass(frozen=True)
class DnsFault:
    """How the cluster's DNS misanswers the service name (the faults of a real resolver, played on purpose).

    ``kind`` is one of :data:`DNS_FAULTS`: ``nxdomain`` (the name does not exist), ``empty`` (it exists
    with no address), ``servfail``, ``silent`` (no answer at all: the asker times out), or ``only``
    (exactly ``addresses``: a partial answer when they are some of the nodes, a wrong one when they
    are not nodes at all). Node names (``backend-1``) keep answering as usual.
    """

    kind: str
    addresses: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in DNS_FAULTS:
            raise LaunchError(f"DNS fault must be one of {', '.join(DNS_FAULTS)}, got '{self.kind}'")
        if self.kind != "only" and self.addresses:
            raise LaunchError(f"DNS fault '{self.kind}' takes no addresses")

    def answer(self) -> list[str] | None:
        """The lookup's result under this fault (raises NoAnswer or ServerFailure for those faults)."""
        if self.kind == "silent":
            raise NoAnswer
        if self.kind == "servfail":
            raise ServerFailure
        return None if self.kind == "nxdomain" else list(self.addresses)


DNS_FAULTS = ("nxdomain", "empty", "servfail", "silent", "only")


@dataclass(frozen=True)
class ClusterConfig:
    """How to lay the cluster out. ``publish_base`` 0 publishes nothing."""

    state_dir: Path = DEFAULT_STATE_DIR
    subnet: str = "127.0.2"
    port: int = 3000
    publish_base: int = 3000
    publish_host: str = "127.0.0.1"
    service_name: str = "backend-service"
    env: Mapping[str, str] = field(default_factory=dict)
    node_command: Sequence[str] | None = None
    dns_port: int = 0
    stop_timeout: float = 10.0
    control: bool = True
    # A data directory (``talentnest generate``'s) whose database every node of ``start`` begins with.
    data_from: Path | None = None

    @property
    def dns_host(self) -> str:
        return f"{self.subnet}.254"


def _address_error(address: str, exc: OSError, *, what: str) -> LaunchError:
    if exc.errno == errno.EADDRNOTAVAIL:
        hint = (
            f"On macOS only 127.0.0.1 exists until you alias the others: `sudo ifconfig lo0 alias {address} up` "
            "(once per address, nodes and .254 for the DNS server)."
            if sys.platform == "darwin"
            else "Add it to the loopback interface (`sudo ip addr add {address}/8 dev lo`) or choose another --subnet."
        ).format(address=address)
        return AddressUnavailable(f"cannot use {address} for {what}: the address is not available on this machine. {hint}")
    if exc.errno == errno.EADDRINUSE:
        return PortInUse(f"{what} cannot start: {exc.strerror}")
    return LaunchError(f"cannot bind {address} for {what}: {exc.strerror or exc}")


def _next_subnet(subnet: str) -> str:
    """The subnet after ``subnet`` (127.0.2 -> 127.0.3), to suggest when it is taken."""
    head, third = subnet.rsplit(".", 1)
    return f"{head}.{int(third) % 254 + 1}"


def _publish_hint(base: int) -> str:
    other = base + 1000 if base + 1000 <= 65000 else 4000
    return f"Publish on other ports with --publish-base (e.g. --publish-base {other} gives localhost:{other + 1}...)."


def check_bindable(host: str, port: int, *, kind: int = socket.SOCK_STREAM, what: str, hint: str = "") -> None:
    """Raise AddressUnavailable or PortInUse (with ``hint``) unless ``host:port`` can be bound now."""
    with socket.socket(socket.AF_INET, kind) as sock:
        # The same option the servers use, so a port in TIME_WAIT does not read as taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(f"port {port} on {host} is in use ({what}). {hint}".rstrip()) from None
            raise _address_error(host, exc, what=what) from None


_prctl = None


def _load_prctl() -> None:
    """Resolve prctl in the parent: the child between fork and exec must not import or allocate much."""
    global _prctl
    if _prctl is None and sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            _prctl = ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the supervisor dies, so no node outlives it (Linux)."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def load_secret(state_dir: Path) -> str:
    """The cluster's JWT_SECRET: generated once, kept owner-only in the state directory, reused after."""
    path = state_dir / SECRET_FILE
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as stream:
            stream.write(secrets.token_hex(32))
    os.chmod(path, 0o600)
    secret = path.read_text().strip()
    if not secret:
        raise LaunchError(f"{path} is empty; delete it and a new secret will be generated")
    return secret


class LocalNode:
    """One node: its fixed place (name, address, directories) and its current process, if any."""

    def __init__(self, cluster: LocalCluster, name: str, index: int):
        self.name = name
        self.index = index
        self.address = f"{cluster.config.subnet}.{index}"
        self.node_id = node_id_of(self.address)
        self.port = cluster.config.port
        self.dir = cluster.state_dir / name
        self.data_dir = self.dir / "data"
        self.log_path = self.dir / "node.log"
        base = cluster.config.publish_base
        self.publish_port = base + index if base else None
        self.publisher: PortPublisher | None = None
        self.process: asyncio.subprocess.Process | None = None
        self.exit_code: int | None = None
        self.is_paused = False
        self.is_stopping = False
        self.lock = asyncio.Lock()
        self.watcher: asyncio.Task | None = None
        # This node's own settings over the cluster's (a clock offset, a clashing NODE_ID, new keys), from its next start.
        self.env: dict[str, str] = {}

    @property
    def is_running(self) -> bool:
        """The process exists (it may be paused): what Docker's DNS lists."""
        return self.process is not None and self.process.returncode is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.is_running else None

    @property
    def state(self) -> str:
        if self.is_running:
            return "paused" if self.is_paused else "running"
        if self.process is None:
            return "created"
        # Stopped on request (docker stop/kill), or exited on its own (a crash, a bad setting).
        return "stopped" if self.is_stopping else "exited"

    def describe(self, publish_host: str) -> dict:
        return {
            "name": self.name,
            "address": self.address,
            "id": self.node_id,
            "port": self.port,
            "internal_url": f"http://{self.address}:{self.port}",
            "url": f"http://localhost:{self.publish_port}" if self.publish_port else None,
            "publish": f"{publish_host}:{self.publish_port}" if self.publish_port else None,
            "pid": self.pid,
            "state": self.state,
            "exit_code": self.exit_code,
            "exit": _describe_exit(self.exit_code) if self.exit_code is not None else None,
            "log": str(self.log_path),
            "data": str(self.data_dir),
        }


class LocalCluster:
    """Runs the nodes of one state directory; every method runs on the event loop that called ``start``."""

    def __init__(self, config: ClusterConfig, *, on_event: EventSink | None = None):
        self.config = config
        self.state_dir = Path(config.state_dir).resolve()
        self._on_event = on_event or (lambda text: log.info("%s", text))
        self._nodes: dict[str, LocalNode] = {}
        self._dns: DNSServer | None = None
        self._control: _control.ControlServer | None = None
        self._secret: str | None = None
        self._done: asyncio.Event | None = None
        self._node_command = tuple(config.node_command or default_node_command())
        self.dns_fault: DnsFault | None = None

    # --- queries -----------------------------------------------------------------------------

    @property
    def nodes(self) -> list[LocalNode]:
        return sorted(self._nodes.values(), key=lambda node: node.index)

    def node(self, name: str) -> LocalNode:
        try:
            return self._nodes[name]
        except KeyError:
            known = ", ".join(node.name for node in self.nodes) or "none"
            raise UnknownNode(f"no node named '{name}' in this cluster (nodes: {known})") from None

    @property
    def jwt_secret(self) -> str:
        if self._secret is None:
            raise LaunchError("the cluster is not started")
        return self._secret

    @property
    def dns_address(self) -> tuple[str, int]:
        if self._dns is None:
            raise LaunchError("the cluster is not started")
        return self._dns.address

    def lookup(self, name: str) -> list[str] | None:
        """DNS: the service name lists every node whose process is alive (unless ``dns_fault`` says
        otherwise); a node's name, its address."""
        if name == normalise(self.config.service_name):
            if self.dns_fault is not None:
                return self.dns_fault.answer()
            return [node.address for node in self.nodes if node.is_running]
        node = self._nodes.get(name)
        if node is not None and node.is_running:
            return [node.address]
        return None

    def info(self) -> dict:
        host, port = self.dns_address
        return {
            "state_dir": str(self.state_dir),
            "supervisor_pid": os.getpid(),
            "service_name": self.config.service_name,
            "subnet": self.config.subnet,
            "port": self.config.port,
            "publish_base": self.config.publish_base,
            "dns": f"{host}:{port}",
            "nodes": [node.describe(self.config.publish_host) for node in self.nodes],
        }

    # --- life cycle ----------------------------------------------------------------------------

    def preflight(self, count: int) -> None:
        """Check, before starting anything, that every address and port the first ``count`` nodes need is free
        (and, with ``data_from``, that its database can be copied into nodes that hold none)."""
        config = self.config
        if config.data_from is not None:
            self._check_data_from(count)
        if config.control:
            with contextlib.suppress(NoCluster):
                running = _control.request(self.state_dir, "info", timeout=5)
                raise ClusterRunning(
                    f"a cluster is already running in {self.state_dir} (supervisor pid {running['supervisor_pid']}); "
                    "use `talentnest cluster status`, or `talentnest cluster down` first"
                )
        check_bindable(config.dns_host, config.dns_port, kind=socket.SOCK_DGRAM, what="the cluster's DNS server")
        for index in range(1, count + 1):
            address = f"{config.subnet}.{index}"
            check_bindable(
                address,
                config.port,
                what=f"{NAME_PREFIX}-{index}'s address",
                hint=f"Another cluster may use subnet {config.subnet}; "
                f"choose another with --subnet (e.g. {_next_subnet(config.subnet)}).",
            )
            if config.publish_base:
                check_bindable(
                    config.publish_host,
                    config.publish_base + index,
                    what=f"publishing {NAME_PREFIX}-{index}",
                    hint=_publish_hint(config.publish_base),
                )

    def _initial_data_dirs(self, count: int) -> list[Path]:
        return [self.state_dir / f"{NAME_PREFIX}-{index}" / "data" for index in range(1, count + 1)]

    def _check_data_from(self, count: int) -> None:
        source = Path(self.config.data_from) / DB_FILENAME
        if not source.is_file():
            raise LaunchError(
                f"--data-from {self.config.data_from}: no {DB_FILENAME} there (make one with `talentnest generate`)"
            )
        with open(source, "rb") as handle:
            if handle.read(16) != b"SQLite format 3\x00":
                raise LaunchError(f"--data-from: {source} is not an SQLite database")
        wal = Path(f"{source}-wal")
        if wal.exists() and wal.stat().st_size:
            raise LaunchError(f"--data-from: {source} is open or was not closed cleanly ({wal} is not empty); stop what uses it")
        for data_dir in self._initial_data_dirs(count):
            if (data_dir / DB_FILENAME).exists():
                raise LaunchError(
                    f"--data-from fills new nodes only, and {data_dir} already has a database; "
                    f"`talentnest cluster down --purge --dir {self.state_dir}` first, or drop --data-from"
                )

    def _copy_data_from(self, count: int) -> None:
        """Give each of the first ``count`` nodes its own copy of the ``data_from`` database (they then
        all start at its LSN: no snapshot to send), and the durable cluster state of a member.

        Without that state a node counts as new, or as one that lost its disk, and neither votes nor
        stands until a leader reaches it (docs/cluster.md); nodes that all hold the same copied data
        would then wait for each other for ever. They are the members of a cluster whose log is the
        copy's, as after a restore, so each starts in the copy's last term, having voted for no one.
        """
        source = Path(self.config.data_from) / DB_FILENAME
        size = source.stat().st_size
        self._on_event(f"copying {size / 1e9:.2f} GB of data from {source} into {count} node(s) ...")
        for data_dir in self._initial_data_dirs(count):
            data_dir.mkdir(parents=True, exist_ok=True)
            partial = data_dir / f"{DB_FILENAME}.copying"
            shutil.copyfile(source, partial)
            os.replace(partial, data_dir / DB_FILENAME)
            DurableState(data_dir).save(max(1, _last_term(data_dir / DB_FILENAME)), None)

    async def start(self, count: int) -> None:
        """Create the state directory, start DNS and the control channel, then ``count`` nodes."""
        self._done = asyncio.Event()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.state_dir, 0o700)
        self._secret = load_secret(self.state_dir)
        if self.config.data_from is not None:
            self._check_data_from(count)
            await asyncio.to_thread(self._copy_data_from, count)
        self._dns = DNSServer(self.config.dns_host, self.config.dns_port, self.lookup)
        try:
            await self._dns.start()
        except OSError as exc:
            raise _address_error(self.config.dns_host, exc, what="the cluster's DNS server") from None
        try:
            for _ in range(count):
                await self.add_node()
            # Last, so that a CLI that sees the control channel answer also sees every node.
            if self.config.control:
                self._control = _control.ControlServer(_control.socket_path(self.state_dir), self.handle)
                await self._control.start()
        except BaseException:
            await self.shutdown()
            raise

    async def wait_done(self) -> None:
        """Return once ``down`` was requested over the control channel."""
        assert self._done is not None, "start() first"
        await self._done.wait()

    async def shutdown(self) -> None:
        """Stop every node (SIGTERM, in parallel), then the ports, DNS and control channel."""
        await asyncio.gather(*(self.stop_node(node.name) for node in self.nodes if node.is_running), return_exceptions=True)
        for node in self.nodes:
            if node.publisher is not None:
                await node.publisher.close()
                node.publisher = None
            if node.watcher is not None:
                await asyncio.gather(node.watcher, return_exceptions=True)
        if self._control is not None:
            await self._control.close()
            self._control = None
        if self._dns is not None:
            self._dns.close()
            self._dns = None
        if self._done is not None:
            self._done.set()

    # --- nodes ---------------------------------------------------------------------------------

    def _next_index(self) -> int:
        used = {node.index for node in self._nodes.values()}
        index = max(used, default=0) + 1
        while index in used or f"{self.config.subnet}.{index}" == self.config.dns_host:
            index += 1
        if index > 253:
            raise LaunchError(f"subnet {self.config.subnet} is full (addresses .1 to .253 are nodes, .254 is DNS)")
        return index

    def _place(self, name: str | None) -> tuple[str, int]:
        if name is None:
            index = self._next_index()
            return f"{NAME_PREFIX}-{index}", index
        if not _NAME.match(name) or normalise(name) == normalise(self.config.service_name):
            raise LaunchError(f"node name must be a DNS label (a-z, 0-9, '-') other than the service name, got '{name}'")
        if name in self._nodes:
            raise LaunchError(f"a node named '{name}' already exists; start it with `talentnest cluster start {name}`")
        match = _INDEXED_NAME.match(name)
        if match is None:
            return name, self._next_index()
        index = int(match.group(1))
        if not 1 <= index <= 253 or index in {node.index for node in self._nodes.values()}:
            raise LaunchError(f"'{name}' needs address {self.config.subnet}.{index}, which is taken or out of range")
        return name, index

    async def add_node(self, name: str | None = None, *, start: bool = True, env: Mapping[str, str] | None = None) -> LocalNode:
        """``docker run``: a new node on the next free address (``backend-N`` on ``<subnet>.N``), with
        ``env`` for it alone on top of the cluster's."""
        name, index = self._place(name)
        node = LocalNode(self, name, index)
        node.env.update(env or {})
        node.data_dir.mkdir(parents=True, exist_ok=True)
        if node.publish_port:
            node.publisher = PortPublisher(self.config.publish_host, node.publish_port, lambda: self._target(node))
            try:
                await node.publisher.start()
            except OSError as exc:
                node.publisher = None
                if exc.errno == errno.EADDRINUSE:
                    raise PortInUse(
                        f"port {node.publish_port} on {self.config.publish_host} is in use (publishing {name}). "
                        "Publish on other ports with --publish-base."
                    ) from None
                raise _address_error(self.config.publish_host, exc, what=f"publishing {name}") from None
        self._nodes[name] = node
        if start:
            try:
                await self.start_node(name)
            except BaseException:
                del self._nodes[name]
                if node.publisher is not None:
                    await node.publisher.close()
                raise
        return node

    def _target(self, node: LocalNode) -> tuple[str, int] | None:
        return (node.address, node.port) if node.is_running else None

    def node_env(self, node: LocalNode) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if key not in NODE_VARIABLES}
        source_root = str(Path(talentnest.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [source_root, env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        host, port = self.dns_address
        env.update(
            HOST=node.address,
            PORT=str(node.port),
            SERVICE_NAME=self.config.service_name,
            JWT_SECRET=self.jwt_secret,
            DNS_SERVER=f"{host}:{port}",
            DATA_DIR=str(node.data_dir),
        )
        env.update(self.config.env)
        env.update(node.env)
        return env

    async def start_node(self, name: str) -> LocalNode:
        """``docker start``: run the node's process again, same address and data. No-op if it runs."""
        node = self.node(name)
        async with node.lock:
            if node.is_running:
                return node
            check_bindable(
                node.address,
                node.port,
                what=f"{name}'s address",
                hint="Another process (another cluster on this subnet?) holds it; choose another --subnet.",
            )
            node.data_dir.mkdir(parents=True, exist_ok=True)
            _load_prctl()
            with open(node.log_path, "ab") as log_file:
                try:
                    process = await asyncio.create_subprocess_exec(
                        *self._node_command,
                        stdin=asyncio.subprocess.DEVNULL,
                        stdout=log_file,
                        stderr=log_file,
                        env=self.node_env(node),
                        cwd=str(node.dir),
                        # Its own process group: Ctrl-C in the terminal reaches the supervisor only,
                        # which then stops each node in order.
                        start_new_session=True,
                        preexec_fn=_die_with_parent if _prctl is not None else None,
                    )
                except OSError as exc:
                    raise LaunchError(f"cannot run the node command {' '.join(self._node_command)}: {exc}") from None
            node.process, node.exit_code, node.is_paused, node.is_stopping = process, None, False, False
            node.watcher = asyncio.create_task(self._watch(node, process))
        self._on_event(f"{name} started (pid {process.pid}, {node.address}:{node.port}, ID {node.node_id})")
        return node

    async def _watch(self, node: LocalNode, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        if node.process is not process:
            return
        node.exit_code = code
        node.is_paused = False
        if node.is_stopping:
            return
        self._on_event(f"{node.name} exited on its own ({_describe_exit(code)}); see {node.log_path}")

    async def _signal_and_wait(self, node: LocalNode, sig: int, timeout: float | None) -> int | None:
        process = node.process
        if process is None or process.returncode is not None:
            return None
        node.is_stopping = True
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
            if node.is_paused and sig != signal.SIGKILL:
                # A paused process cannot act on SIGTERM until it runs again (docker stop does the same).
                process.send_signal(signal.SIGCONT)
        try:
            return await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            return await process.wait()

    async def stop_node(self, name: str, timeout: float | None = None) -> LocalNode:
        """``docker stop``: SIGTERM, wait for the exit (SIGKILL after ``timeout``, default 10 s)."""
        return await self._end(name, signal.SIGTERM, self.config.stop_timeout if timeout is None else timeout)

    async def kill_node(self, name: str) -> LocalNode:
        """``docker kill``: SIGKILL, and wait for the process to be gone (it leaves DNS at once)."""
        return await self._end(name, signal.SIGKILL, None)

    async def _end(self, name: str, sig: int, grace: float | None) -> LocalNode:
        node = self.node(name)
        async with node.lock:
            code = await self._signal_and_wait(node, sig, grace)
        if code is not None:
            node.exit_code = code
            self._on_event(f"{name} {'killed' if sig == signal.SIGKILL else 'stopped'} ({_describe_exit(code)})")
        return node

    async def pause_node(self, name: str) -> LocalNode:
        """``docker pause`` (SIGSTOP): the process hangs but stays alive, so DNS keeps listing it."""
        return self._freeze(name, paused=True)

    async def resume_node(self, name: str) -> LocalNode:
        """``docker unpause`` (SIGCONT)."""
        return self._freeze(name, paused=False)

    def _freeze(self, name: str, *, paused: bool) -> LocalNode:
        node = self._running(name)
        node.process.send_signal(signal.SIGSTOP if paused else signal.SIGCONT)
        node.is_paused = paused
        self._on_event(f"{name} {'paused (SIGSTOP)' if paused else 'resumed (SIGCONT)'}")
        return node

    def _running(self, name: str) -> LocalNode:
        node = self.node(name)
        if not node.is_running:
            raise LaunchError(f"{name} is not running (start it with `talentnest cluster start {name}`)")
        return node

    # --- control channel -------------------------------------------------------------------------

    async def handle(self, request: dict) -> dict:
        """Serve one control request; a LaunchError becomes ``{"ok": false, "error": message}``."""
        op = request.get("op")
        actions = {
            "start": self.start_node,
            "stop": lambda name: self.stop_node(name, request.get("grace")),
            "kill": self.kill_node,
            "pause": self.pause_node,
            "resume": self.resume_node,
            "add": self.add_node,
        }
        try:
            if op == "info":
                return {"ok": True, **self.info()}
            if op == "down":
                await asyncio.gather(*(self.stop_node(node.name) for node in self.nodes if node.is_running))
                assert self._done is not None
                self._done.set()
                return {"ok": True, **self.info()}
            if op in actions:
                name = request.get("name")
                if name is None and op != "add":
                    raise LaunchError(f"'{op}' needs a node name")
                node = await actions[op](name)
                return {"ok": True, "node": node.describe(self.config.publish_host)}
            raise LaunchError(f"unknown operation '{op}'")
        except LaunchError as exc:
            return {"ok": False, "error": str(exc)}


def _describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"


def is_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs; a zombie (exited, not yet reaped by its parent) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        # No /proc (macOS): kill() said it exists. On Linux: it was reaped in between.
        return not sys.platform.startswith("linux")
    except (OSError, IndexError):
        return True
    return state != "Z"


def wait_for_exit(pid: int, timeout: float) -> bool:
    """Poll until process ``pid`` is gone; True if it went within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while is_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
