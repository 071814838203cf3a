"""``talentnest cluster ...``: bring up, inspect and break a local cluster as the seed does with Docker."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.live import Live

from talentnest.launcher import _control, probe, render
from talentnest.launcher import remote as remote_status
from talentnest.launcher.errors import LaunchError, NoCluster, UnknownNode
from talentnest.launcher.supervisor import (
    DEFAULT_STATE_DIR,
    SECRET_FILE,
    ClusterConfig,
    LocalCluster,
    parse_subnet,
    wait_for_exit,
)

# For tests and experiments: run this instead of the real node (shell words, e.g. "python fake_node.py").
NODE_COMMAND_VARIABLE = "TALENTNEST_NODE_COMMAND"
DIR_VARIABLE = "TALENTNEST_CLUSTER_DIR"
READY_TIMEOUT = 30.0
LOG_POLL_SECONDS = 0.2

# Wide enough for the status table when the output is a file or a pipe (rich assumes 80 columns).
_PIPE_WIDTH = 160
console = Console(width=None if sys.stdout.isatty() else _PIPE_WIDTH)
errors = Console(stderr=True, width=None if sys.stderr.isatty() else _PIPE_WIDTH)


# --- arguments --------------------------------------------------------------------------------


def _env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--env takes KEY=VALUE, got '{text}'")
    return key, value


def _port_base(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65000:
        raise argparse.ArgumentTypeError(f"--publish-base must be 0 (publish nothing) or 1-65000, got '{text}'")
    return value


def add_parser(subparsers) -> None:
    """Add ``cluster`` and its subcommands to the ``talentnest`` parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--dir",
        type=Path,
        default=Path(os.environ.get(DIR_VARIABLE) or DEFAULT_STATE_DIR),
        help=f"the cluster's state directory: secret, control socket, each node's data/ and node.log "
        f"(default {DEFAULT_STATE_DIR}, or ${DIR_VARIABLE})",
    )
    layout = argparse.ArgumentParser(add_help=False)
    layout.add_argument("--nodes", type=int, default=3, help="how many nodes to start (default 3)")
    layout.add_argument("--subnet", default="127.0.2", help="nodes run on <subnet>.1, <subnet>.2, ... (default 127.0.2)")
    layout.add_argument(
        "--publish-base", type=_port_base, default=3000, help="node i is published on localhost:<base+i> (default 3000)"
    )
    layout.add_argument("--port", type=int, default=3000, help="every node's own port, as in Docker (default 3000)")
    layout.add_argument(
        "--env", action="append", type=_env_pair, default=[], metavar="KEY=VALUE", help="extra node environment (repeatable)"
    )

    cluster = subparsers.add_parser(
        "cluster",
        help="run a local cluster on loopback addresses (up, status, stop, start, add, logs, down, ...); "
        "status, verify, drain and undrain --url work on any deployment",
        description="A local cluster without Docker: nodes on 127.0.2.N:3000, a DNS server for SERVICE_NAME, "
        "node i published on localhost:300i. With --url, status, verify, drain and undrain work on any "
        "deployment (Docker, Compose, Swarm, Kubernetes).",
    )
    commands = cluster.add_subparsers(
        dest="cluster_command",
        metavar="{up,status,verify,drain,undrain,watch,stop,kill,start,pause,unpause,add,logs,down}",
    )
    up = commands.add_parser(
        "up", parents=[common, layout], help="start the cluster and wait for a leader", description="Start the cluster."
    )
    up.add_argument("--detach", "-d", action="store_true", help="return once a leader is elected and leave it running")
    up.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for every node to agree on a leader")
    supervise = commands.add_parser("supervise", parents=[common, layout])  # what `up --detach` runs in the background
    supervise.add_argument("--timeout", type=float, default=90.0)
    for command in (up, supervise):
        command.add_argument(
            "--data-from",
            type=Path,
            metavar="DIR",
            help="start every node with a copy of DIR's database (e.g. one made by `talentnest generate DIR`)",
        )

    remote = argparse.ArgumentParser(add_help=False)
    remote.add_argument(
        "--url",
        action="append",
        metavar="URL",
        help="a node of any deployment (http://host:port; repeatable) instead of the local cluster; the internal "
        "addresses the nodes report are used where they answer",
    )
    remote.add_argument(
        "--timeout", type=float, default=remote_status.DEFAULT_TIMEOUT, help="seconds to wait for each node's answer"
    )
    status = commands.add_parser(
        "status",
        parents=[common, remote],
        help="each node's view of the cluster, as a table; exit 0 healthy, 1 degraded, 2 no leader or nothing answered",
        description="Each node's view of the cluster. Exit status: 0 healthy; 1 degraded (a node hung, lagging, not "
        "ready, cut off, or gone within FAILURE_TIMEOUT); 2 no leader, or no node answered.",
    )
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.add_argument(
        "--max-lag-seconds",
        type=float,
        default=remote_status.DEFAULT_MAX_LAG_SECONDS,
        help=f"a follower further behind the leader is degraded (default {remote_status.DEFAULT_MAX_LAG_SECONDS:g})",
    )
    verify = commands.add_parser(
        "verify",
        parents=[common, remote],
        help="compare every node's database checksum at one LSN (signed: CLUSTER_SECRET or JWT_SECRET from the environment)",
        description="Compare every node's database checksum at one LSN over the signed /cluster/checksum. The key is "
        "derived from CLUSTER_SECRET, else JWT_SECRET, read from the environment (never from an argument); for the "
        "local cluster, from its state directory. Exit status: 0 all equal; 1 a node differs (named); 2 no node "
        "answered or the key is wrong; 3 not compared (a node silent, or never one LSN while writes went on).",
    )
    verify.add_argument("--within", type=float, default=30.0, help="seconds to wait for the nodes to be at one LSN (default 30)")
    for word, text in (
        ("drain", "stop a node from standing for leader (a leader hands over to a caught-up peer first, losing nothing)"),
        ("undrain", "let a drained node stand for leader again"),
    ):
        command = commands.add_parser(
            word,
            parents=[common],
            help=text,
            description=f"{text[0].upper()}{text[1:]}. Signed with the key derived from CLUSTER_SECRET, else JWT_SECRET, "
            "read from the environment with --url (for the local cluster, from its state directory). The node keeps "
            "the state across restarts. Exit status: 0 done; 1 refused, or a drained leader found no peer to hand over "
            "to within --wait; 2 no answer or a wrong key.",
        )
        command.add_argument("name", nargs="?", help="a node of the local cluster (backend-N); or give --url")
        command.add_argument("--url", help="the node of any deployment to change (http://host:port)")
        command.add_argument(
            "--wait", type=float, default=30.0, help="seconds to wait for a drained leader to hand over (default 30)"
        )
        command.add_argument("--timeout", type=float, default=remote_status.DEFAULT_TIMEOUT, help="seconds to wait for an answer")
    watch = commands.add_parser("watch", parents=[common], help="the status table, refreshed live (Ctrl-C quits)")
    watch.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")

    stop = commands.add_parser("stop", parents=[common], help="docker stop: SIGTERM, wait for the exit")
    stop.add_argument("name")
    stop.add_argument("-t", "--time", type=float, default=10.0, help="seconds before SIGKILL (default 10)")
    for name, text in (
        ("kill", "docker kill: SIGKILL"),
        ("start", "docker start: run a stopped node again (same address and data)"),
        ("pause", "docker pause: SIGSTOP (the node hangs but stays in DNS)"),
        ("unpause", "docker unpause: SIGCONT"),
    ):
        commands.add_parser(name, parents=[common], help=text).add_argument("name")
    add = commands.add_parser("add", parents=[common], help="docker run: a new node (backend-N on <subnet>.N)")
    add.add_argument("name", nargs="?", help="default: the next backend-N")

    logs = commands.add_parser("logs", parents=[common], help="docker logs: a node's log")
    logs.add_argument("name")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines (Ctrl-C stops)")
    logs.add_argument("-n", "--tail", type=int, default=None, help="only the last N lines")

    down = commands.add_parser("down", parents=[common], help="stop every node and the supervisor; keep data and logs")
    down.add_argument("--purge", action="store_true", help="also delete the state directory (data, logs, secret)")


