"""What the demo sends: the 28 sandbox scenarios, broken and resent invoices, POS receipts.

Also the debit note raised on an accepted invoice, and the two sellers: a DI seller assigned
every sandbox scenario, and a retailer on FBR's POS channel. Everything is built from a seed,
so a run can be repeated invoice for invoice.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from clients.fbr import samples
from clients.fbr.payload import INVOICE_TYPE_DEBIT_NOTE, NormalisedInvoice
from fbrhub.v1 import invoice_pb2
from fbrhub_sdk import invoice_to_proto

PAKISTAN_TIME = dt.timezone(dt.timedelta(hours=5), "PKT")
DEMO_SELLER = samples.SellerInfo(
    ntn_cnic="7000007",
    business_name="Demo Traders (Pvt) Ltd",
    province="PUNJAB",
    address="12 Mall Road, Lahore",
)
DEMO_FBR_TOKEN = "demo-sandbox-token"
# Every sandbox scenario, in turn; the demo seller is assigned all of them.
SCENARIOS: tuple[str, ...] = samples.SCENARIO_IDS
INVALID_EVERY = 67  # about 1.5% of the invoices are broken on purpose
DEBIT_NOTE_REFERENCE = "DEMO-DN-000001"

# The POS segment: a Tier-1 retailer's till, fiscalised through FBR's IMS (POS) API.
POS_SELLER = samples.SellerInfo(
    ntn_cnic="8000008",
    business_name="Demo Mart (Pvt) Ltd",
    province="PUNJAB",
    address="45 Main Boulevard, Gulberg, Lahore",
)
POS_ID = "812345"
POS_FBR_TOKEN = "demo-pos-token"
POS_INVOICES = 50
POS_TAX_RATE = Decimal(18)
POS_FURTHER_TAX_RATE = Decimal(4)
POS_PRODUCTS: tuple[tuple[str, str, str, int, int], ...] = (
    # (item code, name, PCT code without dots, lowest and highest unit price in rupees)
    ("FAN-56", "Ceiling fan 56 inch", "84145100", 8000, 16000),
    ("IRON-ST", "Electric steam iron", "85164000", 3500, 9000),
    ("DINNER-32", "Melamine dinner set, 32 pieces", "39241000", 4500, 12000),
    ("KETTLE-17", "Electric kettle 1.7 litre", "85161000", 2500, 6000),
)
PAYMENT_MODES: tuple[invoice_pb2.PaymentMode.ValueType, ...] = (
    invoice_pb2.PAYMENT_MODE_CASH,
    invoice_pb2.PAYMENT_MODE_CARD,
    invoice_pb2.PAYMENT_MODE_GIFT_VOUCHER,
    invoice_pb2.PAYMENT_MODE_LOYALTY_CARD,
    invoice_pb2.PAYMENT_MODE_MIXED,
    invoice_pb2.PAYMENT_MODE_CHEQUE,
)
_CENT = Decimal("0.01")


@dataclass
class Plan:
    """What the demo sends and what it expects to happen to it."""

    invoices: list[invoice_pb2.Invoice] = field(default_factory=list)
    broken: dict[str, tuple[str, str]] = field(default_factory=dict)
    """erp_reference -> (FBR code, field path) the hub must reject it with."""
    resent: set[str] = field(default_factory=set)
    """erp_references sent a second time, unchanged: each must be acked DUPLICATE."""
    sources: dict[str, NormalisedInvoice] = field(default_factory=dict)
    """erp_reference -> the normalised invoice of each valid DI invoice (for debit notes)."""


def build_plan(count: int, seed: int, today: dt.date) -> Plan:
    """``count`` sandbox invoices rotating through :data:`SCENARIOS`, some broken, a few resent."""
    rng = random.Random(seed)
    plan = Plan()
    breakages = list(samples.Breakage)
    valid: list[invoice_pb2.Invoice] = []
    for index in range(count):
        reference = f"DEMO-{index + 1:06d}"
        invoice = samples.scenario_invoice(
            SCENARIOS[index % len(SCENARIOS)],
            seller=DEMO_SELLER,
            erp_reference=reference,
            invoice_date=today - dt.timedelta(days=rng.randint(0, 2)),
            rng=rng,
        )
        if index % INVALID_EVERY == INVALID_EVERY // 2:
            variant = samples.break_invoice(
                invoice, breakages[len(plan.broken) % len(breakages)], today=today
            )
            invoice = variant.invoice
            plan.broken[reference] = (variant.fbr_error_code, variant.path)
        message = invoice_to_proto(invoice, reference)
        plan.invoices.append(message)
        if reference not in plan.broken:
            valid.append(message)
            plan.sources[reference] = invoice
    # An ERP that lost its acks resends: the hub must answer DUPLICATE, not store twice.
    for message in valid[: max(1, count // 200)]:
        plan.invoices.append(message)
        plan.resent.add(message.erp_reference)
    return plan


def _money(amount: Decimal) -> str:
    return str(amount.quantize(_CENT, rounding=ROUND_HALF_UP))


def pos_invoice(
    usin: str, sold_at: dt.datetime, index: int, rng: random.Random
) -> invoice_pb2.Invoice:
    """A retail receipt for the POS channel: one to three lines, 18% tax, NEW items.

    Every fourth receipt is for an unregistered buyer who pays further tax; payment modes
    rotate through all six. ``TaxCharged = SaleValue x TaxRate / 100`` and ``TotalAmount =
    SaleValue + TaxCharged + FurtherTax``; the hub computes the header totals.
    """
    receipt = invoice_pb2.PosInvoice(
        date_time=sold_at.strftime("%Y-%m-%d %H:%M:%S"),
        payment_mode=PAYMENT_MODES[index % len(PAYMENT_MODES)],
        invoice_type=invoice_pb2.POS_INVOICE_TYPE_NEW,
    )
    further_rate = POS_FURTHER_TAX_RATE if index % 4 == 3 else Decimal(0)
    for _ in range(rng.randint(1, 3)):
        code, name, pct_code, low, high = rng.choice(POS_PRODUCTS)
        quantity = rng.randint(1, 4)
        sale_value = Decimal(quantity * rng.randint(low, high))
        tax = sale_value * POS_TAX_RATE / 100
        further = sale_value * further_rate / 100
        receipt.items.add(
            item_code=code,
            item_name=name,
            pct_code=pct_code,
            quantity=str(quantity),
            tax_rate=str(POS_TAX_RATE),
            sale_value=_money(sale_value),
            discount="0",
            further_tax=_money(further),
            tax_charged=_money(tax),
            total_amount=_money(sale_value + tax + further),
            item_type=invoice_pb2.POS_ITEM_TYPE_NEW,
        )
    return invoice_pb2.Invoice(erp_reference=usin, pos=receipt)


def build_pos_plan(count: int, seed: int, now: dt.datetime) -> Plan:
    """``count`` POS receipts, one USIN each (the USIN is the ERP reference)."""
    rng = random.Random(seed)
    plan = Plan()
    for index in range(count):
        sold_at = now - dt.timedelta(minutes=count - index)
        plan.invoices.append(pos_invoice(f"USIN-{index + 1:06d}", sold_at, index, rng))
    return plan


def debit_note(original: NormalisedInvoice, fbr_number: str, today: dt.date) -> NormalisedInvoice:
    """A debit note raising the first line of ``original`` by 10%, dated ``today``."""
    line = dict(original["items"][0])
    for name in ("total_values", "value_sales_excluding_st", "sales_tax_applicable"):
        line[name] = _money(Decimal(line[name]) / 10)
    if Decimal(line["fixed_notified_value_or_retail_price"] or 0):
        line["fixed_notified_value_or_retail_price"] = line["total_values"]
    return {
        **original,
        "erp_reference": DEBIT_NOTE_REFERENCE,
        "invoice_type": INVOICE_TYPE_DEBIT_NOTE,
        "invoice_ref_no": fbr_number,
        "invoice_date": today.isoformat(),
        "items": [line],
    }
