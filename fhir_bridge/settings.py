"""Configuration: keyword arguments (the CLI's flags) over ``FHIR_BRIDGE_*`` environment variables over a
TOML config file (``FHIR_BRIDGE_CONFIG`` or ``Settings(config_file=...)``) over the defaults.

A mistake (a value of the wrong kind, an unknown setting in any of these places) raises
``ConfigurationError`` with one line per problem naming the setting as it was given (``--flag``,
``FHIR_BRIDGE_NAME``, ``name`` in the file), the bad value and what is accepted.

Only the edges (api, cli, listeners) and the composition root (``services``) read ``Settings``;
``Services`` turns them into the plain values and objects the layers below take (the import
contract in pyproject.toml keeps it so).
"""

from __future__ import annotations

import difflib
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from fhir_bridge.errors import ConfigurationError

__all__ = ["ConfigurationError", "Settings"]  # ConfigurationError lives in errors; imported from here too

MIN_KEY_LENGTH = 16
ENV_PREFIX = "FHIR_BRIDGE_"
CONFIG_VARIABLE = "FHIR_BRIDGE_CONFIG"  # the config file's path
# FHIR_BRIDGE_* variables that are no settings: the config file's path and the test suite's own switches.
NOT_SETTINGS = frozenset(
    {CONFIG_VARIABLE, "FHIR_BRIDGE_TEST_POSTGRES_URL", "FHIR_BRIDGE_REQUIRE_POSTGRES", "FHIR_BRIDGE_FUZZ_EXAMPLES"}
)
SECRET_MASK = "********"

_file_values: ContextVar[dict[str, Any]] = ContextVar("fhir_bridge_config_file_values", default={})  # noqa: B039


