"""Reference data as the rules see it: the :class:`ReferenceData` protocol and its in-memory form.

A *snapshot* is a plain JSON-able dict holding FBR's reference lists exactly as the endpoints
(docs/fbr-coverage.md §3.1) return them (field casing such as ``hS_CODE``, ``ratE_DESC``,
``uoM_ID`` kept), one key per endpoint, parameterised endpoints as a list of
``{<request params>, <answer key>: [...]}`` entries::

    {"format": 1, "source": "seed" | "fbr", "fetched_on": "2025-07-24",
     "complete": {"itemdesccode": false, ...},
     "provinces": [...], "doctypecode": [...], "itemdesccode": [...], "sroitemcode": [...],
     "transtypecode": [...], "uom": [...],
     "SaleTypeToRate": [{"transTypeId": 18, "originationSupplier": 7, "date": "24-Feb-2024",
                         "rates": [...]}],
     "SroSchedule": [{"rate_id": 413, "origination_supplier_csv": 1, "date": "04-Feb-2024",
                      "schedules": [...]}],
     "SROItem": [{"sro_id": 389, "date": "2025-03-25", "items": [...]}],
     "HS_UOM": [{"hs_code": "5904.9000", "annexure_id": 3, "uoms": [...]}],
     "STATL": [{"regno": "...", "date": "...", "response": {...}}],
     "Get_Reg_Type": [{"Registration_No": "...", "response": {...}}]}

``ReferenceDataClient.fetch_snapshot`` (``fbrhub refdata sync``) produces one; the seed shipped
in ``seed.json`` is one; :class:`SnapshotReferenceData` answers the rules' questions from one.

Choices where the sources leave room (docs/fbr-coverage.md §3.2):

- **Partial lists never reject by absence.** ``complete[<endpoint>]`` says whether a list is
  the whole of FBR's. The seed carries only the HS codes the samples and the spec use, so an
  HS code missing from it is *not* refused (a sync sets ``itemdesccode`` complete). Likewise an
  HS code without an ``HS_UOM`` entry, a sale type without ``SaleTypeToRate`` entries, a rate
  without ``SroSchedule`` entries: the question is answered ``None`` ("cannot tell") and the
  rule stays silent. Refusing an invoice FBR would accept blocks a legal sale.
- **Units for an HS code are compared by ``uoM_ID``, not text**: the spec's own HS_UOM sample
  says "Square Meter" where the uom list says "Square Metre" [SPEC §5.6, §5.9].
- **Dates.** SaleTypeToRate and SroSchedule take ``dd-MMM-yyyy``, SROItem ``yyyy-MM-dd``; both are
  read. An entry without a date applies always; otherwise the newest entry dated on or before
  the invoice date applies, and an invoice older than every entry is not judged (None).
- **Provinces.** ``originationSupplier`` is the seller's province code; an entry without one
  (the seed's) applies to every province. Names match case-insensitively
  (docs/fbr-coverage.md §3.3).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from typing import Any, Protocol

SNAPSHOT_FORMAT = 1
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1
    )
}
_CACHE_LIMIT = 4096


class ReferenceData(Protocol):
    """What the DI rules ask of FBR's reference lists (an in-memory or cached copy)."""

    def is_complete(self, endpoint: str) -> bool:
        """Whether the copy of ``endpoint``'s list is FBR's whole list (absence means invalid)."""
        ...

    def province_names(self) -> tuple[str, ...]:
        """FBR's province names, as the provinces API spells them."""
        ...

    def province_code(self, name: str) -> int | None:
        """``stateProvinceCode`` of a province name (any letter case); None if unknown."""
        ...

    def uom_id(self, text: str) -> int | None:
        """``uoM_ID`` of an exact, case-sensitive unit text; None if unknown."""
        ...

    def is_sale_type(self, name: str) -> bool:
        """Whether ``name`` is an exact transaction (sale) type description."""
        ...

    def hs_code_exists(self, hs_code: str) -> bool | None:
        """Whether the HS code is in ``itemdesccode``; None when the list is partial."""
        ...

    def hs_uoms(self, hs_code: str) -> Mapping[int, str] | None:
        """``uoM_ID`` -> unit text (the uom list's spelling) allowed for the HS code (HS_UOM);
        None when not known."""
        ...

    def rates(self, sale_type: str, province: str, on: dt.date) -> Mapping[str, int] | None:
        """Rate text -> ``ratE_ID`` allowed for the sale type; None when not known."""
        ...

    def sro_schedules(self, rate_id: int, province: str, on: dt.date) -> Mapping[str, int] | None:
        """SRO schedule text -> ``srO_ID`` allowed with the rate; None when not known."""
        ...

    def sro_items(self, sro_id: int, on: dt.date) -> frozenset[str] | None:
        """Item serial numbers of the SRO; None when not known."""
        ...


