"""HTTP toward INSi: one keep-alive aiohttp session, errors made typed.

`InsiTransport` posts SOAP 1.2 envelopes and returns the status and the
body, read up to a size limit. It never retries and never follows a
redirect. Failures become the worker's exceptions:

- no complete answer in time (connect or total): `InsiTimeout`;
- refused, reset, DNS, TLS interrupted: `InsiUnreachable`;
- a certificate problem (the server's fails verification, or the server
  rejects ours): `InsiCertificateError`, permanent *and* configuration,
  so that it never feeds a retry storm;
- a reply over the size limit: `InsiProtocolError`.
"""

from __future__ import annotations

import logging
import ssl

import aiohttp

from worker.errors import (
    ConfigurationError,
    InsiCertificateError,
    InsiError,
    InsiProtocolError,
    InsiTimeout,
    InsiUnreachable,
)
from worker.insi.contract import soap12_content_type

logger = logging.getLogger(__name__)

#: INSi replies are a few KB; anything this large is not INSi's
MAX_REPLY_BYTES = 1_048_576

USER_AGENT = "ins-worker"

# OpenSSL reasons that mean "a certificate is wrong", as opposed to a
# network hiccup during the handshake.
_CERTIFICATE_REASONS = frozenset({
    "CERTIFICATE_VERIFY_FAILED",
    "SSLV3_ALERT_BAD_CERTIFICATE",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED",
    "SSLV3_ALERT_CERTIFICATE_REVOKED",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
    # TLS 1.2 servers answer a missing client certificate this way; a
    # failed negotiation is never a network hiccup either.
    "SSLV3_ALERT_HANDSHAKE_FAILURE",
    "TLSV1_ALERT_UNKNOWN_CA",
    "TLSV1_ALERT_ACCESS_DENIED",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED",
})


def _ssl_reason(exc: BaseException) -> str | None:
    # aiohttp wraps the ssl error (sometimes in a class that is itself an
    # SSLError without a reason): walk down to the one that has it.
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        reason = getattr(seen, "reason", None)
        if isinstance(seen, ssl.SSLError) and isinstance(reason, str):
            return reason
        seen = getattr(seen, "os_error", None) or seen.__cause__
    return None


def _translate(exc: BaseException, timeout_s: float) -> InsiError:
    if isinstance(exc, TimeoutError):
        step = (
            "connecting"
            if isinstance(exc, aiohttp.ConnectionTimeoutError)
            else "waiting for the reply"
        )
        return InsiTimeout(f"INSi timed out {step} (limit {timeout_s:g} s)")

    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return InsiCertificateError(
            "INSi's server certificate failed verification"
        )

    reason = _ssl_reason(exc)
    if reason in _CERTIFICATE_REASONS:
        return InsiCertificateError(
            f"TLS with INSi refused a certificate ({reason})"
        )
    if reason is not None:
        return InsiUnreachable(f"TLS with INSi failed ({reason})")

    return InsiUnreachable(
        f"cannot reach INSi ({type(exc).__name__})"
    )


class InsiTransport:
    """One keep-alive HTTP session to INSi, shared by every call.

    ``ssl_context`` is used for https URLs (aiohttp's default verifying
    context when ``None``). The session opens on the first call, inside
    the running event loop.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None,
        timeout_s: float,
        connect_timeout_s: float,
        max_connections: int,
        max_reply_bytes: int = MAX_REPLY_BYTES,
    ) -> None:
        self._ssl: ssl.SSLContext | bool = (
            True if ssl_context is None else ssl_context
        )
        self.timeout_s = timeout_s
        self._timeout = aiohttp.ClientTimeout(
            total=timeout_s, connect=connect_timeout_s
        )
        self._max_connections = max_connections
        self.max_reply_bytes = max_reply_bytes
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=self._max_connections,
                ssl=self._ssl,
                keepalive_timeout=30.0,
            )
            # No proxy from the environment: where INSi traffic goes is
            # configuration, not an inherited variable.
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                headers={"User-Agent": USER_AGENT},
                trust_env=False,
            )
        return self._session

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        limit = self.max_reply_bytes
        if (response.content_length or 0) > limit:
            raise InsiProtocolError(f"reply larger than {limit} bytes")

        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(65_536):
            size += len(chunk)
            if size > limit:
                raise InsiProtocolError(f"reply larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def post(
        self, url: str, body: bytes, action: str
    ) -> tuple[int, bytes]:
        """POST a SOAP 1.2 envelope; (HTTP status, body) of the reply."""
        headers = {
            "Content-Type": soap12_content_type(action),
            "Accept": "application/soap+xml, text/xml",
        }
        session = self._open()

        try:
            async with session.post(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                return response.status, await self._read(response)
        except InsiError:
            raise
        except aiohttp.InvalidURL:
            raise ConfigurationError("the INSi URL is not valid") from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            translated = _translate(exc, self.timeout_s)
            # The client logs the call; this line only adds the cause.
            logger.debug(
                "insi_transport_error kind=%s error=%s",
                translated.kind,
                type(exc).__name__,
            )
            raise translated from exc

    async def close(self) -> None:
        """Close the session and its connections."""
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
