"""The ``talentnest`` command: ``node`` runs one node; ``cluster ...`` runs a local cluster."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

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


def run_node(environ=None) -> int:
    """Start one node from the environment; a bad setting stops it with one line naming it."""
    try:
        settings = Settings.from_env(environ)
        _check_data_dir(settings)
    except ConfigError as exc:
        print(f"talentnest: configuration error: {exc}", file=sys.stderr)
        return 2
    # Imported once the settings are known good, so that a bad one is reported at once.
    import uvicorn

    from talentnest import logs
    from talentnest.app import create_app

    context = logs.NodeContext()
    logs.configure(
        fmt=settings.log_format,
        level=settings.log_level,
        context=context,
        secrets=[settings.jwt_secret, settings.cluster_secret or ""],
    )
    if settings.has_short_jwt_secret:
        log.warning(
            "config: JWT_SECRET is shorter than %d bytes; tokens can be forged by brute force. "
            "Use a long random value (e.g. `openssl rand -hex 32`).",
            MIN_SECRET_BYTES,
        )
    app = create_app(settings, context=context)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
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
    try:
        from talentnest.launcher import cli as launcher_cli
    except ImportError:
        launcher_cli = None
    if launcher_cli is not None:
        launcher_cli.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "node":
        return run_node(os.environ)
    if args.command == "cluster":
        from talentnest.launcher import cli as launcher_cli

        return launcher_cli.run(args)
    parser.print_help()
    return 2
