"""Profiles, search, follows and follower lists, through the real ASGI app."""

from __future__ import annotations

import json

import pytest

from tests.api._helpers import Api, assert_error, raw_json

PUBLIC_USER_KEYS = {
    "id", "name", "username", "headline", "bio", "location", "skills", "follower_count", "following_count", "created_at",
}  # fmt: skip


# --- profiles ----------------------------------------------------------------------------------


def test_a_profile_shows_the_public_fields_only(api: Api, make_member):
    member = make_member("alice")

    profile = api.ok("GET", "/api/users/alice")

    assert set(profile) == PUBLIC_USER_KEYS
    assert profile["id"] == member.id and profile["username"] == "alice"
    assert "email" not in profile and "password_hash" not in json.dumps(profile)


def test_a_profile_is_found_whatever_the_case_of_its_username(api: Api, make_member):
    member = make_member("alice")

    assert api.ok("GET", "/api/users/ALICE")["id"] == member.id


@pytest.mark.parametrize("username", ["nobody", "a" * 64, "with space", "ñandú"])
def test_an_unknown_profile_is_404(api: Api, make_member, username: str):
    make_member("alice")

    api.refused("GET", f"/api/users/{username}", 404, "user_not_found")


def test_patching_me_changes_the_given_fields_and_keeps_the_others(api: Api, make_member):
    member = make_member("alice", name="Alice")

    me = api.ok(
        "PATCH",
        "/api/users/me",
        json={"headline": "Data engineer", "bio": "Line one\nLine two\twith a tab", "location": "Bogotá", "skills": ["Python"]},
        headers=member.headers,
    )

    assert me["name"] == "Alice"
    assert me["headline"] == "Data engineer"
    assert me["bio"] == "Line one\nLine two\twith a tab"
    assert me["location"] == "Bogotá"
    assert me["skills"] == ["Python"]
    assert me["updated_at"] >= me["created_at"]
    assert api.ok("GET", "/api/users/alice")["headline"] == "Data engineer"

    again = api.ok("PATCH", "/api/users/me", json={"name": "Alice B."}, headers=member.headers)
    assert again["name"] == "Alice B." and again["headline"] == "Data engineer" and again["skills"] == ["Python"]


def test_skills_are_trimmed_and_kept_once_whatever_their_case(api: Api, make_member):
    member = make_member("alice")

    me = api.ok("PATCH", "/api/users/me", json={"skills": [" Python ", "python", "SQL", "PYTHON", "Go"]}, headers=member.headers)

    assert me["skills"] == ["Python", "SQL", "Go"]


def test_skills_can_be_emptied(api: Api, make_member):
    member = make_member("alice")
    api.ok("PATCH", "/api/users/me", json={"skills": ["Python"]}, headers=member.headers)

    assert api.ok("PATCH", "/api/users/me", json={"skills": []}, headers=member.headers)["skills"] == []


def test_an_empty_or_null_patch_changes_nothing(api: Api, make_member):
    member = make_member("alice")

    with api.unchanged():
        assert api.ok("PATCH", "/api/users/me", json={}, headers=member.headers)["username"] == "alice"
        assert api.ok("PATCH", "/api/users/me", json={"headline": None}, headers=member.headers)["headline"] == ""


INVALID_PATCHES = {
    "name empty": {"name": ""},
    "name only spaces": {"name": "  "},
    "name too long": {"name": "n" * 101},
    "headline too long": {"headline": "h" * 161},
    "headline with a newline": {"headline": "two\nlines"},
    "headline with a paragraph separator": {"headline": "two\u2029paragraphs"},
    "bio too long": {"bio": "b" * 2001},
    "bio with NUL": {"bio": "nul\x00"},
    "bio with an escape": {"bio": "\x1b[31mred"},
    "location too long": {"location": "l" * 101},
    "skills not a list": {"skills": "Python"},
    "a skill not a string": {"skills": [1]},
    "an empty skill": {"skills": ["Python", " "]},
    "a skill too long": {"skills": ["s" * 51]},
    "a skill with a newline": {"skills": ["a\nb"]},
    "too many skills": {"skills": [f"skill{i}" for i in range(51)]},
    "the username": {"username": "mallory"},
    "the email": {"email": "mallory@example.com"},
    "the id": {"id": 2},
    "the password": {"password": "new-password"},
    "a list body": ["headline"],
}


