"""When the simulator misbehaves: a seeded, scriptable fault plan and the injector that runs it.

A :class:`FaultPlan` is a plain description (it round-trips through JSON for ``--faults-file``);
a :class:`FaultInjector` runs one against the stream of DI and POS requests. Request *n* gets,
in order of precedence:

1. the next scripted :class:`Step`, if any (a fault and/or a latency for that request alone);
2. the outage in force at its arrival, if any (:class:`Outage` windows or a manual outage);
3. the fault of a :class:`Burst` covering *n*;
4. a random fault drawn with the plan's rates.

Its latency is the step's, else a draw from the plan's :class:`Latency`. The random generators
are seeded from ``FaultPlan.seed`` and draw the same number of values for every request whatever
wins, so the same seed and the same request sequence give the same faults and latencies.
"""

from __future__ import annotations

import datetime
import enum
import json
import math
import random
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clients.fbr_simulator.faults import Fault


class OutageMode(enum.Enum):
    """What every request meets while FBR is down."""

    REFUSE = "refuse"
    """The simulator stops listening: new connections get ECONNREFUSED, open ones are closed."""
    GATEWAY = "gateway"
    """Every request gets WSO2's 503 fault 101503 (:attr:`Fault.GATEWAY_5XX`)."""
    HANG = "hang"
    """Every request is read and never answered (:attr:`Fault.HANG`); nothing is issued."""

    @property
    def fault(self) -> Fault:
        """The per-request fault of this mode (a refused connection looks like a drop)."""
        return _OUTAGE_FAULTS[self]


_OUTAGE_FAULTS = {
    OutageMode.REFUSE: Fault.DROP,
    OutageMode.GATEWAY: Fault.GATEWAY_5XX,
    OutageMode.HANG: Fault.HANG,
}
_DISTRIBUTIONS = ("fixed", "uniform", "normal", "lognormal")


@dataclass(frozen=True, slots=True)
class Latency:
    """How long the simulator waits before answering, in seconds.

    ``fixed`` waits ``mean``; ``uniform`` draws from [``low``, ``high``]; ``normal`` and
    ``lognormal`` draw with the given ``mean`` and ``stddev`` (the lognormal's own mean and
    standard deviation, not those of its logarithm), then clip to [``low``, ``high``].
    """

    distribution: str = "fixed"
    mean: float = 0.0
    stddev: float = 0.0
    low: float = 0.0
    high: float | None = None
    """Upper bound; None: unbounded (for ``uniform``: ``mean`` + (``mean`` - ``low``))."""

    def __post_init__(self) -> None:
        if self.distribution not in _DISTRIBUTIONS:
            raise ValueError(f"latency distribution must be one of {_DISTRIBUTIONS}")
        if min(self.mean, self.stddev, self.low) < 0:
            raise ValueError("latency mean, stddev and low must not be negative")

    @classmethod
    def fixed(cls, seconds: float) -> Latency:
        """Always ``seconds``."""
        return cls("fixed", mean=seconds)

    @classmethod
    def uniform(cls, low: float, high: float) -> Latency:
        """Uniform on [``low``, ``high``]."""
        return cls("uniform", mean=(low + high) / 2, low=low, high=high)

    @classmethod
    def normal(cls, mean: float, stddev: float, high: float | None = None) -> Latency:
        """Gaussian, clipped at zero (and at ``high`` if given)."""
        return cls("normal", mean=mean, stddev=stddev, high=high)

    @classmethod
    def lognormal(cls, mean: float, stddev: float, high: float | None = None) -> Latency:
        """Lognormal with this mean and standard deviation: a long tail, like real networks."""
        return cls("lognormal", mean=mean, stddev=stddev, high=high)

    @property
    def is_random(self) -> bool:
        """Whether a draw is needed (every distribution but ``fixed``)."""
        return self.distribution != "fixed"

    def sample(self, generator: random.Random) -> float:
        """One latency, drawn with ``generator``."""
        if self.distribution == "fixed":
            return self.mean
        if self.distribution == "uniform":
            high = self.high if self.high is not None else 2 * self.mean - self.low
            return generator.uniform(self.low, max(high, self.low))
        if self.distribution == "normal":
            value = generator.gauss(self.mean, self.stddev)
        elif self.mean == 0:
            value = 0.0
        else:
            sigma_squared = math.log1p((self.stddev / self.mean) ** 2)
            mu = math.log(self.mean) - sigma_squared / 2
            value = generator.lognormvariate(mu, math.sqrt(sigma_squared))
        value = max(value, self.low)
        return value if self.high is None else min(value, self.high)