# Set by the launcher for each node; changing them through --env would break DNS, ports or data.
_LAUNCHER_VARIABLES = {"HOST": "--subnet", "PORT": "--port", "DNS_SERVER": None, "DATA_DIR": "--dir", "SERVICE_NAME": None}


def _config(args: argparse.Namespace) -> ClusterConfig:
    command = os.environ.get(NODE_COMMAND_VARIABLE)
    if args.nodes < 1 or args.nodes > 253:
        raise LaunchError(f"--nodes must be 1-253, got {args.nodes}")
    for key, _ in args.env:
        if key in _LAUNCHER_VARIABLES:
            option = _LAUNCHER_VARIABLES[key]
            raise LaunchError(f"--env {key} is set by the launcher for each node" + (f"; use {option}" if option else ""))
    return ClusterConfig(
        state_dir=args.dir,
        subnet=parse_subnet(args.subnet),
        port=args.port,
        publish_base=args.publish_base,
        env=dict(args.env),
        node_command=shlex.split(command) if command else None,
        data_from=args.data_from.resolve() if getattr(args, "data_from", None) else None,
    )


def run(args: argparse.Namespace) -> int:
    handlers = {
        "up": _up,
        "supervise": _supervise,
        "status": _status,
        "verify": _verify,
        "drain": _drain,
        "undrain": _drain,
        "watch": _watch,
        "stop": _node_action,
        "kill": _node_action,
        "start": _node_action,
        "pause": _node_action,
        "unpause": _node_action,
        "add": _node_action,
        "logs": _logs,
        "down": _down,
    }
    handler = handlers.get(args.cluster_command)
    if handler is None:
        errors.print(
            "usage: talentnest cluster {up,status,verify,drain,undrain,watch,stop,kill,start,pause,unpause,add,logs,down} ..."
            " (see --help)"
        )
        return 2
    try:
        return handler(args)
    except NoCluster as exc:
        errors.print(f"[red]error:[/] {exc}. Start one with `talentnest cluster up`, or point --dir at its state directory.")
        return 1
    except LaunchError as exc:
        errors.print(f"[red]error:[/] {exc}", highlight=False)
        return 1
    except remote_status.RemoteError as exc:
        errors.print(f"[red]error:[/] {exc}", highlight=False)
        return 2
    except KeyboardInterrupt:
        return 130


