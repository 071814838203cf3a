"""The search index is derived, never replicated: after any product writes, on the leader and on a
follower that applied them, after a snapshot install, a divergence and a migration, it holds what
an index rebuilt from scratch holds; and no log entry ever carries it."""

from __future__ import annotations

import json
import random
import sqlite3
import sys
import tempfile
import unicodedata
from contextlib import suppress
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_factories import Node, assert_counters_are_recounts, assert_index_is_rebuilt, index_instances, make_node

from talentnest.errors import ProductError
from talentnest.store import Database, search
from talentnest.store.divergence import archive_divergent
from talentnest.store.schema import MIGRATIONS
from talentnest.store.snapshot import install, prepare_snapshot, take_snapshot

# Words that fold in every interesting way: accents, ß, final sigma, punctuation, digits, scripts.
VOCABULARY = [
    "José", "jose", "Élodie", "ÉLODIE", "Straße", "STRASSE", "Σοφία", "ΣΟΦΊΑ", "Νίκος", "node.js", "C++", "c#",
    "O'Brien", "Jean-Luc", "(python)", "Python,", "ﬁsh", "İlkay", "中文", "🚀", "--", "a_c", "Zoë", "x",
]  # fmt: skip
word = st.sampled_from(VOCABULARY) | st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1, max_size=8
)
phrase = st.lists(word, min_size=1, max_size=4).map(" ".join)
index = st.integers(min_value=0, max_value=30)
op = st.one_of(
    st.tuples(st.just("signup"), phrase),
    st.tuples(st.just("name"), index, phrase),
    st.tuples(st.just("headline"), index, phrase),
    st.tuples(st.just("skills"), index, st.lists(phrase, max_size=4)),
    st.tuples(st.just("rename"), index),
    st.tuples(st.just("delete_user"), index),
    st.tuples(st.just("follow"), index, index),
    st.tuples(st.just("unfollow"), index, index),
    st.tuples(st.just("post"), index),
    st.tuples(st.just("like"), index, index),
    st.tuples(st.just("unlike"), index, index),
    st.tuples(st.just("comment"), index, index),
    st.tuples(st.just("uncomment"), index),
    st.tuples(st.just("delete_post"), index),
)


