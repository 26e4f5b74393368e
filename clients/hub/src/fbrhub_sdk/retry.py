"""When to try a broken stream or an unavailable hub again, and how long to wait first."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import grpc

__all__ = ["RETRYABLE_CODES", "RetryPolicy"]

RETRYABLE_CODES: frozenset[grpc.StatusCode] = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED, grpc.StatusCode.CANCELLED}
)
"""Status codes after which a stream is opened again: the hub was unreachable, restarting
(its streams end CANCELLED or UNAVAILABLE when it shuts down) or asked for a retry. A
cancellation by this process is never retried: it raises ``asyncio.CancelledError``."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter for re-opening a stream after it broke.

    The wait before retry ``n`` (from 1) is ``initial_backoff * multiplier ** (n - 1)``, at
    most ``max_backoff``, then scaled by a random factor in ``[1 - jitter, 1 + jitter]`` so
    that many ERP workers do not reconnect in step after a hub restart. The count of failed
    attempts starts again whenever a stream makes progress (an ack or a message arrives).

    Attributes:
        initial_backoff: seconds before the first retry.
        max_backoff: the longest wait between two attempts.
        multiplier: growth of the wait from one retry to the next.
        jitter: relative randomness of each wait, 0 to 1.
        max_attempts: failed attempts in a row before giving up (the error is raised);
            None retries for ever (a results follower that must outlive a hub outage).
        retryable_codes: the status codes worth a retry.
    """

    initial_backoff: float = 0.25
    max_backoff: float = 10.0
    multiplier: float = 2.0
    jitter: float = 0.2
    max_attempts: int | None = 10
    retryable_codes: frozenset[grpc.StatusCode] = RETRYABLE_CODES

    def __post_init__(self) -> None:
        if self.initial_backoff < 0 or self.max_backoff < self.initial_backoff:
            raise ValueError("need 0 <= initial_backoff <= max_backoff")
        if self.multiplier < 1 or not 0 <= self.jitter <= 1:
            raise ValueError("need multiplier >= 1 and 0 <= jitter <= 1")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1 (or None)")

    def retries(self, code: grpc.StatusCode) -> bool:
        """Whether a failure with ``code`` is worth another attempt."""
        return code in self.retryable_codes

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """The waits before each retry, in seconds; ends after ``max_attempts - 1`` retries."""
        rng = rng or random.Random()
        attempt = 1
        while self.max_attempts is None or attempt < self.max_attempts:
            base = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
            yield base * rng.uniform(1 - self.jitter, 1 + self.jitter)
            attempt += 1


DEFAULT_SUBMIT_RETRY = RetryPolicy()
"""Submitting: up to 10 attempts in a row (about a minute of waiting in all)."""

DEFAULT_RESULTS_RETRY = RetryPolicy(max_attempts=None)
"""Following results: for ever, at most 10 s apart."""
