"""Normalised copies of identity traits, and their comparison.

INSi takes names in uppercase A-Z, space, apostrophe and hyphen. One
transformation serves both the request sent to INSi and the comparison of
desk traits with returned ones; it works on copies, the traits stored and
published stay exactly as entered or returned.

The transformation, in this order of intent:

- typographic apostrophes (U+2019, U+2018, U+02BC, grave and acute
  accents, prime) become ``'``; typographic hyphens and dashes (U+2010 to
  U+2014, minus sign) become ``-``; runs of hyphens are kept, since
  ``--`` separates the two halves of a double family name;
- ligatures are expanded: Æ→AE, Œ→OE, and ß→SS (its own uppercase);
  letters with a stroke lose it like any diacritic: Ø→O, Ł→L, Đ→D;
- compatibility forms are decomposed (ﬁ→FI, full-width letters) and
  diacritics dropped (é→E, ç→C);
- invisible format characters (soft hyphen, zero-width space) go;
- uppercase; every run of white space becomes one space, trimmed.

What is then still outside the INSi alphabet cannot be normalised: the
INSi copy refuses it, the comparison copy keeps it (it can only make the
comparison fail, never succeed wrongly).
"""

from __future__ import annotations

import re
import unicodedata

from worker.domain.request import DeskTraits
from worker.errors import RequestRefused
from worker.insi.model import ReturnedTraits

_APOSTROPHES = "\u2019\u2018\u02bc\u0060\u00b4\u2032\uff07"
_HYPHENS = "\u2010\u2011\u2012\u2013\u2014\u2212\ufe63\uff0d"
_REPLACEMENTS: dict[str, str] = {
    "Æ": "AE",
    "æ": "AE",
    "Œ": "OE",
    "œ": "OE",
    # ß uppercases to SS by itself; its capital does not.
    "ẞ": "SS",
    "Ø": "O",
    "ø": "O",
    "Ł": "L",
    "ł": "L",
    "Đ": "D",
    "đ": "D",
    **{c: "'" for c in _APOSTROPHES},
    **{c: "-" for c in _HYPHENS},
}
_TABLE = str.maketrans(_REPLACEMENTS)

_INSI_NAME = re.compile(r"[A-Z' -]*")
_LETTER = re.compile(r"[A-Z]")


def _transform(value: str) -> str:
    # The table runs before decomposition (an acute accent alone would
    # decompose into a space and a combining accent) and after it (U+0149
    # decomposes into U+02BC and n).
    text = value.translate(_TABLE).upper()
    text = unicodedata.normalize("NFKD", text)
    text = "".join(
        c
        for c in text
        if not unicodedata.combining(c) and unicodedata.category(c) != "Cf"
    )
    text = text.translate(_TABLE).upper()
    return " ".join(text.split())


def comparison_copy(value: str | None) -> str:
    """The copy used to compare traits; never raises (``None`` → "")."""
    if value is None:
        return ""
    return _transform(value)


def normalise_for_insi(value: str, field: str) -> str:
    """The copy sent to INSi for a name.

    Raises ``RequestRefused`` (``unsupported_characters``) for what cannot
    be normalised, and (``missing_trait``) for a name without any letter;
    the detail names ``field``, never the value.
    """
    text = _transform(value)

    if not _INSI_NAME.fullmatch(text):
        raise RequestRefused(
            "unsupported_characters",
            f"{field} has characters INSi does not accept",
        )
    if not _LETTER.search(text):
        raise RequestRefused("missing_trait", f"{field} has no letter")
    return text


def _first_name_list(names: list[str]) -> list[str]:
    # A desk entry or the registry's list may hold several names in one
    # string: compare name by name.
    return comparison_copy(" ".join(names)).split()


def compare(desk: DeskTraits, returned: ReturnedTraits) -> list[str]:
    """The traits on which the desk and the registry disagree.

    - ``birth_name``, ``sex``: comparison copies must be equal;
    - ``first_name``: the desk's first first-name must be the registry's
      first first-name (RNIV);
    - ``first_names``: the desk's list may stop early (it is then a
      prefix of the registry's), but every first name it gives must be
      the registry's one at the same place; another order, an extra or
      a different name is a mismatch;
    - ``birth_date``: equal as written (``YYYY-MM-DD`` on both sides);
    - ``birth_place``: compared only when both sides know it, and then a
      difference is a mismatch like the others (our reading: it is one
      of the five strict traits, and a human resolving a false mismatch,
      say after a merger of communes, costs less than a wrong INS).

    A trait the registry left out differs from any the desk gave (the
    birth place excepted).
    """
    mismatched: list[str] = []
    if comparison_copy(desk.birth_name) != comparison_copy(
        returned.birth_name
    ):
        mismatched.append("birth_name")

    desk_names = _first_name_list(list(desk.first_names))
    registry_names = _first_name_list(returned.first_names)
    desk_first = desk_names[0] if desk_names else ""
    if desk_first != comparison_copy(returned.first_name):
        mismatched.append("first_name")
    elif desk_names[1:] != registry_names[1 : len(desk_names)]:
        mismatched.append("first_names")

    if comparison_copy(desk.sex) != comparison_copy(returned.sex):
        mismatched.append("sex")
    if returned.birth_date is None or (
        desk.birth_date.strip() != returned.birth_date.strip()
    ):
        mismatched.append("birth_date")

    both_known = bool(desk.birth_place and returned.birth_place)
    if both_known and comparison_copy(desk.birth_place) != comparison_copy(
        returned.birth_place
    ):
        mismatched.append("birth_place")
    return mismatched
