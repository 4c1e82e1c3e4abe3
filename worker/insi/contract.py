"""The INSi contract: the project's WSDL, loaded once, and its envelopes.

The WSDL and its schemas live in ``schemas/insi/`` (`worker.paths`).
They are loaded with zeep at start-up through a transport that reads
files under that folder only, so nothing is ever fetched from the
network. `Envelopes` then builds each request with zeep from the
binding, headers included.
"""

from __future__ import annotations

import functools
import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse
from xml.sax.saxutils import escape

import zeep
import zeep.exceptions
from lxml import etree
from zeep.wsdl import Document

from worker.errors import ConfigurationError
from worker.insi.model import Operation, TraitsSearch
from worker.paths import WSDL_DIR

if TYPE_CHECKING:
    from worker.settings import Settings

logger = logging.getLogger(__name__)

#: the contract's folder, in a checkout or in an installed wheel
SCHEMA_DIR = WSDL_DIR
WSDL_PATH = SCHEMA_DIR / "insi-icir-v1.wsdl"

SERVICE = "ICIR-v1"
PORT = "ICIRService"

SOAP12_NS = "http://www.w3.org/2003/05/soap-envelope"
WSA_NS = "http://www.w3.org/2005/08/addressing"
CTXLPS_NS = "urn:siram:lps:ctxlps"
CTXBAM_NS = "urn:siram:bam:ctxbam"
RECSANS_NS = "http://www.cnamts.fr/INSiRecSans"

#: readable prefixes on the envelope; INSi binds by namespace only
PREFIXES = {
    "ctxlps": CTXLPS_NS,
    "ctxbam": CTXBAM_NS,
    "wsa": WSA_NS,
    "insi_recsans_ins": RECSANS_NS,
}

CTXLPS_VERSION = "01_00"
CTXBAM_VERSION = "01_02"

#: the ``R`` attribute of ``IDAM``: the number is an authorisation
IDAM_REFERENCE = "4"


class LocalOnlyTransport(zeep.Transport):
    """A zeep transport that reads contract files under one folder only.

    Any URL with a network scheme, or any path outside ``root``, raises
    `ConfigurationError`: the contract must be complete on disk.
    ``loaded`` lists what was read, for tests and diagnostics.
    """

    def __init__(self, root: Path) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.root = root.resolve()
        self.loaded: list[Path] = []

    def _local_path(self, url: str) -> Path:
        parsed = urlparse(url)
        if parsed.scheme == "file":
            path = Path(unquote(parsed.path))
        elif parsed.scheme:
            raise ConfigurationError(
                f"the INSi contract refers to {parsed.scheme}: URL "
                f"{url}; every schema must be local"
            )
        else:
            path = Path(url)

        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            raise ConfigurationError(
                f"the INSi contract refers to {resolved}, outside {self.root}"
            )
        return resolved

    def load(self, url: str) -> bytes:
        """Read one contract file; refuse anything that is not local."""
        path = self._local_path(url)
        self.loaded.append(path)
        return path.read_bytes()

    def _load_remote_data(self, url: str) -> bytes:
        raise ConfigurationError(f"refusing to fetch {url}")

    def get(self, address: str, params: Any, headers: Any) -> Any:
        """Never used: the worker posts through its own transport."""
        raise ConfigurationError(f"refusing to GET {address}")

    def post(self, address: str, message: Any, headers: Any) -> Any:
        """Never used: the worker posts through its own transport."""
        raise ConfigurationError(f"refusing to POST to {address}")


def soap12_content_type(action: str) -> str:
    """The SOAP 1.2 media type; the action travels in it, not SOAPAction."""
    return f'application/soap+xml; charset=utf-8; action="{action}"'


@dataclass(frozen=True, slots=True)
class OperationSpec:
    """One operation of the contract and how it is called over HTTP.

    ``bound`` is zeep's binding operation, which serialises the message.
    """

    operation: Operation
    action: str
    bound: Any = field(default=None, compare=False, repr=False)

    @property
    def content_type(self) -> str:
        """The Content-Type header of a call to this operation."""
        return soap12_content_type(self.action)


@dataclass(frozen=True, slots=True)
class Contract:
    """The loaded WSDL: the binding and the operations the worker calls."""

    binding: Any
    operations: dict[Operation, OperationSpec]
    files: tuple[Path, ...]

    def spec(self, operation: Operation) -> OperationSpec:
        """The spec of ``operation``, which the WSDL must declare."""
        return self.operations[operation]


