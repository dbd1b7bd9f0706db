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

from collections.abc import Callable
from functools import cached_property, partial
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fhir_bridge.audit.chain import ChainKey
from fhir_bridge.audit.log import AuditLog
from fhir_bridge.bulk.model import Limits as BulkLimits
from fhir_bridge.bulk.service import BulkExports
from fhir_bridge.catalogue.config import CatalogueConfig, load_catalogue_config
from fhir_bridge.catalogue.service import Catalogue
from fhir_bridge.errors import ConfigurationError
from fhir_bridge.eucaim.federated import Dataset, FederatedSearch
from fhir_bridge.ingest.clinical import ClinicalIngest
from fhir_bridge.ingest.dicom import DicomIngest
from fhir_bridge.interactions.cursors import CursorSigner
from fhir_bridge.interactions.service import FhirInteractions, Limits
from fhir_bridge.mapping.clinical import MappingRegistry
from fhir_bridge.mapping.dicom import DicomMapper, MappingConfig
from fhir_bridge.privacy.profile import AttributePolicy
from fhir_bridge.privacy.pseudonymiser import Pseudonymiser
from fhir_bridge.search.index import index_entries
from fhir_bridge.security.clients import BuiltinIssuer, ClientRegistry
from fhir_bridge.security.tokens import ExternalIssuer, TokenVerifier
from fhir_bridge.settings import Settings
from fhir_bridge.store.database import Engines, create_engines, engines_beside, prepare_schema, read_info
from fhir_bridge.store.store import Store

# configuration checks first: a mistake stops the start before the database is touched
_STARTED = (
    "privacy_policy",
    "time_zone",
    "catalogue_config",
    "dicom_ingest",
    "clinical_ingest",
    "mappings",
    "audit_log",
    "catalogue",
    "bulk_exports",
    "federated_search",
    "token_verifier",
)
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

    # storage -----------------------------------------------------------------------------------------
    @cached_property
    def engines(self) -> Engines:
        """The database, its schema created or upgraded (safely when several workers start at once)."""
        engines = create_engines(self.settings.database_url)
        self._closers.append(engines.dispose)
        prepare_schema(engines)
        return engines

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
        return FhirInteractions(self.store, CursorSigner(read_info(self.engines, "cursor_secret")), limits)

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
    def token_issuer(self) -> BuiltinIssuer:
        return BuiltinIssuer(self.engines, self.clients, self.settings.auth_token_lifetime_s)

    @cached_property
    def token_verifier(self) -> TokenVerifier | None:
        """Checks bearer tokens (the built-in issuer's and the site's own); None when access control is off."""
        settings = self.settings
        if settings.auth == "none":
            return None
        external = None
        if settings.auth_issuer:
            external = ExternalIssuer(settings.auth_issuer, settings.auth_audience, settings.auth_jwks_url)
        return TokenVerifier(self.token_issuer.issuer, self.token_issuer.public_key, external)
