"""Run the FBR simulator from the command line until SIGINT or SIGTERM.

Example (a lognormal 50 ms FBR with 2% gateway 503s, a burst of five 503s every 500 requests,
a 10 s refusing outage 30 s in, and a token that expires in ten minutes)::

    python -m clients.fbr_simulator --port 8700 --seed 7 \\
        --token demo-token=7000007:sandbox:expires=+600 \\
        --latency-dist lognormal --latency-ms-mean 50 --latency-ms-stddev 30 \\
        --error-rate 0.02 --burst 500:5 --outage 30:10:refuse

``--faults-file plan.json`` reads a whole plan (:meth:`FaultPlan.from_dict`); flags given
beside it override its values (and add to its bursts, outages, rates and script).
``GET /__sim/stats`` reports what was issued (:mod:`clients.fbr_simulator.control`).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import signal
from dataclasses import replace

from clients.fbr_simulator.app import FbrSimulator
from clients.fbr_simulator.faults import Fault
from clients.fbr_simulator.schedule import (
    Burst,
    FaultPlan,
    Latency,
    Outage,
    OutageMode,
    Step,
)
from clients.fbr_simulator.tokens import TokenGrant

logger = logging.getLogger(__name__)
_ENVIRONMENTS = ("sandbox", "production")
_TOKEN_FORM = "TOKEN=NTN[:sandbox|production][:expires=ISO-TIME|+SECONDS]"
_FAULTS = ", ".join(fault.value for fault in Fault)


def parse_token(text: str) -> tuple[str, TokenGrant]:
    """Parse ``TOKEN=NTN[:sandbox|production][:expires=ISO-TIME|+SECONDS]``.

    The environment defaults to the sandbox; ``+SECONDS`` counts from now.

    Raises:
        argparse.ArgumentTypeError: if the text is not of that form.
    """
    token, separator, grant = text.partition("=")
    grant, has_expiry, expiry = grant.partition(":expires=")
    seller, _, environment = grant.partition(":")
    environment = environment or "sandbox"
    if not separator or not token or not seller or environment not in _ENVIRONMENTS:
        raise argparse.ArgumentTypeError(
            f"expected {_TOKEN_FORM}, got {text.split('=', 1)[0]!r}=..."
        )
    expires_at = None
    if has_expiry:
        try:
            if expiry.startswith("+"):
                delay = datetime.timedelta(seconds=float(expiry[1:]))
                expires_at = datetime.datetime.now(datetime.UTC) + delay
            else:
                expires_at = datetime.datetime.fromisoformat(expiry)
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad expiry {expiry!r} in {_TOKEN_FORM}") from None
    return token, TokenGrant(seller, environment, expires_at=expires_at)


def _fault(text: str) -> Fault:
    try:
        return Fault(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"unknown fault {text!r}; one of {_FAULTS}") from None


def parse_fault_rate(text: str) -> tuple[Fault, float]:
    """Parse ``FAULT=RATE``, e.g. ``too_many_requests=0.01``."""
    name, _, rate = text.partition("=")
    try:
        return _fault(name), float(rate)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FAULT=RATE, got {text!r}") from None


def parse_burst(text: str) -> Burst:
    """Parse ``EVERY:LENGTH[:FAULT]``, e.g. ``500:5`` (five gateway 503s every 500 requests)."""
    every, _, rest = text.partition(":")
    length, _, fault = rest.partition(":")
    try:
        return Burst(int(every), int(length), _fault(fault) if fault else Fault.GATEWAY_5XX)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected EVERY:LENGTH[:FAULT]: {error}") from None


def parse_outage(text: str) -> Outage:
    """Parse ``START:DURATION[:MODE]``; START is seconds after start or an ISO time.

    MODE is ``refuse`` (default), ``gateway`` or ``hang``; DURATION is in seconds.
    """
    parts = text.rsplit(":", 2)
    try:
        if len(parts) == 3 and parts[2] in {mode.value for mode in OutageMode}:
            start, duration, mode = parts[0], parts[1], OutageMode(parts[2])
        else:
            start, _, duration = text.rpartition(":")
            mode = OutageMode.REFUSE
        begin = float(start) if _is_number(start) else datetime.datetime.fromisoformat(start)
        return Outage(begin, float(duration), mode)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected START:DURATION[:refuse|gateway|hang], got {text!r}"
        ) from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fbr-sim",
        description="A stand-in for FBR's Digital Invoicing API, with seeded fault injection.",
        epilog=f"Faults: {_FAULTS}. GET /__sim/stats reports the numbers issued per "
        "X-Hub-Invoice-Id and any issued twice.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8700, help="port (0: any free port)")
    parser.add_argument(
        "--token",
        type=parse_token,
        action="append",
        required=True,
        metavar=_TOKEN_FORM,
        help="a security token and the seller it belongs to (repeatable); after the expiry "
        "(ISO time, or +SECONDS from now) it gets WSO2's 401 900901",
    )
    plan = parser.add_argument_group("faults (all seeded: the same seed and requests repeat)")
    plan.add_argument("--faults-file", help="a JSON fault plan; the flags below override it")
    plan.add_argument("--seed", type=int, help="seed of every random draw (default 0)")
    plan.add_argument("--latency", type=float, help="fixed seconds before each answer")
    plan.add_argument(
        "--latency-dist",
        choices=("fixed", "uniform", "normal", "lognormal"),
        help="latency distribution (default fixed)",
    )
    plan.add_argument("--latency-ms-mean", type=float, help="mean latency, ms")
    plan.add_argument("--latency-ms-stddev", type=float, help="normal/lognormal spread, ms")
    plan.add_argument("--latency-ms-min", type=float, help="uniform low end or clip floor, ms")
    plan.add_argument("--latency-ms-max", type=float, help="uniform high end or clip ceiling, ms")
    plan.add_argument(
        "--error-rate", type=float, help="fraction answered with a gateway 503 (fault 101503)"
    )
    plan.add_argument(
        "--fault-rate",
        type=parse_fault_rate,
        action="append",
        default=[],
        metavar="FAULT=RATE",
        help="fraction of requests meeting FAULT at random (repeatable)",
    )
    plan.add_argument(
        "--burst",
        type=parse_burst,
        action="append",
        default=[],
        metavar="EVERY:LENGTH[:FAULT]",
        help="LENGTH consecutive requests get FAULT (default gateway_5xx) every EVERY requests, "
        "the first after EVERY requests (repeatable)",
    )
    plan.add_argument(
        "--outage",
        type=parse_outage,
        action="append",
        default=[],
        metavar="START:DURATION[:refuse|gateway|hang]",
        help="FBR down for DURATION seconds from START (seconds after start, or an ISO time): "
        "refuse closes the port (ECONNREFUSED), gateway answers 503, hang never answers "
        "(repeatable)",
    )
    plan.add_argument(
        "--script",
        type=lambda text: [
            Step(_fault(name) if name != "ok" else None) for name in text.split(",")
        ],
        metavar="FAULT[,FAULT...]",
        help="faults for the first requests, one each (ok: a normal answer)",
    )
    plan.add_argument("--retry-after", type=int, help="Retry-After seconds of a 429 (default 1)")
    plan.add_argument(
        "--hang-seconds", type=float, default=3600.0, help="how long hang faults withhold answers"
    )
    return parser


def build_plan(args: argparse.Namespace) -> FaultPlan:
    """The fault plan the parsed arguments describe (``--faults-file`` overridden by flags).

    Raises:
        ValueError: if both ``--latency`` and ``--latency-ms-*`` are given, or the plan is bad.
    """
    plan = FaultPlan.load(args.faults_file) if args.faults_file else FaultPlan()
    latency = plan.latency
    shaped = (args.latency_ms_mean, args.latency_ms_stddev, args.latency_ms_min)
    if args.latency is not None:
        if args.latency_dist or any(value is not None for value in shaped):
            raise ValueError("give --latency or --latency-dist/--latency-ms-*, not both")
        latency = Latency.fixed(args.latency)
    elif args.latency_dist or any(v is not None for v in (*shaped, args.latency_ms_max)):
        latency = Latency(
            args.latency_dist or latency.distribution,
            mean=latency.mean if args.latency_ms_mean is None else args.latency_ms_mean / 1000,
            stddev=latency.stddev
            if args.latency_ms_stddev is None
            else args.latency_ms_stddev / 1000,
            low=latency.low if args.latency_ms_min is None else args.latency_ms_min / 1000,
            high=latency.high if args.latency_ms_max is None else args.latency_ms_max / 1000,
        )
    return replace(
        plan,
        seed=plan.seed if args.seed is None else args.seed,
        latency=latency,
        error_rate=plan.error_rate if args.error_rate is None else args.error_rate,
        fault_rates={**plan.fault_rates, **dict(args.fault_rate)},
        bursts=(*plan.bursts, *args.burst),
        outages=(*plan.outages, *args.outage),
        script=(*plan.script, *(args.script or ())),
        retry_after_seconds=plan.retry_after_seconds
        if args.retry_after is None
        else args.retry_after,
    )


async def _serve(simulator: FbrSimulator, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    url = await simulator.start(host, port)
    logger.info("FBR simulator listening on %s", url)
    logger.info("fault plan: %s", json.dumps(simulator.plan.to_dict()))
    try:
        await stop.wait()
    finally:
        await simulator.stop()
    logger.info(
        "FBR simulator stopped after issuing %d numbers (%d keys issued more than once)",
        len(simulator.issued),
        len(simulator.duplicates()),
    )


def main(argv: list[str] | None = None) -> int:
    """Run the simulator; returns the process exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        plan = build_plan(args)
    except (ValueError, KeyError, OSError) as error:
        parser.error(f"bad fault plan: {error}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    simulator = FbrSimulator(tokens=dict(args.token), plan=plan, hang_seconds=args.hang_seconds)
    asyncio.run(_serve(simulator, args.host, args.port))
    return 0
