"""The members' search index: how text is folded into tokens, the FTS5 table, and the tiered queries.

The index (``users_fts``, FTS5, contentless, ``detail=none``) is derived from ``users`` by every
node on its own file and never replicated: the store declares it derived (``store._db.Derived``),
so change capture skips it and its shadow tables, and ``Database.checksum()`` ignores them.

**Folding.** Search ignores case and accents: ``élodie``, ``ELODIE`` and ``elodie`` find both
``Élodie`` and ``Elodie``, ``jose`` finds ``José``, ``STRASSE`` finds ``Straße``, ``σοφια`` finds
``Σοφία``. One rule folds the index's tokens and the query's words alike (``fold``), so every
condition (a match, a prefix, and the tiers: exact username, exact name, username prefix, exact
skill) compares folded forms: NFKC (``ﬁ`` is ``fi``), ``str.casefold`` (``ß`` is ``ss``, ``ς`` is
``σ``), canonical decomposition (NFD), every nonspacing mark (category Mn) dropped, a few letters
replaced (below), and NFC again. Letters that Unicode does not decompose keep their identity,
except those European and Vietnamese orthographies write as a base letter with a stroke or as a
ligature of two: ``đ ǥ ħ ł ø ŧ`` are ``d g h l o t``, dotless ``ı`` is ``i``, ``æ œ`` are ``ae oe``
(as ``ß`` is ``ss``), so ``lodz`` finds ``Łódź`` and ``soren`` finds ``Søren``; ``þ``, ``ð`` and the
letters of other scripts stay as they are. Dropping Mn also drops the vowel signs and viramas
some scripts write as nonspacing marks (Devanagari ``ि`` stays, ``ु`` goes) and Japanese voicing
marks (``が`` is ``か``): such words match more widely. SQLite cannot fold this way in
SQL (its ``lower()`` is ASCII, FTS5's ``unicode61`` has no ``ß -> ss``), so Python computes every
token and the table's tokenizer only splits on the spaces between them (every character category
but separators and controls is part of a token). A word gives its folded self (``node.js``), that
word without leading and trailing punctuation (``(python),`` -> ``python``), and its runs of
letters and digits (``node``, ``js``).

**Tokens are marked** with what they are, by a first character: ``USERNAME`` the whole username,
``USERNAME_START`` each of its first 1-8 characters, ``NAME`` the whole name and ``SKILL`` each
whole skill (words joined by ``JOIN``), ``WORD`` the words of the username, the name and the
skills, ``HEADLINE`` the words of the headline. So "the username starts with jo" is the term
``⑥jo`` and "an exact skill" the term ``③python``: each condition reads only the tokens it is
about, and no condition needs positions or columns. (Every username is a term of its own: a
prefix shared by thousands of usernames, ``①james*``, would merge thousands of lists.)

**Matching.** A query word matches as a prefix of a token (``jo`` finds ``José``; ``py`` finds
``Python``; a word inside another, ``gres`` in ``PostgreSQL``, does not match). Every word must
match in the username, name, headline or skills. A prefix of 1-3 letters is read from FTS5's
prefix index; a longer one is turned into the few terms it stands for (from ``users_fts_terms``,
a second derived table the same triggers fill), which FTS5 reads lazily, where a ``prefix*``
query would first merge the whole list of every term it covers, for every query of a page.

**Ranking**, in tiers, each tier by member id (oldest account first), as the cursor ``(tier, id)``
pages: 0 a word is the username; 1 the whole query is the name; 2 the username starts with a word;
3 a word, or the whole query, is one of the skills; 4 every word is in the username, name or
skills; 5 the rest (a word only in the headline). Each tier is one FTS5 expression that excludes
the tiers before it, read in rowid order with ``rowid > ?`` and a LIMIT: a page costs what its
rows cost, not what the number of matches costs.

**Maintenance: TEMP triggers, not stored ones.** The triggers that keep the index right call
Python (the folding above), so they are created on the node's own writer connection at every
open (``Derived.triggers``), like the capture triggers, and stay there while it applies a
leader's entries. Stored triggers calling a Python function would make the file unwritable for
any connection without that function: the ``sqlite3`` shell, a backup tool, an older release
(``no such function``). Pure-SQL stored triggers cannot fold as ``casefold`` does. The cost of
this choice: a write made outside the node (the ``sqlite3`` shell) does not update the index;
such writes bypass replication too and are unsupported. Migration 2 creates and fills the index;
a change to the folding needs a migration that rebuilds it (``REBUILD``: ``clear`` and ``fill``), as
migration 4 did when accents stopped counting.
"""

from __future__ import annotations

import functools
import json
import re
import sys
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from talentnest.store._db import Derived