@pytest.mark.parametrize("body", INVALID_PATCHES.values(), ids=INVALID_PATCHES.keys())
def test_patching_me_with_invalid_fields_is_422_and_changes_nothing(api: Api, make_member, body):
    member = make_member("alice")

    api.refused("PATCH", "/api/users/me", 422, json=body, headers=member.headers)


@pytest.mark.parametrize("field", ["name", "headline", "bio", "location"])
def test_patching_me_with_a_lone_surrogate_is_422(api: Api, make_member, field: str):
    member = make_member("alice")

    api.refused(
        "PATCH", "/api/users/me", 422, headers={**member.headers, **raw_json("")["headers"]}, content=f'{{"{field}": "a\\ud83d"}}'
    )


def test_patching_me_without_a_token_is_401(api: Api, make_member):
    make_member("alice")

    api.refused("PATCH", "/api/users/me", 401, json={"headline": "x"})


# --- search ------------------------------------------------------------------------------------


def _usernames(page: dict) -> list[str]:
    return [user["username"] for user in page["items"]]


def test_the_seeds_search_finds_the_seeds_user(api: Api):
    api.signup(name="Test User", username="testuser", email="test@example.com", password="password123")

    page = api.ok("GET", "/api/users/search?query=testuser")

    assert _usernames(page) == ["testuser"]
    assert page["next_cursor"] is None
    assert set(page["items"][0]) == PUBLIC_USER_KEYS


def test_search_ranks_the_exact_username_first_even_against_richer_matches(api: Api, make_member):
    # Each of these matches "rust" in more places than the user whose username is exactly "rust".
    richer = [
        make_member("rustacean", name="Rust"),
        make_member("rust_fan", name="Rust Rust"),
        make_member("rusty", name="Rust"),
    ]
    for member in richer:
        api.ok("PATCH", "/api/users/me", json={"headline": "rust rust", "skills": ["Rust"]}, headers=member.headers)
    make_member("rust", name="Someone")

    assert _usernames(api.ok("GET", "/api/users/search", params={"query": "rust"}))[0] == "rust"
    assert _usernames(api.ok("GET", "/api/users/search", params={"query": "RUST"}))[0] == "rust"


@pytest.mark.parametrize(
    "word, headline, skill, name, queries",
    [
        ("kotlin", "I like kotlin", "Kotlin", "Kotlin", ["kotlin"]),
        # Accents do not count in any tier: an exact name or skill written with them ranks as one.
        ("pokemon", "I like Pokémon", "POKEMON", "Pokémon", ["pokemon", "pokémon", "POKÉMON", "Pokemon"]),
    ],
)
def test_search_ranks_exact_username_then_exact_name_then_username_prefix_then_skill_then_headline(
    api: Api, make_member, word: str, headline: str, skill: str, name: str, queries: list
):
    by_headline = make_member("zed1", name="Zed One")
    api.ok("PATCH", "/api/users/me", json={"headline": headline}, headers=by_headline.headers)
    by_skill = make_member("zed2", name="Zed Two")
    api.ok("PATCH", "/api/users/me", json={"skills": [skill]}, headers=by_skill.headers)
    make_member("zed3", name=name)
    make_member(f"{word}_dev", name="Zed Four")
    make_member(word, name="Zed Five")

    for query in queries:
        assert _usernames(api.ok("GET", "/api/users/search", params={"query": query})) == [
            word,
            "zed3",
            f"{word}_dev",
            "zed2",
            "zed1",
        ], query


def test_search_looks_in_username_name_headline_and_skills_but_never_email(api: Api, make_member):
    by_username = make_member("findme_user", name="A")
    by_name = make_member("bob", name="Findme Name")
    by_headline = make_member("carol", name="C")
    api.ok("PATCH", "/api/users/me", json={"headline": "ask me about FINDME"}, headers=by_headline.headers)
    by_skill = make_member("dave", name="D")
    api.ok("PATCH", "/api/users/me", json={"skills": ["FindMe"]}, headers=by_skill.headers)
    make_member("erin", name="E", email="findme@example.com")

    found = set(_usernames(api.ok("GET", "/api/users/search", params={"query": "findme"})))

    assert found == {m.username for m in (by_username, by_name, by_headline, by_skill)}


