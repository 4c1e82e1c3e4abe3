"""Production TLS: refusals that say what is wrong; certificate errors halt.

In production the worker must not start without mutual TLS toward a
configured CA, with a certificate INSi admits and within its dates; the
refusal names the rule, never the certificate's subject. A certificate
error met while running is a configuration error: one failed call, no
retry, no breaker trip, readiness false, consumption halted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import io
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from test_health import built_worker, until
from worker_harness import CN, request_body, traits

from worker import app, cli, metrics
from worker.breaker import BreakerState
from worker.errors import ConfigurationError
from worker.settings import Settings
from worker.simulator import SimulatorPki, make_pki
from worker.simulator.server import Simulator

ADRTROIS = traits("Adrtrois", ["Toussaint"], "M", "1960-01-01")

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def sim_pki(tmp_path_factory: pytest.TempPathFactory) -> SimulatorPki:
    """The simulator's test PKI: CA, server, INSI-AUTO and INSI-AUTRE."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> SimulatorPki:
    """A second, unrelated PKI: neither side trusts the other's CA."""
    return make_pki(tmp_path_factory.mktemp("other-pki"))


def _issue(
    pki: SimulatorPki,
    folder: Path,
    cn: str,
    *,
    ou: str | None = "TESTOU",
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> Path:
    """A PEM file (certificate then key) signed by ``pki``'s CA."""
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), None)
    assert isinstance(ca_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if ou is not None:
        names.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(names))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - dt.timedelta(days=1))
        .not_valid_after(not_after or NOW + dt.timedelta(days=90))
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    path = folder / f"{cn.lower()}-{x509.random_serial_number():x}.pem"
    path.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path


def _production(pki: SimulatorPki, **values: Any) -> Settings:
    creds = pki.client("INSI-AUTO")
    base = dataclasses.replace(
        Settings(),
        environment="production",
        insi_url="https://127.0.0.1:9/lps",
        tls_ca_file=pki.ca_cert,
        tls_pkcs12_file=creds.pkcs12,
        tls_pkcs12_password_file=creds.password_file,
        # Nothing listens there: a refusal must come before any connection.
        amqp_url="amqp://guest:guest@127.0.0.1:9/",
        database_url="postgresql://postgres@127.0.0.1:9/ins_worker",
    )
    return dataclasses.replace(base, **values)


def _refusal(settings: Settings) -> str:
    with pytest.raises(ConfigurationError) as caught:
        asyncio.run(app.build(settings))
    return str(caught.value)


def test_production_without_a_client_certificate_refuses_to_start(
    sim_pki: SimulatorPki,
) -> None:
    """No certificate at all: refused, saying a certificate is needed."""
    message = _refusal(
        _production(
            sim_pki, tls_pkcs12_file=None, tls_pkcs12_password_file=None
        )
    )

    assert "production needs an INSi client certificate" in message


def test_production_over_plain_http_refuses_to_start(
    sim_pki: SimulatorPki,
) -> None:
    """An http INSi URL: refused, asking for https."""
    message = _refusal(_production(sim_pki, insi_url="http://127.0.0.1:9/lps"))

    assert "https" in message


def test_production_without_the_igc_sante_chain_refuses_to_start(
    sim_pki: SimulatorPki,
) -> None:
    """No CA bundle: refused, naming the setting to give."""
    message = _refusal(_production(sim_pki, tls_ca_file=None))

    assert "INS_WORKER_TLS_CA_FILE" in message


def test_production_with_another_cn_refuses_without_naming_it(
    sim_pki: SimulatorPki,
) -> None:
    """CN INSI-AUTRE: refused with the rule, the CN itself not repeated."""
    other = sim_pki.client("INSI-AUTRE")

    message = _refusal(
        _production(
            sim_pki,
            tls_pkcs12_file=other.pkcs12,
            tls_pkcs12_password_file=other.password_file,
        )
    )

    assert "INSI-AUTO or INSI-MANU" in message
    assert "INSI-AUTRE" not in message


