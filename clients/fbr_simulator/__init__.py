"""A faithful stand-in for FBR's Digital Invoicing API, served over real HTTP.

- ``app``: :class:`FbrSimulator`, the server (auth, numbers, issued-number bookkeeping).
- ``protocol``: FBR's response shapes and the JSON wire-type checks.
- ``faults``: the scripted faults and the gateway's exact fault bodies.
- ``cli``: ``python -m clients.fbr_simulator`` (``fbrhub fbr-sim``).

The invoice rules themselves are the hub's (:mod:`clients.fbr.rules`), never a copy.
"""

from __future__ import annotations

from clients.fbr_simulator.app import FbrSimulator, IssuedNumber, TokenGrant
from clients.fbr_simulator.faults import Fault

__all__ = ["Fault", "FbrSimulator", "IssuedNumber", "TokenGrant"]
