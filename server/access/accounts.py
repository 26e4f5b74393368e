"""Platform accounts: the people using SmartInvoicing on behalf of a tenant.

Creating an account checks its fields, stores a bcrypt hash of the password (never the
password), records the sign-up consents, and audits ``account.create``, all in one
transaction. Closing, exporting and erasing accounts are privacy acts (:mod:`server.privacy`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import uuid
from collections.abc import Sequence

import bcrypt
from sqlalchemy.exc import IntegrityError

from server.access.actor import Actor
from server.access.roles import Role
from server.audit.trail import append_audit_events
from server.clock import utcnow
from server.db.engine import Database
from server.db.models import Account, AccountStatus, ConsentEvent
from server.errors import InvalidField, UsernameTaken

USERNAME = re.compile(r"^[A-Za-z0-9._-]{3,64}$")
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,189}\.[^@\s]{1,63}$")


# bcrypt reads at most 72 bytes (bcrypt 5 refuses more): a longer password is hashed with
# SHA-256 first, so that every character of it counts. 128 characters may be 512 bytes.
_BCRYPT_MAX_BYTES = 72


def _bcrypt_input(password: str) -> bytes:
    """The bytes bcrypt hashes for ``password``: itself, or its SHA-256 if over 72 bytes."""
    raw = password.encode()
    if len(raw) <= _BCRYPT_MAX_BYTES:
        return raw
    return base64.b64encode(hashlib.sha256(raw).digest())


async def hash_password(password: str, rounds: int) -> str:
    """A bcrypt hash of a password (any length, see ``_bcrypt_input``), off the event loop."""
    salt = bcrypt.gensalt(rounds)
    hashed = await asyncio.to_thread(bcrypt.hashpw, _bcrypt_input(password), salt)
    return hashed.decode()


async def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` is the one ``stored`` (a :func:`hash_password` hash) was made of."""
    if not stored:
        return False
    return await asyncio.to_thread(bcrypt.checkpw, _bcrypt_input(password), stored.encode())


def _check_fields(*, username: str, full_name: str, email: str, password: str) -> None:
    """Raise InvalidField for the first field an account cannot have (never its value)."""
    if not USERNAME.match(username):
        raise InvalidField("username", "username must be 3-64 letters, digits, '.', '_', '-'")
    if not full_name.strip():
        raise InvalidField("full_name", "full_name is required")
    if not EMAIL.match(email):
        raise InvalidField("email", "email must be an e-mail address")
    if not 12 <= len(password) <= 128:
        raise InvalidField("password", "password must be 12 to 128 characters")


async def create_account(
    db: Database,
    tenant_id: uuid.UUID,
    *,
    username: str,
    full_name: str,
    email: str,
    phone: str,
    password: str,
    role: Role,
    consents: Sequence[tuple[str, bool]],
    bcrypt_rounds: int,
    actor: Actor,
) -> uuid.UUID:
    """Create a platform account with a bcrypt password hash and its sign-up consents.

    Args:
        db: the hub's database.
        tenant_id: the tenant the account belongs to.
        username: unique within the tenant.
        full_name: the holder's name.
        email: the holder's e-mail address.
        phone: the holder's phone number ("" if none).
        password: the password; only its bcrypt hash is stored.
        role: what the account is for.
        consents: (purpose, granted) decisions given at sign-up.
        bcrypt_rounds: the bcrypt cost factor.
        actor: who creates the account.

    Returns:
        The new account's id.

    Raises:
        InvalidField: a field the account cannot have.
        UsernameTaken: the tenant already has an account with this username.
    """
    _check_fields(username=username, full_name=full_name, email=email, password=password)
    password_hash = await hash_password(password, bcrypt_rounds)
    now = utcnow()
    account = Account(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        username=username,
        full_name=full_name,
        email=email,
        phone=phone,
        password_bcrypt=password_hash,
        role=role.value,
        status=AccountStatus.ACTIVE,
        created_at=now,
    )
    try:
        async with db.write("account.create") as session:
            session.add(account)
            await session.flush()
            session.add_all(
                ConsentEvent(
                    tenant_id=tenant_id,
                    account_id=account.id,
                    purpose=purpose,
                    granted=granted,
                    source="signup",
                    request_id=actor.request_id,
                    recorded_at=now,
                )
                for purpose, granted in consents
            )
            await append_audit_events(
                session,
                [
                    actor.event(
                        tenant_id, "account.create", f"accounts/{account.id}", role=role.value
                    )
                ],
            )
    except IntegrityError:
        raise UsernameTaken("an account with this username already exists") from None
    return account.id
