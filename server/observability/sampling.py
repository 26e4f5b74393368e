"""Sampling: one decision per invoice story, from the ERP's call to FBR's answer.

Spans with a parent follow the parent's decision (so an ERP that sends a sampled
``traceparent`` gets its whole call traced, and one that sends an unsampled one gets none).
A delivery attempt starts a trace of its own, linked to the ingest span that queued its
invoice; it follows that link's decision, so an invoice is traced end to end or not at all.
Only spans with neither a parent nor a link (an RPC without a ``traceparent``) are sampled
by the root sampler, chosen with the standard ``OTEL_TRACES_SAMPLER`` and
``OTEL_TRACES_SAMPLER_ARG``; when ``OTEL_TRACES_SAMPLER`` is unset the hub keeps
:data:`DEFAULT_RATIO` of them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind, TraceState, get_current_span
from opentelemetry.util.types import Attributes

# The share of unparented traces kept when OTEL_TRACES_SAMPLER is not set.
DEFAULT_RATIO = 0.1
_ROOT_SAMPLERS = {"always_on", "always_off", "traceidratio"}


def root_sampler_from_env(environ: dict[str, str] | None = None) -> Sampler:
    """The sampler for spans with neither parent nor link, from ``OTEL_TRACES_SAMPLER``.

    ``parentbased_X`` and ``X`` mean the same here (parents are always honoured); custom
    sampler entry points are not supported.

    Raises:
        ValueError: an unknown sampler name or a ratio outside [0, 1].
    """
    env = os.environ if environ is None else environ
    name = env.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    argument = env.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    if not name:
        return TraceIdRatioBased(_ratio(argument) if argument else DEFAULT_RATIO)
    root = name.removeprefix("parentbased_")
    if root not in _ROOT_SAMPLERS:
        raise ValueError(f"unsupported OTEL_TRACES_SAMPLER {name!r}")
    if root == "always_on":
        return ALWAYS_ON
    if root == "always_off":
        return ALWAYS_OFF
    return TraceIdRatioBased(_ratio(argument) if argument else 1.0)


def _ratio(text: str) -> float:
    ratio = float(text)
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"OTEL_TRACES_SAMPLER_ARG must be within [0, 1], not {text!r}")
    return ratio


class LinkFollowingSampler(Sampler):
    """Parent-based sampling that lets a root span with links follow its first valid link."""

    def __init__(self, root: Sampler) -> None:
        """Sample unparented, unlinked spans with ``root``."""
        self._root = root
        self._parent_based = ParentBased(root)

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        """Decide for one span (see the module docstring)."""
        parent = get_current_span(parent_context).get_span_context()
        if not parent.is_valid and links:
            linked = next((link.context for link in links if link.context.is_valid), None)
            if linked is not None:
                decision = (
                    Decision.RECORD_AND_SAMPLE if linked.trace_flags.sampled else Decision.DROP
                )
                return SamplingResult(
                    decision, attributes if decision is Decision.RECORD_AND_SAMPLE else None
                )
        return self._parent_based.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        """How this sampler decides, for diagnostics."""
        return f"LinkFollowingSampler{{root={self._root.get_description()}}}"