def parse_reference_date(text: str | None) -> dt.date | None:
    """Read ``dd-MMM-yyyy`` (SaleTypeToRate, SroSchedule) or ``yyyy-MM-dd`` (SROItem)."""
    if not text:
        return None
    try:
        if len(text) == 11 and text[2] == "-":
            return dt.date(int(text[7:]), _MONTHS[text[3:6].upper()], int(text[:2]))
        return dt.date.fromisoformat(text)
    except (KeyError, ValueError):
        return None


def format_dd_mmm_yyyy(date: dt.date) -> str:
    """``24-Feb-2024``, the date format of SaleTypeToRate and SroSchedule."""
    return f"{date.day:02d}-{date.strftime('%b')}-{date.year}"


_Dated = list[tuple[dt.date | None, Any]]


def pick_dated(entries: _Dated | None, on: dt.date) -> Any:
    """The newest entry dated on or before ``on``, else the undated one, else None."""
    if not entries:
        return None
    undated: Any = None
    best_date: dt.date | None = None
    best: Any = None
    for date, value in entries:
        if date is None:
            undated = value
        elif date <= on and (best_date is None or date > best_date):
            best_date, best = date, value
    return best if best_date is not None else undated


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class SnapshotReferenceData:
    """:class:`ReferenceData` answered from one snapshot dict, indexed once at construction.

    Args:
        snapshot: a snapshot (module docstring), e.g. ``load_seed()`` or a synced copy.

    Raises:
        ValueError: the snapshot's ``format`` is not one this code reads.
    """

    def __init__(self, snapshot: Mapping[str, Any]) -> None:
        if snapshot.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"unsupported reference snapshot format {snapshot.get('format')!r}")
        self.snapshot = snapshot
        complete: Mapping[str, bool] = snapshot.get("complete") or {}
        provinces = snapshot.get("provinces") or []
        self._provinces = tuple(str(p["stateProvinceDesc"]) for p in provinces)
        self._province_codes = {
            str(p["stateProvinceDesc"]).upper(): int(p["stateProvinceCode"]) for p in provinces
        }
        self._uoms = {str(u["description"]): int(u["uoM_ID"]) for u in snapshot.get("uom") or []}
        self._trans_types = {
            str(t["transactioN_DESC"]): int(t["transactioN_TYPE_ID"])
            for t in snapshot.get("transtypecode") or []
        }
        self._hs_codes = frozenset(str(h["hS_CODE"]) for h in snapshot.get("itemdesccode") or [])
        self._hs_complete = bool(complete.get("itemdesccode"))
        texts = {number: text for text, number in self._uoms.items()}
        self._hs_uoms: dict[str, dict[int, str]] = {}
        for entry in snapshot.get("HS_UOM") or []:
            allowed = self._hs_uoms.setdefault(str(entry["hs_code"]), {})
            for unit in entry.get("uoms") or []:
                # By id: HS_UOM's own text may differ ("Square Meter" vs "Square Metre").
                number = int(unit["uoM_ID"])
                allowed[number] = texts.get(number, str(unit["description"]))
        self._rates: dict[tuple[int, int | None], _Dated] = {}
        for entry in snapshot.get("SaleTypeToRate") or []:
            key = (int(entry["transTypeId"]), _int(entry.get("originationSupplier")))
            rates = {str(r["ratE_DESC"]): int(r["ratE_ID"]) for r in entry.get("rates") or []}
            self._rates.setdefault(key, []).append((parse_reference_date(entry.get("date")), rates))
        self._schedules: dict[tuple[int, int | None], _Dated] = {}
        for entry in snapshot.get("SroSchedule") or []:
            key = (int(entry["rate_id"]), _int(entry.get("origination_supplier_csv")))
            schedules = {str(s["srO_DESC"]): int(s["srO_ID"]) for s in entry.get("schedules") or []}
            dated = (parse_reference_date(entry.get("date")), schedules)
            self._schedules.setdefault(key, []).append(dated)
        self._sro_items: dict[int, _Dated] = {}
        for entry in snapshot.get("SROItem") or []:
            items = frozenset(str(i["srO_ITEM_DESC"]) for i in entry.get("items") or [])
            self._sro_items.setdefault(int(entry["sro_id"]), []).append(
                (parse_reference_date(entry.get("date")), items)
            )
        self._cache: dict[tuple[Any, ...], Any] = {}
        self._complete = frozenset(name for name, whole in complete.items() if whole)

    def is_complete(self, endpoint: str) -> bool:
        """Whether the copy of ``endpoint``'s list is FBR's whole list (absence means invalid)."""
        return endpoint in self._complete

    def province_names(self) -> tuple[str, ...]:
        """FBR's province names, as the provinces API spells them."""
        return self._provinces

    def province_code(self, name: str) -> int | None:
        """``stateProvinceCode`` of a province name (any letter case); None if unknown."""
        return self._province_codes.get(name.upper())

    def uom_id(self, text: str) -> int | None:
        """``uoM_ID`` of an exact, case-sensitive unit text; None if unknown."""
        return self._uoms.get(text)

    def is_sale_type(self, name: str) -> bool:
        """Whether ``name`` is an exact transaction (sale) type description."""
        return name in self._trans_types

    def hs_code_exists(self, hs_code: str) -> bool | None:
        """Whether the HS code is in ``itemdesccode``; None when the list is partial."""
        if hs_code in self._hs_codes:
            return True
        return False if self._hs_complete else None

    def hs_uoms(self, hs_code: str) -> Mapping[int, str] | None:
        """``uoM_ID`` -> unit text (the uom list's spelling) allowed for the HS code (HS_UOM);
        None when not known."""
        return self._hs_uoms.get(hs_code)

    def _by_province(
        self, table: dict[tuple[int, int | None], _Dated], key: int, province: str, on: dt.date
    ) -> Any:
        code = self._province_codes.get(province.upper())
        found = pick_dated(table.get((key, code)), on) if code is not None else None
        return found if found is not None else pick_dated(table.get((key, None)), on)

    def rates(self, sale_type: str, province: str, on: dt.date) -> Mapping[str, int] | None:
        """Rate text -> ``ratE_ID`` allowed for the sale type; None when not known."""
        key = ("rates", sale_type, province, on)
        try:
            return self._cache[key]  # type: ignore[no-any-return]
        except KeyError:
            pass
        trans_type = self._trans_types.get(sale_type)
        found = (
            None if trans_type is None else self._by_province(self._rates, trans_type, province, on)
        )
        remembered: Mapping[str, int] | None = self._remember(key, found)
        return remembered

    def sro_schedules(self, rate_id: int, province: str, on: dt.date) -> Mapping[str, int] | None:
        """SRO schedule text -> ``srO_ID`` allowed with the rate; None when not known."""
        key = ("schedules", rate_id, province, on)
        try:
            return self._cache[key]  # type: ignore[no-any-return]
        except KeyError:
            pass
        found = self._by_province(self._schedules, rate_id, province, on)
        remembered: Mapping[str, int] | None = self._remember(key, found)
        return remembered

    def sro_items(self, sro_id: int, on: dt.date) -> frozenset[str] | None:
        """Item serial numbers of the SRO; None when not known."""
        found = pick_dated(self._sro_items.get(sro_id), on)
        return found if isinstance(found, frozenset) else None

    def _remember(self, key: tuple[Any, ...], value: Any) -> Any:
        # Invoices repeat a handful of (sale type, province, date) triples: memoise, bounded.
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = value
        return value


def load_seed() -> dict[str, Any]:
    """The seed snapshot shipped with the package (a fresh copy, safe to modify)."""
    text = resources.files("clients.fbr.refdata").joinpath("seed.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def seed_reference_data() -> SnapshotReferenceData:
    """The seed as :class:`ReferenceData`, built once per process (the rules' default)."""
    return SnapshotReferenceData(load_seed())


def merge_snapshots(base: Mapping[str, Any], *updates: Mapping[str, Any]) -> dict[str, Any]:
    """A snapshot with the lists of ``updates`` replacing those of ``base`` key by key."""
    merged = dict(base)
    complete = dict(base.get("complete") or {})
    for update in updates:
        merged.update({k: v for k, v in update.items() if k != "complete"})
        complete.update(update.get("complete") or {})
    merged["complete"] = complete
    return merged


def hs_codes(snapshot: Mapping[str, Any]) -> Iterable[str]:
    """The HS codes of a snapshot's ``itemdesccode`` list."""
    return (str(entry["hS_CODE"]) for entry in snapshot.get("itemdesccode") or [])
