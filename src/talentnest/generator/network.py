"""The generator itself: who the members are, whom they follow, what they post (see the package docstring)."""

from __future__ import annotations

import functools
import itertools
import json
import math
import random
import re
import string
import time
import unicodedata
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

import talentnest.generator._vocabulary as words
import talentnest.services.rules as rules
from talentnest.store import Database
from talentnest.store._time import iso_from_epoch

# Per member, by default: the proportions of the 100,000-member network of issue 12, but fewer
# follows (20, not 50: follows are most of the rows and of the time).
PER_MEMBER = {"posts": 10.0, "follows": 20.0, "likes": 10.0, "comments": 3.0}
MAX_FOLLOWING = 5_000
# The network's clock, fixed so that one seed always gives the same rows.
JOINED = (1_672_531_200.0, 1_751_241_600.0)  # 2023-01-01 .. 2025-06-30, members by id
POSTED = (1_751_328_000.0, 1_764_460_800.0)  # 2025-07-01 .. 2025-11-30, posts by id
MEMBER_BATCH, FOLLOW_BATCH, POST_BATCH = 10_000, 50_000, 5_000
# Secondary indexes of these tables are dropped while they are loaded and built again at the end
# from their own definitions: one sort instead of a random B-tree insert per row (which, once the
# index outgrows the cache, dirties a page per row in every transaction).
BULK_TABLES = ("follows", "posts", "likes", "comments")
_NOT_USERNAME = re.compile(r"[^a-z0-9]+")
_ASCII = str.maketrans({"ß": "ss", "ø": "o", "Ø": "o", "ł": "l", "Ł": "l", "đ": "d", "Đ": "d", "þ": "th", "Þ": "th",
                        "ð": "d", "Ð": "d", "æ": "ae", "Æ": "ae", "ı": "i", "œ": "oe"})  # fmt: skip


@dataclass(frozen=True)
class NetworkSize:
    """How many of each row to generate."""

    members: int
    posts: int
    follows: int
    likes: int
    comments: int

    @classmethod
    def scaled(cls, members: int, **counts: int | None) -> NetworkSize:
        """``members`` members and, for every count not given, ``PER_MEMBER`` times as many."""
        chosen = {name: counts.get(name) for name in PER_MEMBER}
        values = {name: round(members * PER_MEMBER[name]) if v is None else v for name, v in chosen.items()}
        size = cls(members=members, **values)
        size.check()
        return size

    def check(self) -> None:
        if self.members < 2:
            raise ValueError(f"a network needs at least 2 members, got {self.members}")
        for name, value in asdict(self).items():
            if value < 0:
                raise ValueError(f"{name} must be 0 or more, got {value}")
        if self.follows > self.members * min(self.members - 1, MAX_FOLLOWING):
            raise ValueError(f"{self.follows} follows do not fit among {self.members} members")


class Progress(Protocol):
    """Where the generator reports how far it got (a progress bar; or nothing)."""

    def phase(self, name: str, total: int) -> None:
        """A new phase of ``total`` rows begins."""

    def advance(self, rows: int) -> None:
        """``rows`` more rows of the current phase are written."""


class _Silent:
    def phase(self, name: str, total: int) -> None:
        pass

    def advance(self, rows: int) -> None:
        pass


@dataclass(frozen=True)
class GenerateReport:
    """What ``generate`` wrote: the counts, its log entries (LSNs), and the seconds of each phase."""

    size: NetworkSize
    first_lsn: int
    last_lsn: int
    seconds: dict[str, float]

    @property
    def entries(self) -> int:
        return self.last_lsn - self.first_lsn + 1

    def as_dict(self) -> dict:
        return {**asdict(self), "entries": self.entries}


def _zipf(count: int, *, shift: float, exponent: float) -> list[float]:
    """Cumulative weights of ranks 0..count-1, rank r weighing 1/(r + shift)^exponent."""
    return list(itertools.accumulate((r + shift) ** -exponent for r in range(count)))


@functools.cache
def _ascii(text: str) -> str:
    text = words.GREEK_LATIN.get(text, text).translate(_ASCII)
    return _NOT_USERNAME.sub("", unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower())


