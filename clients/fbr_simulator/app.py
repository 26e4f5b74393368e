"""A stand-in for FBR's DI API over real HTTP, for end-to-end tests, demos and benchmarks.

It authenticates like the WSO2 gateway, judges invoices with the hub's own rule table
(:mod:`clients.fbr.rules`, so the two can never disagree), answers in FBR's shapes
(:mod:`clients.fbr_simulator.protocol`) and issues invoice numbers like FBR's:
seller NTN/CNIC + ``DI`` + 13 digits of epoch milliseconds, bumped by one when two would
collide, with ``dated`` in Pakistan time.

Every issued number is recorded, keyed by the request header ``X-Hub-Invoice-Id`` when
present, else by a SHA-256 fingerprint of the canonical JSON body, so tests can prove the
hub never obtained two fiscal numbers for one invoice (:meth:`FbrSimulator.duplicates`).

Sandbox scenarios: each token's grant names the scenarios assigned to its seller (default: all
28); another scenario draws 0203, as FBR does (the rule table checks ``assigned_scenarios``).
Debit notes: every accepted invoice is remembered with its ``invoiceDate``, so a note's
``invoiceRefNo`` must name one of the seller's (0057), dated on or before it (0029) and at
most 180 days earlier (0034). :meth:`FbrSimulator.remember_invoice` seeds originals for tests.
The reference-data endpoints (``refdata``) and the IMS POS endpoints (``pos``) are served too.

Faults follow a seeded :class:`~clients.fbr_simulator.schedule.FaultPlan` (latency
distributions, random faults, bursts, outage windows) plus a FIFO of scripted
:class:`Fault` s or :class:`Step` s, one per request, which take precedence over the plan
(:mod:`clients.fbr_simulator.schedule`). A refusing outage closes the listening socket
(:mod:`clients.fbr_simulator.listener`). A token may expire (:attr:`TokenGrant.expires_at`) or
be revoked at runtime; either way it then gets WSO2's 401 900901. Invalid JSON, or a body that
is not a JSON object, gets HTTP 400 with a header-level ``validationResponse`` (no number
issued). ``/__sim/...`` (:mod:`clients.fbr_simulator.control`) reports what was issued.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson
from aiohttp import web

from clients.fbr.payload import INVOICE_TYPE_SALE, from_fbr_json
from clients.fbr.refdata.snapshot import ReferenceData, SnapshotReferenceData, load_seed
from clients.fbr.rules import ValidationContext, validate_invoice
from clients.fbr_simulator import control, faults, pos, protocol, refdata
from clients.fbr_simulator.faults import Fault
from clients.fbr_simulator.listener import Listener
from clients.fbr_simulator.schedule import FaultInjector, FaultPlan, Latency, OutageMode, Step
from clients.fbr_simulator.tokens import TokenBook, TokenGrant

# Pakistan has kept UTC+5 without daylight saving since 2009; a fixed offset needs no tzdata.
PAKISTAN_TIME = datetime.timezone(datetime.timedelta(hours=5), "PKT")
INVOICE_ID_HEADER = "X-Hub-Invoice-Id"
# path -> (environment the token must belong to, whether numbers are issued)
ENDPOINTS: dict[str, tuple[str, bool]] = {
    "/di_data/v1/di/postinvoicedata_sb": ("sandbox", True),
    "/di_data/v1/di/postinvoicedata": ("production", True),
    "/di_data/v1/di/validateinvoicedata_sb": ("sandbox", False),
    "/di_data/v1/di/validateinvoicedata": ("production", False),
}


@dataclass(frozen=True, slots=True)
class IssuedNumber:
    """An FBR invoice number the simulator issued."""

    invoice_number: str
    seller_ntn_cnic: str
    key: str
    """``X-Hub-Invoice-Id`` of the request, or the body fingerprint without one."""
    fingerprint: str
    """SHA-256 of the canonical (key-sorted) JSON body."""
    dated: str


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _aware(moment: datetime.datetime) -> datetime.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)


def _bad_request(dated: str, message: str) -> web.Response:
    body = {
        "dated": dated,
        "validationResponse": {
            "statusCode": "01",
            "status": "Invalid",
            "errorCode": "",
            "error": message,
            "invoiceStatuses": None,
        },
    }
    return web.Response(status=400, body=orjson.dumps(body), content_type="application/json")


class FbrSimulator:
    """FBR's DI API, served over HTTP by aiohttp."""

    def __init__(
        self,
        *,
        tokens: Mapping[str, TokenGrant],
        latency: float = 0.0,
        error_rate: float = 0.0,
        seed: int = 0,
        plan: FaultPlan | None = None,
        clock: Callable[[], datetime.datetime] | None = None,
        hang_seconds: float = 3600.0,
        reference_snapshot: Mapping[str, Any] | None = None,
    ) -> None:
        """Configure the simulator; nothing listens until :meth:`start`.

        Args:
            tokens: security token -> whom it belongs to and for which environment.
            latency: seconds to wait before answering every request (shorthand for a plan).
            error_rate: fraction of requests answered with a WSO2 503 gateway fault (ditto).
            seed: seed of the random generator behind ``error_rate`` (ditto).
            plan: every fault to inject, instead of ``latency``/``error_rate``/``seed``.
            clock: the current time (aware; naive means UTC), for ``dated``, numbers and
                the future-date rule.
            hang_seconds: how long :attr:`Fault.ACCEPT_THEN_HANG` withholds the answer.
            reference_snapshot: the reference lists served and judged by (default: the seed).

        Raises:
            ValueError: if both ``plan`` and one of ``latency``/``error_rate``/``seed`` are given.
        """
        if plan is None:
            plan = FaultPlan(seed=seed, latency=Latency.fixed(latency), error_rate=error_rate)
        elif latency or error_rate or seed:
            raise ValueError("give either a plan or latency/error_rate/seed, not both")
        self.injector = FaultInjector(plan)
        """Decides each request's fault and latency; its ``requests`` counts them."""
        self.tokens = TokenBook(tokens, self.now)
        self.hang_seconds = hang_seconds
        self.issued: list[IssuedNumber] = []
        self.stats: Counter[tuple[str, str]] = Counter()
        """Requests by (endpoint name, outcome), e.g. ``("postinvoicedata_sb", "accepted")``;
        a fault answering before processing is the outcome itself (``"gateway_5xx"``)."""
        self.faults_applied: Counter[Fault] = Counter()
        self._clock = clock or _utc_now
        self._issued_per_key: Counter[str] = Counter()
        self._last_millis = 0
        self.reference_snapshot: Mapping[str, Any] = reference_snapshot or load_seed()
        self.reference_data: ReferenceData = SnapshotReferenceData(self.reference_snapshot)
        """What the rules judge by; tests may replace it (e.g. with complete lists)."""
        self._originals: dict[str, tuple[str, datetime.date]] = {}
        self.pos = pos.PosEndpoints(self)
        """The IMS POS channel: its issued numbers and per-USIN counts."""
        self._listener: Listener | None = None
        self._closing: asyncio.Event | None = None
        self._follower: asyncio.Task[None] | None = None
        self.started_at: datetime.datetime | None = None
        """The clock's reading at :meth:`start`, which relative outage windows count from."""
        self.base_url = ""

    @property
    def plan(self) -> FaultPlan:
        """The fault plan in force."""
        return self.injector.plan

    @property
    def latency(self) -> float:
        """The mean latency in seconds; setting it makes the latency fixed."""
        return self.plan.latency.mean

    @latency.setter
    def latency(self, seconds: float) -> None:
        self.injector.plan = replace(self.plan, latency=Latency.fixed(seconds))

    @property
    def error_rate(self) -> float:
        """Fraction of requests answered with a random WSO2 503."""
        return self.plan.error_rate

    @error_rate.setter
    def error_rate(self, rate: float) -> None:
        self.injector.plan = replace(self.plan, error_rate=rate)

    def script(self, *steps: Fault | Step) -> None:
        """Queue faults (or :class:`Step` s with a latency) for the next requests, in order."""
        self.injector.script(steps)

    def issued_count(self, key: str) -> int:
        """How many numbers were issued under ``key`` (invoice id header or fingerprint)."""
        return self._issued_per_key[key]

    def now(self) -> datetime.datetime:
        """The simulator's clock, always aware (naive readings are UTC)."""
        now = self._clock()
        return now if now.tzinfo is not None else now.replace(tzinfo=datetime.UTC)

    def remember_invoice(
        self, invoice_number: str, seller_ntn_cnic: str, invoice_date: datetime.date
    ) -> None:
        """Record an accepted sale invoice, as a debit note's possible original."""
        self._originals[invoice_number] = (seller_ntn_cnic, invoice_date)

    def original_date(self, seller_ntn_cnic: str, invoice_number: str) -> datetime.date | None:
        """The date of the seller's accepted invoice ``invoice_number``; None if unknown."""
        found = self._originals.get(invoice_number)
        return found[1] if found is not None and found[0] == seller_ntn_cnic else None

    def duplicates(self) -> dict[str, int]:
        """Keys under which more than one number was issued, with their counts."""
        return {key: count for key, count in self._issued_per_key.items() if count > 1}

    def summary(self, *, per_key: bool = False) -> dict[str, Any]:
        """What the simulator did, as JSON-ready data (served at ``GET /__sim/stats``).

        Args:
            per_key: include ``issued_per_key``, the count under every key (may be large).
        """
        report: dict[str, Any] = {
            "requests": self.injector.requests,
            "issued": len(self.issued),
            "keys": len(self._issued_per_key),
            "duplicates": self.duplicates(),
            "outcomes": {f"{e}/{o}": n for (e, o), n in sorted(self.stats.items())},
            "faults": {f.value: n for f, n in self.faults_applied.items()},
            "outage": None if (mode := self.outage_now()) is None else mode.value,
            "pos": {
                "issued": len(self.pos.issued),
                "reused_usins": {f"{p}/{u}": n for (p, u), n in self.pos.reused_usins().items()},
            },
        }
        if per_key:
            report["issued_per_key"] = dict(self._issued_per_key)
        return report

    def outage_now(self) -> OutageMode | None:
        """The outage in force now, if any."""
        return self.injector.outage_at(self.now()) if self.injector.has_outages else None

    async def begin_outage(self, mode: OutageMode) -> None:
        """Take FBR down until :meth:`end_outage`, whatever the plan's windows say."""
        self.injector.manual_outage = mode
        await self.enforce_schedule()

    async def end_outage(self) -> None:
        """End the outage begun by :meth:`begin_outage` (the plan's windows still apply)."""
        self.injector.manual_outage = None
        await self.enforce_schedule()

    async def enforce_schedule(self) -> OutageMode | None:
        """Close or reopen the port as the outage in force now requires, and return it.

        A background task does this on time by the clock; tests with an injected clock call it
        after moving the clock, rather than waiting for that task.
        """
        outage = self.outage_now()
        if self._listener is not None:
            if outage is OutageMode.REFUSE:
                await self._listener.refuse()
            else:
                await self._listener.accept()
        return outage

    def application(self) -> web.Application:
        """The aiohttp application, for embedding in another server."""
        app = web.Application()
        for path in ENDPOINTS:
            app.router.add_post(path, self._handle)
        refdata.add_routes(app, self)
        self.pos.add_routes(app)
        control.add_routes(app, self)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0: any free port) and return the base URL."""
        self._closing = asyncio.Event()  # made here: it belongs to the running event loop
        self._listener = Listener(self.application())
        bound_host, bound_port = await self._listener.open(host, port)
        self.base_url = f"http://{bound_host}:{bound_port}"
        self.started_at = self.now()
        self.injector.anchor(self.started_at)
        if any(outage.mode is OutageMode.REFUSE for outage in self.plan.outages):
            self._follower = asyncio.create_task(self._follow_schedule())
        return self.base_url

    async def stop(self) -> None:
        """Stop listening; requests held by a hang fault are dropped, not left waiting."""
        if self._closing is not None:
            self._closing.set()
        if self._follower is not None:
            self._follower.cancel()
            self._follower = None
        if self._listener is not None:
            await self._listener.close()
            self._listener = None

    async def _follow_schedule(self) -> None:
        # Wake at each window boundary, polling at least every 0.1 s for injected clocks.
        while True:
            outage = await self.enforce_schedule()
            now = self.now()
            upcoming = self.injector.boundaries_after(now)
            if not upcoming and outage is None and self.injector.manual_outage is None:
                return
            delay = (upcoming[0] - now).total_seconds() if upcoming else 0.1
            await asyncio.sleep(min(max(delay, 0.001), 0.1))

    def next_request(self) -> tuple[Fault | None, float]:
        """The fault (None: none) and latency of the next DI or POS request, in arrival order."""
        now = self.now() if self.injector.has_outages else None
        return self.injector.decide(now)

    async def answer_before_processing(
        self, request: web.Request, fault: Fault
    ) -> web.StreamResponse:
        """Answer (or not) instead of FBR, for a fault that comes before any processing."""
        if fault is Fault.DROP:
            return self._drop(request)
        if fault is Fault.HANG:
            await self._hang()
            return self._drop(request)
        return faults.fault_response(fault, self.plan.retry_after_seconds)

    async def _hang(self) -> bool:
        """Wait ``hang_seconds`` or until :meth:`stop`; True if stopping."""
        if self._closing is None:
            await asyncio.sleep(self.hang_seconds)
            return False
        try:
            await asyncio.wait_for(self._closing.wait(), timeout=self.hang_seconds)
        except TimeoutError:
            return False
        return True

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        environment, numbered = ENDPOINTS[request.path]
        endpoint = request.path.rsplit("/", 1)[1]
        fault, latency = self.next_request()
        if latency:
            await asyncio.sleep(latency)
        if fault is not None:
            self.faults_applied[fault] += 1
            if fault.before_processing:
                self.stats[endpoint, fault.value] += 1
                return await self.answer_before_processing(request, fault)
        grant = self.tokens.authenticate(request, environment)
        if isinstance(grant, web.Response):
            self.stats[endpoint, "unauthorized"] += 1
            return grant
        body = await request.read()
        now = self._clock()
        if now.tzinfo is None:
            now = now.replace(tzinfo=datetime.UTC)
        pakistan_now = now.astimezone(PAKISTAN_TIME)
        dated = pakistan_now.strftime("%Y-%m-%d %H:%M:%S")
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            payload = None
        if not isinstance(payload, dict):
            self.stats[endpoint, "bad_request"] += 1
            return _bad_request(dated, "The request body is not a JSON object.")
        answer, outcome = self._judge(request, payload, grant, now, pakistan_now, dated, numbered)
        self.stats[endpoint, outcome] += 1
        return await self._deliver(request, answer, fault)

    def next_fault(self) -> Fault | None:
        """The fault for the next request (scripted first, then the plan), if any."""
        return self.next_request()[0]

    def _judge(
        self,
        request: web.Request,
        payload: dict[str, Any],
        grant: TokenGrant,
        now: datetime.datetime,
        pakistan_now: datetime.datetime,
        dated: str,
        numbered: bool,
    ) -> tuple[dict[str, Any], str]:
        invoice = from_fbr_json(payload)
        seller = grant.seller_ntn_cnic
        context = ValidationContext(
            today=pakistan_now.date(),
            environment=grant.environment,
            seller_ntn_cnic=seller,
            reference_data=self.reference_data,
            original_invoice=lambda number: self.original_date(seller, number),
            assigned_scenarios=grant.scenarios,
        )
        violations = protocol.wire_violations(payload) + validate_invoice(invoice, context)
        header = protocol.header_error(violations)
        if header is not None:
            return protocol.header_rejection(dated, header), "rejected"
        line_count = len(invoice["items"])
        if violations or not numbered:
            body = protocol.line_verdict(dated, line_count, violations, None, numbered=numbered)
            return body, "rejected" if violations else "valid"
        number = self._issue(request, payload, grant, now, dated)
        invoice_date = protocol.iso_date(invoice["invoice_date"])
        if invoice["invoice_type"] == INVOICE_TYPE_SALE and invoice_date is not None:
            self.remember_invoice(number, grant.seller_ntn_cnic, invoice_date)
        return protocol.line_verdict(dated, line_count, (), number, numbered=True), "accepted"

    def _issue(
        self,
        request: web.Request,
        payload: dict[str, Any],
        grant: TokenGrant,
        now: datetime.datetime,
        dated: str,
    ) -> str:
        # Epoch milliseconds, kept strictly increasing so two invoices never share a number.
        millis = max(int(now.timestamp() * 1000), self._last_millis + 1)
        self._last_millis = millis
        number = f"{grant.seller_ntn_cnic}DI{millis:013d}"
        canonical = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
        fingerprint = hashlib.sha256(canonical).hexdigest()
        key = request.headers.get(INVOICE_ID_HEADER) or fingerprint
        self.issued.append(IssuedNumber(number, grant.seller_ntn_cnic, key, fingerprint, dated))
        self._issued_per_key[key] += 1
        return number

    async def _deliver(
        self, request: web.Request, answer: dict[str, Any], fault: Fault | None
    ) -> web.StreamResponse:
        if fault is Fault.ACCEPT_THEN_HANG:
            if await self._hang():
                return self._drop(request)  # shutting down: never answer
            # else the hang ran its course: answer normally, very late
        elif fault is Fault.ACCEPT_THEN_DROP:
            return self._drop(request)
        elif fault is Fault.ACCEPT_THEN_500:
            return faults.contact_administrator()
        elif fault is Fault.TRAILING_COMMA:
            for status in answer["validationResponse"].get("invoiceStatuses") or ():
                status["itemSNo"] = int(status["itemSNo"])
            return web.Response(text=faults.quirky_json(answer), content_type="application/json")
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    @staticmethod
    def _drop(request: web.Request) -> web.Response:
        # Abort the connection so the client sees it close without any response; aiohttp
        # discards the response returned afterwards.
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=500)
