"""The client of FBR's reference-data APIs (docs/fbr-coverage.md §3.1).

One method per endpoint, answering FBR's JSON as it is (field casing such as ``hS_CODE`` kept,
so a snapshot is byte-for-byte what FBR said), and :meth:`ReferenceDataClient.fetch_snapshot`,
which walks them all into one snapshot dict (see :mod:`clients.fbr.refdata.snapshot`): what
``fbrhub refdata sync`` stores, and what :class:`SnapshotReferenceData` is built from.

Choices:

- **Same host and paths in both environments**, the token decides [SPEC p.7]; the token is
  still required, even here [RO §3].
- **STATL and Get_Reg_Type are POSTed** with their JSON body: the spec calls them "Get" but
  shows a body; implementers use POST [VER-DOC §4] [RO §3].
- **Dates** go as each endpoint wants them: ``dd-MMM-yyyy`` for SroSchedule and
  SaleTypeToRate, ``yyyy-MM-dd`` for SROItem and STATL.
- **Errors raise** :class:`ReferenceDataError`: a sync is an operator's command, never part of
  posting an invoice (these lists must not be called inside a posting request [KIT-DI §5.1]).
- **HS_UOM is per HS code** (thousands of calls for the whole list), so a sync asks it only for
  the HS codes it is given (e.g. those a tenant's invoices use); the list stays partial.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Iterable
from types import TracebackType
from typing import Any

import httpx

from clients.fbr.refdata.snapshot import SNAPSHOT_FORMAT, format_dd_mmm_yyyy
from clients.fbr.responses import parse_lenient_json

# Endpoint -> path; the keys are also the snapshot's keys.
PATHS: dict[str, str] = {
    "provinces": "/pdi/v1/provinces",
    "doctypecode": "/pdi/v1/doctypecode",
    "itemdesccode": "/pdi/v1/itemdesccode",
    "sroitemcode": "/pdi/v1/sroitemcode",
    "transtypecode": "/pdi/v1/transtypecode",
    "uom": "/pdi/v1/uom",
    "SroSchedule": "/pdi/v1/SroSchedule",
    "SaleTypeToRate": "/pdi/v2/SaleTypeToRate",
    "HS_UOM": "/pdi/v2/HS_UOM",
    "SROItem": "/pdi/v2/SROItem",
    "STATL": "/dist/v1/statl",
    "Get_Reg_Type": "/dist/v1/Get_Reg_Type",
}
SIMPLE_LISTS = ("provinces", "doctypecode", "itemdesccode", "sroitemcode", "transtypecode", "uom")
# HS_UOM's "sales annexure" id used by the spec's example [SPEC p.31].
DEFAULT_ANNEXURE_ID = 3


class ReferenceDataError(Exception):
    """A reference endpoint did not answer with the JSON it documents."""


class ReferenceDataClient:
    """Reads FBR's reference lists with one seller's security token.

    Args:
        token: a PRAL security token (sandbox or production; both see the same lists).
        base_url: the gateway root (the simulator's URL in tests and the demo).
        timeout: seconds per request.
        concurrency: most requests in flight during :meth:`fetch_snapshot`.
        transport: an httpx transport to use instead of the default.
    """

    def __init__(
        self,
        *,
        token: str,
        base_url: str = "https://gw.fbr.gov.pk",
        timeout: float = 30.0,
        concurrency: int = 8,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            transport=transport,
            headers={"Authorization": f"Bearer {token.strip()}", "Accept": "application/json"},
            follow_redirects=False,
        )
        self._limit = asyncio.Semaphore(concurrency)

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def __aenter__(self) -> ReferenceDataClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _request(
        self, endpoint: str, params: dict[str, Any] | None = None, body: Any = None
    ) -> Any:
        async with self._limit:
            try:
                if body is None:
                    response = await self._http.get(PATHS[endpoint], params=params)
                else:
                    response = await self._http.post(PATHS[endpoint], json=body)
            except httpx.HTTPError as exc:
                raise ReferenceDataError(f"{endpoint}: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise ReferenceDataError(f"{endpoint}: HTTP {response.status_code}")
        document = parse_lenient_json(response.content)
        if document is None:
            raise ReferenceDataError(f"{endpoint}: the answer is not JSON")
        return document

    async def _list(self, endpoint: str, params: dict[str, Any] | None = None) -> list[Any]:
        document = await self._request(endpoint, params)
        if not isinstance(document, list):
            raise ReferenceDataError(f"{endpoint}: expected a JSON list")
        return document

    async def simple_list(self, endpoint: str) -> list[dict[str, Any]]:
        """One of the parameterless lists (``SIMPLE_LISTS``), e.g. ``"provinces"``."""
        if endpoint not in SIMPLE_LISTS:
            raise ValueError(f"{endpoint!r} takes parameters")
        return await self._list(endpoint)

    async def sale_type_to_rate(
        self, *, date: dt.date, trans_type_id: int, origination_supplier: int
    ) -> list[dict[str, Any]]:
        """Rates allowed for a transaction type on a date in a province [SPEC §5.8]."""
        params = {
            "date": format_dd_mmm_yyyy(date),
            "transTypeId": trans_type_id,
            "originationSupplier": origination_supplier,
        }
        return await self._list("SaleTypeToRate", params)

    async def sro_schedule(
        self, *, rate_id: int, date: dt.date, origination_supplier_csv: int
    ) -> list[dict[str, Any]]:
        """SRO schedules for a rate on a date in a province [SPEC §5.7]."""
        params = {
            "rate_id": rate_id,
            "date": format_dd_mmm_yyyy(date),
            "origination_supplier_csv": origination_supplier_csv,
        }
        return await self._list("SroSchedule", params)

    async def sro_item(self, *, date: dt.date, sro_id: int) -> list[dict[str, Any]]:
        """Item serial numbers of an SRO on a date [SPEC §5.10]."""
        return await self._list("SROItem", {"date": date.isoformat(), "sro_id": sro_id})

    async def hs_uom(
        self, *, hs_code: str, annexure_id: int = DEFAULT_ANNEXURE_ID
    ) -> list[dict[str, Any]]:
        """Units allowed for an HS code [SPEC §5.9]."""
        return await self._list("HS_UOM", {"hs_code": hs_code, "annexure_id": annexure_id})

    async def statl(self, *, regno: str, date: dt.date) -> dict[str, Any]:
        """Active-taxpayer status of a registration number on a date [SPEC §5.11]."""
        return await self._object("STATL", {"regno": regno, "date": date.isoformat()})

    async def registration_type(self, *, registration_no: str) -> dict[str, Any]:
        """Registered / unregistered status of a registration number [SPEC §5.12]."""
        return await self._object("Get_Reg_Type", {"Registration_No": registration_no})

    async def _object(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        document = await self._request(endpoint, body=body)
        if not isinstance(document, dict):
            raise ReferenceDataError(f"{endpoint}: expected a JSON object")
        return document

    async def fetch_snapshot(
        self, *, on: dt.date, hs_codes_for_uom: Iterable[str] = ()
    ) -> dict[str, Any]:
        """Every list, as one snapshot valid from ``on`` (what ``refdata sync`` stores).

        SaleTypeToRate is asked for every transaction type in every province, SroSchedule for
        every rate found, SROItem for every SRO found, HS_UOM for ``hs_codes_for_uom``.

        Raises:
            ReferenceDataError: an endpoint failed; nothing partial is returned.
        """
        lists = dict(
            zip(SIMPLE_LISTS, await _gather(self.simple_list(e) for e in SIMPLE_LISTS), strict=True)
        )
        provinces = [int(p["stateProvinceCode"]) for p in lists["provinces"]]
        trans_types = [int(t["transactioN_TYPE_ID"]) for t in lists["transtypecode"]]
        date_text = format_dd_mmm_yyyy(on)
        pairs = [(t, p) for t in trans_types for p in provinces]
        answers = await _gather(
            self.sale_type_to_rate(date=on, trans_type_id=t, origination_supplier=p)
            for t, p in pairs
        )
        sale_type_to_rate: list[dict[str, Any]] = [
            {"transTypeId": t, "originationSupplier": p, "date": date_text, "rates": rates}
            for (t, p), rates in zip(pairs, answers, strict=True)
            if rates
        ]
        rate_pairs = sorted(
            {(int(r["ratE_ID"]), e["originationSupplier"]) for e in sale_type_to_rate
             for r in e["rates"]}
        )  # fmt: skip
        answers = await _gather(
            self.sro_schedule(rate_id=r, date=on, origination_supplier_csv=p) for r, p in rate_pairs
        )
        sro_schedule: list[dict[str, Any]] = [
            {"rate_id": r, "origination_supplier_csv": p, "date": date_text, "schedules": found}
            for (r, p), found in zip(rate_pairs, answers, strict=True)
            if found
        ]
        sro_ids = sorted({int(s["srO_ID"]) for e in sro_schedule for s in e["schedules"]})
        answers = await _gather(self.sro_item(date=on, sro_id=s) for s in sro_ids)
        sro_item = [
            {"sro_id": s, "date": on.isoformat(), "items": items}
            for s, items in zip(sro_ids, answers, strict=True)
        ]
        codes = sorted(set(hs_codes_for_uom))
        answers = await _gather(self.hs_uom(hs_code=c) for c in codes)
        hs_uom = [
            {"hs_code": c, "annexure_id": DEFAULT_ANNEXURE_ID, "uoms": uoms}
            for c, uoms in zip(codes, answers, strict=True)
        ]
        return {
            "format": SNAPSHOT_FORMAT,
            "source": "fbr",
            "fetched_on": on.isoformat(),
            "complete": {**dict.fromkeys(SIMPLE_LISTS, True), "SaleTypeToRate": True,
                         "SroSchedule": True, "SROItem": True, "HS_UOM": False},
            **lists,
            "SaleTypeToRate": sale_type_to_rate,
            "SroSchedule": sro_schedule,
            "SROItem": sro_item,
            "HS_UOM": hs_uom,
        }  # fmt: skip


async def _gather(calls: Iterable[Awaitable[list[dict[str, Any]]]]) -> list[list[dict[str, Any]]]:
    return list(await asyncio.gather(*calls))
