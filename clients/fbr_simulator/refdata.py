"""The simulator's reference-data endpoints (docs/fbr-coverage.md §3), served from a snapshot.

The same snapshot the rules judge by (the package seed unless the simulator is given another),
so ``ReferenceDataClient.fetch_snapshot`` against the simulator reproduces it. Any token of
either environment may read them (same paths for both [SPEC p.7]); none gets WSO2's 401.
STATL and Get_Reg_Type answer POST and GET-with-body alike (docs/fbr-coverage.md §3.1). An unknown
registration number is "unregistered" (``statuscode "01"``) and not active (``"02"``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from clients.fbr.refdata.client import PATHS, SIMPLE_LISTS
from clients.fbr.refdata.snapshot import parse_reference_date, pick_dated

if TYPE_CHECKING:
    from clients.fbr_simulator.app import FbrSimulator

# endpoint -> (request param naming the key, param naming the province or None, answer key)
_PARAMETERISED: dict[str, tuple[str, str | None, str]] = {
    "SaleTypeToRate": ("transTypeId", "originationSupplier", "rates"),
    "SroSchedule": ("rate_id", "origination_supplier_csv", "schedules"),
    "SROItem": ("sro_id", None, "items"),
}


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(value), content_type="application/json")


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def add_routes(app: web.Application, simulator: FbrSimulator) -> None:
    """Register every reference endpoint on ``app``."""

    def guarded(
        handler: Callable[[web.Request, Mapping[str, Any]], Any],
    ) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.StreamResponse:
            grant = simulator.tokens.authenticate(request, None)
            if isinstance(grant, web.Response):
                return grant
            result: web.StreamResponse = await handler(request, simulator.reference_snapshot)
            return result

        return handle

    for endpoint in SIMPLE_LISTS:
        app.router.add_get(PATHS[endpoint], guarded(_simple(endpoint)))
    for endpoint in _PARAMETERISED:
        app.router.add_get(PATHS[endpoint], guarded(_parameterised(endpoint)))
    app.router.add_get(PATHS["HS_UOM"], guarded(_hs_uom))
    for method in ("GET", "POST"):
        app.router.add_route(method, PATHS["STATL"], guarded(_statl))
        app.router.add_route(method, PATHS["Get_Reg_Type"], guarded(_reg_type))


def _simple(endpoint: str) -> Callable[[web.Request, Mapping[str, Any]], Any]:
    async def handle(_: web.Request, snapshot: Mapping[str, Any]) -> web.Response:
        return _json(snapshot.get(endpoint) or [])

    return handle


def _parameterised(endpoint: str) -> Callable[[web.Request, Mapping[str, Any]], Any]:
    key_param, province_param, answer = _PARAMETERISED[endpoint]

    async def handle(request: web.Request, snapshot: Mapping[str, Any]) -> web.Response:
        key = _int(request.query.get(key_param))
        on = parse_reference_date(request.query.get("date"))
        province = _int(request.query.get(province_param)) if province_param else None
        if key is None or on is None:
            return _json({"error": f"give {key_param} and date"}, status=400)
        entries = [
            (parse_reference_date(entry.get("date")), entry.get(answer) or [])
            for entry in snapshot.get(endpoint) or []
            if _int(str(entry.get(key_param))) == key
            and (province_param is None or entry.get(province_param) in (None, province))
        ]
        return _json(pick_dated(entries, on) or [])

    return handle


async def _hs_uom(request: web.Request, snapshot: Mapping[str, Any]) -> web.Response:
    hs_code = request.query.get("hs_code", "")
    found: list[Any] = []
    for entry in snapshot.get("HS_UOM") or []:
        if entry.get("hs_code") == hs_code:
            found.extend(entry.get("uoms") or [])
    return _json(found)


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        value = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


async def _statl(request: web.Request, snapshot: Mapping[str, Any]) -> web.Response:
    body = await _body(request)
    for entry in snapshot.get("STATL") or []:
        if entry.get("regno") == body.get("regno"):
            return _json(entry["response"])
    return _json({"status code": "02", "status": "In-Active"})


async def _reg_type(request: web.Request, snapshot: Mapping[str, Any]) -> web.Response:
    number = str((await _body(request)).get("Registration_No", ""))
    for entry in snapshot.get("Get_Reg_Type") or []:
        if entry.get("Registration_No") == number:
            return _json(entry["response"])
    return _json(
        {"statuscode": "01", "REGISTRATION_NO": number, "REGISTRATION_TYPE": "unregistered"}
    )