# --- up -----------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now().strftime("%H:%M:%S")


def _printer(out: Console):
    return lambda text: out.print(f"[dim]{_now()}[/] {text}", highlight=False)


async def _first(stop: asyncio.Event, coroutine):
    """Run ``coroutine`` unless ``stop`` is set first; returns (finished, result)."""
    task = asyncio.ensure_future(coroutine)
    stopper = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if task in done:
        return True, task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return False, None


async def _stream_changes(cluster: LocalCluster, emit, interval: float = 0.5) -> None:
    """Emit a line whenever a node's role or leader changes (or it stops answering)."""
    seen: dict[str, tuple | None] = {}
    while True:
        info = cluster.info()
        statuses = await probe.fetch_all(render.probe_urls(info["nodes"]))
        for node in info["nodes"]:
            name = node["name"]
            if name not in statuses:
                seen.pop(name, None)
                continue
            key = render.change_key(statuses[name])
            if name in seen and seen[name] != key:
                emit(render.change_line(name, node["id"], statuses[name], info["nodes"]))
            seen[name] = key
        await asyncio.sleep(interval)


async def _run_supervisor(args: argparse.Namespace, out: Console, *, interactive: bool) -> int:
    config = _config(args)
    emit = _printer(out)
    cluster = LocalCluster(config, on_event=emit)
    cluster.preflight(args.nodes)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        with out.status(f"starting {args.nodes} node(s) on {config.subnet}.1-{args.nodes} ...") if interactive else _nothing():
            started, _ = await _first(stop, cluster.start(args.nodes))
        if started and interactive:
            await _await_leader(cluster.info, args.timeout, out, stop)
            if not stop.is_set():
                info = cluster.info()
                out.print(render.status_view(info, await probe.fetch_all(render.probe_urls(info["nodes"])), out.width))
                out.print("[bold]Ctrl-C[/] stops the cluster. Role changes are shown below as they happen.")
        if started and not stop.is_set():
            watcher = asyncio.create_task(_stream_changes(cluster, emit))
            await _first(stop, cluster.wait_done())
            watcher.cancel()
    finally:
        with out.status("stopping the nodes ...") if interactive else _nothing():
            await cluster.shutdown()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    emit(f"cluster stopped; data and logs are in {cluster.state_dir}")
    return 0


@contextlib.contextmanager
def _nothing():
    yield


