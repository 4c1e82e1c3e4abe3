"""The test PKI and mutual TLS: CN INSI-AUTO passes, others DESIR_560."""

from __future__ import annotations

import ipaddress
import stat

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from worker.errors import InsiConfigurationFault
from worker.insi.model import TraitsSearch
from worker.insi.reply import parse_reply
from worker.insi.tls import client_context
from worker.simulator import make_pki
from worker.simulator.pki import pki_paths

ADRTROIS = TraitsSearch("ADRTROIS", ("TOUSSAINT",), "M", "1960-01-01")


def _cert(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_server_certificate_names_127_0_0_1_and_localhost(sim_pki) -> None:
    """SAN: IP 127.0.0.1 and ::1, DNS localhost; signed by the CA."""
    server = _cert(sim_pki.server_cert)
    ca = _cert(sim_pki.ca_cert)

    san = server.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(
        x509.IPAddress
    )
    assert ipaddress.ip_address("::1") in san.get_values_for_type(
        x509.IPAddress
    )
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    server.verify_directly_issued_by(ca)


def test_client_bundles_carry_the_chosen_cn_and_ou(sim_pki) -> None:
    """PEM and PKCS#12 agree; the password file opens the bundle."""
    creds = sim_pki.client("INSI-AUTO")

    pem = _cert(creds.cert)
    bundle = pkcs12.load_pkcs12(creds.pkcs12.read_bytes(), creds.password)

    assert bundle.cert is not None and bundle.cert.certificate == pem
    subject = pem.subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "INSI-AUTO"
    )
    assert subject.get_attributes_for_oid(
        NameOID.ORGANIZATIONAL_UNIT_NAME
    )[0].value == "SIMULATEUR-000001"
    assert [c.certificate for c in bundle.additional_certs] == [
        _cert(sim_pki.ca_cert)
    ]
    assert stat.S_IMODE(creds.key.stat().st_mode) == 0o600


def test_an_existing_pki_is_reused_and_completed(tmp_path) -> None:
    """A second make_pki keeps the CA and adds missing clients only."""
    first = make_pki(tmp_path, client_cns=["INSI-AUTO"], ou="OU-1")
    ca_before = first.ca_cert.read_bytes()
    auto_before = first.client("INSI-AUTO").cert.read_bytes()

    second = make_pki(tmp_path, client_cns=["INSI-AUTO", "OTHER CN"])

    assert second.ca_cert.read_bytes() == ca_before
    assert second.client("INSI-AUTO").cert.read_bytes() == auto_before
    other = _cert(second.client("OTHER CN").cert)
    other.verify_directly_issued_by(_cert(second.ca_cert))
    assert second == pki_paths(tmp_path, ["INSI-AUTO", "OTHER CN"])


@pytest.mark.parametrize("cn", ["INSI-AUTO", "INSI-MANU"])
async def test_an_allowed_cn_gets_a_result(
    cn, sim_pki, start_simulator, build, post
) -> None:
    """Mutual TLS with INSI-AUTO or INSI-MANU: the search is answered."""
    simulator = await start_simulator(tls=sim_pki)
    connector = aiohttp.TCPConnector(ssl=sim_pki.client_context(cn))

    async with aiohttp.ClientSession(connector=connector) as client:
        reply = await post(simulator.url, build(ADRTROIS), client=client)

    assert simulator.url.startswith("https://127.0.0.1:")
    assert parse_reply(reply.body, reply.status).cr_code == "00"


async def test_another_cn_draws_desir_560(
    sim_pki, start_simulator, build, post
) -> None:
    """A CA-signed certificate with another CN: DESIR_560, not retried."""
    simulator = await start_simulator(tls=sim_pki)
    connector = aiohttp.TCPConnector(
        ssl=sim_pki.client_context("INSI-AUTRE")
    )
    call = build(ADRTROIS)

    async with aiohttp.ClientSession(connector=connector) as client:
        reply = await post(simulator.url, call, client=client)

    assert reply.status == 500
    with pytest.raises(InsiConfigurationFault) as raised:
        parse_reply(reply.body, reply.status)
    fault = raised.value.fault
    assert (fault.code, fault.detail_code, fault.message_id) == (
        "Sender", "DESIR_560", call.message_id,
    )
    assert simulator.stats.count("fault_DESIR_560") == 1


async def test_no_client_certificate_fails_the_handshake(
    sim_pki, start_simulator, build, post
) -> None:
    """Without a client certificate the TLS session never carries HTTP."""
    simulator = await start_simulator(tls=sim_pki)
    connector = aiohttp.TCPConnector(ssl=sim_pki.client_context(None))

    async with aiohttp.ClientSession(connector=connector) as client:
        with pytest.raises(aiohttp.ClientError):
            await post(simulator.url, build(ADRTROIS), client=client)

    assert simulator.stats.total == 0


async def test_the_workers_tls_setup_loads_the_pkcs12_bundle(
    sim_pki, start_simulator, build, post
) -> None:
    """worker.insi.tls with the bundle and its password file: served."""
    simulator = await start_simulator(tls=sim_pki)
    creds = sim_pki.client("INSI-AUTO")
    tls = client_context(
        ca_file=sim_pki.ca_cert,
        pkcs12_file=creds.pkcs12,
        pkcs12_password_file=creds.password_file,
    )
    connector = aiohttp.TCPConnector(ssl=tls.context)

    async with aiohttp.ClientSession(connector=connector) as client:
        reply = await post(simulator.url, build(ADRTROIS), client=client)

    assert tls.certificate is not None
    assert tls.certificate.subject_ou == "SIMULATEUR-000001"
    assert parse_reply(reply.body, reply.status).cr_code == "00"
