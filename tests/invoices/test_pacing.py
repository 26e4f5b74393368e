"""Pacing toward FBR: token bucket, adaptive concurrency, circuit breaker (deterministic clock)."""

from __future__ import annotations

from server.invoices.pacing import (
    AdaptiveLimit,
    CircuitBreaker,
    CircuitState,
    Signal,
    TokenBucket,
)


class Clock:
    """A hand-driven monotonic clock."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_refills_at_its_rate_and_caps_at_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=5, clock=clock)
    assert bucket.available() == 5
    bucket.take(5)
    assert bucket.available() == 0
    assert abs(bucket.seconds_until(1) - 0.1) < 1e-9
    clock.now += 0.35
    assert bucket.available() == 3
    clock.now += 100
    assert bucket.available() == 5


def test_unlimited_bucket_never_blocks() -> None:
    bucket = TokenBucket(rate=0, burst=1, clock=Clock())
    bucket.take(10_000)
    assert bucket.available() > 10_000
    assert bucket.seconds_until(5) == 0


def test_adaptive_limit_halves_on_overload_and_grows_back_additively() -> None:
    clock = Clock()
    limit = AdaptiveLimit(maximum=64, initial=32, clock=clock, cooldown=1.0)
    limit.record(Signal.OVERLOAD, 0.05)
    assert limit.limit == 16
    limit.record(Signal.OVERLOAD, 0.05)  # same cooldown window: one decrease only
    assert limit.limit == 16
    for _ in range(17):
        limit.record(Signal.GOOD, 0.05)
    assert limit.limit == 17  # about +1 per window (17 answers at ~16 in flight)
    clock.now += 2
    limit.record(Signal.GOOD, 30.0)  # far above the latency target: overload
    assert limit.limit == 8


def test_adaptive_limit_stays_within_bounds() -> None:
    clock = Clock()
    limit = AdaptiveLimit(maximum=4, initial=4, clock=clock)
    for _ in range(100):
        limit.record(Signal.GOOD, 0.01)
    assert limit.limit == 4
    for _ in range(10):
        clock.now += 5
        limit.record(Signal.OVERLOAD, 0.01)
    assert limit.limit == 1
    limit.record(Signal.NEUTRAL, 0.01)
    assert limit.limit == 1


def test_breaker_opens_after_consecutive_failures_and_probes_once() -> None:
    clock = Clock()
    breaker = CircuitBreaker("di:sandbox", failure_threshold=3, open_seconds=2, clock=clock)
    assert breaker.allowance() == -1
    assert breaker.record(False) is None
    assert breaker.record(True) is None  # a success resets the run of failures
    breaker.record(False)
    breaker.record(False)
    change = breaker.record(False)
    assert change is not None and change.state is CircuitState.OPEN
    assert breaker.allowance() == 0
    clock.now += 2
    assert breaker.allowance() == 1  # half-open: one probe
    breaker.started(1)
    assert breaker.allowance() == 0  # the probe is out; nothing else goes
    assert breaker.record(False) is None  # probe failed: open again, for longer
    clock.now += 2
    assert breaker.allowance() == 0
    clock.now += 2
    assert breaker.allowance() == 1
    breaker.started(1)
    change = breaker.record(True)
    assert change is not None and change.state is CircuitState.CLOSED
    assert breaker.allowance() == -1


def test_breaker_open_period_is_capped() -> None:
    clock = Clock()
    breaker = CircuitBreaker(
        "di:production", failure_threshold=1, open_seconds=1, max_open_seconds=4, clock=clock
    )
    breaker.record(False)
    for _ in range(6):
        clock.now += breaker.seconds_until_probe()
        assert breaker.allowance() == 1
        breaker.started(1)
        breaker.record(False)
    assert breaker.seconds_until_probe() == 4