async def _await_leader(info_of, timeout: float, out: Console, stop: asyncio.Event | None = None) -> int | None:
    """Wait with a progress line until the live nodes agree on a leader; warn (with log tails) on timeout."""
    with out.status("waiting for the nodes to elect a leader ...") as progress:

        def on_progress(statuses) -> None:
            progress.update(f"waiting for the nodes to elect a leader ... ({probe.disagreement(statuses)})")

        waiting = probe.wait_for_agreement(lambda: render.probe_urls(info_of()["nodes"]), timeout, on_progress=on_progress)
        if stop is None:
            leader, statuses = await waiting
        else:
            finished, result = await _first(stop, waiting)
            if not finished:
                return None
            leader, statuses = result
    if leader is None:
        out.print(
            f"[yellow]warning:[/] no leader agreed by every node after {timeout:g} s ({probe.disagreement(statuses)}). "
            "The cluster keeps running; the logs may say why:"
        )
        for node in info_of()["nodes"]:
            out.print(f"[bold]--- {node['name']}: last lines of {node['log']}[/]")
            out.print(_tail_text(Path(node["log"]), 10), highlight=False, markup=False)
        return None
    name = render.describe_leader(leader, info_of()["nodes"])
    out.print(f"leader: [bold green]{name}[/]")
    return leader


def _up(args: argparse.Namespace) -> int:
    if not args.detach:
        return asyncio.run(_run_supervisor(args, console, interactive=True))
    return _up_detached(args)


def _supervise(args: argparse.Namespace) -> int:
    return asyncio.run(_run_supervisor(args, Console(force_terminal=False, width=_PIPE_WIDTH), interactive=False))


def _up_detached(args: argparse.Namespace) -> int:
    config = _config(args)
    LocalCluster(config).preflight(args.nodes)
    state_dir = Path(args.dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)
    command = [sys.executable, "-m", "talentnest", "cluster", "supervise", "--dir", str(state_dir)]
    command += ["--nodes", str(args.nodes), "--subnet", config.subnet, "--publish-base", str(args.publish_base)]
    command += ["--port", str(args.port)]
    if args.data_from:
        command += ["--data-from", str(args.data_from.resolve())]
    for key, value in args.env:
        command += ["--env", f"{key}={value}"]
    log_path = state_dir / "supervisor.log"
    env = dict(os.environ)
    source_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [source_root, env.get("PYTHONPATH")]))
    with open(log_path, "ab") as log_file:
        supervisor = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
    with console.status(f"starting {args.nodes} node(s) on {config.subnet}.1-{args.nodes} ..."):
        info = _wait_for_supervisor(state_dir, supervisor, log_path, timeout=60.0 + _copy_seconds(config, args.nodes))
    leader = asyncio.run(_await_leader(lambda: _control.request(state_dir, "info"), args.timeout, console))
    _print_status(state_dir)
    console.print(f"Running in the background (supervisor pid {info['supervisor_pid']}, log {log_path}).")
    console.print(
        "Stop it with [bold]talentnest cluster down[/]" + ("" if args.dir == DEFAULT_STATE_DIR else f" --dir {args.dir}")
    )
    return 0 if leader is not None else 1


def _copy_seconds(config: ClusterConfig, nodes: int) -> float:
    """A generous time for copying --data-from's database into every node (at 50 MB/s)."""
    if config.data_from is None:
        return 0.0
    source = Path(config.data_from) / "talentnest.db"
    return nodes * source.stat().st_size / 50e6 if source.exists() else 0.0


