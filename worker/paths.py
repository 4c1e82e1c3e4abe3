"""Where the files the worker ships with live (schemas, WSDL, migrations)."""

from __future__ import annotations

import importlib
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def _schemas() -> Path:
    # In a checkout (editable install) the top-level schemas/ folder is
    # used; a wheel ships the same files as the worker_schemas package.
    checkout = _HERE.parent / "schemas"
    if checkout.is_dir():
        return checkout
    installed = importlib.import_module("worker_schemas")
    return Path(next(iter(installed.__path__)))


SCHEMAS = _schemas()
WSDL_DIR = SCHEMAS / "insi"
MIGRATIONS = _HERE / "store" / "migrations"