@dataclass(frozen=True, slots=True)
class Burst:
    """``length`` consecutive requests get ``fault``, every ``every`` requests.

    Requests are counted from 0 across the DI and POS endpoints; bursts cover requests
    ``start + k * every`` up to ``start + k * every + length - 1`` (``start`` defaults to
    ``every``, so the first ``every`` requests are served normally).
    """

    every: int
    length: int
    fault: Fault = Fault.GATEWAY_5XX
    start: int | None = None

    def __post_init__(self) -> None:
        if not 0 < self.length <= self.every:
            raise ValueError("a burst needs 0 < length <= every")

    def covers(self, request_index: int) -> bool:
        """Whether request ``request_index`` (0-based) falls in a burst."""
        start = self.every if self.start is None else self.start
        return request_index >= start and (request_index - start) % self.every < self.length


@dataclass(frozen=True, slots=True)
class Outage:
    """FBR is down from ``start`` for ``duration`` seconds.

    ``start`` is seconds after the simulator started (by its clock), or an absolute time
    (naive means UTC).
    """

    start: float | datetime.datetime
    duration: float
    mode: OutageMode = OutageMode.REFUSE

    def window(self, started_at: datetime.datetime) -> tuple[datetime.datetime, datetime.datetime]:
        """The outage as [begin, end) on the simulator's clock."""
        if isinstance(self.start, datetime.datetime):
            begin = _aware(self.start)
        else:
            begin = started_at + datetime.timedelta(seconds=self.start)
        return begin, begin + datetime.timedelta(seconds=self.duration)


@dataclass(frozen=True, slots=True)
class Step:
    """What one scripted request gets: a fault (None: none) and a latency (None: the plan's)."""

    fault: Fault | None = None
    latency: float | None = None


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Every fault the simulator injects, seeded so runs repeat exactly."""

    seed: int = 0
    latency: Latency = field(default_factory=Latency)
    error_rate: float = 0.0
    """Fraction of requests answered with WSO2's 503 (:attr:`Fault.GATEWAY_5XX`)."""
    fault_rates: Mapping[Fault, float] = field(default_factory=dict)
    """Further random faults and their fractions, drawn with the same number as ``error_rate``."""
    bursts: tuple[Burst, ...] = ()
    outages: tuple[Outage, ...] = ()
    script: tuple[Step, ...] = ()
    """Steps for the first requests (before any :meth:`FbrSimulator.script` ed ones)."""
    retry_after_seconds: int = 1
    """The ``Retry-After`` header of :attr:`Fault.TOO_MANY_REQUESTS`."""

    def __post_init__(self) -> None:
        if sum(self.random_rates().values()) > 1:
            raise ValueError("random fault rates add up to more than 1")

    def random_rates(self) -> dict[Fault, float]:
        """Random faults and their fractions, the gateway 503 of ``error_rate`` first."""
        rates = {Fault.GATEWAY_5XX: self.error_rate} if self.error_rate else {}
        for fault, rate in self.fault_rates.items():
            rates[fault] = rates.get(fault, 0.0) + rate
        return rates

    @classmethod
    def load(cls, path: str | Path) -> FaultPlan:
        """A plan from a JSON file (the shape of :meth:`to_dict`)."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FaultPlan:
        """A plan from its JSON form; durations are in milliseconds, start/duration seconds.

        Raises:
            ValueError: on an unknown key, fault, mode or distribution.
        """
        unknown = set(data) - _PLAN_KEYS
        if unknown:
            raise ValueError(f"unknown fault plan keys: {sorted(unknown)}")
        latency = data.get("latency") or {}
        high = latency.get("max_ms")
        return cls(
            seed=int(data.get("seed", 0)),
            latency=Latency(
                distribution=latency.get("distribution", "fixed"),
                mean=latency.get("mean_ms", 0) / 1000,
                stddev=latency.get("stddev_ms", 0) / 1000,
                low=latency.get("min_ms", 0) / 1000,
                high=None if high is None else high / 1000,
            ),
            error_rate=float(data.get("error_rate", 0.0)),
            fault_rates={Fault(k): float(v) for k, v in (data.get("fault_rates") or {}).items()},
            bursts=tuple(
                Burst(b["every"], b["length"], Fault(b.get("fault", "gateway_5xx")), b.get("start"))
                for b in data.get("bursts") or ()
            ),
            outages=tuple(parse_outage_json(o) for o in data.get("outages") or ()),
            script=tuple(parse_step_json(s) for s in data.get("script") or ()),
            retry_after_seconds=int(data.get("retry_after_seconds", 1)),
        )

    def to_dict(self) -> dict[str, Any]:
        """The plan's JSON form (see :meth:`from_dict`)."""
        latency: dict[str, Any] = {
            "distribution": self.latency.distribution,
            "mean_ms": self.latency.mean * 1000,
            "stddev_ms": self.latency.stddev * 1000,
            "min_ms": self.latency.low * 1000,
        }
        if self.latency.high is not None:
            latency["max_ms"] = self.latency.high * 1000
        return {
            "seed": self.seed,
            "latency": latency,
            "error_rate": self.error_rate,
            "fault_rates": {fault.value: rate for fault, rate in self.fault_rates.items()},
            "bursts": [
                {"every": b.every, "length": b.length, "fault": b.fault.value, "start": b.start}
                for b in self.bursts
            ],
            "outages": [
                {
                    "start": o.start.isoformat()
                    if isinstance(o.start, datetime.datetime)
                    else o.start,
                    "duration": o.duration,
                    "mode": o.mode.value,
                }
                for o in self.outages
            ],
            "script": [step_json(step) for step in self.script],
            "retry_after_seconds": self.retry_after_seconds,
        }


