"""Which backend a chunk goes to: the configured one, or the fallback once the budget is spent or the API fails.

With the OpenAI backend configured, a chunk goes to the ``SCRIBE_FALLBACK`` backend (the local
model, loaded when first needed, or a cheaper API model) when:

- the UTC day's ledger cost has reached ``SCRIBE_DAILY_BUDGET_USD`` (:class:`DaySpend`, read at
  most every few seconds per process). With ``refuse`` the gateway refuses new jobs instead and
  the chunks of jobs in flight still go to the paid API, so those jobs finish as they began;
- the API keeps failing (:class:`~transcriber.breaker.CircuitBreaker`). With ``refuse`` the chunk
  waits instead: it is nak'ed until the circuit lets a call through.

A rate limit is not a failure: after a 429 with Retry-After the paid API's next calls from this
process wait until then (:class:`~transcriber.breaker.RateLimitPause`), and go to it still.

The job then gets a warning saying so and why (:attr:`Choice.warning`), which its status and its
``final`` event carry. The local backend needs none of this: it costs compute only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from core.settings import Settings
from core.worker import backoff
from store import budget
from transcriber.asr import AsrBackend, AsrResult
from transcriber.breaker import CircuitBreaker, RateLimitPause
from transcriber.errors import ModelError, PermanentAsrError, TransientAsrError
from transcriber.local import LocalBackend
from transcriber.openai_api import OpenAIBackend

logger = logging.getLogger(__name__)

# 429s one delivery of a chunk waits out in place (a rate limit paces the calls; it must not fail a job
# after max_deliver redeliveries): past them it goes back to the queue, counted.
RATE_LIMIT_TRIES = 8
SPEND_TTL_S = 5.0  # how long one process trusts the day's cost it read: a budget may be overrun by as much


@dataclass(frozen=True)
class Choice:
    """Where one chunk goes.

    Attributes:
        backend: The backend to call.
        paid: It is the configured paid API: its outcome feeds the circuit breaker.
        warning: For the job, when its audio goes to the fallback: what happened and since when.
    """

    backend: AsrBackend
    paid: bool = False
    warning: str | None = None


class DaySpend:
    """The UTC day's ledger cost against a budget, read from PostgreSQL at most every ``ttl_s`` seconds."""

    def __init__(
        self,
        pool: Any,
        budget_usd: float,
        *,
        ttl_s: float = SPEND_TTL_S,
        clock: Callable[[], float] = time.monotonic,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
    ) -> None:
        self.pool = pool
        self.budget_usd = budget_usd
        self.ttl_s = ttl_s
        self._clock = clock
        self._today = today
        self._day: date | None = None
        self._cost = 0.0
        self._read_at = 0.0
        self._reached_at: datetime | None = None
        self._lock = asyncio.Lock()

    async def reached(self) -> datetime | None:
        """When today's cost reached the budget, or None while it has not."""
        async with self._lock:
            day = self._today()
            if day != self._day or self._clock() >= self._read_at + self.ttl_s:
                if day != self._day:
                    self._day, self._reached_at = day, None
                self._cost = await budget.day_cost(self.pool, day)
                self._read_at = self._clock()
            if self._cost < self.budget_usd:
                return None
            if self._reached_at is None:
                at = await budget.reached_at(self.pool, day, self.budget_usd)
                self._reached_at = at or datetime.now(UTC)
                logger.warning(
                    "daily budget reached", extra={"budget_usd": self.budget_usd, "cost_usd": round(self._cost, 6)}
                )
            return self._reached_at


LoadLocal = Callable[[Settings], AsrBackend]


