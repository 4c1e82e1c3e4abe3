"""The INSi simulator: an aiohttp server answering ``POST /lps``.

Per call, in order: the injector draws the latency and the injected
failure (both drawn on arrival, so that a seeded run repeats whatever
the concurrency); an injected failure replaces the answer. Otherwise the
request is read (:mod:`worker.simulator.inbound`), the caller checked
(client certificate CN when TLS is on: ``DESIR_560``; ``IDAM``:
``siram_100``/``desir_550``), the sex checked (``insi_24``), and the
data set searched: ``00``, ``01`` or ``02``. Every fault goes with HTTP
500, every result with 200.

Test and demo tooling only: no code path of the worker uses it; the
command line merely mounts it as ``ins-worker simulator``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from worker.insi.model import CodeCR
from worker.simulator import hostile
from worker.simulator.admin import admin_routes
from worker.simulator.dataset import Dataset, default_dataset
from worker.simulator.faults import FaultConfig, FaultInjector, FaultMode
from worker.simulator.inbound import ContractViolation, InboundCall, read_call
from worker.simulator.pki import SimulatorPki
from worker.simulator.results import empty_reply, found_reply
from worker.simulator.soap import SOAP_MEDIA_TYPE, Dialect, FaultStyle
from worker.simulator.soapfaults import (
    BACKEND_ERROR,
    CERTIFICATE_REFUSED,
    INVALID_SEX,
    SERVICE_UNAVAILABLE,
    UNKNOWN_SOFTWARE,
    FaultSpec,
    fault_reply,
)
from worker.simulator.stats import CallStats

logger = logging.getLogger(__name__)

#: the IDAM the worker's settings send by default
DEFAULT_IDAM = "00000000"

#: the certificate CNs INSi admits
ALLOWED_CNS = ("INSI-AUTO", "INSI-MANU")

LPS_PATH = "/lps"
CANARY_PATH = "/_canary/xxe"

_SOAP_CONTENT_TYPE = f"{SOAP_MEDIA_TYPE};charset=UTF-8"

_BAD_GATEWAY_PAGE = (
    b"<html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>Bad Gateway</h1><p>upstream unavailable</p></body></html>"
)

_INJECTED_FAULTS: dict[FaultMode, FaultSpec] = {
    FaultMode.BACKEND_ERROR: BACKEND_ERROR,
    FaultMode.SERVICE_UNAVAILABLE: SERVICE_UNAVAILABLE,
}


def _soap_response(body: bytes, status: int = 200) -> web.Response:
    return web.Response(
        body=body, status=status, headers={"Content-Type": _SOAP_CONTENT_TYPE}
    )


async def _pause(delay_s: float) -> None:
    if delay_s > 0:
        await asyncio.sleep(delay_s)


def _peer_common_name(request: web.Request) -> str | None:
    transport = request.transport
    if transport is None:
        return None
    certificate: Any = transport.get_extra_info("peercert")
    if not certificate:
        return None
    for rdn in certificate.get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return str(value)
    return None


class Simulator:
    """The INSi teleservice, as far as the worker can tell.

    ``dialect`` is the dialect of every result unless an identity has its
    own; ``fault_style`` forces one serialisation on every fault (by
    default each fault keeps the style of its genuine sample). With
    ``tls``, clients must present a certificate of that test PKI, and
    only ``allowed_cns`` get past ``DESIR_560``.
    """

    def __init__(
        self,
        dataset: Dataset | None = None,
        faults: FaultConfig | None = None,
        dialect: Dialect | str = Dialect.LIVE,
        allowed_idam: Iterable[str] = (DEFAULT_IDAM,),
        tls: SimulatorPki | None = None,
        *,
        allowed_cns: Iterable[str] = ALLOWED_CNS,
        fault_style: FaultStyle | str | None = None,
    ) -> None:
        self.dataset = dataset if dataset is not None else default_dataset()
        self.dialect = Dialect(dialect)
        self.allowed_idam = frozenset(allowed_idam)
        self.allowed_cns = frozenset(allowed_cns)
        self.tls = tls
        self.fault_style = FaultStyle(fault_style) if fault_style else None
        self._initial_faults = faults or FaultConfig()
        self._injector = FaultInjector(self._initial_faults)
        self._stats = CallStats()
        self._released = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._site: web.SockSite | None = None
        self._address: tuple[str, int] | None = None

    # -- control, in process and through the admin API

    @property
    def stats(self) -> CallStats:
        """Counters of the calls received."""
        return self._stats

    @property
    def faults(self) -> FaultConfig:
        """The fault configuration in force."""
        return self._injector.config

    def set_faults(self, config: FaultConfig) -> None:
        """Replace the fault configuration (new generator, new queue)."""
        self._injector.configure(config)

    def fail_next(self, mode: FaultMode, count: int = 1) -> None:
        """Force ``mode`` on the next ``count`` calls."""
        self._injector.fail_next(mode, count)

    def reset(self) -> None:
        """Counters to zero, faults as given at construction."""
        self._stats.reset()
        self._injector.configure(self._initial_faults)

    # -- life cycle

    def app(self) -> web.Application:
        """The aiohttp application (for aiohttp's test utilities too)."""
        app = web.Application()
        app.router.add_post(LPS_PATH, self._handle_lps)
        app.router.add_get(CANARY_PATH, self._handle_canary)
        app.add_routes(admin_routes(self))
        return app

    @property
    def url(self) -> str:
        """The ``/lps`` URL; only once started."""
        if self._address is None:
            raise RuntimeError("the simulator is not started")
        host, port = self._address
        scheme = "https" if self.tls else "http"
        shown = f"[{host}]" if ":" in host else host
        return f"{scheme}://{shown}:{port}{LPS_PATH}"

    @property
    def base_url(self) -> str:
        """The URL without ``/lps``, for the admin API."""
        return self.url.removesuffix(LPS_PATH)

    @property
    def in_outage(self) -> bool:
        """Whether the listening socket is closed by :meth:`outage`."""
        return self._runner is not None and self._site is None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host``:``port`` (0: any free port); the /lps URL."""
        if self._runner is not None:
            raise RuntimeError("the simulator is already started")
        self._released.clear()
        # hung calls must end when the client leaves, not pile up
        runner = web.AppRunner(
            self.app(), handler_cancellation=True, shutdown_timeout=2.0
        )
        await runner.setup()
        self._runner = runner
        try:
            await self._listen(host, port)
        except BaseException:
            await self.stop()
            raise
        logger.info(
            "simulator_started tls=%s dialect=%s", bool(self.tls),
            self.dialect.value,
        )
        return self.url

    async def stop(self) -> None:
        """Stop listening, release hung calls, close every connection."""
        self._released.set()
        runner, self._runner, self._site = self._runner, None, None
        if runner is not None:
            await runner.cleanup()
            logger.info("simulator_stopped calls=%d", self._stats.total)

    async def outage(self) -> None:
        """Close the listening socket: new connections are refused.

        Idle keep-alive connections are closed too, as a crashed service
        would; :meth:`restore` listens again on the same port.
        """
        if self._runner is None or self._site is None:
            raise RuntimeError("the simulator is not listening")
        site, self._site = self._site, None
        await site.stop()
        if self._runner.server is not None:
            self._runner.server.pre_shutdown()
        logger.info("simulator_outage_started")

    async def restore(self) -> None:
        """End an :meth:`outage`: listen again on the same address."""
        if self._address is None or not self.in_outage:
            raise RuntimeError("the simulator is not in an outage")
        await self._listen(*self._address)
        logger.info("simulator_outage_ended")

    async def _listen(self, host: str, port: int) -> None:
        if self._runner is None:
            raise RuntimeError("the simulator is not started")
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        # create_server sets SO_REUSEADDR: restore() rebinds at once
        sock = socket.create_server((host, port), family=family)
        context = self.tls.server_context() if self.tls else None
        site = web.SockSite(self._runner, sock, ssl_context=context)
        await site.start()
        self._site = site
        bound = sock.getsockname()
        self._address = (host, int(bound[1]))

    # -- answering

    async def _handle_canary(self, request: web.Request) -> web.Response:
        self._stats.canary_fetches += 1
        logger.warning("simulator_canary_fetched")
        return web.Response(text="canary")

    async def _handle_lps(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        delay = self._injector.delay_s()
        mode = self._injector.draw()

        # counted before the delay: a client that leaves still called
        if mode is not None:
            self._record(f"injected_{mode.value}")
            await _pause(delay)
            return await self._inject(request, mode)

        outcome, answer = self._answer(request, body)
        self._record(outcome)
        await _pause(delay)
        return answer

    def _record(self, outcome: str) -> None:
        self._stats.record(outcome)
        logger.debug("simulator_call outcome=%s", outcome)

    def _answer(
        self, request: web.Request, body: bytes
    ) -> tuple[str, web.Response]:
        try:
            call = read_call(request.headers.get("Content-Type"), body)
        except ContractViolation as violation:
            return self._fault(violation.fault, violation.message_id)

        refusal = self._refusal(call, request)
        if refusal is not None:
            return self._fault(refusal, call.message_id)

        matches = self.dataset.search(call.search)
        if len(matches) == 1:
            person = matches[0]
            reply = found_reply(person, person.dialect or self.dialect)
            return f"cr_{CodeCR.FOUND.value}", _soap_response(reply)
        code = CodeCR.NOT_FOUND if not matches else CodeCR.SEVERAL
        reply = empty_reply(code, self.dialect)
        return f"cr_{code.value}", _soap_response(reply)

    def _refusal(
        self, call: InboundCall, request: web.Request
    ) -> FaultSpec | None:
        # who calls first, as the service's gateway would, then what
        cn = _peer_common_name(request)
        if self.tls is not None and cn not in self.allowed_cns:
            return CERTIFICATE_REFUSED
        if call.idam not in self.allowed_idam:
            return UNKNOWN_SOFTWARE
        if call.search.sex not in ("M", "F"):
            return INVALID_SEX
        return None

    def _fault(
        self, spec: FaultSpec, message_id: str | None
    ) -> tuple[str, web.Response]:
        reply = fault_reply(spec, message_id, self.fault_style)
        return f"fault_{spec.detail_code}", _soap_response(reply, 500)

    async def _inject(
        self, request: web.Request, mode: FaultMode
    ) -> web.StreamResponse:
        spec = _INJECTED_FAULTS.get(mode)
        if spec is not None:
            return self._fault(spec, None)[1]
        if mode is FaultMode.HTTP_503:
            return web.Response(status=503)
        if mode is FaultMode.HTTP_502_HTML:
            return web.Response(
                status=502, body=_BAD_GATEWAY_PAGE, content_type="text/html"
            )
        if mode in (FaultMode.HANG, FaultMode.RESET, FaultMode.CLOSE):
            return await self._drop(request, mode)
        return _soap_response(self._hostile(request, mode))

    async def _drop(
        self, request: web.Request, mode: FaultMode
    ) -> web.StreamResponse:
        if mode is FaultMode.HANG:
            # aiohttp cancels this wait when the client disconnects
            await self._released.wait()

        transport = request.transport
        if transport is not None:
            if mode is FaultMode.RESET:
                # linger 0: close() sends a RST instead of a FIN
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(
                        socket.SOL_SOCKET,
                        socket.SO_LINGER,
                        struct.pack("ii", 1, 0),
                    )
                transport.abort()
            else:
                transport.close()
        # never written: the connection is gone
        return web.Response(status=499)

    def _hostile(self, request: web.Request, mode: FaultMode) -> bytes:
        config = self._injector.config
        if mode is FaultMode.XML_EXTERNAL_ENTITY:
            canary = request.url.origin().with_path(CANARY_PATH)
            return hostile.external_entity_reply(str(canary))
        if mode is FaultMode.XML_ENTITY_BOMB:
            return hostile.entity_bomb_reply()
        if mode is FaultMode.XML_HUGE_TEXT:
            return hostile.huge_text_reply(config.huge_text_bytes)
        return hostile.deep_nesting_reply(config.nesting_depth)
