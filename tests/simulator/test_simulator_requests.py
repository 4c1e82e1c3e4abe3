"""How the simulator reads requests and which faults it answers with."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from worker.errors import (
    InsiConfigurationFault,
    InsiRequestFault,
    InsiTransientFault,
)
from worker.insi.model import TraitsSearch
from worker.insi.reply import classify, parse_reply, read_fault
from worker.simulator import FaultStyle
from worker.simulator.soap import (
    CTXBAM_NS,
    CTXLPS_NS,
    SIRAM_NS,
    SOAP_NS,
    WSA_NS,
)
from worker.simulator.soapfaults import (
    BACKEND_ERROR,
    UNKNOWN_SOFTWARE,
    fault_reply,
)

ADRTROIS = TraitsSearch("ADRTROIS", ("TOUSSAINT",), "M", "1960-01-01")


def _fault(body: bytes) -> etree._Element:
    path = f"{{{SOAP_NS}}}Body/{{{SOAP_NS}}}Fault"
    fault = etree.fromstring(body).find(path)
    assert fault is not None
    return fault


def _erreur(body: bytes) -> etree._Element:
    erreur = _fault(body).find(f".//{{{SIRAM_NS}}}Erreur")
    assert erreur is not None
    return erreur


async def test_unknown_idam_draws_the_genuine_siram_100_fault(
    simulator, build, post, expected
) -> None:
    """IDAM outside the allowed set: siram_100/desir_550, HTTP 500."""
    call = build(ADRTROIS, idam="99999999")

    reply = await post(simulator.url, call)

    assert reply.status == 500
    with pytest.raises(InsiConfigurationFault) as raised:
        parse_reply(reply.body, reply.status)
    genuine = expected["fault-siram100-desir550.xml"]
    fault = raised.value.fault
    assert (fault.code, fault.subcode, fault.detail_code, fault.severity) == (
        genuine["code"],
        genuine["subcode"],
        genuine["detail_code"],
        genuine["severity"],
    )
    assert fault.message_id == call.message_id
    assert not genuine["retryable"]


async def test_allowed_idam_set_is_configurable(
    start_simulator, build, post
) -> None:
    """An IDAM the simulator was told to accept gets a result."""
    simulator = await start_simulator(allowed_idam=("12345678",))

    accepted = await post(simulator.url, build(ADRTROIS, idam="12345678"))
    refused = await post(simulator.url, build(ADRTROIS))

    assert parse_reply(accepted.body, accepted.status).cr_code == "00"
    with pytest.raises(InsiConfigurationFault):
        parse_reply(refused.body, refused.status)


def test_the_siram_100_fault_has_the_shape_of_the_genuine_one(
    insi_kit: Path,
) -> None:
    """Same prefixes, elements and attributes as the kit's sample."""
    faults = insi_kit / "faults"
    genuine = (faults / "fault-siram100-desir550.xml").read_bytes()
    ours = fault_reply(UNKNOWN_SOFTWARE, "uuid:0")

    for body in (genuine, ours):
        root = etree.fromstring(body)
        assert (root.prefix, root[0].prefix, root[0][0].prefix) == (
            "soap", "env", "soap",
        )
    assert list(_erreur(ours).attrib) == list(_erreur(genuine).attrib)
    assert [e.tag for e in _fault(ours).iter()] == [
        e.tag for e in _fault(genuine).iter()
    ]
    text = _fault(ours).find(f"{{{SOAP_NS}}}Reason/{{{SOAP_NS}}}Text")
    assert text is not None
    assert text.get("{http://www.w3.org/XML/1998/namespace}lang") == "fr"


def test_the_siram_40_fault_has_the_shape_of_the_genuine_one(
    insi_kit: Path, expected
) -> None:
    """S-style fault, severity fatal, no messageID, retryable."""
    faults = insi_kit / "faults"
    genuine = (faults / "fault-siram40-insi102.xml").read_bytes()
    ours = fault_reply(BACKEND_ERROR, "uuid:0")

    root = etree.fromstring(ours)
    assert (root[0].prefix, root[0][0].prefix) == ("env", "S")
    assert list(_erreur(ours).attrib) == list(_erreur(genuine).attrib)
    with pytest.raises(InsiTransientFault) as raised:
        parse_reply(ours, 500)
    sample = expected["fault-siram40-insi102.xml"]
    fault = raised.value.fault
    assert (fault.code, fault.subcode, fault.detail_code, fault.severity,
            fault.message_id) == (
        sample["code"], sample["subcode"], sample["detail_code"],
        sample["severity"], sample["message_id"],
    )
    assert sample["retryable"]


@pytest.mark.parametrize("style", list(FaultStyle))
async def test_either_fault_style_can_be_forced(
    style, start_simulator, build, post
) -> None:
    """fault_style=soap or S: that serialisation, same codes."""
    simulator = await start_simulator(fault_style=style)

    reply = await post(simulator.url, build(ADRTROIS, idam="99999999"))

    fault = _fault(reply.body)
    assert fault.prefix == style.value
    details = read_fault(fault)
    assert (details.subcode, details.detail_code) == (
        "siram_100", "desir_550",
    )


