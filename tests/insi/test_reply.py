"""Reading INSi replies: both dialects, the irregularities, the faults."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from worker.errors import (
    FaultDetails,
    InsiConfigurationFault,
    InsiHttpError,
    InsiProtocolError,
    InsiRequestFault,
    InsiTransient,
    InsiTransientFault,
)
from worker.insi.model import ReturnedIns, SearchResult
from worker.insi.reply import classify, parse_reply

from .support import expected, kit_files

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
RES = "http://www.cnamts.fr/INSiResultat"
FAULTS = (InsiTransientFault, InsiRequestFault, InsiConfigurationFault)


def _kit_entry(insi_kit: Path, name: str) -> tuple[bytes, dict[str, Any]]:
    entries = expected(insi_kit)
    file_name = name.rsplit("/", 1)[-1]
    assert file_name in entries, f"{file_name} has no entry in expected.json"
    return (insi_kit / name).read_bytes(), entries[file_name]


def _check_ins(ins: ReturnedIns, want: dict[str, Any]) -> None:
    assert ins.nir13 == want["nir13"]
    assert ins.key == want["key"]
    assert ins.oid == want["oid"]
    assert ins.type == want["type"]
    assert ins.start == want["start"]
    assert ins.end == want["end"]
    assert ins.ins == want["ins"]
    assert len(ins.ins) == 15
    assert ins.key_valid is want["key_valid"]


@pytest.mark.parametrize("name", kit_files("responses"))
def test_kit_response_parses_to_its_expected_values(
    insi_kit: Path, name: str
) -> None:
    """Every genuine response reads as expected.json says, field by field."""
    body, want = _kit_entry(insi_kit, name)
    assert want["kind"] == "result"

    result = parse_reply(body)

    assert result.cr_code == want["cr_code"]
    assert result.cr_label == want["cr_label"]
    if "active" not in want:
        assert result.active is None and result.traits is None
        assert result.history == ()
        return
    assert result.active is not None
    _check_ins(result.active, want["active"])
    assert len(result.history) == len(want["history"])
    for got, wanted in zip(result.history, want["history"], strict=True):
        _check_ins(got, wanted)

    traits, wanted = result.traits, want["traits"]
    assert traits is not None
    assert traits.birth_name == wanted["NomNaissance"]
    assert traits.first_name_sent == wanted["Prenom"]
    assert traits.first_names_list == wanted["ListePrenom"]
    assert traits.sex == wanted["Sexe"]
    assert traits.birth_date == wanted["DateNaissance"]
    assert traits.birth_place == wanted["LieuNaissance"]
    assert traits.first_names == wanted["first_names"]
    assert traits.first_name == wanted["first_name"]


@pytest.mark.parametrize("name", kit_files("faults"))
@pytest.mark.parametrize("status", [500, 200])
def test_kit_fault_raises_its_classified_error(
    insi_kit: Path, name: str, status: int
) -> None:
    """Every genuine fault raises with the codes of expected.json."""
    body, want = _kit_entry(insi_kit, name)
    assert want["kind"] == "fault"

    with pytest.raises(FAULTS) as caught:
        parse_reply(body, http_status=status)

    assert isinstance(caught.value, FAULTS)
    fault = caught.value.fault
    assert fault.code == want["code"]
    assert fault.subcode == want["subcode"]
    assert fault.detail_code == want["detail_code"]
    assert fault.severity == want["severity"]
    assert fault.message_id == want["message_id"]
    assert isinstance(caught.value, InsiTransient) is want["retryable"]
    assert fault.reason


def test_kit_accepted_request_is_not_a_reply(insi_kit: Path) -> None:
    """A request envelope has no RESULTAT: a protocol error."""
    body = (
        insi_kit / "requests" / "accepted-rechercherInsAvecTraitsIdentite.xml"
    ).read_bytes()

    with pytest.raises(InsiProtocolError, match="RESULTAT"):
        parse_reply(body)


def _envelope(payload: str, env: str = "soap", body: str = "env") -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>'
        f'<{env}:Envelope xmlns:{env}="{SOAP12}">'
        f'<{body}:Body xmlns:{body}="{SOAP12}">{payload}</{body}:Body>'
        f"</{env}:Envelope>"
    ).encode()


def _resultat(inner: str, prefix: str = "") -> str:
    if not prefix:
        return f'<RESULTAT xmlns="{RES}">{inner}</RESULTAT>'
    tagged = re.sub(r"<(/?)(\w+)", rf"<\1{prefix}:\2", inner)
    return (
        f'<{prefix}:RESULTAT xmlns:{prefix}="{RES}">{tagged}'
        f"</{prefix}:RESULTAT>"
    )


FOUND = (
    "<CR><CodeCR>00</CodeCR><LibelleCR>OK</LibelleCR></CR>"
    "<INDIVIDU><INSACTIF><OID>1.2.250.1.213.1.4.8</OID><IdIndividu>"
    "<NumIdentifiant>2751263220749</NumIdentifiant><Cle>74</Cle>"
    "<TypeMatricule>NIR</TypeMatricule></IdIndividu></INSACTIF>"
    "<TIQ><Sexe>F</Sexe><NomNaissance>ADRUN</NomNaissance>"
    "<ListePrenom>ZOE</ListePrenom></TIQ></INDIVIDU>"
)


@pytest.mark.parametrize("prefix", ["", "r", "insi_resultat_ins"])
def test_reply_is_read_by_namespace_not_prefix(prefix: str) -> None:
    """Any prefix, any order of children: the same result."""
    body = _envelope(_resultat(FOUND, prefix), env="e", body="b")

    result = parse_reply(body)

    assert result.cr_code == "00"
    assert result.active is not None
    assert result.active.ins == "275126322074974"
    assert result.active.type == "NIR"
    assert result.active.key_valid
    assert result.traits is not None
    assert result.traits.first_name == "ZOE"


def test_elements_of_another_namespace_are_not_read() -> None:
    """A CodeCR outside the RESULTAT namespace does not count."""
    payload = (
        f'<RESULTAT xmlns="{RES}"><CR>'
        '<CodeCR xmlns="urn:other">00</CodeCR><LibelleCR>OK</LibelleCR>'
        "</CR></RESULTAT>"
    )

    with pytest.raises(InsiProtocolError, match="CodeCR missing"):
        parse_reply(_envelope(payload))


def test_history_key_is_checked_not_trusted() -> None:
    """A history entry with a wrong key parses, flagged key_valid False."""
    inner = FOUND.replace(
        "<TIQ>",
        "<INSHISTO><IdIndividu><NumIdentifiant>1234567890122"
        "</NumIdentifiant><Cle>44</Cle></IdIndividu>"
        "<OID>1.2.250.1.213.1.4.8</OID></INSHISTO><TIQ>",
    )

    result = parse_reply(_envelope(_resultat(inner)))

    assert [h.key_valid for h in result.history] == [False]


@pytest.mark.parametrize(
    ("inner", "reason"),
    [
        ("<CR><LibelleCR>OK</LibelleCR></CR>", "CodeCR missing"),
        ("<CR><CodeCR> </CodeCR><LibelleCR>OK</LibelleCR></CR>", "empty"),
        ("<CR><CodeCR>03</CodeCR><LibelleCR>?</LibelleCR></CR>", "outside"),
        ("<CR><CodeCR>00</CodeCR><LibelleCR>OK</LibelleCR></CR>", "INDIVIDU"),
        ("", "CR missing"),
        (FOUND.replace("<TIQ>", "<TIQ><Sexe>M</Sexe>"), "Sexe repeated"),
        (FOUND.replace("<OID>1.2.250.1.213.1.4.8</OID>", ""), "OID missing"),
        (
            FOUND.replace("<TIQ><Sexe>F</Sexe>", "<X>").replace(
                "</ListePrenom></TIQ>", "</ListePrenom></X>"
            ),
            "TIQ missing",
        ),
    ],
)
def test_resultat_outside_the_contract_is_a_protocol_error(
    inner: str, reason: str
) -> None:
    """What the contract requires is checked, with a field-path reason."""
    with pytest.raises(InsiProtocolError, match=reason):
        parse_reply(_envelope(_resultat(inner)))


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not_xml"),
        (b"not xml at all", "not_xml"),
        (b"<html><body>hello</body></html>", "SOAP 1.2"),
        (
            b'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/">'
            b"<e:Body/></e:Envelope>",
            "SOAP 1.1",
        ),
        (f'<e:Envelope xmlns:e="{SOAP12}"/>'.encode(), "Body missing"),
        (_envelope(""), "exactly one"),
        (_envelope("<a/><b/>"), "exactly one"),
        (_envelope('<x:RESULTAT xmlns:x="urn:other"/>'), "no RESULTAT"),
    ],
)
def test_reply_that_is_not_insi_is_a_protocol_error(
    body: bytes, reason: str
) -> None:
    """Not XML, not SOAP 1.2, no single RESULTAT: permanent, explained."""
    with pytest.raises(InsiProtocolError, match=reason):
        parse_reply(body)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
@pytest.mark.parametrize(
    "body",
    [b"", b"  \n", b"<html><body>Bad gateway</body></html>",
     b"<!DOCTYPE html><html></html>", b"upstream timed out"],
)
def test_error_status_without_soap_is_an_http_error(
    status: int, body: bytes
) -> None:
    """A gateway's answer is transient, whatever its body says."""
    with pytest.raises(InsiHttpError) as caught:
        parse_reply(body, http_status=status)

    assert caught.value.status == status


