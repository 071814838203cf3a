"""Shared pieces of peers.py and candidates.py: wrk runs that count errors and CPU of every process, the peers' servers.

- ``run`` drives one target with wrk (a Lua script per scenario, a ``response`` hook counting every
  answer that failed, whether by status or, as dqlite-demo answers, by a 200 whose body starts
  ``Error:``) and reads the CPU time of every process of every system before and after.
- ``DqliteDemo``: a 3-node ``dqlite-demo`` cluster (Debian's go-dqlite) on loopback addresses.
- ``BareApp``: ``_bare.py`` on uvicorn over a SQLite file with the product's schema and seed.
- ``TalentNest``: a Talent Nest cluster (1 or 3 nodes) from the tests' harness, seeded through its API.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from _cluster import cpu_seconds, load
from replication import seed_tokens, start_cluster
from tests.cluster.harness import REAL_NODE_COMMAND, Cluster, Node

from talentnest.services import Tokens
from talentnest.store.posts import PostRepo
from talentnest.store.schema import product_database
from talentnest.store.users import UserRepo

HERE = Path(__file__).resolve().parent
BARE_APP = HERE / "_bare.py"
DQLITE_INSTALL = "apt-get install -y go-dqlite"
# A post's JSON is about this long; dqlite-demo's values are made as long, so bodies weigh the same.
VALUE_BYTES = 260

# wrk's Lua: every thread counts its failed answers (status >= 400, or dqlite-demo's 200 "Error: ..."),
# done() adds them up and prints one line we parse, latencies in microseconds.
_COUNTING_LUA = r"""
bad = 0
first_error = ""
local threads = {}
function setup(thread) table.insert(threads, thread) end
response = function(status, headers, body)
  if status >= 400 or string.sub(body, 1, 6) == "Error:" then
    bad = bad + 1
    if first_error == "" then first_error = status .. " " .. string.sub(body, 1, 120) end
  end
end
done = function(summary, latency, requests)
  local failed, sample = 0, ""
  for _, t in ipairs(threads) do
    failed = failed + t:get("bad")
    if sample == "" then sample = t:get("first_error") end
  end
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"socket_errors":%d,"failed":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"first_error":"%s"}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, failed,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, (string.gsub(sample, '[%c"\\]', " "))))
end
"""


def lua_list(values: Iterable) -> str:
    return "{" + ", ".join(json.dumps(v) for v in values) + "}"


def lua_get(paths: Sequence[str]) -> str:
    """GET the paths in a scattered order (wrk threads each start at their own point)."""
    return f"""
