"""The simulator's IMS (POS fiscal) endpoints (docs/fbr-coverage.md §6).

``POST /FBR/v1/api/Live/PostData`` (sandbox) and ``/imsp/v1/api/Live/PostData`` (production),
Bearer token of the matching environment, else WSO2's 401. The body is judged by the hub's own
POS rules (:mod:`clients.fbr.pos.rules`); a refusal is HTTP 200 with ``Code "102"``,
``InvoiceNumber "Not Available"`` and the reasons in ``Errors`` [KIT-IMS §9.2].

An accepted invoice gets a fiscal number of 19 digits (the last 6 of the POSID, the Pakistan
time as ``DDMMYYHHMM``, a 3-digit sequence, kept strictly increasing) in one of the two
documented shapes (``response_style``): ``"cloud"`` (the KB's cloud example,
``FBRInvoiceNumber`` as a JSON *number*) or ``"local"`` (``InvoiceNumber`` as a string, with
``Errors: null``). FBR's answer to a reused USIN is undocumented (docs/fbr-coverage.md
§10): the simulator issues again and counts it (:meth:`PosEndpoints.usin_count`), so tests
can prove the hub never reuses. The simulator's fault schedule (scripted steps, latency,
outages) applies here too.
"""

from __future__ import annotations

import asyncio
import datetime
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from clients.fbr.client import POS_PATHS
from clients.fbr.pos.payload import from_ims_json
from clients.fbr.pos.rules import validate_pos_invoice
from clients.fbr_simulator import faults
from clients.fbr_simulator.faults import Fault

if TYPE_CHECKING:
    from clients.fbr_simulator.app import FbrSimulator

_PAKISTAN_TIME = datetime.timezone(datetime.timedelta(hours=5), "PKT")


@dataclass(frozen=True, slots=True)
class PosIssued:
    """A fiscal number the simulator issued on the POS channel."""

    fiscal_number: str
    pos_id: str
    usin: str
    environment: str


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(value), content_type="application/json")


def _refusal(errors: list[str]) -> dict[str, Any]:
    return {
        "InvoiceNumber": "Not Available",
        "Code": "102",
        "Response": "Invalid data received.",
        "Errors": errors,
    }


class PosEndpoints:
    """The POS channel of one :class:`FbrSimulator`."""

    def __init__(self, simulator: FbrSimulator) -> None:
        self._simulator = simulator
        self.response_style = "cloud"
        """``"cloud"`` (``FBRInvoiceNumber`` as a number) or ``"local"`` (``InvoiceNumber``)."""
        self.issued: list[PosIssued] = []
        self._per_usin: Counter[tuple[str, str]] = Counter()
        self._last = 0

    def add_routes(self, app: web.Application) -> None:
        """Register both environments' PostData paths on ``app``."""
        for environment, path in POS_PATHS.items():
            app.router.add_post(path, self._handler(environment))

    def usin_count(self, pos_id: str, usin: str) -> int:
        """How many fiscal numbers were issued for the USIN of a POS."""
        return self._per_usin[pos_id, usin]

    def reused_usins(self) -> dict[tuple[str, str], int]:
        """(POSID, USIN) fiscalised more than once, with their counts."""
        return {key: count for key, count in self._per_usin.items() if count > 1}

    def _handler(self, environment: str) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._handle(request, environment)

        return handle

    async def _handle(self, request: web.Request, environment: str) -> web.StreamResponse:
        simulator = self._simulator
        stats_key = f"pos_{environment}"
        fault, latency = simulator.next_request()  # one fault schedule for both channels
        if latency:
            await asyncio.sleep(latency)
        if fault is not None and fault.before_processing:
            simulator.faults_applied[fault] += 1
            simulator.stats[stats_key, fault.value] += 1
            return await simulator.answer_before_processing(request, fault)
        grant = simulator.tokens.authenticate(request, environment)
        if isinstance(grant, web.Response):
            simulator.stats[stats_key, "unauthorized"] += 1
            return grant
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            simulator.stats[stats_key, "rejected"] += 1
            return _json(_refusal(["The request body is not a JSON object."]))
        invoice = from_ims_json(body)
        violations = validate_pos_invoice(invoice)
        if violations:
            simulator.stats[stats_key, "rejected"] += 1
            return _json(_refusal([f"{v.path}: {v.message}" for v in violations]))
        number = self._issue(invoice["pos_id"], invoice["usin"], environment)
        simulator.stats[stats_key, "accepted"] += 1
        if fault is not None:
            simulator.faults_applied[fault] += 1
            if fault is Fault.ACCEPT_THEN_500:
                return faults.contact_administrator()
            if fault in {Fault.ACCEPT_THEN_DROP, Fault.ACCEPT_THEN_HANG}:
                if request.transport is not None:
                    request.transport.abort()
                return web.Response(status=500)
        if self.response_style == "local":
            answer: dict[str, Any] = {
                "InvoiceNumber": number,
                "Code": "100",
                "Response": "Fiscal Invoice Number generated successfully.",
                "Errors": None,
            }
        else:
            answer = {
                "FBRInvoiceNumber": int(number),
                "Response": "Invoice received successfully",
                "Code": "100",
            }
        if fault is Fault.TRAILING_COMMA:
            return web.Response(text=faults.quirky_json(answer), content_type="application/json")
        return _json(answer)

    def _issue(self, pos_id: str, usin: str, environment: str) -> str:
        now = self._simulator.now().astimezone(_PAKISTAN_TIME)
        base = int(f"{pos_id[-6:]:0>6}{now:%d%m%y%H%M}000")
        self._last = max(base, self._last + 1)
        number = str(self._last)
        self.issued.append(PosIssued(number, pos_id, usin, environment))
        self._per_usin[pos_id, usin] += 1
        return number
