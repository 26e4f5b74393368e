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
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from examples.demo.extras import (
    Extras,
    run_pos_segment,
    send_debit_note,
    simulator_stats,
    write_print_files,
)
from examples.demo.plan import (
    DEMO_FBR_TOKEN,
    DEMO_SELLER,
    PAKISTAN_TIME,
    POS_FBR_TOKEN,
    POS_ID,
    POS_SELLER,
    SCENARIOS,
    Plan,
    build_plan,
)
from examples.demo.report import NEXT_STEPS, report
from examples.demo.stream import Tally, cross_check, stream_invoices
from fbrhub.v1 import invoice_pb2
from fbrhub_sdk import AsyncHubClient, HubApiError
from server.access.api_keys import create_api_key
from server.access.tenants import create_tenant
from server.db.engine import Database
from server.db.migrate import upgrade
from server.processes import ChildFailed, ChildProcess, spawn_hub, spawn_simulator

READY_SECONDS = 30.0
STOP_SECONDS = 20.0


class DemoError(Exception):
    """A step of the demo failed; the message says which and what to look at."""


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


def _spawn_simulator(work_dir: Path, seed: int) -> ChildProcess:
    """The FBR simulator: DI and POS tokens, 20 ms answers, 2% gateway faults."""
    return spawn_simulator(
        work_dir / "fbr-simulator.log",
        [
            f"{DEMO_FBR_TOKEN}={DEMO_SELLER.ntn_cnic}:sandbox",
            f"{POS_FBR_TOKEN}={POS_SELLER.ntn_cnic}:sandbox",
        ],
        latency=0.02,
        error_rate=0.02,
        seed=seed,
    )


def _spawn_hub(work_dir: Path, database_url: str, sim_url: str) -> ChildProcess:
    """The hub on the demo database, forwarding to the simulator, with quick retries."""
    return spawn_hub(
        work_dir / "hub.log",
        {
            "database_url": database_url,
            "fbr_base_url": sim_url,
            "fbr_pos_base_url": sim_url,
            "retry_base_seconds": 0.2,
            "retry_max_seconds": 2,
            "shutdown_grace_seconds": 10,
        },
    )


async def tell_story(
    address: str,
    api_keys: tuple[str, str],
    options: argparse.Namespace,
    print_dir: Path,
    console: Console,
) -> tuple[Plan, Tally, tuple[float, float], Extras]:
    """Stream the DI invoices, check the results, then the debit note, QR codes and POS.

    Returns:
        The DI plan and tally, the seconds until the last DI ack and outcome, and what the
        later steps found.
    """
    api_key, pos_api_key = api_keys
    async with AsyncHubClient(address, api_key) as client:
        today = dt.datetime.now(PAKISTAN_TIME).date()
        plan = build_plan(options.invoices, options.seed, today)
        tally = Tally()
        extras = Extras()
        started = time.monotonic()
        ingest_seconds = await stream_invoices(client, plan, tally, console, options.timeout)
        total_seconds = time.monotonic() - started
        await cross_check(client, tally)
        for event in tally.by_kind(invoice_pb2.RESULT_KIND_ACCEPTED):
            extras.scenarios_accepted.add(plan.sources[event.erp_reference]["scenario_id"])
        extras.scenarios_sent = {v["scenario_id"] for v in plan.sources.values()}
        await send_debit_note(client, plan, tally, extras, today, options.timeout)
        await write_print_files(client, tally, extras, print_dir)
        await run_pos_segment(address, pos_api_key, options, console, extras)
    return plan, tally, (ingest_seconds, total_seconds), extras


async def _stop(children: list[ChildProcess]) -> list[str]:
    """Stop every child gracefully, the last started first; report unclean exits."""
    problems = []
    # The hub first: on SIGTERM it drains RPCs and finishes in-flight FBR requests.
    for child in reversed(children):
        code = await child.stop(timeout=STOP_SECONDS)
        if code not in (0, -signal.SIGTERM):
            problems.append(f"the {child.name} exited with code {code}:\n{child.tail(10)}")
    return problems


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
    api_keys = await _demo_tenants(database_url)
    children: list[ChildProcess] = []
    try:
        sim = _spawn_simulator(work_dir, options.seed)
        children.append(sim)
        await sim.wait_port(READY_SECONDS)
        console.print(f"FBR simulator on {sim.url} (DI + POS sandbox, 2% gateway faults)")
        hub = _spawn_hub(work_dir, database_url, sim.url)
        children.append(hub)
        await hub.wait_serving(READY_SECONDS)
        console.print(f"hub serving on {hub.address} (SQLite in {work_dir})")
        try:
            plan, tally, seconds, extras = await tell_story(
                hub.address, api_keys, options, print_dir, console
            )
        except HubApiError as error:
            raise DemoError(f"{error}\nlast lines of hub.log:\n{hub.tail(15)}") from None
        extras.stats = await simulator_stats(sim.url)
        if options.serve:
            report(console, plan, tally, seconds, extras)
            await _serve(console, hub.address, api_keys[0], work_dir)
    finally:
        problems = await _stop(children)
    if not options.serve:
        report(console, plan, tally, seconds, extras)
    return tally.problems + problems


async def _serve(console: Console, address: str, api_key: str, work_dir: Path) -> None:
    """Keep the hub and the simulator running until Ctrl-C or SIGTERM (``--serve``).

    The address and the demo tenant's API key go to the console and to ``hub.env`` in the
    work dir, ready for the README's SDK quick start.
    """
    exports = f"export HUB_ADDRESS={address} HUB_API_KEY={api_key}"
    (work_dir / "hub.env").write_text(exports + "\n")
    console.print(
        "\nThe hub keeps serving the demo tenant until Ctrl-C. In another shell:\n"
        f"  {exports}\n  (also in {work_dir / 'hub.env'})",
        markup=False,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


def _options(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__)
    parser.add_argument("--invoices", type=int, default=2000, help="how many to send")
    parser.add_argument("--seed", type=int, default=7, help="seed of the sample invoices")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for FBR")
    parser.add_argument("--work-dir", type=Path, help="use (and wipe) this dir, not a temp dir")
    parser.add_argument("--keep", action="store_true", help="keep the work dir afterwards")
    parser.add_argument(
        "--serve",
        action="store_true",
        help="then keep the hub running for the SDK quick start until Ctrl-C (implies --keep)",
    )
    options = parser.parse_args(argv)
    options.keep = options.keep or options.serve
    if options.invoices < 1:
        parser.error("--invoices must be at least 1")
    return options


def _fresh_work_dir(requested: Path | None) -> Path:
    """``requested``, emptied, or a new temporary directory."""
    if requested is None:
        return Path(tempfile.mkdtemp(prefix="fbrhub-demo-"))
    work_dir = requested.resolve()
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    return work_dir


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m examples.demo``."""
    options = _options(argv)
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    work_dir = _fresh_work_dir(options.work_dir)
    # The QR files must outlive the run: a work dir that is deleted at the end cannot hold
    # them, so they go to ./demo-output/ (git-ignored) unless the work dir is kept.
    print_dir = work_dir / "print" if options.keep else Path.cwd() / "demo-output"
    problems: list[str] = []
    try:
        upgrade(f"sqlite+aiosqlite:///{work_dir / 'fbrhub.db'}")
        problems = asyncio.run(run(options, work_dir, print_dir, console))
    except (DemoError, ChildFailed, HubApiError) as error:
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
