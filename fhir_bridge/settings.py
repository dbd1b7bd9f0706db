"""Configuration, from keyword arguments or ``FHIR_BRIDGE_*`` environment variables.

Only the edges (api, cli, listeners) and the composition root (``services``) read ``Settings``;
``Services`` turns them into the plain values and objects the layers below take (the import
contract in pyproject.toml keeps it so).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from fhir_bridge.errors import ConfigurationError

__all__ = ["ConfigurationError", "Settings"]  # ConfigurationError lives in errors; imported from here too

MIN_KEY_LENGTH = 16


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
    dicomweb_path: str = Field("/dicomweb", description="Where the DICOMweb (STOW-RS) base sits inside the app")
    public_base_url: str | None = Field(None, description="The FHIR base URL as clients see it, behind a proxy")
    default_count: int = Field(20, ge=1, description="Page size of a search without _count")
    max_count: int = Field(1000, ge=1, description="Largest page size a client may ask for")
    max_body_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        description="Largest request body of a media type without its own limit (see request limits; 413 beyond)",
    )
    enforce_referential_integrity: bool = Field(
        True, description="Refuse writes that refer to missing local resources and deletes of referred-to ones"
    )
    access_log: bool = Field(False, description="Log each request line (URLs can carry search values)")
    bulk_workers: int = Field(
        1, ge=0, description="Bulk $export jobs this process runs at once (0: it only answers kick-off and status)"
    )
    bulk_retention_hours: float = Field(
        24.0, gt=0, description="Finished bulk export jobs and their files are deleted after this many hours"
    )

    # request limits (see api/limits.py and search/query.py) ----------------------------------------
    max_body_bytes_fhir_json: int | None = Field(
        None,
        ge=1024,
        description="Largest FHIR JSON body (application/fhir+json, application/json, JSON Patch, form-encoded "
        "_search), read into memory (default: max_body_bytes)",
    )
    max_body_bytes_multipart: int = Field(
        4 * 1024**3, ge=1024, description="Largest multipart/related body (STOW-RS; streamed and spooled to disk)"
    )
    max_body_bytes_dicom: int = Field(
        4 * 1024**3, ge=1024, description="Largest application/dicom body (one STOW-RS instance; spooled to disk)"
    )
    max_body_bytes_clinical: int = Field(
        1024**3,
        ge=1024,
        description="Largest clinical export body (CSV, TSV, NDJSON, HL7 v2; spooled to disk); a JSON export is "
        "FHIR JSON here",
    )
    body_timeout_s: float = Field(
        60.0, gt=0, description="A client that sends no byte of its request body for this long gets 408"
    )
    max_include: int = Field(1000, ge=1, description="Included resources (_include, _revinclude) per search page")
    max_chain_depth: int = Field(
        3,
        ge=1,
        le=8,
        description="Links of a chained or reverse-chained (_has) search parameter (400 beyond); SQLite runs 3 "
        "at most, PostgreSQL more",
    )
    max_search_parameters: int = Field(30, ge=1, description="Parameters of one search request (400 beyond)")
    max_or_values: int = Field(
        100,
        ge=1,
        le=400,
        description="Comma-separated values of one search parameter, _sort keys included (400 beyond)",
    )

    # access control ----------------------------------------------------------------------------
    auth: Literal["smart", "none"] = Field(
        "smart",
        description="smart: every patient-level request needs an OAuth 2.0 bearer token with SMART v2 scopes; "
        "none: no access control at all (explicit, logged as a warning at start; for loopback trials only)",
    )
    auth_issuer: str | None = Field(
        None, description="Issuer (iss) of tokens from the site's own OpenID Connect / OAuth 2.0 server"
    )
    auth_jwks_url: str | None = Field(
        None, description="That issuer's JWKS URL (default: jwks_uri of its /.well-known/openid-configuration)"
    )
    auth_audience: str | None = Field(
        None, description="Audience (aud) that external tokens must carry (default: the FHIR base URL)"
    )
    auth_token_lifetime_s: int = Field(
        300, ge=30, le=3600, description="Lifetime of access tokens issued by the built-in token endpoint"
    )

    # privacy ---------------------------------------------------------------------------------
    pseudonymise: bool = Field(True, description="Pseudonymise patient data before it is stored (the default)")
    pseudonym_key: SecretStr | None = Field(None, description="The site secret keying the pseudonyms (HMAC-SHA256)")
    pseudonym_key_file: Path | None = Field(None, description="A file holding the site secret (instead of the key)")
    birth_date_precision: Literal["year", "year-month"] = Field(
        "year", description="How much of a birth date is kept when pseudonymising"
    )
    remap_uids: bool = Field(
        False, description="Replace Study/Series/SOP Instance UIDs by 2.25 UIDs derived from the site secret"
    )
    keep_descriptions: bool = Field(
        False,
        description="Keep free-text descriptors (study/series descriptions, procedure and reason codes) when "
        "pseudonymising; the PS3.15 Basic Profile removes them",
    )

    # DICOM mapping ---------------------------------------------------------------------------
    wado_rs_base_url: str | None = Field(
        None, description="The hospital's WADO-RS base URL, published as the studies' Endpoint"
    )
    patient_identifier_system: str = Field(
        "urn:fhir-bridge:patient-id",
        min_length=1,
        description="Patient.identifier system for PatientIDs that come without an IssuerOfPatientID",
    )
    dicom_time_zone: str | None = Field(
        None,
        description="IANA time zone of DICOM dates and times without TimezoneOffsetFromUTC (else their date only "
        "is kept)",
    )

    # clinical data -----------------------------------------------------------------------------
    mappings_dir: Path | None = Field(
        None, description="Folder of the site's clinical mapping files, found before the shipped ones in mappings/"
    )

    # catalogue (DCAT-AP) ---------------------------------------------------------------------
    catalogue_file: Path | None = Field(
        None, description="JSON file with the catalogue's descriptive fields (the variables below win over it)"
    )
    catalogue_title: str | None = Field(None, description="Dataset title (dct:title)")
    catalogue_description: str | None = Field(None, description="Dataset description (dct:description)")
    catalogue_publisher_name: str | None = Field(None, description="Publisher's name (foaf:name)")
    catalogue_publisher_url: str | None = Field(None, description="Publisher's home page")
    catalogue_contact_email: str | None = Field(None, description="Contact e-mail of the dataset and publisher")
    catalogue_dataset_id: str | None = Field(None, description="Dataset identifier (dct:identifier), ideally an IRI")
    catalogue_version: str | None = Field(None, description="Dataset version (default: date of the last write)")
    catalogue_keywords: list[str] | None = Field(None, description='Keywords, as a JSON list: ["lung", "CT"]')
    catalogue_access_rights: Literal["PUBLIC", "RESTRICTED", "NON_PUBLIC"] | None = Field(
        None, description="EU access-right of the dataset (default NON_PUBLIC)"
    )
    catalogue_min_count: int = Field(
        10, ge=1, description="Smallest number of individuals a published count or value may rest on"
    )
    catalogue_cache_seconds: float = Field(
        60.0, ge=0, description="How long a description may be reused while the store changes"
    )

    def pseudonym_secret(self) -> bytes | None:
        """The configured site secret, from the key or the key file; None when neither is set."""
        if self.pseudonym_key is not None and self.pseudonym_key_file is not None:
            raise ConfigurationError("set FHIR_BRIDGE_PSEUDONYM_KEY or FHIR_BRIDGE_PSEUDONYM_KEY_FILE, not both")
        if self.pseudonym_key_file is not None:
            try:
                text = self.pseudonym_key_file.read_text(encoding="utf-8").strip()
            except OSError as error:
                raise ConfigurationError(
                    f"cannot read the pseudonym key file {self.pseudonym_key_file}: {error.strerror}"
                ) from None
        elif self.pseudonym_key is not None:
            text = self.pseudonym_key.get_secret_value().strip()
        else:
            return None
        if len(text) < MIN_KEY_LENGTH:
            raise ConfigurationError(
                f"the pseudonym key is shorter than {MIN_KEY_LENGTH} characters: "
                "create a strong one with `fhir-bridge keygen pseudonym.key`"
            )
        return text.encode("utf-8")
