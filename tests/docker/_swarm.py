"""A Docker engine of the test's own, in a network namespace of its own, made a one-node swarm.

The shared engine must not become a swarm (``docker swarm init`` changes its whole state), so the
Swarm test starts a second ``dockerd``: its own ``--data-root``, ``--exec-root``, ``--pidfile`` and
``-H unix://`` socket under one temporary directory, run (``nsenter --net``) in a network
namespace made for it. Everything it creates on the network side (its docker0, docker_gwbridge,
the overlay's namespaces and vxlan, every iptables rule) lives in that namespace, so the host's
interfaces and iptables, and so the shared engine, are untouched; deleting the namespace removes it
all. ``close`` stops the engine (SIGTERM, then SIGKILL of every process left in the namespace),
unmounts what it left under its directory, deletes the namespace and the directory, and is safe
to call after any failure, however early.

The nodes are reached from inside the namespace (``curl`` under ``nsenter``) at each task's address
on docker_gwbridge: the routing mesh needs IPVS, which this kind of machine's kernel lacks.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ADVERTISE = "10.254.0.1"  # an address inside the namespace only, for `swarm init`


@dataclass(frozen=True)
class Task:
    slot: int
    container: str  # full container ID
    name: str
    address: str  # on docker_gwbridge, reachable from the namespace


class OwnEngine:
    def __init__(self, workdir: Path):
        # Short: a unix socket path must stay under 108 bytes.
        self.root = Path(f"/tmp/tn-swarm-{os.getpid()}")
        self.workdir = workdir
        self.netns = f"tn-swarm-{os.getpid()}"
        self.socket = self.root / "docker.sock"
        self.log_path = workdir / "dockerd.log"
        self._process: subprocess.Popen | None = None

    # --- commands ---------------------------------------------------------------------------------

    def run(self, command: str, *, check: bool = True, timeout: float = 180, stdin: bytes | None = None) -> str:
        """A `docker ...` command line against this engine (DOCKER_HOST set), from the repository root."""
        env = {**os.environ, "DOCKER_HOST": f"unix://{self.socket}"}
        result = subprocess.run(
            ["bash", "-c", command],
            env=env,
            input=stdin,
            capture_output=True,
            timeout=timeout,
            cwd=Path(__file__).resolve().parents[2],
        )
        out, err = result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")
        if check and result.returncode != 0:
            raise AssertionError(f"`{command}` exited {result.returncode}\n{out[-3000:]}\n{err[-3000:]}")
        return out

    def inside(self, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """A command run in the engine's network namespace (where the tasks' addresses are)."""
        return subprocess.run(
            ["nsenter", f"--net=/run/netns/{self.netns}", *argv], capture_output=True, text=True, timeout=timeout
        )

    def http(self, method: str, url: str, body: Any = None, timeout: float = 5) -> tuple[int, Any]:
        """One HTTP request from inside the namespace; (status, JSON or text). Raises OSError if nothing answers."""
        argv = ["curl", "-s", "-m", str(timeout), "-o", "-", "-w", "\n%{http_code}", "-X", method, url]
        if body is not None:
            argv += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
        result = self.inside(*argv, timeout=timeout + 5)
        if result.returncode != 0:
            raise OSError(f"curl {url}: exit {result.returncode} {result.stderr.strip()}")
        text, _, code = result.stdout.rpartition("\n")
        try:
            return int(code), json.loads(text)
        except ValueError:
            return int(code), text

    # --- life cycle -------------------------------------------------------------------------------

    def _ip(self, *arguments: str) -> None:
        subprocess.run(["ip", "netns", "exec", self.netns, "ip", *arguments], check=True, capture_output=True, timeout=30)

    def start(self, timeout: float = 60) -> None:
        self.root.mkdir(parents=True)
        subprocess.run(["ip", "netns", "add", self.netns], check=True, capture_output=True, timeout=30)
        self._ip("link", "set", "lo", "up")
        self._ip("link", "add", "tn0", "type", "bridge")
        self._ip("addr", "add", f"{ADVERTISE}/24", "dev", "tn0")
        self._ip("link", "set", "tn0", "up")
        command = [
            "nsenter",
            f"--net=/run/netns/{self.netns}",
            "dockerd",
            f"--data-root={self.root / 'data'}",
            f"--exec-root={self.root / 'exec'}",
            f"--pidfile={self.root / 'docker.pid'}",
            f"--host=unix://{self.socket}",
            "--storage-driver=overlay2",
        ]
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while self.run("docker info --format '{{.ServerVersion}}'", check=False).strip() == "":
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the test's own dockerd did not start:\n{self.log()}")
            time.sleep(0.5)
        self.run(f"docker swarm init --advertise-addr {ADVERTISE}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    def _namespace_pids(self) -> list[int]:
        result = subprocess.run(["ip", "netns", "pids", self.netns], capture_output=True, text=True, timeout=30)
        return [int(pid) for pid in result.stdout.split()] if result.returncode == 0 else []

    def close(self) -> list[str]:
        """Undo everything start() did (see the module); returns what it had to force, for the report."""
        forced: list[str] = []
        started = time.monotonic()
        if self._process is not None and self._process.poll() is None:
            # Out of the swarm and rid of its tasks at once (a graceful stop of each would only cost
            # time here), then the engine itself.
            self.run("docker swarm leave --force; docker ps -aq | xargs -r docker rm -f", check=False, timeout=60)
            forced.append(f"tasks removed in {time.monotonic() - started:.1f} s")
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                forced.append("dockerd ignored SIGTERM")
            forced.append(f"dockerd stopped at {time.monotonic() - started:.1f} s")
        # Whatever is still running in the namespace was started by this engine (containerd, shims, tasks).
        for _ in range(3):
            pids = self._namespace_pids()
            if not pids:
                break
            forced.append(f"killed {len(pids)} process(es) left in {self.netns}")
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
        for mountpoint in sorted((m for m in mounts if m.startswith(f"{self.root}/")), reverse=True):
            forced.append(f"unmounted {mountpoint}")
            subprocess.run(["umount", "-l", mountpoint], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True, timeout=30)
        subprocess.run(["rm", "-rf", str(self.root)], capture_output=True, timeout=120)
        forced.append(f"all removed at {time.monotonic() - started:.1f} s")
        return forced

    # --- the stack's tasks ----------------------------------------------------------------------------

    def tasks(self, service: str) -> dict[int, Task]:
        """slot -> the running task of ``service`` in that slot."""
        names = self.run(f"docker ps --filter label=com.docker.swarm.service.name={shlex.quote(service)} --no-trunc "
                         "--format '{{.ID}} {{.Names}}'")  # fmt: skip
        gateways = json.loads(self.run("docker network inspect docker_gwbridge --format '{{json .Containers}}'"))
        found = {}
        for line in names.split("\n"):
            if not line.strip():
                continue
            container, name = line.split()
            slot = int(name.split(".")[1])
            address = (gateways.get(container) or {}).get("IPv4Address", "").split("/")[0]
            if address:
                found[slot] = Task(slot, container, name, address)
        return found
