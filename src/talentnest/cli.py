"""The ``talentnest`` command: ``node`` runs one node; ``cluster ...`` runs a local cluster; ``generate``
fills a data directory with a synthetic network."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence

import uvicorn

from talentnest import __version__
from talentnest.config import MIN_SECRET_BYTES, ConfigError, Settings

log = logging.getLogger("talentnest.cli")


def _check_data_dir(settings: Settings) -> None:
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        probe = settings.data_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"DATA_DIR '{settings.data_dir}' is not writable: {exc.strerror or exc}") from None


def _dump_tasks() -> None:
    """SIGUSR1: log what every asyncio task is waiting on (for diagnosing a stuck node)."""
    import io

    for task in asyncio.all_tasks():
        buffer = io.StringIO()
        task.print_stack(limit=8, file=buffer)
        log.warning("debug: task %s\n%s", task.get_name(), buffer.getvalue())


class NodeServer(uvicorn.Server):
    """uvicorn, but SIGTERM first lets the node leave (drain replication, tell its peers) while
    it still answers, and only then closes the listening socket. A second signal forces the exit."""

    def __init__(self, config: uvicorn.Config, *, before_exit: Callable[[], Awaitable[None]]):
        super().__init__(config)
        self._before_exit = before_exit
        self._leaving = False

    def handle_exit(self, sig, frame) -> None:
        if self._leaving or not self.started:
            super().handle_exit(sig, frame)
            return
        self._leaving = True
        loop = asyncio.get_event_loop()
        loop.call_soon_threadsafe(lambda: loop.create_task(self._leave_then_exit(sig, frame)))

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets=sockets)
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _dump_tasks)

    async def _leave_then_exit(self, sig, frame) -> None:
        try:
            await asyncio.wait_for(self._before_exit(), timeout=8)
        except Exception:
            log.exception("shutdown: leaving the cluster failed; exiting anyway")
        finally:
            super().handle_exit(sig, frame)


def _check_port(settings: Settings) -> None:
    import socket

    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((settings.host, settings.port))
        except OSError as exc:
            raise ConfigError(
                f"PORT {settings.port} on HOST {settings.host} cannot be used: {exc.strerror or exc} "
                "(another process listens there, or the address is not on this machine)"
            ) from None


def run_node(environ=None) -> int:
    """Start one node from the environment; a bad setting stops it with one line naming it."""
    try:
        settings = Settings.from_env(environ)
        _check_data_dir(settings)
        _check_port(settings)
    except ConfigError as exc:
        print(f"talentnest: configuration error: {exc}", file=sys.stderr)
        return 2
    # Imported once the settings are known good, so that a bad one is reported at once.
    from talentnest import logs
    from talentnest.app import create_app
    from talentnest.cluster.auth import cluster_key
    from talentnest.limits import GuardedHttpTools

    context = logs.NodeContext()
    key = cluster_key(jwt_secret=settings.jwt_secret, cluster_secret=settings.cluster_secret)
    # Logs go to stdout, so that the seed's `docker logs backend-3 | grep "sync"` filters them
    # (docker logs replays a container's stderr on stderr, which a pipe does not catch).
    logs.configure(
        stream=sys.stdout,
        fmt=settings.log_format,
        level=settings.log_level,
        context=context,
        secrets=[settings.jwt_secret, settings.cluster_secret or "", key.hex()],
    )
    if settings.has_short_jwt_secret:
        log.warning(
            "config: JWT_SECRET is shorter than %d bytes; tokens can be forged by brute force. "
            "Use a long random value (e.g. `openssl rand -hex 32`).",
            MIN_SECRET_BYTES,
        )
    if settings.has_weak_password_hashing:
        log.warning(
            "config: argon2id with t=%d, m=%d KiB is below RFC 9106's recommendations (t=3 with m=65536 KiB, "
            "or m=2097152 KiB); "
            "password hashes are cheaper to crack. Hashes are upgraded at each login once it is raised.",
            settings.argon2_time_cost,
            settings.argon2_memory_kib,
        )
    app = create_app(settings, context=context)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        # httptools, with a deadline and a size limit on each request's head (uvicorn has
        # neither for httptools; h11's max incomplete event size does not apply to it).
        http=GuardedHttpTools.configured(head_timeout=settings.client_timeout),
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        # Longer than the peers' client keeps an idle connection (30 s, cluster/transport.py),
        # so a node never closes a connection a peer is about to reuse for a heartbeat.
        timeout_keep_alive=35,
        timeout_graceful_shutdown=10,
        # No limit_concurrency: uvicorn counts open connections against it, idle and slow ones
        # included, so a few hundred slow clients would get every request answered 503,
        # heartbeats too, and the cluster would fail over. Slow clients are cut off by the
        # head and body deadlines instead; the process's file limit bounds connections.
        limit_concurrency=None,
        # uvicorn would otherwise take X-Forwarded-For from any client on 127.0.0.1 as the
        # client's address; only a peer's signed X-Forwarded-For is (cluster/middleware.py).
        proxy_headers=False,
    )
    server = NodeServer(config, before_exit=app.state.node.leave)
    server.run()
    return 0 if server.started else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="talentnest",
        description="Talent Nest: a talent network's API run as a cluster of identical SQLite nodes.",
    )
    parser.add_argument("--version", action="version", version=f"talentnest {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser(
        "node",
        help="run one node (configured by environment variables: PORT, SERVICE_NAME, JWT_SECRET, ...)",
        description="Run one node. Configuration comes from the environment only; see the README.",
    )
    from talentnest.generator import cli as generator_cli
    from talentnest.launcher import cli as launcher_cli

    launcher_cli.add_parser(commands)
    generator_cli.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "node":
        return run_node(os.environ)
    if args.command == "cluster":
        from talentnest.launcher import cli as launcher_cli

        return launcher_cli.run(args)
    if args.command == "generate":
        from talentnest.generator import cli as generator_cli

        return generator_cli.run(args)
    parser.print_help()
    return 2
