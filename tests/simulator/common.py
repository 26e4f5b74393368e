"""Tokens, paths and bodies shared by the simulator tests."""

from __future__ import annotations

import datetime as dt
from typing import Any

from clients.fbr.payload import to_fbr_json
from clients.fbr_simulator import TokenGrant
from tests.fbr.cases import SELLER, invoice, line

SANDBOX_TOKEN = "sandbox-8885801"


PRODUCTION_TOKEN = "production-8885801"


OTHER_TOKEN = "sandbox-7000007"


CNIC_TOKEN = "sandbox-cnic"


CNIC_SELLER = "4130276175937"


NOW = dt.datetime(2025, 5, 13, 7, 0, 0, 123000, tzinfo=dt.UTC)


POST_SB = "/di_data/v1/di/postinvoicedata_sb"


POST = "/di_data/v1/di/postinvoicedata"


VALIDATE_SB = "/di_data/v1/di/validateinvoicedata_sb"


TOKENS = {
    SANDBOX_TOKEN: TokenGrant(SELLER, "sandbox"),
    PRODUCTION_TOKEN: TokenGrant(SELLER, "production"),
    OTHER_TOKEN: TokenGrant("7000007", "sandbox"),
    CNIC_TOKEN: TokenGrant(CNIC_SELLER, "sandbox"),
}


def two_lines() -> dict[str, Any]:
    return to_fbr_json(invoice(line(), line(hs_code="8414.5100")))
