"""Per-peer limits on failed authentication: guessing keys is slow and costs the hub nothing.

Each peer (the client's address, without its port) may fail authentication a number of
times per window (``FBRHUB_AUTH_FAILURES_PER_PEER`` per ``FBRHUB_AUTH_FAILURE_WINDOW_SECONDS``).
Past that, its calls are answered ``RESOURCE_EXHAUSTED`` until the window ends, without a
database read, unless they carry a key verified moments ago (the verifier's cache): an ERP
behind the same address as a misconfigured client keeps working.

Memory is bounded: at most :attr:`FailureLimiter.max_peers` peers are tracked, the oldest
window dropped first.
"""

from __future__ import annotations

from collections import OrderedDict


def peer_host(peer: str) -> str:
    """A gRPC peer's address without its port: ``ipv4:10.0.0.7:5123`` -> ``ipv4:10.0.0.7``."""
    if peer.startswith("ipv6:[") and "]" in peer:
        return peer[: peer.index("]") + 1]
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6") and ":" in rest:
        return f"{kind}:{rest.rsplit(':', 1)[0]}"
    return peer


class FailureLimiter:
    """Counts failed authentications per peer in fixed windows.

    Args:
        limit: failures a peer may have per window before it is refused (0: no limit).
        window_seconds: the window's length.
        max_peers: peers tracked at once.
    """

    def __init__(self, limit: int, window_seconds: float, *, max_peers: int = 100_000) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self.max_peers = max_peers
        self._windows: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def blocked(self, peer: str, now: float) -> bool:
        """Whether ``peer`` has used up its failures in the current window."""
        if self.limit <= 0:
            return False
        found = self._windows.get(peer)
        return found is not None and now - found[0] < self.window_seconds and found[1] >= self.limit

    def failed(self, peer: str, now: float) -> None:
        """Count a failed authentication of ``peer``."""
        if self.limit <= 0:
            return
        started, count = self._windows.pop(peer, (now, 0))
        if now - started >= self.window_seconds:
            started, count = now, 0
        self._windows[peer] = (started, count + 1)
        while len(self._windows) > self.max_peers:
            self._windows.popitem(last=False)
