"""The demo's summary: the tables it prints, the checks that decide its exit code, next steps.

The summary shows counts, codes, field paths and FBR numbers only: never buyer names or NTNs.
"""

from __future__ import annotations

import re
from collections import Counter

from rich.console import Console
from rich.table import Table

from examples.demo.extras import Extras
from examples.demo.plan import POS_ID, SCENARIOS, Plan
from examples.demo.stream import Tally
from fbrhub.v1 import invoice_pb2
from fbrhub_sdk import describe_status, error_details

FBR_NUMBER = re.compile(r"^\d{7}DI\d{13}$")
POS_FISCAL_NUMBER = re.compile(r"^\d{19}$")
Row = tuple[str, str, str]

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
    summary = Table(title="Demo summary", title_justify="left")
    summary.add_column("What")
    summary.add_column("Invoices", justify="right")
    summary.add_column("Detail")
    for row in (*_di_rows(plan, tally, seconds, extras), *_story_rows(extras)):
        summary.add_row(*row)
    console.print(summary)
    if extras.print_files:
        console.print("Print files:", markup=False)
        for printed_file in extras.print_files:
            console.print(f"  {printed_file}", markup=False, soft_wrap=True)
    if tally.rejected_local:
        console.print(_local_rejections(tally))
    tally.problems.extend(checks(plan, tally, extras))


def _di_rows(plan: Plan, tally: Tally, seconds: tuple[float, float], extras: Extras) -> list[Row]:
    """The summary rows of the DI stream: what was sent and how FBR answered, and how fast."""
    ingest_seconds, total_seconds = seconds
    accepted = tally.by_kind(invoice_pb2.RESULT_KIND_ACCEPTED)
    numbers = [e.fbr_invoice_number for e in accepted]
    sent = len(plan.invoices)
    rows: list[Row] = [
        (
            "Sent to the hub",
            str(sent),
            f"{sent - len(plan.resent)} new + {len(plan.resent)} resent",
        ),
        ("Accepted by the hub", str(len(tally.queued)), "validated, stored, queued"),
        (
            "Rejected locally",
            str(tally.rejected_acks),
            f"{len(plan.broken)} broken on purpose; never sent to FBR",
        ),
        ("Duplicates", str(tally.duplicates), "resent unchanged; stored once"),
        (
            "Accepted by FBR",
            str(len(accepted)),
            "e.g. " + ", ".join(numbers[:3]) if numbers else "",
        ),
    ]
    issued = (extras.stats or {}).get("issued")
    if issued is not None:
        rows.append(("FBR numbers issued", str(issued), "by the simulator: none twice"))
    rows.append(
        (
            "Scenarios exercised",
            str(len(extras.scenarios_accepted)),
            f"of {len(SCENARIOS)} sandbox scenarios (SN001-SN028), each accepted by FBR",
        )
    )
    for label, kind in (
        ("Rejected by FBR", invoice_pb2.RESULT_KIND_REJECTED),
        ("In doubt", invoice_pb2.RESULT_KIND_IN_DOUBT),
    ):
        events = tally.by_kind(kind)
        codes = Counter(_fbr_codes(e) for e in events)
        rows.append(
            (label, str(len(events)), ", ".join(f"{c} x{n}" for c, n in codes.most_common(5)))
        )
    if tally.waiting():
        rows.append(("Still waiting", str(tally.waiting()), "no outcome before the timeout"))
    rows.append(
        ("Ingest", f"{sent / ingest_seconds:,.0f}/s", f"all acks in {ingest_seconds:.1f} s")
    )
    rows.append(
        ("End to end", f"{sent / total_seconds:,.0f}/s", f"all outcomes in {total_seconds:.1f} s")
    )
    return rows


