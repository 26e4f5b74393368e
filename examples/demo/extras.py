"""The story after the main DI stream: a debit note, QR print files, the POS segment, FBR stats.

Each step records what it found in :class:`Extras` and every failed check in the DI or POS
:class:`~examples.demo.stream.Tally`; the summary (:mod:`examples.demo.report`) shows both.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from examples.demo.plan import (
    DEBIT_NOTE_REFERENCE,
    PAKISTAN_TIME,
    POS_INVOICES,
    Plan,
    build_pos_plan,
    debit_note,
)
from examples.demo.stream import Tally, stream_invoices
from fbrhub.v1 import invoice_pb2, invoice_service_pb2
from fbrhub_sdk import AsyncHubClient, describe_status, invoice_to_proto

PRINTED_INVOICES = 3


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


async def wait_until_final(
    client: AsyncHubClient, erp_reference: str, timeout: float
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
    client: AsyncHubClient, plan: Plan, tally: Tally, extras: Extras, today: dt.date, timeout: float
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
    client: AsyncHubClient, tally: Tally, extras: Extras, print_dir: Path
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
    async with AsyncHubClient(address, api_key) as client:
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
