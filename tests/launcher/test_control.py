"""The control channel: one JSON request per connection over an owner-only unix socket."""

from __future__ import annotations

import asyncio
import stat

import pytest

from talentnest.launcher import _control
from talentnest.launcher.errors import NoCluster


async def _handler(request: dict) -> dict:
    if request["op"] == "echo":
        return {"ok": True, "echo": request.get("value")}
    if request["op"] == "crash":
        raise RuntimeError("boom")
    return {"ok": False, "error": f"unknown operation '{request['op']}'"}


@pytest.fixture
async def control(tmp_path):
    server = _control.ControlServer(_control.socket_path(tmp_path), _handler)
    await server.start()
    yield server
    await server.close()


def _ask(directory, op, **fields):
    return asyncio.to_thread(_control.request, directory, op, **fields)


async def test_answers_a_request_on_an_owner_only_socket(tmp_path, control):
    assert (await _ask(tmp_path, "echo", value=[1, "two"]))["echo"] == [1, "two"]
    assert stat.S_IMODE(control.path.stat().st_mode) == 0o600


async def test_a_refusal_and_a_crash_become_control_errors(tmp_path, control):
    with pytest.raises(_control.ControlError, match="unknown operation 'nope'"):
        await _ask(tmp_path, "nope")
    with pytest.raises(_control.ControlError, match="RuntimeError: boom"):
        await _ask(tmp_path, "crash")
    assert (await _ask(tmp_path, "echo", value=3))["echo"] == 3


async def test_nothing_listening_is_no_cluster(tmp_path, control):
    await control.close()
    with pytest.raises(NoCluster, match="no cluster is running"):
        await _ask(tmp_path, "echo")


def test_a_stale_socket_file_is_no_cluster(tmp_path):
    import socket

    path = _control.socket_path(tmp_path)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))  # bound, never listening: what a killed supervisor leaves behind
    with pytest.raises(NoCluster):
        _control.request(tmp_path, "info")


async def test_a_directory_too_deep_for_a_socket_path_still_works(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    path = _control.socket_path(deep)
    assert path.parent != deep and path == _control.socket_path(deep)
    server = _control.ControlServer(path, _handler)
    await server.start()
    try:
        assert (await _ask(deep, "echo", value="deep"))["echo"] == "deep"
    finally:
        await server.close()
    assert not path.exists()
