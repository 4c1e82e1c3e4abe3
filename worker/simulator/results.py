"""``RESULTAT`` replies to a traits search, in the live or CNDA dialect.

The live dialect follows the published schema order and leaves out
``TIQ/Prenom``; the CNDA dialect sends ``TIQ/Prenom`` when the person has
one and puts ``DateDeb``/``DateFin`` before ``IdIndividu`` in
``INSHISTO``, as the CNDA's samples do (and the schema forbids).
"""

from __future__ import annotations

from typing import Any, cast

from lxml import etree

from worker.insi.model import CodeCR
from worker.simulator.dataset import Identity, RegisteredIns
from worker.simulator.soap import (
    RECSANS_NS,
    RECVIT_NS,
    RESULTAT_NS,
    Dialect,
    envelope,
    result_body,
    serialise,
)

#: ``LibelleCR`` of each ``CodeCR``, exactly as INSi sends them
LABELS: dict[CodeCR, str] = {
    CodeCR.FOUND: "OK",
    CodeCR.NOT_FOUND: "Aucune identite trouvee",
    CodeCR.SEVERAL: "Plusieurs identites trouvees",
}

#: prefixes each dialect declares for the two request namespaces
_REQUEST_PREFIXES: dict[Dialect, dict[str, str]] = {
    Dialect.LIVE: {"ns0": RECVIT_NS, "ns1": RECSANS_NS},
    Dialect.CNDA: {"ns3": RECVIT_NS, "ns2": RECSANS_NS},
}


def _child(
    parent: etree._Element, name: str, text: str | None = None
) -> etree._Element:
    element = etree.SubElement(parent, f"{{{RESULTAT_NS}}}{name}")
    if text is not None:
        element.text = text
    return element


def resultat_tree(
    code: CodeCR, dialect: Dialect
) -> tuple[etree._Element, etree._Element]:
    """An envelope holding a ``RESULTAT`` with its ``CR``; and the latter.

    The caller adds ``INDIVIDU`` or, for hostile replies, tampers with it.
    """
    root = envelope()
    body = result_body(root, dialect)
    nsmap: dict[str | None, str] = {None: RESULTAT_NS}
    nsmap.update(_REQUEST_PREFIXES[dialect])
    # lxml-stubs leave out the default (None) prefix lxml accepts
    resultat = etree.SubElement(
        body, f"{{{RESULTAT_NS}}}RESULTAT", nsmap=cast(Any, nsmap)
    )
    cr = _child(resultat, "CR")
    _child(cr, "CodeCR", code.value)
    _child(cr, "LibelleCR", LABELS[code])
    return root, resultat


def _ins(
    parent: etree._Element,
    name: str,
    ins: RegisteredIns,
    dates_first: bool,
) -> None:
    element = _child(parent, name)
    if dates_first:
        _dates(element, ins)
    matricule = _child(element, "IdIndividu")
    _child(matricule, "NumIdentifiant", ins.nir13)
    _child(matricule, "Cle", ins.key)
    _child(element, "OID", ins.oid)
    if not dates_first:
        _dates(element, ins)


def _dates(element: etree._Element, ins: RegisteredIns) -> None:
    if ins.start is not None:
        _child(element, "DateDeb", ins.start)
    if ins.end is not None:
        _child(element, "DateFin", ins.end)


def found_reply(identity: Identity, dialect: Dialect) -> bytes:
    """``00``: the one person's active INS, history and traits."""
    root, resultat = resultat_tree(CodeCR.FOUND, dialect)
    cnda = dialect is Dialect.CNDA
    individu = _child(resultat, "INDIVIDU")

    _ins(individu, "INSACTIF", identity.active, dates_first=False)
    for earlier in identity.history_in(dialect):
        _ins(individu, "INSHISTO", earlier, dates_first=cnda)

    tiq = _child(individu, "TIQ")
    _child(tiq, "NomNaissance", identity.birth_name)
    if cnda and identity.tiq_first_name is not None:
        _child(tiq, "Prenom", identity.tiq_first_name)
    _child(tiq, "ListePrenom", identity.first_names_list)
    _child(tiq, "Sexe", identity.sex)
    _child(tiq, "DateNaissance", identity.birth_date)
    _child(tiq, "LieuNaissance", identity.birth_place)

    return serialise(root)


def empty_reply(code: CodeCR, dialect: Dialect) -> bytes:
    """``01`` or ``02``: the report alone, without ``INDIVIDU``."""
    if code is CodeCR.FOUND:
        raise ValueError("a 00 reply needs an identity")
    root, _ = resultat_tree(code, dialect)
    return serialise(root)