def _story_rows(extras: Extras) -> list[Row]:
    """The summary rows of the rest of the story: debit note, POS receipts, QR codes."""
    pos_numbers = _pos_numbers(extras)
    return [
        ("Debit note", "1" if extras.debit_note else "0", extras.debit_note),
        (
            "POS receipts sent",
            str(len(extras.pos_plan.invoices)),
            f"tenant on FBR's POS channel, POSID {POS_ID}, same SubmitInvoices RPC",
        ),
        (
            "POS fiscal numbers",
            str(len(pos_numbers)),
            (f"e.g. {pos_numbers[0]}; " if pos_numbers else "")
            + (
                f"FBR POS service fee Rs {extras.pos_service_fee} per receipt"
                if pos_numbers
                else ""
            ),
        ),
        (
            "QR codes written",
            str(len(extras.print_files) // 2),
            "PNG + SVG from GetPrintData (QR version 2, encodes the FBR number)",
        ),
    ]


def _local_rejections(tally: Tally) -> Table:
    """The most common field violations among the invoices the hub rejected itself."""
    local = Table(title="Rejected locally: top field violations", title_justify="left")
    for name in ("Field", "FBR code", "Count", "Message"):
        local.add_column(name, justify="right" if name == "Count" else "left")
    for (path, code), count in tally.rejected_local.most_common(6):
        local.add_row(path, code, str(count), tally.rejection_example[(path, code)])
    return local


def checks(plan: Plan, tally: Tally, extras: Extras) -> list[str]:
    """Every check of the run that failed, in the order the summary reports them."""
    problems = _fbr_checks(tally)
    # The debit note is a DI invoice too: the simulator issued it a number.
    di_expected = len(tally.by_kind(invoice_pb2.RESULT_KIND_ACCEPTED)) + (
        1 if extras.debit_note_accepted else 0
    )
    problems += _simulator_checks(extras, di_expected)
    if extras.scenarios_accepted != extras.scenarios_sent:
        missing = sorted(extras.scenarios_sent - extras.scenarios_accepted)
        problems.append(f"no invoice of {', '.join(missing)} was accepted by FBR")
    problems += _pos_checks(extras)
    if tally.duplicates != len(plan.resent):
        problems.append(f"{tally.duplicates} DUPLICATE acks for {len(plan.resent)} resends")
    return problems


def _fbr_checks(tally: Tally) -> list[str]:
    """FBR accepted something, numbered it well, and rejected or left in doubt nothing."""
    problems = []
    numbers = [e.fbr_invoice_number for e in tally.by_kind(invoice_pb2.RESULT_KIND_ACCEPTED)]
    malformed = [n for n in numbers if not FBR_NUMBER.match(n)]
    rejected = tally.by_kind(invoice_pb2.RESULT_KIND_REJECTED)
    in_doubt = tally.by_kind(invoice_pb2.RESULT_KIND_IN_DOUBT)
    if not numbers:
        problems.append("FBR accepted no invoice")
    if malformed:
        problems.append(
            f"{len(malformed)} FBR numbers are not NNNNNNNDInnnnnnnnnnnnn, e.g. {malformed[0]}"
        )
    if rejected:
        problems.append(f"FBR rejected {len(rejected)} invoices the hub had validated")
    if in_doubt:
        problems.append(f"{len(in_doubt)} invoices ended in doubt")
    return problems


def _simulator_checks(extras: Extras, di_expected: int) -> list[str]:
    """The simulator issued one number per accepted invoice or receipt, and none twice."""
    stats = extras.stats
    if stats is None:
        return ["the simulator's /__sim/stats could not be read"]
    problems = []
    issued = stats.get("issued")
    if issued != di_expected:
        problems.append(f"the simulator issued {issued} numbers for {di_expected}")
    if stats.get("duplicates"):
        problems.append(f"numbers issued twice: {stats['duplicates']}")
    pos_stats = stats.get("pos", {})
    pos_count = len(_pos_numbers(extras))
    if pos_stats.get("issued") != pos_count:
        problems.append(
            f"the simulator issued {pos_stats.get('issued')} POS numbers for {pos_count}"
        )
    if pos_stats.get("reused_usins"):
        problems.append(f"USINs fiscalised twice: {pos_stats['reused_usins']}")
    return problems


def _pos_checks(extras: Extras) -> list[str]:
    """Every POS receipt got a 19-digit fiscal number and the Re 1 service fee."""
    problems = []
    pos_numbers = _pos_numbers(extras)
    if not pos_numbers:
        problems.append("no POS receipt got a fiscal number")
    bad_pos = [n for n in pos_numbers if not POS_FISCAL_NUMBER.match(n)]
    if bad_pos:
        problems.append(f"{len(bad_pos)} POS fiscal numbers are not 19 digits: {bad_pos[0]}")
    pos_other = len(extras.pos_tally.queued) - len(pos_numbers)
    if pos_other:
        problems.append(f"{pos_other} POS receipts got no fiscal number")
    if pos_numbers and extras.pos_service_fee != "1.00":
        problems.append(f"POS service fee is {extras.pos_service_fee!r}, not Re 1")
    problems.extend(f"POS: {p}" for p in extras.pos_tally.problems)
    return problems


def _pos_numbers(extras: Extras) -> list[str]:
    return [
        e.fbr_invoice_number for e in extras.pos_tally.by_kind(invoice_pb2.RESULT_KIND_ACCEPTED)
    ]


def _fbr_codes(event: invoice_pb2.ResultEvent) -> str:
    codes = sorted({v.fbr_error_code for v in describe_status(event.error) if v.fbr_error_code})
    return ", ".join(codes) or error_details(event.error).reason or "no code"
