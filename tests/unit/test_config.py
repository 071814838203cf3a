"""Settings from the environment: defaults, validation, timing relations, and frozen values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from talentnest.config import ConfigError, Settings

SECRET = "a-long-enough-secret-for-hs256-tokens!!"


def settings_from(**env: str) -> Settings:
    return Settings.from_env({"JWT_SECRET": SECRET, **env})


def refusal(**env: str) -> str:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"JWT_SECRET": SECRET, **env})
    return str(caught.value)


def test_defaults_are_those_of_the_design_table():
    settings = settings_from()

    assert settings.port == 3000
    assert settings.host == "0.0.0.0"
    assert settings.service_name == "backend-service"
    assert settings.cluster_secret is None
    assert settings.advertise_address is None and settings.node_id is None
    assert settings.dns_server is None and settings.peers == ()
    assert settings.data_dir == Path("./data")
    assert (settings.election_interval, settings.heartbeat_interval, settings.failure_timeout) == (10.0, 1.0, 30.0)
    assert settings.replication_mode == "async" and settings.cluster_size is None
    assert settings.log_format == "text" and settings.log_level == "info"
    assert settings.jwt_ttl == 86400


@pytest.mark.parametrize("env", [{}, {"JWT_SECRET": ""}, {"JWT_SECRET": "   "}], ids=["unset", "empty", "blank"])
def test_a_missing_jwt_secret_stops_the_node_naming_it(env: dict):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"PORT": "3000", **env})

    assert str(caught.value).startswith("JWT_SECRET is required")


def test_every_variable_is_read():
    settings = settings_from(
        PORT="3900",
        HOST="127.0.0.1",
        SERVICE_NAME="talent-nest.internal",
        CLUSTER_SECRET="cluster-key",
        ADVERTISE_ADDRESS="10.0.2.3",
        NODE_ID="515",
        DNS_SERVER="127.0.0.53:5353",
        PEERS="10.0.2.1, 10.0.2.2,10.0.2.1,",
        DATA_DIR="/var/lib/talentnest",
        ELECTION_INTERVAL="5",
        HEARTBEAT_INTERVAL="0.5",
        FAILURE_TIMEOUT="1.5",
        REPLICATION_MODE="QUORUM",
        CLUSTER_SIZE="3",
        REPLICATION_LINGER_MS="20",
        LOG_FORMAT="json",
        LOG_LEVEL="DEBUG",
        JWT_TTL="3600",
        ARGON2_TIME_COST="2",
        ARGON2_MEMORY_KIB="2048",
        ARGON2_PARALLELISM="2",
        LOG_RETENTION_ENTRIES="5000",
        LOG_RETENTION_BYTES="1048576",
    )

    assert (settings.port, settings.host, settings.service_name) == (3900, "127.0.0.1", "talent-nest.internal")
    assert settings.cluster_secret == "cluster-key"
    assert (settings.advertise_address, settings.node_id) == ("10.0.2.3", 515)
    assert settings.dns_server == ("127.0.0.53", 5353)
    assert settings.peers == ("10.0.2.1", "10.0.2.2")
    assert settings.data_dir == Path("/var/lib/talentnest")
    assert (settings.election_interval, settings.heartbeat_interval, settings.failure_timeout) == (5.0, 0.5, 1.5)
    assert (settings.replication_mode, settings.cluster_size) == ("quorum", 3)
    assert settings.replication_linger == 0.02
    assert (settings.log_format, settings.log_level, settings.jwt_ttl) == ("json", "debug", 3600)
    assert (settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism) == (2, 2048, 2)
    assert (settings.log_retention_entries, settings.log_retention_bytes) == (5000, 1048576)


def test_a_dns_server_without_a_port_uses_53():
    assert settings_from(DNS_SERVER="10.0.0.2").dns_server == ("10.0.0.2", 53)


@pytest.mark.parametrize("host", ["::1", "localhost", "node-1.example.com", " 127.0.0.1 "])
def test_host_takes_addresses_and_names(host: str):
    assert settings_from(HOST=host).host == host.strip()


BAD_VALUES = [
    ("PORT", "70000"),
    ("PORT", "0"),
    ("PORT", "-1"),
    ("PORT", "abc"),
    ("PORT", "3000.5"),
    ("PORT", "1_000"),
    ("PORT", "３０００"),
    ("HOST", "not a host!"),
    ("SERVICE_NAME", "bad name"),
    ("SERVICE_NAME", "-leading-dash"),
    ("ADVERTISE_ADDRESS", "10.0.2"),
    ("ADVERTISE_ADDRESS", "::1"),
    ("NODE_ID", "-5"),
    ("NODE_ID", "node1"),
    ("DNS_SERVER", "dns.example.com"),
    ("DNS_SERVER", "10.0.0.2:99999"),
    ("DNS_SERVER", "10.0.0.2:0"),
    ("DNS_SERVER", "10.0.0.2:x"),
    ("PEERS", "10.0.0.1,not-an-ip"),
    ("ELECTION_INTERVAL", "0"),
    ("ELECTION_INTERVAL", "ten"),
    ("ELECTION_INTERVAL", "99999"),
    ("HEARTBEAT_INTERVAL", "nan"),
    ("HEARTBEAT_INTERVAL", "inf"),
    ("HEARTBEAT_INTERVAL", "-1"),
    ("FAILURE_TIMEOUT", "1e3"),
    ("REPLICATION_MODE", "sync"),
    ("CLUSTER_SIZE", "0"),
    ("REPLICATION_LINGER_MS", "-1"),
    ("REPLICATION_LINGER_MS", "2.5"),
    ("REPLICATION_LINGER_MS", "5000"),
    ("LOG_FORMAT", "xml"),
    ("LOG_LEVEL", "verbose"),
    ("JWT_TTL", "10"),
    ("ARGON2_TIME_COST", "0"),
    ("ARGON2_MEMORY_KIB", "4"),
    ("ARGON2_PARALLELISM", "100"),
    ("LOG_RETENTION_ENTRIES", "1"),
    ("LOG_RETENTION_BYTES", "1024"),
]


@pytest.mark.parametrize("name, value", BAD_VALUES, ids=[f"{n}={v}" for n, v in BAD_VALUES])
def test_a_bad_value_is_refused_with_a_message_naming_the_variable_and_the_value(name: str, value: str):
    message = refusal(**{name: value})

    assert message.startswith(name), message
    assert value.split(",")[-1] in message or value in message, message
    assert "\n" not in message


def test_the_port_message_reads_as_in_the_style_guide():
    assert refusal(PORT="70000") == "PORT must be 1-65535, got '70000'"


def test_the_replication_linger_is_10_ms_unless_set_and_at_most_a_quarter_of_the_heartbeat():
    assert settings_from().replication_linger == 0.01
    assert settings_from(REPLICATION_LINGER_MS="0").replication_linger == 0.0
    assert settings_from(HEARTBEAT_INTERVAL="0.1", REPLICATION_LINGER_MS="25").replication_linger == 0.025
    message = refusal(HEARTBEAT_INTERVAL="0.1", REPLICATION_LINGER_MS="26")
    assert message == "REPLICATION_LINGER_MS must be at most a quarter of HEARTBEAT_INTERVAL (25 ms), got '26'"


def test_quorum_mode_needs_the_cluster_size():
    message = refusal(REPLICATION_MODE="quorum")

    assert message.startswith("CLUSTER_SIZE is required")
    assert settings_from(REPLICATION_MODE="quorum", CLUSTER_SIZE="5").cluster_size == 5


@pytest.mark.parametrize(
    "heartbeat, failure, accepted",
    [("1", "3", True), ("1", "2.99", False), ("2", "30", True), ("10", "29", False), ("0.1", "0.3", True), ("20", "", False)],
)
def test_the_failure_timeout_is_at_least_three_heartbeats(heartbeat: str, failure: str, accepted: bool):
    env = {"HEARTBEAT_INTERVAL": heartbeat, "FAILURE_TIMEOUT": failure}
    if accepted:
        settings = settings_from(**env)
        assert (settings.heartbeat_interval, settings.failure_timeout) == (float(heartbeat), float(failure))
    else:
        message = refusal(**env)
        assert message.startswith("FAILURE_TIMEOUT must be at least 3 x HEARTBEAT_INTERVAL"), message


def test_argon2_memory_must_cover_its_parallelism():
    assert refusal(ARGON2_PARALLELISM="8", ARGON2_MEMORY_KIB="32").startswith("ARGON2_MEMORY_KIB must be 64-")
    assert settings_from(ARGON2_PARALLELISM="8", ARGON2_MEMORY_KIB="64").argon2_memory_kib == 64


def test_settings_are_frozen_and_never_show_secrets():
    settings = settings_from(CLUSTER_SECRET="cluster-key-value")

    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.port = 1  # type: ignore[misc]
    assert SECRET not in repr(settings) and "cluster-key-value" not in repr(settings)


def test_a_short_jwt_secret_is_flagged():
    assert Settings.from_env({"JWT_SECRET": "secret_key"}).has_short_jwt_secret
    assert not settings_from().has_short_jwt_secret


def test_the_login_throttle_and_client_timeout_are_read_and_checked():
    settings = settings_from(LOGIN_MAX_FAILURES="5", LOGIN_MAX_FAILURES_PER_ADDRESS="50", LOGIN_WINDOW="60", CLIENT_TIMEOUT="2.5")

    assert (settings.login_max_failures, settings.login_max_failures_per_address) == (5, 50)
    assert (settings.login_window, settings.client_timeout) == (60.0, 2.5)
    assert (settings_from().login_max_failures, settings_from().client_timeout) == (10, 30.0)
    assert refusal(LOGIN_MAX_FAILURES="0").startswith("LOGIN_MAX_FAILURES must be")
    assert refusal(CLIENT_TIMEOUT="soon").startswith("CLIENT_TIMEOUT must be")


# --- secrets from files, rotation, TLS (the trust issue) ------------------------------------------


def test_every_secret_may_come_from_a_file_named_by_its_file_variable(tmp_path):
    for name, content in [("jwt", "jwt-from-a-file\n"), ("cluster", "cluster-from-a-file"), ("previous", "old-1\nold-2\n")]:
        (tmp_path / name).write_text(content)
    settings = Settings.from_env(
        {
            "JWT_SECRET_FILE": str(tmp_path / "jwt"),
            "CLUSTER_SECRET_FILE": str(tmp_path / "cluster"),
            "JWT_SECRET_PREVIOUS_FILE": str(tmp_path / "previous"),
            "CLUSTER_SECRET_PREVIOUS": "old-c1,old-c2",
            "PREVIOUS_SECRETS_UNTIL": "2030-01-31T12:00:00Z",
        }
    )

    assert (settings.jwt_secret, settings.cluster_secret) == ("jwt-from-a-file", "cluster-from-a-file")
    assert settings.jwt_secret_previous == ("old-1", "old-2")
    assert settings.cluster_secret_previous == ("old-c1", "old-c2")
    assert settings.previous_secrets_until == 1896091200.0
    assert "from-a-file" not in repr(settings) and "old-1" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"JWT_SECRET": "", "JWT_SECRET_FILE": "/nonexistent/jwt"}, "JWT_SECRET_FILE '/nonexistent/jwt' cannot be read"),
        ({"CLUSTER_SECRET": "a", "CLUSTER_SECRET_FILE": "/etc/hostname"}, "CLUSTER_SECRET and CLUSTER_SECRET_FILE are both set"),
        ({"JWT_SECRET_PREVIOUS": "old"}, "PREVIOUS_SECRETS_UNTIL is required"),
        ({"JWT_SECRET_PREVIOUS": "old", "PREVIOUS_SECRETS_UNTIL": "tomorrow"}, "PREVIOUS_SECRETS_UNTIL must be an ISO 8601"),
        ({"JWT_SECRET_PREVIOUS": "old", "PREVIOUS_SECRETS_UNTIL": "2030-01-31T12:00:00"}, "with its zone"),
        ({"CLUSTER_ACCEPT_LEGACY_SIGNATURES": "maybe"}, "CLUSTER_ACCEPT_LEGACY_SIGNATURES must be true or false"),
        ({"TLS_CERT_FILE": "/etc/hostname"}, "TLS_CERT_FILE and TLS_KEY_FILE go together"),
        ({"TLS_CERT_FILE": "/etc/hostname", "TLS_KEY_FILE": "/etc/hostname"}, "TLS_CA_FILE is required"),
        ({"TLS_CA_FILE": "/etc/hostname"}, "TLS_CA_FILE is set without"),
        (
            {"TLS_CERT_FILE": "/nonexistent.pem", "TLS_KEY_FILE": "/etc/hostname"},
            "TLS_CERT_FILE '/nonexistent.pem' is not a readable file",
        ),
        ({"TLS_CLIENT_CERTS": "sometimes"}, "TLS_CLIENT_CERTS must be one of optional, require"),
    ],
)
def test_secret_rotation_and_tls_settings_are_checked_at_start(env, says):
    assert says in refusal(**env)


def test_an_empty_secret_file_is_refused(tmp_path):
    (tmp_path / "empty").write_text("\n")
    assert "JWT_SECRET_FILE" in refusal(JWT_SECRET_FILE=str(tmp_path / "empty"), JWT_SECRET="")
