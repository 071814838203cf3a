"""The product's input rules, one definition for every layer."""

from __future__ import annotations

import pytest

from talentnest.errors import InvalidInput
from talentnest.services import rules


@pytest.mark.parametrize(
    "value, stored",
    [("abc", "abc"), ("TestUser", "testuser"), ("a" * 30, "a" * 30), ("snake_case_9", "snake_case_9"), ("___", "___")],
)
def test_a_username_is_stored_lower_case(value: str, stored: str):
    assert rules.username(value) == stored


@pytest.mark.parametrize(
    "value",
    [
        "ab",
        "a" * 31,
        "with-dash",
        "with space",
        "dot.ted",
        "ñandú",
        "abc\n",
        "\nabc",
        "",
        "İstanbul",
        "ａｂｃ",
        "search",
        "ME",
        None,
        5,
    ],
)
def test_a_bad_or_reserved_username_is_refused(value):
    with pytest.raises(InvalidInput) as caught:
        rules.username(value)

    assert caught.value.code == "invalid_username"


@pytest.mark.parametrize(
    "value, stored",
    [
        ("test@example.com", "test@example.com"),
        ("Test@EXAMPLE.com", "test@example.com"),
        ("  spaced@example.com ", "spaced@example.com"),
        ("first.last+tag@sub.example.org", "first.last+tag@sub.example.org"),
    ],
)
def test_an_email_is_stored_normalised_and_lower_case(value: str, stored: str):
    assert rules.email(value) == stored


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        "a@b",
        "a@@example.com",
        "a b@example.com",
        "@example.com",
        "a@example.com\nBcc: b@example.com",
        "a@exa\x00mple.com",
        "\ud800@x.com",
    ],
)
def test_a_bad_email_is_refused(value: str):
    with pytest.raises(InvalidInput):
        rules.email(value)


@pytest.mark.parametrize("value", ["pass123", "123456", " " * 6, "x" * 256, "pässwörd", "🔑" * 6])
def test_a_password_of_6_to_256_characters_is_kept_as_it_is(value: str):
    assert rules.password(value) == value


@pytest.mark.parametrize("value", ["12345", "x" * 257, "pass\x00word", "pass\ud800word", None, 123456])
def test_a_bad_password_is_refused(value):
    with pytest.raises(InvalidInput) as caught:
        rules.password(value)

    assert caught.value.code == "invalid_password"


def test_text_is_trimmed_and_nfc_normalised():
    decomposed = "Cafe\u0301"

    assert rules.text(f"  {decomposed}  ", field="name", max_length=10) == "Café"


def test_text_length_is_counted_after_normalisation():
    assert rules.text("e\u0301" * 5, field="name", max_length=5) == "é" * 5
    with pytest.raises(InvalidInput, match="at most 4"):
        rules.text("e\u0301" * 5, field="name", max_length=4)


@pytest.mark.parametrize(
    "value", ["a\x00b", "bell\x07", "esc\x1b[0m", "del\x7f", "v\x0bt", "f\x0cf", "cr\rlf", "c1\x85nel", "csi\x9b2J"]
)
def test_text_refuses_control_characters(value: str):
    with pytest.raises(InvalidInput, match="control characters"):
        rules.text(value, field="bio", max_length=100)


def test_text_allows_tabs_and_newlines_only_when_multiline():
    assert rules.text("one\n\ttwo", field="bio", max_length=100) == "one\n\ttwo"
    for value in ("one\ntwo", "one\ttwo", "one\u2028two", "one\u2029two"):
        with pytest.raises(InvalidInput):
            rules.text(value, field="name", max_length=100, multiline=False)


@pytest.mark.parametrize("value, min_length", [("", 1), ("   ", 1), ("\n\t", 1), ("ab", 3)])
def test_text_shorter_than_its_minimum_once_trimmed_is_refused(value: str, min_length: int):
    with pytest.raises(InvalidInput):
        rules.text(value, field="name", max_length=100, min_length=min_length)


@pytest.mark.parametrize("value", ["\ud800", "a\udfffb", 5, None, ["x"]])
def test_text_must_be_valid_unicode_text(value):
    with pytest.raises(InvalidInput):
        rules.text(value, field="content", max_length=100)


def test_skills_are_trimmed_and_unique_whatever_their_case():
    assert rules.skills([" Python", "python ", "Go", "GO", "Straße", "STRASSE"]) == ["Python", "Go", "Straße"]


@pytest.mark.parametrize(
    "value",
    [["s" * 51], [""], ["  "], ["a\nb"], [1], "Python", None, [f"skill{i}" for i in range(51)]],
    ids=["too long", "empty", "blank", "newline", "not a string", "not a list", "null", "too many"],
)
def test_bad_skills_are_refused(value):
    with pytest.raises(InvalidInput):
        rules.skills(value)


def test_fifty_distinct_skills_are_the_most():
    assert len(rules.skills([f"skill{i}" for i in range(50)] + ["SKILL0"])) == 50


def test_search_terms_are_split_on_whitespace_and_kept_once():
    assert rules.search_terms("  python   go python sql ") == ["python", "go", "sql"]


@pytest.mark.parametrize("query", ["", "   ", "q" * 101, " ".join(f"w{i}" for i in range(9)), "a\x00b", "two\nlines"])
def test_a_bad_search_query_is_refused(query: str):
    with pytest.raises(InvalidInput):
        rules.search_terms(query)


def test_eight_search_words_are_the_most():
    assert len(rules.search_terms(" ".join(f"w{i}" for i in range(8)))) == 8


@pytest.mark.parametrize("limit, expected", [(None, rules.PAGE_DEFAULT), (1, 1), (100, 100)])
def test_a_page_limit_defaults_and_stays_in_range(limit, expected):
    assert rules.page_limit(limit) == expected


@pytest.mark.parametrize("limit", [0, -1, 101])
def test_a_page_limit_out_of_range_is_refused(limit: int):
    with pytest.raises(InvalidInput):
        rules.page_limit(limit)
