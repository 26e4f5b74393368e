"""The forwarder's tuning, shared by the loop and the parts it composes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ForwarderConfig:
    """Tuning of the forwarder (docs/configuration.md, "delivery and pacing").

    Attributes:
        concurrency: most requests in flight to FBR from this process, and the ceiling of
            each endpoint's adaptive limit.
        prefetch: claimed invoices held ready beyond ``concurrency`` so that a finished
            request is replaced at once; ``None`` is half of ``concurrency`` (at least 16).
        claim_batch: most invoices claimed per tenant per transaction.
        poll_seconds: longest sleep when nothing is due (new ingest wakes it earlier).
        lease_seconds: how long a claim holds; must exceed the FBR read timeout.
        retry_base_seconds: first backoff step for retryable failures.
        retry_max_seconds: backoff cap.
        tenant_rate_per_second: token-bucket rate per tenant (FBR credential); 0 = unlimited.
        tenant_burst: token-bucket size per tenant.
        tenant_concurrency: most requests in flight per tenant; 0 = ``concurrency``.
        latency_target_seconds: answers slower than this count as overload for AIMD.
        breaker_failure_threshold: consecutive failures that open an endpoint's circuit.
        breaker_open_seconds: first open period before a probe.
        breaker_max_open_seconds: cap of the doubling open period.
        tenant_refresh_seconds: how often tenant profiles (tokens, limits) are re-read.
    """

    concurrency: int = 64
    prefetch: int | None = None
    claim_batch: int = 200
    poll_seconds: float = 0.5
    lease_seconds: float = 60.0
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 300.0
    tenant_rate_per_second: float = 0.0
    tenant_burst: float = 50.0
    tenant_concurrency: int = 0
    latency_target_seconds: float = 5.0
    breaker_failure_threshold: int = 5
    breaker_open_seconds: float = 1.0
    breaker_max_open_seconds: float = 60.0
    tenant_refresh_seconds: float = 5.0

    @property
    def ready_size(self) -> int:
        """How many claimed invoices may wait for a free slot."""
        if self.prefetch is not None:
            return max(0, self.prefetch)
        # Half the window: a claim takes a few event-loop turns per statement under load
        # (~60 ms at 900 answers/s), and the buffer must not run dry while it runs.
        return max(16, self.concurrency // 2)

    @property
    def tenant_cap(self) -> int:
        """Most requests in flight per tenant."""
        return self.tenant_concurrency or self.concurrency
