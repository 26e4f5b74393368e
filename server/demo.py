"""The end-to-end demo (``make demo`` / ``python -m server.demo``): one command, whole story.

It builds a throw-away work dir with an embedded SQLite database, starts the FBR simulator
and the hub as real processes, streams realistic sandbox invoices (a few deliberately
invalid, a few resent) through the Python SDK, follows the results stream until every
queued invoice has an outcome, prints a summary and stops everything gracefully. The exit
code is 0 only if every check held. The summary shows counts, codes, field paths and FBR
numbers only: never buyer names or NTNs.
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
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from clients.fbr import samples
from clients.hub import HubApiError, HubClient, describe_status, error_details, invoice_to_proto
from fbrhub.v1 import invoice_pb2, invoice_service_pb2
from server.db.engine import Database
from server.migrate import upgrade
from server.tenancy import create_api_key, create_tenant

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
SCENARIOS: tuple[str, ...] = (
    *("SN001", "SN002", "SN005", "SN006", "SN007", "SN008"),
    *("SN017", "SN018", "SN019", "SN021", "SN022", "SN024"),
)
INVALID_EVERY = 67  # about 1.5% of the invoices are broken on purpose
FBR_NUMBER = re.compile(r"^\d{7}DI\d{13}$")
_REQUEST_PREFIX = re.compile(r"^invoices\[\d+\]\.")
_ITEM_INDEX = re.compile(r"items\[\d+\]")
# The simulator's last log line; more numbers than accepted invoices would mean a resend.
ISSUED_LOG_LINE = re.compile(r"after issuing (\d+) numbers")


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

    def waiting(self) -> int:
        """Queued invoices still without an outcome."""
        return len(self.queued - self.outcomes.keys())


def build_plan(count: int, seed: int, today: dt.date) -> Plan:
    """``count`` sandbox invoices across :data:`SCENARIOS`, some broken, a few resent."""
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
    # An ERP that lost its acks resends: the hub must answer DUPLICATE, not store twice.
    for message in valid[: max(1, count // 200)]:
        plan.invoices.append(message)
        plan.resent.add(message.erp_reference)
    return plan


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
        """Start ``python -m server.cli <args>`` in its own session (Ctrl-C reaches us only)."""
        log = work_dir / f"{name}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "server.cli", *args],
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
    client: HubClient, plan: Plan, tally: Tally, console: Console, timeout: float
) -> float:
    """Submit the plan and follow results until every queued invoice has an outcome.

    Returns:
        Seconds until the last ack (the ingest time).
    """
    started = time.monotonic()
    columns = (TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console) as progress:
        acks_bar = progress.add_task("acks from the hub", total=len(plan.invoices))
        expected = len(plan.invoices) - len(plan.broken) - len(plan.resent)
        results_bar = progress.add_task("outcomes from FBR", total=expected)
        submitted = asyncio.Event()
        complete = asyncio.Event()

        async def follow() -> None:
            async for message in client.stream_results(follow=True):
                if message.HasField("event"):
                    tally.outcomes[message.event.invoice_id] = message.event
                    progress.update(results_bar, completed=len(tally.outcomes))
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
            f"{tally.waiting()} queued invoices had no outcome after {timeout:.0f} s "
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


def _fbr_codes(event: invoice_pb2.ResultEvent) -> str:
    codes = sorted({v.fbr_error_code for v in describe_status(event.error) if v.fbr_error_code})
    return ", ".join(codes) or error_details(event.error).reason or "no code"


def report(
    console: Console,
    plan: Plan,
    tally: Tally,
    seconds: tuple[float, float],
    issued: int | None,
) -> None:
    """Print the summary tables and add the checks that failed to ``tally.problems``.

    Args:
        console: where to print.
        plan: what was sent.
        tally: what came back.
        seconds: until the last ack, and until the last outcome.
        issued: FBR numbers the simulator says it issued (None if it did not say).
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
    if issued is not None:
        summary.add_row("FBR numbers issued", str(issued), "by the simulator: none twice")
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
    console.print(summary)

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
    if issued is not None and issued != len(accepted):
        tally.problems.append(f"the simulator issued {issued} numbers for {len(accepted)}")
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


async def _demo_tenant(database_url: str) -> str:
    db = Database(database_url)
    try:
        tenant_id = await create_tenant(
            db,
            seller_ntn_cnic=DEMO_SELLER.ntn_cnic,
            business_name=DEMO_SELLER.business_name,
            province=DEMO_SELLER.province,
            address=DEMO_SELLER.address,
            fbr_environment="sandbox",
            fbr_token=DEMO_FBR_TOKEN,
        )
        _, api_key = await create_api_key(db, tenant_id, role="erp", name="demo")
    finally:
        await db.dispose()
    return api_key


async def run(options: argparse.Namespace, work_dir: Path, console: Console) -> list[str]:
    """Run the demo in ``work_dir`` (already migrated); return the failed checks."""
    # SIGTERM (CI, a supervisor) must stop the children too: cancel, and let `finally` run.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    database_url = f"sqlite+aiosqlite:///{work_dir / 'fbrhub.db'}"
    api_key = await _demo_tenant(database_url)
    sim_port, hub_port = _free_port(), _free_port()
    children: list[Child] = []
    problems: list[str] = []
    try:
        sim = Child.start(
            "fbr-simulator",
            [
                *("fbr-sim", "--host", HOST, "--port", str(sim_port)),
                *("--token", f"{DEMO_FBR_TOKEN}={DEMO_SELLER.ntn_cnic}:sandbox"),
                *("--latency", "0.02", "--error-rate", "0.02", "--seed", str(options.seed)),
            ],
            _child_env({}),
            work_dir,
        )
        children.append(sim)
        await wait_ready(sim, lambda: _port_open(sim_port), "the FBR simulator", 30)
        console.print(f"FBR simulator on http://{HOST}:{sim_port} (sandbox, 2% gateway faults)")
        hub = Child.start(
            "hub",
            ["serve"],
            _child_env(
                {
                    "FBRHUB_DATABASE_URL": database_url,
                    "FBRHUB_GRPC_LISTEN": f"{HOST}:{hub_port}",
                    "FBRHUB_FBR_BASE_URL": f"http://{HOST}:{sim_port}",
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
            started = time.monotonic()
            try:
                ingest_seconds = await stream_invoices(
                    client, plan, tally, console, options.timeout
                )
            except HubApiError as error:
                raise DemoError(f"{error}\nlast lines of hub.log:\n{hub.tail(15)}") from None
            total_seconds = time.monotonic() - started
            await cross_check(client, tally)
    finally:
        # The hub first: on SIGTERM it drains RPCs and finishes in-flight FBR requests.
        for child in reversed(children):
            code = await child.stop(timeout=20)
            if code not in (0, -signal.SIGTERM):
                problems.append(f"the {child.name} exited with code {code}:\n{child.tail(10)}")
    issued = ISSUED_LOG_LINE.search(sim.log.read_text(errors="replace"))
    issued_count = int(issued.group(1)) if issued else None
    report(console, plan, tally, (ingest_seconds, total_seconds), issued_count)
    return tally.problems + problems


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m server.demo``."""
    parser = argparse.ArgumentParser(prog="python -m server.demo", description=__doc__)
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
    problems: list[str] = []
    try:
        upgrade(f"sqlite+aiosqlite:///{work_dir / 'fbrhub.db'}")
        problems = asyncio.run(run(options, work_dir, console))
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
        console.print(f"Work dir kept: {work_dir} (hub.log, fbr-simulator.log, fbrhub.db)")
    else:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
