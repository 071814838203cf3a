"""Log lines never carry a secret, a token or a password hash, and redaction does not mangle words."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from talentnest import logs


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    logs.configure(fmt="text", level="info", context=logs.NodeContext(), secrets=["short", "-dash-key", ""], stream=stream)
    try:
        yield stream
    finally:
        root.handlers, root.level = saved[0], saved[1]


def test_a_secret_is_masked_wherever_it_stands_alone(captured: io.StringIO):
    logging.getLogger("t").warning("key=short, url=http://x/?s=short; short")

    assert captured.getvalue().count("[redacted]") == 3 and "short" not in captured.getvalue()


def test_a_secret_inside_a_longer_word_is_left_alone(captured: io.StringIO):
    logging.getLogger("t").warning("JWT_SECRET is shorter than 32 bytes")

    assert "JWT_SECRET is shorter than 32 bytes" in captured.getvalue()


def test_a_secret_that_starts_with_punctuation_is_masked_even_inside_a_word(captured: io.StringIO):
    logging.getLogger("t").warning("value x-dash-key")

    assert "-dash-key" not in captured.getvalue()


def test_tokens_and_password_hashes_are_masked_by_their_shape(captured: io.StringIO):
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlc2lnbmF0dXJl"
    logging.getLogger("t").warning("token %s hash %s", token, "$argon2id$v=19$m=1024,t=1,p=1$c2FsdA$aGFzaA")

    assert token not in captured.getvalue() and "$argon2" not in captured.getvalue()


def test_an_exception_traceback_is_masked_too(captured: io.StringIO):
    try:
        raise ValueError("bad short value")
    except ValueError:
        logging.getLogger("t").exception("failed")

    assert "ValueError" in captured.getvalue() and "short" not in captured.getvalue()
