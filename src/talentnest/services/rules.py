"""The product's input rules: limits and normalisation, one definition used by every layer."""

from __future__ import annotations

import re
import unicodedata

import email_validator

from talentnest.errors import InvalidInput

USERNAME_MIN, USERNAME_MAX = 3, 30
USERNAME_PATTERN = r"^[A-Za-z0-9_]{3,30}$"
PASSWORD_MIN, PASSWORD_MAX = 6, 256
NAME_MAX = 100
HEADLINE_MAX = 160
BIO_MAX = 2000
LOCATION_MAX = 100
SKILL_MAX = 50
SKILLS_MAX = 50
POST_MAX = 5000
COMMENT_MAX = 2000
QUERY_MAX = 100
QUERY_TERMS_MAX = 8
EMAIL_MAX = 254
PAGE_DEFAULT, PAGE_MAX = 20, 100

# Names that are paths under /api/users/: a user called "search" could never be looked up.
RESERVED_USERNAMES = frozenset({"me", "search"})
_USERNAME = re.compile(USERNAME_PATTERN)
# Control characters (C0, DEL and C1) other than tab and newline have no place in a profile or
# a post; one-line fields also refuse every line break Unicode knows.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_LINE_BREAK = re.compile(r"[\t\n\x85\u2028\u2029]")


def username(value: str) -> str:
    """Stored lower-case; 3-30 of letters, digits and underscore."""
    if not isinstance(value, str) or not _USERNAME.fullmatch(value):
        raise InvalidInput(
            f"username must be {USERNAME_MIN}-{USERNAME_MAX} letters, digits or underscores", code="invalid_username"
        )
    if value.lower() in RESERVED_USERNAMES:
        raise InvalidInput(f"username '{value}' is reserved", code="invalid_username")
    return value.lower()


def email(value: str) -> str:
    """Compared and stored case-insensitively (lower-case)."""
    value = text(value, field="email", max_length=EMAIL_MAX, multiline=False)
    try:
        checked = email_validator.validate_email(value, check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise InvalidInput(f"email must be a valid address: {exc}", code="invalid_email") from None
    return checked.normalized.lower()


def password(value: str, *, field: str = "password") -> str:
    if not isinstance(value, str) or not PASSWORD_MIN <= len(value) <= PASSWORD_MAX:
        raise InvalidInput(f"{field} must be {PASSWORD_MIN}-{PASSWORD_MAX} characters", code="invalid_password")
    _encodable(value, field, code="invalid_password")
    if "\x00" in value:
        raise InvalidInput(f"{field} must not contain NUL characters", code="invalid_password")
    return value


def text(value: str, *, field: str, max_length: int, min_length: int = 0, multiline: bool = True) -> str:
    """Trimmed, NFC-normalised text without control characters, within its length limits."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string")
    _encodable(value, field)
    value = unicodedata.normalize("NFC", value).strip()
    if _CONTROL.search(value) or (not multiline and _LINE_BREAK.search(value)):
        raise InvalidInput(f"{field} must not contain control characters")
    if len(value) < min_length:
        raise InvalidInput(f"{field} must not be empty" if min_length == 1 else f"{field} is too short")
    if len(value) > max_length:
        raise InvalidInput(f"{field} must be at most {max_length} characters")
    return value


def skills(values: list[str]) -> list[str]:
    """Up to 50 distinct skills (compared case-insensitively), each 1-50 characters."""
    if not isinstance(values, list):
        raise InvalidInput("skills must be a list of strings")
    seen, result = set(), []
    for value in values:
        skill = text(value, field="each skill", max_length=SKILL_MAX, min_length=1, multiline=False)
        if skill.casefold() not in seen:
            seen.add(skill.casefold())
            result.append(skill)
    if len(result) > SKILLS_MAX:
        raise InvalidInput(f"at most {SKILLS_MAX} skills")
    return result


def search_terms(query: str) -> list[str]:
    query = text(query, field="query", max_length=QUERY_MAX, min_length=1, multiline=False)
    terms = list(dict.fromkeys(query.split()))
    if len(terms) > QUERY_TERMS_MAX:
        raise InvalidInput(f"query may have at most {QUERY_TERMS_MAX} words")
    return terms


def page_limit(limit: int | None) -> int:
    if limit is None:
        return PAGE_DEFAULT
    if not 1 <= limit <= PAGE_MAX:
        raise InvalidInput(f"limit must be 1-{PAGE_MAX}")
    return limit


def _encodable(value: str, field: str, *, code: str | None = None) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{field} must be valid Unicode (no lone surrogates)", code=code) from None
