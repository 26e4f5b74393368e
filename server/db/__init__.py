"""Persistence: typed SQLAlchemy models, engines and the unit of work."""

import logging

# Importing the package registers every table on the one metadata (Alembic, tests).
from server.db import models

# aiosqlite logs every statement with its parameters (personal data) at DEBUG; keep it
# above that whatever the root level.
logging.getLogger("aiosqlite").setLevel(logging.INFO)

__all__ = ["models"]
