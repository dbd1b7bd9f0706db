"""The composition root: the one place that knows how fhir-bridge's services are put together.

``Services.from_settings(settings)`` assembles the store, the FHIR interactions, the DICOM and
clinical ingests, the mapping registry, the audit log, bulk export, the catalogue and the token
issuer. The HTTP app (``api.app.create_app``), every CLI command and the listeners take a
``Services`` and use what they need; none of them assembles a service itself.

Each service is built on first use, so a command pays only for what it touches: ``clients add``
opens the database but needs no pseudonym key; ``serve`` touches everything at start-up, so a
configuration mistake stops it before the first request rather than at the first push.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Callable
from functools import cached_property, partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, SQLAlchemyError

from fhir_bridge.audit.chain import ChainKey
from fhir_bridge.audit.log import AUDIT_TABLES, AuditLog
from fhir_bridge.bulk.model import Limits as BulkLimits
from fhir_bridge.bulk.service import BulkExports
from fhir_bridge.catalogue.config import CatalogueConfig, load_catalogue_config
from fhir_bridge.catalogue.service import Catalogue
from fhir_bridge.errors import ConfigurationError
from fhir_bridge.eucaim.federated import Dataset, FederatedSearch
from fhir_bridge.ingest.clinical import ClinicalIngest
from fhir_bridge.ingest.dicom import DicomIngest
from fhir_bridge.ingest.fhir import FhirIngest
from fhir_bridge.interactions.cursors import CursorSigner
from fhir_bridge.interactions.erasure import Erasure
from fhir_bridge.interactions.service import FhirInteractions, Limits
from fhir_bridge.interactions.writes import refuse_direct_identifiers
from fhir_bridge.mapping.clinical import MappingRegistry
from fhir_bridge.mapping.dicom import DicomMapper, MappingConfig
from fhir_bridge.privacy.profile import AttributePolicy
from fhir_bridge.privacy.pseudonymiser import Pseudonymiser
from fhir_bridge.search.index import index_entries
from fhir_bridge.security.clients import BuiltinIssuer, ClientRegistry
from fhir_bridge.security.signing import SigningKeyError, SigningKeys, key_ids
from fhir_bridge.security.tokens import ExternalIssuer, TokenVerifier
from fhir_bridge.settings import Settings
from fhir_bridge.store.backup import PSEUDONYM_KEY, backup, restore
from fhir_bridge.store.copy import copy_store
from fhir_bridge.store.database import (
    Engines,
    create_engines,
    discard_info,
    engines_beside,
    ensure_info,
    file_beside,
    find_info,
    pool_status,
    unreachable_database,
)
from fhir_bridge.store.migration import SchemaState, prepare_schema, schema_state, upgrade_schema
from fhir_bridge.store.schema import STORE_METADATA
from fhir_bridge.store.store import Store
from fhir_bridge.version import package_version

# configuration checks first: a mistake stops the start before the database is touched
_STARTED = (
    "privacy_policy",
    "time_zone",
    "catalogue_config",
    "dicom_ingest",
    "clinical_ingest",
    "fhir_ingest",
    "mappings",
    "audit_log",
    "catalogue",
    "bulk_exports",
    "federated_search",
    "token_verifier",
)
# Where versions before the key file kept the token signing key: the store's info table (moved out at start).
LEGACY_SIGNING_KEY = "token_signing_key"
DEFAULT_TOKEN_KEY_FILE = "fhir-bridge-token-keys.json"
# Secrets the store's database holds (the keys that sign paging cursors and the web UI's session
# cookies; the token signing key of stores from before the key file): left out of backups, named by
# fingerprint; a restored store makes new ones on first start.
_SECRET_INFO = ("cursor_secret", "ui_session_secret", LEGACY_SIGNING_KEY)
# Settings field -> CatalogueConfig field, for the catalogue's values that also have an environment variable.
_CATALOGUE_SETTINGS = {
    "catalogue_title": "title",
    "catalogue_description": "description",
    "catalogue_publisher_name": "publisher_name",
    "catalogue_publisher_url": "publisher_url",
    "catalogue_contact_email": "contact_email",
    "catalogue_dataset_id": "dataset_id",
    "catalogue_version": "version",
    "catalogue_keywords": "keywords",
    "catalogue_access_rights": "access_rights",
}


class Services:
    """fhir-bridge's services over one database, built from one ``Settings``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._closers: list[Callable[[], None]] = []

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Services:
        return cls(settings or Settings())

    def start(self) -> Services:
        """Build every service now (the long-running edges call this: mistakes surface at start-up)."""
        if self.settings.auth != "none":
            _check_public_base_url(self.settings)  # before the database is touched
        for name in _STARTED:
            getattr(self, name)
        return self

    def close(self) -> None:
        """Stop background work and release the database connections."""
        for close in reversed(self._closers):
            close()
        self._closers.clear()

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # privacy -----------------------------------------------------------------------------------------
    @cached_property
    def pseudonymiser(self) -> Pseudonymiser | None:
        secret = self.settings.pseudonym_secret()
        return Pseudonymiser(secret, self.settings.birth_date_precision) if secret else None

    @cached_property
    def privacy_policy(self) -> AttributePolicy:
        """The site's privacy policy; refuses (ConfigurationError) a configuration unsafe to run."""
        settings = self.settings
        if settings.pseudonymise and self.pseudonymiser is None:
            raise ConfigurationError(
                "pseudonymisation is on (the default) but no site secret is configured: set "
                "FHIR_BRIDGE_PSEUDONYM_KEY or FHIR_BRIDGE_PSEUDONYM_KEY_FILE (create a key file with "
                "`fhir-bridge keygen pseudonym.key`), or turn pseudonymisation off with FHIR_BRIDGE_PSEUDONYMISE=false"
            )
        if settings.remap_uids and self.pseudonymiser is None:
            raise ConfigurationError("FHIR_BRIDGE_REMAP_UIDS derives new UIDs from the site secret: configure the key")
        return AttributePolicy(
            self.pseudonymiser,
            pseudonymise=settings.pseudonymise,
            remap_uids=settings.remap_uids,
            keep_descriptions=settings.keep_descriptions,
        )

    @cached_property
    def time_zone(self) -> ZoneInfo | None:
        """The zone of DICOM and clinical times that carry no offset (None: keep their date only)."""
        name = self.settings.dicom_time_zone
        if not name:
            return None
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigurationError(f"FHIR_BRIDGE_DICOM_TIME_ZONE {name!r} is no IANA zone") from None

    @cached_property
    def audit_search_hash(self) -> Callable[[str], str] | None:
        """Keyed hash of personal search values in the audit trail (None without a site secret)."""
        return partial(self.pseudonymiser.keyed_hash, "audit-search") if self.pseudonymiser else None

    # operations --------------------------------------------------------------------------------------
    def readiness(self) -> dict[str, str]:
        """What keeps the service from serving, by check (``database``, ``schema``, ``pseudonym_key``); empty: ready."""
        problems: dict[str, str] = {}
        try:
            state = schema_state(self.database)
        except SQLAlchemyError as error:  # the type only: a driver's message can quote a query
            problems["database"] = f"unreachable ({type(error).__name__})"
        else:
            if not state.current:
                problems["schema"] = state.describe()
        if self.settings.pseudonymise and self.pseudonymiser is None:
            problems["pseudonym_key"] = "not loaded"
        return problems

    def pool_status(self) -> dict[tuple[str, str], int]:
        return pool_status(self.engines)

    # storage -----------------------------------------------------------------------------------------
    @cached_property
    def database(self) -> Engines:
        """The database as it is, its schema unchecked: what the ``fhir-bridge db`` commands work on."""
        url = self.settings.database_url
        try:
            engines = create_engines(url)
        except OSError as error:  # the SQLite file's folder cannot be made
            raise ConfigurationError(unreachable_database(url, error)) from None
        except (ArgumentError, NoSuchModuleError, ImportError, ValueError) as error:
            raise ConfigurationError(
                f"database_url {url.split('@')[-1]!r} is not accepted ({error}): expected "
                "sqlite:///path.db or postgresql+psycopg://user@host:5432/database"
            ) from None
        self._closers.append(engines.dispose)
        try:  # one connection now: a missing or unreachable database is said here, for every command alike
            with engines.reader.connect():
                pass
        except OperationalError as error:
            raise ConfigurationError(unreachable_database(url, error)) from None
        return engines

    @cached_property
    def engines(self) -> Engines:
        """The database, its schema created when empty, upgraded when so configured, refused when older
        (safely when several workers start at once)."""
        try:
            prepare_schema(self.database, upgrade=self.settings.upgrade_schema)
        except OperationalError as error:  # missing, unreachable, refused: one line and the fix
            raise ConfigurationError(unreachable_database(self.settings.database_url, error)) from None
        return self.database

    @cached_property
    def audit_database(self) -> Engines:
        """The audit trail's database as it is (a file beside a SQLite store; the store's on PostgreSQL)."""
        engines = engines_beside(self.settings.database_url, self.database, "audit")
        if engines is not self.database:
            self._closers.append(engines.dispose)
        return engines

    def key_fingerprints(self) -> dict[str, Any]:
        """Names of the keys configured outside the database (never the keys): the pseudonym key's
        fingerprint, the token signing keys' ids."""
        return {
            PSEUDONYM_KEY: self.pseudonymiser.fingerprint() if self.pseudonymiser else None,
            "token_signing_keys": key_ids(token_key_path(self.settings)),
        }

    def backup(self, path: Path) -> dict[str, Any]:
        """``fhir-bridge db backup``: the store and its audit trail, online; keys only by fingerprint."""
        return backup(
            self.database,
            self.audit_database,
            path,
            secret_info=_SECRET_INFO,
            fingerprints=self.key_fingerprints(),
            software=f"fhir-bridge {package_version()}",
        )

    def restore(self, path: Path, *, force: bool = False) -> dict[str, Any]:
        """``fhir-bridge db restore``: a backup into an empty database, refused under another pseudonym key."""
        return restore(path, self.database, self.audit_database, fingerprints=self.key_fingerprints(), force=force)

    def copy_to(self, database_url: str, progress: Callable[[str, int], None] | None = None) -> dict[str, int]:
        """``fhir-bridge db copy``: this store, every version and its commit order, into another (empty) database."""
        target = Services(self.settings.model_copy(update={"database_url": database_url}))
        with target:
            return copy_store(
                self.database,
                target.database,
                STORE_METADATA.sorted_tables,
                audit=(self.audit_database, target.audit_database, AUDIT_TABLES),
                progress=progress,
            )

    def schema_state(self) -> SchemaState:
        """Where the database's schema stands against this fhir-bridge's newest revision."""
        return schema_state(self.database)

    def upgrade_schema(self) -> tuple[SchemaState, SchemaState]:
        """Upgrade (or create) the database's schema to the newest revision: the state before and after."""
        return upgrade_schema(self.database)

    @cached_property
    def store(self) -> Store:
        """The store, indexing each version it writes with the search package's index rows."""
        return Store(
            self.engines, indexer=index_entries, enforce_references=self.settings.enforce_referential_integrity
        )

    @cached_property
    def interactions(self) -> FhirInteractions:
        settings = self.settings
        limits = Limits(
            default_count=settings.default_count,
            max_count=settings.max_count,
            max_include=settings.max_include,
            max_chain_depth=settings.max_chain_depth,
            max_search_parameters=settings.max_search_parameters,
            max_or_values=settings.max_or_values,
        )
        secret = ensure_info(self.engines, "cursor_secret", partial(secrets.token_hex, 32))  # a restored store has none
        guard = refuse_direct_identifiers if settings.refuse_identified_patients else None
        return FhirInteractions(self.store, CursorSigner(secret), limits, guard)

    # push paths --------------------------------------------------------------------------------------
    @cached_property
    def dicom_mapper(self) -> DicomMapper:
        config = MappingConfig(self.settings.patient_identifier_system, self.settings.wado_rs_base_url, self.time_zone)
        return DicomMapper(self.privacy_policy, config)

    @cached_property
    def dicom_ingest(self) -> DicomIngest:
        return DicomIngest(self.interactions, self.dicom_mapper)

    @cached_property
    def mappings(self) -> MappingRegistry:
        return MappingRegistry.for_site(self.settings.mappings_dir)

    @cached_property
    def clinical_ingest(self) -> ClinicalIngest:
        return ClinicalIngest(
            self.interactions, self.privacy_policy, self.settings.patient_identifier_system, self.time_zone
        )

    @cached_property
    def fhir_ingest(self) -> FhirIngest:
        """FHIR pushed by an EHR (``POST /ingest/fhir``), de-identified by the same policy."""
        return FhirIngest(self.interactions, self.privacy_policy, self.settings.patient_identifier_system)

    # serving -----------------------------------------------------------------------------------------
    @cached_property
    def audit_chain_key(self) -> ChainKey:
        """The key of the audit trail's hash chain: from the audit key file or the site secret, never stored."""
        secret = self.settings.audit_chain_secret()
        return ChainKey(secret) if secret else ChainKey.unkeyed()

    @cached_property
    def audit_log(self) -> AuditLog:
        engines = engines_beside(self.settings.database_url, self.engines, "audit")
        if engines is not self.engines:
            self._closers.append(engines.dispose)
        log = AuditLog(engines, self.audit_chain_key)
        self._closers.append(log.close)  # after the engines' dispose in the list: closers run in reverse
        return log

    @cached_property
    def bulk_exports(self) -> BulkExports:
        limits = BulkLimits(retention_hours=self.settings.bulk_retention_hours)
        exports = BulkExports(self.engines, limits, threads=self.settings.bulk_workers)
        self._closers.append(exports.worker.stop)
        return exports

    @cached_property
    def erasure(self) -> Erasure:
        """Erasure of a patient's data for good (``$erase``, ``fhir-bridge patient erase``)."""
        return Erasure(self.interactions, self.bulk_exports, self.catalogue.invalidate, self.audit_search_hash)

    @cached_property
    def catalogue_config(self) -> CatalogueConfig:
        """The catalogue's descriptive values: its settings over its file over the defaults (refused here if bad)."""
        settings = self.settings
        overrides = {
            field: value
            for name, field in _CATALOGUE_SETTINGS.items()
            if (value := getattr(settings, name)) is not None
        }
        return load_catalogue_config(settings.catalogue_file, overrides)

    @cached_property
    def catalogue(self) -> Catalogue:
        settings = self.settings
        config = self.catalogue_config
        return Catalogue(self.store, config, settings.catalogue_min_count, settings.catalogue_cache_seconds)

    @cached_property
    def federated_search(self) -> FederatedSearch:
        """EUCAIM federated search (Tier 2): counts for Focus's EUCAIM API and Beacon backends."""
        settings = self.settings
        return FederatedSearch(
            self.store,
            Dataset.of(self.catalogue_config),
            settings.catalogue_min_count,
            settings.eucaim_epsilon,
            settings.pseudonym_secret(),
        )

    # access control ----------------------------------------------------------------------------------
    @cached_property
    def clients(self) -> ClientRegistry:
        return ClientRegistry(self.engines)

    @cached_property
    def token_keys(self) -> SigningKeys:
        """The token signing keys, in their file; a key earlier versions kept in the database is moved there."""
        path = token_key_path(self.settings)
        try:
            keys = SigningKeys.open(path, legacy=partial(find_info, self.engines, LEGACY_SIGNING_KEY))
        except (SigningKeyError, OSError) as error:
            raise ConfigurationError(f"token signing keys ({path}): {error}") from None
        discard_info(self.engines, LEGACY_SIGNING_KEY)  # a copy of the database no longer mints tokens
        return keys

    @cached_property
    def token_issuer(self) -> BuiltinIssuer:
        return BuiltinIssuer(self.engines, self.clients, self.settings.auth_token_lifetime_s, self.token_keys)

    @cached_property
    def ui_session_secret(self) -> str:
        """The key that signs the web UI's session cookies, kept in the database: every worker shares it."""
        return ensure_info(self.engines, "ui_session_secret", lambda: secrets.token_hex(32))

    @cached_property
    def token_verifier(self) -> TokenVerifier | None:
        """Checks bearer tokens (the built-in issuer's and the site's own); None when access control is off."""
        settings = self.settings
        if settings.auth == "none":
            return None
        _check_public_base_url(settings)
        external = None
        if settings.auth_issuer:
            external = ExternalIssuer(settings.auth_issuer, settings.auth_audience, settings.auth_jwks_url)
        return TokenVerifier(
            self.token_issuer.issuer, self.token_keys.verification_key, external, self.clients.registered_at
        )


def token_key_path(settings: Settings) -> Path:
    """The token signing key file: configured, else beside a SQLite store, else in the working directory."""
    if settings.token_key_file is not None:
        return settings.token_key_file
    return file_beside(settings.database_url, "token-keys.json") or Path(DEFAULT_TOKEN_KEY_FILE)


def _check_public_base_url(settings: Settings) -> None:
    """Access control beyond loopback needs the public base URL: audiences and discovery come from it."""
    if settings.public_base_url or _is_loopback(settings.host):
        return
    raise ConfigurationError(
        f"access control is on and the service listens on {settings.host} (beyond loopback): set "
        "FHIR_BRIDGE_PUBLIC_BASE_URL to the FHIR base URL clients use (e.g. https://fhir.example.org/fhir); "
        "token audiences and discovery URLs are taken from it, never from a request's Host header"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