class _Members:
    """Everyone's name, username and skills, drawn once (posts and headlines mention the skills)."""

    def __init__(self, rng: random.Random, count: int):
        self.count = count
        languages = list(words.LANGUAGE_WEIGHTS)
        language_weights = list(itertools.accumulate(words.LANGUAGE_WEIGHTS.values()))
        self.languages = rng.choices(range(len(languages)), cum_weights=language_weights, k=count)
        self._lists = [words.NAMES[name] for name in languages]
        self._given_weights = [_zipf(len(given), shift=1.5, exponent=1.0) for given, _ in self._lists]
        self._family_weights = [_zipf(len(family), shift=1.5, exponent=1.0) for _, family in self._lists]
        self.skills = words.SKILLS + words.RARE_SKILLS
        # About one member in ten holds the first skill (Python); the rare ones, a few in ten thousand.
        weights = [(r + 12) ** -0.8 for r in range(len(words.SKILLS))]
        weights += [weights[-1] * words.RARE_SKILL_WEIGHT] * len(words.RARE_SKILLS)
        self._skill_weights = list(itertools.accumulate(weights))
        self.top_skill = array("H")

    def draw(self, rng: random.Random, index: int) -> tuple[str, str, list[str]]:
        """(name, username, skills) of member ``index`` (id ``index + 1``)."""
        language = self.languages[index]
        given_names, family_names = self._lists[language]
        given = given_names[rng.choices(range(len(given_names)), cum_weights=self._given_weights[language])[0]]
        family = family_names[rng.choices(range(len(family_names)), cum_weights=self._family_weights[language])[0]]
        suffix = str(index + 1)
        handle = f"{_ascii(given)}_{_ascii(family)}"[: rules.USERNAME_MAX - len(suffix) - 1].strip("_")
        username = f"{handle or 'member'}_{suffix}"
        wanted = rng.randint(3, 8)
        chosen: dict[int, None] = {}
        while len(chosen) < wanted:
            for skill in rng.choices(range(len(self.skills)), cum_weights=self._skill_weights, k=wanted - len(chosen)):
                chosen[skill] = None
        skills = list(chosen)
        self.top_skill.append(skills[0])
        return f"{given} {family}", username, [self.skills[s] for s in skills]


@functools.cache
def _fields(template: str) -> frozenset[str]:
    return frozenset(name for _, name, _, _ in string.Formatter().parse(template) if name)


def _fill(template: str, rng: random.Random, skills: Sequence[str]) -> str:
    """``template`` with each of its fields drawn (only the fields it has: this runs for every row)."""
    fields = _fields(template)
    if not fields:
        return template
    values: dict[str, str] = {}
    if fields & {"skill", "skill2", "skill3", "tag", "tag2"}:
        picks = rng.sample(skills, 3) if len(skills) >= 3 else [*skills, *words.SKILLS[:3]][:3]
        values.update(skill=picks[0], skill2=picks[1], skill3=picks[2])
        if "tag" in fields:
            values.update(tag=_ascii(picks[0]) or "tech", tag2=_ascii(picks[1]) or "dev")
    for name, choices in (("level", words.LEVELS), ("role", words.ROLES), ("company", words.COMPANIES), ("city", words.CITIES)):
        if name in fields:
            values[name] = rng.choice(choices)
    return template.format_map(values)


def _spread(start: float, end: float, index: int, count: int) -> float:
    return start + (end - start) * index / max(count - 1, 1)


class _Writer:
    """Batches rows into write transactions and reports progress."""

    def __init__(self, db: Database, progress: Progress):
        self.db = db
        self.progress = progress
        self.first_lsn = 0
        self.rows = dict.fromkeys(("members", "follows", "posts", "likes", "comments"), 0)

    def write(self, batches: dict[str, tuple[str, list[tuple]]]) -> None:
        """One transaction: each kind of row (``self.rows``' keys) with its INSERT and rows."""
        with self.db.write() as conn:
            for sql, rows in batches.values():
                if rows:
                    conn.executemany(sql, rows)
        if not self.first_lsn:
            self.first_lsn = self.db.last_lsn
        written = 0
        for kind, (_, rows) in batches.items():
            self.rows[kind] += len(rows)
            written += len(rows)
        self.progress.advance(written)


