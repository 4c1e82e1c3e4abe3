"""Configuration: every setting declared once, read from the environment.

Each setting is an ``INS_WORKER_*`` variable with a type, a default and a
meaning; ``ins-worker config`` prints the table the README shows.
Certificates, keys and passwords are *paths* to mounted files, never
values in the environment.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from worker.errors import ConfigurationError

PREFIX = "INS_WORKER_"

ENVIRONMENTS = ("demo", "test", "qualification", "production")


def _setting(default: Any, meaning: str) -> Any:
    return field(default=default, metadata={"meaning": meaning})


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def _parse_floats(text: str) -> tuple[float, ...]:
    return tuple(float(part) for part in text.split(",") if part.strip())


def _parse_strs(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _parse_path(text: str) -> Path | None:
    return Path(text) if text.strip() else None


_PARSERS: dict[str, Callable[[str], Any]] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": _parse_bool,
    "tuple[float, ...]": _parse_floats,
    "tuple[str, ...]": _parse_strs,
    "Path | None": _parse_path,
}


@dataclass(frozen=True, slots=True)
class Settings:
    """All settings of one worker process."""

    environment: str = _setting(
        "qualification",
        "demo, test, qualification or production: decides the accepted "
        "OIDs and whether mutual TLS is mandatory (the simulator plays the "
        "qualification service)",
    )
    accepted_oids: tuple[str, ...] = _setting(
        (),
        "OIDs accepted for an INS, comma-separated; empty means the "
        "environment's default set",
    )
    amqp_url: str = _setting(
        "amqp://guest:guest@127.0.0.1:5672/", "RabbitMQ URL"
    )
    database_url: str = _setting(
        "postgresql://postgres@127.0.0.1:5432/ins_worker",
        "PostgreSQL URL of the worker's own role",
    )
    migrate_database_url: str = _setting(
        "",
        "PostgreSQL URL of the role that owns the schema (migrations); "
        "empty means the worker's URL",
    )
    requests_exchange: str = _setting(
        "identity.requests", "exchange the requesting services publish to"
    )
    requests_queue: str = _setting(
        "identity.requests.v1", "quorum queue the worker consumes"
    )
    requests_routing_key: str = _setting(
        "verification.requested",
        "binding key of the requests queue on the requests exchange",
    )
    dead_letter_exchange: str = _setting(
        "identity.requests.dlx", "dead-letter exchange of the requests"
    )
    dead_letter_queue: str = _setting(
        "identity.requests.dlq", "queue holding dead letters"
    )
    events_exchange: str = _setting(
        "identity.events", "topic exchange identity events go to"
    )
    event_source: str = _setting(
        "urn:ins-worker:demo", "CloudEvents source of published events"
    )
    prefetch: int = _setting(
        64,
        "AMQP prefetch (unacked deliveries held); capped at the "
        "concurrency, since a delivery waiting unstarted only risks a "
        "return that counts toward the delivery limit",
    )
    concurrency: int = _setting(
        32, "messages processed at once by one process (in-flight limit)"
    )
    delivery_limit: int = _setting(
        10, "quorum-queue redeliveries before the broker dead-letters"
    )
    max_body_bytes: int = _setting(
        65536, "requests larger than this are dead-lettered unread"
    )
    message_budget_s: float = _setting(
        120.0,
        "time one delivery may take, retries included (well below the "
        "broker's consumer timeout)",
    )
    retry_delays_s: tuple[float, ...] = _setting(
        (10.0, 60.0, 300.0),
        "delays of the delayed retries, one queue each; their count is the "
        "number of delayed retries before a terminal failure",
    )
    insi_url: str = _setting(
        "http://127.0.0.1:8089/lps",
        "INSi endpoint (the local simulator by default)",
    )
    insi_timeout_s: float = _setting(30.0, "timeout of one INSi call")
    insi_attempts: int = _setting(
        3, "tries of one INSi search within a delivery (transient errors)"
    )
    insi_backoff_s: float = _setting(
        0.5, "first wait between tries; doubles, with jitter, up to 8 s"
    )
    insi_connect_timeout_s: float = _setting(
        5.0, "timeout of opening a connection to INSi"
    )
    insi_max_connections: int = _setting(
        32, "keep-alive connections to INSi held by one process"
    )
    insi_idam: str = _setting(
        "00000000", "software authorisation number (IDAM) sent in ContexteLPS"
    )
    insi_software_name: str = _setting(
        "urn:lps:ins-worker:0.1", "software name sent in ContexteLPS"
    )
    insi_software_version: str = _setting(
        "0.1", "software version sent in ContexteLPS"
    )
    insi_instance: str = _setting(
        "b3c1a3f2-8d0e-4c55-9e61-0f3b2a7d9c10",
        "installation UUID sent in ContexteLPS (constant per installation)",
    )
    insi_emetteur: str = _setting(
        "",
        "Emetteur sent in both contexts; empty means the OU of the client "
        "certificate's subject",
    )
    tls_cert_file: Path | None = _setting(
        None, "PEM client certificate (chain) for mutual TLS"
    )
    tls_key_file: Path | None = _setting(None, "PEM private key")
    tls_key_password_file: Path | None = _setting(
        None, "file holding the PEM key's password"
    )
    tls_pkcs12_file: Path | None = _setting(
        None, "PKCS#12 bundle (certificate and key), instead of PEM files"
    )
    tls_pkcs12_password_file: Path | None = _setting(
        None, "file holding the PKCS#12 password"
    )
    tls_ca_file: Path | None = _setting(
        None, "PEM bundle the INSi server certificate must chain to"
    )
    breaker_failures: int = _setting(
        5, "consecutive infrastructure failures that open the breaker"
    )
    breaker_reset_s: float = _setting(
        30.0, "time the breaker stays open before one probe"
    )
    rate_limit_per_s: float = _setting(
        20.0, "INSi calls per second for the whole deployment (0: none)"
    )
    outbox_poll_s: float = _setting(
        1.0, "outbox relay poll interval (NOTIFY wakes it sooner)"
    )
    outbox_batch: int = _setting(256, "events the relay publishes at once")
    shutdown_budget_s: float = _setting(
        20.0, "time SIGTERM leaves in-flight messages to finish"
    )
    health_host: str = _setting("127.0.0.1", "address of /metrics, /livez")
    health_port: int = _setting(8000, "port of /metrics, /livez, /readyz")
    log_format: str = _setting("console", "json or console")
    log_level: str = _setting("INFO", "logging level")
    raw_retention_days: int = _setting(
        365, "days raw INSi exchanges are kept (ins-worker purge)"
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every ``INS_WORKER_*`` variable; unknown ones are errors."""
        env = os.environ if env is None else env
        known = {PREFIX + f.name.upper(): f for f in fields(cls)}
        unknown = sorted(k for k in env if k.startswith(PREFIX))
        unknown = [k for k in unknown if k not in known]
        if unknown:
            raise ConfigurationError(
                f"unknown setting(s): {', '.join(unknown)}"
            )
        values: dict[str, Any] = {}
        for name, f in known.items():
            if name not in env:
                continue
            parse = _PARSERS[str(f.type)]
            try:
                values[f.name] = parse(env[name])
            except ValueError as exc:
                raise ConfigurationError(
                    f"{name}: cannot read as {f.type} ({exc})"
                ) from None
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse combinations that cannot work."""
        if self.environment not in ENVIRONMENTS:
            raise ConfigurationError(
                f"{PREFIX}ENVIRONMENT must be one of {', '.join(ENVIRONMENTS)}"
            )
        if self.log_format not in ("json", "console"):
            raise ConfigurationError(f"{PREFIX}LOG_FORMAT: json or console")
        if self.concurrency < 1 or self.prefetch < 1:
            raise ConfigurationError("concurrency and prefetch must be >= 1")

    @property
    def migration_url(self) -> str:
        """The URL migrations run with."""
        return self.migrate_database_url or self.database_url


def describe() -> list[tuple[str, str, str, str]]:
    """(variable, type, default, meaning) for every setting."""
    rows = []
    for f in fields(Settings):
        default = f.default
        if isinstance(default, tuple):
            shown = ",".join(f"{v:g}" for v in default)
        elif default is None:
            shown = ""
        else:
            shown = str(default)
        rows.append(
            (
                PREFIX + f.name.upper(),
                str(f.type),
                shown,
                f.metadata["meaning"],
            )
        )
    return rows
