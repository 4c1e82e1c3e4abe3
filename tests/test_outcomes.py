"""Identity changes as recorded in identity_changes."""

from __future__ import annotations

import dataclasses

from worker.domain.identity import IdentityState
from worker.domain.ins import InsIdentifier
from worker.domain.status import IdentityStatus
from worker.outcomes import changes

NIR = "1.2.250.1.213.1.4.8"
QUALIFIED = IdentityState(
    IdentityStatus.QUAL, InsIdentifier("109076322083489", NIR)
)


def test_first_state_of_a_patient_is_recorded_as_created() -> None:
    """A patient seen for the first time gets a ``created`` change."""
    assert changes(None, QUALIFIED) == ["created"]


def test_status_and_ins_changes_are_named() -> None:
    """A downgrade that drops the INS names both."""
    downgraded = IdentityState(IdentityStatus.PROV)

    assert changes(QUALIFIED, downgraded) == ["status", "ins"]


def test_same_state_again_records_nothing() -> None:
    """A re-verification that changes nothing leaves no change row."""
    again = dataclasses.replace(QUALIFIED)

    assert changes(QUALIFIED, again) == []
    assert changes(QUALIFIED, QUALIFIED) == []