_USER_INSERT = (
    "INSERT INTO users(id, username, email, name, headline, bio, location, skills, password_hash, created_at, "
    "updated_at, follower_count, following_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_FOLLOW_INSERT = "INSERT INTO follows(follower_id, followee_id, created_at) VALUES (?, ?, ?)"
_POST_INSERT = (
    "INSERT INTO posts(id, author_id, content, created_at, updated_at, like_count, comment_count) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_LIKE_INSERT = "INSERT INTO likes(post_id, user_id, created_at) VALUES (?, ?, ?)"
_COMMENT_INSERT = "INSERT INTO comments(post_id, author_id, content, created_at) VALUES (?, ?, ?, ?)"


class _Graph:
    """Who follows whom: each member's followees (popular members are followed far more often)."""

    def __init__(self, rng: random.Random, members: int, follows: int):
        self.offsets = array("q", [0])
        self.followees = array("i")
        self.followers = array("i", bytes(4 * members))
        if follows == 0:
            self.offsets.extend(itertools.repeat(0, members))
            return
        ranks = list(range(members))
        rng.shuffle(ranks)
        popularity = _zipf(members, shift=50, exponent=1.0)
        cap = min(members - 1, MAX_FOLLOWING)
        sigma = 1.0
        mu = math.log(follows / members) - sigma * sigma / 2
        wanted = [min(cap, int(rng.lognormvariate(mu, sigma) + 0.5)) for _ in range(members)]
        # Scale to the exact total asked for, one member at a time, in a deterministic order.
        excess = sum(wanted) - follows
        step = 1 if excess < 0 else -1
        order = itertools.cycle(range(members))
        while excess:
            member = next(order)
            if 0 <= wanted[member] + step <= cap:
                wanted[member] += step
                excess += step
        for member, count in enumerate(wanted):
            chosen: dict[int, None] = {}
            while len(chosen) < count:
                for other in rng.choices(ranks, cum_weights=popularity, k=count - len(chosen) + 2):
                    if other != member and len(chosen) < count:
                        chosen[other] = None
            picked = sorted(chosen)
            self.followees.extend(picked)
            self.offsets.append(len(self.followees))
            followers = self.followers
            for other in picked:
                followers[other] += 1

    def following(self, member: int) -> array:
        return self.followees[self.offsets[member] : self.offsets[member + 1]]

    def following_count(self, member: int) -> int:
        return self.offsets[member + 1] - self.offsets[member]


def generate(
    db: Database,
    size: NetworkSize,
    *,
    password_hash: str,
    seed: int = 1,
    progress: Progress | None = None,
) -> GenerateReport:
    """Fill the empty, open ``db`` with a network of ``size``; every member's password hash is
    ``password_hash``. Raises ValueError if the database already holds members."""
    size.check()
    progress = progress or _Silent()
    if db.conn.execute("SELECT EXISTS(SELECT 1 FROM users)").fetchone()[0]:
        raise ValueError(f"{db.path} already holds members; generate into an empty data directory")
    rng = random.Random(seed)
    writer = _Writer(db, progress)
    seconds: dict[str, float] = {}

    started = time.monotonic()
    graph = _Graph(rng, size.members, size.follows)
    members = _Members(rng, size.members)
    seconds["plan"] = time.monotonic() - started

    started = time.monotonic()
    # The search index is built once from the finished members rather than row by row (about 3x
    # faster for the whole phase, measured at 20,000 members).
    with db.derived_paused():
        _write_members(writer, rng, members, graph, password_hash)
        seconds["members"] = time.monotonic() - started
        progress.phase("search index", 1)
        started = time.monotonic()
    progress.advance(1)
    seconds["search index"] = time.monotonic() - started

    indexes = _drop_indexes(db, BULK_TABLES)
    try:
        started = time.monotonic()
        _write_follows(writer, rng, graph, size.members)
        seconds["follows"] = time.monotonic() - started

        started = time.monotonic()
        _write_posts(writer, rng, members, size)
        seconds["posts"] = time.monotonic() - started
    finally:
        started = time.monotonic()
        _create_indexes(db, indexes, progress)
        seconds["indexes"] = time.monotonic() - started
    # The write path trims the log every 64 writes; trimmed once more here, a generated network
    # starts within the log's retention and its node's first writes do not pay for the excess.
    db.trim_log()
    written = NetworkSize(**writer.rows)
    return GenerateReport(written, writer.first_lsn, db.last_lsn, {k: round(v, 1) for k, v in seconds.items()})


def _drop_indexes(db: Database, tables: Sequence[str]) -> list[tuple[str, str]]:
    """Drop the explicit indexes of ``tables``; their (name, CREATE statement), to build them again."""
    marks = ", ".join("?" for _ in tables)
    indexes = db.conn.execute(
        f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN ({marks}) ORDER BY name",
        tuple(tables),
    ).fetchall()
    for name, _ in indexes:
        db.conn.execute(f'DROP INDEX "{name}"')
    return [(name, sql) for name, sql in indexes]


def _create_indexes(db: Database, indexes: Sequence[tuple[str, str]], progress: Progress) -> None:
    progress.phase("indexes", len(indexes))
    for _, sql in indexes:
        db.conn.execute(sql)
        progress.advance(1)


def _write_members(writer: _Writer, rng: random.Random, members: _Members, graph: _Graph, password_hash: str) -> None:
    writer.progress.phase("members", members.count)
    for start in range(0, members.count, MEMBER_BATCH):
        rows = []
        for index in range(start, min(start + MEMBER_BATCH, members.count)):
            name, username, skills = members.draw(rng, index)
            joined = iso_from_epoch(_spread(*JOINED, index, members.count))
            rows.append(
                (
                    index + 1,
                    username,
                    f"{username}@example.com",
                    name,
                    _fill(rng.choice(words.HEADLINES), rng, skills),
                    _fill(rng.choice(words.BIOS), rng, skills),
                    rng.choice(words.CITIES),
                    json.dumps(skills, ensure_ascii=False),
                    password_hash,
                    joined,
                    joined,
                    graph.followers[index],
                    graph.following_count(index),
                )
            )
        writer.write({"members": (_USER_INSERT, rows)})


def _write_follows(writer: _Writer, rng: random.Random, graph: _Graph, count: int) -> None:
    writer.progress.phase("follows", len(graph.followees))
    rows: list[tuple] = []
    span = JOINED[1] - JOINED[0]
    for member in range(count):
        joined = _spread(*JOINED, member, count)
        for other in graph.following(member):
            since = max(joined, JOINED[0] + span * other / max(count - 1, 1))
            rows.append((member + 1, other + 1, iso_from_epoch(since + rng.random() * (POSTED[1] - since))))
        if len(rows) >= FOLLOW_BATCH:
            writer.write({"follows": (_FOLLOW_INSERT, rows)})
            rows = []
    if rows:
        writer.write({"follows": (_FOLLOW_INSERT, rows)})


def _per_post(rng: random.Random, mean: float, ceiling: int) -> int:
    """A heavy-tailed count with the given mean (Pareto, alpha 1.5: mean 3x its scale)."""
    if mean <= 0:
        return 0
    value = rng.paretovariate(1.5) * mean / 3
    whole = int(value)
    return min(ceiling, whole + (rng.random() < value - whole))


def _batches(total: int, size: int) -> Iterator[range]:
    for start in range(0, total, size):
        yield range(start, min(start + size, total))


def _write_posts(writer: _Writer, rng: random.Random, members: _Members, size: NetworkSize) -> None:
    writer.progress.phase("posts, likes, comments", size.posts + size.likes + size.comments)
    if not size.posts:
        return
    activity = list(itertools.accumulate(rng.paretovariate(1.16) for _ in range(size.members)))
    like_mean, comment_mean = size.likes / size.posts, size.comments / size.posts
    people = range(size.members)
    for batch in _batches(size.posts, POST_BATCH):
        posts, likes, comments = [], [], []
        for index, author in zip(batch, rng.choices(people, cum_weights=activity, k=len(batch)), strict=True):
            post_id = index + 1
            skills = [members.skills[members.top_skill[author]], rng.choice(words.SKILLS)]
            text = " ".join(
                part
                for part in (
                    rng.choice(words.POST_OPENERS),
                    _fill(rng.choice(words.POST_MIDDLES), rng, skills),
                    _fill(rng.choice(words.POST_CLOSERS), rng, skills),
                )
                if part
            )
            posted = _spread(*POSTED, index, size.posts)
            at = iso_from_epoch(posted)
            liked = rng.sample(people, _per_post(rng, like_mean, size.members))
            commented = _per_post(rng, comment_mean, 1_000)
            posts.append((post_id, author + 1, text, at, at, len(liked), commented))
            later = iso_from_epoch(min(posted + 3600.0, POSTED[1]))
            likes.extend((post_id, who + 1, later) for who in liked)
            comments.extend(
                (post_id, rng.randrange(size.members) + 1, _fill(rng.choice(words.COMMENTS), rng, skills), later)
                for _ in range(commented)
            )
        writer.write({"posts": (_POST_INSERT, posts), "likes": (_LIKE_INSERT, likes), "comments": (_COMMENT_INSERT, comments)})
