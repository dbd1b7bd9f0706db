"""The database schema: resources, their versions, the commit clock and the typed index tables.

``resource`` holds the current version of each resource (what read and search see);
``resource_version`` holds every version ever written (history, vread, harvesting).
Every version carries ``seq``: its position in the store's single commit order.
Index tables hold the search index of every version, keyed by ``resource.pk`` and valid for a
range of sequence numbers, so a search (and its paging) can be answered as of one ``seq``.

These are the store's own tables: no package outside ``store`` imports this module. Packages that
keep tables of their own (bulk, security, audit) declare them through ``store.schema``.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel


class StoreInfo(SQLModel, table=True):
    """Key/value facts about the store: the secret that signs paging cursors, and the like."""

    __tablename__ = "store_info"
    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(sa_column=Column(Text, nullable=False))


class CommitClock(SQLModel, table=True):
    """One row: the last sequence number handed out. Its row lock orders all writes."""

    __tablename__ = "commit_clock"
    id: int = Field(primary_key=True)
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    last_updated: int = Field(sa_column=Column(BigInteger, nullable=False))


class Resource(SQLModel, table=True):
    """The current version of one resource (deleted ones stay, with ``deleted`` set)."""

    __tablename__ = "resource"
    __table_args__ = (
        UniqueConstraint("res_type", "res_id", name="uq_resource_type_id"),
        Index("ix_resource_type_seq", "res_type", "seq"),
    )
    pk: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    )
    res_type: str = Field(sa_column=Column(String(64), nullable=False))
    res_id: str = Field(sa_column=Column(String(64), nullable=False))
    version: int = Field(sa_column=Column(Integer, nullable=False))
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    last_updated: int = Field(sa_column=Column(BigInteger, nullable=False))  # microseconds since the epoch
    deleted: bool = Field(nullable=False)
    content: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class ResourceVersion(SQLModel, table=True):
    """Every version of every resource, in commit order."""

    __tablename__ = "resource_version"
    __table_args__ = (
        UniqueConstraint("res_type", "res_id", "version", name="uq_version_type_id_version"),
        # covering (as is ix_version_type_pk): a count of a type reads the index alone
        Index("ix_version_type_seq", "res_type", "seq", "superseded", "deleted", "res_pk"),
        Index("ix_version_last_updated", "last_updated"),
        # covering: counts and pk-ordered scans of a type read the index alone
        Index("ix_version_type_pk", "res_type", "res_pk", "superseded", "seq", "deleted"),
        Index("ix_version_pk", "res_pk", "superseded"),
    )
    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    res_pk: int = Field(sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), nullable=False))
    # the seq of the version that replaced this one (NULL while current): "valid at seq S"
    # is seq <= S < superseded
    superseded: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    res_type: str = Field(sa_column=Column(String(64), nullable=False))
    res_id: str = Field(sa_column=Column(String(64), nullable=False))
    version: int = Field(sa_column=Column(Integer, nullable=False))
    last_updated: int = Field(sa_column=Column(BigInteger, nullable=False))
    method: str = Field(sa_column=Column(String(8), nullable=False))
    deleted: bool = Field(nullable=False)
    content: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


# What a search reads of an index row besides its value: which resource, and the validity range.
# PostgreSQL's value indexes carry them (INCLUDE, not part of the key), so that a criterion's rows
# and a count come from the index alone (an index-only scan) instead of one heap fetch per match.
# SQLite has no INCLUDE; there they are left out (see migration r0003).
COVERED = ("res_pk", "seq_from", "seq_to")


def _index_table(
    name: str,
    *columns: Column,
    value_columns: tuple[str, ...],
    extra_indexes: tuple[Index, ...] = (),
    included: tuple[str, ...] = COVERED,
) -> Table:
    """An index table: one row per indexed value of one version, valid from ``seq_from``
    until ``seq_to`` (the seq of the version that replaced it; NULL while current), so that a
    search can be answered as of any committed sequence number. ``included``: the value index's
    INCLUDE columns on PostgreSQL (``COVERED`` unless a key column is one of them)."""
    return Table(
        name,
        SQLModel.metadata,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
        Column("res_pk", BigInteger().with_variant(Integer, "sqlite"), ForeignKey("resource.pk"), nullable=False),
        Column("res_type", String(64), nullable=False),
        Column("param", String(64), nullable=False),
        Column("seq_from", BigInteger, nullable=False),
        Column("seq_to", BigInteger, nullable=True),
        *columns,
        Index(f"ix_{name}_value", "res_type", "param", *value_columns, postgresql_include=list(included)),
        Index(f"ix_{name}_pk", "res_pk", "param", "seq_to"),
        *extra_indexes,
    )


TOKEN = _index_table(
    "idx_token",
    Column("system", Text),
    Column("code", Text),
    Column("text", Text),  # normalised display / CodeableConcept.text, for :text
    Column("type_system", Text),  # Identifier.type, for :of-type
    Column("type_code", Text),
    # keyed by res_pk after the code (system included, not in the key; migration r0005): the rows of
    # one code come in pk order, so that an index-driven search (``search.planner.index_driven``)
    # merges them with another clause's pks and stops at the page instead of hashing every row of
    # the code; a system is checked on the index row (one code rarely lives in several systems)
    value_columns=("code", "res_pk"),
    included=("system", "seq_from", "seq_to"),
)
STRING = _index_table(
    "idx_string",
    # normalised (case- and accent-free); code-point order so that prefix ranges use the index
    Column("value", Text().with_variant(Text(collation="C"), "postgresql"), nullable=False),
    Column("exact", Text, nullable=False),
    value_columns=("value",),
)
DATE = _index_table(
    "idx_date",
    Column("low", BigInteger, nullable=False),  # microseconds since the epoch, inclusive
    Column("high", BigInteger, nullable=False),
    value_columns=("low", "high"),
    extra_indexes=(Index("ix_idx_date_high", "res_type", "param", "high", postgresql_include=["low", *COVERED]),),
)
NUMBER = _index_table(
    "idx_number",
    Column("value", Float, nullable=False),
    Column("low", Float, nullable=False),
    Column("high", Float, nullable=False),
    value_columns=("value",),
)
QUANTITY = _index_table(
    "idx_quantity",
    Column("system", Text),
    Column("code", Text),
    Column("value", Float),
    Column("low", Float),
    Column("high", Float),
    value_columns=("value",),
)
REFERENCE = _index_table(
    "idx_reference",
    Column("target_type", String(64)),
    Column("target_id", Text),
    Column("url", Text),  # absolute or canonical references
    Column("identifier_system", Text),  # Reference.identifier, for :identifier
    Column("identifier_value", Text),
    value_columns=("target_id", "target_type"),
)
URI = _index_table("idx_uri", Column("uri", Text, nullable=False), value_columns=("uri",))
COMPOSITE = _index_table(
    "idx_composite",
    # the first component is a token in every R4 composite parameter supported
    Column("c1_system", Text),
    Column("c1_code", Text),
    # the second component: token (system, code), string (text), reference (code=type, text=id),
    # quantity (system, code, low, high) or date (low, high)
    Column("c2_system", Text),
    Column("c2_code", Text),
    Column("c2_text", Text),
    Column("c2_low", Float),
    Column("c2_high", Float),
    value_columns=("c1_code", "c2_code"),
)
Index("ix_idx_reference_target", REFERENCE.c.target_type, REFERENCE.c.target_id)

# The widest date value (high - low, microseconds) ever indexed per type and parameter. It bounds a
# date range search from below: a value that reaches up to A starts at A - width or later, so
# "started in March" is an index range on low instead of a scan of everything before April.
# It only ever grows (deletes leave it), so it stays a safe bound for searches as of any seq.
DATE_WIDTH = Table(
    "idx_date_width",
    SQLModel.metadata,
    Column("res_type", String(64), primary_key=True),
    Column("param", String(64), primary_key=True),
    Column("width", BigInteger, nullable=False),
)

# How many resources of each type are current (not deleted) at the newest commit: kept by the write
# path in the transaction that moves the commit clock (and by erasure), so that a count of a whole
# type read together with the clock is exact without a scan of the type's versions. A type without a
# row has none.
RESOURCE_COUNT = Table(
    "resource_count",
    SQLModel.metadata,
    Column("res_type", String(64), primary_key=True),
    Column("current", BigInteger, nullable=False),
)

# The current ImagingStudies' facts the catalogue aggregates over (``catalogue/statistics.py``), one
# row per study and value: a ``subject`` row per study (``started``: the earliest start it indexes) and
# a row per value of its ``modality``, ``bodysite``, ``segmentation`` and ``segmentation-method``
# tokens, per Device its series name as ``performer`` (``code``: the Device's id) and one ``segment``
# row when it has segments; every row carries the study's subject (the Patient id its ``subject``
# reference names; NULL when none). They are the study's current index rows (``seq_to IS NULL``) in a
# narrow table of their own, kept by the write path in the transaction that moves the commit clock
# (and by erasure): a count over all studies reads this table, not the store-wide index tables, and
# needs no join from a study's values to its subject. Read with the clock in one snapshot, it is
# exact as of that commit; it holds nothing of older commits (a count pinned to one uses the index).
STUDY_FACTS = Table(
    "study_fact",
    SQLModel.metadata,
    Column("res_pk", BigInteger, nullable=False),
    Column("param", String(64), nullable=False),
    Column("system", Text),
    Column("code", Text),
    Column("subject", Text),
    Column("started", BigInteger),
)
Index("ix_study_fact_pk", STUDY_FACTS.c.res_pk)
Index(
    "ix_study_fact_value",
    STUDY_FACTS.c.param,
    STUDY_FACTS.c.code,
    STUDY_FACTS.c.system,
    STUDY_FACTS.c.subject,
    postgresql_include=["res_pk"],
)
Index("ix_study_fact_subject", STUDY_FACTS.c.param, STUDY_FACTS.c.subject, STUDY_FACTS.c.started)

INDEX_TABLES: dict[str, Table] = {
    "token": TOKEN,
    "string": STRING,
    "date": DATE,
    "number": NUMBER,
    "quantity": QUANTITY,
    "reference": REFERENCE,
    "uri": URI,
    "composite": COMPOSITE,
}
RESOURCE = SQLModel.metadata.tables["resource"]
VERSION = SQLModel.metadata.tables["resource_version"]
CLOCK = SQLModel.metadata.tables["commit_clock"]
INFO = SQLModel.metadata.tables["store_info"]
