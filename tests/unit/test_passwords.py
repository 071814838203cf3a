"""Password hashing: argon2id with RFC 9106's parameters by default, and rehash decisions."""

from __future__ import annotations

import asyncio

import argon2
import pytest

from talentnest.config import Settings
from talentnest.services import Passwords


def passwords_of(settings: Settings) -> Passwords:
    return Passwords(
        time_cost=settings.argon2_time_cost, memory_kib=settings.argon2_memory_kib, parallelism=settings.argon2_parallelism
    )


def test_the_default_hash_is_rfc_9106s_second_recommendation():
    settings = Settings.from_env({"JWT_SECRET": "x" * 32})

    encoded = asyncio.run(passwords_of(settings).hash("correct horse battery staple"))

    parameters = argon2.extract_parameters(encoded)
    assert parameters.type is argon2.Type.ID
    assert (parameters.time_cost, parameters.memory_cost, parameters.parallelism) == (3, 65536, 4)
    assert parameters.salt_len >= 16 and parameters.hash_len >= 32  # RFC 9106: 128-bit salt, 256-bit tag
    assert not settings.has_weak_password_hashing


@pytest.mark.parametrize(
    "env, weak",
    [
        ({"ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "1024", "ARGON2_PARALLELISM": "1"}, True),
        ({"ARGON2_TIME_COST": "2"}, True),
        ({"ARGON2_MEMORY_KIB": "32768"}, True),
        ({"ARGON2_TIME_COST": "4", "ARGON2_MEMORY_KIB": "131072"}, False),
        ({"ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "2097152"}, False),  # RFC 9106's first recommendation
    ],
)
def test_parameters_below_both_recommendations_are_weak(env: dict, weak: bool):
    assert Settings.from_env({"JWT_SECRET": "x" * 32, **env}).has_weak_password_hashing is weak


def test_a_hash_with_other_parameters_or_not_argon2_needs_a_rehash():
    cheap = Passwords(time_cost=1, memory_kib=1024, parallelism=1)
    dearer = Passwords(time_cost=2, memory_kib=2048, parallelism=1)
    encoded = asyncio.run(cheap.hash("pass123"))

    assert not cheap.needs_rehash(encoded)
    assert dearer.needs_rehash(encoded)
    assert asyncio.run(dearer.verify(encoded, "pass123"))  # the old hash still verifies, so the login can upgrade it
    assert dearer.needs_rehash("$2b$12$notargon2atall")
