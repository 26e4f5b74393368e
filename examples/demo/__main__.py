"""The end-to-end demo (``make demo`` / ``python -m examples.demo``): one command, whole story.

It builds a throw-away work dir with an embedded SQLite database, starts the FBR simulator
and the hub as real processes, streams realistic sandbox invoices for all 28 FBR scenarios
(a few deliberately invalid, a few resent) through the Python SDK, follows the results
stream until every queued invoice has an outcome, then shows the rest of the story: a debit
note linked to its original, QR codes for printing (written as PNG and SVG files), and a
second tenant on FBR's POS fiscal channel streaming retail receipts through the same RPCs.
It prints a summary and stops everything gracefully. The exit code is 0 only if every check
held. The summary shows counts, codes, field paths and FBR numbers only: never buyer names
or NTNs.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from clients.fbr import samples
from clients.fbr.payload import INVOICE_TYPE_DEBIT_NOTE, NormalisedInvoice
from clients.hub import HubApiError, HubClient, describe_status, error_details, invoice_to_proto
from fbrhub.v1 import invoice_pb2, invoice_service_pb2
from server.access.api_keys import create_api_key, create_tenant
from server.db.engine import Database
from server.db.migrate import upgrade

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
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
FBR_NUMBER = re.compile(r"^\d{7}DI\d{13}$")
POS_FISCAL_NUMBER = re.compile(r"^\d{19}$")
_REQUEST_PREFIX = re.compile(r"^invoices\[\d+\]\.")
_ITEM_INDEX = re.compile(r"items\[\d+\]")
FINAL_KINDS = frozenset(
    {
        invoice_pb2.RESULT_KIND_ACCEPTED,
        invoice_pb2.RESULT_KIND_REJECTED,
        invoice_pb2.RESULT_KIND_IN_DOUBT,
        invoice_pb2.RESULT_KIND_RESOLVED_ISSUED,
    }
)
"""Result kinds after which an invoice needs nothing more (REQUEUED means: wait on)."""
PRINTED_INVOICES = 3
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


class DemoError(Exception):
    """A step of the demo failed; the message says which and what to look at."""


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


@dataclass
class Tally:
    """What came back: acks, result events and everything unexpected."""

    acks: int = 0
    queued: set[str] = field(default_factory=set)
    duplicates: int = 0
    rejected_acks: int = 0
    rejected_local: Counter[tuple[str, str]] = field(default_factory=Counter)
    rejection_example: dict[tuple[str, str], str] = field(default_factory=dict)
    outcomes: dict[str, invoice_pb2.ResultEvent] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def by_kind(self, kind: invoice_pb2.ResultKind.ValueType) -> list[invoice_pb2.ResultEvent]:
        """The latest events of each invoice that are of ``kind``."""
        return [e for e in self.outcomes.values() if e.kind == kind]

    def settled(self) -> int:
        """Queued invoices whose latest event is final."""
        return sum(1 for e in self.outcomes.values() if e.kind in FINAL_KINDS)

    def waiting(self) -> int:
        """Queued invoices still without a final outcome."""
        final = {i for i, e in self.outcomes.items() if e.kind in FINAL_KINDS}
        return len(self.queued - final)


@dataclass
class Extras:
    """What the steps after the main stream found: debit note, print data, POS."""

    scenarios_accepted: set[str] = field(default_factory=set)
    scenarios_sent: set[str] = field(default_factory=set)
    debit_note: str = ""
    """How the debit note ended, for the summary ("" if not tried)."""
    debit_note_accepted: bool = False
    debit_note_linked: bool = False
    print_files: list[Path] = field(default_factory=list)
    pos_plan: Plan = field(default_factory=lambda: Plan())
    pos_tally: Tally = field(default_factory=lambda: Tally())
    pos_service_fee: str = ""
    stats: dict[str, Any] | None = None
    """The simulator's ``/__sim/stats`` just before it stopped (None if unavailable)."""


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


def _field(path: str) -> str:
    return _ITEM_INDEX.sub("items[]", _REQUEST_PREFIX.sub("", path))


