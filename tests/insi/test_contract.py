"""The envelopes the worker sends: valid, complete, and built offline."""

from __future__ import annotations

import re
import shutil
import socket
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from worker.errors import ConfigurationError
from worker.insi.contract import (
    SCHEMA_DIR,
    Caller,
    Envelopes,
    LocalOnlyTransport,
    load_contract,
)
from worker.insi.model import TraitsSearch

from .support import CALLER

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
LPS = "urn:siram:lps:ctxlps"
BAM = "urn:siram:bam:ctxbam"
RECSANS = "http://www.cnamts.fr/INSiRecSans"
WSSE = (
    "http://docs.oasis-open.org/wss/2004/01/"
    "oasis-200401-wss-wssecurity-secext-1.0.xsd"
)

SEARCHES = [
    TraitsSearch("ADRTROIS", ("TOUSSAINT",), "M", "1960-01-01"),
    TraitsSearch(
        "ECETINSI", ("PIERRE-ALAIN", "MURIEL"), "M", "2009-07-14", "63220"
    ),
    TraitsSearch("DE VINCI", ("LEONARDO",), "M", "2014-02-01", "2B020"),
    TraitsSearch("D'ARC", ("JEANNE MARIE",), "F", "1979-03-28", "99100"),
    TraitsSearch("NESSI", (), "M", "2010-08-07"),
]

UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


def _standalone(element: etree._Element) -> etree._ElementTree:
    return etree.ElementTree(etree.fromstring(etree.tostring(element)))


def _parts(xml: bytes) -> dict[str, Any]:
    root = etree.fromstring(xml)
    header = root.find(f"{{{SOAP12}}}Header")
    body = root.find(f"{{{SOAP12}}}Body")
    assert header is not None and body is not None
    by_tag: dict[str, etree._Element] = {
        str(child.tag): child for child in header
    }
    return {
        "root": root,
        "header": by_tag,
        "header_tags": [child.tag for child in header],
        "body": body[0],
    }


def _shape(element: etree._Element) -> list[tuple[str, dict[str, str]]]:
    """Every element's path and attributes, text left out."""
    shape = []
    for node in element.iter():
        path = "/".join(
            etree.QName(a).localname
            for a in reversed([node, *node.iterancestors()])
        )
        namespace = etree.QName(node).namespace
        attributes = {str(k): str(v) for k, v in node.attrib.items()}
        shape.append((f"{namespace}:{path}", attributes))
    return shape


def _load_schema(folder: Path, name: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(folder / name)))


@pytest.fixture(scope="module")
def genuine(insi_kit: Path) -> dict[str, etree.XMLSchema]:
    """The Cnam's own schemas of the body and both contexts."""
    xsd = insi_kit / "wsdl" / "xsd"
    return {
        f"{{{RECSANS}}}RECSANSVITALE": _load_schema(
            xsd, "ServiceIdentiteCertifiee/INSi_RECSANS_INS.xsd"
        ),
        f"{{{LPS}}}ContexteLPS": _load_schema(
            xsd, "CTX/ROOT_ctxlps_CTXLPS_V01_00.xsd"
        ),
        f"{{{BAM}}}ContexteBAM": _load_schema(
            xsd, "CTX/ROOT_ctxbam_CTXBAM_V01_02.xsd"
        ),
    }


@pytest.fixture(scope="module")
def kit_request(insi_kit: Path) -> dict[str, Any]:
    """The envelope the qualification service accepted, split."""
    name = "accepted-rechercherInsAvecTraitsIdentite.xml"
    return _parts((insi_kit / "requests" / name).read_bytes())


@pytest.mark.parametrize("search", SEARCHES, ids=lambda s: s.birth_name)
def test_envelope_validates_against_the_genuine_schemas(
    envelopes: Envelopes,
    genuine: dict[str, etree.XMLSchema],
    search: TraitsSearch,
) -> None:
    """Body and both contexts are valid under the Cnam's XSDs."""
    parts = _parts(envelopes.build(search)[1])

    elements = [parts["body"], *parts["header"].values()]
    checked = 0
    for element in elements:
        schema = genuine.get(element.tag)
        if schema is not None:
            schema.assertValid(_standalone(element))
            checked += 1
    assert checked == 3


