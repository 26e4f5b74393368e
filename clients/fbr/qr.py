"""What a printed invoice needs once FBR has accepted it: the number, ``dated`` and the QR code.

FBR's DI spec asks for a QR code of **version 2 (25 × 25 modules)**, printed at 1 × 1 inch,
next to the FBR Digital Invoicing logo [SPEC §6 p.35]; the POS rules ask for one of the fiscal
number too (docs/fbr-coverage.md §6.6). Choices (docs/fbr-coverage.md §8):

- **Content: the FBR invoice number, nothing else.** The spec does not say what the code holds;
  every implementation found encodes the number, and the one URL seen is a self-confessed
  placeholder. The number is upper-case letters and digits, so it fits QR's alphanumeric mode.
- **Error correction: the highest level that still fits version 2**, at least M. A 22-character
  DI number (NTN seller) fits level Q (version 2-Q holds 29 alphanumeric characters) and so does
  a 28-character one (CNIC seller); a 19-20 digit POS number fits H. A number that would not
  fit version 2 even at M raises ``ValueError`` rather than silently growing the symbol.
- **Quiet zone: 4 modules** (the QR standard's minimum), so the PNG/SVG scan as they are.
- Print the block only after acceptance [KIT-DI §12]: this module is only ever given an
  accepted invoice's number.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import segno

QR_VERSION = 2
QR_MODULES = 25
QUIET_ZONE = 4
MIN_ERROR_LEVEL = "M"


@dataclass(frozen=True, slots=True)
class PrintData:
    """The FBR block of a printed invoice."""

    fbr_invoice_number: str
    dated: str
    """FBR's ``dated`` exactly as FBR sent it (Pakistan time), never reformatted."""
    qr_png: bytes
    qr_svg: bytes
    qr_error_level: str
    """"M", "Q" or "H": the error correction level chosen."""


def qr_code(fbr_invoice_number: str) -> segno.QRCode:
    """The version-2 QR code of an FBR invoice number (see the module docstring).

    Raises:
        ValueError: the number is empty or too long for a version-2 code.
    """
    if not fbr_invoice_number:
        raise ValueError("an FBR invoice number is required")
    try:
        # boost_error raises the level above M as far as version 2 allows.
        return segno.make_qr(
            fbr_invoice_number, version=QR_VERSION, error=MIN_ERROR_LEVEL, boost_error=True
        )
    except segno.DataOverflowError as exc:
        raise ValueError("the FBR invoice number does not fit a version-2 QR code") from exc


def print_data(fbr_invoice_number: str, dated: str, *, scale: int = 8) -> PrintData:
    """The print block of an accepted invoice: number, ``dated``, QR as PNG and SVG.

    Args:
        fbr_invoice_number: the number FBR issued (DI ``invoiceNumber`` or a POS fiscal number).
        dated: FBR's ``dated`` for it.
        scale: pixels per module of the PNG (8 gives 264 px, about 1 inch at 264 dpi).

    Raises:
        ValueError: the number is empty or does not fit a version-2 code.
    """
    code = qr_code(fbr_invoice_number)
    png, svg = io.BytesIO(), io.BytesIO()
    code.save(png, kind="png", scale=scale, border=QUIET_ZONE)
    # 25 modules to the inch, as the spec prints it; the quiet zone comes on top.
    module_mm = 25.4 / QR_MODULES
    code.save(svg, kind="svg", scale=module_mm, border=QUIET_ZONE, xmldecl=False, unit="mm")
    return PrintData(
        fbr_invoice_number=fbr_invoice_number,
        dated=dated,
        qr_png=png.getvalue(),
        qr_svg=svg.getvalue(),
        qr_error_level=code.error,
    )
