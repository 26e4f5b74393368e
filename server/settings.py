"""One settings object for the whole hub, read from ``FBRHUB_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEVELOPMENT_CURSOR_SECRET = "development-only-cursor-secret"
# Production secrets: at least 32 bytes, and not a word repeated (``openssl rand -base64 48``).
MIN_SECRET_BYTES = 32
_MIN_DISTINCT_CHARACTERS = 10
# Development-only Fernet key for FBR tokens at rest (server.db.encryption); refused in production.
DEVELOPMENT_FBR_TOKEN_KEY = "ZmJyaHViLWRldmVsb3BtZW50LW9ubHkta2V5LTAwMDA="


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
    # FBR's POS (IMS) hosts by default; set to the simulator's URL in the demo and tests.
    fbr_pos_base_url: str | None = None
    # "aiohttp" (default: httpx API over aiohttp's pool) or "httpx" (httpx's own pool, which
    # is much slower at high concurrency; kept for comparison in bench/).
    fbr_http_transport: str = Field(default="aiohttp", pattern="^(aiohttp|httpx)$")
    refdata_refresh_seconds: float = Field(default=300.0, gt=0)
    fbr_ca_bundle: str | None = None
    fbr_connect_timeout_seconds: float = 3.0
    fbr_read_timeout_seconds: float = 15.0

    forwarder_enabled: bool = True
    forwarder_concurrency: int = Field(default=64, ge=1, le=1024)
    forwarder_prefetch: int | None = Field(default=None, ge=0, le=4096)
    forwarder_claim_batch: int = Field(default=200, ge=1, le=5000)
    forwarder_poll_seconds: float = 0.5
    forwarder_lease_seconds: float = 60.0
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 300.0
    # Pacing toward FBR (docs/configuration.md). Rate 0 means unlimited.
    tenant_rate_per_second: float = Field(default=0.0, ge=0)
    tenant_burst: float = Field(default=50.0, ge=1)
    tenant_concurrency: int = Field(default=0, ge=0)
    fbr_latency_target_seconds: float = Field(default=5.0, gt=0)
    breaker_failure_threshold: int = Field(default=5, ge=1)
    breaker_open_seconds: float = Field(default=1.0, gt=0)
    breaker_max_open_seconds: float = Field(default=60.0, gt=0)
    worker_id: str | None = None
    # Backpressure: invoices a stream may have read but not yet acked; invoices a tenant may
    # have waiting for FBR before ingest stops reading (0 = no limit).
    ingest_window_invoices: int = Field(default=4000, ge=1)
    tenant_max_pending: int = Field(default=0, ge=0)
    # Bytes of locally rejected invoices (excerpts and errors) a tenant may have stored; past
    # it, invalid invoices are answered but not stored (0 = no limit).
    tenant_max_rejected_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    # Stuck-work detection (alerts on the results stream, metrics, `fbrhub status`).
    stuck_after_seconds: float = Field(default=900.0, gt=0)
    monitor_interval_seconds: float = Field(default=30.0, gt=0)

    max_invoices_per_request: int = Field(default=500, ge=1, le=5000)
    results_heartbeat_seconds: float = 15.0
    results_poll_seconds: float = 1.0

    cursor_secret: SecretStr = SecretStr(DEVELOPMENT_CURSOR_SECRET)
    log_format: str = Field(default="text", pattern="^(text|json)$")
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _refuse_plain_http_to_fbr_in_production(self) -> Settings:
        for name in ("fbr_base_url", "fbr_pos_base_url"):
            url = getattr(self, name)
            if self.environment == "production" and url and not url.startswith("https://"):
                raise ValueError(f"FBRHUB_{name.upper()} must be https:// in production")
        return self

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        secret = self.cursor_secret.get_secret_value()
        if self.environment == "production" and not strong_secret(secret):
            raise ValueError(
                f"FBRHUB_CURSOR_SECRET must be a random secret of at least {MIN_SECRET_BYTES} "
                "bytes in production (e.g. openssl rand -base64 48)"
            )
        return self

    # --- Privacy, audit, access control, transport security --------------------------------
    # TLS on the gRPC port when a certificate and key are given (PEM files); mutual TLS when
    # a client CA is given too (clients without a certificate signed by it are refused).
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_client_ca_file: str | None = None
    # Fernet keys for FBR tokens at rest, comma-separated, newest first (server.db.encryption).
    fbr_token_keys: SecretStr = SecretStr(DEVELOPMENT_FBR_TOKEN_KEY)
    # Invoice records are kept this long after receipt; the law requires at least 5 years.
    retention_years: int = Field(default=6, ge=5, le=100)
    # A closed account is anonymised this many days after closing (the policy allows 90).
    account_anonymise_days: int = Field(default=30, ge=0, le=90)
    retention_sweeper_enabled: bool = True
    retention_sweep_interval_seconds: float = Field(default=3600.0, gt=0)
    audit_heartbeat_seconds: float = 15.0
    audit_poll_seconds: float = 1.0
    password_bcrypt_rounds: int = Field(default=12, ge=4, le=16)
    # Failed authentications: per client address and window before RESOURCE_EXHAUSTED
    # (0 = no limit), and how often their aggregated audit events are written.
    auth_failures_per_peer: int = Field(default=30, ge=0)
    auth_failure_window_seconds: float = Field(default=60.0, gt=0)
    auth_audit_window_seconds: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _refuse_placeholder_keys(self) -> Settings:
        keys = self.fbr_token_keys.get_secret_value()
        if self.environment == "production" and DEVELOPMENT_FBR_TOKEN_KEY in keys:
            raise ValueError("FBRHUB_FBR_TOKEN_KEYS must be set to real keys in production")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("FBRHUB_TLS_CERT_FILE and FBRHUB_TLS_KEY_FILE go together")
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise ValueError("FBRHUB_TLS_CLIENT_CA_FILE (mutual TLS) needs TLS to be on")
        return self


def strong_secret(secret: str) -> bool:
    """Whether a secret can be random enough: 32 bytes or more, not one character repeated.

    A length and a spread of characters are all that can be checked; the placeholder and
    short or repetitive values are what it catches.
    """
    return (
        secret != DEVELOPMENT_CURSOR_SECRET
        and len(secret.encode()) >= MIN_SECRET_BYTES
        and len(set(secret)) >= _MIN_DISTINCT_CHARACTERS
    )


def settings_error(exc: ValidationError) -> str:
    """A settings validation error as one readable line (no values, which may be secrets)."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        field = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"FBRHUB_{field.upper()}: {message}" if field else message)
    return "invalid settings: " + "; ".join(problems)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read once from the environment."""
    return Settings()