local paths = {lua_list(paths)}
local n = math.random(1, #paths)
request = function()
  n = n + 7919
  return wrk.format("GET", paths[(n % #paths) + 1])
end
"""


def lua_put(keys: int) -> str:
    """dqlite-demo's write: ``PUT /<key>`` with a value of a post's size, over ``keys`` keys."""
    return f"""
local n = math.random(1, {keys})
local pad = string.rep("x", {VALUE_BYTES - 40})
request = function()
  n = n + 1
  return wrk.format("PUT", "/key" .. (n % {keys}), nil, "benchmark value " .. n .. " " .. pad)
end
"""


# --- a measured run --------------------------------------------------------------------------------


@dataclass
class Scenario:
    """One target under load: ``system`` (a key of the systems' processes), the URL, the Lua, connections."""

    name: str
    system: str
    kind: str  # "read" or "write"
    url: str
    lua: str
    connections: int = 32
    entry: str | None = None  # the process the requests enter (a label of the system's processes)


def _cpu(processes: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, float | None]]:
    return {system: {label: cpu_seconds(pid) for label, pid in pids.items()} for system, pids in processes.items()}


_TICKS = os.sysconf("SC_CLK_TCK")


def kernel_seconds(pid: int) -> float | None:
    """The system (kernel) part of a process's CPU time so far, from /proc (sockets, epoll, fsync)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rpartition(")")[2].split()[12]) / _TICKS
    except OSError:
        return None


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def wrk(binary: str, scenario: Scenario, *, seconds: float, threads: int, workdir: Path) -> dict:
    script = workdir / f"{scenario.name.replace(' ', '_').replace('/', '_')}.lua"
    script.write_text(scenario.lua + _COUNTING_LUA)
    threads = max(1, min(threads, scenario.connections))
    command = [binary, f"-t{threads}", f"-c{scenario.connections}", f"-d{seconds:g}s", "--timeout", "10s", "-s", str(script)]
    completed = subprocess.run([*command, scenario.url], capture_output=True, text=True, timeout=seconds + 60)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    if completed.returncode != 0 or not lines:
        raise SystemExit(f"wrk failed on {scenario.name} ({completed.returncode}):\n{completed.stdout}\n{completed.stderr}")
    return json.loads(lines[-1][len("RESULT ") :])


def run(
    binary: str,
    scenario: Scenario,
    processes: Mapping[str, Mapping[str, int]],
    *,
    seconds: float,
    warmup: float,
    threads: int,
    workdir: Path,
) -> dict:
    """Warm up, then measure ``scenario``: successful requests/s, latency, and CPU ms per request of every process.

    ``processes`` is every system's processes (system -> label -> pid): the idle ones are read too,
    so that what they cost meanwhile (heartbeats) shows.
    """
    if warmup > 0:
        wrk(binary, scenario, seconds=warmup, threads=threads, workdir=workdir)
    under_test = processes.get(scenario.system, {})
    kernel = {label: kernel_seconds(pid) for label, pid in under_test.items()}
    before, children, mine = _cpu(processes), _children_cpu(), _self_cpu()
    started = time.monotonic()
    raw = wrk(binary, scenario, seconds=seconds, threads=threads, workdir=workdir)
    wall = time.monotonic() - started
    after, children, mine = _cpu(processes), _children_cpu() - children, _self_cpu() - mine
    kernel = {
        label: (now - start) for label, pid in under_test.items()
        if (start := kernel.get(label)) is not None and (now := kernel_seconds(pid)) is not None
    }  # fmt: skip
    elapsed = raw["duration_us"] / 1e6
    ok = raw["requests"] - raw["failed"]
    rps = ok / elapsed if elapsed else 0.0
    cpu: dict[str, dict[str, float]] = {}
    for system, labels in before.items():
        cpu[system] = {
            label: round(after[system][label] - start, 3)
            for label, start in labels.items()
            if start is not None and after[system].get(label) is not None
        }
    mine_system = cpu.get(scenario.system, {})
    per_request = {label: round(seconds_used / ok * 1000, 4) if ok else None for label, seconds_used in mine_system.items()}
    return {
        "scenario": scenario.name,
        "system": scenario.system,
        "kind": scenario.kind,
        "connections": scenario.connections,
        "requests": raw["requests"],
        "failed": raw["failed"],
        "socket_errors": raw["socket_errors"],
        "first_error": raw["first_error"] or None,
        "seconds": round(elapsed, 3),
        "wall_seconds": round(wall, 3),
        "rps": round(rps, 1),
        "p50_ms": round(raw["p50_us"] / 1000, 3),
        "p90_ms": round(raw["p90_us"] / 1000, 3),
        "p99_ms": round(raw["p99_us"] / 1000, 3),
        "max_ms": round(raw["max_us"] / 1000, 3),
        # CPU seconds of every process while measured; per request, those of the system under test.
        "cpu_seconds": {**cpu, "wrk": round(children, 3), "benchmark (DNS of the clusters)": round(mine, 3)},
        "cpu_ms_per_request": per_request,
        "cpu_ms_per_request_total": round(sum(v for v in per_request.values() if v is not None), 4) if ok else None,
        "cpu_ms_per_request_entry": per_request.get(scenario.entry) if scenario.entry else None,
        "cores": {label: round(v / wall, 3) for label, v in mine_system.items()},
        # The share of each process's CPU spent in the kernel (loopback TCP, epoll, fsync).
        "kernel_share": {label: round(kernel[label] / v, 3) for label, v in mine_system.items() if v and label in kernel},
        "load_1m": load(),
    }


def rounds(
    binary: str,
    scenarios: Sequence[Scenario],
    processes: Mapping[str, Mapping[str, int]],
    *,
    count: int,
    seconds: float,
    warmup: float,
    threads: int,
    workdir: Path,
    progress=print,
) -> list[dict[str, dict]]:
    """``count`` rounds over every scenario, the order rotated each round (each ratio is taken within a round)."""
    results: list[dict[str, dict]] = []
    for number in range(count):
        shift = (number * max(1, len(scenarios) // max(count, 1))) % len(scenarios)
        order = [*scenarios[shift:], *scenarios[:shift]]
        measured: dict[str, dict] = {}
        for scenario in order:
            result = run(binary, scenario, processes, seconds=seconds, warmup=warmup, threads=threads, workdir=workdir)
            measured[scenario.name] = result
            failed = f", {result['failed']} failed ({result['first_error']})" if result["failed"] else ""
            progress(
                f"  round {number + 1} {scenario.name:<44} {result['rps']:>8.1f} req/s  p50 {result['p50_ms']:>6.2f} ms  "
                f"p99 {result['p99_ms']:>7.2f} ms  CPU {result['cpu_ms_per_request_total'] or 0:.3f} ms/req{failed}  "
                f"(load {result['load_1m']})"
            )
        results.append(measured)
    return results


def medians(results: list[dict[str, dict]], names: Iterable[str]) -> dict[str, dict]:
    """Per scenario, the median over rounds of req/s, latencies and CPU per request (each process and total)."""
    out: dict[str, dict] = {}
    for name in names:
        runs = [r[name] for r in results if name in r]
        if not runs:
            continue

        def med(key: str, runs=runs) -> float | None:
            values = [r[key] for r in runs if r.get(key) is not None]
            return round(statistics.median(values), 4) if values else None

        labels = runs[0]["cpu_ms_per_request"].keys()
        out[name] = {
            "system": runs[0]["system"],
            "kind": runs[0]["kind"],
            "connections": runs[0]["connections"],
            "rps": med("rps"),
            "rps_per_round": [r["rps"] for r in runs],
            "p50_ms": med("p50_ms"),
            "p99_ms": med("p99_ms"),
            "failed_per_round": [r["failed"] for r in runs],
            "cpu_ms_per_request_total": med("cpu_ms_per_request_total"),
            "cpu_ms_per_request_entry": med("cpu_ms_per_request_entry"),
            "cpu_ms_per_request": {
                label: round(statistics.median(v for r in runs if (v := r["cpu_ms_per_request"].get(label)) is not None), 4)
                for label in labels
                if any(r["cpu_ms_per_request"].get(label) is not None for r in runs)
            },
        }
    return out


def idle_cores(results: list[dict[str, dict]]) -> dict[str, dict[str, float]]:
    """What each process uses while its system is idle (heartbeats, leases, DNS): the median over the other systems' runs."""
    seen: dict[str, dict[str, list[float]]] = {}
    for measured in results:
        for run_ in measured.values():
            for system, labels in run_["cpu_seconds"].items():
                if system == run_["system"] or not isinstance(labels, dict):
                    continue
                for label, used in labels.items():
                    seen.setdefault(system, {}).setdefault(label, []).append(used / run_["wall_seconds"])
    return {system: {label: round(statistics.median(v), 4) for label, v in labels.items()} for system, labels in seen.items()}


def ratio(results: list[dict[str, dict]], top: str, bottom: str, key: str = "rps") -> dict | None:
    """The median over rounds of ``top``/``bottom`` (each round's two figures taken minutes apart at most)."""
    values = [r[top][key] / r[bottom][key] for r in results if top in r and bottom in r and r[top][key] and r[bottom][key]]
    if not values:
        return None
    return {"median": round(statistics.median(values), 3), "per_round": [round(v, 3) for v in values]}


# --- the peers' servers -----------------------------------------------------------------------------


def _wait_http(url: str, *, timeout: float, what: str, process: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise SystemExit(f"{what} exited with {process.returncode} before it answered:\n{tail}")
        try:
            reply = httpx.get(url, timeout=1.0, trust_env=False)
            if reply.status_code < 500:
                return
            last = f"{reply.status_code} {reply.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise SystemExit(f"{what} did not answer {url} within {timeout:g} s (last: {last})")


def _stop(process: subprocess.Popen | None, timeout: float = 10) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


@dataclass
class DqliteDemo:
    """A 3-node dqlite-demo cluster: ``<subnet>.<i>`` serving its HTTP API on ``api_port`` and Raft on ``db_port``."""

    directory: Path
    subnet: str
    indices: Sequence[int] = (31, 32, 33)
    api_port: int = 9001
    db_port: int = 9101
    binary: str = "dqlite-demo"
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    leader: str = ""

    def address(self, index: int) -> str:
        return f"{self.subnet}.{index}"

    def url(self, label: str) -> str:
        return f"http://{self.address(int(label.rsplit('-', 1)[1]))}:{self.api_port}"

    def label(self, index: int) -> str:
        return f"dqlite-{index}"

    def start(self, *, keys: int, timeout: float = 60) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(parents=True)
        first = f"{self.address(self.indices[0])}:{self.db_port}"
        for position, index in enumerate(self.indices):
            address = self.address(index)
            command = [self.binary, "--api", f"{address}:{self.api_port}", "--db", f"{address}:{self.db_port}"]
            command += ["--dir", str(self.directory)]
            if position:
                command += ["--join", first]
            log = self.directory / f"{self.label(index)}.log"
            with open(log, "ab") as out:
                self.processes[self.label(index)] = subprocess.Popen(command, stdout=out, stderr=out, start_new_session=True)
            # The first node bootstraps the cluster; the others join it once it answers.
            _wait_http(f"http://{address}:{self.api_port}/ready", timeout=timeout, what=self.label(index),
                       process=self.processes[self.label(index)], log=log)  # fmt: skip
        self._wait_voters(timeout)
        self.leader = self._leader()
        with httpx.Client(base_url=self.url(self.leader), timeout=10, trust_env=False) as client:
            for key in range(keys):
                value = f"seed value {key} " + "x" * (VALUE_BYTES - 20)
                reply = client.put(f"/key{key}", content=value)
                if reply.text.startswith("Error"):
                    raise SystemExit(f"dqlite-demo refused the seed write of key{key}: {reply.text.strip()}")

    def _shell(self, command: str) -> str:
        servers = ",".join(f"{self.address(i)}:{self.db_port}" for i in self.indices)
        completed = subprocess.run(["dqlite", "-s", servers, "demo", command], capture_output=True, text=True, timeout=10)
        return completed.stdout

    def _wait_voters(self, timeout: float) -> None:
        # go-dqlite's app promotes joining nodes to voters by itself; a write needs a majority of them.
        deadline = time.monotonic() + timeout
        seen = ""
        while time.monotonic() < deadline:
            seen = self._shell(".cluster")
            if seen.count("|voter") == len(self.indices):
                return
            time.sleep(0.5)
        raise SystemExit(f"dqlite-demo: not every node became a voter within {timeout:g} s: {seen!r}")

    def _leader(self) -> str:
        address = self._shell(".leader").strip().rsplit(":", 1)[0]
        for index in self.indices:
            if self.address(index) == address:
                return self.label(index)
        raise SystemExit(f"dqlite-demo: cannot tell the leader from {address!r}")

    def followers(self) -> list[str]:
        return [self.label(i) for i in self.indices if self.label(i) != self.leader]

    def pids(self) -> dict[str, int]:
        return {label: process.pid for label, process in self.processes.items()}

    def stop(self) -> None:
        for process in self.processes.values():
            _stop(process)


@dataclass
class BareApp:
    """``_bare.py`` on ``host:port``, over a SQLite file with the product's schema and the seed."""

    directory: Path
    host: str
    port: int
    env: Mapping[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None
    tokens: list[str] = field(default_factory=list)
    post_ids: list[int] = field(default_factory=list)
    secret: str = field(default_factory=lambda: os.urandom(16).hex())

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def build(self, *, users: int, posts: int) -> None:
        """The product's schema (its migrations), ``users`` members and ``posts`` posts, written through the store."""
        self.directory.mkdir(parents=True, exist_ok=True)
        db = product_database(self.directory, capture=False)
        db.open()
        try:
            user_repo, post_repo = UserRepo(db), PostRepo(db)
            tokens = Tokens(self.secret, ttl=86400)
            with db.write() as conn:
                for i in range(users):
                    name, key = f"bare{i}", os.urandom(16).hex()
                    user_id = user_repo.insert(
                        conn,
                        username=name,
                        email=f"{name}@bench.example",
                        name=f"Bare {i}",
                        password_hash="-",
                        token_key=key,
                        now=db.now(),
                    )
                    self.tokens.append(tokens.issue(user_id, name, key))
                for i in range(posts):
                    self.post_ids.append(post_repo.insert(conn, 1 + i % users, f"seed post {i} " + "y" * 80, db.now()))
        finally:
            db.close()

    def start(self, timeout: float = 30) -> None:
        env = {
            **os.environ,
            **self.env,
            "BARE_DB": str(self.directory / "talentnest.db"),
            "BARE_SECRET": self.secret,
            "BARE_HOST": self.host,
            "BARE_PORT": str(self.port),
        }
        log = self.directory / "bare.log"
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, str(BARE_APP)], stdout=out, stderr=out, env=env, start_new_session=True
            )
        _wait_http(f"{self.url}/healthz", timeout=timeout, what="the bare app", process=self.process, log=log)

    def pids(self) -> dict[str, int]:
        return {"bare app": self.process.pid} if self.process else {}

    def stop(self) -> None:
        _stop(self.process)


@dataclass
class TalentNest:
    """A Talent Nest cluster of ``indices`` (1 or 3 nodes) from the tests' harness, seeded through its API."""

    directory: Path
    indices: Sequence[int]
    subnet: str
    env: Mapping[str, str] = field(default_factory=dict)
    node_command: Sequence[str] | None = None
    cluster: Cluster | None = None
    tokens: list[str] = field(default_factory=list)
    post_ids: list[int] = field(default_factory=list)

    def start(self, *, users: int, posts: int, prefix: str) -> None:
        env = {"LOG_LEVEL": "info", **self.env}
        command = self.node_command or REAL_NODE_COMMAND
        self.cluster = start_cluster(self.directory, list(self.indices), env, self.subnet, command)
        leader = self.leader
        self.tokens = seed_tokens(leader, users, prefix)
        with httpx.Client(base_url=leader.url, timeout=30, trust_env=False) as client:
            for i in range(posts):
                token = self.tokens[i % len(self.tokens)]
                reply = client.post(
                    "/api/posts", json={"content": f"seed post {i} " + "y" * 80}, headers={"Authorization": f"Bearer {token}"}
                )
                if reply.status_code != 201:
                    raise SystemExit(f"seeding {leader.name} answered {reply.status_code}: {reply.text[:200]}")
                self.post_ids.append(reply.json()["id"])
            lsn = int(reply.headers["x-cluster-lsn"])
        self.cluster.wait_for_applied(lsn, timeout=60)

    @property
    def leader(self) -> Node:
        assert self.cluster is not None
        return self.cluster.wait_for_leader(timeout=60)

    def followers(self) -> list[Node]:
        leader = self.leader
        return [node for node in self.nodes if node is not leader]

    @property
    def nodes(self) -> list[Node]:
        return list(self.cluster.nodes) if self.cluster else []

    def pids(self) -> dict[str, int]:
        return {node.name: node.pid for node in self.nodes if node.pid is not None}

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.close()