def zeep_settings() -> zeep.Settings:
    """Parse settings that refuse DTDs, entities and remote imports."""
    return zeep.Settings(
        strict=True,
        forbid_dtd=True,
        forbid_entities=True,
        forbid_external=True,
        xml_huge_tree=False,
    )


def load_contract(wsdl: Path = WSDL_PATH) -> Contract:
    """Load and check the WSDL; raise `ConfigurationError` if unusable."""
    transport = LocalOnlyTransport(wsdl.parent)
    try:
        # zeep annotates ``transport`` as a class; it takes an instance.
        document = Document(
            str(wsdl.resolve()),
            transport,  # type: ignore[arg-type]
            settings=zeep_settings(),
        )
        binding = document.services[SERVICE].ports[PORT].binding
    except (OSError, KeyError, ValueError, zeep.exceptions.Error) as exc:
        raise ConfigurationError(
            f"cannot load the INSi contract {wsdl}: {exc!r}"
        ) from None

    for prefix, namespace in PREFIXES.items():
        document.types.set_ns_prefix(  # type: ignore[no-untyped-call]
            prefix, namespace
        )

    operations: dict[Operation, OperationSpec] = {}
    for operation in Operation:
        bound = binding.get(operation.value)
        if bound is None or not bound.soapaction:
            raise ConfigurationError(
                f"the INSi contract lacks operation {operation.value}"
            )
        operations[operation] = OperationSpec(
            operation, bound.soapaction, bound
        )

    logger.info(
        "insi_contract_loaded files=%d operations=%d",
        len(transport.loaded),
        len(operations),
    )
    return Contract(binding, operations, tuple(transport.loaded))


@functools.cache
def default_contract() -> Contract:
    """The project's contract, loaded on first use and kept."""
    return load_contract()


def format_temps(moment: datetime) -> str:
    """``Temps``: UTC, milliseconds, ``Z``; a naive datetime is refused."""
    if moment.tzinfo is None:
        raise ValueError("Temps needs an aware datetime")
    utc = moment.astimezone(UTC)
    millis = utc.microsecond // 1000
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{millis:03d}Z"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who calls INSi, as both context headers state it."""

    idam: str
    software_name: str
    software_version: str
    instance: str
    emetteur: str

    @classmethod
    def from_settings(
        cls, settings: Settings, *, certificate_ou: str | None = None
    ) -> Caller:
        """The caller of ``settings``; Emetteur falls back on the OU."""
        return cls(
            idam=settings.insi_idam,
            software_name=settings.insi_software_name,
            software_version=settings.insi_software_version,
            instance=settings.insi_instance,
            emetteur=settings.insi_emetteur or certificate_ou or "",
        )


