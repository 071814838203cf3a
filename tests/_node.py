"""One node process on a loopback address, as tests and benchmarks start it (no Docker, no DNS)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

SRC = Path(__file__).resolve().parents[1] / "src"
# Signups cost about a millisecond with these (the defaults cost tens of milliseconds).
FAST_ARGON2 = {"ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "1024", "ARGON2_PARALLELISM": "1"}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class LocalNode:
    """``python -m talentnest node`` of this checkout, with its own DATA_DIR under ``workdir``.

    ``wait_ready`` polls /readyz until a deadline and puts the node's log into any failure;
    ``stop`` sends SIGTERM (what ``docker stop`` sends) and kills the node if it does not leave.
    """

    def __init__(self, workdir: Path, *, host: str = "127.0.0.1", port: int | None = None, **env: str):
        self.host = host
        self.port = port or free_port(host)
        self.url = f"http://{host}:{self.port}"
        self.log_path = workdir / "node.log"
        environment = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(SRC),
            "HOST": host,
            "PORT": str(self.port),
            "DATA_DIR": str(workdir / "data"),
            **FAST_ARGON2,
            **env,
        }
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "talentnest", "node"], env=environment, stdout=log, stderr=subprocess.STDOUT, cwd=workdir
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"node exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)  # the polling interval of a condition with a deadline
        raise RuntimeError(f"node not ready within {timeout} s:\n{self.log()}")

    def stop(self, timeout: float = 30) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def ready_node(workdir: Path, host: str, **env: str) -> LocalNode:
    """A node alone in its cluster (PEERS is itself), once ready; stopped again if it never gets ready."""
    node = LocalNode(workdir, host=host, PEERS=host, **env)
    try:
        node.wait_ready()
    except BaseException:
        node.stop()
        raise
    return node