@pytest.mark.parametrize(
    "query, expected",
    [
        ("élodie", {"alpha", "delta"}),
        ("ÉLODIE", {"alpha", "delta"}),
        ("elodie", {"alpha", "delta"}),
        ("ELODIE", {"alpha", "delta"}),
        ("ünal", {"alpha", "delta"}),
        ("ÜNAL", {"alpha", "delta"}),
        ("unal", {"alpha", "delta"}),
        ("straße", {"beta"}),
        ("STRASSE", {"beta"}),
        ("strasse", {"beta"}),
        ("ΣΟΦΊΑ", {"gamma"}),
        ("σοφία", {"gamma"}),
        ("σοφια", {"gamma"}),
        ("jose", {"epsilon"}),
        ("JOSÉ", {"epsilon"}),
        ("jo", {"epsilon"}),
        ("lodz", {"zeta"}),
        ("ŁÓDŹ", {"zeta"}),
        ("soren", {"eta"}),
        ("oeuvre", {"eta"}),
    ],
)
def test_search_ignores_case_and_accents_also_outside_ascii(api: Api, make_member, query: str, expected: set):
    # Usernames none of the queries starts: each member is found by the name or the headline.
    make_member("alpha", name="Élodie Ünal")
    make_member("beta", name="Anna Straße")
    make_member("gamma", name="Σοφία")
    make_member("delta", name="Elodie Unal")
    make_member("epsilon", name="José Núñez")
    make_member("zeta", name="Ania Łódź")
    soren = make_member("eta", name="Søren")
    api.ok("PATCH", "/api/users/me", json={"headline": "Œuvre complète"}, headers=soren.headers)

    assert set(_usernames(api.ok("GET", "/api/users/search", params={"query": query}))) == expected


def test_a_name_or_a_skill_with_accents_ranks_in_its_tier_for_a_query_without_them(api: Api, make_member):
    make_member("member4", name="Núñez José")  # every word in the name: tier 4
    by_skill = make_member("member3", name="M")  # the whole query is a skill: tier 3
    api.ok("PATCH", "/api/users/me", json={"skills": ["Jose Nunez"]}, headers=by_skill.headers)
    make_member("josefan", name="José Núñez Fan")  # the username starts with a word: tier 2
    make_member("member2", name="José Núñez")  # the exact name: tier 1
    ranked = ["member2", "josefan", "member3", "member4"]

    for query in ("jose nunez", "JOSÉ NÚÑEZ", "José Nuñez"):
        assert _usernames(api.ok("GET", "/api/users/search", params={"query": query})) == ranked, query


def test_search_needs_every_word_to_match(api: Api, make_member):
    both = make_member("ana", name="Ana Python")
    make_member("ana_go", name="Ana Go")
    make_member("pyt", name="Python Person")

    assert _usernames(api.ok("GET", "/api/users/search", params={"query": "ana python"})) == [both.username]


@pytest.mark.parametrize("query", ["%", "_", "\\", "a_c", "a%c"])
def test_search_treats_sql_wildcards_literally(api: Api, make_member, query: str):
    make_member("abc", name="Abc")
    make_member("axc", name="Axc")

    assert _usernames(api.ok("GET", "/api/users/search", params={"query": query})) == []


def test_search_finds_a_literal_underscore(api: Api, make_member):
    make_member("a_c", name="Underscore")
    make_member("abc", name="Letters")

    assert _usernames(api.ok("GET", "/api/users/search", params={"query": "a_c"})) == ["a_c"]


def test_search_shows_no_email(api: Api, make_member):
    make_member("alice")

    assert "@" not in api.client.get("/api/users/search", params={"query": "alice"}).text


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"query": ""},
        {"query": "   "},
        {"query": "q" * 101},
        {"query": " ".join(f"w{i}" for i in range(9))},
        {"query": "a\x00b"},
    ],
    ids=["missing", "empty", "blank", "too long", "too many words", "NUL"],
)
def test_an_invalid_search_is_422(api: Api, make_member, params: dict):
    make_member("alice")

    api.refused("GET", "/api/users/search", 422, params=params)


