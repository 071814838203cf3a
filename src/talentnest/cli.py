"""The ``talentnest`` command: ``node`` runs one node; ``cluster ...`` runs a local cluster; ``sim``
runs the deterministic simulation; ``generate`` fills a data directory with a synthetic network;
``backup`` and ``restore`` keep and bring back a cluster's data."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

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


def _warn_of_transitions(settings: Settings) -> None:
    """Settings meant for the length of a rotation or an upgrade, said at start so they are not forgotten."""
    import time

    until = settings.previous_secrets_until
    if until is not None:
        if until < time.time():
            log.warning(
                "config: PREVIOUS_SECRETS_UNTIL has passed; the previous keys are refused: remove JWT_SECRET_PREVIOUS "
                "and CLUSTER_SECRET_PREVIOUS"
            )
        else:
            log.info("config: previous keys accepted for %.0f s more (PREVIOUS_SECRETS_UNTIL)", until - time.time())
    if settings.cluster_accept_legacy_signatures:
        log.warning(
            "config: CLUSTER_ACCEPT_LEGACY_SIGNATURES is on: calls in the older form (no nonce, unsigned answers) are "
            "accepted, so replays and altered answers are not refused for them; turn it off once every node is upgraded"
        )
    if not settings.tls:
        log.info("config: node-to-node calls use plain HTTP (set TLS_CERT_FILE, TLS_KEY_FILE and TLS_CA_FILE for TLS)")


def run_node(environ=None) -> int:
    """Start one node from the environment; a bad setting stops it with one line naming it."""
    from talentnest import tls

    try:
        settings = Settings.from_env(environ)
        _check_data_dir(settings)
        _check_port(settings)
        server_tls = tls.server_context(settings)
        tls.client_context(settings)
    except ConfigError as exc:
        print(f"talentnest: configuration error: {exc}", file=sys.stderr)
        return 2
    from talentnest.store.guard import DataDirInUse, DataDirLock

    data_lock = DataDirLock(settings.data_dir)
    try:
        data_lock.acquire(owner=f"node on port {settings.port}")
    except DataDirInUse as exc:
        print(f"talentnest: {exc}", file=sys.stderr)
        return 2
    # Imported once the settings are known good, so that a bad one is reported at once.
    from talentnest import logs
    from talentnest.app import create_app
    from talentnest.cluster.auth import keyring_for
    from talentnest.limits import GuardedHttpTools

    context = logs.NodeContext()
    keys = keyring_for(settings)
    # Logs go to stdout, so that the seed's `docker logs backend-3 | grep "sync"` filters them
    # (docker logs replays a container's stderr on stderr, which a pipe does not catch).
    logs.configure(
        stream=sys.stdout,
        fmt=settings.log_format,
        level=settings.log_level,
        context=context,
        secrets=[*settings.secrets, *(key.hex() for key in (keys.current, *keys.previous))],
    )
    _warn_of_transitions(settings)
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
    app = create_app(settings, context=context, data_lock=data_lock)
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
        ssl_context_factory=(lambda config, default: server_tls) if server_tls is not None else None,
    )
    server = NodeServer(config, before_exit=app.state.node.leave)
    server.run()
    return 0 if server.started else 1


def _operate(args: argparse.Namespace) -> int:
    """``backup`` and ``restore``: one line naming what went wrong, exit 2, on failure."""
    from talentnest.launcher.backup import run_backup
    from talentnest.launcher.remote import RemoteError
    from talentnest.launcher.restore import RestoreError, run_restore

    try:
        if args.command == "backup":
            return run_backup(args.url, args.file, from_leader=args.from_leader, verify=not args.no_verify, timeout=args.timeout)
        return run_restore(args)
    except (RemoteError, RestoreError) as exc:
        print(f"talentnest {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


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
    from talentnest.sim import cli as sim_cli

    sim_cli.add_parser(commands)
    backup = commands.add_parser(
        "backup",
        help="a consistent online backup of any node, to FILE and FILE.manifest.json (signed: CLUSTER_SECRET or JWT_SECRET)",
        description="Take a consistent online backup of a node (GET /cluster/backup, signed with the key derived from "
        "CLUSTER_SECRET, else JWT_SECRET, read from the environment), stream it to FILE, verify it, and write "
        "FILE.manifest.json (LSN, term, schema version, node, time, sha256, sizes). Exit status: 0 written and "
        "verified; 2 failed (nothing is left at FILE).",
    )
    backup.add_argument("--url", required=True, help="any node of the cluster (http://host:port)")
    backup.add_argument("file", type=Path, metavar="FILE", help="where to write the backup")
    backup.add_argument(
        "--from-leader", action="store_true", help="back up the leader (the freshest state), found through /cluster/status"
    )
    backup.add_argument("--no-verify", action="store_true", help="skip unpacking the backup to check it (faster)")
    backup.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the node to answer (default 10)")
    restore = commands.add_parser(
        "restore",
        help="prepare a data directory from a backup FILE or an ARCHIVE, as of an LSN or a time",
        description="Prepare DATA_DIR for a node: the data of a backup file, or of an archive (ARCHIVE_DIR) as of "
        "any LSN or time in its window. The restored log starts a new generation of the cluster, which outranks "
        "the old history. Restore into a majority of the cluster's data directories (repeat --data-dir) and start "
        "those nodes; nodes started empty sync from them, and what an old node holds after the restore point is "
        "archived (DATA_DIR/archive/), never merged.",
    )
    restore.add_argument("source", metavar="FILE|ARCHIVE", help="a backup file, an archive directory, or s3://BUCKET/PREFIX")
    point = restore.add_mutually_exclusive_group()
    point.add_argument("--to-lsn", type=int, metavar="N", help="the data as of LSN N (an archive's, or the backup's own)")
    point.add_argument(
        "--to-time", metavar="T", help="the data as of time T (ISO 8601, e.g. 2026-12-02T14:02:00Z; no zone: local time)"
    )
    restore.add_argument(
        "--data-dir",
        required=True,
        action="append",
        type=Path,
        help="a data directory to prepare (empty, or see --replace); repeat it for several nodes (the same restored data)",
    )
    restore.add_argument("--replace", action="store_true", help="move what DATA_DIR holds aside (DATA_DIR/replaced-<time>/)")
    restore.add_argument("--node", type=int, metavar="ID", help="whose archive to use (default: the freshest)")
    restore.add_argument(
        "--generation", type=int, metavar="G", help="the generation to start (default: the next after the source's terms)"
    )
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
    if args.command == "sim":
        from talentnest.sim import cli as sim_cli

        return sim_cli.run(args)
    if args.command in ("backup", "restore"):
        return _operate(args)
    if args.command == "generate":
        from talentnest.generator import cli as generator_cli

        return generator_cli.run(args)
    parser.print_help()
    return 2
