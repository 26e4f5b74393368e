"""FBR reference data built into the hub, so invoices can be validated offline.

FBR publishes provinces, units of measure, sale types and the rates allowed per sale type
through its reference APIs (docs/fbr-coverage.md §3). Until the hub caches those APIs in
its database, this module carries a small copy, each entry tagged with where it came from:

- ``[CSV]``: the lists exported from FBR by ``ERPNEXT-PAKISTAN/FBR-Pakistan``;
- ``[SCN]``: the rate, SRO and unit PRAL's own sandbox sample uses for a scenario
  (docs/fbr-coverage.md §4);
- ``assumed``: an entry the sources do not give, added so common invoices are not refused.

Every lookup goes through the functions below (never through the tables), so the later
database-backed copy can replace them without touching the rules.

Matching is exact (FBR compares strings byte for byte: ``"KG"`` is not ``"kg"``), with one
exception: provinces are matched case-insensitively, because PRAL's own samples send
``"Sindh"`` while the provinces API returns ``"SINDH"`` and the samples are accepted
(docs/fbr-coverage.md §3.3).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

PROVINCES: tuple[str, ...] = (
    "AZAD JAMMU AND KASHMIR",
    "BALOCHISTAN",
    "CAPITAL TERRITORY",
    "GILGIT BALTISTAN",
    "KHYBER PAKHTUNKHWA",
    "PUNJAB",
    "SINDH",
    "FATA/PATA",
)
"""Province names as FBR's provinces API returns them [CSV Buyer Province]."""

UNITS_OF_MEASURE: tuple[str, ...] = (
    "MT",
    "Bill of lading",
    "SET",
    "1000 kWh",
    "KWH",
    "Carat",
    "NO",
    "Gram",
    "Dozen",
    "Kilogram",
    "Liter",
    "Numbers, pieces, units",
    "40KG",
    "SqY",
    "Bag",
    "KG",
    "MMBTU",
    "Cubic Metre",
    "Pound",
    "Timber Logs",
    "Packs",
    "Pair",
    "Square Foot",
    "Square Metre",
    "Thousand Unit",
    "Mega Watt",
    "Foot",
    "Barrels",
)
"""Unit-of-measure texts, case-sensitive [CSV FBR UoM]."""


class SaleTypeCategory(enum.Enum):
    """How a sale type is taxed, as far as the local rules need to know."""

    STANDARD = "standard"
    """Standard rate on the value excluding tax."""
    REDUCED = "reduced"
    """Reduced rate (Eighth Schedule): extra tax must be left empty (0091)."""
    EXEMPT = "exempt"
    """Exempt (Sixth Schedule): no tax; extra tax must be left empty (0091)."""
    ZERO_RATED = "zero-rated"
    """Zero-rated (Fifth Schedule): no tax; extra tax must be left empty (0091)."""
    THIRD_SCHEDULE = "third-schedule"
    """Tax on the retail price (``fixed_notified_value_or_retail_price``), 0090/0102."""
    SPECIAL_RATE = "special-rate"
    """A sector-specific percentage on the value excluding tax."""
    PER_UNIT = "per-unit"
    """Rupees per unit of quantity (0105)."""
    PERCENT_PLUS_PER_UNIT = "percent-plus-per-unit"
    """A percentage of the value plus rupees per unit (potassium chlorate, 0103)."""


@dataclass(frozen=True, slots=True)
class SaleType:
    """One FBR sale type and what the offline rules know about it."""

    name: str
    category: SaleTypeCategory
    rates: frozenset[str]
    """Allowed rate texts; empty when not known offline (the rate is then not checked)."""
    requires_sro: bool
    """Whether ``sro_schedule_no`` is mandatory (0077); true where PRAL's sample sends one."""
    source: str


def _sale_type(
    name: str, category: SaleTypeCategory, rates: tuple[str, ...], requires_sro: bool, source: str
) -> SaleType:
    return SaleType(name, category, frozenset(rates), requires_sro, source)


