"""Any deployment's cluster seen over HTTP: the nodes' own status, a verdict with exit codes, and checksums.

``survey`` asks every URL it is given for ``/cluster/status``, then tries the internal address of
each member the answers name that did not answer yet, keeping only those that answer as the member
they claim to be (from outside a Kubernetes or Swarm network they usually do not, and the member is
shown as its peers see it). ``/metrics`` adds the members that left within FAILURE_TIMEOUT, which
``/cluster/status`` no longer lists. ``verdict`` turns that into the exit code a script or a probe
can use; ``verify`` compares every node's database checksum at one LSN over the signed
``/cluster/checksum``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from talentnest.cluster import auth

EXIT_HEALTHY, EXIT_DEGRADED, EXIT_NO_LEADER = 0, 1, 2
# verify only: a node did not answer, or the nodes were never at one LSN at the same time.
EXIT_INCONCLUSIVE = 3
DEFAULT_TIMEOUT = 3.0
# An internal address that does not answer this fast is taken as unreachable from here.
INTERNAL_TIMEOUT = 1.5
DEFAULT_MAX_LAG_SECONDS = 10.0
_MAX_BODY = 8 * 1024 * 1024
DEPARTED_METRIC = "talentnest_peer_departed_seconds"


class RemoteError(Exception):
    """A remote command cannot run (a bad URL, no key); the message says what to change."""


def key_from_environment(command: str, environ: Mapping[str, str] | None = None) -> bytes:
    """The cluster key for a signed operator call (``cluster verify``, ``cluster drain``, ``backup``): from
    ``CLUSTER_SECRET``, else ``JWT_SECRET``, in the environment, never from an argument that ``ps`` would show.
    Raises RemoteError, naming ``command``, when neither is set."""
    from talentnest.config import ConfigError, read_secret

    env = os.environ if environ is None else environ
    try:
        cluster_secret, jwt_secret = read_secret(env, "CLUSTER_SECRET"), read_secret(env, "JWT_SECRET")
    except ConfigError as exc:
        raise RemoteError(f"{command}: {exc}") from None
    if not cluster_secret and not jwt_secret:
        raise RemoteError(
            f"{command} signs its calls with the cluster's key: set CLUSTER_SECRET (or JWT_SECRET, when the "
            "cluster has no CLUSTER_SECRET) in the environment, e.g. `read -rs JWT_SECRET; export JWT_SECRET`, "
            "or name a file that holds it with CLUSTER_SECRET_FILE (JWT_SECRET_FILE)"
        )
    return auth.cluster_key(jwt_secret=jwt_secret or "", cluster_secret=cluster_secret)


def normalise_url(text: str) -> str:
    """``localhost:3001`` -> ``http://localhost:3001``; refuses anything that is not an http(s) base URL."""
    candidate = text.strip()
    if "://" not in candidate:
        candidate = f"http://{candidate}"
    parts = urlsplit(candidate)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise RemoteError(f"--url must be a node's base URL such as http://localhost:3001, got '{text}'")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise RemoteError(f"--url has a bad port: '{text}'") from None
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


@dataclass
class Member:
    """One node of the cluster, as far as this survey knows it."""

    id: int
    address: str | None = None  # its internal URL as the nodes report it (http://ip:port)
    reached: str | None = None  # the URL that answered for it (a given URL or its internal address)
    status: dict | None = None  # its own /cluster/status, if it answered
    departed_seconds: float | None = None  # it left discovery's list this long ago (FAILURE_TIMEOUT not over)
    seen_by: dict[int, dict] = field(default_factory=dict)  # peer id -> that peer's entry about it

    @property
    def name(self) -> str:
        return f"node-{self.id}"


@dataclass
class Survey:
    members: dict[int, Member]
    silent: list[str]  # given URLs that did not answer with a node's status
    urls: list[str]

    @property
    def answered(self) -> list[Member]:
        return [m for m in self.members.values() if m.status is not None]