class Settings(BaseSettings):
    """Everything an operator can set; each field is also the env var ``FHIR_BRIDGE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")
    _config_file: Path | None = PrivateAttr(None)
    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    def __init__(self, config_file: str | Path | None = None, **values: Any) -> None:
        """``values`` (the flags) over the environment over ``config_file`` (else ``FHIR_BRIDGE_CONFIG``)."""
        named = config_file if config_file is not None else os.environ.get(CONFIG_VARIABLE) or None
        path = Path(named) if named is not None else None
        from_file = read_config_file(path) if path is not None else {}
        environment = _setting_variables(os.environ)
        token = _file_values.set(from_file)
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise ConfigurationError(_describe(error, values, environment, path)) from None
        finally:
            _file_values.reset(token)
        self._config_file = path
        self._sources = {
            name: "argument"
            if name in values
            else f"environment {ENV_PREFIX}{name.upper()}"
            if name in environment
            else f"file {path}"
            if name in from_file
            else "default"
            for name in type(self).model_fields
        }

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _ConfigFileSource(settings_cls)

    @property
    def config_file(self) -> Path | None:
        """The config file these settings were read from, if any."""
        return self._config_file

    def source_of(self, name: str) -> str:
        """Where a setting's value came from: ``argument``, ``environment VAR``, ``file PATH`` or ``default``."""
        return self._sources.get(name, "argument")

    def effective(self) -> dict[str, Any]:
        """Every setting's value as plain data (TOML/JSON-ready), secrets and database passwords masked."""
        shown: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = SECRET_MASK
            elif isinstance(value, Path):
                value = str(value)
            elif name == "database_url":
                value = mask_url(value)
            shown[name] = value
        return shown

    database_url: str = Field(
        "sqlite:///fhir-bridge.db",
        description="The store's SQLAlchemy URL: `sqlite:///path.db` (embedded, a file; the audit trail goes to "
        "`path.audit.db` beside it) or `postgresql+psycopg://user@host:5432/db` (one database shared by any number of "
        "workers)",
    )
    host: str = Field("127.0.0.1", description="Address `fhir-bridge serve` listens on (`0.0.0.0`: every interface)")
    port: int = Field(8080, description="TCP port `fhir-bridge serve` listens on")
    fhir_path: str = Field("/fhir", description="Where the FHIR base URL sits inside the app (``: its root)")
    dicomweb_path: str = Field(
        "/dicomweb", description="Where the DICOMweb base sits inside the app (STOW-RS: `POST <path>/studies`)"
    )
    public_base_url: str | None = Field(
        None,
        description="The FHIR base URL as clients see it (e.g. `https://fhir.example.org/fhir`): used in links, "
        "Location headers, the catalogue, SMART discovery and the token audience. Required when access control is "
        "on and `host` is not loopback; unset, URLs name the address the server is bound to (access control on) or "
        "the request's Host header (access control off), never the Host header while tokens are checked",
    )
    default_count: int = Field(20, ge=1, description="Page size of a search without `_count`")
    max_count: int = Field(
        1000, ge=1, description="Largest page size: a larger `_count` is served as this (the `self` link says so)"
    )
    max_body_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        description="Largest request body of a media type without a limit of its own (the `max_body_bytes_*` "
        "settings); 413 beyond",
    )
    enforce_referential_integrity: bool = Field(
        True,
        description="Refuse writes that refer to missing local resources (422) and deletes of resources that "
        "current ones refer to (409)",
    )
    upgrade_schema: bool = Field(
        False,
        description="Upgrade an older database schema at start-up (else the start is refused with the command to run: "
        "`fhir-bridge db upgrade`, best after `fhir-bridge db backup`); an empty database is always created at the "
        "newest schema",
    )
    api_docs: bool | None = Field(
        None,
        description="Serve the API's documentation pages `/docs`, `/redoc` and `/openapi.json` (public pages). "
        "Default: on when access control is off, off when it is on",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses of reverse proxies whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed, as a "
        'JSON list (`["127.0.0.1"]`, `["10.0.0.0/8"]`; uvicorn\'s `forwarded_allow_ips`). Empty (the default): '
        "those headers are ignored, so no caller can choose the address the audit trail and the token endpoint's "
        "lockout record",
    )
    access_log: bool = Field(
        False, description="Log each request line (off by default: URLs carry search values, which can be personal)"
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Least severe log lines written (fhir-bridge's and uvicorn's alike), to stderr"
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description="`text`: `time level logger [request id]: message`; `json`: one JSON object per line with "
        "`time`, `level`, `logger`, `message` and `request_id` (the `X-Request-Id` of the response)",
    )
    metrics: Literal["off", "open", "token"] = Field(
        "off",
        description="Prometheus metrics at `/metrics`: `off` (no such route), `open` (to anyone who reaches it: "
        "counts and timings, no patient data), `token` (a bearer token with the scope `system/Metrics.r`)",
    )
    bulk_workers: int = Field(
        1,
        ge=0,
        description="Bulk $export jobs this process runs at once, in background threads (0: it only answers "
        "kick-off, status and file requests; another worker of the same database runs the jobs)",
    )
    bulk_retention_hours: float = Field(
        24.0,
        gt=0,
        description="Hours after which finished bulk export jobs and their files are deleted (a DELETE of the "
        "status URL deletes them at once)",
    )

    # request limits (see api/limits.py and search/query.py) ----------------------------------------
    max_body_bytes_fhir_json: int | None = Field(
        None,
        ge=1024,
        description="Largest FHIR JSON body (application/fhir+json, application/json, JSON Patch, form-encoded "
        "`_search`), read into memory; 413 beyond (default: the value of `max_body_bytes`)",
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
        60.0,
        gt=0,
        description="Seconds a client may send no byte of its request body before it gets 408 and the connection "
        "is closed",
    )
    max_include: int = Field(
        1000,
        ge=1,
        description="Included resources (`_include`, `_revinclude`) per search page; beyond, they are left out with a "
        "warning in the Bundle",
    )
    max_chain_depth: int = Field(
        3,
        ge=1,
        le=8,
        description="Links of a chained or reverse-chained (`_has`) search parameter (400 beyond); SQLite runs 3 "
        "at most, PostgreSQL more",
    )
    max_search_parameters: int = Field(30, ge=1, description="Parameters of one search request (400 beyond)")
    max_or_values: int = Field(
        100,
        ge=1,
        le=400,
        description="Comma-separated values of one search parameter, `_sort` keys included (400 beyond)",
    )

    # access control ----------------------------------------------------------------------------
    auth: Literal["smart", "none"] = Field(
        "smart",
        description="`smart`: every patient-level request needs an OAuth 2.0 bearer token with SMART v2 scopes; "
        "`none`: no access control at all (explicit, logged as a warning at start; for loopback trials only)",
    )
    auth_issuer: str | None = Field(
        None,
        description="Issuer (iss) of the site's own OpenID Connect / OAuth 2.0 server, whose tokens are accepted "
        "besides those of the built-in token endpoint",
    )
    auth_jwks_url: str | None = Field(
        None, description="That issuer's JWKS URL (default: `jwks_uri` of its `/.well-known/openid-configuration`)"
    )
    auth_audience: str | None = Field(
        None,
        description="Audience (aud) that external tokens must carry (default: the FHIR base URL, `public_base_url`)",
    )
    token_key_file: Path | None = Field(
        None,
        description="File of the keys that sign the built-in token endpoint's access tokens (JSON, mode 0600; made "
        "at first start, outside the database so that a copy of it mints no token; `fhir-bridge keys rotate-signing` "
        "rotates them). Default: `<database>.token-keys.json` beside a SQLite store, `fhir-bridge-token-keys.json` in "
        "the working directory with PostgreSQL. Every worker of one database must use the same file",
    )
    auth_token_lifetime_s: int = Field(
        300, ge=30, le=3600, description="Lifetime in seconds of access tokens issued by the built-in token endpoint"
    )
    ui_client_id: str | None = Field(
        None,
        description="Client id of the web UI (`/ui`) at the site's OpenID Connect server (`auth_issuer`): with "
        "access control on, the UI logs users in there (authorization code + PKCE, SMART App Launch standalone) "
        "and reads every page with the user's token; unset, the UI refuses to log anyone in",
    )
    ui_scopes: str = Field(
        "openid fhirUser user/*.rs user/AuditEvent.rs",
        description="Scopes the web UI asks the OpenID Connect server for; the token it gets (the user's scopes) "
        "decides what the pages show",
    )

    # audit trail (see docs/access-control.md) --------------------------------------------------
    audit_retention_days: float | None = Field(
        None,
        gt=0,
        description="Days audit records are kept: `fhir-bridge audit purge` deletes older ones (run it daily, "
        "e.g. from cron); unset: records are kept until purged with `--older-than-days`",
    )
    audit_key_file: Path | None = Field(
        None,
        description="A file holding the key of the audit trail's hash chain (16 characters or more; "
        "`fhir-bridge keygen FILE` makes one). Default: derived from the site secret. Every worker needs the same key",
    )

    # privacy ---------------------------------------------------------------------------------
    pseudonymise: bool = Field(
        True,
        description="Pseudonymise patient data before it is stored, on every push path (needs the site secret; "
        "`false` stores identifiers and dates as sent; DICOM patient names are never read either way)",
    )
    pseudonym_key: SecretStr | None = Field(
        None,
        description="The site secret (16 characters or more) keying every pseudonym and hash (HMAC-SHA256); "
        "required while pseudonymising. Changing it changes every pseudonym",
    )
    pseudonym_key_file: Path | None = Field(
        None,
        description="A file holding the site secret, instead of `pseudonym_key` (`fhir-bridge keygen FILE` makes one; "
        "an existing file is kept)",
    )
    birth_date_precision: Literal["year", "year-month"] = Field(
        "year", description="How much of a birth date is kept when pseudonymising (DICOM and clinical data alike)"
    )
    remap_uids: bool = Field(
        False,
        description="Replace Study, Series and SOP Instance UIDs by `2.25.` UIDs derived from the site secret "
        "(consistently: the same UID always gives the same new one)",
    )
    keep_descriptions: bool = Field(
        False,
        description="Keep free-text descriptors (study/series descriptions, procedure and reason codes) when "
        "pseudonymising; the PS3.15 Basic Profile removes them",
    )
    refuse_identified_patients: bool = Field(
        False,
        description="Refuse REST writes (POST, PUT, PATCH, transaction and batch on the FHIR API) of a Patient that "
        "still carries direct identifiers (name, telecom, address, photo, contact, an identifier that is no keyed "
        "pseudonym), with an OperationOutcome naming them; identifiable FHIR goes through POST /ingest/fhir",
    )

    # DICOM mapping ---------------------------------------------------------------------------
    wado_rs_base_url: str | None = Field(
        None,
        description="The hospital's WADO-RS base URL, published as the Endpoint every ImagingStudy and series "
        "refers to, so harvesters know where to ask for the images",
    )
    patient_identifier_system: str = Field(
        "urn:fhir-bridge:patient-id",
        min_length=1,
        description="Patient.identifier system of patient ids given without an issuer (DICOM IssuerOfPatientID, "
        "a clinical mapping's `patient.system` or `patient.issuer`); a DICOM issuer that is no OID or URI becomes "
        "`<this system>:<issuer>`",
    )
    dicom_time_zone: str | None = Field(
        None,
        description="IANA time zone (e.g. `Europe/Rome`) of DICOM times without TimezoneOffsetFromUTC and of "
        "clinical date-times without an offset when the mapping names none (unset: only their date is kept)",
    )

    # DICOM DIMSE listener (C-STORE, C-ECHO; see docs/dicom-dimse.md) ------------------------------
    dimse_port: int | None = Field(
        None, ge=1, le=65535, description="TCP port of the DICOM Storage SCP (C-STORE, C-ECHO); unset: no listener"
    )
    dimse_host: str | None = Field(None, description="Address the DICOM listener binds (default: the host setting)")
    dimse_ae_title: str = Field(
        "FHIR_BRIDGE", min_length=1, max_length=16, description="AE title of the DICOM listener (called AE title)"
    )
    dimse_allowed_callers: list[str] = Field(
        default_factory=list,
        description='Calling AE titles allowed to associate, as a JSON list: "PACS" (any address), "PACS@10.1.2.3" '
        '(only from that address or host name), "*@10.1.2.3" (any AE title from there); others are rejected '
        "(calling AE title not recognised). Empty: every association is rejected",
    )
    dimse_spool_dir: Path = Field(
        Path("dimse-spool"),
        description="Folder where received instances are made durable before they are acknowledged and then "
        "written to the store in batches (keep it on a local disk; leftovers are committed at start)",
    )
    dimse_batch_size: int = Field(500, ge=1, description="Instances of one association written in one transaction")
    dimse_batch_ms: int = Field(
        2000, ge=10, description="Longest time a received instance waits before its batch is written to the store"
    )
    dimse_max_spool_bytes: int = Field(
        8 * 1024**3,
        ge=1024 * 1024,
        description="Instances waiting in the spool beyond this many bytes (store down or slow) are refused "
        "with A700 Out of Resources, which senders retry",
    )
    dimse_max_associations: int = Field(10, ge=1, description="Associations the DICOM listener serves at once")
    dimse_timeout_s: float = Field(
        60.0, gt=0, description="A DICOM peer silent for this long (association, message or network) is dropped"
    )

    # HL7 v2 MLLP listener (see docs/hl7-mllp.md) ---------------------------------------------------
    mllp_port: int | None = Field(
        None, ge=1, le=65535, description="TCP port of the HL7 v2 MLLP listener; unset: no listener"
    )
    mllp_host: str | None = Field(None, description="Address the MLLP listener binds (default: the host setting)")
    mllp_allowed_senders: list[str] = Field(
        default_factory=list,
        description='Sending facilities (MSH-4) allowed to send, as a JSON list: "HOSP" (from any address), '
        '"HOSP@10.1.2.3" (only from that address or host name), "*@10.1.2.3" (any facility from there); a '
        "connection from elsewhere is closed, a message of another facility is rejected (AR). Empty: nothing is "
        "accepted",
    )
    mllp_mappings: dict[str, str] = Field(
        default_factory=lambda: {"ORU^R01": "radiology-report-hl7v2"},
        description='The clinical mapping of each message type (MSH-9), as a JSON object: "ORU^R01" (type and '
        'event), "ORU" (any event) or "*" (any message), the most specific wins; a type without a mapping is '
        "rejected (AR, unsupported message type)",
    )
    mllp_max_message_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="Largest MLLP frame accepted; a larger message is rejected (AR)"
    )
    mllp_max_connections: int = Field(20, ge=1, description="Connections the MLLP listener serves at once")
    mllp_timeout_s: float = Field(
        60.0, gt=0, description="An MLLP connection silent for this long (idle or mid-message) is closed"
    )

    # clinical data -----------------------------------------------------------------------------
    mappings_dir: Path | None = Field(
        None, description="Folder of the site's clinical mapping files, found before the shipped ones in `mappings/`"
    )

    # catalogue (DCAT-AP) ---------------------------------------------------------------------
    catalogue_file: Path | None = Field(
        None, description="JSON file with the catalogue's descriptive fields (the variables below win over it)"
    )
    catalogue_title: str | None = Field(
        None, description="Dataset title (dct:title; default: fhir-bridge imaging dataset)"
    )
    catalogue_description: str | None = Field(None, description="Dataset description (dct:description)")
    catalogue_publisher_name: str | None = Field(
        None, description="Publisher's name (foaf:name; default: fhir-bridge node)"
    )
    catalogue_publisher_url: str | None = Field(None, description="Publisher's home page (foaf:homepage)")
    catalogue_contact_email: str | None = Field(
        None, description="Contact e-mail of the dataset and its publisher (dcat:contactPoint)"
    )
    catalogue_dataset_id: str | None = Field(
        None, description="Dataset identifier (dct:identifier); an absolute IRI also names the dataset"
    )
    catalogue_version: str | None = Field(
        None, description="Dataset version (dcat:version; default: the date of the last write, YYYY.MM.DD)"
    )
    catalogue_keywords: list[str] | None = Field(
        None, description='Keywords (dcat:keyword), as a JSON list: `["lung", "CT"]`'
    )
    catalogue_access_rights: Literal["PUBLIC", "RESTRICTED", "NON_PUBLIC"] | None = Field(
        None, description="EU access right of the dataset (dct:accessRights; default `NON_PUBLIC`)"
    )
    catalogue_min_count: int = Field(
        10,
        ge=1,
        description="Smallest number of individuals a published count, value or age bound may rest on (smaller "
        "ones are left out)",
    )
    catalogue_cache_seconds: float = Field(
        60.0, ge=0, description="Seconds a catalogue description may be reused while the store changes"
    )

    # EUCAIM federated search and CDM export (fhir_bridge/eucaim; the dataset is the catalogue's) ----------
    eucaim_epsilon: float | None = Field(
        None,
        gt=0,
        description="Laplace noise on EUCAIM search counts: privacy budget per count (off when unset; the noise "
        "is seeded with the site secret and the question, so a repeated question gets the same answer)",
    )
    eucaim_beacon_id: str | None = Field(
        None, description="Beacon id, in reverse domain name notation (default: from the public base URL's host)"
    )
    eucaim_environment: Literal["prod", "test", "dev", "staging"] = Field(
        "prod", description="What the Beacon says it is: production, test, development or staging"
    )

    def audit_chain_secret(self) -> bytes | None:
        """The secret keying the audit trail's hash chain: the audit key file's, else the site secret."""
        if self.audit_key_file is None:
            return self.pseudonym_secret()
        try:
            text = self.audit_key_file.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise ConfigurationError(
                f"cannot read the audit key file {self.audit_key_file}: {error.strerror}"
            ) from None
        if len(text) < MIN_KEY_LENGTH:
            raise ConfigurationError(
                f"the audit key is shorter than {MIN_KEY_LENGTH} characters: create one with `fhir-bridge keygen FILE`"
            )
        return text.encode("utf-8")

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


