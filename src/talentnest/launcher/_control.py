"""The control channel: JSON lines over a unix socket in the state directory, one request per line.

A request is ``{"op": "...", ...}``; the answer is ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``.
Separate ``talentnest cluster ...`` invocations use it to drive the supervisor of a running cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import socket
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from talentnest.launcher.errors import LaunchError, NoCluster

log = logging.getLogger("talentnest.launcher.control")

# sun_path holds 108 bytes on Linux and 104 on macOS; leave room for the terminating NUL.
_MAX_SOCKET_PATH = 100
_MAX_LINE = 1024 * 1024

Handler = Callable[[dict], Awaitable[dict]]


class ControlError(LaunchError):
    """The supervisor refused the request; the message is its explanation, fit for the user."""


def socket_path(state_dir: Path) -> Path:
    """Where the control socket of ``state_dir`` lives (in it, unless that path is too long for a socket)."""
    state_dir = Path(state_dir).resolve()
    path = state_dir / "control.sock"
    if len(os.fsencode(path)) <= _MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(os.fsencode(state_dir)).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"talentnest-{digest}.sock"


class ControlServer:
    def __init__(self, path: Path, handler: Handler):
        self.path = path
        self._handler = handler
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path), limit=_MAX_LINE)
        # The socket starts and stops processes: only its owner may use it.
        os.chmod(self.path, 0o600)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            try:
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError("a request is a JSON object")
            except ValueError as exc:
                reply = {"ok": False, "error": f"bad request: {exc}"}
            else:
                try:
                    reply = await self._handler(request)
                except Exception as exc:
                    log.exception("control: %s failed", request.get("op"))
                    reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def request(state_dir: Path, op: str, *, timeout: float = 60.0, **fields) -> dict:
    """Send one request to the supervisor of ``state_dir`` and return its answer.

    Raises NoCluster when nothing listens there, ControlError when the supervisor refuses.
    """
    path = socket_path(state_dir)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise NoCluster(f"no cluster is running in {state_dir}") from exc
        sock.sendall(json.dumps({"op": op, **fields}).encode() + b"\n")
        with sock.makefile("rb") as stream:
            line = stream.readline(_MAX_LINE)
    finally:
        sock.close()
    if not line:
        raise NoCluster(f"the cluster in {state_dir} closed the control channel without answering (is it shutting down?)")
    reply = json.loads(line)
    if not reply.get("ok"):
        raise ControlError(reply.get("error") or "the supervisor refused the request")
    return reply
