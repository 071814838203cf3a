"""``python -m talentnest node`` refuses a bad setting: exit status 2 and one line naming it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


def run_node(env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(SRC), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        [sys.executable, "-m", "talentnest", "node"], env={**base, **env}, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "env, variable",
    [
        ({"JWT_SECRET": "secret_key", "PORT": "70000"}, "PORT"),
        ({"PORT": "3000"}, "JWT_SECRET"),
        ({"JWT_SECRET": "secret_key", "REPLICATION_MODE": "sync"}, "REPLICATION_MODE"),
        ({"JWT_SECRET": "secret_key", "HEARTBEAT_INTERVAL": "20"}, "FAILURE_TIMEOUT"),
        ({"JWT_SECRET": "secret_key", "PEERS": "10.0.0.1,localhost"}, "PEERS"),
    ],
    ids=["port out of range", "no secret", "unknown mode", "timing relation", "bad peer"],
)
def test_a_bad_setting_stops_the_node_with_one_line_naming_it(tmp_path: Path, env: dict, variable: str):
    result = run_node({"DATA_DIR": str(tmp_path / "data"), **env})

    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"talentnest: configuration error: {variable}"), lines[0]
    assert not (tmp_path / "data" / "talentnest.db").exists()


def test_a_data_dir_that_cannot_be_written_stops_the_node(tmp_path: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")

    result = run_node({"JWT_SECRET": "secret_key", "DATA_DIR": str(blocker / "data")})

    assert result.returncode == 2
    assert result.stderr.startswith(f"talentnest: configuration error: DATA_DIR '{blocker / 'data'}' is not writable")
    assert len(result.stderr.splitlines()) == 1


def test_without_a_command_the_usage_is_shown():
    env = {**os.environ, "PYTHONPATH": str(SRC)}

    result = subprocess.run([sys.executable, "-m", "talentnest"], env=env, capture_output=True, text=True, timeout=60)

    assert result.returncode == 2
    assert "node" in result.stdout and "usage" in result.stdout.lower()


def run_generate(*arguments: str) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(SRC), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        [sys.executable, "-m", "talentnest", "generate", *arguments], env=base, capture_output=True, text=True, timeout=120
    )


def test_generate_takes_counts_like_1k_and_refuses_what_it_cannot_build(tmp_path: Path):
    made = run_generate(str(tmp_path / "net"), "--members", "0.1k", "--posts", "1_000", "--follows", "300")
    assert made.returncode == 0, made.stderr
    assert "wrote 100 members, 300 follows, 1,000 posts" in made.stdout
    assert "follows done: 300 of 300" in made.stderr, "progress, as lines when the output is not a terminal"

    again = run_generate(str(tmp_path / "net"), "--members", "100")
    assert again.returncode == 1 and "already exists; generate into a new directory" in again.stderr
    for bad, says in (("1.5", "whole count"), ("lots", "count such as 100000")):
        refused = run_generate(str(tmp_path / "other"), "--members", bad)
        assert refused.returncode == 2 and says in refused.stderr, refused.stderr
    impossible = run_generate(str(tmp_path / "other"), "--members", "3", "--follows", "10")
    assert impossible.returncode == 2 and "do not fit among 3 members" in impossible.stderr
    assert not (tmp_path / "other").exists(), "a refused run leaves nothing behind"
