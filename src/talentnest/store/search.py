"""The members' search index: how text is folded into tokens, the FTS5 table, and the tiered queries.

The index (``users_fts``, FTS5, contentless) is derived from ``users`` by every node on its own
file and never replicated: the store declares it a derived table (``store._db.Derived``), so
change capture skips it and its shadow tables and ``Database.checksum()`` ignores them.

**Folding.** Search is case-insensitive as ``str.casefold`` is (``STRASSE`` finds ``Straße``,
``ΣΟΦΊΑ`` finds ``Σοφία``) and keeps accents (``élodie`` finds ``Élodie`` but not ``Elodie``),
as the LIKE search before it did; text is also NFKC-normalised (``ﬁ`` is ``fi``). SQLite cannot
fold this way in SQL (its ``lower()`` is ASCII, FTS5's ``unicode61`` has no ``ß -> ss``), so
Python computes every token: ``doc_*`` below turn a column into space-separated tokens, and the
table's tokenizer splits on spaces only (every character category but separators and controls
is a token character, so it never re-splits a token we made). A word gives its folded self
(``node.js``), that word without leading and trailing punctuation (``(python),`` -> ``python``)
and its letter-and-digit runs (``node``, ``js``; ``kotlin_dev`` -> ``kotlin``, ``dev``). Two
columns open with one token for the whole value, words joined by ``JOIN`` (U+2423), so that an
exact name is the phrase ``^ "ana␣python"`` at the column's first position; ``skill_set`` holds
only such whole-skill tokens.

**Matching.** A query word matches as a prefix of a token (``jo`` finds ``José``; ``py`` finds
``Python``; a word inside another, ``gres`` in ``PostgreSQL``, no longer matches). Every word of
the query must match in the username, name, headline or skills.

**Ranking**, in tiers, each tier by member id (oldest account first), as the cursor ``(tier, id)``
pages: 0 a word is the username; 1 the whole query is the name; 2 the username starts with a word;
3 a word, or the whole query, is one of the skills; 4 every word is found in the username, name
or skills; 5 the rest (some word only in the headline). Each tier is one FTS5 expression that
excludes the tiers before it, read in rowid order with ``rowid > ?`` and a LIMIT: a page costs
what its rows cost, not what the number of matches costs.

**Maintenance: TEMP triggers, not stored ones.** The triggers that keep the index right call
Python (the folding above), so they are created on the node's own writer connection at every
open (``Derived.triggers``), like the capture triggers, and stay there while it applies a
leader's entries. Stored triggers calling a Python function would make the file unwritable for
any connection without that function: the ``sqlite3`` shell, a backup tool, an older release
(``no such function``). Pure-SQL stored triggers cannot fold as ``casefold`` does. The cost of
this choice: a write made outside the node (the ``sqlite3`` shell) does not update the index;
such writes bypass replication too and are unsupported. Migration 2 creates and fills the index;
a change to the folding needs a migration that rebuilds it (``FILL``).
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from talentnest.store._db import Derived

TABLE = "users_fts"
JOIN = "\u2423"  # OPEN BOX: joins the words of a whole name or skill into one token
TIERS = 6
# Every category but separators (Z*) and controls (Cc) is part of a token: only our spaces split.
_TOKENIZER = "unicode61 remove_diacritics 0 categories 'L* N* M* S* P* Co Cf Cn Cs'"
CREATE = (
    f"CREATE VIRTUAL TABLE {TABLE} USING fts5(username, name, headline, skills, skill_set, "
    f"content='', prefix='3', tokenize=\"{_TOKENIZER}\")"
)
_COLUMNS = "username, name, headline, skills, skill_set"
_DOC = "tn_search_username({p}.username), tn_search_name({p}.name), tn_search_text({p}.headline), tn_search_skills({p}.skills), tn_search_skill_set({p}.skills)"  # noqa: E501
FILL = f"INSERT INTO {TABLE}(rowid, {_COLUMNS}) SELECT u.id, {_DOC.format(p='u')} FROM users u"
_DELETE_OLD = f"INSERT INTO {TABLE}({TABLE}, rowid, {_COLUMNS}) VALUES ('delete', OLD.id, {_DOC.format(p='OLD')});"
_INSERT_NEW = f"INSERT INTO {TABLE}(rowid, {_COLUMNS}) VALUES (NEW.id, {_DOC.format(p='NEW')});"
_CHANGED = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in ("id", "username", "name", "headline", "skills"))
TRIGGERS = (
    f"CREATE TEMP TRIGGER tn_search_users_insert AFTER INSERT ON main.users BEGIN {_INSERT_NEW} END",
    # A follower's upsert sets every column: only a change of an indexed one reaches the index.
    f"CREATE TEMP TRIGGER tn_search_users_update AFTER UPDATE OF id, username, name, headline, skills ON main.users "
    f"WHEN {_CHANGED} BEGIN {_DELETE_OLD} {_INSERT_NEW} END",
    f"CREATE TEMP TRIGGER tn_search_users_delete AFTER DELETE ON main.users BEGIN {_DELETE_OLD} END",
)


# --- folding -----------------------------------------------------------------------------------


def fold(text: str) -> str:
    """The case- and compatibility-folded form of ``text`` that the index and the queries share."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFKC", text).casefold())


