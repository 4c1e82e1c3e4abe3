"""Logging, configured once at start: JSON lines or a terminal format.

Every log call in the worker reads ``"event key=value key=value"`` with
``%`` arguments; the JSON format turns that into one object per line
(``event`` plus the fields), adding level, time and logger, and the
exception once. Values are ids and codes, never personal data.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

_RESERVED = {"level", "time", "logger", "event", "exception"}


def split_message(message: str) -> tuple[str, dict[str, str]]:
    """``"event a=1 b=2"`` → ``("event", {"a": "1", "b": "2"})``."""
    head, _, rest = message.partition(" ")
    fields: dict[str, str] = {}
    words = rest.split(" ") if rest else []
    key: str | None = None
    for word in words:
        name, sep, value = word.partition("=")
        if sep and name.isidentifier():
            key = name
            fields[key] = value
        elif key is not None:
            fields[key] += " " + word
        else:
            fields.setdefault("message", "")
            fields["message"] = (fields["message"] + " " + word).strip()
    return head, fields


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        event, fields = split_message(record.getMessage())
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": event,
        }
        for key, value in fields.items():
            out[key if key not in _RESERVED else f"field_{key}"] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """A compact line for a terminal."""

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"
        )


def configure(fmt: str = "console", level: str = "INFO") -> None:
    """Install the handler on the root logger (replacing any other)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else ConsoleFormatter()
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Library chatter at INFO is noise for an operator; keep warnings.
    for noisy in ("aiormq", "aio_pika", "asyncio", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