@pytest.mark.parametrize(
    ("offsets", "expected"),
    [((-30, -1), "expired on"), ((1, 30), "not valid before")],
    ids=["expired", "not-yet-valid"],
)
def test_production_with_a_certificate_out_of_its_dates_refuses(
    sim_pki: SimulatorPki,
    tmp_path: Path,
    offsets: tuple[int, int],
    expected: str,
) -> None:
    """Outside its validity: refused, with the date that rules it out."""
    start, end = (NOW + dt.timedelta(days=d) for d in offsets)
    pem = _issue(sim_pki, tmp_path, "INSI-AUTO", not_before=start,
                 not_after=end)  # fmt: skip

    message = _refusal(
        _production(
            sim_pki,
            tls_pkcs12_file=None,
            tls_pkcs12_password_file=None,
            tls_cert_file=pem,
        )
    )

    assert expected in message
    shown = (end if expected == "expired on" else start).strftime("%Y-%m-%d")
    assert shown in message


def test_production_with_a_wrong_bundle_password_refuses(
    sim_pki: SimulatorPki, tmp_path: Path
) -> None:
    """A wrong PKCS#12 password: refused, saying so, password not shown."""
    wrong = tmp_path / "wrong.pass"
    wrong.write_bytes(b"not-the-password\n")

    message = _refusal(_production(sim_pki, tls_pkcs12_password_file=wrong))

    assert "wrong password" in message
    assert "not-the-password" not in message