class Router:
    """Chooses each chunk's backend and keeps the circuit breaker of the paid one (see module doc)."""

    def __init__(
        self,
        settings: Settings,
        pool: Any,
        primary: AsrBackend,
        *,
        breaker: CircuitBreaker | None = None,
        pause: RateLimitPause | None = None,
        spend: DaySpend | None = None,
        load_local: LoadLocal = LocalBackend.from_settings,
        rate_limit_tries: int = RATE_LIMIT_TRIES,
    ) -> None:
        """Route chunks for ``primary``, the configured backend.

        Args:
            settings: ``fallback``, ``daily_budget_usd`` and what the fallback backend needs.
            pool: The database pool (the day's cost).
            primary: The configured backend.
            breaker: The paid API's circuit breaker (default: :mod:`transcriber.breaker`'s thresholds).
            pause: Holds the paid API's calls after a rate limit (default: one on the real clock).
            spend: The budget guard (default: one for ``daily_budget_usd``, none when it is 0).
            load_local: Loads the local fallback, blocking (called in a thread, once, when first needed).
            rate_limit_tries: Calls one chunk makes, each after the pause of the 429 before it, before a
                rate limit goes back to the work queue as a transient error.
        """
        self.settings = settings
        self.primary = primary
        self.paid = primary.name == "openai"
        self.breaker = breaker or CircuitBreaker()
        self.pause = pause or RateLimitPause()
        self.spend = spend or (DaySpend(pool, settings.daily_budget_usd) if settings.daily_budget_usd > 0 else None)
        self._load_local = load_local
        self.rate_limit_tries = rate_limit_tries
        self._fallback: AsrBackend | None = None
        self._lock = asyncio.Lock()

    async def choose(self) -> Choice:
        """The backend for the next chunk.

        Raises:
            TransientAsrError: The API keeps failing and the fallback is ``refuse`` (wait for the
                circuit), or the local fallback cannot be loaded.
        """
        if not self.paid:
            return Choice(self.primary)
        kind = self.settings.fallback_kind
        if self.spend is not None and kind != "refuse" and (reached := await self.spend.reached()) is not None:
            fallback = await self.fallback()
            return Choice(fallback, warning=self._budget_warning(fallback, reached))
        if self.breaker.allow():
            return Choice(self.primary, paid=True)
        if kind == "refuse":
            wait = self.breaker.retry_in()
            raise TransientAsrError(
                f"the speech API ({self.primary.model}) keeps failing: calls to it are paused for {wait:.0f} s",
                wait or None,
                backend=self.primary.name,
            )
        fallback = await self.fallback()
        return Choice(fallback, warning=self._failing_warning(fallback))

    async def call(self, choice: Choice, send: Callable[[], Awaitable[AsrResult]]) -> AsrResult:
        """Make the chosen backend's call with ``send``, telling the circuit breaker how the paid API did.

        A paid call waits out a rate limit's pause first; a 429 starts one (Retry-After, or a backoff), or
        makes it longer, and the call is made again after it, up to ``rate_limit_tries`` calls: a rate
        limit is the API working, and each redelivery would count towards the chunk's last one.
        """
        attempt = 0
        while True:
            attempt += 1
            if choice.paid:
                await self.pause.wait()
            try:
                result = await send()
            except TransientAsrError as exc:
                if choice.paid and exc.status_code == 429:  # not the breaker's: see transcriber.breaker
                    self.pause.hold(exc.retry_after if exc.retry_after is not None else backoff(attempt))
                    if attempt < self.rate_limit_tries:
                        logger.info("rate limited; calling again after the pause", extra={"try": attempt})
                        continue
                elif choice.paid:
                    self.breaker.failed()
                raise
            except PermanentAsrError:
                if choice.paid:
                    self.breaker.succeeded()  # it answered: this chunk, or the key, is what is wrong
                raise
            if choice.paid:
                self.breaker.succeeded()
            return result

    async def fallback(self) -> AsrBackend:
        """The fallback backend, made on first use (the local model loads in a thread)."""
        async with self._lock:
            if self._fallback is None:
                self._fallback = await self._make_fallback()
            return self._fallback

    async def _make_fallback(self) -> AsrBackend:
        if (model := self.settings.fallback_model) is not None:
            return OpenAIBackend(self.settings.with_(openai_model=model))
        logger.info("loading the local model for the fallback")
        try:
            return await asyncio.to_thread(self._load_local, self.settings)
        except ModelError as exc:
            raise TransientAsrError(
                f"the fallback's local model cannot be loaded: {exc.reason}", backend="local"
            ) from exc

    async def close(self) -> None:
        """Release the fallback backend, if one was made."""
        if self._fallback is not None:
            await self._fallback.close()
            self._fallback = None

    def _instead(self, fallback: AsrBackend) -> str:
        by = f"the local model ({fallback.model})" if fallback.name == "local" else fallback.model
        return f"{by} instead of {self.primary.model}"

    def _budget_warning(self, fallback: AsrBackend, reached: datetime) -> str:
        return (
            f"The daily budget of {_usd(self.settings.daily_budget_usd)} was reached at "
            f"{reached.astimezone(UTC):%H:%M} UTC: from then on this job was transcribed by "
            f"{self._instead(fallback)} (the budget resets at midnight UTC)."
        )

    def _failing_warning(self, fallback: AsrBackend) -> str:
        return (
            f"The speech API ({self.primary.model}) kept failing, so part of this job was transcribed by "
            f"{self._instead(fallback)}."
        )


def _usd(amount: float) -> str:
    return f"${amount:,.2f}" if round(amount, 2) == amount else f"${amount:g}"