def _is_punctuation(ch: str) -> bool:
    return unicodedata.category(ch)[0] == "P"


def _runs(word: str) -> list[str]:
    """The runs of letters, marks and digits in ``word`` (``node.js`` -> ``node``, ``js``)."""
    runs, current = [], []
    for ch in word:
        if unicodedata.category(ch)[0] in "LMN":
            current.append(ch)
        elif current:
            runs.append("".join(current))
            current = []
    if current:
        runs.append("".join(current))
    return runs


def search_token(word: str) -> str:
    """What a query word is looked up as: folded, without leading and trailing punctuation
    (the word itself when it is nothing but punctuation, ``--``)."""
    folded = fold(word)
    return folded.strip("".join({ch for ch in folded if _is_punctuation(ch)})) or folded


def word_tokens(word: str) -> list[str]:
    """The tokens of one folded, space-free word, itself first."""
    if word.isalnum():  # the common case: nothing to strip or split
        return [word]
    tokens = [word]
    stripped = search_token(word)
    if stripped not in tokens:
        tokens.append(stripped)
    for run in _runs(word):
        if run not in tokens:
            tokens.append(run)
    return tokens


def _text_tokens(text: str) -> list[str]:
    return [token for word in fold(text).split() for token in word_tokens(word)]


def _whole(text: str) -> str | None:
    """One token for the whole value (its folded words joined by ``JOIN``), or None if empty."""
    words = fold(text).split()
    return JOIN.join(words) if words else None


def _skills(skills_json: str | None) -> list[str]:
    try:
        value = json.loads(skills_json or "[]")
    except ValueError:
        return []
    return [s for s in value if isinstance(s, str)] if isinstance(value, list) else []


def doc_username(username: str | None) -> str:
    return " ".join(_text_tokens(username or ""))


def doc_name(name: str | None) -> str:
    """The whole name first (so ``^ "whole"`` is an exact name), then its words' tokens."""
    whole = _whole(name or "")
    if whole is None:
        return ""
    tokens = _text_tokens(name or "")
    return " ".join(tokens if tokens[0] == whole else [whole, *tokens])


def doc_text(text: str | None) -> str:
    return " ".join(_text_tokens(text or ""))


def doc_skills(skills_json: str | None) -> str:
    return " ".join(token for skill in _skills(skills_json) for token in _text_tokens(skill))


def doc_skill_set(skills_json: str | None) -> str:
    return " ".join(w for w in (_whole(skill) for skill in _skills(skills_json)) if w)


INDEX = Derived(
    name=TABLE,
    functions={
        "tn_search_username": (1, doc_username),
        "tn_search_name": (1, doc_name),
        "tn_search_text": (1, doc_text),
        "tn_search_skills": (1, doc_skills),
        "tn_search_skill_set": (1, doc_skill_set),
    },
    triggers=TRIGGERS,
    fill=FILL,
    clear=f"INSERT INTO {TABLE}({TABLE}) VALUES ('delete-all')",
)


# --- queries -----------------------------------------------------------------------------------


def _quote(token: str) -> str:
    """An FTS5 string: every character literal, the tokenizer applied to it."""
    return '"' + token.replace('"', '""') + '"'


_MATCHED = "{username name headline skills}"
_NOT_HEADLINE = "{username name skills}"


@dataclass(frozen=True)
class SearchQuery:
    """The FTS5 expression of each ranking tier for one query (see the module docstring)."""

    tiers: tuple[str, ...]

    @classmethod
    def of(cls, words: Sequence[str]) -> SearchQuery:
        if not words:
            raise ValueError("a search needs at least one word")
        tokens = [search_token(w) for w in words]
        raw = [fold(w) for w in words]
        prefixes = [f"{_quote(t)}*" for t in tokens]
        everywhere = " AND ".join(f"({_MATCHED} : {p})" for p in prefixes)
        not_headline = " AND ".join(f"({_NOT_HEADLINE} : {p})" for p in prefixes)
        exact_username = " OR ".join(f"^ {_quote(t)}" for t in tokens)
        username_prefix = " OR ".join(f"^ {_quote(t)}*" for t in tokens)
        whole = JOIN.join(w for r in raw for w in r.split())
        skills = dict.fromkeys([*raw, whole])  # a word, or the whole query, is a skill
        c0 = f"(username : ({exact_username}))"
        c1 = f"(name : ^ {_quote(whole)})"
        c2 = f"(username : ({username_prefix}))"
        c3 = f"(skill_set : ({' OR '.join(_quote(s) for s in skills)}))"
        c4 = f"({not_headline})"
        full = f"({everywhere})"
        return cls(
            (
                f"{full} AND {c0}",
                f"({full} AND {c1}) NOT {c0}",
                f"({full} AND {c2}) NOT ({c0} OR {c1})",
                f"({full} AND {c3}) NOT ({c1} OR {c2})",
                f"{c4} NOT ({c1} OR {c2} OR {c3})",
                f"{full} NOT ({c1} OR {c2} OR {c3} OR {c4})",
            )
        )
