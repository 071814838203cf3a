"""Settings from the environment, read once, validated once, then frozen."""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

REPLICATION_MODES = ("async", "quorum")
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
_DNS_NAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*\.?$"
)
# Plain ASCII numbers only: int() and float() also take "1_000", "３０００" and "nan".
_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
_DECIMAL = re.compile(r"([0-9]+(\.[0-9]*)?|\.[0-9]+)", re.ASCII)
# Below this many bytes an HS256 key is brute-forceable offline from any token (RFC 7518 3.2).
MIN_SECRET_BYTES = 32
# How far apart two nodes' clocks may be: signed node-to-node calls, and user tokens' issue times
# (a token made on one node is good on another as long as their clocks agree this well).
MAX_CLOCK_SKEW_SECONDS = 30
# RFC 9106 section 4 recommends argon2id with t=1 and m=2 GiB or, where memory is scarce (the
# defaults here), t=3, p=4 and m=64 MiB. A node warns when its parameters meet neither.
RFC9106_TIME_COST, RFC9106_MEMORY_KIB, RFC9106_PARALLELISM = 3, 64 * 1024, 4
RFC9106_FIRST_MEMORY_KIB = 2 * 1024 * 1024
TLS_CLIENT_CERT_MODES = ("optional", "require")
# Secrets that may also be read from a file named by <NAME>_FILE (Docker and Kubernetes secrets).
SECRET_VARIABLES = ("JWT_SECRET", "CLUSTER_SECRET", "JWT_SECRET_PREVIOUS", "CLUSTER_SECRET_PREVIOUS")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the variable and the value."""


@dataclass(frozen=True)
class Settings:
    """Everything a node reads from its environment (DESIGN.md section 1)."""

    jwt_secret: str = field(repr=False)
    port: int = 3000
    host: str = "0.0.0.0"
    service_name: str = "backend-service"
    cluster_secret: str | None = field(default=None, repr=False)
    advertise_address: str | None = None
    node_id: int | None = None
    dns_server: tuple[str, int] | None = None
    peers: tuple[str, ...] = ()
    data_dir: Path = Path("./data")
    election_interval: float = 10.0
    heartbeat_interval: float = 1.0
    failure_timeout: float = 30.0
    replication_linger: float = 0.01
    replication_mode: str = "async"
    cluster_size: int | None = None
    log_format: str = "text"
    log_level: str = "info"
    jwt_ttl: int = 86400
    argon2_time_cost: int = RFC9106_TIME_COST
    argon2_memory_kib: int = RFC9106_MEMORY_KIB
    argon2_parallelism: int = RFC9106_PARALLELISM
    log_retention_entries: int = 100_000
    log_retention_bytes: int = 64 * 1024 * 1024
    login_max_failures: int = 10
    login_max_failures_per_address: int = 100
    login_window: float = 900.0
    write_limit_per_account: int = 300
    write_limit_per_address: int = 3000
    write_limit_window: float = 60.0
    client_timeout: float = 30.0
    jwt_secret_previous: tuple[str, ...] = field(default=(), repr=False)
    cluster_secret_previous: tuple[str, ...] = field(default=(), repr=False)
    previous_secrets_until: float | None = None
    cluster_accept_legacy_signatures: bool = False
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_ca_file: Path | None = None
    tls_client_certs: str = "optional"
    snapshot_compression: str = "none"

    @property
    def tls(self) -> bool:
        """The node serves HTTPS and calls its peers over HTTPS, with certificates both ways."""
        return self.tls_cert_file is not None

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def secrets(self) -> list[str]:
        """Every secret this node holds (for the log's masking)."""
        return [s for s in (self.jwt_secret, self.cluster_secret, *self.jwt_secret_previous, *self.cluster_secret_previous) if s]

    startup_check: str = "quick"
    archive_dir: str | None = None  # a directory, or s3://BUCKET/PREFIX
    archive_interval: float = 10.0
    archive_snapshot_interval: int = 86400
    archive_retention: int = 7 * 86400

    @property
    def has_short_jwt_secret(self) -> bool:
        return len(self.jwt_secret.encode()) < MIN_SECRET_BYTES

    @property
    def has_weak_password_hashing(self) -> bool:
        first = self.argon2_memory_kib >= RFC9106_FIRST_MEMORY_KIB
        second = self.argon2_time_cost >= RFC9106_TIME_COST and self.argon2_memory_kib >= RFC9106_MEMORY_KIB
        return not (first or second)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every variable; raise ConfigError naming the first bad one."""
        env = _Env(os.environ if environ is None else environ)
        secret = env.secret("JWT_SECRET")
        if not secret:
            raise ConfigError("JWT_SECRET is required (the HS256 key for user tokens); set it to a long random string")
        mode = env.choice("REPLICATION_MODE", REPLICATION_MODES, "async")
        cluster_size = env.integer("CLUSTER_SIZE", None, low=1, high=1000)
        if mode == "quorum" and cluster_size is None:
            raise ConfigError("CLUSTER_SIZE is required when REPLICATION_MODE=quorum (the number of voting nodes)")
        heartbeat = env.seconds("HEARTBEAT_INTERVAL", 1.0)
        failure = env.seconds("FAILURE_TIMEOUT", 30.0)
        election = env.seconds("ELECTION_INTERVAL", 10.0)
        if failure < 3 * heartbeat and not math.isclose(failure, 3 * heartbeat):  # 3 x 0.1 is 0.30000000000000004
            raise ConfigError(f"FAILURE_TIMEOUT must be at least 3 x HEARTBEAT_INTERVAL ({3 * heartbeat:g}), got '{failure:g}'")
        linger_ms = env.integer("REPLICATION_LINGER_MS", 10, low=0, high=1000)
        if linger_ms > heartbeat * 1000 / 4:
            raise ConfigError(
                f"REPLICATION_LINGER_MS must be at most a quarter of HEARTBEAT_INTERVAL ({heartbeat * 250:g} ms), "
                f"got '{env.raw('REPLICATION_LINGER_MS')}'"
            )
        argon_parallelism = env.integer("ARGON2_PARALLELISM", RFC9106_PARALLELISM, low=1, high=64)
        jwt_previous = env.secret_list("JWT_SECRET_PREVIOUS")
        cluster_previous = env.secret_list("CLUSTER_SECRET_PREVIOUS")
        until = env.moment("PREVIOUS_SECRETS_UNTIL")
        if (jwt_previous or cluster_previous) and until is None:
            raise ConfigError(
                "PREVIOUS_SECRETS_UNTIL is required with JWT_SECRET_PREVIOUS or CLUSTER_SECRET_PREVIOUS: the time "
                "(ISO 8601 UTC like 2030-01-31T12:00:00Z, or Unix seconds) after which the previous keys are refused"
            )
        tls_cert, tls_key, tls_ca = env.file("TLS_CERT_FILE"), env.file("TLS_KEY_FILE"), env.file("TLS_CA_FILE")
        if (tls_cert is None) != (tls_key is None):
            raise ConfigError("TLS_CERT_FILE and TLS_KEY_FILE go together: set both (TLS on) or neither (plain HTTP)")
        if tls_cert is not None and tls_ca is None:
            raise ConfigError("TLS_CA_FILE is required with TLS_CERT_FILE: the CA whose certificates the nodes present")
        if tls_cert is None and tls_ca is not None:
            raise ConfigError("TLS_CA_FILE is set without TLS_CERT_FILE and TLS_KEY_FILE: set all three, or none")
        return cls(
            jwt_secret=secret,
            port=env.integer("PORT", 3000, low=1, high=65535),
            host=env.host("HOST", "0.0.0.0"),
            service_name=env.dns_name("SERVICE_NAME", "backend-service"),
            cluster_secret=env.secret("CLUSTER_SECRET"),
            advertise_address=env.ipv4("ADVERTISE_ADDRESS"),
            node_id=env.integer("NODE_ID", None, low=0, high=2**31 - 1),
            dns_server=env.endpoint("DNS_SERVER", default_port=53),
            peers=env.ipv4_list("PEERS"),
            data_dir=Path(env.raw("DATA_DIR") or "./data"),
            election_interval=election,
            heartbeat_interval=heartbeat,
            failure_timeout=failure,
            replication_linger=linger_ms / 1000,
            replication_mode=mode,
            cluster_size=cluster_size,
            log_format=env.choice("LOG_FORMAT", LOG_FORMATS, "text"),
            log_level=env.choice("LOG_LEVEL", LOG_LEVELS, "info"),
            jwt_ttl=env.integer("JWT_TTL", 86400, low=60, high=90 * 86400),
            argon2_time_cost=env.integer("ARGON2_TIME_COST", RFC9106_TIME_COST, low=1, high=20),
            argon2_memory_kib=env.integer(
                "ARGON2_MEMORY_KIB", RFC9106_MEMORY_KIB, low=8 * argon_parallelism, high=4 * 1024 * 1024
            ),
            argon2_parallelism=argon_parallelism,
            log_retention_entries=env.integer("LOG_RETENTION_ENTRIES", 100_000, low=10, high=10**9),
            log_retention_bytes=env.integer("LOG_RETENTION_BYTES", 64 * 1024 * 1024, low=64 * 1024, high=2**40),
            login_max_failures=env.integer("LOGIN_MAX_FAILURES", 10, low=1, high=10_000),
            login_max_failures_per_address=env.integer("LOGIN_MAX_FAILURES_PER_ADDRESS", 100, low=1, high=1_000_000),
            login_window=env.seconds("LOGIN_WINDOW", 900.0),
            write_limit_per_account=env.integer("WRITE_LIMIT_PER_ACCOUNT", 300, low=0, high=10**9),
            write_limit_per_address=env.integer("WRITE_LIMIT_PER_ADDRESS", 3000, low=0, high=10**9),
            write_limit_window=env.seconds("WRITE_LIMIT_WINDOW", 60.0),
            client_timeout=env.seconds("CLIENT_TIMEOUT", 30.0),
            jwt_secret_previous=jwt_previous,
            cluster_secret_previous=cluster_previous,
            previous_secrets_until=until,
            cluster_accept_legacy_signatures=env.boolean("CLUSTER_ACCEPT_LEGACY_SIGNATURES", False),
            tls_cert_file=tls_cert,
            tls_key_file=tls_key,
            tls_ca_file=tls_ca,
            tls_client_certs=env.choice("TLS_CLIENT_CERTS", TLS_CLIENT_CERT_MODES, "optional"),
            snapshot_compression=env.choice("SNAPSHOT_COMPRESSION", ("none", "zstd"), "none"),
            startup_check=env.choice("STARTUP_CHECK", ("quick", "full"), "quick"),
            archive_dir=env.archive("ARCHIVE_DIR"),
            archive_interval=env.seconds("ARCHIVE_INTERVAL", 10.0),
            archive_snapshot_interval=env.integer("ARCHIVE_SNAPSHOT_INTERVAL", 86400, low=1, high=365 * 86400),
            archive_retention=env.integer("ARCHIVE_RETENTION", 7 * 86400, low=60, high=10 * 365 * 86400),
        )


def read_secret(environ: Mapping[str, str], name: str) -> str | None:
    """``name``, or the content of the file ``name_FILE`` names, read exactly as a node reads it (so an operator
    command derives the same key); ConfigError when both are set or the file cannot be read."""
    return _Env(environ).secret(name)


class _Env:
    """Typed readers over an environment mapping; each error names its variable."""

    def __init__(self, environ: Mapping[str, str]):
        self._environ = environ

    def raw(self, name: str) -> str | None:
        value = self._environ.get(name)
        return None if value is None or value.strip() == "" else value.strip()

    def secret(self, name: str) -> str | None:
        """``name``, or the content of the file ``name_FILE`` names (without its final newline); not both."""
        value, path = self.raw(name), self.raw(f"{name}_FILE")
        if path is None:
            return value
        if value is not None:
            raise ConfigError(f"{name} and {name}_FILE are both set; set one")
        try:
            content = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{name}_FILE '{path}' cannot be read: {getattr(exc, 'strerror', None) or exc}") from None
        content = content.rstrip("\r\n")
        if not content.strip():
            raise ConfigError(f"{name}_FILE '{path}' is empty")
        return content

    def secret_list(self, name: str) -> tuple[str, ...]:
        """Secrets separated by commas or newlines (so a previous secret cannot hold either)."""
        value = self.secret(name)
        if value is None:
            return ()
        return tuple(dict.fromkeys(part.strip() for part in re.split(r"[,\n]", value) if part.strip()))

    def moment(self, name: str) -> float | None:
        """A point in time: ISO 8601 with a zone (``2030-01-31T12:00:00Z``) or Unix seconds."""
        value = self.raw(name)
        if value is None:
            return None
        if _INTEGER.fullmatch(value):
            return float(int(value))
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            raise ConfigError(
                f"{name} must be an ISO 8601 time with its zone (2030-01-31T12:00:00Z) or Unix seconds, got '{value}'"
            )
        return moment.timestamp()

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise ConfigError(f"{name} must be true or false, got '{value}'")

    def file(self, name: str) -> Path | None:
        """A path to a readable file (certificates and keys, as secrets are mounted)."""
        value = self.raw(name)
        if value is None:
            return None
        path = Path(value)
        if not path.is_file() or not os.access(path, os.R_OK):
            raise ConfigError(f"{name} '{value}' is not a readable file")
        return path

    def integer(self, name: str, default: int | None, *, low: int, high: int) -> int | None:
        value = self.raw(name)
        if value is None:
            return default
        if not _INTEGER.fullmatch(value):
            raise ConfigError(f"{name} must be a whole number {low}-{high}, got '{value}'")
        number = int(value, 10)
        if not low <= number <= high:
            raise ConfigError(f"{name} must be {low}-{high}, got '{value}'")
        return number

    def seconds(self, name: str, default: float) -> float:
        value = self.raw(name)
        if value is None:
            return default
        if not _DECIMAL.fullmatch(value):
            raise ConfigError(f"{name} must be a number of seconds, got '{value}'")
        number = float(value)
        if not (0.05 <= number <= 3600):
            raise ConfigError(f"{name} must be 0.05-3600 seconds, got '{value}'")
        return number

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.raw(name)
        if value is None:
            return default
        if value.lower() not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got '{value}'")
        return value.lower()

    def archive(self, name: str) -> str | None:
        """A directory, or ``s3://BUCKET[/PREFIX]`` whose credentials are in the environment too."""
        value = self.raw(name)
        if value is None or not value.startswith("s3://"):
            return value
        bucket = value[len("s3://") :].split("/", 1)[0]
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
            raise ConfigError(f"{name} must be a directory or s3://BUCKET/PREFIX with a valid bucket name, got '{value}'")
        for needed in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            if not self.raw(needed):
                raise ConfigError(f"{name}={value} needs {needed} in the environment (the bucket's credentials)")
        endpoint = self.raw("ARCHIVE_S3_ENDPOINT")
        if endpoint is not None and not re.fullmatch(r"https?://[^/\s]+(/\S*)?", endpoint):
            raise ConfigError(f"ARCHIVE_S3_ENDPOINT must be an http(s) URL, got '{endpoint}'")
        return value

    def ipv4(self, name: str) -> str | None:
        value = self.raw(name)
        if value is None:
            return None
        try:
            return str(ipaddress.IPv4Address(value))
        except ValueError:
            raise ConfigError(f"{name} must be an IPv4 address, got '{value}'") from None

    def ipv4_list(self, name: str) -> tuple[str, ...]:
        value = self.raw(name)
        if value is None:
            return ()
        peers = []
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                peers.append(str(ipaddress.IPv4Address(part)))
            except ValueError:
                raise ConfigError(f"{name} must be comma-separated IPv4 addresses, got '{part}'") from None
        return tuple(dict.fromkeys(peers))

    def host(self, name: str, default: str) -> str:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            pass
        if not _DNS_NAME.match(value):
            raise ConfigError(f"{name} must be an IP address or host name, got '{value}'")
        return value

    def dns_name(self, name: str, default: str) -> str:
        value = self.raw(name)
        if value is None:
            return default
        if not _DNS_NAME.match(value):
            raise ConfigError(f"{name} must be a DNS name, got '{value}'")
        return value

    def endpoint(self, name: str, *, default_port: int) -> tuple[str, int] | None:
        value = self.raw(name)
        if value is None:
            return None
        host, _, port_text = value.partition(":")
        try:
            host = str(ipaddress.IPv4Address(host))
        except ValueError:
            raise ConfigError(f"{name} must be ip[:port], got '{value}'") from None
        if port_text and not _INTEGER.fullmatch(port_text):
            raise ConfigError(f"{name} must be ip[:port], got '{value}'")
        port = int(port_text) if port_text else default_port
        if not 1 <= port <= 65535:
            raise ConfigError(f"{name} port must be 1-65535, got '{value}'")
        return host, port