def record_ack(plan: Plan, tally: Tally, ack: invoice_service_pb2.InvoiceAck) -> None:
    """Count one ack and note anything the plan did not expect."""
    tally.acks += 1
    reference = ack.erp_reference
    if ack.outcome == invoice_service_pb2.ACK_OUTCOME_DUPLICATE:
        tally.duplicates += 1
        if reference not in plan.resent:
            tally.problems.append(f"{reference}: acked DUPLICATE but was sent once")
        return
    if ack.outcome == invoice_service_pb2.ACK_OUTCOME_ACCEPTED:
        tally.queued.add(ack.invoice_id)
        if reference in plan.broken:
            tally.problems.append(f"{reference}: broken on purpose but accepted by the hub")
        return
    tally.rejected_acks += 1
    violations = describe_status(ack.error)
    for violation in violations:
        key = (_field(violation.field), violation.fbr_error_code or violation.reason)
        tally.rejected_local[key] += 1
        tally.rejection_example.setdefault(key, violation.description)
    found = {(v.fbr_error_code, _REQUEST_PREFIX.sub("", v.field)) for v in violations}
    expected = plan.broken.get(reference)
    if expected is None:
        codes = ", ".join(sorted(code for code, _ in found)) or "no violations"
        tally.problems.append(f"{reference}: valid sample rejected by the hub ({codes})")
    elif expected not in found:
        tally.problems.append(f"{reference}: expected FBR {expected[0]} at {expected[1]}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@dataclass
class Child:
    """A subprocess of the demo, logging to a file in the work dir."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, name: str, args: Sequence[str], env: dict[str, str], work_dir: Path) -> Child:
        """Start ``python -m server.commands <args>`` in its own session."""
        log = work_dir / f"{name}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "server.commands", *args],
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return cls(name, process, log)

    def tail(self, lines: int = 25) -> str:
        """The last lines of the child's output."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:]) or "(no output)"

    def check_alive(self) -> None:
        """Raise :class:`DemoError` with the output tail if the child has exited."""
        code = self.process.poll()
        if code is not None:
            raise DemoError(f"the {self.name} exited early (code {code}):\n{self.tail()}")

    async def stop(self, timeout: float) -> int:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL; return the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.process.poll() is None:
            self.process.kill()
        return self.process.wait()


async def wait_ready(
    child: Child, ready: Callable[[], Awaitable[bool]], what: str, timeout: float
) -> None:
    """Poll ``ready`` until it says yes; fail clearly if the child dies or time runs out."""
    deadline = time.monotonic() + timeout
    while not await ready():
        child.check_alive()
        if time.monotonic() > deadline:
            raise DemoError(f"{what} not ready after {timeout:.0f} s:\n{child.tail()}")
        await asyncio.sleep(0.1)


async def _port_open(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(HOST, port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


async def stream_invoices(
    client: HubClient,
    plan: Plan,
    tally: Tally,
    console: Console,
    timeout: float,
    *,
    channel: str = "DI",
) -> float:
    """Submit the plan and follow results until every queued invoice has a final outcome.

    Returns:
        Seconds until the last ack (the ingest time).
    """
    started = time.monotonic()
    columns = (TextColumn("{task.description:<26}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console) as progress:
        acks_bar = progress.add_task(f"{channel} acks from the hub", total=len(plan.invoices))
        expected = len(plan.invoices) - len(plan.broken) - len(plan.resent)
        results_bar = progress.add_task(f"{channel} outcomes from FBR", total=expected)
        submitted = asyncio.Event()
        complete = asyncio.Event()

        async def follow() -> None:
            # Heartbeats and hub alerts (circuit open, stuck invoices) are not outcomes.
            async for message in client.stream_outcomes(follow=True):
                tally.outcomes[message.event.invoice_id] = message.event
                progress.update(results_bar, completed=tally.settled())
                if submitted.is_set() and tally.waiting() == 0:
                    complete.set()
                    return

        follower = asyncio.create_task(follow(), name="demo-results")
        waiter = asyncio.create_task(complete.wait(), name="demo-complete")
        try:
            async for ack in client.submit(plan.invoices, batch_size=200, max_in_flight_batches=8):
                record_ack(plan, tally, ack)
                progress.advance(acks_bar)
            ingest_seconds = time.monotonic() - started
            submitted.set()
            progress.update(results_bar, total=len(tally.queued))
            if tally.waiting() == 0:
                complete.set()
            await asyncio.wait({follower, waiter}, timeout=timeout, return_when="FIRST_COMPLETED")
            if follower.done() and not follower.cancelled() and follower.exception():
                await follower  # raises the stream's error
        finally:
            for task in (follower, waiter):
                task.cancel()
            await asyncio.gather(follower, waiter, return_exceptions=True)
    if tally.waiting():
        tally.problems.append(
            f"{tally.waiting()} queued {channel} invoices had no outcome after {timeout:.0f} s "
            "(see hub.log in the work dir; rerun with --timeout to wait longer)"
        )
    return ingest_seconds


async def cross_check(client: HubClient, tally: Tally) -> None:
    """Look the results up again through GetInvoice and ListInvoices; note disagreements."""
    accepted = tally.by_kind(invoice_pb2.RESULT_KIND_ACCEPTED)
    try:
        if accepted:
            record = await client.get_invoice(erp_reference=accepted[0].erp_reference)
            if (
                record.state != invoice_pb2.INVOICE_STATE_ACCEPTED
                or record.fbr_invoice_number != accepted[0].fbr_invoice_number
            ):
                tally.problems.append("GetInvoice disagrees with the results stream")
        listed = 0
        async for page in client.list_invoices(
            page_size=500, states=[invoice_pb2.INVOICE_STATE_ACCEPTED]
        ):
            listed += len(page.invoices)
    except HubApiError as error:
        tally.problems.append(f"looking invoices up failed: {error}")
        return
    if listed != len(accepted):
        tally.problems.append(f"ListInvoices shows {listed} accepted, the stream {len(accepted)}")


async def wait_until_final(
    client: HubClient, erp_reference: str, timeout: float
) -> invoice_pb2.InvoiceRecord:
    """Poll GetInvoice until the invoice is ACCEPTED, REJECTED_FBR or IN_DOUBT."""
    final = {
        invoice_pb2.INVOICE_STATE_ACCEPTED,
        invoice_pb2.INVOICE_STATE_REJECTED_FBR,
        invoice_pb2.INVOICE_STATE_IN_DOUBT,
    }
    deadline = time.monotonic() + timeout
    while True:
        record = await client.get_invoice(erp_reference=erp_reference)
        if record.state in final or time.monotonic() > deadline:
            return record
        await asyncio.sleep(0.1)


async def send_debit_note(
    client: HubClient, plan: Plan, tally: Tally, extras: Extras, today: dt.date, timeout: float
) -> None:
    """Raise one accepted invoice by a debit note; check GetInvoice links both ways."""
    originals = [
        e
        for e in tally.by_kind(invoice_pb2.RESULT_KIND_ACCEPTED)
        if plan.sources.get(e.erp_reference, {}).get("scenario_id") in ("SN001", "SN002")
    ]
    if not originals:
        extras.debit_note = "no accepted SN001/SN002 invoice to raise"
        tally.problems.append(f"debit note: {extras.debit_note}")
        return
    original = min(originals, key=lambda e: e.erp_reference)
    note = debit_note(plan.sources[original.erp_reference], original.fbr_invoice_number, today)
    acks = [a async for a in client.submit([invoice_to_proto(note, DEBIT_NOTE_REFERENCE)])]
    if acks[0].outcome != invoice_service_pb2.ACK_OUTCOME_ACCEPTED:
        codes = ", ".join(v.fbr_error_code or v.reason for v in describe_status(acks[0].error))
        extras.debit_note = f"rejected by the hub ({codes})"
        tally.problems.append(f"debit note {extras.debit_note}")
        return
    record = await wait_until_final(client, DEBIT_NOTE_REFERENCE, timeout)
    if record.state != invoice_pb2.INVOICE_STATE_ACCEPTED:
        state = invoice_pb2.InvoiceState.Name(record.state)
        extras.debit_note = f"ended {state}"
        tally.problems.append(f"debit note {DEBIT_NOTE_REFERENCE} ended {state}, not ACCEPTED")
        return
    extras.debit_note_accepted = True
    parent = await client.get_invoice(invoice_id=record.original_invoice_id or original.invoice_id)
    extras.debit_note_linked = (
        record.original_invoice_id == original.invoice_id
        and record.invoice_id in parent.debit_note_ids
    )
    extras.debit_note = (
        f"{record.fbr_invoice_number} raises {original.fbr_invoice_number}; GetInvoice links "
        + ("both ways" if extras.debit_note_linked else "NOT both ways")
    )
    if not extras.debit_note_linked:
        tally.problems.append(
            f"debit note {DEBIT_NOTE_REFERENCE}: original_invoice_id="
            f"{record.original_invoice_id or '(empty)'}, original's debit_note_ids="
            f"{list(parent.debit_note_ids)}"
        )


async def write_print_files(
    client: HubClient, tally: Tally, extras: Extras, print_dir: Path
) -> None:
    """Fetch GetPrintData for a few accepted invoices; write each QR code as PNG and SVG."""
    accepted = sorted(
        tally.by_kind(invoice_pb2.RESULT_KIND_ACCEPTED), key=lambda e: e.erp_reference
    )[:PRINTED_INVOICES]
    print_dir.mkdir(parents=True, exist_ok=True)
    for event in accepted:
        printed = await client.get_print_data(invoice_id=event.invoice_id)
        if printed.fbr_invoice_number != event.fbr_invoice_number:
            tally.problems.append(f"{event.erp_reference}: GetPrintData shows another number")
        if printed.qr_version != 2 or not printed.qr_png.startswith(b"\x89PNG"):
            tally.problems.append(f"{event.erp_reference}: QR is not a version 2 PNG")
        if b"<svg" not in printed.qr_svg:
            tally.problems.append(f"{event.erp_reference}: QR SVG has no <svg> element")
        for suffix, data in ((".png", printed.qr_png), (".svg", printed.qr_svg)):
            path = print_dir / f"{event.erp_reference}{suffix}"
            path.write_bytes(data)
            extras.print_files.append(path)


async def run_pos_segment(
    address: str, api_key: str, options: argparse.Namespace, console: Console, extras: Extras
) -> None:
    """Stream POS receipts for the POS tenant; fetch the print data of one of them."""
    now = dt.datetime.now(PAKISTAN_TIME).replace(tzinfo=None)
    extras.pos_plan = build_pos_plan(POS_INVOICES, options.seed, now)
    tally = extras.pos_tally
    async with HubClient(address, api_key) as client:
        await stream_invoices(
            client, extras.pos_plan, tally, console, options.timeout, channel="POS"
        )
        accepted = tally.by_kind(invoice_pb2.RESULT_KIND_ACCEPTED)
        if accepted:
            printed = await client.get_print_data(invoice_id=accepted[0].invoice_id)
            extras.pos_service_fee = printed.pos_service_fee
            if printed.channel != invoice_pb2.FBR_CHANNEL_POS or not printed.qr_png:
                tally.problems.append("GetPrintData of a POS receipt: wrong channel or no QR")
            record = await client.get_invoice(invoice_id=accepted[0].invoice_id)
            if record.channel != invoice_pb2.FBR_CHANNEL_POS:
                tally.problems.append("GetInvoice of a POS receipt does not say channel POS")


async def simulator_stats(base_url: str) -> dict[str, Any] | None:
    """The simulator's ``/__sim/stats`` (what it issued, any number issued twice)."""
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=5) as http:
            response = await http.get("/__sim/stats")
            response.raise_for_status()
            stats: dict[str, Any] = response.json()
    except (httpx.HTTPError, ValueError):
        return None
    return stats


def _fbr_codes(event: invoice_pb2.ResultEvent) -> str:
    codes = sorted({v.fbr_error_code for v in describe_status(event.error) if v.fbr_error_code})
    return ", ".join(codes) or error_details(event.error).reason or "no code"


def report(
    console: Console,
    plan: Plan,
    tally: Tally,
    seconds: tuple[float, float],
    extras: Extras,
) -> None:
    """Print the summary tables and add the checks that failed to ``tally.problems``.

    Args:
        console: where to print.
        plan: what was sent on the DI channel.
        tally: what came back on the DI channel.
        seconds: until the last DI ack, and until the last DI outcome.
        extras: the debit note, print files, POS segment and simulator stats.
    """
    ingest_seconds, total_seconds = seconds
    accepted = tally.by_kind(invoice_pb2.RESULT_KIND_ACCEPTED)
    rejected = tally.by_kind(invoice_pb2.RESULT_KIND_REJECTED)
    in_doubt = tally.by_kind(invoice_pb2.RESULT_KIND_IN_DOUBT)
    numbers = [e.fbr_invoice_number for e in accepted]
    malformed = [n for n in numbers if not FBR_NUMBER.match(n)]
    sent = len(plan.invoices)

    summary = Table(title="Demo summary", title_justify="left")
    summary.add_column("What")
    summary.add_column("Invoices", justify="right")
    summary.add_column("Detail")
    summary.add_row(
        "Sent to the hub", str(sent), f"{sent - len(plan.resent)} new + {len(plan.resent)} resent"
    )
    summary.add_row("Accepted by the hub", str(len(tally.queued)), "validated, stored, queued")
    summary.add_row(
        "Rejected locally",
        str(tally.rejected_acks),
        f"{len(plan.broken)} broken on purpose; never sent to FBR",
    )
    summary.add_row("Duplicates", str(tally.duplicates), "resent unchanged; stored once")
    summary.add_row(
        "Accepted by FBR", str(len(accepted)), "e.g. " + ", ".join(numbers[:3]) if numbers else ""
    )
    stats = extras.stats or {}
    # The debit note is a DI invoice too: the simulator issued it a number.
    di_expected = len(accepted) + (1 if extras.debit_note_accepted else 0)
    issued = stats.get("issued")
    if issued is not None:
        summary.add_row("FBR numbers issued", str(issued), "by the simulator: none twice")
    summary.add_row(
        "Scenarios exercised",
        str(len(extras.scenarios_accepted)),
        f"of {len(SCENARIOS)} sandbox scenarios (SN001-SN028), each accepted by FBR",
    )
    rejected_codes = Counter(_fbr_codes(e) for e in rejected)
    summary.add_row(
        "Rejected by FBR",
        str(len(rejected)),
        ", ".join(f"{code} x{n}" for code, n in rejected_codes.most_common(5)),
    )
    doubt_reasons = Counter(_fbr_codes(e) for e in in_doubt)
    summary.add_row(
        "In doubt",
        str(len(in_doubt)),
        ", ".join(f"{code} x{n}" for code, n in doubt_reasons.most_common(5)),
    )
    if tally.waiting():
        summary.add_row("Still waiting", str(tally.waiting()), "no outcome before the timeout")
    summary.add_row(
        "Ingest", f"{sent / ingest_seconds:,.0f}/s", f"all acks in {ingest_seconds:.1f} s"
    )
    summary.add_row(
        "End to end", f"{sent / total_seconds:,.0f}/s", f"all outcomes in {total_seconds:.1f} s"
    )
    summary.add_row("Debit note", "1" if extras.debit_note else "0", extras.debit_note)
    pos_accepted = extras.pos_tally.by_kind(invoice_pb2.RESULT_KIND_ACCEPTED)
    pos_numbers = [e.fbr_invoice_number for e in pos_accepted]
    summary.add_row(
        "POS receipts sent",
        str(len(extras.pos_plan.invoices)),
        f"tenant on FBR's POS channel, POSID {POS_ID}, same SubmitInvoices RPC",
    )
    summary.add_row(
        "POS fiscal numbers",
        str(len(pos_numbers)),
        (f"e.g. {pos_numbers[0]}; " if pos_numbers else "")
        + (f"FBR POS service fee Rs {extras.pos_service_fee} per receipt" if pos_numbers else ""),
    )
    summary.add_row(
        "QR codes written",
        str(len(extras.print_files) // 2),
        "PNG + SVG from GetPrintData (QR version 2, encodes the FBR number)",
    )
    console.print(summary)
    if extras.print_files:
        console.print("Print files:", markup=False)
        for printed_file in extras.print_files:
            console.print(f"  {printed_file}", markup=False, soft_wrap=True)

    if tally.rejected_local:
        local = Table(title="Rejected locally: top field violations", title_justify="left")
        for name in ("Field", "FBR code", "Count", "Message"):
            local.add_column(name, justify="right" if name == "Count" else "left")
        for (path, code), count in tally.rejected_local.most_common(6):
            local.add_row(path, code, str(count), tally.rejection_example[(path, code)])
        console.print(local)

    if not accepted:
        tally.problems.append("FBR accepted no invoice")
    if malformed:
        tally.problems.append(
            f"{len(malformed)} FBR numbers are not NNNNNNNDInnnnnnnnnnnnn, e.g. {malformed[0]}"
        )
    if rejected:
        tally.problems.append(f"FBR rejected {len(rejected)} invoices the hub had validated")
    if in_doubt:
        tally.problems.append(f"{len(in_doubt)} invoices ended in doubt")
    if extras.stats is None:
        tally.problems.append("the simulator's /__sim/stats could not be read")
    else:
        if issued != di_expected:
            tally.problems.append(f"the simulator issued {issued} numbers for {di_expected}")
        if stats.get("duplicates"):
            tally.problems.append(f"numbers issued twice: {stats['duplicates']}")
        pos_stats = stats.get("pos", {})
        if pos_stats.get("issued") != len(pos_numbers):
            tally.problems.append(
                f"the simulator issued {pos_stats.get('issued')} POS numbers for {len(pos_numbers)}"
            )
        if pos_stats.get("reused_usins"):
            tally.problems.append(f"USINs fiscalised twice: {pos_stats['reused_usins']}")
    if extras.scenarios_accepted != extras.scenarios_sent:
        missing = sorted(extras.scenarios_sent - extras.scenarios_accepted)
        tally.problems.append(f"no invoice of {', '.join(missing)} was accepted by FBR")
    if not pos_numbers:
        tally.problems.append("no POS receipt got a fiscal number")
    bad_pos = [n for n in pos_numbers if not POS_FISCAL_NUMBER.match(n)]
    if bad_pos:
        tally.problems.append(f"{len(bad_pos)} POS fiscal numbers are not 19 digits: {bad_pos[0]}")
    pos_other = len(extras.pos_tally.queued) - len(pos_numbers)
    if pos_other:
        tally.problems.append(f"{pos_other} POS receipts got no fiscal number")
    if pos_numbers and extras.pos_service_fee != "1.00":
        tally.problems.append(f"POS service fee is {extras.pos_service_fee!r}, not Re 1")
    tally.problems.extend(f"POS: {p}" for p in extras.pos_tally.problems)
    if tally.duplicates != len(plan.resent):
        tally.problems.append(f"{tally.duplicates} DUPLICATE acks for {len(plan.resent)} resends")


NEXT_STEPS = """\
Run the hub on its own (SQLite here; set FBRHUB_DATABASE_URL=postgresql+psycopg://... for Postgres):

  export FBRHUB_DATABASE_URL=sqlite+aiosqlite:///./var/fbrhub.db
  fbrhub migrate
  fbrhub fbr-sim --port 8088 --token my-sandbox-token=7000007:sandbox &   # or use the real FBR
  fbrhub tenant create --ntn 7000007 --name "Demo Traders (Pvt) Ltd" --province PUNJAB \\
      --address "12 Mall Road, Lahore" --environment sandbox --fbr-token my-sandbox-token
  fbrhub apikey create --tenant <tenant id printed above>
  # A POS (IMS) retailer instead: --channel pos --pos-id <POSID>, and FBRHUB_FBR_POS_BASE_URL
  FBRHUB_FBR_BASE_URL=http://127.0.0.1:8088 FBRHUB_GRPC_LISTEN=127.0.0.1:50051 fbrhub serve

  grpcurl -plaintext 127.0.0.1:50051 grpc.health.v1.Health/Check
  grpcurl -plaintext 127.0.0.1:50051 list fbrhub.v1.InvoiceService
  grpcurl -plaintext -H "authorization: Bearer <api key>" -d '{"page_size": 5}' \\
      127.0.0.1:50051 fbrhub.v1.InvoiceService/ListInvoices
"""


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    # The user's own FBRHUB_* settings must not leak into the demo's processes.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FBRHUB_")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


async def _demo_tenants(database_url: str) -> tuple[str, str]:
    """Create the DI tenant (all 28 scenarios) and the POS tenant; return their API keys."""
    db = Database(database_url)
    try:
        di_tenant = await create_tenant(
            db,
            seller_ntn_cnic=DEMO_SELLER.ntn_cnic,
            business_name=DEMO_SELLER.business_name,
            province=DEMO_SELLER.province,
            address=DEMO_SELLER.address,
            fbr_environment="sandbox",
            fbr_token=DEMO_FBR_TOKEN,
            assigned_scenarios=SCENARIOS,
        )
        pos_tenant = await create_tenant(
            db,
            seller_ntn_cnic=POS_SELLER.ntn_cnic,
            business_name=POS_SELLER.business_name,
            province=POS_SELLER.province,
            address=POS_SELLER.address,
            fbr_environment="sandbox",
            fbr_token=POS_FBR_TOKEN,
            channel="pos",
            pos_id=POS_ID,
        )
        _, di_key = await create_api_key(db, di_tenant, role="erp", name="demo")
        _, pos_key = await create_api_key(db, pos_tenant, role="erp", name="demo-pos")
    finally:
        await db.dispose()
    return di_key, pos_key


async def run(
    options: argparse.Namespace, work_dir: Path, print_dir: Path, console: Console
) -> list[str]:
    """Run the demo in ``work_dir`` (already migrated); return the failed checks.

    The QR codes go to ``print_dir``.
    """
    # SIGTERM (CI, a supervisor) must stop the children too: cancel, and let `finally` run.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    database_url = f"sqlite+aiosqlite:///{work_dir / 'fbrhub.db'}"
    api_key, pos_api_key = await _demo_tenants(database_url)
    sim_port, hub_port = _free_port(), _free_port()
    children: list[Child] = []
    problems: list[str] = []
    try:
        sim = Child.start(
            "fbr-simulator",
            [
                *("fbr-sim", "--host", HOST, "--port", str(sim_port)),
                *("--token", f"{DEMO_FBR_TOKEN}={DEMO_SELLER.ntn_cnic}:sandbox"),
                *("--token", f"{POS_FBR_TOKEN}={POS_SELLER.ntn_cnic}:sandbox"),
                *("--latency", "0.02", "--error-rate", "0.02", "--seed", str(options.seed)),
            ],
            _child_env({}),
            work_dir,
        )
        children.append(sim)
        await wait_ready(sim, lambda: _port_open(sim_port), "the FBR simulator", 30)
        sim_url = f"http://{HOST}:{sim_port}"
        console.print(f"FBR simulator on {sim_url} (DI + POS sandbox, 2% gateway faults)")
        hub = Child.start(
            "hub",
            ["serve"],
            _child_env(
                {
                    "FBRHUB_DATABASE_URL": database_url,
                    "FBRHUB_GRPC_LISTEN": f"{HOST}:{hub_port}",
                    "FBRHUB_FBR_BASE_URL": sim_url,
                    "FBRHUB_FBR_POS_BASE_URL": sim_url,
                    "FBRHUB_RETRY_BASE_SECONDS": "0.2",
                    "FBRHUB_RETRY_MAX_SECONDS": "2",
                    "FBRHUB_SHUTDOWN_GRACE_SECONDS": "10",
                }
            ),
            work_dir,
        )
        children.append(hub)
        async with HubClient(f"{HOST}:{hub_port}", api_key) as client:
            await wait_ready(hub, client.is_serving, "the hub", 30)
            console.print(f"hub serving on {HOST}:{hub_port} (SQLite in {work_dir})")
            today = dt.datetime.now(PAKISTAN_TIME).date()
            plan = build_plan(options.invoices, options.seed, today)
            tally = Tally()
            extras = Extras()
            started = time.monotonic()
            try:
                ingest_seconds = await stream_invoices(
                    client, plan, tally, console, options.timeout
                )
            except HubApiError as error:
                raise DemoError(f"{error}\nlast lines of hub.log:\n{hub.tail(15)}") from None
            total_seconds = time.monotonic() - started
            await cross_check(client, tally)
            for event in tally.by_kind(invoice_pb2.RESULT_KIND_ACCEPTED):
                extras.scenarios_accepted.add(plan.sources[event.erp_reference]["scenario_id"])
            extras.scenarios_sent = {v["scenario_id"] for v in plan.sources.values()}
            try:
                await send_debit_note(client, plan, tally, extras, today, options.timeout)
                await write_print_files(client, tally, extras, print_dir)
                await run_pos_segment(f"{HOST}:{hub_port}", pos_api_key, options, console, extras)
            except HubApiError as error:
                raise DemoError(f"{error}\nlast lines of hub.log:\n{hub.tail(15)}") from None
            extras.stats = await simulator_stats(sim_url)
    finally:
        # The hub first: on SIGTERM it drains RPCs and finishes in-flight FBR requests.
        for child in reversed(children):
            code = await child.stop(timeout=20)
            if code not in (0, -signal.SIGTERM):
                problems.append(f"the {child.name} exited with code {code}:\n{child.tail(10)}")
    report(console, plan, tally, (ingest_seconds, total_seconds), extras)
    return tally.problems + problems


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m examples.demo``."""
    parser = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__)
    parser.add_argument("--invoices", type=int, default=2000, help="how many to send")
    parser.add_argument("--seed", type=int, default=7, help="seed of the sample invoices")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for FBR")
    parser.add_argument("--work-dir", type=Path, help="use (and wipe) this dir, not a temp dir")
    parser.add_argument("--keep", action="store_true", help="keep the work dir afterwards")
    options = parser.parse_args(argv)
    if options.invoices < 1:
        parser.error("--invoices must be at least 1")
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    if options.work_dir:
        work_dir = options.work_dir.resolve()
        shutil.rmtree(work_dir, ignore_errors=True)
        work_dir.mkdir(parents=True)
    else:
        work_dir = Path(tempfile.mkdtemp(prefix="fbrhub-demo-"))
    # The QR files must outlive the run: a work dir that is deleted at the end cannot hold
    # them, so they go to ./demo-output/ (git-ignored) unless the work dir is kept.
    print_dir = work_dir / "print" if options.keep else Path.cwd() / "demo-output"
    problems: list[str] = []
    try:
        upgrade(f"sqlite+aiosqlite:///{work_dir / 'fbrhub.db'}")
        problems = asyncio.run(run(options, work_dir, print_dir, console))
    except (DemoError, HubApiError) as error:
        problems = [str(error)]
    except (KeyboardInterrupt, asyncio.CancelledError):
        problems = ["interrupted"]
    if problems:
        console.print("[bold red]Demo FAILED:[/]")
        for problem in problems:
            console.print(f"  - {problem}", markup=False)
        console.print(f"Logs and database kept in {work_dir}", markup=False)
        return 1
    console.print("[bold green]Demo OK[/]: every check held.\n")
    console.print(NEXT_STEPS, markup=False)
    if options.keep:
        console.print(
            f"Work dir kept: {work_dir} (hub.log, fbr-simulator.log, fbrhub.db, print/)",
            markup=False,
        )
    else:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
