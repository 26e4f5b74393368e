"""The printed invoice's QR code: version 2, the FBR number, and it decodes back."""

from __future__ import annotations

import pytest
import zxingcpp

from clients.fbr.qr import QR_MODULES, QUIET_ZONE, print_data, qr_code
from tests.helpers import png_pixels

NUMBERS = [
    "7000007DI1747119701593",  # NTN seller, 22 characters [SPEC p.12]
    "4130276175937DI1747119701593",  # CNIC seller, 28 characters
    "11000120181112000369",  # a POS fiscal number [T3]
]


@pytest.mark.parametrize("number", NUMBERS)
def test_the_png_decodes_back_to_the_fbr_number(number: str) -> None:
    data = print_data(number, "2025-05-13 12:01:41", scale=4)
    width, height, pixels = png_pixels(data.qr_png)
    assert width == height == (QR_MODULES + 2 * QUIET_ZONE) * 4
    found = zxingcpp.read_barcode(
        zxingcpp.ImageView(pixels, width, height, zxingcpp.ImageFormat.Lum),
        formats=zxingcpp.BarcodeFormat.QRCode,
    )
    assert found is not None and found.text == number
    assert found.format == zxingcpp.BarcodeFormat.QRCode
    assert data.fbr_invoice_number == number and data.dated == "2025-05-13 12:01:41"


@pytest.mark.parametrize("number", NUMBERS)
def test_the_code_is_version_2_at_the_highest_level_that_fits(number: str) -> None:
    code = qr_code(number)
    assert code.version == 2 and code.symbol_size(border=0) == (25, 25)
    assert code.error == ("H" if number.isdigit() else "Q")


def test_the_svg_is_one_inch_of_modules_and_matches_the_matrix() -> None:
    data = print_data(NUMBERS[0], "x")
    svg = data.qr_svg.decode()
    assert svg.startswith("<svg") and 'width="33.528mm"' in svg  # (25 + 8) x 1.016 mm
    # The module matrix behind both images is the encoder's own, decoded independently.
    matrix = qr_code(NUMBERS[0]).matrix
    side = len(matrix)
    pixels = bytes(0 if matrix[y][x] else 255 for y in range(side) for x in range(side))
    border = bytes(255 for _ in range(side))
    framed = border * 4 + pixels + border * 4
    found = zxingcpp.read_barcode(
        zxingcpp.ImageView(framed, side, side + 8, zxingcpp.ImageFormat.Lum)
    )
    assert found is not None and found.text == NUMBERS[0]


def test_a_number_too_long_for_version_2_is_refused() -> None:
    with pytest.raises(ValueError, match="version-2"):
        qr_code("x" * 60)
    with pytest.raises(ValueError, match="required"):
        qr_code("")