_C = SaleTypeCategory
# Names are exact [CSV Sale Type], odd spacing included ("Cement /Concrete Block") and the
# pipe in "SRO.297(|)/2023" [KIT-DI §10]. Rates are the [SCN] sample's unless marked.
SALE_TYPES: tuple[SaleType, ...] = (
    _sale_type("Goods at standard rate (default)", _C.STANDARD, ("18%",), False, "SN001"),
    # Eighth Schedule rates beyond the sample's 1% are assumed, pending SaleTypeToRate.
    _sale_type(
        "Goods at Reduced Rate",
        _C.REDUCED,
        ("1%", "5%", "7.5%", "10%", "12%", "15%", "16%"),
        True,
        "SN005, SN028; rates other than 1% assumed",
    ),
    _sale_type("Goods at zero-rate", _C.ZERO_RATED, ("0%",), True, "SN007"),
    _sale_type("Exempt goods", _C.EXEMPT, ("Exempt",), True, "SN006"),
    _sale_type("3rd Schedule Goods", _C.THIRD_SCHEDULE, ("18%",), False, "SN008, SN027"),
    _sale_type("Steel melting and re-rolling", _C.STANDARD, ("18%",), False, "SN003"),
    _sale_type("Ship breaking", _C.STANDARD, ("18%",), False, "SN004"),
    _sale_type("Cotton ginners", _C.STANDARD, ("18%",), False, "SN009"),
    _sale_type("Telecommunication services", _C.SPECIAL_RATE, ("17%",), False, "SN010"),
    _sale_type("Toll Manufacturing", _C.STANDARD, ("18%",), False, "SN011"),
    _sale_type("Petroleum Products", _C.SPECIAL_RATE, ("1.43%",), True, "SN012"),
    _sale_type("Electricity Supply to Retailers", _C.SPECIAL_RATE, ("5%",), True, "SN013"),
    _sale_type("Gas to CNG stations", _C.STANDARD, ("18%",), False, "SN014"),
    _sale_type("Mobile Phones", _C.STANDARD, ("18%",), True, "SN015"),
    _sale_type("Processing/Conversion of Goods", _C.SPECIAL_RATE, ("5%",), False, "SN016"),
    _sale_type("Goods (FED in ST Mode)", _C.SPECIAL_RATE, ("8%",), False, "SN017"),
    _sale_type("Services (FED in ST Mode)", _C.SPECIAL_RATE, ("8%",), False, "SN018"),
    _sale_type("Services", _C.SPECIAL_RATE, ("5%",), True, "SN019"),
    _sale_type("Electric Vehicle", _C.SPECIAL_RATE, ("1%",), True, "SN020"),
    _sale_type("Cement /Concrete Block", _C.PER_UNIT, ("Rs.3",), False, "SN021"),
    _sale_type(
        "Potassium Chlorate",
        _C.PERCENT_PLUS_PER_UNIT,
        ("18% along with rupees 60 per kilogram",),
        True,
        "SN022",
    ),
    _sale_type("CNG Sales", _C.PER_UNIT, ("Rs.200",), True, "SN023"),
    _sale_type("Goods as per SRO.297(|)/2023", _C.SPECIAL_RATE, ("25%",), True, "SN024"),
    _sale_type("Non-Adjustable Supplies", _C.SPECIAL_RATE, ("0%",), True, "SN025"),
    # No scenario and no sample: the rate cannot be checked offline.
    _sale_type("DTRE goods", _C.SPECIAL_RATE, (), False, "[CSV] only"),
    _sale_type("SIM", _C.SPECIAL_RATE, (), False, "[CSV] only"),
    _sale_type("Rerollable scrap by ship breakers", _C.SPECIAL_RATE, (), False, "[CSV] only"),
)