def test_resultat_under_an_error_status_is_a_protocol_error() -> None:
    """A RESULTAT with HTTP 500 contradicts itself."""
    body = _envelope(_resultat(FOUND))

    with pytest.raises(InsiProtocolError, match="HTTP 500"):
        parse_reply(body, http_status=500)


def test_not_found_and_several_are_results() -> None:
    """01 and 02 are business answers, never errors."""
    for code in ("01", "02"):
        inner = f"<CR><CodeCR>{code}</CodeCR><LibelleCR>x</LibelleCR></CR>"

        result = parse_reply(_envelope(_resultat(inner)))

        assert result == SearchResult(cr_code=code, cr_label="x")


def _fault_xml(
    code: str, subcode: str | None, erreur: str | None, prefix: str = "S"
) -> bytes:
    sub = (
        f"<{prefix}:Subcode><{prefix}:Value>{prefix}:{subcode}"
        f"</{prefix}:Value></{prefix}:Subcode>"
        if subcode else ""
    )
    detail = (
        f'<{prefix}:Detail><siram:Erreur xmlns:siram="urn:siram" {erreur}>'
        f"texte</siram:Erreur></{prefix}:Detail>"
        if erreur else ""
    )
    fault = (
        f'<{prefix}:Fault xmlns:{prefix}="{SOAP12}"><{prefix}:Code>'
        f"<{prefix}:Value>{prefix}:{code}</{prefix}:Value>{sub}"
        f"</{prefix}:Code><{prefix}:Reason><{prefix}:Text xml:lang=\"fr\">"
        f"raison</{prefix}:Text></{prefix}:Reason>{detail}</{prefix}:Fault>"
    )
    return _envelope(fault)


