"""Pacing toward FBR: token buckets, adaptive concurrency and circuit breakers.

All three are plain objects driven by an injected monotonic clock (seconds), so their
behaviour is deterministic in tests. The forwarder's :class:`~server.invoices.pacer.Pacer`
owns one :class:`AdaptiveLimit` and one :class:`CircuitBreaker` per FBR endpoint, and one
:class:`TokenBucket` per tenant (per FBR credential).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass


class TokenBucket:
    """A token bucket: ``rate`` tokens per second, holding at most ``burst``.

    Attributes:
        rate: tokens added per second (``0`` or less disables limiting).
        burst: bucket size.
    """

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._clock = clock
        self._tokens = self.burst
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def available(self) -> int:
        """Whole tokens available now (a large number when unlimited)."""
        if self.rate <= 0:
            return 1 << 30
        self._refill()
        return int(self._tokens)

    def take(self, count: int) -> None:
        """Spend ``count`` tokens (callers take at most :meth:`available`)."""
        if self.rate > 0:
            self._refill()
            self._tokens -= count

    def seconds_until(self, count: int = 1) -> float:
        """How long until ``count`` tokens are available."""
        if self.rate <= 0:
            return 0.0
        self._refill()
        return max(0.0, (count - self._tokens) / self.rate)


class Signal(enum.Enum):
    """What one finished request says about FBR's health."""

    GOOD = "good"  # answered (accepted or rejected) in reasonable time
    OVERLOAD = "overload"  # 429, 5xx, timeout: back off
    NEUTRAL = "neutral"  # says nothing about load (e.g. 401)


class AdaptiveLimit:
    """AIMD concurrency limit: +1 per window of good answers, halved on overload.

    Bounded by ``[minimum, maximum]``; ``maximum`` is the configured concurrency. Slow answers
    (above ``latency_target`` seconds) count as overload, so the limit follows FBR's latency.
    """

    def __init__(
        self,
        *,
        maximum: int,
        initial: int | None = None,
        minimum: int = 1,
        latency_target: float = 5.0,
        clock: Callable[[], float],
        cooldown: float = 1.0,
    ) -> None:
        self.maximum = maximum
        self.minimum = max(1, min(minimum, maximum))
        self._limit = float(initial if initial is not None else maximum)
        self._latency_target = latency_target
        self._clock = clock
        self._cooldown = cooldown
        self._last_decrease = float("-inf")

    @property
    def limit(self) -> int:
        """The current limit on requests in flight."""
        return max(self.minimum, min(self.maximum, int(self._limit)))

    def record(self, signal: Signal, latency: float) -> None:
        """Adjust the limit after one request finished."""
        if signal is Signal.GOOD and latency > self._latency_target:
            signal = Signal.OVERLOAD
        if signal is Signal.GOOD:
            self._limit = min(float(self.maximum), self._limit + 1.0 / max(self._limit, 1.0))
        elif signal is Signal.OVERLOAD:
            now = self._clock()
            # One decrease per cooldown: a burst of failures from one window halves once.
            if now - self._last_decrease >= self._cooldown:
                self._limit = max(float(self.minimum), self._limit / 2)
                self._last_decrease = now


class CircuitState(enum.Enum):
    """States of a circuit breaker."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class BreakerChange:
    """A state change worth announcing (alerts, metrics)."""

    endpoint: str
    state: CircuitState
    consecutive_failures: int


class CircuitBreaker:
    """Opens after ``failure_threshold`` consecutive failures; probes after a cool-down.

    While OPEN nothing is sent. After ``open_seconds`` it is HALF_OPEN: exactly one probe may
    go; success closes the circuit, failure re-opens it for twice as long (capped at
    ``max_open_seconds``). So an outage costs a few probes instead of a retry storm.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        failure_threshold: int = 5,
        open_seconds: float = 1.0,
        max_open_seconds: float = 60.0,
        clock: Callable[[], float],
    ) -> None:
        self.endpoint = endpoint
        self._threshold = failure_threshold
        self._base_open = open_seconds
        self._max_open = max_open_seconds
        self._clock = clock
        self.state = CircuitState.CLOSED
        self._failures = 0
        self._open_for = open_seconds
        self._opened_at = 0.0
        self._probe_in_flight = False

    def allowance(self) -> int:
        """How many requests may start now: unlimited (-1), one probe (1) or none (0)."""
        if self.state is CircuitState.OPEN and self._clock() - self._opened_at >= self._open_for:
            self.state = CircuitState.HALF_OPEN
        if self.state is CircuitState.CLOSED:
            return -1
        if self.state is CircuitState.HALF_OPEN and not self._probe_in_flight:
            return 1
        return 0

    def started(self, count: int) -> None:
        """Note that ``count`` requests were sent (a probe, when half-open)."""
        if self.state is CircuitState.HALF_OPEN and count:
            self._probe_in_flight = True

    def seconds_until_probe(self) -> float:
        """Time left before the next probe is allowed (0 when closed)."""
        if self.state is not CircuitState.OPEN:
            return 0.0
        return max(0.0, self._open_for - (self._clock() - self._opened_at))

    def record(self, success: bool) -> BreakerChange | None:
        """Record a finished request; returns the change if the state changed."""
        was = self.state
        if success:
            self._failures = 0
            self._probe_in_flight = False
            self._open_for = self._base_open
            self.state = CircuitState.CLOSED
        else:
            self._failures += 1
            if self.state is CircuitState.HALF_OPEN:
                self._probe_in_flight = False
                self._open_for = min(self._max_open, self._open_for * 2)
                self._open(keep_duration=True)
            elif self.state is CircuitState.CLOSED and self._failures >= self._threshold:
                self._open(keep_duration=False)
        if self.state is not was and not (
            was is CircuitState.HALF_OPEN and self.state is CircuitState.OPEN
        ):
            return BreakerChange(self.endpoint, self.state, self._failures)
        return None

    def _open(self, *, keep_duration: bool) -> None:
        if not keep_duration:
            self._open_for = self._base_open
        self.state = CircuitState.OPEN
        self._opened_at = self._clock()