class _ConfigFileSource(PydanticBaseSettingsSource):
    """The config file's values (read, flattened and checked by ``Settings.__init__``)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return _file_values.get().get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_file_values.get())


def read_config_file(path: Path) -> dict[str, Any]:
    """The settings of a TOML config file: ``name = value`` lines, or tables (``[catalogue] title = ...``
    is ``catalogue_title``). An unreadable file, a syntax error or an unknown key is a ConfigurationError."""
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigurationError(f"config file {path} (from --config or {CONFIG_VARIABLE}) does not exist") from None
    except OSError as error:
        raise ConfigurationError(f"cannot read the config file {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigurationError(f"config file {path} is not valid TOML: {error}") from None
    flat: dict[str, Any] = {}

    def flatten(table: Mapping[str, Any], prefix: str) -> None:
        for key, value in table.items():
            name = f"{prefix}{key}".replace("-", "_").lower()
            if isinstance(value, dict) and name not in Settings.model_fields:
                flatten(value, f"{name}_")
            else:
                flat[name] = value

    flatten(document, "")
    unknown = [name for name in flat if name not in Settings.model_fields]
    if unknown:
        raise ConfigurationError(
            "\n".join(f"config file {path}: unknown setting {name!r}{_did_you_mean(name)}" for name in unknown)
        )
    for name, value in flat.items():  # a relative file or folder is the config file's neighbour, wherever run from
        annotation = Settings.model_fields[name].annotation
        if isinstance(value, str) and (annotation is Path or Path in typing.get_args(annotation)):
            given = Path(value).expanduser()
            flat[name] = str(given if given.is_absolute() else path.parent / given)
    return flat


def _setting_variables(environment: Mapping[str, str]) -> set[str]:
    """The settings set in the environment; an unknown ``FHIR_BRIDGE_*`` variable is a ConfigurationError."""
    found: set[str] = set()
    unknown: list[str] = []
    for variable in environment:
        upper = variable.upper()
        if not upper.startswith(ENV_PREFIX) or upper in NOT_SETTINGS:
            continue
        name = upper.removeprefix(ENV_PREFIX).lower()
        if name in Settings.model_fields:
            found.add(name)
        else:
            unknown.append(variable)
    if unknown:
        raise ConfigurationError(
            "\n".join(
                f"unknown environment variable {variable}"
                f"{_did_you_mean(variable.upper().removeprefix(ENV_PREFIX), ENV_PREFIX)}: every "
                f"{ENV_PREFIX}* variable must be a setting (docs/configuration.md)"
                for variable in sorted(unknown)
            )
        )
    return found


def _did_you_mean(name: str, prefix: str = "") -> str:
    close = difflib.get_close_matches(name.lower(), list(Settings.model_fields), n=1)
    if not close:
        return ""
    return f" (did you mean {prefix}{close[0].upper()}?)" if prefix else f" (did you mean {close[0]!r}?)"


def _describe(error: ValidationError, values: dict[str, Any], environment: set[str], path: Path | None) -> str:
    """One line per problem: the setting as it was given, the bad value, what is accepted."""
    lines = []
    for problem in error.errors():
        name = str(problem["loc"][0]) if problem["loc"] else ""
        field = Settings.model_fields.get(name)
        if field is None:
            lines.append(f"unknown setting {name!r}{_did_you_mean(name)}")
            continue
        secret = SecretStr in typing.get_args(field.annotation) or field.annotation is SecretStr
        if name in values:
            given = f"{name}={SECRET_MASK if secret else repr(values[name])}"
        elif name in environment:
            variable = f"{ENV_PREFIX}{name.upper()}"
            given = f"{variable}={SECRET_MASK if secret else repr(os.environ.get(variable, ''))}"
        else:
            given = f"{name} = {SECRET_MASK if secret else repr(problem.get('input'))} in the config file {path}"
        reason = str(problem.get("msg", "")).removeprefix("Value error, ")
        because = f" ({reason})" if problem.get("type") == "value_error" else ""
        lines.append(f"{given} is not accepted{because}: expected {accepted_values(field)}")
    return "\n".join(lines)


def mask_url(url: str) -> str:
    """A database URL without its password (``user:***@host``)."""
    scheme, separator, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not separator or not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.split(':')[0]}:***@{host}"


def accepted_values(field: FieldInfo) -> str:
    """What a setting takes: its type, or its choices, with the bounds the field enforces."""
    kind = _kind(field.annotation)
    bounds = []
    for constraint in field.metadata:
        for attribute, symbol in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            bound = getattr(constraint, attribute, None)
            if bound is not None:
                bounds.append(f"{symbol} {bound}")
        if getattr(constraint, "min_length", None):
            kind += " (not empty)"
    return " ".join([kind, ", ".join(bounds)]).strip()


def _kind(annotation: Any) -> str:
    arguments = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType) and len(arguments) == 1:
        return _kind(arguments[0])
    if origin is Literal:
        return " or ".join(f"`{choice}`" for choice in arguments)
    if origin is list:
        return f"JSON list of {_kind(arguments[0])}"
    names = {
        bool: "`true` or `false`",
        int: "integer",
        float: "number",
        str: "text",
        Path: "path",
        SecretStr: "text (secret)",
    }
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))
