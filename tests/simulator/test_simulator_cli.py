"""The command line: options, the simulator they describe, serving."""

from __future__ import annotations

import argparse
import asyncio
import json

import aiohttp
import pytest

from worker.errors import ConfigurationError
from worker.insi.model import TraitsSearch
from worker.insi.reply import parse_reply
from worker.simulator import Dialect, FaultMode
from worker.simulator.cli import add_arguments, run, serve, simulator_from_args


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_defaults_listen_on_loopback_8089_in_the_live_dialect() -> None:
    """No option: 127.0.0.1:8089, live, no fault, IDAM 00000000."""
    args = _parse()

    simulator = simulator_from_args(args)

    assert (args.host, args.port) == ("127.0.0.1", 8089)
    assert simulator.dialect is Dialect.LIVE
    assert simulator.allowed_idam == {"00000000"}
    assert simulator.faults.rates == {} and simulator.tls is None


def test_fault_options_build_the_fault_configuration() -> None:
    """--latency-ms, --jitter-ms, --fault-rate, --fault-mode, --seed."""
    args = _parse(
        "--latency-ms", "250", "--jitter-ms", "40", "--fault-rate", "0.2",
        "--fault-mode", "http_503", "--fault-mode", "reset", "--seed", "9",
        "--dialect", "cnda", "--idam", "11111111",
    )

    simulator = simulator_from_args(args)

    faults = simulator.faults
    assert (faults.latency_ms, faults.jitter_ms, faults.seed) == (250, 40, 9)
    assert faults.rates == pytest.approx(
        {FaultMode.HTTP_503: 0.1, FaultMode.RESET: 0.1}
    )
    assert simulator.dialect is Dialect.CNDA
    assert simulator.allowed_idam == {"11111111"}


def test_fault_rate_alone_injects_insi_102() -> None:
    """--fault-rate without --fault-mode: siram_40/insi_102."""
    simulator = simulator_from_args(_parse("--fault-rate", "0.3"))

    assert simulator.faults.rates == {FaultMode.BACKEND_ERROR: 0.3}


def test_a_fault_rate_above_one_is_a_configuration_error() -> None:
    """An impossible probability stops the command."""
    with pytest.raises(ConfigurationError):
        simulator_from_args(_parse("--fault-rate", "1.5"))


def test_tls_dir_makes_a_pki_and_dataset_reads_a_file(tmp_path) -> None:
    """--tls-dir writes the test PKI; --dataset adds the file's persons."""
    people = tmp_path / "people.json"
    people.write_text(json.dumps({"extends_default": False, "identities": []}))

    simulator = simulator_from_args(
        _parse("--tls-dir", str(tmp_path / "pki"), "--dataset", str(people))
    )

    assert simulator.tls is not None and simulator.tls.ca_cert.exists()
    assert len(simulator.dataset) == 0


def test_run_reports_a_bad_dataset_with_status_2(tmp_path, capsys) -> None:
    """A broken data set file: exit status 2 and a message on stderr."""
    broken = tmp_path / "broken.json"
    broken.write_text("[")

    status = run(_parse("--dataset", str(broken), "--port", "0"))

    assert status == 2
    assert "data set" in capsys.readouterr().err


async def test_serve_answers_until_told_to_stop(capsys, build) -> None:
    """serve() listens, answers searches, and returns once stopped."""
    stop = asyncio.Event()
    task = asyncio.ensure_future(serve(_parse("--port", "0"), stop))
    printed = ""
    while "listening on" not in printed and not task.done():
        await asyncio.sleep(0.02)
        printed += capsys.readouterr().out
    url = printed.split("listening on ", 1)[1].split()[0]
    call = build(TraitsSearch("ADRTROIS", ("TOUSSAINT",), "M", "1960-01-01"))

    async with aiohttp.ClientSession() as client, client.post(
        url, data=call.body, headers={"Content-Type": call.content_type}
    ) as response:
        body = await response.read()
    stop.set()
    await asyncio.wait_for(task, 5)

    assert parse_reply(body, response.status).cr_code == "00"