SCENARIO_SALE_TYPES: dict[str, str] = {
    "SN001": "Goods at standard rate (default)",
    "SN002": "Goods at standard rate (default)",
    "SN003": "Steel melting and re-rolling",
    "SN004": "Ship breaking",
    "SN005": "Goods at Reduced Rate",
    "SN006": "Exempt goods",
    "SN007": "Goods at zero-rate",
    "SN008": "3rd Schedule Goods",
    "SN009": "Cotton ginners",
    "SN010": "Telecommunication services",
    "SN011": "Toll Manufacturing",
    "SN012": "Petroleum Products",
    "SN013": "Electricity Supply to Retailers",
    "SN014": "Gas to CNG stations",
    "SN015": "Mobile Phones",
    "SN016": "Processing/Conversion of Goods",
    "SN017": "Goods (FED in ST Mode)",
    "SN018": "Services (FED in ST Mode)",
    "SN019": "Services",
    "SN020": "Electric Vehicle",
    "SN021": "Cement /Concrete Block",
    "SN022": "Potassium Chlorate",
    "SN023": "CNG Sales",
    "SN024": "Goods as per SRO.297(|)/2023",
    "SN025": "Non-Adjustable Supplies",
    "SN026": "Goods at standard rate (default)",
    "SN027": "3rd Schedule Goods",
    "SN028": "Goods at Reduced Rate",
}
"""The sale type each sandbox scenario must use [SPEC p.46]; another one draws 0204."""

_PROVINCES_UPPER = frozenset(PROVINCES)
_UNITS = frozenset(UNITS_OF_MEASURE)
_SALE_TYPES_BY_NAME = {sale_type.name: sale_type for sale_type in SALE_TYPES}


def is_known_province(name: str) -> bool:
    """Whether ``name`` is an FBR province, ignoring letter case (never a city name)."""
    return name.upper() in _PROVINCES_UPPER


def is_known_uom(text: str) -> bool:
    """Whether ``text`` is an FBR unit of measure, compared case-sensitively."""
    return text in _UNITS


def sale_type(name: str) -> SaleType | None:
    """The sale type called exactly ``name``, or ``None`` if FBR has no such sale type."""
    return _SALE_TYPES_BY_NAME.get(name)


def is_known_sale_type(name: str) -> bool:
    """Whether ``name`` is an exact FBR sale type text."""
    return name in _SALE_TYPES_BY_NAME


def allowed_rates(name: str) -> frozenset[str]:
    """The rate texts allowed for sale type ``name``; empty if unknown offline."""
    found = _SALE_TYPES_BY_NAME.get(name)
    return found.rates if found is not None else frozenset()


def scenario_sale_type(scenario_id: str) -> str | None:
    """The sale type a sandbox scenario requires, or ``None`` for an unknown scenario."""
    return SCENARIO_SALE_TYPES.get(scenario_id)


@dataclass(frozen=True, slots=True)
class RateComponents:
    """A rate text taken apart: a percentage of the value and/or rupees per unit."""

    percent: Decimal | None
    per_unit: Decimal | None


_NUMBER = r"(\d+(?:\.\d+)?)"
_PERCENT_RE = re.compile(_NUMBER + r"%", re.ASCII)
_PER_UNIT_RE = re.compile(r"Rs\.? ?" + _NUMBER, re.ASCII)
_PERCENT_PLUS_PER_UNIT_RE = re.compile(
    _NUMBER + r"% along with rupees " + _NUMBER + r" per [a-z]+", re.ASCII
)
_ZERO = Decimal(0)


@lru_cache(maxsize=1024)
def rate_components(text: str) -> RateComponents | None:
    """Parse a rate text such as ``"18%"``, ``"Rs.3"``, ``"Exempt"``; ``None`` if not understood.

    Cached because a handful of rate texts make up nearly all invoice lines.
    """
    if text == "Exempt":
        return RateComponents(_ZERO, None)
    if match := _PERCENT_RE.fullmatch(text):
        return RateComponents(Decimal(match[1]), None)
    if match := _PER_UNIT_RE.fullmatch(text):
        return RateComponents(None, Decimal(match[1]))
    if match := _PERCENT_PLUS_PER_UNIT_RE.fullmatch(text):
        return RateComponents(Decimal(match[1]), Decimal(match[2]))
    return None