async def _get(
    session: aiohttp.ClientSession,
    url: str,
    *,
    timeout: float,
    headers: Mapping[str, str] | None = None,
    key: bytes | None = None,
):
    """(status, body bytes) of one GET, or None when nothing answers in time. With ``key`` (a call signed
    with it), an answer not signed for this request counts as no answer (auth.check_answer)."""
    try:
        async with session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            body = await response.content.read(_MAX_BODY + 1)
            if len(body) > _MAX_BODY:
                return None
            if key is not None and headers is not None and response.status != 401:
                try:
                    auth.check_answer(key, headers[auth.HEADER], response.status, response.headers.get(auth.HEADER), body)
                except auth.SignatureError:
                    return None
            return response.status, body
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
        return None


async def _status(session, base: str, timeout: float) -> dict | None:
    answer = await _get(session, f"{base}/cluster/status", timeout=timeout)
    if answer is None or answer[0] != 200:
        return None
    try:
        status = json.loads(answer[1])
    except ValueError:
        return None
    if not isinstance(status, dict) or not isinstance(status.get("current_node_id"), int):
        return None
    return status


async def _departed(session, base: str, timeout: float) -> dict[int, tuple[str, float]]:
    """peer id -> (address, seconds since it answered) for members the node saw leave, from its /metrics."""
    answer = await _get(session, f"{base}/metrics", timeout=timeout)
    if answer is None or answer[0] != 200:
        return {}
    found: dict[int, tuple[str, float]] = {}
    try:
        for family in text_string_to_metric_families(answer[1].decode("utf-8", "replace")):
            if family.name != DEPARTED_METRIC:
                continue
            for sample in family.samples:
                found[int(sample.labels["peer_id"])] = (sample.labels.get("address", ""), float(sample.value))
    except (ValueError, KeyError):
        return {}
    return found


def _absorb(members: dict[int, Member], status: dict, reached: str) -> Member:
    """Record a node's own answer and what it says of the others."""
    own_id = status["current_node_id"]
    member = members.setdefault(own_id, Member(own_id))
    member.status, member.reached = status, reached
    for entry in status.get("nodes") or ():
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), int):
            continue
        other = members.setdefault(entry["id"], Member(entry["id"]))
        if entry.get("address") and (other.address is None or entry["id"] == own_id):
            other.address = str(entry["address"])
        if entry["id"] != own_id:
            other.seen_by[own_id] = entry
    return member


async def survey(urls: Iterable[str], *, timeout: float = DEFAULT_TIMEOUT) -> Survey:
    """Ask every URL, then every member's internal address that has not answered yet (see the module)."""
    given = [normalise_url(url) for url in urls]
    members: dict[int, Member] = {}
    silent: list[str] = []
    async with aiohttp.ClientSession(trust_env=False) as session:
        answers = await asyncio.gather(*(_status(session, url, timeout) for url in given))
        for url, status in zip(given, answers, strict=True):
            if status is None:
                silent.append(url)
            else:
                _absorb(members, status, url)
        tried: set[str] = set(given)
        while True:
            pending = [m for m in members.values() if m.status is None and m.address and m.address not in tried]
            if not pending:
                break
            tried.update(m.address for m in pending)
            found = await asyncio.gather(*(_status(session, m.address, min(timeout, INTERNAL_TIMEOUT)) for m in pending))
            for member, status in zip(pending, found, strict=True):
                # An internal address may lead somewhere else from here (another network's 10.0.0.5).
                if status is not None and status["current_node_id"] == member.id:
                    _absorb(members, status, member.address)
        reporters = [m for m in members.values() if m.status is not None]
        departures = await asyncio.gather(*(_departed(session, m.reached, timeout) for m in reporters))
    for reported in departures:
        for peer_id, (address, seconds) in reported.items():
            member = members.setdefault(peer_id, Member(peer_id))
            if member.status is None:
                member.address = member.address or address or None
                member.departed_seconds = min(seconds, member.departed_seconds or seconds)
    return Survey(members=members, silent=silent, urls=given)


# --- the verdict ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    code: int
    summary: str
    problems: tuple[str, ...]
    notes: tuple[str, ...]
    leader_id: int | None

    @property
    def word(self) -> str:
        return {EXIT_HEALTHY: "healthy", EXIT_DEGRADED: "degraded", EXIT_NO_LEADER: "no leader"}[self.code]


