"""The hardened parse: hostile XML is refused before it can do harm."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from worker.errors import InsiProtocolError
from worker.insi import xmlsafe
from worker.insi.reply import parse_reply

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<lolz>&lol3;</lolz>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<r>&x;</r>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE r SYSTEM "http://127.0.0.1:9/evil.dtd">
<r/>"""

PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p.dtd"> %p;]>
<r/>"""


@pytest.mark.parametrize(
    "data",
    [BILLION_LAUGHS, EXTERNAL_ENTITY, EXTERNAL_DTD, PARAMETER_ENTITY],
    ids=["billion-laughs", "external-entity", "external-dtd", "parameter"],
)
def test_dtd_and_entities_are_refused(data: bytes) -> None:
    """Any DOCTYPE or ENTITY declaration: refused before parsing."""
    with pytest.raises(xmlsafe.XmlRefused) as caught:
        xmlsafe.parse(data)

    assert caught.value.reason == "dtd_forbidden"


def test_dtd_in_utf16_cannot_dodge_the_scan() -> None:
    """A wide encoding would hide the markup from a byte scan: refused."""
    for data in (
        EXTERNAL_ENTITY.decode().encode("utf-16"),
        EXTERNAL_ENTITY.decode().encode("utf-16-le"),
    ):
        with pytest.raises(xmlsafe.XmlRefused) as caught:
            xmlsafe.parse(data)

        assert caught.value.reason == "unsupported_encoding"


def test_refusal_is_a_protocol_error_without_content() -> None:
    """The error is an InsiProtocolError and quotes nothing it read."""
    secret = b"<r>ADRUN ZOE 2751263220749</r"

    with pytest.raises(InsiProtocolError) as caught:
        xmlsafe.parse(secret)

    assert caught.value.reason == "not_xml"  # type: ignore[attr-defined]
    assert "ADRUN" not in str(caught.value)
    assert "2751263220749" not in str(caught.value)


def test_oversize_document_is_refused_unread() -> None:
    """More bytes than the limit: refused without parsing."""
    data = b"<r>" + b"a" * 100 + b"</r>"

    with pytest.raises(xmlsafe.XmlRefused) as caught:
        xmlsafe.parse(data, max_bytes=50)

    assert caught.value.reason == "too_large"
    assert xmlsafe.parse(data, max_bytes=len(data)).tag == "r"


def test_default_size_limit_applies() -> None:
    """The default limit refuses a document just over it."""
    filler = b"a" * xmlsafe.MAX_BYTES
    with pytest.raises(xmlsafe.XmlRefused) as caught:
        xmlsafe.parse(b"<r>" + filler + b"</r>")

    assert caught.value.reason == "too_large"


def test_deep_nesting_is_refused() -> None:
    """Deeper than the limit: refused, at the default limit too."""
    depth = xmlsafe.MAX_DEPTH + 1
    data = b"<a>" * depth + b"</a>" * depth

    with pytest.raises(xmlsafe.XmlRefused) as caught:
        xmlsafe.parse(data)

    assert caught.value.reason == "too_deep"
    shallow = b"<a>" * (depth - 1) + b"</a>" * (depth - 1)
    assert xmlsafe.parse(shallow).tag == "a"


def test_huge_text_node_is_refused() -> None:
    """A text (or tail) longer than the limit: refused."""
    for data in (
        b"<r><t>" + b"x" * 101 + b"</t></r>",
        b"<r><t/>" + b"x" * 101 + b"</r>",
    ):
        with pytest.raises(xmlsafe.XmlRefused) as caught:
            xmlsafe.parse(data, max_text=100)

        assert caught.value.reason == "text_too_large"


def test_xinclude_is_not_processed(tmp_path: Path) -> None:
    """An xi:include stays an element: nothing is read from disk."""
    target = tmp_path / "secret.txt"
    target.write_text("SECRET")
    data = (
        '<r xmlns:xi="http://www.w3.org/2001/XInclude">'
        f'<xi:include href="{target}" parse="text"/></r>'
    ).encode()

    root = xmlsafe.parse(data)

    assert b"SECRET" not in etree.tostring(root)
    assert len(root) == 1


def test_processing_instructions_and_comments_are_dropped() -> None:
    """A stylesheet PI is neither kept nor followed."""
    data = (
        b'<?xml version="1.0"?><?xml-stylesheet href="http://127.0.0.1:9/'
        b's.xsl"?><!-- c --><r><!-- d --><t>v</t></r>'
    )

    root = xmlsafe.parse(data)

    assert [child.tag for child in root] == ["t"]


def test_hostile_reply_never_reaches_the_reader() -> None:
    """parse_reply goes through the hardened parse."""
    with pytest.raises(xmlsafe.XmlRefused):
        parse_reply(BILLION_LAUGHS)
