"""The DNS server answers like Docker's: A records for known names, NXDOMAIN for the rest, never cached."""

from __future__ import annotations

import asyncio
import socket

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import pytest

from talentnest.launcher._dns import DNSServer
from tests.cluster.harness import TEST_SUBNET
from tests.launcher.conftest import resolve

RECORDS = {"backend-service": [f"{TEST_SUBNET}.1", f"{TEST_SUBNET}.2"], "backend-1": [f"{TEST_SUBNET}.1"], "empty": []}


@pytest.fixture
async def server():
    records = {name: list(addresses) for name, addresses in RECORDS.items()}
    dns_server = DNSServer(f"{TEST_SUBNET}.254", 0, records.get)
    await dns_server.start()
    dns_server.records = records
    yield dns_server
    dns_server.close()


async def _resolve(server, name, rdtype="A"):
    # In a thread: the server answers on this test's event loop, which a blocking query would stall.
    return await asyncio.to_thread(resolve, server.address, name, rdtype)


async def _query(server, name, rdtype):
    host, port = server.address
    return await asyncio.to_thread(dns.query.udp, dns.message.make_query(name, rdtype), host, port=port, timeout=3)


async def test_answers_the_service_name_with_every_address(server):
    assert await _resolve(server, "backend-service") == [f"{TEST_SUBNET}.1", f"{TEST_SUBNET}.2"]
    assert await _resolve(server, "backend-1") == [f"{TEST_SUBNET}.1"]


@pytest.mark.parametrize("name", ["BACKEND-SERVICE", "Backend-Service.", "backend-service."])
async def test_names_are_case_insensitive_with_or_without_the_trailing_dot(server, name):
    assert await _resolve(server, name) == [f"{TEST_SUBNET}.1", f"{TEST_SUBNET}.2"]


async def test_unknown_names_are_nxdomain(server):
    with pytest.raises(dns.resolver.NXDOMAIN):
        await _resolve(server, "backend-9")


async def test_answers_have_ttl_zero_and_follow_changes_at_once(server):
    first = await _query(server, "backend-service", "A")
    assert first.rcode() == dns.rcode.NOERROR
    assert [rrset.ttl for rrset in first.answer] == [0]
    server.records["backend-service"].remove(f"{TEST_SUBNET}.2")
    assert await _resolve(server, "backend-service") == [f"{TEST_SUBNET}.1"]


async def test_a_known_name_without_addresses_or_asked_for_aaaa_has_no_answer(server):
    for name, rdtype in (("empty", "A"), ("backend-service", "AAAA")):
        reply = await _query(server, name, rdtype)
        assert reply.rcode() == dns.rcode.NOERROR
        assert reply.answer == []


async def test_garbage_is_ignored_and_the_server_keeps_answering(server):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"\x00\x01not a dns packet", server.address)
    assert await _resolve(server, "backend-1") == [f"{TEST_SUBNET}.1"]
