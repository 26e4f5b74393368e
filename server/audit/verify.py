"""Verification of a tenant's audit chain: the first event where it breaks, and how.

- a gap in the sequence numbers: ``EVENT_MISSING``;
- content that no longer matches its hash: ``EVENT_EDITED``;
- ``prev_hash`` not the previous event's hash: ``EVENT_OUT_OF_ORDER``;
- fewer events than the chain head records: ``EVENT_MISSING`` (deleting the newest events
  is caught too); a last hash other than the head's: ``EVENT_EDITED``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum

from server.audit.queries import read_audit_events
from server.audit.trail import GENESIS_HASH, event_content, event_hash
from server.db.engine import Database
from server.db.models import AuditChainHead

_VERIFY_PAGE = 1000


class ChainProblem(StrEnum):
    """What :func:`verify_chain` found at the first bad event."""

    EVENT_EDITED = "EVENT_EDITED"
    EVENT_MISSING = "EVENT_MISSING"
    EVENT_OUT_OF_ORDER = "EVENT_OUT_OF_ORDER"


@dataclass(frozen=True)
class ChainVerdict:
    """The result of verifying one tenant's chain."""

    intact: bool
    checked_count: int
    head_hash: str
    first_bad_seq: int = 0
    problem: ChainProblem | None = None
    message: str = ""


async def verify_chain(db: Database, tenant_id: uuid.UUID) -> ChainVerdict:
    """Recompute a tenant's chain and report the first event where it breaks."""
    expected, prev = 1, GENESIS_HASH
    async with db.read("audit.verify") as session:
        while True:
            rows = await read_audit_events(session, tenant_id, expected - 1, _VERIFY_PAGE)
            for row in rows:
                if row.seq != expected:
                    return _broken(
                        expected, ChainProblem.EVENT_MISSING, f"event {expected} is missing"
                    )
                if event_hash(row.prev_hash, tenant_id, event_content(row)) != row.hash:
                    return _broken(
                        expected,
                        ChainProblem.EVENT_EDITED,
                        f"event {expected} no longer matches its hash: it was edited",
                    )
                if row.prev_hash != prev:
                    return _broken(
                        expected,
                        ChainProblem.EVENT_OUT_OF_ORDER,
                        f"event {expected} does not follow event {expected - 1}: events were "
                        "reordered, or one before it was removed",
                    )
                prev = row.hash
                expected += 1
            if len(rows) < _VERIFY_PAGE:
                break
        head = await session.get(AuditChainHead, tenant_id)
    last = expected - 1
    if head is not None and head.last_seq > last:
        return _broken(
            expected,
            ChainProblem.EVENT_MISSING,
            f"events {expected} to {head.last_seq} are missing from the end of the chain",
        )
    if head is not None and head.last_hash != prev:
        return _broken(
            last,
            ChainProblem.EVENT_EDITED,
            f"event {last} does not match the recorded chain head: it was edited",
        )
    return ChainVerdict(intact=True, checked_count=last, head_hash=prev)


def _broken(seq: int, problem: ChainProblem, message: str) -> ChainVerdict:
    return ChainVerdict(
        intact=False,
        checked_count=seq - 1,
        head_hash="",
        first_bad_seq=seq,
        problem=problem,
        message=message,
    )
