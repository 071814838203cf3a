"""The status table of `talentnest cluster status` and `watch`: the dashboard's facts (name, address, ID,
role, healthy, term, LSN, lag) from the nodes' own /cluster/status answers, in 80 columns or more."""

from __future__ import annotations

from rich.console import Console

from talentnest.launcher import render


def make_info(count: int = 3, *, exited: int | None = None) -> dict:
    nodes = []
    for i in range(1, count + 1):
        nodes.append(
            {
                "name": f"backend-{i}",
                "url": f"http://localhost:300{i}",
                "internal_url": f"http://127.0.2.{i}:3000",
                "address": f"127.0.2.{i}",
                "port": 3000,
                "id": 512 + i,
                "state": "exited" if i == exited else "running",
                "exit_code": -9 if i == exited else None,
            }
        )
    return {"service_name": "backend-service", "state_dir": "/tmp/cluster", "dns": "127.0.0.1:5353", "nodes": nodes}


def make_status(node_id: int, *, role: str, leader_id: int | None, lags: dict[int, int | None], ready: bool = True, reason=""):
    """A /cluster/status answer as a node gives it: its view of every node's lag, itself marked ``self``."""
    return {
        "current_node_id": node_id,
        "current_role": role,
        "leader_id": leader_id,
        "term": 4,
        "applied_lsn": 1200,
        "ready": ready,
        "ready_reason": reason or ("leader" if role == "leader" else f"following leader {leader_id}"),
        "nodes": [{"id": i, "lag": lag, "self": i == node_id} for i, lag in lags.items()],
    }


def rows(info: dict, statuses: dict, width: int) -> dict[str, list[str]]:
    console = Console(width=width, force_terminal=False, record=True)
    console.print(render.status_table(info, statuses, width))
    text = console.export_text()
    assert all(len(line.rstrip()) <= width for line in text.splitlines()), text
    found = {
        line.split()[0]: line.split() for line in text.splitlines() if line.startswith(("backend-", " backend-", "  backend-"))
    }
    header = next(line.split() for line in text.splitlines() if "NAME" in line)
    return {"header": header, **found}


def test_lag_comes_from_the_leaders_view_and_healthy_says_whether_the_node_answers_and_is_ready():
    info = make_info(3, exited=3)
    statuses = {
        # The follower thinks it is 2 behind; the leader, which knows what it acknowledged, says 7.
        "backend-1": make_status(
            513, role="follower", leader_id=514, lags={513: 2, 514: 0}, ready=False, reason="syncing from the leader"
        ),
        "backend-2": make_status(514, role="leader", leader_id=514, lags={513: 7, 514: 0}),
        "backend-3": None,
    }
    table = rows(info, statuses, 160)
    assert table["header"] == ["NAME", "URL", "ADDRESS", "ID", "ROLE", "LEADER", "TERM", "LSN", "LAG", "HEALTHY"]
    assert table["backend-1"] == [
        "backend-1",
        "http://localhost:3001",
        "127.0.2.1:3000",
        "513",
        "follower",
        "backend-2",
        "4",
        "1200",
        "7",
        "syncing",
    ]
    assert table["backend-2"][4:] == ["leader", "backend-2", "4", "1200", "0", "yes"]
    assert table["backend-3"][4:] == ["down", "(exit", "-9)", "no"]


def test_without_a_leader_each_node_reports_its_own_lag_and_80_columns_drop_only_the_address():
    info = make_info(2)
    statuses = {
        "backend-1": make_status(
            513, role="follower", leader_id=None, lags={513: 3, 514: None}, ready=False, reason="no leader known"
        ),
        "backend-2": make_status(
            514, role="follower", leader_id=None, lags={513: None, 514: None}, ready=False, reason="no leader known"
        ),
    }
    table = rows(info, statuses, 80)
    assert table["header"] == ["NAME", "URL", "ID", "ROLE", "LEADER", "TERM", "LSN", "LAG", "HEALTHY"]
    assert table["backend-1"] == ["backend-1", "localhost:3001", "513", "follower", "none", "4", "1200", "3", "not", "ready"]
    assert table["backend-2"][-2:] == ["not", "ready"] and table["backend-2"][-3] == "1200"  # no lag known: the cell is empty