@pytest.mark.parametrize(
    ("code", "subcode", "erreur", "kind"),
    [
        ("Sender", "siram_100", 'code="desir_550" severite="erreur"',
         InsiConfigurationFault),
        ("Sender", "siram_100", None, InsiConfigurationFault),
        ("Sender", "siram_101", 'code="DESIR_560" severite="erreur"',
         InsiConfigurationFault),
        ("Sender", "DESIR_560", None, InsiConfigurationFault),
        ("Receiver", "siram_40", 'code="insi_102" severite="fatal"',
         InsiTransientFault),
        ("Receiver", "siram_40", 'code="desir_1020" severite="erreur"',
         InsiTransientFault),
        ("Receiver", "siram_40", None, InsiTransientFault),
        ("Sender", "siram_30", 'code="insi_24" severite="erreur"',
         InsiRequestFault),
        ("Receiver", "siram_99", 'code="inconnu" severite="erreur"',
         InsiTransientFault),
        ("Sender", "siram_99", 'code="inconnu" severite="erreur"',
         InsiRequestFault),
        ("MustUnderstand", None, None, InsiRequestFault),
    ],
)
def test_fault_classification(
    code: str,
    subcode: str | None,
    erreur: str | None,
    kind: type[InsiTransientFault | InsiRequestFault | InsiConfigurationFault],
) -> None:
    """The contract's table, then the SOAP code for unknown faults."""
    with pytest.raises(kind) as caught:
        parse_reply(_fault_xml(code, subcode, erreur), http_status=500)

    assert type(caught.value) is kind
    assert caught.value.fault.code == code
    assert caught.value.fault.subcode == subcode


def test_fault_qnames_lose_their_prefix_and_attributes_are_kept() -> None:
    """soap:siram_100 reads siram_100; severity and messageID as sent."""
    body = _fault_xml(
        "Sender",
        "siram_100",
        'code="desir_550" severite="fatal" messageID="uuid:1"',
        prefix="soap",
    )

    with pytest.raises(InsiConfigurationFault) as caught:
        parse_reply(body, http_status=500)

    assert caught.value.fault == FaultDetails(
        code="Sender",
        subcode="siram_100",
        detail_code="desir_550",
        severity="fatal",
        message_id="uuid:1",
        reason="raison",
    )


def test_fault_without_code_is_a_protocol_error() -> None:
    """A Fault without Code is not SOAP 1.2."""
    body = _envelope(f'<S:Fault xmlns:S="{SOAP12}"/>')

    with pytest.raises(InsiProtocolError, match="Code missing"):
        parse_reply(body, http_status=500)


def test_classify_is_usable_on_its_own() -> None:
    """classify takes FaultDetails from anywhere (the simulator, a log)."""
    fault = FaultDetails(None, None, "INSI_24", None, None, None)

    assert isinstance(classify(fault), InsiRequestFault)
    assert isinstance(
        classify(FaultDetails("Receiver", None, None, None, None, None)),
        InsiTransientFault,
    )
    assert isinstance(
        classify(FaultDetails(None, None, None, None, None, None)),
        InsiRequestFault,
    )
