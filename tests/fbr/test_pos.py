"""The POS (IMS) channel: mapping, local rules, response classification and the simulator."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from clients.fbr.client import POS_URLS, FbrClient
from clients.fbr.pos.payload import (
    POS_SERVICE_FEE,
    from_ims_json,
    receipt_totals,
    to_ims_json,
)
from clients.fbr.pos.responses import classify_pos_response
from clients.fbr.pos.rules import PosValidationContext, validate_pos_invoice
from clients.fbr.qr import print_data
from clients.fbr.responses import OutcomeKind
from clients.fbr_simulator import Fault, FbrSimulator, TokenGrant

NOW = dt.datetime(2025, 5, 13, 7, 0, tzinfo=dt.UTC)
SANDBOX, PRODUCTION = "pos-sandbox", "pos-production"


def item(**overrides: str) -> dict[str, str]:
    values = {
        "item_code": "FAN-56",
        "item_name": "Ceiling fan 56 inch",
        "pct_code": "84145100",
        "quantity": "2",
        "tax_rate": "18",
        "sale_value": "1000.00",
        "discount": "0",
        "further_tax": "0",
        "tax_charged": "180.00",
        "total_amount": "1180.00",
        "invoice_type": "1",
        "ref_usin": "",
    }
    values.update(overrides)
    return values


def pos_invoice(*items: dict[str, str], **header: str) -> dict[str, Any]:
    values: dict[str, Any] = {
        "pos_id": "123456",
        "usin": "USIN-0001",
        "ref_usin": "",
        "date_time": "2025-05-13 12:00:00",
        "buyer_name": "",
        "buyer_ntn": "",
        "buyer_cnic": "",
        "buyer_phone_number": "",
        "payment_mode": "1",
        "invoice_type": "1",
        "items": list(items) or [item(), item(item_code="IRON", sale_value="500.00",
                                          tax_charged="90.00", total_amount="590.00",
                                          quantity="1")],
    }  # fmt: skip
    values.update(header)
    return values


def test_the_ims_body_has_fbrs_keys_types_and_item_sums() -> None:
    body = to_ims_json(pos_invoice())
    assert body["InvoiceNumber"] == "" and body["POSID"] == 123456
    assert (body["PaymentMode"], body["InvoiceType"]) == (1, 1)
    assert (body["TotalSaleValue"], body["TotalTaxCharged"], body["TotalBillAmount"]) == (
        1500,
        270,
        1770,
    )
    assert body["TotalQuantity"] == 3
    first = body["Items"][0]
    assert (first["PCTCode"], first["TaxRate"], first["InvoiceType"]) == ("84145100", 18, 1)
    assert validate_pos_invoice(from_ims_json(body)) == []


def test_the_service_fee_is_a_separate_charge() -> None:
    totals = receipt_totals(pos_invoice())
    assert totals.bill_amount == Decimal("1770.00") and totals.service_fee == POS_SERVICE_FEE
    assert totals.total_payable == Decimal("1771.00")
    assert "ServiceFee" not in str(to_ims_json(pos_invoice()))


POS_CASES = [
    ("pos id not digits", pos_invoice(pos_id="POS-1"), "pos_id"),
    ("usin missing", pos_invoice(usin=""), "usin"),
    ("date time not ISO", pos_invoice(date_time="13/05/2025 12:00"), "date_time"),
    ("payment mode 21", pos_invoice(payment_mode="21"), "payment_mode"),
    ("invoice type 4", pos_invoice(invoice_type="4"), "invoice_type"),
    ("credit without ref", pos_invoice(item(invoice_type="3"), invoice_type="3"), "ref_usin"),
    ("cnic dashed", pos_invoice(buyer_cnic="35202-1234567-1"), "buyer_cnic"),
    ("ntn malformed", pos_invoice(buyer_ntn="12345"), "buyer_ntn"),
    ("no items", pos_invoice(items=[]), "items"),
    ("pct with dot", pos_invoice(item(pct_code="8414.5100")), "items[0].pct_code"),
    ("pct too long", pos_invoice(item(pct_code="841451001")), "items[0].pct_code"),
    ("rate as text", pos_invoice(item(tax_rate="18%")), "items[0].tax_rate"),
    ("item type 2", pos_invoice(item(invoice_type="2")), "items[0].invoice_type"),
    ("credit item on a sale", pos_invoice(item(invoice_type="3")), "items[0].invoice_type"),
    ("tax wrong", pos_invoice(item(tax_charged="100.00", total_amount="1100.00")),
     "items[0].tax_charged"),
    ("total wrong", pos_invoice(item(total_amount="1000.00")), "items[0].total_amount"),
    ("item name missing", pos_invoice(item(item_name="")), "items[0].item_name"),
    ("header total off", pos_invoice(total_sale_value="1499.00"), "total_sale_value"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "invoice", "path"), POS_CASES, ids=[c[0] for c in POS_CASES])
def test_each_broken_pos_invoice_is_refused_at_its_path(
    name: str, invoice: dict[str, Any], path: str
) -> None:
    violations = validate_pos_invoice(invoice)
    assert [v.path for v in violations][:1] == [path], violations
    assert all(v.fbr_error_code == "102" and v.message for v in violations)


def test_a_reused_usin_is_refused_when_the_hub_knows_it() -> None:
    context = PosValidationContext(usin_used=lambda pos_id, usin: usin == "USIN-0001")
    assert [v.path for v in validate_pos_invoice(pos_invoice(), context)] == ["usin"]
    assert validate_pos_invoice(pos_invoice(usin="USIN-0002"), context) == []


def test_a_credit_note_with_its_ref_usin_is_valid() -> None:
    credit = pos_invoice(item(invoice_type="3"), invoice_type="3", ref_usin="USIN-0001")
    assert validate_pos_invoice(credit) == []


# --- responses (recorded-style bodies) ---------------------------------------------------------

RESPONSES = [
    ("local success", 200,
     b'{"InvoiceNumber":"9000052011142444901","Code":"100","Response":"Fiscal Invoice Number '
     b'generated successfully.","Errors":null}', OutcomeKind.ACCEPTED, "9000052011142444901"),
    ("cloud success, numeric number beyond int64", 200,
     b'{"FBRInvoiceNumber":11000120181112000369,"Response":"Invoice received successfully",'
     b'"Code":"100"}', OutcomeKind.ACCEPTED, "11000120181112000369"),
    ("code as a number, trailing commas", 200,
     b'{"InvoiceNumber":"819038FBKP2194812*test*","Code":100,"Errors":[],}',
     OutcomeKind.ACCEPTED, "819038FBKP2194812*test*"),
    ("rejection: Not Available", 200,
     b'{"InvoiceNumber":"Not Available","Code":"102","Response":"Invalid data received",'
     b'"Errors":["PCTCode"]}', OutcomeKind.REJECTED, ""),
    ("code 100 without a number", 200, b'{"InvoiceNumber":"","Code":"100"}',
     OutcomeKind.IN_DOUBT, ""),
    ("unknown code with a number", 200, b'{"InvoiceNumber":"123","Code":"101"}',
     OutcomeKind.IN_DOUBT, "123"),
    ("html with 200", 200, b"<html><body>Service Unavailable</body></html>",
     OutcomeKind.IN_DOUBT, ""),
    ("no token 900902", 401, b'{"fault":{"code":900902,"message":"Missing Credentials"}}',
     OutcomeKind.RETRYABLE, ""),
    ("bad token 900901", 401, b'{"fault":{"code":900901,"message":"Invalid Credentials"}}',
     OutcomeKind.RETRYABLE, ""),
    ("other environment 900908", 403,
     b'{"fault":{"code":900908,"message":"Resource forbidden"}}', OutcomeKind.RETRYABLE, ""),
    ("scope 900910", 403, b'{"fault":{"code":"900910","message":"The access token does not '
     b'allow you to access the requested resource"}}', OutcomeKind.RETRYABLE, ""),
    ("bare 500", 500, b"Contact Administrator", OutcomeKind.IN_DOUBT, ""),
    ("gateway 503 before the back end", 503,
     b'{"fault":{"code":101503,"message":"Runtime Error","description":"Error connecting to '
     b'the back end"}}', OutcomeKind.RETRYABLE, ""),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "status", "body", "kind", "number"), RESPONSES, ids=[r[0] for r in RESPONSES]
)
def test_pos_responses_are_classified(
    name: str, status: int, body: bytes, kind: OutcomeKind, number: str
) -> None:
    outcome = classify_pos_response(status, {}, body)
    assert (outcome.kind, outcome.fbr_invoice_number) == (kind, number)
    if kind is OutcomeKind.REJECTED:
        assert outcome.error_code == "102" and "PCTCode" in outcome.error_message


# --- over HTTP against the simulator ------------------------------------------------------------


@pytest.fixture
async def sim() -> AsyncIterator[FbrSimulator]:
    simulator = FbrSimulator(
        tokens={
            SANDBOX: TokenGrant("8885801", "sandbox"),
            PRODUCTION: TokenGrant("8885801", "production"),
        },
        clock=lambda: NOW,
    )
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def client(sim: FbrSimulator) -> AsyncIterator[FbrClient]:
    async with FbrClient(base_url=sim.base_url, pos_base_url=sim.base_url) as fbr:
        yield fbr


def test_fbr_hosts_are_the_default() -> None:
    assert POS_URLS == {
        "sandbox": "https://esp.fbr.gov.pk:8244/FBR/v1/api/Live/PostData",
        "production": "https://gw.fbr.gov.pk/imsp/v1/api/Live/PostData",
    }


@pytest.mark.parametrize("style", ["cloud", "local"])
async def test_a_valid_pos_invoice_gets_a_fiscal_number_that_prints(
    sim: FbrSimulator, client: FbrClient, style: str
) -> None:
    sim.pos.response_style = style
    outcome = await client.post_pos_invoice(
        to_ims_json(pos_invoice()), token=SANDBOX, environment="sandbox"
    )
    assert outcome.kind is OutcomeKind.ACCEPTED, outcome
    assert outcome.fbr_invoice_number == "1234561305251200000"
    assert sim.pos.usin_count("123456", "USIN-0001") == 1
    assert print_data(outcome.fbr_invoice_number, "").qr_error_level == "H"


async def test_production_path_and_tokens_are_separate(
    sim: FbrSimulator, client: FbrClient
) -> None:
    body = to_ims_json(pos_invoice())
    ok = await client.post_pos_invoice(body, token=PRODUCTION, environment="production")
    wrong = await client.post_pos_invoice(body, token=SANDBOX, environment="production")
    assert ok.kind is OutcomeKind.ACCEPTED
    assert (wrong.kind, wrong.http_status) == (OutcomeKind.RETRYABLE, 401)
    assert [issued.environment for issued in sim.pos.issued] == ["production"]


async def test_the_simulator_refuses_what_the_rules_refuse(
    sim: FbrSimulator, client: FbrClient
) -> None:
    for _, invoice, path in POS_CASES:
        body = to_ims_json(invoice)
        outcome = await client.post_pos_invoice(body, token=SANDBOX, environment="sandbox")
        assert (outcome.kind, outcome.error_code) == (OutcomeKind.REJECTED, "102"), path
        assert path.split(".")[-1] in outcome.error_message or path in outcome.error_message
    assert sim.pos.issued == []


async def test_reused_usins_are_counted(sim: FbrSimulator, client: FbrClient) -> None:
    body = to_ims_json(pos_invoice())
    numbers = [
        (
            await client.post_pos_invoice(body, token=SANDBOX, environment="sandbox")
        ).fbr_invoice_number
        for _ in range(2)
    ]
    assert len(set(numbers)) == 2
    assert sim.pos.reused_usins() == {("123456", "USIN-0001"): 2}


async def test_a_hang_after_fiscalising_is_in_doubt(sim: FbrSimulator) -> None:
    sim.script(Fault.ACCEPT_THEN_DROP)
    async with FbrClient(base_url=sim.base_url, pos_base_url=sim.base_url) as client:
        outcome = await client.post_pos_invoice(
            to_ims_json(pos_invoice()), token=SANDBOX, environment="sandbox"
        )
    assert outcome.kind is OutcomeKind.IN_DOUBT
    assert sim.pos.usin_count("123456", "USIN-0001") == 1
