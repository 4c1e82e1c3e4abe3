"""What an installed worker carries: every package, schema and WSDL."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_worker_subpackage_is_listed_for_the_wheel() -> None:
    """A new subpackage cannot be left out of the wheel by accident."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])

    on_disk = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for path in (ROOT / "worker").rglob("__init__.py")
    }

    assert on_disk <= listed


def test_wheel_ships_schemas_wsdl_and_migrations(tmp_path: Path) -> None:
    """The wheel holds what the worker reads at run time."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = tmp_path.glob("*.whl")

    names = set(zipfile.ZipFile(wheel).namelist())

    for needed in (
        "worker_schemas/identity-request.v1.schema.json",
        "worker_schemas/events/identity-event.v1.schema.json",
        "worker_schemas/insi/insi-icir-v1.wsdl",
        "worker/store/migrations/0001_initial.sql",
        "worker/py.typed",
    ):
        assert needed in names, needed
    assert any(n.startswith("worker_schemas/insi/xsd/") for n in names)
