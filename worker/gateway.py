"""INSi as the pipeline sees it: rate limit, breaker, retries, deadline.

The client makes one SOAP call; this module decides whether there is
another. Only :class:`~worker.errors.InsiTransient` errors are retried
(never a permanent fault, never a cancellation), with exponential backoff
and jitter, and only while the message's budget leaves room for the wait
and a call. The last error is re-raised as it was. A call the budget no
longer leaves room for is not started, and neither that nor a wait for
the rate limit counts against INSi in the breaker: INSi was not asked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base

from worker import metrics
from worker.breaker import CircuitBreaker
from worker.deadline import Deadline
from worker.errors import (
    ConfigurationError,
    InsiConfigurationFault,
    InsiError,
    InsiPermanent,
    InsiTimeout,
    InsiTransient,
)
from worker.insi.model import Exchange, Operation, SearchResult, TraitsSearch

logger = logging.getLogger(__name__)

#: the least time worth starting a call with
MIN_CALL_S = 1.0


class SearchClient(Protocol):
    """What the gateway needs of the INSi client."""

    async def search(self, search: TraitsSearch) -> Exchange: ...


class Limiter(Protocol):
    """What the gateway needs of the rate limiter."""

    async def acquire(self, deadline: float) -> None: ...


class _BudgetStop(stop_base):
    """Stop retrying when the next wait and a call no longer fit."""

    def __init__(self, deadline: Deadline) -> None:
        self._deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        upcoming = retry_state.upcoming_sleep or 0.0
        return self._deadline.remaining() < upcoming + MIN_CALL_S


class InsiGateway:
    """Every INSi call of the worker goes through here."""

    def __init__(
        self,
        client: SearchClient,
        breaker: CircuitBreaker,
        limiter: Limiter,
        *,
        max_attempts: int = 4,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 8.0,
        on_configuration_fault: Callable[[InsiError], None] | None = None,
    ) -> None:
        self._client = client
        self._breaker = breaker
        self._limiter = limiter
        self._max_attempts = max_attempts
        self._initial = backoff_initial_s
        self._max = backoff_max_s
        self._on_config = on_configuration_fault

    def caller(
        self, deadline: Deadline, exchanges: list[Exchange], log: LogContext
    ) -> Callable[[TraitsSearch], Awaitable[SearchResult]]:
        """A search function bound to one message's budget and audit list."""

        async def call(search: TraitsSearch) -> SearchResult:
            return await self.search(search, deadline, exchanges, log)

        return call

    async def search(
        self,
        search: TraitsSearch,
        deadline: Deadline,
        exchanges: list[Exchange],
        log: LogContext,
    ) -> SearchResult:
        """One logical search, retried within the budget."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(InsiTransient),
            stop=stop_after_attempt(self._max_attempts)
            | _BudgetStop(deadline),
            wait=wait_exponential_jitter(
                multiplier=self._initial, max=self._max
            ),
            before_sleep=lambda state: self._before_sleep(state, log),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._once(search, deadline, exchanges, log)
        raise AssertionError("tenacity ended without a result")

    async def _once(
        self,
        search: TraitsSearch,
        deadline: Deadline,
        exchanges: list[Exchange],
        log: LogContext,
    ) -> SearchResult:
        if deadline.remaining() < MIN_CALL_S:
            raise InsiTimeout("message budget spent before the INSi call")
        probe = self._breaker.acquire()
        try:
            await self._limiter.acquire(deadline.at - MIN_CALL_S)
        except TimeoutError as exc:
            self._breaker.release(probe)
            raise InsiTimeout("budget spent waiting for a rate slot") from exc
        except BaseException:
            self._breaker.release(probe)
            raise

        started = time.perf_counter()
        try:
            async with asyncio.timeout(deadline.remaining()):
                exchange = await self._client.search(search)
        except TimeoutError as exc:
            # The message's budget ran out during the call or its wait.
            self._breaker.record_failure(probe)
            self._count("timeout", started)
            raise InsiTimeout("message budget spent during INSi call") from exc
        except InsiTransient as exc:
            self._breaker.record_failure(probe)
            self._keep(exc, exchanges, started)
            raise
        except InsiPermanent as exc:
            # INSi answered, so it is up: a success for the breaker.
            self._breaker.record_success(probe)
            self._keep(exc, exchanges, started)
            configuration = (InsiConfigurationFault, ConfigurationError)
            if isinstance(exc, configuration) and self._on_config:
                self._on_config(exc)
            raise
        except BaseException:
            self._breaker.release(probe)
            raise
        self._breaker.record_success(probe)
        exchanges.append(exchange)
        assert exchange.result is not None
        self._count(exchange.result.cr_code, started)
        return exchange.result

    def _keep(
        self, exc: InsiError, exchanges: list[Exchange], started: float
    ) -> None:
        if exc.exchange is not None:
            exchanges.append(exc.exchange)
        self._count(exc.kind, started)

    @staticmethod
    def _count(result: str, started: float) -> None:
        operation = Operation.TRAITS_SEARCH.value
        metrics.insi_calls.labels(operation=operation, result=result).inc()
        metrics.insi_latency.labels(operation=operation).observe(
            time.perf_counter() - started
        )

    @staticmethod
    def _before_sleep(state: RetryCallState, log: LogContext) -> None:
        metrics.retries.inc()
        error = state.outcome.exception() if state.outcome else None
        logger.warning(
            "insi_retry request_id=%s attempt=%d kind=%s wait_s=%.2f",
            log.request_id,
            state.attempt_number,
            getattr(error, "kind", "unknown"),
            state.upcoming_sleep or 0.0,
        )


class LogContext(Protocol):
    """The per-message fields every log line carries."""

    @property
    def request_id(self) -> str: ...
