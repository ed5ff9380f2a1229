"""A circuit breaker for the paid API: after repeated failures, stop calling it for a while.

Closed: calls go through; :data:`FAILURES` transient failures within :data:`WINDOW_S` open it.
Open: no calls for :data:`COOL_DOWN_S`; chunks go to the fallback (or wait, with ``refuse``).
Half-open: one trial call; its success closes the circuit, its failure opens it again. A trial
that never reports (its chunk was answered from the cache, or its worker died) is replaced by
another after a cool-down.

Per process: each transcriber process learns on its own that the API is failing, after at
most :data:`FAILURES` calls of its own. Rate limits (429) are not failures here: the API is
working and asks for fewer calls. The chunk that got one is nak'ed for its Retry-After (and a
jitter), and :class:`RateLimitPause` holds this process's next calls until then, so the calls in
flight do not all meet the limit again.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Literal

from core.worker import jittered

FAILURES = 5
WINDOW_S = 60.0
COOL_DOWN_S = 30.0

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Counts a backend's transient failures and says whether the next call may go."""

    def __init__(
        self,
        *,
        failures: int = FAILURES,
        window_s: float = WINDOW_S,
        cool_down_s: float = COOL_DOWN_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures = failures
        self.window_s = window_s
        self.cool_down_s = cool_down_s
        self._clock = clock
        self._state: State = "closed"
        self._recent: deque[float] = deque()
        self._opened_at = 0.0
        self._trial_at: float | None = None

    @property
    def state(self) -> State:
        """``closed``, ``open`` or ``half_open`` (open, its cool-down over: a trial may go)."""
        if self._state == "open" and self._clock() >= self._opened_at + self.cool_down_s:
            return "half_open"
        return self._state

    def allow(self) -> bool:
        """Whether a call may go now; in half-open, the first caller gets the one trial."""
        now = self._clock()
        if self._state == "closed":
            return True
        if self._state == "open":
            if now < self._opened_at + self.cool_down_s:
                return False
            self._state = "half_open"
            self._trial_at = None
        if self._trial_at is not None and now < self._trial_at + self.cool_down_s:
            return False  # a trial is out
        self._trial_at = now
        return True

    def retry_in(self) -> float:
        """Seconds until a call may go (0 when one may go now)."""
        now = self._clock()
        if self._state == "open":
            return max(0.0, self._opened_at + self.cool_down_s - now)
        if self._state == "half_open" and self._trial_at is not None:
            return max(0.0, self._trial_at + self.cool_down_s - now)
        return 0.0

    def succeeded(self) -> None:
        """A call went through: the API works."""
        self._state = "closed"
        self._recent.clear()
        self._trial_at = None

    def failed(self) -> None:
        """A call failed transiently (server error, timeout, connection)."""
        now = self._clock()
        if self._state == "half_open":
            self._open(now)
            return
        if self._state == "open":
            return  # calls that started before it opened
        self._recent.append(now)
        while self._recent and self._recent[0] <= now - self.window_s:
            self._recent.popleft()
        if len(self._recent) >= self.failures:
            self._open(now)

    def _open(self, now: float) -> None:
        self._state = "open"
        self._opened_at = now
        self._trial_at = None
        self._recent.clear()


class RateLimitPause:
    """After a rate limit's Retry-After, this process's next calls to the paid API wait until it is over.

    The calls already out come back as they will. The waiting ones go when the pause is over, each
    after its own jitter (:func:`core.worker.jittered`), so they do not meet the limit all at once
    again; a later 429 makes the pause longer, never shorter.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._until = 0.0

    def hold(self, seconds: float) -> None:
        """The API asked for no calls for ``seconds``."""
        self._until = max(self._until, self._clock() + seconds)

    def remaining(self) -> float:
        """Seconds until calls may go again (0 when they may go now)."""
        return max(0.0, self._until - self._clock())

    async def wait(self) -> None:
        """Return at once, or when the pause (however long it has grown meanwhile) and a jitter are over."""
        while (left := self.remaining()) > 0:
            await self._sleep(jittered(left))