def _wait_for_supervisor(state_dir: Path, supervisor: subprocess.Popen, log_path: Path, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(NoCluster):
            return _control.request(state_dir, "info", timeout=5)
        if supervisor.poll() is not None:
            raise LaunchError(f"the cluster did not start (exit code {supervisor.returncode}):\n{_tail_text(log_path, 15)}")
        if time.monotonic() > deadline:
            raise LaunchError(f"the cluster did not start within {timeout:g} s; see {log_path}")
        time.sleep(0.1)


# --- inspecting -----------------------------------------------------------------------------------


def _status(args: argparse.Namespace) -> int:
    if args.url:
        return _remote_status(args)
    info = _control.request(args.dir, "info")
    statuses = asyncio.run(probe.fetch_all(render.probe_urls(info["nodes"])))
    found = asyncio.run(remote_status.survey(render.probe_urls(info["nodes"]).values(), timeout=args.timeout))
    result = remote_status.verdict(found, max_lag_seconds=args.max_lag_seconds)
    if args.json:
        nodes = [{**node, "status": statuses.get(node["name"])} for node in info["nodes"]]
        verdict = {key: value for key, value in remote_status.as_json(found, result).items() if key != "nodes"}
        print(json.dumps({**info, "nodes": nodes, **verdict}, indent=2))
        return result.code
    console.print(render.status_view(info, statuses, console.width))
    _print_verdict(result)
    return result.code


def _remote_status(args: argparse.Namespace) -> int:
    found = asyncio.run(remote_status.survey(args.url, timeout=args.timeout))
    result = remote_status.verdict(found, max_lag_seconds=args.max_lag_seconds)
    if args.json:
        print(json.dumps(remote_status.as_json(found, result), indent=2))
        return result.code
    if found.members:
        console.print(render.status_table(remote_status.as_info(found), remote_status.statuses_of(found), console.width))
    _print_verdict(result)
    return result.code


def _print_verdict(result: remote_status.Verdict) -> None:
    style = {0: "green", 1: "yellow", 2: "bold red"}[result.code]
    for problem in result.problems:
        console.print(f"[{style}]-[/] {problem}", highlight=False)
    for note in result.notes:
        console.print(f"[dim]- {note}[/]", highlight=False)
    console.print(f"[{style}]{result.summary}[/] (exit {result.code})", highlight=False)


def _verify(args: argparse.Namespace) -> int:
    if args.url:
        key, urls = remote_status.key_from_environment("cluster verify"), args.url
    else:
        info = _control.request(args.dir, "info")
        urls = list(render.probe_urls(info["nodes"]).values())
        key = _local_key(args.dir)
    with console.status("asking every node for its checksum at one LSN ..."):
        found = asyncio.run(remote_status.survey(urls, timeout=args.timeout))
        comparison = asyncio.run(remote_status.verify(found, key, within=args.within, timeout=args.timeout))
    style = {0: "green", 1: "bold red", 2: "bold red", 3: "yellow"}[comparison.code]
    for line in comparison.lines:
        console.print(f"[{style}]{line}[/]", highlight=False)
    return comparison.code


def _local_key(state_dir: Path) -> bytes:
    from talentnest.cluster.auth import cluster_key

    secret = (Path(state_dir) / SECRET_FILE).read_text().strip()
    return cluster_key(jwt_secret=secret, cluster_secret=os.environ.get("CLUSTER_SECRET"))


def _drain(args: argparse.Namespace) -> int:
    drained = args.cluster_command == "drain"
    if args.url and args.name:
        raise LaunchError(f"give a node's name or --url, not both ('{args.name}' and --url {args.url})")
    if args.url:
        key, url = remote_status.key_from_environment(f"cluster {args.cluster_command}"), args.url
    elif args.name:
        info = _control.request(args.dir, "info")
        node = next((n for n in info["nodes"] if n["name"] == args.name), None)
        if node is None:
            raise UnknownNode(f"no node named '{args.name}' (nodes: {', '.join(n['name'] for n in info['nodes'])})")
        key, url = _local_key(args.dir), node["internal_url"]
    else:
        raise LaunchError(f"cluster {args.cluster_command} needs a node: a local node's name, or --url URL")
    with console.status(f"{args.cluster_command} {args.name or url} ..."):
        result = asyncio.run(remote_status.drain(url, key, drained, wait=args.wait, timeout=args.timeout))
    style = {0: "green", 1: "yellow", 2: "bold red"}[result.code]
    for line in result.lines:
        console.print(f"[{style}]{line}[/]", highlight=False)
    return result.code


def _print_status(state_dir: Path) -> None:
    info = _control.request(state_dir, "info")
    statuses = asyncio.run(probe.fetch_all(render.probe_urls(info["nodes"])))
    console.print(render.status_view(info, statuses, console.width))


def _watch(args: argparse.Namespace) -> int:
    def view():
        info = _control.request(args.dir, "info")
        statuses = asyncio.run(probe.fetch_all(render.probe_urls(info["nodes"])))
        return render.status_view(info, statuses, console.width)

    try:
        with Live(view(), console=console, auto_refresh=False) as live:
            while True:
                time.sleep(args.interval)
                live.update(view(), refresh=True)
    except NoCluster:
        errors.print("the cluster is no longer running")
        return 1
    except KeyboardInterrupt:
        return 0


# --- changing one node ----------------------------------------------------------------------------

_OPERATIONS = {"stop": "stop", "kill": "kill", "start": "start", "pause": "pause", "unpause": "resume", "add": "add"}


def _node_action(args: argparse.Namespace) -> int:
    op = _OPERATIONS[args.cluster_command]
    fields = {"name": args.name}
    if op == "stop":
        fields["grace"] = args.time
    label = args.name or "a new node"
    with console.status(f"{args.cluster_command} {label} ..."):
        node = _control.request(args.dir, op, timeout=120, **fields)["node"]
    if op in ("start", "add"):
        _wait_ready(node)
    state = node["state"] + (f" ({node['exit']})" if node.get("exit") else "")
    where = f"{node['url']} -> {node['address']}:{node['port']}" if node["url"] else f"{node['address']}:{node['port']}"
    console.print(f"{node['name']} ({node['id']}): {state}   {where}", highlight=False)
    return 0


def _wait_ready(node: Mapping) -> None:
    """Until the node is ready to serve (synced, leader known: /readyz 200), not merely alive."""
    import urllib.error
    import urllib.request

    url = f"{node['internal_url']}/readyz"
    deadline = time.monotonic() + READY_TIMEOUT
    with console.status(f"waiting for {node['name']} to be ready ({url}) ..."):
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, urllib.error.URLError), urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
            time.sleep(0.2)
    errors.print(f"[yellow]warning:[/] {node['name']} was not ready ({url}) within {READY_TIMEOUT:g} s; see {node['log']}")


