"""One settings object for the whole hub, read from ``FBRHUB_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEVELOPMENT_CURSOR_SECRET = "development-only-cursor-secret"


class Settings(BaseSettings):
    """Hub configuration. Every field can be set as ``FBRHUB_<FIELD_NAME>``.

    Attributes:
        environment: ``development`` or ``production``; production refuses placeholder secrets.
        database_url: SQLAlchemy async URL. SQLite (embedded) by default; PostgreSQL in
            production, e.g. ``postgresql+psycopg://user@host/db``.
        grpc_listen: address the gRPC server binds.
        fbr_base_url: FBR gateway (the simulator's URL in the demo and tests).
        cursor_secret: HMAC key that signs page tokens and stream cursors.
    """

    model_config = SettingsConfigDict(env_prefix="FBRHUB_", env_ignore_empty=True, extra="ignore")

    environment: str = Field(default="development", pattern="^(development|production)$")
    database_url: str = "sqlite+aiosqlite:///./var/fbrhub.db"
    grpc_listen: str = "127.0.0.1:50051"
    grpc_max_message_bytes: int = 8 * 1024 * 1024
    shutdown_grace_seconds: float = 10.0

    fbr_base_url: str = "https://gw.fbr.gov.pk"
    fbr_ca_bundle: str | None = None
    fbr_connect_timeout_seconds: float = 3.0
    fbr_read_timeout_seconds: float = 15.0

    forwarder_enabled: bool = True
    forwarder_concurrency: int = Field(default=64, ge=1, le=1024)
    forwarder_claim_batch: int = Field(default=200, ge=1, le=5000)
    forwarder_poll_seconds: float = 0.5
    forwarder_lease_seconds: float = 60.0
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 300.0

    max_invoices_per_request: int = Field(default=500, ge=1, le=5000)
    results_heartbeat_seconds: float = 15.0
    results_poll_seconds: float = 1.0

    cursor_secret: SecretStr = SecretStr(DEVELOPMENT_CURSOR_SECRET)
    log_format: str = Field(default="text", pattern="^(text|json)$")
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        if (
            self.environment == "production"
            and self.cursor_secret.get_secret_value() == DEVELOPMENT_CURSOR_SECRET
        ):
            raise ValueError("FBRHUB_CURSOR_SECRET must be set to a real secret in production")
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read once from the environment."""
    return Settings()