def _follower_lag_seconds(leader: dict | None, member: Member) -> float | None:
    if not leader or not member.address:
        return None
    host = urlsplit(member.address).hostname
    followers = (leader.get("replication") or {}).get("followers") or {}
    entry = followers.get(host) if isinstance(followers, dict) else None
    value = entry.get("lag_seconds") if isinstance(entry, dict) else None
    return float(value) if isinstance(value, (int, float)) else None


def verdict(found: Survey, *, max_lag_seconds: float = DEFAULT_MAX_LAG_SECONDS) -> Verdict:
    """0 healthy; 1 degraded (a node hung, lagging, not ready, cut off, or gone within FAILURE_TIMEOUT);
    2 no leader, or nothing answered."""
    answered = found.answered
    if not answered:
        where = ", ".join(found.urls) or "no URL"
        return Verdict(EXIT_NO_LEADER, f"nothing answered at {where}", (f"no node answered at {where}",), (), None)
    claims = sorted(m.id for m in answered if m.status.get("current_role") == "leader")
    named = sorted({m.status["leader_id"] for m in answered if isinstance(m.status.get("leader_id"), int)})
    if not claims and not named:
        views = "; ".join(f"{m.name}: {m.status.get('current_role')}, no leader" for m in answered)
        text = "no leader: no node that answered leads or knows a leader"
        return Verdict(EXIT_NO_LEADER, text, (f"{text} ({views})",), (), None)
    problems: list[str] = []
    notes: list[str] = []
    if len(claims) > 1:
        problems.append(f"more than one node says it leads: {', '.join(f'node-{i}' for i in claims)}")
    if len(named) > 1:
        problems.append(f"the nodes name different leaders: {', '.join(f'node-{i}' for i in named)}")
    leader_id = claims[0] if len(claims) == 1 else (named[0] if len(named) == 1 else None)
    leader = found.members.get(leader_id) if leader_id is not None else None
    leader_status = leader.status if leader is not None else None
    for url in found.silent:
        problems.append(f"{url} does not answer")
    for member in sorted(found.members.values(), key=lambda m: m.id):
        if member.status is None:
            if member.departed_seconds is not None:
                problems.append(f"{member.name} left {member.departed_seconds:.0f} s ago (within FAILURE_TIMEOUT)")
            elif any(entry.get("healthy") is False for entry in member.seen_by.values()):
                problems.append(f"{member.name} does not answer (hung or stopped): its peers no longer hear from it")
            elif member.seen_by:
                notes.append(f"{member.name} is not reachable from here ({member.address}); its peers hear from it")
            continue
        status = member.status
        if status.get("ready") is False:
            problems.append(f"{member.name} is not ready: {status.get('ready_reason') or 'no reason given'}")
        if status.get("leader_id") is None and status.get("current_role") != "leader":
            problems.append(f"{member.name} sees no leader (cut off from the others?)")
        lag = _follower_lag_seconds(leader_status, member) if member.id != leader_id else None
        if lag is not None and lag > max_lag_seconds:
            problems.append(f"{member.name} lags {lag:.1f} s behind the leader (bound {max_lag_seconds:g} s)")
        if "drained" in ((status.get("health") or {}).get("problems") or {}):
            notes.append(f"{member.name} is drained: it serves, but does not stand for leader (cluster undrain)")
        deaf = sorted(i for i, entry in member.seen_by.items() if entry.get("healthy") is False)
        if deaf:
            problems.append(f"{member.name} answers here but {', '.join(f'node-{i}' for i in deaf)} do not hear from it")
    if problems:
        return Verdict(EXIT_DEGRADED, f"degraded: {len(problems)} problem(s)", tuple(problems), tuple(notes), leader_id)
    count = len(answered)
    summary = f"healthy: {count} node(s) answered, leader node-{leader_id}" if leader_id is not None else "healthy"
    return Verdict(EXIT_HEALTHY, summary, (), tuple(notes), leader_id)


