"""The admin API: faults read and replaced, stats, reset."""

from __future__ import annotations

from worker.insi.model import TraitsSearch
from worker.simulator import FaultConfig, FaultMode

ADRTROIS = TraitsSearch("ADRTROIS", ("TOUSSAINT",), "M", "1960-01-01")


async def test_get_faults_shows_the_configuration_in_force(
    start_simulator, session
) -> None:
    """GET /_admin/faults: the JSON form, queue included."""
    config = FaultConfig(latency_ms=5, rates={FaultMode.HTTP_503: 0.1})
    simulator = await start_simulator(faults=config)
    simulator.fail_next(FaultMode.RESET, 2)

    async with session.get(simulator.base_url + "/_admin/faults") as got:
        document = await got.json()

    assert got.status == 200
    assert document["latency_ms"] == 5
    assert document["rates"] == {"http_503": 0.1}
    assert document["next"] == ["reset", "reset"]


async def test_put_faults_changes_what_the_next_calls_get(
    simulator, session, build, post
) -> None:
    """PUT /_admin/faults with next: the next call is a 503."""
    url = simulator.base_url + "/_admin/faults"

    async with session.put(url, json={"next": ["http_503"]}) as put:
        document = await put.json()
    failed = await post(simulator.url, build(ADRTROIS))
    served = await post(simulator.url, build(ADRTROIS))

    assert put.status == 200 and document["next"] == ["http_503"]
    assert (failed.status, served.status) == (503, 200)
    assert simulator.faults.next == ()


async def test_put_faults_refuses_a_bad_document_and_keeps_the_old(
    simulator, session
) -> None:
    """400 with an error message; the configuration is unchanged."""
    url = simulator.base_url + "/_admin/faults"
    before = simulator.faults

    async with session.put(url, json={"rates": {"insi_102": 2}}) as bad:
        error = await bad.json()
    async with session.put(url, data=b"{not json") as garbled:
        await garbled.read()

    assert bad.status == 400 and "rate" in error["error"]
    assert garbled.status == 400
    assert simulator.faults == before


async def test_stats_count_calls_by_outcome(
    simulator, session, build, post
) -> None:
    """GET /_admin/stats: total and per-outcome counts."""
    simulator.fail_next(FaultMode.BACKEND_ERROR)
    await post(simulator.url, build(ADRTROIS))
    await post(simulator.url, build(ADRTROIS))
    await post(simulator.url, build(ADRTROIS, idam="0"))

    async with session.get(simulator.base_url + "/_admin/stats") as got:
        stats = await got.json()

    assert stats == {
        "total": 3,
        "by_outcome": {
            "cr_00": 1, "fault_desir_550": 1, "injected_insi_102": 1,
        },
        "canary_fetches": 0,
    }


async def test_reset_zeroes_stats_and_restores_initial_faults(
    start_simulator, session, build, post
) -> None:
    """POST /_admin/reset: counters at zero, construction-time faults."""
    initial = FaultConfig(latency_ms=1)
    simulator = await start_simulator(faults=initial)
    simulator.set_faults(FaultConfig(rates={FaultMode.HTTP_503: 1.0}))
    await post(simulator.url, build(ADRTROIS))

    async with session.post(simulator.base_url + "/_admin/reset") as reset:
        document = await reset.json()
    served = await post(simulator.url, build(ADRTROIS))

    assert reset.status == 200 and document["total"] == 0
    assert simulator.faults == initial
    assert served.status == 200
    assert simulator.stats.total == 1
