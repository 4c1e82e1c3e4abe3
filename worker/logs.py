"""Logging, configured once at start: JSON lines or a terminal format.

Every log call in the worker reads ``"event key=value key=value"`` with
``%`` arguments; the JSON format turns that into one object per line
(``event`` plus the fields), adding level, time and logger, the fields
bound to the current message with :func:`bind` (request id, correlation
id, attempt), and the exception once. Values are ids and codes, never
personal data.

Exceptions are shown with their traceback and type, but the message
only of the worker's own errors, whose messages are written free of
personal data; any other message (a library's, a bug's ``KeyError``)
may quote a value from a request, so it is withheld.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import traceback
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType, TracebackType
from typing import Any, TextIO

from worker.errors import InsWorkerError

_RESERVED = {"level", "time", "logger", "event", "exception", "stack"}

_EVENT = re.compile(r"^[a-z][a-z0-9_]*$")

#: what an event is called when a library logs free text
FREE_TEXT_EVENT = "log"

#: exceptions whose messages name addresses and errno, never a request
_PLAIN_MESSAGES: tuple[type[BaseException], ...] = (
    InsWorkerError,
    OSError,
    TimeoutError,
)

# Libraries whose INFO or DEBUG lines are noise for an operator, or could
# quote a SOAP envelope (zeep's transport logs whole messages at DEBUG).
_QUIET = ("aiormq", "aio_pika", "asyncio", "aiohttp.access", "zeep")

_HANDLER_NAME = "ins-worker"

ExcInfo = tuple[
    type[BaseException] | None, BaseException | None, TracebackType | None
]

_NOTHING_BOUND: Mapping[str, object] = MappingProxyType({})

_bound: ContextVar[Mapping[str, object]] = ContextVar(
    "ins_worker_log_fields", default=_NOTHING_BOUND
)


@contextlib.contextmanager
def bind(**fields: object) -> Iterator[None]:
    """Add ``fields`` to every line logged inside the block.

    Each asyncio task has its own copy of the context, so fields bound
    while handling one delivery never show on another's lines.
    """
    token = _bound.set(MappingProxyType({**_bound.get(), **fields}))
    try:
        yield
    finally:
        _bound.reset(token)


def bound_fields() -> Mapping[str, object]:
    """The fields :func:`bind` set for the current context."""
    return _bound.get()


def split_message(message: str) -> tuple[str, dict[str, str]]:
    """``"event a=1 b=2"`` → ``("event", {"a": "1", "b": "2"})``.

    Free text (a library's line) becomes ``("log", {"message": text})``.
    """
    head, _, rest = message.partition(" ")
    if not _EVENT.match(head):
        return FREE_TEXT_EVENT, {"message": message}

    fields: dict[str, str] = {}
    key: str | None = None
    for word in rest.split(" ") if rest else []:
        name, sep, value = word.partition("=")
        if sep and name.isidentifier():
            key = name
            fields[key] = value
        elif key is not None:
            fields[key] += " " + word
        else:
            fields["message"] = fields.get("message", "") + " " + word
            fields["message"] = fields["message"].strip()
    return head, fields


def _headline(exc: BaseException) -> str:
    cls = type(exc)
    name = cls.__qualname__
    if cls.__module__ not in ("builtins", "__main__"):
        name = f"{cls.__module__}.{name}"

    if isinstance(exc, _PLAIN_MESSAGES):
        text = str(exc)
        return f"{name}: {text}" if text else name
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str):
        return f"{name} (sqlstate {sqlstate}): message withheld"
    return f"{name}: message withheld" if str(exc) else name


def describe_exception(exc: BaseException) -> str:
    """Traceback of ``exc`` and its causes, messages withheld as above."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not c for c in chain):
        chain.append(current)
        if current.__cause__ is not None:
            current = current.__cause__
        elif current.__suppress_context__:
            current = None
        else:
            current = current.__context__

    parts: list[str] = []
    for position, error in enumerate(reversed(chain)):
        if position:
            parts.append("\nwhich then raised:\n")
        parts.append("Traceback (most recent call last):\n")
        parts.extend(
            traceback.format_list(traceback.extract_tb(error.__traceback__))
        )
        parts.append(_headline(error) + "\n")
    return "".join(parts).rstrip("\n")


def _exception_text(exc_info: ExcInfo | None) -> str | None:
    if not exc_info or exc_info[1] is None:
        return None
    return describe_exception(exc_info[1])


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        event, fields = split_message(record.getMessage())
        out: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": event,
        }
        # What the line says itself wins over what the context says.
        merged: dict[str, object] = {**bound_fields(), **fields}
        for key, value in merged.items():
            out[key if key not in _RESERVED else f"field_{key}"] = value

        exception = _exception_text(record.exc_info)
        if exception is not None:
            out["exception"] = exception
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, ensure_ascii=False, default=str)


class ConsoleFormatter(logging.Formatter):
    """A compact line for a terminal, bound fields in brackets."""

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"
        )

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        said = record.getMessage()
        extra = [
            f"{key}={value}"
            for key, value in bound_fields().items()
            if f"{key}=" not in said
        ]
        return f"{line} [{' '.join(extra)}]" if extra else line

    def formatException(self, ei: Any) -> str:
        return _exception_text(ei) or ""


def configure(
    fmt: str = "console", level: str = "INFO", stream: TextIO | None = None
) -> logging.Handler:
    """Install the one handler on the root logger, replacing any other.

    Calling it again replaces the handler rather than adding one, so a
    line is never written twice.
    """
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else ConsoleFormatter()
    )

    root = logging.getLogger()
    for old in root.handlers:
        if old.get_name() == _HANDLER_NAME:
            old.close()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    return handler