class Writes:
    """Random product writes on a leader (and raw ones the product has no route for yet)."""

    def __init__(self, node: Node):
        self.node = node
        self.signups = 0
        self.deleted_users = False

    def pick(self, table: str, i: int) -> int | None:
        return self.node.pick(table, i)

    def username(self, user_id: int) -> str:
        return self.node.username(user_id)

    def apply(self, step: tuple) -> None:
        node, kind = self.node, step[0]
        if kind == "signup":
            self.signups += 1
            with node.db.write() as conn:
                node.users.insert(
                    conn,
                    username=f"u{self.signups}",
                    email=f"u{self.signups}@x.org",
                    name=step[1],
                    password_hash="x",
                    token_key="k",
                    now="t",
                )
            return
        if kind == "post":
            if (user := self.pick("users", step[1])) is not None:
                node.post(user, "hello")
            return
        if kind in ("uncomment", "delete_post"):
            table = "comments" if kind == "uncomment" else "posts"
            if (row := self.pick(table, step[1])) is None:
                return
            with node.db.write() as conn:
                if kind == "uncomment":
                    node.posts.delete_comment(conn, row)
                else:
                    node.posts.delete(conn, row)
            return
        user = self.pick("users", step[1])
        if user is None:
            return
        if kind in ("name", "headline"):
            node.user_service.update_profile(user, {kind: step[2][:100]})
        elif kind == "skills":
            node.user_service.update_profile(user, {"skills": [s[:50] for s in step[2]]})
        elif kind == "rename":  # no route changes a username; the index must follow anyway
            with node.db.write() as conn:
                conn.execute("UPDATE users SET username = username || '_r' WHERE id = ?", (user,))
        elif kind == "delete_user":  # account deletion is not a route yet: the cascade, as SQLite does it
            self.deleted_users = True
            with node.db.write() as conn:
                conn.execute("DELETE FROM users WHERE id = ?", (user,))
        elif kind in ("follow", "unfollow"):
            other = self.pick("users", step[2])
            method = node.user_service.follow if kind == "follow" else node.user_service.unfollow
            method(user, self.username(other))
        elif (post := self.pick("posts", step[2])) is not None:
            if kind == "like":
                node.post_service.like(user, post)
            elif kind == "unlike":
                node.post_service.unlike(user, post)
            else:
                node.post_service.comment(user, post, "nice")

    def queries(self) -> list[list[str]]:
        """Queries made of the words the members hold (whole, and cut to their first two letters)."""
        words: set[str] = set()
        for name, headline, skills, username in self.node.db.conn.execute("SELECT name, headline, skills, username FROM users"):
            words.update((name + " " + headline + " " + " ".join(json.loads(skills)) + " " + username).split())
        chosen = sorted(words)[:12]
        queries = [[w] for w in chosen] + [[w[:2]] for w in chosen[:6]] + [chosen[:2]] if chosen else [["x"]]
        # Not a word that folds into nothing (marks alone): the store answers no query for it.
        return [q for q in queries if any(search.fold(w).split() for w in q)] or [["x"]]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    members=st.lists(phrase, min_size=3, max_size=8),
    steps=st.lists(op, min_size=5, max_size=40),
    split=st.integers(min_value=0, max_value=40),
)
def test_leader_and_follower_hold_the_index_a_rebuild_makes(members, steps, split):
    with tempfile.TemporaryDirectory() as root:
        leader, follower = make_node(Path(root) / "leader"), make_node(Path(root) / "follower")
        try:
            writes = Writes(leader)
            for name in members:
                writes.apply(("signup", name))
            for n, step in enumerate(steps):
                with suppress(ProductError):
                    writes.apply(step)
                if n == split:  # the follower applies part of the log early, the rest at the end
                    follower.catch_up_from(leader)
            follower.catch_up_from(leader)
            queries = writes.queries()
            for node in (leader, follower):
                assert_index_is_rebuilt(node.db, queries)
                if not writes.deleted_users:
                    assert_counters_are_recounts(node.db)
            assert follower.db.checksum() == leader.db.checksum()
            for words in queries:
                terms = " ".join(words)
                assert follower.user_service.search(terms, limit=100, cursor=None) == leader.user_service.search(
                    terms, limit=100, cursor=None
                )
        finally:
            leader.db.shutdown()
            follower.db.shutdown()


def populated(nodes, name: str, seed: int = 7) -> Node:
    node = nodes(name)
    node.db.term = 1
    writes = Writes(node)
    rng = random.Random(seed)
    for n in range(30):
        writes.apply(("signup", f"{rng.choice(VOCABULARY)} {rng.choice(VOCABULARY)} {n}"))
    for n in range(60):
        writes.apply(("skills", n, [rng.choice(VOCABULARY), rng.choice(VOCABULARY)]))
        writes.apply(("follow", n, n + 1))
        writes.apply(("post", n))
    return node


def test_no_entry_carries_the_index_and_the_checksum_ignores_it(nodes):
    node = populated(nodes, "leader")
    tables = {change["table"] for entry in node.all_entries() for change in json.loads(entry.changes)}
    assert tables == {"users", "follows", "posts"}
    assert not [t for t in node.db.replicated_tables if t.startswith(search.TABLE)]
    before = node.db.checksum()
    node.db.conn.execute(f"INSERT INTO {search.TABLE}({search.TABLE}) VALUES ('delete-all')")
    assert node.db.checksum() == before, "the checksum compares replicated data only"