_PLAN_KEYS = frozenset(FaultPlan.__dataclass_fields__)


def parse_outage_json(data: Mapping[str, Any]) -> Outage:
    """An :class:`Outage` from ``{"start": seconds | ISO time, "duration": s, "mode": ...}``."""
    start = data["start"]
    begin = datetime.datetime.fromisoformat(start) if isinstance(start, str) else float(start)
    return Outage(begin, float(data["duration"]), OutageMode(data.get("mode", "refuse")))


def parse_step_json(data: str | Mapping[str, Any] | None) -> Step:
    """A :class:`Step` from a fault name, null (a normal request) or ``{fault, latency_ms}``."""
    if data is None or isinstance(data, str):
        return Step(None if data is None else Fault(data))
    fault = data.get("fault")
    latency = data.get("latency_ms")
    return Step(
        None if fault is None else Fault(fault), None if latency is None else latency / 1000
    )


def step_json(step: Step) -> dict[str, Any]:
    """The JSON form of a :class:`Step`."""
    return {
        "fault": None if step.fault is None else step.fault.value,
        "latency_ms": None if step.latency is None else step.latency * 1000,
    }


def _aware(moment: datetime.datetime) -> datetime.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)


class FaultInjector:
    """Runs a :class:`FaultPlan`: decides each request's fault and latency, in arrival order."""

    def __init__(self, plan: FaultPlan) -> None:
        """Start with the plan's script queued and its generators seeded."""
        self.plan = plan
        self.requests = 0
        """Requests decided so far (the index of the next one)."""
        self.manual_outage: OutageMode | None = None
        """An outage switched on by hand (:meth:`FbrSimulator.begin_outage`); beats windows."""
        self._script: deque[Step] = deque(plan.script)
        self._fault_random = random.Random(plan.seed)
        self._latency_random = random.Random(f"latency:{plan.seed}")
        self._windows: list[tuple[datetime.datetime, datetime.datetime, OutageMode]] = []
        self._rates_of: tuple[FaultPlan, dict[Fault, float]] | None = None

    def script(self, steps: Sequence[Fault | Step]) -> None:
        """Queue steps for the next requests, one each, in order."""
        self._script.extend(s if isinstance(s, Step) else Step(s) for s in steps)

    def anchor(self, started_at: datetime.datetime) -> None:
        """Pin the plan's relative outage windows to the simulator's start time."""
        self._windows = [(*o.window(_aware(started_at)), o.mode) for o in self.plan.outages]

    @property
    def has_outages(self) -> bool:
        """Whether an outage can be in force (a window is planned or one is on by hand)."""
        return bool(self._windows) or self.manual_outage is not None

    def outage_at(self, now: datetime.datetime) -> OutageMode | None:
        """The outage in force at ``now`` (the manual one first), if any."""
        if self.manual_outage is not None:
            return self.manual_outage
        for begin, end, mode in self._windows:
            if begin <= now < end:
                return mode
        return None

    def boundaries_after(self, now: datetime.datetime) -> list[datetime.datetime]:
        """Window starts and ends still to come, for waking up on time."""
        return sorted(t for begin, end, _ in self._windows for t in (begin, end) if t > now)

    def decide(self, now: datetime.datetime | None) -> tuple[Fault | None, float]:
        """The next request's fault (None: served normally) and latency in seconds.

        Args:
            now: the simulator's time at arrival; needed only while outages are planned.
        """
        plan = self.plan
        index = self.requests
        self.requests = index + 1
        # Draw for every request whatever wins below, so draws line up with request indexes.
        if self._rates_of is None or self._rates_of[0] is not plan:
            self._rates_of = (plan, plan.random_rates())  # the plan may be swapped at runtime
        rates = self._rates_of[1]
        chance = self._fault_random.random() if rates else 1.0
        latency = plan.latency.sample(self._latency_random)
        if self._script:
            step = self._script.popleft()
            return step.fault, latency if step.latency is None else step.latency
        if now is not None and self.has_outages:
            outage = self.outage_at(now)
            if outage is not None:
                return outage.fault, latency
        for burst in plan.bursts:
            if burst.covers(index):
                return burst.fault, latency
        if rates:
            for fault, rate in rates.items():
                if chance < rate:
                    return fault, latency
                chance -= rate
        return None, latency
