"""What ``ins-worker insi parse FILE`` prints: an INSi reply as JSON.

For integrators checking a captured reply against the worker's reading:
exit status 0 and the result for a ``RESULTAT``, 3 and the fault for a
SOAP fault, 2 and a one-line reason for anything that is not an INSi
reply. `result_to_json` is shared with ``ins-worker insi search``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from worker.errors import (
    InsiConfigurationFault,
    InsiHttpError,
    InsiProtocolError,
    InsiRequestFault,
    InsiTransient,
    InsiTransientFault,
)
from worker.insi import xmlsafe
from worker.insi.model import ReturnedIns, ReturnedTraits, SearchResult
from worker.insi.reply import parse_reply

EXIT_RESULT = 0
EXIT_NOT_INSI = 2
EXIT_FAULT = 3


def ins_to_json(ins: ReturnedIns) -> dict[str, Any]:
    """An ``INSACTIF``/``INSHISTO`` entry, with its checked key."""
    return {
        "nir13": ins.nir13,
        "key": ins.key,
        "ins": ins.ins,
        "oid": ins.oid,
        "type": ins.type,
        "start": ins.start,
        "end": ins.end,
        "key_valid": ins.key_valid,
    }


def traits_to_json(traits: ReturnedTraits) -> dict[str, Any]:
    """The ``TIQ`` traits as returned, and the first names read from it."""
    return {
        "birth_name": traits.birth_name,
        "first_names": traits.first_names,
        "first_name": traits.first_name,
        "sex": traits.sex,
        "birth_date": traits.birth_date,
        "birth_place": traits.birth_place,
    }


def result_to_json(result: SearchResult) -> dict[str, Any]:
    """A `SearchResult` as plain JSON values."""
    return {
        "cr_code": result.cr_code,
        "cr_label": result.cr_label,
        "active": None if result.active is None
        else ins_to_json(result.active),
        "history": [ins_to_json(h) for h in result.history],
        "traits": None if result.traits is None
        else traits_to_json(result.traits),
    }


_FAULTS = (InsiTransientFault, InsiRequestFault, InsiConfigurationFault)


def fault_to_json(
    exc: InsiTransientFault | InsiRequestFault | InsiConfigurationFault,
) -> dict[str, Any]:
    """A classified fault, and whether the worker would try again."""
    fault = exc.fault
    return {
        "fault": {
            "code": fault.code,
            "subcode": fault.subcode,
            "detail_code": fault.detail_code,
            "severity": fault.severity,
            "message_id": fault.message_id,
            "reason": fault.reason,
            "kind": exc.kind,
            "retryable": isinstance(exc, InsiTransient),
        }
    }


def _one_line(text: str) -> str:
    return " ".join(text.split())


def parse_file(path: Path) -> tuple[int, dict[str, Any]]:
    """(exit status, JSON document) for the INSi reply stored in ``path``.

    The file is read as the HTTP body of a 200 reply; a fault is a fault
    whatever the status it came with.
    """
    try:
        with path.open("rb") as handle:
            body = handle.read(xmlsafe.MAX_BYTES + 1)
    except OSError as exc:
        return EXIT_NOT_INSI, {
            "error": _one_line(f"cannot read {path}: {exc.strerror}")
        }

    try:
        result = parse_reply(body)
    except _FAULTS as exc:
        return EXIT_FAULT, fault_to_json(exc)
    except (InsiProtocolError, InsiHttpError) as exc:
        return EXIT_NOT_INSI, {"error": _one_line(str(exc))}
    return EXIT_RESULT, result_to_json(result)