def test_a_stale_index_is_told_apart_by_the_rebuild_check(nodes):
    node = populated(nodes, "leader")
    node.db.conn.execute("DROP TRIGGER temp.tn_search_users_update")  # as if a write bypassed the node
    node.user_service.update_profile(1, {"name": "Somebody Else"})
    try:
        assert_index_is_rebuilt(node.db)
    except AssertionError:
        return
    raise AssertionError("a stale index passed the comparison with a rebuilt one")


def install_snapshot_of(source: Node, target: Node, scratch: Path) -> None:
    info = take_snapshot(source.db.path, scratch / "snap")
    options = {"compression": info.compression, "expected_sha256": info.sha256}
    install(
        target.db, prepare_snapshot(target.db.data_dir, scratch / "snap", max_schema_version=target.db.schema_version, **options)
    )


def test_a_snapshot_brings_an_index_that_matches_its_rows(nodes, tmp_path):
    leader = populated(nodes, "leader")
    other = populated(nodes, "other", seed=99)  # different members: its index must not survive
    install_snapshot_of(leader, other, tmp_path)
    queries = Writes(leader).queries()
    assert_index_is_rebuilt(other.db, queries)
    for words in queries:
        terms = " ".join(words)
        assert other.user_service.search(terms, limit=100, cursor=None) == leader.user_service.search(
            terms, limit=100, cursor=None
        )


def test_after_a_divergence_the_resynced_node_holds_the_leaders_index(nodes, tmp_path):
    old = populated(nodes, "old")
    new = nodes("new")
    new.catch_up_from(old)
    # The old leader goes on alone in term 1 (these writes will never reach the new leader)...
    Writes(old).apply(("name", 3, "Only On The Old Leader"))
    # ...while the new leader writes in term 2.
    new.db.term = 2
    Writes(new).apply(("name", 4, "Only On The New Leader"))
    archive = archive_divergent(old.db, new.db.last_lsn - 1, "test")
    assert archive.exists()
    install_snapshot_of(new, old, tmp_path)
    assert_index_is_rebuilt(old.db, [["only"], ["old"], ["new"]])
    assert [u["name"] for u in old.user_service.search("only", limit=10, cursor=None).items] == ["Only On The New Leader"]


def v1_database(path: Path) -> Database:
    """A database of the previous release: schema 1 (no counters, no index)."""
    return Database(path, MIGRATIONS[:1]).open()


def fill_v1(db: Database) -> None:
    db.term = 1
    with db.write() as conn:
        for n, name in enumerate(["José Núñez", "Anna Straße", "Σοφία Παππάς", "Élodie Ünal"], start=1):
            conn.execute(
                "INSERT INTO users(username, email, name, skills, password_hash, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, 'x', 't', 't')",
                (f"user{n}", f"user{n}@x.org", name, json.dumps(["Python", f"Skill {n}"])),
            )
        conn.executemany("INSERT INTO follows(follower_id, followee_id, created_at) VALUES (?, ?, 't')", [(1, 2), (3, 2), (2, 4)])
        conn.execute("INSERT INTO posts(author_id, content, created_at, updated_at) VALUES (2, 'hi', 't', 't')")
        conn.executemany("INSERT INTO likes(post_id, user_id, created_at) VALUES (1, ?, 't')", [(1,), (3,)])
        conn.execute("INSERT INTO comments(post_id, author_id, content, created_at) VALUES (1, 4, 'yo', 't')")


def test_migration_2_counts_and_indexes_what_an_older_database_holds(tmp_path):
    old = v1_database(tmp_path / "node")
    fill_v1(old)
    old.close()

    node = make_node(tmp_path / "node")
    assert node.db.get_meta("schema_version") == str(len(MIGRATIONS))
    assert_counters_are_recounts(node.db)
    assert node.user_service.profile("user2")["follower_count"] == 2
    assert_index_is_rebuilt(node.db, [["strasse"], ["σοφια"], ["jo"]])
    assert [u["username"] for u in node.user_service.search("STRASSE", limit=10, cursor=None).items] == ["user2"]
    node.db.shutdown()


