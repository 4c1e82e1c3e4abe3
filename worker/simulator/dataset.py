"""The simulator's registry of persons and how a traits search matches.

The default data set holds the Cnam's public test persons: those of the
kit's genuine responses with their ``TIQ`` traits exactly as INSi returns
them, and the qualification cases of the kit's README. Where the README
only gives a result, the person was made up here with a valid key.

Matching rule (documented in the README's words, implemented by
:meth:`Dataset.search`):

- ``NomNaissance``, ``Sexe`` and ``DateNaissance`` are equal;
- every ``Prenom`` sent matches: it is one of the person's first names,
  or it holds several names separated by spaces and equals the person's
  whole list (``ListePrenom``); no ``Prenom`` sent matches any person;
- ``LieuNaissance``, when sent, is equal.

No match gives ``01``, one ``00``, two or more ``02``. ``DE VINCI
LEONARDO`` is two persons born on the same day in different places, so
adding the birth place resolves the ``02`` to a ``00``.

A data set can be read from a JSON file (format in :func:`load_dataset`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.domain.ins import InsOid, compute_key
from worker.errors import ConfigurationError
from worker.insi.model import TraitsSearch
from worker.simulator.soap import Dialect

#: the ``format`` value of the JSON data set files this module reads
DATASET_FORMAT = "ins-worker-simulator-dataset/1"

_NIR13 = re.compile(r"\d{6}[A-Za-z0-9]\d{6}")
_KEY = re.compile(r"\d{2}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_PLACE = re.compile(r"[A-Za-z0-9]{5}")
#: what INSi accepts in names: uppercase A-Z, space, apostrophe, hyphen
_NAME = re.compile(r"[A-Z]+(?:[ '-]+[A-Z]+)*")


@dataclass(frozen=True, slots=True)
class RegisteredIns:
    """An INS of the registry: the 13 characters, key, OID, dates.

    Keys are kept as given, never recomputed: the registry's history may
    hold a key that fails the mod-97 check and the simulator must be able
    to send it.
    """

    nir13: str
    key: str
    oid: str = InsOid.NIR
    start: str | None = None
    end: str | None = None


@dataclass(frozen=True, slots=True)
class Identity:
    """One person of the registry, with the traits ``TIQ`` returns.

    ``cnda_history``, when set, replaces ``history`` in the CNDA dialect
    (the CNDA's sample for ``ECETINSI`` lists one more earlier INS than
    the live service). ``tiq_first_name`` is the ``TIQ/Prenom`` the CNDA
    dialect sends (``None``: no ``Prenom``, as in some CNDA samples).
    ``dialect`` overrides the server's dialect for this person only.
    """

    birth_name: str
    first_names: tuple[str, ...]
    sex: str
    birth_date: str
    birth_place: str
    active: RegisteredIns
    history: tuple[RegisteredIns, ...] = ()
    cnda_history: tuple[RegisteredIns, ...] | None = None
    tiq_first_name: str | None = None
    dialect: Dialect | None = None

    @property
    def first_names_list(self) -> str:
        """``ListePrenom``: the first names joined by single spaces."""
        return " ".join(self.first_names)

    def history_in(self, dialect: Dialect) -> tuple[RegisteredIns, ...]:
        """The earlier INS as sent in ``dialect``."""
        if dialect is Dialect.CNDA and self.cnda_history is not None:
            return self.cnda_history
        return self.history

    def matches(self, search: TraitsSearch) -> bool:
        """Whether ``search`` designates this person (the module's rule)."""
        if (
            search.birth_name != self.birth_name
            or search.sex != self.sex
            or search.birth_date != self.birth_date
        ):
            return False

        if search.birth_place and search.birth_place != self.birth_place:
            return False

        return all(self._first_name_matches(n) for n in search.first_names)

    def _first_name_matches(self, sent: str) -> bool:
        if sent in self.first_names:
            return True
        # several names in one Prenom: only the whole list is accepted
        return " " in sent and " ".join(sent.split()) == self.first_names_list


class Dataset:
    """An immutable collection of identities searched by traits."""

    def __init__(self, identities: Iterable[Identity] = ()) -> None:
        self._identities = tuple(identities)

    def __iter__(self) -> Iterator[Identity]:
        return iter(self._identities)

    def __len__(self) -> int:
        return len(self._identities)

    def search(self, search: TraitsSearch) -> list[Identity]:
        """Every identity the search designates."""
        return [i for i in self._identities if i.matches(search)]

    def extended(self, identities: Iterable[Identity]) -> Dataset:
        """A new data set with ``identities`` added after these."""
        return Dataset((*self._identities, *identities))


def _nir(nir13: str, key: str | None = None, **dates: str) -> RegisteredIns:
    # a made-up person gets the key the mod-97 rule gives
    return RegisteredIns(nir13, key or compute_key(nir13), **dates)


def default_identities() -> tuple[Identity, ...]:
    """The Cnam's public test persons and the README's cases."""
    ecetinsi_earlier = _nir(
        "2090763220834", "39", start="2019-03-01", end="2019-02-28"
    )
    corse = _nir("180032B020401", "23")
    return (
        Identity(
            "ECETINSI",
            ("PIERRE-ALAIN", "MURIEL", "FLORIANT"),
            "M",
            "2009-07-14",
            "63220",
            _nir("1090763220834", "89"),
            history=(ecetinsi_earlier,),
            cnda_history=(ecetinsi_earlier, _nir("2090663220123", "55")),
        ),
        Identity(
            "CORSE",
            ("ANTHONY",),
            "M",
            "1980-03-02",
            "2B020",
            corse,
            history=(corse,),
            tiq_first_name="ANTHONY",
        ),
        Identity(
            "ADRTROIS",
            ("TOUSSAINT",),
            "M",
            "1960-01-01",
            "2B020",
            _nir("160012B020777", "13"),
            tiq_first_name="TOUSSAINT",
        ),
        Identity(
            "ADRUN",
            ("ZOE",),
            "F",
            "1975-12-31",
            "63220",
            _nir("2751263220749", "74"),
            tiq_first_name="ZOE",
        ),
        Identity(
            "NESSI",
            ("MICHELANGELO", "ANTHONY"),
            "M",
            "2010-08-07",
            "63220",
            _nir("1100863220830", "60"),
            tiq_first_name="MICHELANGELO",
        ),
        # made up: born in Portugal (99139), found with CATARINA only
        Identity(
            "TCHITCHI",
            ("CATARINA", "MARIA"),
            "F",
            "1936-06-21",
            "99139",
            _nir("2360699139045"),
            tiq_first_name="CATARINA",
        ),
        # made up: same traits, two birth places, hence 02 without place
        Identity(
            "DE VINCI",
            ("LEONARDO",),
            "M",
            "2014-02-01",
            "63220",
            _nir("1140263220118"),
            tiq_first_name="LEONARDO",
        ),
        Identity(
            "DE VINCI",
            ("LEONARDO", "PIERO"),
            "M",
            "2014-02-01",
            "99127",
            _nir("1140299127021"),
            tiq_first_name="LEONARDO",
        ),
    )


def default_dataset() -> Dataset:
    """The data set the simulator serves unless told otherwise."""
    return Dataset(default_identities())


def load_dataset(path: Path) -> Dataset:
    """Read a JSON data set file.

    ::

        {
          "format": "ins-worker-simulator-dataset/1",
          "extends_default": true,
          "identities": [
            {
              "birth_name": "DUPONT",
              "first_names": ["JEANNE", "MARIE"],
              "sex": "F",
              "birth_date": "1990-05-17",
              "birth_place": "75056",
              "ins": {"nir13": "2900575056123", "key": "..."},
              "history": [{"nir13": "...", "key": "...",
                           "oid": "...", "start": "YYYY-MM-DD",
                           "end": "YYYY-MM-DD"}],
              "cnda_history": [],
              "tiq_first_name": "JEANNE",
              "dialect": "live"
            }
          ]
        }

    Only ``identities`` and, in each, the five traits and ``ins`` are
    required. A missing ``key`` is computed; ``oid`` defaults to the NIR
    one; ``tiq_first_name`` defaults to the first first-name (``null``
    for none). With ``extends_default`` (the default) the identities are
    added to the public test persons, otherwise they replace them.
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(
            f"simulator data set {path} cannot be read: {exc}"
        ) from exc

    return dataset_from_json(document)


def dataset_from_json(document: Any) -> Dataset:
    """Build a data set from the decoded JSON of :func:`load_dataset`."""
    if not isinstance(document, dict):
        raise ConfigurationError("simulator data set: not a JSON object")
    if document.get("format", DATASET_FORMAT) != DATASET_FORMAT:
        raise ConfigurationError(
            f"simulator data set: format must be {DATASET_FORMAT}"
        )
    entries = document.get("identities")
    if not isinstance(entries, list):
        raise ConfigurationError("simulator data set: identities missing")

    identities = [_identity(n, e) for n, e in enumerate(entries)]

    if document.get("extends_default", True):
        return default_dataset().extended(identities)
    return Dataset(identities)


def _identity(index: int, entry: Any) -> Identity:
    where = f"simulator data set: identities[{index}]"
    if not isinstance(entry, dict):
        raise ConfigurationError(f"{where} is not an object")
    first_names = entry.get("first_names")
    if (
        not isinstance(first_names, list)
        or not first_names
        or not all(
            isinstance(n, str) and _NAME.fullmatch(n) and " " not in n
            for n in first_names
        )
    ):
        raise ConfigurationError(
            f"{where}.first_names: a list of names without spaces"
        )
    sex = _text(entry, "sex", where)
    if sex not in ("M", "F"):
        raise ConfigurationError(f"{where}.sex must be M or F")

    tiq_first_name = entry.get("tiq_first_name", first_names[0])
    if tiq_first_name is not None and not isinstance(tiq_first_name, str):
        raise ConfigurationError(f"{where}.tiq_first_name: a string or null")

    dialect = entry.get("dialect")
    cnda = entry.get("cnda_history")
    return Identity(
        birth_name=_text(entry, "birth_name", where, _NAME),
        first_names=tuple(first_names),
        sex=sex,
        birth_date=_text(entry, "birth_date", where, _DATE),
        birth_place=_text(entry, "birth_place", where, _PLACE),
        active=_ins(entry.get("ins"), f"{where}.ins"),
        history=_ins_list(entry.get("history", []), f"{where}.history"),
        cnda_history=(
            None if cnda is None
            else _ins_list(cnda, f"{where}.cnda_history")
        ),
        tiq_first_name=tiq_first_name,
        dialect=_dialect(dialect, where) if dialect is not None else None,
    )


def _text(
    entry: Mapping[str, Any],
    name: str,
    where: str,
    pattern: re.Pattern[str] | None = None,
) -> str:
    value = entry.get(name)
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{where}.{name}: a non-empty string")
    if pattern is not None and not pattern.fullmatch(value):
        raise ConfigurationError(f"{where}.{name}: wrong format")
    return value


def _ins(entry: Any, where: str) -> RegisteredIns:
    if not isinstance(entry, dict):
        raise ConfigurationError(f"{where} is not an object")
    nir13 = _text(entry, "nir13", where, _NIR13)
    key = entry.get("key")
    if key is not None and not (isinstance(key, str) and _KEY.fullmatch(key)):
        raise ConfigurationError(f"{where}.key: two digits")
    oid = entry.get("oid", InsOid.NIR)
    start = entry.get("start")
    end = entry.get("end")
    for name, value in (("oid", oid), ("start", start), ("end", end)):
        if value is not None and not isinstance(value, str):
            raise ConfigurationError(f"{where}.{name}: a string")
    return RegisteredIns(nir13, key or compute_key(nir13), oid, start, end)


def _ins_list(entries: Any, where: str) -> tuple[RegisteredIns, ...]:
    if not isinstance(entries, list):
        raise ConfigurationError(f"{where} is not a list")
    return tuple(_ins(e, f"{where}[{n}]") for n, e in enumerate(entries))


def _dialect(value: Any, where: str) -> Dialect:
    try:
        return Dialect(value)
    except ValueError:
        raise ConfigurationError(f"{where}.dialect: live or cnda") from None
