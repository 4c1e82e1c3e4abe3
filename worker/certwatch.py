"""The INSi client certificate over weeks: expiry gauges, readiness, warnings.

A certificate loaded at start stays in use until the process restarts,
which may be months later. The seconds-left gauge is computed at every
scrape from the certificate's ``not_after``, so it never goes stale; the
``not_after`` timestamp is exposed as well, for rules that prefer
``timestamp - time()``. Readiness is false without a certificate where
one is needed (an https INSi URL) and once it has expired, since INSi
would refuse every call. A periodic check logs a warning while expiry is
near, once per check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from worker import metrics
from worker.insi.tls import ClientCertificate
from worker.settings import Settings

logger = logging.getLogger(__name__)

#: how early the warnings start (the ANS needs days to issue a renewal)
WARN_BEFORE = timedelta(days=30)

#: how often the periodic check runs
CHECK_INTERVAL_S = 3600.0

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class CertificateWatch:
    """What the worker knows and says about its client certificate."""

    def __init__(
        self,
        certificate: ClientCertificate | None,
        *,
        required: bool,
        clock: Clock = _utc_now,
    ) -> None:
        self.certificate = certificate
        self.required = required
        self._clock = clock

    @classmethod
    def for_settings(
        cls, settings: Settings, certificate: ClientCertificate | None
    ) -> CertificateWatch:
        """INSi only speaks mutual TLS: an https URL needs a certificate."""
        return cls(
            certificate, required=settings.insi_url.startswith("https:")
        )

    def seconds_left(self) -> float:
        """Seconds until expiry, negative once expired; NaN without one."""
        if self.certificate is None:
            return math.nan
        return self.certificate.seconds_left(self._clock())

    def publish(self) -> None:
        """Bind the expiry gauges to this certificate."""
        not_after = (
            math.nan
            if self.certificate is None
            else self.certificate.not_after.timestamp()
        )
        metrics.certificate_not_after.set(not_after)
        # Computed at each scrape: correct however long the process runs.
        metrics.certificate_expiry.set_function(self.seconds_left)

    def ready(self) -> bool:
        """Readiness: loaded where needed, and within its validity."""
        if self.certificate is None:
            return not self.required
        now = self._clock()
        return self.certificate.not_before <= now < self.certificate.not_after

    def check(self) -> None:
        """Log what an operator must act on, if anything."""
        if self.certificate is None:
            if self.required:
                logger.error("client_certificate_missing")
            return
        left = self.seconds_left()
        days = math.floor(left / 86400)
        if left <= 0:
            logger.error(
                "client_certificate_expired serial=%s",
                self.certificate.serial,
            )
        elif left < WARN_BEFORE.total_seconds():
            logger.warning(
                "client_certificate_expiring serial=%s days_left=%d",
                self.certificate.serial,
                days,
            )

    async def run(
        self, stop: asyncio.Event, interval_s: float = CHECK_INTERVAL_S
    ) -> None:
        """Check now and every ``interval_s`` until ``stop``."""
        while not stop.is_set():
            self.check()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
