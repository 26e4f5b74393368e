"""A faithful stand-in for FBR's Digital Invoicing API, served over real HTTP.

- ``app``: :class:`FbrSimulator`, the server (auth, numbers, issued-number bookkeeping).
- ``protocol``: FBR's response shapes and the JSON wire-type checks.
- ``faults``: the per-request faults and the gateway's exact fault bodies.
- ``schedule``: the seeded :class:`FaultPlan` (latency, random faults, bursts, outages) and the
  injector that decides each request's fault.
- ``tokens``: the security tokens it accepts, and WSO2's answers to the others.
- ``listener``: the listening socket, which a refusing outage closes and reopens.
- ``control``: ``/__sim/stats`` and friends, for tests and demos running it as a process.
- ``cli``: ``python -m clients.fbr_simulator`` (``fbrhub fbr-sim``).

The invoice rules themselves are the hub's (:mod:`clients.fbr.rules`), never a copy.
"""

from __future__ import annotations

from clients.fbr_simulator.app import FbrSimulator, IssuedNumber
from clients.fbr_simulator.faults import Fault
from clients.fbr_simulator.schedule import Burst, FaultPlan, Latency, Outage, OutageMode, Step
from clients.fbr_simulator.tokens import TokenGrant

__all__ = [
    "Burst",
    "Fault",
    "FaultPlan",
    "FbrSimulator",
    "IssuedNumber",
    "Latency",
    "Outage",
    "OutageMode",
    "Step",
    "TokenGrant",
]