def test_search_pages_are_disjoint_and_in_rank_order(api: Api, make_member):
    for i in range(7):
        make_member(f"pager{i}", name="Pager" if i % 2 else "Someone")
    everything = _usernames(api.ok("GET", "/api/users/search", params={"query": "pager", "limit": 100}))

    paged = [u["username"] for u in api.all_pages("/api/users/search", limit=3, params={"query": "pager"})]

    assert len(everything) == 7
    assert paged == everything


# --- follows -----------------------------------------------------------------------------------


def test_follow_answers_the_followed_user_and_counts_both_sides(api: Api, make_member):
    alice, bob = make_member("alice"), make_member("bob")

    followed = api.ok("POST", "/api/users/bob/follow", headers=alice.headers)

    assert followed["username"] == "bob" and followed["follower_count"] == 1 and followed["following_count"] == 0
    assert set(followed) == PUBLIC_USER_KEYS
    assert api.ok("GET", "/api/auth/me", headers=alice.headers)["following_count"] == 1
    assert api.ok("GET", "/api/users/alice")["following_count"] == 1
    assert _usernames(api.ok("GET", "/api/users/bob/followers")) == ["alice"]
    assert _usernames(api.ok("GET", "/api/users/alice/following")) == ["bob"]
    assert api.ok("GET", "/api/users/bob/following")["items"] == []
    assert bob.id == followed["id"]


def test_following_twice_changes_nothing(api: Api, make_member):
    alice, _ = make_member("alice"), make_member("bob")
    api.ok("POST", "/api/users/bob/follow", headers=alice.headers)

    with api.unchanged():
        again = api.ok("POST", "/api/users/BOB/follow", headers=alice.headers)

    assert again["follower_count"] == 1


def test_unfollow_undoes_a_follow_and_twice_changes_nothing(api: Api, make_member):
    alice, _ = make_member("alice"), make_member("bob")
    api.ok("POST", "/api/users/bob/follow", headers=alice.headers)

    assert api.ok("DELETE", "/api/users/bob/follow", headers=alice.headers)["follower_count"] == 0
    with api.unchanged():
        assert api.ok("DELETE", "/api/users/bob/follow", headers=alice.headers)["follower_count"] == 0
    assert api.ok("GET", "/api/users/alice/following")["items"] == []
    assert api.ok("GET", "/api/auth/me", headers=alice.headers)["following_count"] == 0


def test_following_yourself_is_422(api: Api, make_member):
    alice = make_member("alice")

    api.refused("POST", "/api/users/alice/follow", 422, "cannot_follow_self", headers=alice.headers)
    api.refused("POST", "/api/users/Alice/follow", 422, "cannot_follow_self", headers=alice.headers)


@pytest.mark.parametrize("method", ["POST", "DELETE"])
def test_following_an_unknown_user_is_404(api: Api, make_member, method: str):
    alice = make_member("alice")

    api.refused(method, "/api/users/nobody/follow", 404, "user_not_found", headers=alice.headers)


@pytest.mark.parametrize("method", ["POST", "DELETE"])
def test_following_without_a_token_is_401(api: Api, make_member, method: str):
    make_member("alice")

    api.refused(method, "/api/users/alice/follow", 401)


@pytest.mark.parametrize("which", ["followers", "following"])
def test_lists_of_an_unknown_user_are_404(api: Api, which: str):
    api.refused("GET", f"/api/users/nobody/{which}", 404, "user_not_found")


def test_follower_lists_page_newest_first_without_gaps(api: Api, make_member):
    star = make_member("star")
    fans = [make_member(f"fan{i}") for i in range(5)]
    for fan in fans:
        api.ok("POST", "/api/users/star/follow", headers=fan.headers)
        api.ok("POST", f"/api/users/{fan.username}/follow", headers=star.headers)

    followers = [u["username"] for u in api.all_pages("/api/users/star/followers", limit=2)]
    following = [u["username"] for u in api.all_pages("/api/users/star/following", limit=2)]

    assert sorted(followers) == sorted(f.username for f in fans)
    assert sorted(following) == sorted(f.username for f in fans)
    assert followers == _usernames(api.ok("GET", "/api/users/star/followers", params={"limit": 100}))
    assert api.ok("GET", "/api/users/star")["follower_count"] == 5


def test_an_error_on_a_follow_list_has_the_one_shape(api: Api):
    assert_error(api.client.get("/api/users/x/followers", params={"limit": "many"}), 422)