def schema_3_fold(text: str) -> str:
    """The folding of schema 3, before accents stopped counting: NFKC and casefold, accents kept."""
    if text.isascii() and text.isprintable():
        return text.lower()
    text = search._UNSPLITTABLE.sub(" ", text)
    return unicodedata.normalize("NFC", unicodedata.normalize("NFKC", text).casefold())


def test_migration_4_rebuilds_an_index_that_schema_3_folded_with_its_accents(tmp_path, monkeypatch):
    names = {"m1": "Élodie Ünal", "m2": "José Núñez", "m3": "Anna Straße", "m4": "Søren Łukasz"}
    with monkeypatch.context() as schema_3:  # a node of the previous schema, with that schema's folding
        schema_3.setattr(search, "fold", schema_3_fold)
        search.document.cache_clear()
        old = make_node(tmp_path / "node", migrations=MIGRATIONS[:3])
        old.db.term = 1
        for username, name in names.items():
            user = old.signup(username)
            old.user_service.update_profile(user, {"name": name, "headline": f"{name} writes", "skills": [name]})
        terms = {term for term, *_ in index_instances(old.db)}
        entries = old.all_entries()
        old.db.shutdown()
    search.document.cache_clear()
    assert {"④élodie", "②josé␣núñez", "③søren␣łukasz"} <= terms and "④elodie" not in terms, "the old folding kept accents"

    # An upgraded follower applies that node's entries (schema 3) with the new folding.
    follower = make_node(tmp_path / "follower")
    follower.db.apply(entries)
    node = make_node(tmp_path / "node")
    try:
        assert {e.schema_version for e in entries} == {3}
        assert follower.db.checksum() == node.db.checksum()
        assert index_instances(follower.db) == index_instances(node.db)
        assert node.db.get_meta("schema_version") == str(len(MIGRATIONS))
        accented = set("éüñøłß")
        assert not [t for t, *_ in index_instances(node.db) if accented & set(t)], "the index holds no accent"
        assert not [t for (t,) in node.db.conn.execute(f"SELECT term FROM {search.TERMS}") if accented & set(t)]
        assert_index_is_rebuilt(node.db, [["elodie"], ["élodie"], ["jo"], ["jose", "nunez"], ["strasse"], ["soren"]])

        def found(query: str) -> list[str]:
            return [u["username"] for u in node.user_service.search(query, limit=10, cursor=None).items]

        assert found("elodie") == found("ÉLODIE") == ["m1"]
        assert found("jose") == found("jo") == ["m2"]
        assert found("strasse") == ["m3"] and found("lukasz soren") == ["m4"]
    finally:
        node.db.shutdown()
        follower.db.shutdown()


def test_a_follower_applies_an_older_leaders_entries_and_keeps_counters_and_index_right(tmp_path):
    old_leader = v1_database(tmp_path / "old")
    fill_v1(old_leader)
    with old_leader.write() as conn:  # the old release's unfollow and profile change: no counters, older columns
        conn.execute("DELETE FROM follows WHERE follower_id = 3 AND followee_id = 2")
        conn.execute("UPDATE users SET name = 'Ana Strasse' WHERE id = 2")
    entries = old_leader.entries_after(0)
    assert {e.schema_version for e in entries} == {1}

    follower = make_node(tmp_path / "new")
    follower.db.apply(entries)
    assert follower.db.last_lsn == old_leader.last_lsn
    assert_counters_are_recounts(follower.db)
    assert follower.user_service.profile("user2")["follower_count"] == 1
    assert follower.post_service.get(1, None)["like_count"] == 2
    assert_index_is_rebuilt(follower.db, [["ana"], ["straße"]])
    assert [u["username"] for u in follower.user_service.search("ana strasse", limit=10, cursor=None).items] == ["user2"]

    # Upgraded, it leads: its own entries carry the new schema's rows.
    follower.db.term = 2
    follower.user_service.follow(3, "user2")
    (entry,) = follower.db.entries_after(old_leader.last_lsn)
    assert entry.schema_version == len(MIGRATIONS)
    assert {c["data"].get("follower_count") for c in json.loads(entry.changes) if c["table"] == "users"} == {0, 2}
    old_leader.close()
    follower.db.shutdown()


