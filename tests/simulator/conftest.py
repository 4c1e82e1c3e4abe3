"""Fixtures of the simulator tests: a simulator on 127.0.0.1, a client.

Requests are built with the project's own `Envelopes`; the tests that
need a request off the contract take one of those and break it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from lxml import etree

from worker.insi.contract import Caller, Envelopes
from worker.insi.model import TraitsSearch
from worker.simulator import Simulator, SimulatorPki, make_pki
from worker.simulator.dataset import Identity

CALLER = Caller(
    idam="00000000",
    software_name="urn:lps:ins-worker:test",
    software_version="0.1",
    instance="0d8f5a8e-3f0b-4d64-9a57-6c1f2f7b1e20",
    emetteur="SIMULATEUR-000001",
)


@dataclass(frozen=True)
class Call:
    """One request ready to post: its id, body and Content-Type."""

    message_id: str
    body: bytes
    content_type: str

    def edited(self, edit: Callable[[etree._Element], None]) -> Call:
        """The same request after ``edit`` changed its parsed tree."""
        root = etree.fromstring(self.body)
        edit(root)
        return Call(self.message_id, etree.tostring(root), self.content_type)


@dataclass(frozen=True)
class Reply:
    """What came back: HTTP status, body, Content-Type."""

    status: int
    body: bytes
    content_type: str


Builder = Callable[..., Call]
Poster = Callable[..., Awaitable[Reply]]
SimulatorFactory = Callable[..., Awaitable[Simulator]]


@pytest.fixture(scope="session")
def envelopes() -> Envelopes:
    """The worker's envelope builder for a test caller."""
    return Envelopes(CALLER)


@pytest.fixture
def build(envelopes: Envelopes) -> Builder:
    """``build(search, idam=...)``: a traits search as the worker sends."""

    def builder(search: TraitsSearch, idam: str | None = None) -> Call:
        built = envelopes
        if idam is not None:
            caller = Caller(
                idam,
                CALLER.software_name,
                CALLER.software_version,
                CALLER.instance,
                CALLER.emetteur,
            )
            built = Envelopes(caller, envelopes.contract)
        message_id, body = built.build(search)
        return Call(message_id, body, built.content_type)

    return builder


def search_for(person: Identity, *, with_place: bool = True) -> TraitsSearch:
    """The search an admission desk would make for ``person``."""
    return TraitsSearch(
        birth_name=person.birth_name,
        first_names=person.first_names[:1],
        sex=person.sex,
        birth_date=person.birth_date,
        birth_place=person.birth_place if with_place else None,
    )


@pytest.fixture
def search_of() -> Callable[..., TraitsSearch]:
    """``search_of(identity, with_place=True)``: the search for a person."""
    return search_for


@pytest.fixture
async def start_simulator() -> AsyncIterator[SimulatorFactory]:
    """Start simulators on 127.0.0.1:0 for one test; stop them after."""
    started: list[Simulator] = []

    async def factory(**options: Any) -> Simulator:
        simulator = Simulator(**options)
        await simulator.start()
        started.append(simulator)
        return simulator

    yield factory

    for simulator in started:
        await simulator.stop()


@pytest.fixture
async def simulator(start_simulator: SimulatorFactory) -> Simulator:
    """A simulator with the defaults: live dialect, default data set."""
    return await start_simulator()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client session, closed after the test."""
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def post(session: aiohttp.ClientSession) -> Poster:
    """``post(url, call, limit_s=5)``: POST a call, read the whole reply."""

    async def poster(
        url: str,
        call: Call,
        limit_s: float = 5.0,
        client: aiohttp.ClientSession | None = None,
    ) -> Reply:
        async with (client or session).post(
            url,
            data=call.body,
            headers={"Content-Type": call.content_type},
            timeout=aiohttp.ClientTimeout(total=limit_s),
        ) as response:
            body = await response.read()
            return Reply(
                response.status,
                body,
                response.headers.get("Content-Type", ""),
            )

    return poster


@pytest.fixture(scope="session")
def expected(insi_kit: Path) -> dict[str, Any]:
    """The values each kit file must parse to."""
    document: dict[str, Any] = json.loads(
        (insi_kit / "expected.json").read_text(encoding="utf-8")
    )
    return document


@pytest.fixture(scope="session")
def resultat_schema(insi_kit: Path) -> etree.XMLSchema:
    """The Cnam's published schema of ``RESULTAT``."""
    path = (
        insi_kit / "wsdl" / "xsd" / "ServiceIdentiteCertifiee"
        / "INSi_RESULTAT_INS.xsd"
    )
    return etree.XMLSchema(etree.parse(str(path)))


@pytest.fixture(scope="session")
def sim_pki(tmp_path_factory: pytest.TempPathFactory) -> SimulatorPki:
    """A test PKI with INSI-AUTO, INSI-MANU and INSI-AUTRE clients."""
    return make_pki(tmp_path_factory.mktemp("simulator-pki"))