TABLE = "users_fts"
TERMS = "users_fts_terms"  # the terms prefixes are expanded to (a plain table: fts5vocab counts each term's list)
USERNAME, NAME, SKILL, WORD, HEADLINE, USERNAME_START = "①", "②", "③", "④", "⑤", "⑥"  # No: part of a token
USERNAME_STARTS = 8  # the starts of a username indexed as terms of their own
JOIN = "\u2423"  # OPEN BOX: joins the words of a whole name or skill into one token
TIERS = 6
INDEXED_PREFIX = 3  # letters of a prefix FTS5's prefix index holds (after the mark)
MAX_EXPANSION = 24  # terms a longer prefix may stand for before it is queried as prefix* instead
# Every category but separators (Z*) and controls (Cc) is part of a token: only our spaces split.
_TOKENIZER = "unicode61 remove_diacritics 0 categories 'L* N* M* S* P* Co Cf Cn Cs'"
_PREFIXES = " ".join(str(n + 1) for n in range(1, INDEXED_PREFIX + 1))
CREATE = f"CREATE VIRTUAL TABLE {TABLE} USING fts5(doc, content='', detail=none, prefix='{_PREFIXES}', tokenize=\"{_TOKENIZER}\")"
# Terms stay when the last member holding them goes: a stale term only adds a branch that finds
# nothing to an expansion, and a rebuild drops it.
CREATE_TERMS = f"CREATE TABLE {TERMS} (term TEXT PRIMARY KEY) WITHOUT ROWID"
_ARGS = "{p}.username, {p}.name, {p}.headline, {p}.skills"
_DOC = f"tn_search_doc({_ARGS})"
# Not INSERT OR IGNORE: in a trigger, the conflict policy of the statement that fired it wins.
_TERMS_OF = (
    f"INSERT INTO {TERMS}(term) SELECT j.value FROM json_each(tn_search_terms({_ARGS})) j "
    f"WHERE NOT EXISTS (SELECT 1 FROM {TERMS} t WHERE t.term = j.value)"
)
FILL = (
    f"INSERT INTO {TABLE}(rowid, doc) SELECT u.id, {_DOC.format(p='u')} FROM users u",
    f"INSERT OR IGNORE INTO {TERMS}(term) SELECT j.value FROM users u, json_each(tn_search_terms({_ARGS.format(p='u')})) j",
)
_DELETE_OLD = f"INSERT INTO {TABLE}({TABLE}, rowid, doc) VALUES ('delete', OLD.id, {_DOC.format(p='OLD')});"
_INSERT_NEW = f"INSERT INTO {TABLE}(rowid, doc) VALUES (NEW.id, {_DOC.format(p='NEW')}); {_TERMS_OF.format(p='NEW')};"
_CHANGED = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in ("id", "username", "name", "headline", "skills"))
TRIGGERS = (
    f"CREATE TEMP TRIGGER tn_search_users_insert AFTER INSERT ON main.users BEGIN {_INSERT_NEW} END",
    # A follower's upsert sets every column: only a change of an indexed one reaches the index.
    f"CREATE TEMP TRIGGER tn_search_users_update AFTER UPDATE OF id, username, name, headline, skills ON main.users "
    f"WHEN {_CHANGED} BEGIN {_DELETE_OLD} {_INSERT_NEW} END",
    f"CREATE TEMP TRIGGER tn_search_users_delete AFTER DELETE ON main.users BEGIN {_DELETE_OLD} END",
)


# --- folding -----------------------------------------------------------------------------------

# What FTS5's tokenizer would split a token at, although Python does not: controls and lone
# surrogates (the input rules refuse them; old rows may hold them), and three characters its
# Unicode 6.1 tables call separators (a test tries every code point).
_UNSPLITTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u180e\ufffe\uffff]")


# Letters with no decomposition that fold to the letters they are written with (see "Folding").
_LETTERS = {"đ": "d", "ǥ": "g", "ħ": "h", "ł": "l", "ø": "o", "ŧ": "t", "ı": "i", "æ": "ae", "œ": "oe"}


@functools.cache
def _unaccented() -> dict[int, str | None]:
    """The ``str.translate`` table of a decomposed, casefolded text: nonspacing marks go, ``_LETTERS``
    are replaced (built at the first non-ASCII fold: it reads the category of every code point)."""
    table: dict[int, str | None] = {cp: None for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp)) == "Mn"}
    table.update({ord(letter): base for letter, base in _LETTERS.items()})
    return table


def fold(text: str) -> str:
    """The case-, accent- and compatibility-folded form of ``text`` that the index and the queries share."""
    if text.isascii() and text.isprintable():  # most text: nothing to clean or normalise
        return text.lower()
    text = _UNSPLITTABLE.sub(" ", text)
    decomposed = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", text).casefold())
    return unicodedata.normalize("NFC", decomposed.translate(_unaccented()))


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


def search_token(folded: str) -> str:
    """What a folded, space-free word is looked up as: without leading and trailing punctuation
    (the word itself when it is nothing but punctuation, ``--``)."""
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