def as_info(found: Survey) -> dict:
    """The survey in the shape of the local launcher's ``info``, for the same status table."""
    nodes = []
    for member in sorted(found.members.values(), key=lambda m: m.id):
        parts = urlsplit(member.address) if member.address else None
        seen = next(iter(member.seen_by.values()), None)
        nodes.append(
            {
                "name": member.name,
                "url": member.reached,
                "internal_url": member.address,
                "address": parts.hostname if parts else "?",
                "port": parts.port if parts and parts.port else "?",
                "id": member.id,
                "state": "running" if member.status else ("stopped" if member.departed_seconds is not None else "unreached"),
                "seen": None if member.status or seen is None else {**seen, "by": next(iter(member.seen_by))},
            }
        )
    label = ", ".join(found.urls)
    return {"service_name": label, "nodes": nodes}


def statuses_of(found: Survey) -> dict[str, dict | None]:
    return {member.name: member.status for member in found.members.values()}


def as_json(found: Survey, result: Verdict) -> dict:
    return {
        "verdict": result.word,
        "exit_code": result.code,
        "summary": result.summary,
        "problems": list(result.problems),
        "notes": list(result.notes),
        "leader_id": result.leader_id,
        "urls": found.urls,
        "unanswered_urls": found.silent,
        "nodes": [
            {
                "id": m.id,
                "address": m.address,
                "reached_at": m.reached,
                "departed_seconds": m.departed_seconds,
                "seen_by": {str(k): v for k, v in m.seen_by.items()},
                "status": m.status,
            }
            for m in sorted(found.members.values(), key=lambda m: m.id)
        ],
    }


# --- verify ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    code: int
    lines: tuple[str, ...]
    lsn: int | None = None
    checksums: Mapping[int, str] = field(default_factory=dict)


async def _checksum(session, base: str, key: bytes, timeout: float) -> tuple[int, dict | None]:
    """(HTTP status or 0 for no answer, the body) of the signed /cluster/checksum."""
    target = "/cluster/checksum"
    signed = {auth.HEADER: auth.sign(key, "GET", target)}
    answer = await _get(session, f"{base}{target}", timeout=timeout, headers=signed, key=key)
    if answer is None:
        return 0, None
    try:
        body = json.loads(answer[1])
    except ValueError:
        body = None
    return answer[0], body if isinstance(body, dict) else None


async def verify(
    found: Survey, key: bytes, *, within: float = 30.0, interval: float = 0.2, timeout: float = DEFAULT_TIMEOUT
) -> Comparison:
    """Every reachable member's checksum at one LSN: polled until every node has reported a checksum at the
    same LSN (not necessarily in the same round), then compared; differences are named."""
    targets = {m.id: m.reached for m in found.answered}
    if not targets:
        return Comparison(EXIT_NO_LEADER, (f"no node answered at {', '.join(found.urls)}",))
    by_lsn: dict[int, dict[int, str]] = {}
    last: dict[int, int] = {}
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession(trust_env=False) as session:
        while True:
            answers = await asyncio.gather(*(_checksum(session, url, key, timeout) for url in targets.values()))
            for node_id, (status, body) in zip(targets, answers, strict=True):
                if status == 401:
                    return Comparison(
                        EXIT_NO_LEADER,
                        (f"node-{node_id} refused the signature (401): CLUSTER_SECRET or JWT_SECRET is not the cluster's",),
                    )
                if status == 200 and body and isinstance(body.get("applied_lsn"), int) and body.get("checksum"):
                    last[node_id] = body["applied_lsn"]
                    by_lsn.setdefault(body["applied_lsn"], {})[node_id] = str(body["checksum"])
            complete = sorted((lsn for lsn, seen in by_lsn.items() if seen.keys() == targets.keys()), reverse=True)
            if complete:
                return _compare(complete[0], by_lsn[complete[0]], found)
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(interval)
    silent = sorted(set(targets) - set(last))
    if silent:
        names = ", ".join(f"node-{i}" for i in silent)
        return Comparison(EXIT_INCONCLUSIVE, (f"not compared: {names} did not answer /cluster/checksum",))
    seen = ", ".join(f"node-{i} at {lsn}" for i, lsn in sorted(last.items()))
    return Comparison(
        EXIT_INCONCLUSIVE,
        (
            f"not compared: in {within:g} s the nodes were never at one LSN (last seen: {seen}); "
            "writes did not pause long enough. Run it again when writes are quieter (or use --within).",
        ),
    )


