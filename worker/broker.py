"""The worker's two AMQP connections: one consumes and acks, one publishes.

Keeping them apart means a broker resource alarm, which blocks publishing
connections, never stalls the acks of the consuming one. Publishing always
waits for the broker's confirm, with persistent delivery and mandatory
routing: a message no queue took is an error, never a silent drop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange

from worker.errors import BrokerUnavailable, Unroutable
from worker.settings import Settings

logger = logging.getLogger(__name__)

#: errors that mean the broker or the link to it is gone
CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    aio_pika.exceptions.AMQPChannelError,
    ConnectionError,
    OSError,
    TimeoutError,
)


#: errors of opening a connection
OPEN_ERRORS: tuple[type[Exception], ...] = (
    *CONNECTION_ERRORS,
    aio_pika.exceptions.AMQPError,
)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to publish."""

    exchange: str
    routing_key: str
    body: bytes
    message_id: str | None = None
    content_type: str = "application/json"
    headers: Mapping[str, Any] | None = None
    expiration_s: float | None = None


def connection_name(role: str) -> str:
    """A name the broker shows, so an operator can find this process."""
    return f"ins-worker {role} {socket.gethostname()}/{os.getpid()}"


async def open_connection(
    url: str, role: str, timeout_s: float = 10.0
) -> AbstractConnection:
    """One plain (not robust) connection; the runtime reconnects itself."""
    try:
        return await aio_pika.connect(
            url,
            timeout=timeout_s,
            client_properties={"connection_name": connection_name(role)},
        )
    except OPEN_ERRORS as exc:
        raise BrokerUnavailable(
            f"cannot connect to RabbitMQ for {role} ({type(exc).__name__})"
        ) from exc


def is_blocked(connection: AbstractConnection) -> bool:
    """Whether the broker blocked this connection (resource alarm)."""
    transport = getattr(connection, "transport", None)
    inner = getattr(transport, "connection", None)
    unblocked = getattr(inner, "_Connection__connection_unblocked", None)
    return isinstance(unblocked, asyncio.Event) and not unblocked.is_set()


class Publisher:
    """Publishes with confirms on its own connection."""

    def __init__(self, settings: Settings, timeout_s: float = 10.0) -> None:
        self._settings = settings
        self._timeout_s = timeout_s
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        """Whether the publishing channel is open."""
        return self._channel is not None and not self._channel.is_closed

    @property
    def blocked(self) -> bool:
        """Whether the broker is blocking this publisher."""
        return self._connection is not None and is_blocked(self._connection)

    async def _ensure(self) -> AbstractChannel:
        async with self._lock:
            if self._channel is not None and not self._channel.is_closed:
                return self._channel
            await self._drop()
            self._connection = await open_connection(
                self._settings.amqp_url, "publish", self._timeout_s
            )
            try:
                async with asyncio.timeout(self._timeout_s):
                    self._channel = await self._connection.channel(
                        publisher_confirms=True, on_return_raises=True
                    )
            except CONNECTION_ERRORS as exc:
                await self._drop()
                raise BrokerUnavailable(
                    f"cannot open a publishing channel ({type(exc).__name__})"
                ) from exc
            self._exchanges = {}
            return self._channel

    async def _exchange(self, name: str) -> AbstractExchange:
        channel = await self._ensure()
        if name == "":
            return channel.default_exchange
        found = self._exchanges.get(name)
        if found is None:
            found = await channel.get_exchange(name, ensure=False)
            self._exchanges[name] = found
        return found

    async def publish(self, message: Outgoing) -> None:
        """Publish one message and wait for its confirm.

        Raises :class:`BrokerUnavailable` (or :class:`Unroutable`) when
        the broker did not confirm it: the caller must not ack the
        delivery it stands for.
        """
        [error] = await self.publish_many([message])
        if error is None:
            return
        if isinstance(error, BrokerUnavailable):
            raise error
        raise BrokerUnavailable(
            f"publish not confirmed ({type(error).__name__})"
        ) from error

    async def publish_many(
        self, messages: Sequence[Outgoing]
    ) -> list[BaseException | None]:
        """Publish a window of messages; one result per message.

        Results are ``None`` for a confirmed message, else the error.
        Raises :class:`BrokerUnavailable` when no channel can be opened.
        """
        # One connection attempt for the whole window: with the broker
        # down, each message would otherwise try (and time out) in turn.
        await self._ensure()
        pending = [self._publish_one(m) for m in messages]
        results = await asyncio.gather(*pending, return_exceptions=True)
        out: list[BaseException | None] = []
        for result in results:
            if isinstance(result, BaseException):
                if isinstance(result, CONNECTION_ERRORS):
                    await self._drop()
                out.append(result)
            else:
                out.append(None)
        return out

    async def _publish_one(self, message: Outgoing) -> None:
        exchange = await self._exchange(message.exchange)
        amqp = aio_pika.Message(
            message.body,
            content_type=message.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message.message_id,
            headers=dict(message.headers or {}),
            expiration=message.expiration_s,
        )
        try:
            await exchange.publish(
                amqp,
                routing_key=message.routing_key,
                mandatory=True,
                timeout=self._timeout_s,
            )
        except aio_pika.exceptions.PublishError as exc:
            raise Unroutable(
                f"no queue bound for routing key on {message.exchange!r}"
            ) from exc
        except aio_pika.exceptions.DeliveryError as exc:
            raise BrokerUnavailable("broker refused the message") from exc

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        self._channel = None
        self._exchanges = {}
        if connection is not None and not connection.is_closed:
            try:
                await asyncio.wait_for(connection.close(), 5.0)
            except Exception:  # the connection is being thrown away
                logger.debug("publish_connection_close_failed")

    async def close(self) -> None:
        """Close the publishing connection."""
        async with self._lock:
            await self._drop()