@pytest.mark.parametrize("sex", ["", "X", "m", "I"])
async def test_a_sex_other_than_m_or_f_draws_insi_24(
    sex, simulator, build, post
) -> None:
    """Empty or invalid Sexe: Sender fault insi_24, not retryable."""
    call = build(TraitsSearch("ADRTROIS", ("TOUSSAINT",), sex, "1960-01-01"))

    reply = await post(simulator.url, call)

    assert reply.status == 500
    with pytest.raises(InsiRequestFault) as raised:
        parse_reply(reply.body, reply.status)
    fault = raised.value.fault
    assert (fault.code, fault.detail_code, fault.message_id) == (
        "Sender", "insi_24", call.message_id,
    )
    assert fault.subcode is not None and fault.subcode.startswith("siram_")


def _drop(namespace: str, name: str):
    def edit(root: etree._Element) -> None:
        header = root.find(f"{{{SOAP_NS}}}Header")
        assert header is not None
        element = header.find(f"{{{namespace}}}{name}")
        assert element is not None
        header.remove(element)

    return edit


@pytest.mark.parametrize(
    ("namespace", "name"),
    [
        (CTXLPS_NS, "ContexteLPS"),
        (CTXBAM_NS, "ContexteBAM"),
        (WSA_NS, "Action"),
        (WSA_NS, "MessageID"),
    ],
)
async def test_a_missing_header_draws_a_sender_fault(
    namespace, name, simulator, build, post
) -> None:
    """Each of the four headers is required: simu_header otherwise."""
    call = build(ADRTROIS).edited(_drop(namespace, name))

    reply = await post(simulator.url, call)

    assert reply.status == 500
    details = read_fault(_fault(reply.body))
    assert (details.code, details.detail_code) == ("Sender", "simu_header")
    if name != "MessageID":
        assert details.message_id == call.message_id
    assert isinstance(classify(details), InsiRequestFault)


@pytest.mark.parametrize(
    ("content_type", "detail_code"),
    [
        ("text/xml; charset=utf-8", "simu_media_type"),
        ("application/soap+xml; charset=utf-8", "simu_action"),
        (
            'application/soap+xml; action="urn:ServiceIdentiteCertifiee:'
            '1.0.0:rechercherInsAvecCarteVitale"',
            "simu_action",
        ),
    ],
    ids=["soap-1.1-media-type", "no-action", "carte-vitale-action"],
)
async def test_media_type_and_action_are_checked(
    content_type, detail_code, simulator, build, post
) -> None:
    """SOAP 1.2 media type with the traits-search action, or a fault."""
    call = build(ADRTROIS)
    wrong = type(call)(call.message_id, call.body, content_type)

    reply = await post(simulator.url, wrong)

    details = read_fault(_fault(reply.body))
    assert (reply.status, details.code, details.detail_code) == (
        500, "Sender", detail_code,
    )


async def test_a_wsa_action_other_than_the_traits_search_is_refused(
    simulator, build, post
) -> None:
    """wsa:Action must repeat the traits-search action."""

    def edit(root: etree._Element) -> None:
        action = root.find(f".//{{{WSA_NS}}}Action")
        assert action is not None
        action.text = "urn:other"

    reply = await post(simulator.url, build(ADRTROIS).edited(edit))

    assert read_fault(_fault(reply.body)).detail_code == "simu_action"


@pytest.mark.parametrize(
    "body",
    [
        b"not xml at all",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "e">]><x>&e;</x>',
        b'<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"/>',
    ],
    ids=["not-xml", "doctype", "soap-1.1-envelope"],
)
async def test_unreadable_or_foreign_xml_draws_a_sender_fault(
    body, simulator, build, post
) -> None:
    """The request goes through the hardened parser; no envelope, fault."""
    call = build(ADRTROIS)

    reply = await post(simulator.url, type(call)("", body, call.content_type))

    details = read_fault(_fault(reply.body))
    assert reply.status == 500
    assert details.code == "Sender"
    assert details.detail_code in ("simu_xml", "simu_envelope")


async def test_every_request_outcome_is_counted(
    simulator, build, post
) -> None:
    """Stats count results and faults by outcome."""
    await post(simulator.url, build(ADRTROIS))
    await post(simulator.url, build(ADRTROIS, idam="1"))
    await post(
        simulator.url,
        build(TraitsSearch("HOUILLES", ("PIERRE",), "M", "1993-01-27")),
    )

    stats = simulator.stats.to_json()
    assert stats["total"] == 3
    assert stats["by_outcome"] == {
        "cr_00": 1, "cr_01": 1, "fault_desir_550": 1,
    }
