"""Settings: read from the environment, typed, documented once."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.errors import ConfigurationError
from worker.settings import Settings, describe

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_setting_is_in_the_readme_table() -> None:
    """The README lists each variable with its current default."""
    text = README.read_text("utf-8")

    for name, _, default, _ in describe():
        row = next(
            (line for line in text.splitlines() if f"`{name}`" in line), None
        )
        assert row is not None, name
        if default:
            assert f"`{default}`" in row, name


def test_values_are_parsed_by_their_declared_type() -> None:
    """Numbers, lists and booleans come out typed, not as strings."""
    settings = Settings.from_env(
        {
            "INS_WORKER_PREFETCH": "8",
            "INS_WORKER_RETRY_DELAYS_S": "1, 2.5",
            "INS_WORKER_ACCEPTED_OIDS": "1.2.250.1.213.1.4.8",
            "INS_WORKER_TLS_CA_FILE": "/etc/ins/ca.pem",
        }
    )

    assert settings.prefetch == 8
    assert settings.retry_delays_s == (1.0, 2.5)
    assert settings.accepted_oids == ("1.2.250.1.213.1.4.8",)
    assert settings.tls_ca_file == Path("/etc/ins/ca.pem")


def test_unknown_variable_under_the_prefix_is_refused() -> None:
    """A typo in a variable name is an error, not a silent default."""
    with pytest.raises(ConfigurationError, match="INS_WORKER_PREFECTH"):
        Settings.from_env({"INS_WORKER_PREFECTH": "8"})


def test_unreadable_value_names_the_variable_and_type() -> None:
    """A value of the wrong type says which variable and what was wanted."""
    with pytest.raises(ConfigurationError, match="INS_WORKER_PREFETCH"):
        Settings.from_env({"INS_WORKER_PREFETCH": "many"})


def test_unknown_environment_is_refused() -> None:
    """Only the four known environments exist."""
    with pytest.raises(ConfigurationError, match="ENVIRONMENT"):
        Settings.from_env({"INS_WORKER_ENVIRONMENT": "staging"})