@functools.lru_cache(maxsize=256)  # a trigger asks for a row's document, then for its terms
def document(username: str | None, name: str | None, headline: str | None, skills_json: str | None) -> str:
    """The marked tokens of one member, space-separated: what the index holds for them."""
    user = fold(username or "").strip()
    name_words = fold(name or "").split()
    skills = [fold(skill).split() for skill in _skills(skills_json)]
    tokens = [USERNAME + user, *(USERNAME_START + user[:n] for n in range(1, min(len(user), USERNAME_STARTS) + 1))]
    if name_words:
        tokens.append(NAME + JOIN.join(name_words))
    tokens += [SKILL + whole for whole in dict.fromkeys(JOIN.join(words) for words in skills if words)]
    # The username's runs only: its whole self is the USERNAME token.
    words = (
        _runs(user)
        + [t for w in name_words for t in word_tokens(w)]
        + [t for skill in skills for w in skill for t in word_tokens(w)]
    )
    tokens += [WORD + w for w in dict.fromkeys(words)]
    tokens += [HEADLINE + w for w in dict.fromkeys(_text_tokens(headline or ""))]
    return " ".join(tokens)


_EXPANDED = (USERNAME, WORD, HEADLINE)


def expandable_terms(username: str | None, name: str | None, headline: str | None, skills_json: str | None) -> str:
    """The JSON list of the member's terms a prefix may stand for (the marks a query expands)."""
    return json.dumps([t for t in document(username, name, headline, skills_json).split() if t[0] in _EXPANDED])


INDEX = Derived(
    name=TABLE,
    functions={"tn_search_doc": (4, document), "tn_search_terms": (4, expandable_terms)},
    triggers=TRIGGERS,
    fill=FILL[:1],
    clear=(f"INSERT INTO {TABLE}({TABLE}) VALUES ('delete-all')",),
)
VOCABULARY = Derived(name=TERMS, fill=FILL[1:], clear=(f"DELETE FROM {TERMS}",))
# Both tables rebuilt from the rows, as one migration's statements (after a change to the folding).
REBUILD = ";\n".join((*INDEX.clear, *VOCABULARY.clear, *INDEX.fill, *VOCABULARY.fill))


# --- queries -----------------------------------------------------------------------------------


def _quote(token: str) -> str:
    """An FTS5 string: every character literal."""
    return '"' + token.replace('"', '""') + '"'


def _any(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"


def _all(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"


# A term no token can be (a mark alone): what "matches nothing" is in an FTS5 expression.
NOTHING = _quote(WORD)
Expand = Callable[[str], "list[str] | None"]


def terms_in(conn, prefix: str, limit: int = MAX_EXPANSION) -> list[str] | None:
    """The index's terms that start with ``prefix`` (at most ``limit``), or None when there are more."""
    rows = conn.execute(
        f"SELECT term FROM {TERMS} WHERE term >= ? AND term < ? LIMIT ?", (prefix, prefix + chr(sys.maxunicode), limit + 1)
    ).fetchall()
    return None if len(rows) > limit else [row[0] for row in rows]


@dataclass(frozen=True)
class SearchQuery:
    """The FTS5 expression of each ranking tier for one query (see the module docstring)."""

    tiers: tuple[str, ...]

    @classmethod
    def of(cls, words: Sequence[str], expand: Expand | None = None) -> SearchQuery:
        """``expand(prefix)`` lists the terms a prefix stands for (None: too many); without it every
        prefix is queried as ``prefix*``."""
        # Folding may split a word (NFKC makes "¨" a space and a combining mark), as in the index.
        raw = [part for word in words for part in fold(word).split()]
        tokens = list(dict.fromkeys(search_token(part) for part in raw))
        if not tokens:
            raise ValueError("a search needs at least one word")
        whole = JOIN.join(raw)

        @functools.cache  # each prefix is looked up once per query, whatever the tiers that use it
        def starting(mark: str, token: str) -> str:
            if mark == USERNAME and len(token) <= USERNAME_STARTS:
                return _quote(USERNAME_START + token)
            prefix = mark + token
            found = expand(prefix) if expand is not None and len(token) > INDEXED_PREFIX else None
            if found is None:
                return f"{_quote(prefix)}*"
            return _any([_quote(t) for t in found]) if found else NOTHING

        exact_username = _any([_quote(USERNAME + t) for t in tokens])
        exact_name = _quote(NAME + whole)
        username_prefix = _any([starting(USERNAME, t) for t in tokens])
        exact_skill = _any([_quote(SKILL + s) for s in dict.fromkeys([*raw, whole])])
        named = _all([starting(WORD, t) for t in tokens])
        anywhere = _all([_any([starting(WORD, t), starting(HEADLINE, t), starting(USERNAME, t)]) for t in tokens])
        if len(tokens) == 1:
            # With one word, each of the first conditions already means that the word matches.
            found = (exact_username, exact_name, username_prefix, exact_skill)
        else:
            found = tuple(f"({anywhere} AND {c})" for c in (exact_username, exact_name, username_prefix, exact_skill))
        return cls(
            (
                found[0],
                f"{found[1]} NOT {exact_username}",
                f"{found[2]} NOT ({exact_username} OR {exact_name})",
                f"{found[3]} NOT ({exact_name} OR {username_prefix})",
                f"{named} NOT ({exact_name} OR {username_prefix} OR {exact_skill})",
                f"{anywhere} NOT ({exact_name} OR {username_prefix} OR {exact_skill} OR {named})",
            )
        )
