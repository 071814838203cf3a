"""Published ports relay bytes both ways to the node, and close the client cleanly when the node is down."""

from __future__ import annotations

import asyncio

import pytest

from talentnest.launcher._proxy import PortPublisher
from tests.cluster.harness import TEST_PUBLISH_BASE, TEST_SUBNET

NODE = (f"{TEST_SUBNET}.1", 3000)
PUBLISHED = ("127.0.0.1", (TEST_PUBLISH_BASE or 4000) + 1)


async def _echo_upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A stand-in node: answers each line in upper case; on EOF says 'bye' and closes."""
    while line := await reader.readline():
        writer.write(line.upper())
        await writer.drain()
    writer.write(b"bye\n")
    await writer.drain()
    writer.close()


@pytest.fixture
async def node():
    server = await asyncio.start_server(_echo_upper, *NODE, limit=1024 * 1024)
    yield server
    server.close()
    await server.wait_closed()


@pytest.fixture
async def publisher():
    state = {"target": NODE}
    published = PortPublisher(*PUBLISHED, lambda: state["target"])
    await published.start()
    published.state = state
    yield published
    await published.close()


async def _exchange(lines: list[bytes]) -> bytes:
    reader, writer = await asyncio.open_connection(*PUBLISHED)
    for line in lines:
        writer.write(line)
    await writer.drain()
    writer.write_eof()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


async def test_relays_both_ways_and_passes_the_half_close(node, publisher):
    assert await _exchange([b"hello\n", b"world\n"]) == b"HELLO\nWORLD\nbye\n"


async def test_many_connections_at_once(node, publisher):
    results = await asyncio.gather(*(_exchange([f"client {i}\n".encode()]) for i in range(20)))
    assert results == [f"CLIENT {i}\nbye\n".encode() for i in range(20)]


async def test_large_payload_arrives_whole(node, publisher):
    line = b"x" * 300_000 + b"\n"
    assert await _exchange([line]) == line.upper() + b"bye\n"


async def test_client_is_closed_at_once_while_the_node_is_down(publisher):
    publisher.state["target"] = None
    reader, writer = await asyncio.open_connection(*PUBLISHED)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_client_is_closed_when_the_node_refuses(publisher):
    # Nothing listens on the node's address: the relay cannot connect and closes the client.
    reader, writer = await asyncio.open_connection(*PUBLISHED)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_close_ends_open_connections_and_frees_the_port(node, publisher):
    reader, writer = await asyncio.open_connection(*PUBLISHED)
    writer.write(b"ping\n")
    assert await asyncio.wait_for(reader.readline(), 5) == b"PING\n"
    await publisher.close()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    again = await asyncio.start_server(_echo_upper, *PUBLISHED)
    again.close()
    await again.wait_closed()
