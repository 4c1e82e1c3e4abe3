"""Build the INSi client a set of settings describes (TLS included)."""

from __future__ import annotations

from datetime import datetime

from worker.errors import ConfigurationError
from worker.insi import tls
from worker.insi.client import InsiClient
from worker.insi.contract import Caller, Envelopes
from worker.insi.transport import InsiTransport
from worker.settings import Settings


def make_client(
    settings: Settings, now: datetime
) -> tuple[InsiClient, tls.ClientCertificate | None]:
    """The client and the certificate it presents (None without TLS).

    ``Emetteur`` is the setting, else the certificate's OU; outside
    production a placeholder naming the environment stands in.
    """
    client_tls = tls.from_settings(settings, now)
    certificate = client_tls.certificate if client_tls else None
    emetteur = settings.insi_emetteur or (
        certificate.subject_ou if certificate else None
    )
    if not emetteur:
        if settings.environment == "production":
            raise ConfigurationError(
                "no Emetteur: set INS_WORKER_INSI_EMETTEUR or use a "
                "certificate with an OU"
            )
        emetteur = f"INS-WORKER-{settings.environment.upper()}"
    caller = Caller.from_settings(settings, certificate_ou=emetteur)
    transport = InsiTransport(
        ssl_context=client_tls.context if client_tls else None,
        timeout_s=settings.insi_timeout_s,
        connect_timeout_s=settings.insi_connect_timeout_s,
        max_connections=settings.insi_max_connections,
    )
    return InsiClient(Envelopes(caller), transport, settings.insi_url), (
        certificate
    )
