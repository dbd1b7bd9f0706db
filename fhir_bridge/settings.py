"""Configuration, from keyword arguments or ``FHIR_BRIDGE_*`` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything an operator can set; each field is also the env var ``FHIR_BRIDGE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="FHIR_BRIDGE_", extra="ignore")

    database_url: str = Field(
        "sqlite:///fhir-bridge.db",
        description="SQLAlchemy URL: sqlite:///path.db (embedded default) or postgresql+psycopg://user@host/db",
    )
    host: str = "127.0.0.1"
    port: int = 8080
    fhir_path: str = Field("/fhir", description="Where the FHIR base URL sits inside the app ('' for its root)")
    public_base_url: str | None = Field(None, description="The FHIR base URL as clients see it, behind a proxy")
    default_count: int = Field(20, ge=1, description="Page size of a search without _count")
    max_count: int = Field(1000, ge=1, description="Largest page size a client may ask for")
    max_body_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="Largest request body accepted (413 beyond)")
    enforce_referential_integrity: bool = Field(
        True, description="Refuse writes that refer to missing local resources and deletes of referred-to ones"
    )
    access_log: bool = Field(False, description="Log each request line (URLs can carry search values)")