@pytest.mark.parametrize("search", SEARCHES, ids=lambda s: s.birth_name)
def test_envelope_validates_against_the_project_schemas(
    envelopes: Envelopes, search: TraitsSearch
) -> None:
    """The project's stricter schemas accept every envelope built."""
    xsd = SCHEMA_DIR / "xsd"
    schemas = {
        f"{{{RECSANS}}}RECSANSVITALE": _load_schema(xsd, "insi-recsans.xsd"),
        f"{{{LPS}}}ContexteLPS": _load_schema(xsd, "ctxlps.xsd"),
        f"{{{BAM}}}ContexteBAM": _load_schema(xsd, "ctxbam.xsd"),
        f"{{{WSA}}}Action": _load_schema(xsd, "ws-addressing.xsd"),
        f"{{{WSA}}}MessageID": _load_schema(xsd, "ws-addressing.xsd"),
    }
    parts = _parts(envelopes.build(search)[1])

    for element in [parts["body"], *parts["header"].values()]:
        schemas[element.tag].assertValid(_standalone(element))


def test_project_request_schema_refuses_what_insi_refuses() -> None:
    """Lowercase names and a sex other than M/F fail our schema."""
    schema = _load_schema(SCHEMA_DIR / "xsd", "insi-recsans.xsd")
    template = (
        f'<RECSANSVITALE xmlns="{RECSANS}"><NomNaissance>{{name}}'
        "</NomNaissance><Sexe>{sex}</Sexe></RECSANSVITALE>"
    )

    def valid(name: str, sex: str) -> bool:
        xml = template.format(name=name, sex=sex).encode()
        return schema.validate(etree.ElementTree(etree.fromstring(xml)))

    assert valid("DE VINCI", "M")
    assert not valid("De Vinci", "M")
    assert not valid("DUPONT", "I")
    assert not valid("DUPONT", "")


def test_envelope_has_the_headers_of_the_accepted_request(
    envelopes: Envelopes, kit_request: dict[str, Any]
) -> None:
    """Same header elements, children and attributes as the kit's."""
    ours = _parts(envelopes.build(SEARCHES[0])[1])

    assert set(ours["header"]) == set(kit_request["header"])
    for tag, kit_element in kit_request["header"].items():
        assert _shape(ours["header"][tag]) == _shape(kit_element), tag
    assert _shape(ours["body"]) == _shape(kit_request["body"])
    action = f"{{{WSA}}}Action"
    assert ours["header"][action].text == kit_request["header"][action].text


def test_envelope_is_soap12_without_to_nor_security(
    envelopes: Envelopes,
) -> None:
    """SOAP 1.2 envelope; no wsa:To, no wsse:Security, nothing else."""
    parts = _parts(envelopes.build(SEARCHES[1])[1])

    assert parts["root"].tag == f"{{{SOAP12}}}Envelope"
    namespaces = {etree.QName(e).namespace for e in parts["root"].iter()}
    assert WSSE not in namespaces
    assert parts["root"].find(f".//{{{WSA}}}To") is None
    assert sorted(parts["header_tags"]) == sorted([
        f"{{{LPS}}}ContexteLPS",
        f"{{{BAM}}}ContexteBAM",
        f"{{{WSA}}}Action",
        f"{{{WSA}}}MessageID",
    ])


def test_action_is_the_one_of_the_accepted_request(
    envelopes: Envelopes, kit_request: dict[str, Any]
) -> None:
    """The SOAP action and the SOAP 1.2 Content-Type that carries it."""
    action = kit_request["header"][f"{{{WSA}}}Action"].text

    assert envelopes.action == action
    assert envelopes.content_type == (
        f'application/soap+xml; charset=utf-8; action="{action}"'
    )


def test_temps_is_utc_with_milliseconds_and_z(envelopes: Envelopes) -> None:
    """A given instant is written in UTC, to the millisecond, with Z."""
    paris = timezone(timedelta(hours=2))
    now = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=paris)

    parts = _parts(envelopes.build(SEARCHES[0], now=now)[1])

    for context, ns in (("ContexteLPS", LPS), ("ContexteBAM", BAM)):
        temps = parts["header"][f"{{{ns}}}{context}"].find(f"{{{ns}}}Temps")
        assert temps is not None
        assert temps.text == "2024-05-06T05:08:09.123Z"


def test_temps_defaults_to_now(envelopes: Envelopes) -> None:
    """Without ``now`` the current UTC time is used, same format."""
    before = datetime.now(UTC).replace(microsecond=0)

    parts = _parts(envelopes.build(SEARCHES[0])[1])

    lps = parts["header"][f"{{{LPS}}}ContexteLPS"]
    temps = lps.findtext(f"{{{LPS}}}Temps")
    assert temps is not None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", temps)
    sent = datetime.strptime(temps, "%Y-%m-%dT%H:%M:%S.%fZ")
    assert sent.replace(tzinfo=UTC) >= before