def test_production_without_an_emetteur_refuses(
    sim_pki: SimulatorPki, tmp_path: Path
) -> None:
    """A certificate without OU and no INS_WORKER_INSI_EMETTEUR: refused."""
    pem = _issue(sim_pki, tmp_path, "INSI-AUTO", ou=None)

    message = _refusal(
        _production(
            sim_pki,
            tls_pkcs12_file=None,
            tls_pkcs12_password_file=None,
            tls_cert_file=pem,
        )
    )

    assert "Emetteur" in message


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Put the root logger back as it was after ``cli.main`` set it up."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_command_line_refusal_is_one_clear_line_and_status_78(
    sim_pki: SimulatorPki,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    root_logging: None,
) -> None:
    """``ins-worker run`` in production without TLS: EX_CONFIG, one line."""
    # Only the variables set here: the test suite's own INS_WORKER_TEST_*
    # would be refused as unknown settings.
    for name in list(os.environ):
        if name.startswith("INS_WORKER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("INS_WORKER_ENVIRONMENT", "production")
    monkeypatch.setenv(
        "INS_WORKER_AMQP_URL", "amqp://guest:guest@127.0.0.1:9/"
    )
    monkeypatch.setenv(
        "INS_WORKER_DATABASE_URL", "postgresql://postgres@127.0.0.1:9/x"
    )
    monkeypatch.setattr("sys.stderr", io.StringIO())

    status = cli.main(["run"])

    said = sys.stderr.getvalue()  # type: ignore[attr-defined]
    assert status == 78
    assert said.startswith("ins-worker: configuration error: production")
    assert said.count("\n") == 1
    assert "Traceback" not in said
    assert capsys.readouterr().out == ""


def test_production_with_full_mutual_tls_gets_past_the_tls_checks(
    sim_pki: SimulatorPki,
) -> None:
    """Everything right: TLS passes, and start-up goes on to the database."""
    with pytest.raises(Exception) as caught:
        asyncio.run(app.build(_production(sim_pki)))

    assert not isinstance(caught.value, ConfigurationError)


# ---- a certificate error while running ------------------------------------


async def _publish(settings: Settings, body: bytes) -> None:
    connection = await aio_pika.connect(settings.amqp_url, timeout=10)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(settings.requests_exchange)
        await exchange.publish(
            aio_pika.Message(body, delivery_mode=2),
            routing_key=settings.requests_routing_key,
        )


async def _ready_count(settings: Settings) -> int:
    connection = await aio_pika.connect(settings.amqp_url, timeout=10)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(
            settings.requests_queue, passive=True
        )
        return int(queue.declaration_result.message_count or 0)


def _count(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


#: how each broken set-up shows: (INSi calls that reach HTTP, error kind)
BROKEN = {
    # our CA bundle does not vouch for the server: refused in the handshake
    "server-not-trusted": (0, "certificate"),
    # a certificate INSi does not admit (CN): DESIR_560 over HTTP
    "cn-refused-by-insi": (1, "fault_configuration"),
}


@pytest.mark.servers
@pytest.mark.parametrize("broken", sorted(BROKEN))
async def test_certificate_error_halts_without_retry_or_breaker_trip(
    settings: Settings,
    db: Any,
    sim_pki: SimulatorPki,
    other_pki: SimulatorPki,
    broken: str,
) -> None:
    """One failed call, no retry, breaker closed, not ready, rest queued."""
    reached, kind = BROKEN[broken]
    simulator = Simulator(tls=sim_pki)
    url = await simulator.start("127.0.0.1", 0)
    if broken == "server-not-trusted":
        ca, client = other_pki.ca_cert, sim_pki.client("INSI-AUTO")
    else:
        ca, client = sim_pki.ca_cert, sim_pki.client("INSI-AUTRE")
    configured = dataclasses.replace(
        settings,
        insi_url=url,
        tls_ca_file=ca,
        tls_pkcs12_file=client.pkcs12,
        tls_pkcs12_password_file=client.password_file,
    )
    labels = {"operation": "rechercherInsAvecTraitsIdentite", "result": kind}
    failed_calls = _count("ins_worker_insi_calls_total", **labels)
    retries = _count("ins_worker_insi_retries_total")
    delayed = _count("ins_worker_delayed_retries_total", tier="1")

    try:
        async with built_worker(configured) as w:
            await until(w.ready, lambda _, b: b["consumer_attached"] is True)
            first, body = request_body(ADRTROIS, document=CN)
            await _publish(configured, body)
            halted = await until(
                w.ready, lambda _, b: b["consumer_attached"] is False
            )
            for n in range(2):
                _, body = request_body(
                    ADRTROIS, document=CN, patient=f"ipp/{n}"
                )
                await _publish(configured, body)
            await asyncio.sleep(0.5)
            queued = await _ready_count(configured)
            breaker = w.parts.breaker.state
            status, live = await w.live()
    finally:
        await simulator.stop()

    row = await db.fetchrow(
        "SELECT outcome, reason FROM requests WHERE request_id = $1", first
    )
    calls = await db.fetch("SELECT error_kind FROM insi_calls")
    assert halted["configuration"] is False
    assert kind in halted["configuration_error"]
    assert (row["outcome"], row["reason"]) == ("failed", kind)
    assert [c["error_kind"] for c in calls] == [kind]
    assert queued == 2
    assert breaker is BreakerState.CLOSED
    assert status == 200 and live["live"] is True
    assert simulator.stats.total == reached
    assert _count("ins_worker_insi_calls_total", **labels) == failed_calls + 1
    assert _count("ins_worker_insi_retries_total") == retries
    assert _count("ins_worker_delayed_retries_total", tier="1") == delayed


@pytest.mark.servers
async def test_started_worker_watches_its_certificate_over_time(
    settings: Settings, db: Any, sim_pki: SimulatorPki, tmp_path: Path
) -> None:
    """An expired certificate (accepted outside production): not ready.

    The expiry gauges come from the certificate the worker loaded; the
    retry tiers of the settings are declared from the start.
    """
    end = NOW - dt.timedelta(days=1)
    pem = _issue(
        sim_pki,
        tmp_path,
        "INSI-AUTO",
        not_before=NOW - dt.timedelta(days=30),
        not_after=end,
    )
    expired = dataclasses.replace(
        settings,
        insi_url="https://127.0.0.1:9/lps",
        tls_ca_file=sim_pki.ca_cert,
        tls_cert_file=pem,
        retry_delays_s=(1.0, 2.0, 3.0, 4.0, 5.0),
    )

    async with built_worker(expired) as w:
        body = await until(
            w.ready, lambda _, b: b["consumer_attached"] is True
        )
        left = _count("ins_worker_client_certificate_expiry_seconds")
        stamp = _count(
            "ins_worker_client_certificate_expiry_timestamp_seconds"
        )

    assert body["certificates_loaded"] is False
    assert -2 * 86400 < left < 0
    assert stamp == int(end.timestamp())
    tier = metrics.REGISTRY.get_sample_value(
        "ins_worker_delayed_retries_total", {"tier": "5"}
    )
    assert tier is not None
