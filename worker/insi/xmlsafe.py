"""The one hardened XML parse every reader of INSi traffic goes through.

INSi replies, simulator requests and files handed to ``ins-worker insi
parse`` are all untrusted. They are refused before parsing when they
declare a DTD or an entity, when they are not in an ASCII-compatible
encoding (so that the byte scan cannot be dodged), or when they are too
large; after parsing, when the tree is too deep or a text node too long.
The lxml parser itself never loads a DTD, never resolves an entity and
never touches the network.
"""

from __future__ import annotations

import threading

from lxml import etree

from worker.errors import InsiProtocolError

#: an INSi reply is about 3 KB; a long history stays far below this
MAX_BYTES = 1_048_576

#: a SOAP reply nests about seven levels deep
MAX_DEPTH = 32

#: the longest text INSi sends is a fault's reason, a few hundred bytes
MAX_TEXT = 65_536

_FORBIDDEN_MARKUP = (b"<!DOCTYPE", b"<!ENTITY", b"<!ELEMENT", b"<!ATTLIST")

# UTF-16 and UTF-32 byte-order marks; a BOM-less UTF-16 document shows
# NUL bytes instead, which the scan below also catches.
_WIDE_BOMS = (b"\xff\xfe", b"\xfe\xff")


class XmlRefused(InsiProtocolError):
    """A document refused by the hardened parse.

    ``reason`` is one of ``too_large``, ``dtd_forbidden``,
    ``unsupported_encoding``, ``not_xml``, ``too_deep`` and
    ``text_too_large``; the message never quotes the document.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"XML refused ({reason}): {detail}")
        self.reason = reason
        self.detail = detail


_local = threading.local()


def _parser() -> etree.XMLParser:
    # lxml parsers are not thread-safe: one per thread, built once.
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            huge_tree=False,
            load_dtd=False,
            dtd_validation=False,
            remove_pis=True,
            remove_comments=True,
            collect_ids=False,
        )
        _local.parser = parser
    return parser


def _scan(data: bytes, max_bytes: int) -> None:
    if len(data) > max_bytes:
        raise XmlRefused("too_large", f"more than {max_bytes} bytes")

    if data.startswith(_WIDE_BOMS) or b"\x00" in data:
        raise XmlRefused("unsupported_encoding", "UTF-8 expected")

    for markup in _FORBIDDEN_MARKUP:
        if markup in data:
            raise XmlRefused("dtd_forbidden", "DTD or entity declaration")


def _check_shape(root: etree._Element, max_depth: int, max_text: int) -> None:
    depth = 0
    for event, element in etree.iterwalk(root, events=("start", "end")):
        if event == "end":
            depth -= 1
            continue

        depth += 1
        if depth > max_depth:
            raise XmlRefused("too_deep", f"more than {max_depth} levels")

        # Entities are never expanded, so every text is bounded by the
        # document's size; this bound is about what a reader will copy.
        for text in (element.text, element.tail):
            if text is not None and len(text) > max_text:
                raise XmlRefused(
                    "text_too_large", f"a text node over {max_text} chars"
                )


def parse(
    data: bytes,
    *,
    max_bytes: int = MAX_BYTES,
    max_depth: int = MAX_DEPTH,
    max_text: int = MAX_TEXT,
) -> etree._Element:
    """Parse untrusted XML into its root element, or raise `XmlRefused`."""
    _scan(data, max_bytes)

    try:
        root = etree.fromstring(data, parser=_parser())
    except etree.XMLSyntaxError as exc:
        # Position only: libxml2's message may quote the document.
        raise XmlRefused(
            "not_xml", f"not well-formed at line {exc.lineno}"
        ) from None
    except ValueError:
        raise XmlRefused("not_xml", "not an XML document") from None

    # A second line of defence behind the byte scan.
    if root.getroottree().docinfo.internalDTD is not None:
        raise XmlRefused("dtd_forbidden", "DTD declaration")

    _check_shape(root, max_depth, max_text)
    return root
