"""Hostile XML replies, for the worker's tests of its hardened parser.

Each reply is a ``01`` ``RESULTAT`` whose ``LibelleCR`` carries the
attack, so that a parser that swallows it would return a plausible
result: the test then sees the attack succeed instead of an error.
"""

from __future__ import annotations

from lxml import etree

from worker.insi.model import CodeCR
from worker.simulator.results import resultat_tree
from worker.simulator.soap import RESULTAT_NS, Dialect, serialise

#: the classic "billion laughs": 10 levels of 10 references, 10**9 copies
BOMB_LEVELS = 10

#: above libxml2's 10 MB limit on one text node without ``huge_tree``
HUGE_TEXT_BYTES = 12 * 1024 * 1024

#: far above libxml2's default depth limit (256) without ``huge_tree``
NESTING_DEPTH = 10_000

_MARKER = "SIMULATOR-PAYLOAD-MARKER"


def _label() -> tuple[etree._Element, etree._Element]:
    root, resultat = resultat_tree(CodeCR.NOT_FOUND, Dialect.LIVE)
    label = resultat.find(f"{{{RESULTAT_NS}}}CR/{{{RESULTAT_NS}}}LibelleCR")
    if label is None:
        raise AssertionError("RESULTAT built without LibelleCR")
    label.text = None
    return root, label


def external_entity_reply(url: str) -> bytes:
    """A ``DOCTYPE`` declaring an external entity at ``url``, referenced.

    Point ``url`` at the simulator's canary so that a fetch is counted.
    """
    root, label = _label()
    label.append(etree.Entity("ext"))
    doctype = f'<!DOCTYPE soap:Envelope [<!ENTITY ext SYSTEM "{url}">]>'
    return serialise(root, doctype=doctype)


def entity_bomb_reply(levels: int = BOMB_LEVELS) -> bytes:
    """Nested internal entities expanding to 10 ** ``levels`` copies."""
    root, label = _label()
    label.append(etree.Entity(f"lol{levels - 1}"))
    declarations = ['<!ENTITY lol0 "lol">']
    for level in range(1, levels):
        refs = f"&lol{level - 1};" * 10
        declarations.append(f'<!ENTITY lol{level} "{refs}">')
    doctype = f"<!DOCTYPE soap:Envelope [{''.join(declarations)}]>"
    return serialise(root, doctype=doctype)


def huge_text_reply(size: int = HUGE_TEXT_BYTES) -> bytes:
    """A ``LibelleCR`` of ``size`` characters."""
    return _spliced(b"A" * size)


def deep_nesting_reply(depth: int = NESTING_DEPTH) -> bytes:
    """``depth`` elements nested inside ``LibelleCR``."""
    return _spliced(b"<x>" * depth + b"</x>" * depth)


def _spliced(payload: bytes) -> bytes:
    # lxml would serialise a deep tree slowly: splice the bytes instead
    root, label = _label()
    label.text = _MARKER
    return serialise(root).replace(_MARKER.encode(), payload, 1)