def test_naive_now_is_refused(envelopes: Envelopes) -> None:
    """A datetime without a zone cannot be told apart from local time."""
    with pytest.raises(ValueError):
        envelopes.build(SEARCHES[0], now=datetime(2024, 1, 1))


def test_message_id_is_returned_and_prefixed(envelopes: Envelopes) -> None:
    """build returns the wsa:MessageID it wrote: uuid: and a UUID4."""
    message_id, xml = envelopes.build(SEARCHES[0])

    written = _parts(xml)["header"][f"{{{WSA}}}MessageID"].text
    assert written == message_id
    assert re.fullmatch(f"uuid:{UUID4}", message_id)


def _ids(xml: bytes) -> tuple[str, str, str]:
    header = _parts(xml)["header"]
    return (
        header[f"{{{WSA}}}MessageID"].text,
        header[f"{{{LPS}}}ContexteLPS"].findtext(f"{{{LPS}}}Id"),
        header[f"{{{BAM}}}ContexteBAM"].findtext(f"{{{BAM}}}Id"),
    )


def test_each_build_has_fresh_ids(envelopes: Envelopes) -> None:
    """New MessageID and context Id per call; both contexts share one."""
    first = _ids(envelopes.build(SEARCHES[0])[1])
    second = _ids(envelopes.build(SEARCHES[0])[1])

    assert first[0] != second[0]
    assert first[1] != second[1]
    assert first[1] == first[2] and second[1] == second[2]
    assert re.fullmatch(UUID4, first[1])
    assert first[0] != f"uuid:{first[1]}"


def test_caller_fills_both_contexts(envelopes: Envelopes) -> None:
    """IDAM with R=4, version, instance, name and Emetteur as configured."""
    header = _parts(envelopes.build(SEARCHES[0])[1])["header"]
    lps = header[f"{{{LPS}}}ContexteLPS"]
    bam = header[f"{{{BAM}}}ContexteBAM"]

    idam = lps.find(f"{{{LPS}}}LPS/{{{LPS}}}IDAM")
    assert idam is not None
    assert (idam.text, idam.get("R")) == (CALLER.idam, "4")
    software = lps.find(f"{{{LPS}}}LPS")
    assert software is not None
    assert software.findtext(f"{{{LPS}}}Version") == CALLER.software_version
    assert software.findtext(f"{{{LPS}}}Instance") == CALLER.instance
    assert software.findtext(f"{{{LPS}}}Nom") == CALLER.software_name
    assert lps.findtext(f"{{{LPS}}}Emetteur") == CALLER.emetteur
    assert bam.findtext(f"{{{BAM}}}Emetteur") == CALLER.emetteur
    couverture = bam.find(f"{{{BAM}}}COUVERTURE")
    assert couverture is not None and len(couverture) == 0


@pytest.mark.parametrize(
    "first_names", [(), ("LEONARDO",), ("PIERRE-ALAIN", "MURIEL FLORIANT")]
)
def test_one_prenom_per_first_name(
    envelopes: Envelopes, first_names: tuple[str, ...]
) -> None:
    """Each entry of first_names is one Prenom element, in order."""
    search = TraitsSearch("ECETINSI", first_names, "M", "2009-07-14")

    body = _parts(envelopes.build(search)[1])["body"]

    assert [p.text for p in body.findall(f"{{{RECSANS}}}Prenom")] == list(
        first_names
    )


@pytest.mark.parametrize("place", [None, "63220"])
def test_birth_place_only_when_given(
    envelopes: Envelopes, place: str | None
) -> None:
    """LieuNaissance appears, last, only when the search has one."""
    search = TraitsSearch("ECETINSI", ("MURIEL",), "M", "2009-07-14", place)

    body = _parts(envelopes.build(search)[1])["body"]

    lieu = body.findall(f"{{{RECSANS}}}LieuNaissance")
    assert [e.text for e in lieu] == ([] if place is None else [place])
    assert body[-1].tag.endswith("LieuNaissance") == (place is not None)


def test_envelope_is_utf8_xml(envelopes: Envelopes) -> None:
    """The bytes are a UTF-8 document with its declaration."""
    xml = envelopes.build(SEARCHES[3])[1]

    assert xml.startswith(b"<?xml")
    assert b"utf-8" in xml.split(b"?>", 1)[0].lower()
    assert "D'ARC" in xml.decode("utf-8")


@pytest.mark.parametrize(
    ("field", "value"),
    [("emetteur", ""), ("idam", " "), ("instance", "not-a-uuid")],
)
def test_unusable_caller_is_a_configuration_error(
    field: str, value: str
) -> None:
    """An empty Emetteur or IDAM, or a non-UUID instance, stops start-up."""
    values = {
        "idam": CALLER.idam,
        "software_name": CALLER.software_name,
        "software_version": CALLER.software_version,
        "instance": CALLER.instance,
        "emetteur": CALLER.emetteur,
        field: value,
    }

    with pytest.raises(ConfigurationError):
        Envelopes(Caller(**values))