def _compare(lsn: int, checksums: dict[int, str], found: Survey) -> Comparison:
    groups: dict[str, list[int]] = {}
    for node_id, checksum in sorted(checksums.items()):
        groups.setdefault(checksum, []).append(node_id)
    lines = []
    unverified = sorted(m.id for m in found.members.values() if m.status is None and m.departed_seconds is None)
    if len(groups) == 1:
        (checksum,) = groups
        lines.append(f"{len(checksums)} node(s) agree at LSN {lsn}: checksum {checksum[:16]}")
        code = EXIT_HEALTHY
    else:
        # The largest group is taken as the reference; ties go to the group holding the leader.
        reference = max(groups, key=lambda c: (len(groups[c]), max(groups[c])))
        lines.append(f"the nodes differ at LSN {lsn}:")
        for checksum, ids in sorted(groups.items(), key=lambda item: -len(item[1])):
            mark = "" if checksum == reference else "   <- differs"
            lines.append(f"  {', '.join(f'node-{i}' for i in ids)}: checksum {checksum[:16]}{mark}")
        code = EXIT_DEGRADED
    if unverified:
        lines.append(f"not verified (not reachable from here): {', '.join(f'node-{i}' for i in unverified)}")
        if code == EXIT_HEALTHY:
            code = EXIT_INCONCLUSIVE
    return Comparison(code, tuple(lines), lsn, checksums)


# --- drain ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DrainResult:
    code: int
    lines: tuple[str, ...]


async def _post_signed(session, base: str, key: bytes, target: str, payload: dict, timeout: float):
    body = json.dumps(payload).encode()
    headers = {auth.HEADER: auth.sign(key, "POST", target, body), "Content-Type": "application/json"}
    try:
        async with session.post(
            f"{base}{target}", data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            return response.status, await response.content.read(_MAX_BODY)
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
        return None


async def drain(url: str, key: bytes, drained: bool, *, wait: float = 30.0, timeout: float = DEFAULT_TIMEOUT) -> DrainResult:
    """Drain (or undrain) the node at ``url`` over the signed ``POST /cluster/drain``; when it led and is
    drained, wait up to ``wait`` seconds for it to hand over, and say to whom."""
    base = normalise_url(url)
    word = "drain" if drained else "undrain"
    async with aiohttp.ClientSession(trust_env=False) as session:
        answer = await _post_signed(session, base, key, "/cluster/drain", {"drained": drained}, timeout)
        if answer is None:
            return DrainResult(EXIT_NO_LEADER, (f"{base} does not answer; nothing was changed",))
        status, body = answer
        if status == 401:
            return DrainResult(
                EXIT_NO_LEADER, (f"{base} refused the signature (401): CLUSTER_SECRET or JWT_SECRET is not the cluster's",)
            )
        try:
            reply = json.loads(body)
        except ValueError:
            reply = None
        if status != 200 or not isinstance(reply, dict):
            return DrainResult(EXIT_DEGRADED, (f"{base} answered {status} to the {word}: {body[:300].decode(errors='replace')}",))
        name = f"node-{reply.get('node_id')}"
        state = "drained: it serves, but does not stand for leader" if drained else "undrained: it may lead again"
        lines = [f"{name} {state}" + ("" if reply.get("changed") else f" (it already was {word}ed)")]
        if not drained or reply.get("role") != "leader":
            return DrainResult(EXIT_HEALTHY, tuple(lines))
        lines.append(f"{name} was leading: it hands over to a caught-up peer")
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            status_now = await _status(session, base, timeout)
            if status_now and status_now.get("current_role") != "leader" and isinstance(status_now.get("leader_id"), int):
                lines.append(f"node-{status_now['leader_id']} leads now (term {status_now.get('term')})")
                return DrainResult(EXIT_HEALTHY, tuple(lines))
            await asyncio.sleep(0.2)
    lines.append(f"{name} still leads after {wait:g} s: no peer has caught up to take over (it keeps leading meanwhile)")
    return DrainResult(EXIT_DEGRADED, tuple(lines))