class Envelopes:
    """Builds the SOAP 1.2 envelopes of the worker's INSi calls.

    Every envelope carries the four headers of the contract: ContexteLPS,
    ContexteBAM (with an empty COUVERTURE), wsa:Action and wsa:MessageID;
    no wsa:To and no wsse:Security. Both contexts share one fresh ``Id``
    and ``Temps`` per call, as in the envelope the service accepted; the
    MessageID is another fresh UUID.
    """

    def __init__(
        self, caller: Caller, contract: Contract | None = None
    ) -> None:
        for name in ("idam", "software_name", "instance", "emetteur"):
            if not getattr(caller, name).strip():
                raise ConfigurationError(
                    f"INSi caller {name} is empty (ContexteLPS/ContexteBAM)"
                )
        try:
            uuid.UUID(caller.instance)
        except ValueError:
            raise ConfigurationError(
                "INSi caller instance must be a UUID"
            ) from None

        self.caller = caller
        self.contract = contract or default_contract()
        self.search_spec = self.contract.spec(Operation.TRAITS_SEARCH)
        self._templates: dict[tuple[int, bool], str] = {}

    @property
    def action(self) -> str:
        """The SOAP action of the traits search."""
        return self.search_spec.action

    @property
    def content_type(self) -> str:
        """The Content-Type header of the traits search."""
        return self.search_spec.content_type

    def _headers(
        self,
        action: str,
        now: datetime,
        ids: tuple[str, str] | None = None,
        temps: str | None = None,
    ) -> tuple[str, dict[str, Any]]:
        context_id, message_id = ids or _fresh_ids()
        temps = temps or format_temps(now)
        caller = self.caller

        headers = {
            "ContexteLPS": {
                "Nature": "CTXLPS",
                "Version": CTXLPS_VERSION,
                "Id": context_id,
                "Temps": temps,
                "Emetteur": caller.emetteur,
                "LPS": {
                    "IDAM": {"_value_1": caller.idam, "R": IDAM_REFERENCE},
                    "Version": caller.software_version,
                    "Instance": caller.instance,
                    "Nom": caller.software_name,
                },
            },
            "ContexteBAM": {
                "Version": CTXBAM_VERSION,
                "Id": context_id,
                "Temps": temps,
                "Emetteur": caller.emetteur,
                "COUVERTURE": {},
            },
            "Action": {"_value_1": action},
            "MessageID": {"_value_1": message_id},
        }
        return message_id, headers

    def _serialise(
        self,
        spec: OperationSpec,
        body: dict[str, Any],
        now: datetime | None,
        ids: tuple[str, str] | None = None,
        temps: str | None = None,
    ) -> tuple[str, bytes]:
        message_id, headers = self._headers(
            spec.action, now or datetime.now(UTC), ids, temps
        )
        message = spec.bound.create(**body, _soapheaders=headers)

        xml: bytes = etree.tostring(
            message.content, encoding="utf-8", xml_declaration=True
        )
        return message_id, xml

    def build(
        self, search: TraitsSearch, *, now: datetime | None = None
    ) -> tuple[str, bytes]:
        """(wsa:MessageID, UTF-8 envelope) of one traits search.

        One ``Prenom`` per entry of ``search.first_names``, in order;
        ``LieuNaissance`` only when the search has a birth place.

        zeep renders each shape of envelope (number of first names, birth
        place or not) once, with slot markers where the values go; a call
        then fills the slots, escaped, in one pass. That is the same
        document zeep would build (a test pins it), at a twentieth of the
        cost: zeep's serialiser was an eighth of a worker's CPU.
        """
        context_id, message_id = _fresh_ids()
        values = [
            context_id,
            message_id,
            format_temps(now or datetime.now(UTC)),
            search.birth_name,
            search.sex,
            search.birth_date,
            *search.first_names,
        ]
        if search.birth_place:
            values.append(search.birth_place)
        template = self._template(
            len(search.first_names), bool(search.birth_place)
        )
        filled = _SLOT.sub(lambda m: escape(values[int(m[1])]), template)
        return message_id, filled.encode("utf-8")

    def build_with_zeep(
        self,
        search: TraitsSearch,
        *,
        now: datetime | None = None,
        ids: tuple[str, str] | None = None,
    ) -> tuple[str, bytes]:
        """The same envelope built by zeep from scratch (reference)."""
        return self._serialise(
            self.search_spec,
            _body(search),
            now,
            ids,
        )

    def _template(self, first_names: int, birth_place: bool) -> str:
        shape = (first_names, birth_place)
        found = self._templates.get(shape)
        if found is not None:
            return found
        markers = [_marker(i) for i in range(6 + first_names + 1)]
        search = TraitsSearch(
            birth_name=markers[3],
            sex=markers[4],
            birth_date=markers[5],
            first_names=tuple(markers[6 : 6 + first_names]),
            birth_place=markers[6 + first_names] if birth_place else None,
        )
        _, xml = self._serialise(
            self.search_spec,
            _body(search),
            None,
            (markers[0], markers[1]),
            markers[2],
        )
        text = xml.decode("utf-8")
        self._templates[shape] = text
        return text


_SLOT = re.compile(r"INSWSLOT(\d+)Z")


def _marker(index: int) -> str:
    return f"INSWSLOT{index}Z"


def _fresh_ids() -> tuple[str, str]:
    return str(uuid.uuid4()), f"uuid:{uuid.uuid4()}"


def _body(search: TraitsSearch) -> dict[str, Any]:
    return {
        "NomNaissance": search.birth_name,
        "Prenom": list(search.first_names),
        "Sexe": search.sex,
        "DateNaissance": search.birth_date,
        "LieuNaissance": search.birth_place or None,
    }