def test_caller_from_settings_falls_back_on_the_certificate_ou() -> None:
    """An empty INS_WORKER_INSI_EMETTEUR means the certificate's OU."""
    from worker.settings import Settings

    assert Caller.from_settings(
        Settings(), certificate_ou="TESTOU"
    ).emetteur == "TESTOU"
    assert Caller.from_settings(
        Settings(insi_emetteur="SET"), certificate_ou="TESTOU"
    ).emetteur == "SET"


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Make every socket connection and name lookup fail, and record it."""
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise OSError("network forbidden in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def test_contract_loads_with_the_network_forbidden(
    no_network: list[object],
) -> None:
    """The WSDL and every schema load from schemas/insi, nowhere else."""
    contract = load_contract()

    assert no_network == []
    assert {p.name for p in contract.files} >= {
        "insi-icir-v1.wsdl",
        "ws-addressing.xsd",
        "ctxlps.xsd",
        "ctxbam.xsd",
        "insi-recsans.xsd",
    }
    assert all(p.is_relative_to(SCHEMA_DIR.resolve()) for p in contract.files)


def test_contract_files_name_no_remote_location() -> None:
    """No import or include in schemas/insi points to a URL."""
    remote = re.compile(
        r'<\w+:(import|include|redefine)\b[^>]*[lL]ocation="\w+:'
    )
    files = [*SCHEMA_DIR.rglob("*.xsd"), *SCHEMA_DIR.rglob("*.wsdl")]

    assert len(files) == 7
    for path in files:
        assert not remote.search(path.read_text()), path.name


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/ws-addr.xsd",
        "https://127.0.0.1:9/ws-addr.xsd",
        "ftp://127.0.0.1/ws-addr.xsd",
        "/etc/hostname",
        str(SCHEMA_DIR / ".." / "insi-elsewhere.xsd"),
    ],
)
def test_contract_transport_reads_local_contract_files_only(
    no_network: list[object], url: str
) -> None:
    """URLs and paths outside schemas/insi are refused without a try."""
    transport = LocalOnlyTransport(SCHEMA_DIR)

    with pytest.raises(ConfigurationError):
        transport.load(url)
    assert no_network == []


def test_contract_transport_never_sends(no_network: list[object]) -> None:
    """zeep's own GET and POST paths are closed."""
    transport = LocalOnlyTransport(SCHEMA_DIR)

    with pytest.raises(ConfigurationError):
        transport.get("http://127.0.0.1:9/lps", {}, {})
    with pytest.raises(ConfigurationError):
        transport.post("http://127.0.0.1:9/lps", b"", {})
    assert no_network == []


def _edited_contract(tmp_path: Path, old: str, new: str) -> Path:
    folder = tmp_path / "insi"
    shutil.copytree(SCHEMA_DIR, folder)
    wsdl = folder / "insi-icir-v1.wsdl"
    text = wsdl.read_text()
    assert old in text
    wsdl.write_text(text.replace(old, new, 1))
    return wsdl


def test_wsdl_importing_a_remote_schema_is_refused(
    tmp_path: Path, no_network: list[object]
) -> None:
    """A remote import fails start-up instead of being fetched."""
    remote = (
        '<xs:import namespace="urn:remote" '
        'schemaLocation="http://127.0.0.1:9/remote.xsd"/>\n'
    )
    wsdl = _edited_contract(
        tmp_path, "      <xs:import", remote + "      <xs:import"
    )

    with pytest.raises(ConfigurationError, match="ExternalReference"):
        load_contract(wsdl)
    assert no_network == []


def test_wsdl_with_a_dtd_is_refused(tmp_path: Path) -> None:
    """zeep's DTD and entity guards are on when the contract loads."""
    doctype = '<!DOCTYPE d [<!ENTITY e "x">]>\n<wsdl:definitions'
    wsdl = _edited_contract(tmp_path, "<wsdl:definitions", doctype)

    with pytest.raises(ConfigurationError, match="DTDForbidden"):
        load_contract(wsdl)


def test_loaded_contract_knows_the_traits_search() -> None:
    """The operation's action comes from the WSDL's binding."""
    from worker.insi.model import Operation

    spec = load_contract().spec(Operation.TRAITS_SEARCH)

    assert spec.action.endswith(":rechercherInsAvecTraitsIdentite")