def test_the_index_never_splits_a_token_python_made_whatever_the_character():
    conn = sqlite3.connect(":memory:")
    conn.execute(search.CREATE)
    conn.execute(f"CREATE VIRTUAL TABLE v USING fts5vocab({search.TABLE}, instance)")
    split = []
    for start in range(0, sys.maxunicode + 1, 8192):
        words = [search.fold(f"q{chr(cp)}z") for cp in range(start, min(start + 8192, sys.maxunicode + 1))]
        words = [w for w in words if len(w.split()) == 1]
        conn.execute(f"INSERT INTO {search.TABLE}(rowid, doc) VALUES (1, ?)", (" ".join(words),))
        terms = {row[0] for row in conn.execute("SELECT term FROM v")}
        split += [w for w in words if w not in terms]
        conn.execute(f"INSERT INTO {search.TABLE}({search.TABLE}) VALUES ('delete-all')")
    assert not split, [hex(ord(w[1])) for w in split[:20]]


def test_words_that_fold_into_nothing_or_into_two_find_what_they_should(nodes):
    node = populated(nodes, "leader")
    assert node.user_service.search("\ufffe", limit=5, cursor=None).items == []
    node.user_service.update_profile(2, {"headline": "\u0301 \u0308"})  # marks alone: accents, which fold away
    assert node.user_service.search("\u0301", limit=5, cursor=None).items == []
    node.user_service.update_profile(3, {"headline": "grade 0¨ (NFKC splits it)"})

    def found(query: str) -> list[int]:
        return [u["id"] for u in node.user_service.search(query, limit=5, cursor=None).items]

    # NFKC makes "¨" a space and a combining diaeresis, which goes as every accent does: "0¨" is the
    # word "0", found in member 1's name ("... 0") and in member 3's headline.
    assert found("0¨") == found("0") == [1, 3]
    assert found("grade 0¨") == [3]


@pytest.mark.parametrize(
    "variants",
    [
        ("elodie", "élodie", "Élodie", "ELODIE", "ÉLODIE", "Elodie"),
        ("jose", "José", "JOSÉ", "jose\u0301"),  # the last one decomposed (NFD)
        ("strasse", "Straße", "STRASSE", "STRAẞE"),
        ("σοφια", "Σοφία", "ΣΟΦΊΑ", "σοφία"),
        ("lodz", "Łódź", "ŁÓDŹ"),
        ("soren", "Søren", "SØREN", "Sǿren"),
        ("nguyen duc", "Nguyễn Đức", "NGUYỄN ĐỨC"),
        ("isik ilkay", "Işık İlkay", "IŞIK İLKAY"),
        ("aesir oeuvre", "Æsir Œuvre", "ǼSIR ŒUVRE"),
        ("fish", "ﬁsh"),
    ],
)
def test_case_and_accents_fold_away_for_the_index_and_the_query_alike(variants):
    assert {search.fold(v) for v in variants} == {variants[0]}
    # Every tier compares folded forms: each variant is the same document and the same query.
    assert len({search.document("u1", v, v, json.dumps([v])) for v in variants}) == 1
    assert {search.SearchQuery.of(v.split()) for v in variants} == {search.SearchQuery.of(variants[0].split())}


def test_letters_unicode_does_not_decompose_keep_their_identity_but_the_listed_few():
    assert search.fold("Þór Ðóra") == "þor ðora"
    assert search.fold("Ǥǥ Ħ Ŧ") == "gg h t"
    assert search.fold("ƀ ɨ") == "ƀ ɨ", "letters outside the list stay as they are"


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",))))
def test_folding_twice_is_folding_once(text):
    assert search.fold(search.fold(text)) == search.fold(text)