def _log_path(state_dir: Path, name: str) -> Path:
    path = Path(state_dir) / name / "node.log"
    if not path.parent.is_dir() or "/" in name or name.startswith("."):
        known = sorted(p.parent.name for p in Path(state_dir).glob("*/node.log"))
        raise UnknownNode(f"no node named '{name}' in {state_dir} (nodes: {', '.join(known) or 'none'})")
    return path


def _tail_bytes(path: Path, lines: int | None) -> tuple[bytes, int]:
    """The last ``lines`` lines of the file (all if None) and the offset where the file ended."""
    try:
        with open(path, "rb") as stream:
            stream.seek(0, os.SEEK_END)
            end = stream.tell()
            if lines is None:
                stream.seek(0)
                return stream.read(end), end
            block, data = 8192, b""
            position = end
            while position > 0 and data.count(b"\n") <= lines:
                position = max(0, position - block)
                stream.seek(position)
                data = stream.read(end - position)
    except FileNotFoundError:
        return b"", 0
    kept = data.splitlines(keepends=True)[-lines:] if lines else []
    return b"".join(kept), end


def _tail_text(path: Path, lines: int) -> str:
    data, _ = _tail_bytes(path, lines)
    return data.decode(errors="replace").rstrip() or "(empty)"


def _logs(args: argparse.Namespace) -> int:
    path = _log_path(args.dir, args.name)
    data, offset = _tail_bytes(path, args.tail)
    out = sys.stdout.buffer
    out.write(data)
    out.flush()
    if not args.follow:
        return 0
    try:
        while True:
            time.sleep(LOG_POLL_SECONDS)
            size = path.stat().st_size if path.exists() else 0
            if size < offset:  # truncated or replaced: start again from its beginning
                offset = 0
            if size > offset:
                with open(path, "rb") as stream:
                    stream.seek(offset)
                    chunk = stream.read(size - offset)
                offset += len(chunk)
                out.write(chunk)
                out.flush()
    except KeyboardInterrupt:
        return 0


# --- down -------------------------------------------------------------------------------------------


def _down(args: argparse.Namespace) -> int:
    state_dir = Path(args.dir).resolve()
    try:
        with console.status("stopping every node ..."):
            info = _control.request(state_dir, "down", timeout=120)
            if not wait_for_exit(info["supervisor_pid"], timeout=30):
                raise LaunchError(f"the supervisor (pid {info['supervisor_pid']}) did not exit; see {state_dir}/supervisor.log")
        console.print(f"stopped {len(info['nodes'])} node(s)")
    except NoCluster:
        if not args.purge:
            raise
        console.print(f"no cluster is running in {state_dir}")
    if args.purge:
        _purge(state_dir)
        console.print(f"removed {state_dir}")
    else:
        console.print(f"data and logs are kept in {state_dir} (`talentnest cluster down --purge` removes them)")
    return 0


def _purge(state_dir: Path) -> None:
    if not state_dir.exists():
        return
    if not (state_dir / SECRET_FILE).exists():
        raise LaunchError(f"{state_dir} does not look like a cluster's state directory (no {SECRET_FILE}); not removing it")
    shutil.rmtree(state_dir)
