"""FBR's two invoicing APIs: Digital Invoicing, and the POS (IMS) fiscal API."""

from __future__ import annotations

from enum import StrEnum


class Channel(StrEnum):
    """Which FBR API an invoice goes to; values are stored as text."""

    DI = "di"
    """Digital Invoicing (``di_data/v1/di/postinvoicedata``)."""
    POS = "pos"
    """The POS fiscal API (IMS ``PostData``), for Tier-1 retailers."""
