"""What the cluster commands print: the status table, its footer, and one-line role-change events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from talentnest.launcher.probe import Statuses

_ROLE_STYLES = {"leader": "bold green", "follower": "cyan", "candidate": "yellow"}


def probe_urls(nodes: Sequence[Mapping]) -> dict[str, str]:
    """name -> the URL a user would curl (the published port, or the internal address if unpublished)."""
    return {node["name"]: node["url"] or node["internal_url"] for node in nodes if node["state"] in ("running", "paused")}


def _names_by_id(nodes: Sequence[Mapping]) -> dict[int, str]:
    return {node["id"]: node["name"] for node in nodes}


def describe_leader(leader_id: int | None, nodes: Sequence[Mapping]) -> str:
    if leader_id is None:
        return "none"
    name = _names_by_id(nodes).get(leader_id)
    return f"{name} ({leader_id})" if name else str(leader_id)


def _role_cell(node: Mapping, status: dict | None) -> Text:
    """The node's own answer, or why there is none: a node that does not answer shows as down."""
    if status is not None:
        role = str(status.get("current_role"))
        return Text(role, style=_ROLE_STYLES.get(role, ""))
    seen = node.get("seen")
    if seen and seen.get("healthy"):
        # Not reachable from here (an internal address), but a peer hears from it.
        return Text(f"{seen.get('role')} (per node-{seen.get('by')})", style="dim")
    if node["state"] == "exited" and node.get("exit_code") is not None:
        return Text(f"down (exit {node['exit_code']})", style="bold red")
    if node["state"] in ("stopped", "paused", "created"):
        return Text(f"down ({node['state']})", style="red")
    return Text("down (no reply)", style="bold red")


def _leader_view(statuses: Statuses) -> dict | None:
    """The status of a node that says it leads (the one whose view of the others' lag counts)."""
    for status in statuses.values():
        if status and status.get("current_role") == "leader":
            return status
    return None


def node_lag(node_id: int, status: dict | None, leader: dict | None) -> int | None:
    """Entries the node is behind its leader: the leader's figure (it knows what each follower
    acknowledged), else the node's own estimate; None when neither is known."""
    for view, wanted in ((leader, node_id), (status, None)):
        if not view:
            continue
        for entry in view.get("nodes") or ():
            if (entry.get("id") == node_id if wanted is not None else entry.get("self")) and entry.get("lag") is not None:
                return int(entry["lag"])
    return None


def _healthy_cell(status: dict | None, node: Mapping | None = None) -> Text:
    """Healthy as the dashboard means it: the node answers; and ready, or why not."""
    if status is None:
        seen = (node or {}).get("seen")
        if seen and seen.get("healthy"):
            return Text("yes (per peer)", style="dim")
        return Text("no", style="bold red")
    problems = (status.get("health") or {}).get("problems") or {}
    if status.get("ready", True):
        # Drained by an operator: it serves, but does not stand for leader (not a fault).
        return Text("yes, drained", style="cyan") if "drained" in problems else Text("yes", style="green")
    reason = str(status.get("ready_reason") or "not ready")
    return Text("syncing" if "sync" in reason else "not ready", style="yellow")


# Below this many columns the table drops the internal ADDRESS (the ID encodes it), the URLs' "http://",
# its lines and extra padding, to fit 80.
COMPACT_WIDTH = 100


def status_table(info: Mapping, statuses: Statuses, width: int = COMPACT_WIDTH) -> Table:
    nodes = info["nodes"]
    names = _names_by_id(nodes)
    compact = width < COMPACT_WIDTH
    table = Table(
        title=f"Talent Nest cluster ({info['service_name']})",
        title_justify="left",
        header_style="bold",
        box=None if compact else box.SIMPLE_HEAD,
        collapse_padding=compact,
        pad_edge=not compact,
    )
    numeric = ("ID", "TERM", "LSN", "LAG")
    columns = ("NAME", "URL", "ADDRESS", "ID", "ROLE", "LEADER", "TERM", "LSN", "LAG", "HEALTHY")
    for column in columns:
        if not (compact and column == "ADDRESS"):
            table.add_column(column, justify="right" if column in numeric else "left", no_wrap=True)
    leader_view = _leader_view(statuses)
    for node in nodes:
        answer = statuses.get(node["name"])
        status = answer or {}
        leader_id = status.get("leader_id")
        lag = node_lag(node["id"], answer, leader_view) if answer is not None else None
        address = [] if compact else [f"{node['address']}:{node['port']}"]
        table.add_row(
            node["name"],
            (node["url"].removeprefix("http://") if compact else node["url"]) if node.get("url") else "-",
            *address,
            str(node["id"]),
            _role_cell(node, statuses.get(node["name"])),
            names.get(leader_id, str(leader_id)) if leader_id is not None else ("none" if status else ""),
            str(status.get("term", "")),
            str(status.get("applied_lsn", "")),
            "" if lag is None else str(lag),
            _healthy_cell(answer, node),
        )
    return table


def footer(info: Mapping) -> Text:
    state_dir = info["state_dir"]
    dns_host, _, dns_port = info["dns"].partition(":")
    text = Text()
    text.append("Logs  ", style="bold")
    text.append(f"{state_dir}/<name>/node.log   (talentnest cluster logs <name> -f)\n")
    text.append("Data  ", style="bold")
    text.append(f"{state_dir}/<name>/data/\n")
    text.append("DNS   ", style="bold")
    text.append(f"dig @{dns_host} -p {dns_port} {info['service_name']}   (the nodes' DNS_SERVER)")
    return text


def status_view(info: Mapping, statuses: Statuses, width: int = COMPACT_WIDTH) -> Group:
    return Group(status_table(info, statuses, width), Text(""), footer(info))


def change_line(name: str, node_id: int, status: dict | None, nodes: Sequence[Mapping]) -> str:
    """The event line for a node whose role or leader changed."""
    if status is None:
        return f"{name} ({node_id}) is not answering"
    if status.get("current_role") == "leader" and status.get("leader_id") == node_id:
        return f"{name} ({node_id}) is leader, term {status.get('term', '?')}"
    return (
        f"{name} ({node_id}) is {status.get('current_role')}, "
        f"leader {describe_leader(status.get('leader_id'), nodes)}, term {status.get('term', '?')}"
    )


def change_key(status: dict | None) -> tuple | None:
    if status is None:
        return None
    return status.get("current_role"), status.get("leader_id")
