"""The database schema: resources, their versions, the commit clock and the typed index tables.

``resource`` holds the current version of each resource (what read and search see);
``resource_version`` holds every version ever written (history, vread, harvesting).
Every version carries ``seq``: its position in the store's single commit order.
Index tables hold the search index of the current version only, keyed by ``resource.pk``.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

SCHEMA_VERSION = 1


class StoreInfo(SQLModel, table=True):
    """Key/value facts about the store: schema version, the secret that signs paging cursors."""

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
        Index("ix_version_type_seq", "res_type", "seq"),
        Index("ix_version_last_updated", "last_updated"),
    )
    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    res_type: str = Field(sa_column=Column(String(64), nullable=False))
    res_id: str = Field(sa_column=Column(String(64), nullable=False))
    version: int = Field(sa_column=Column(Integer, nullable=False))
    last_updated: int = Field(sa_column=Column(BigInteger, nullable=False))
    method: str = Field(sa_column=Column(String(8), nullable=False))
    deleted: bool = Field(nullable=False)
    content: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


def _row_id() -> Column:
    return Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)


def _resource_key() -> Column:
    return Column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("resource.pk", ondelete="CASCADE"), nullable=False
    )


class TokenIndex(SQLModel, table=True):
    __tablename__ = "idx_token"
    __table_args__ = (
        Index("ix_token_code", "res_type", "param", "code", "system"),
        Index("ix_token_pk", "res_pk"),
    )
    id: int | None = Field(default=None, sa_column=_row_id())
    res_pk: int = Field(sa_column=_resource_key())
    res_type: str = Field(sa_column=Column(String(64), nullable=False))
    param: str = Field(sa_column=Column(String(64), nullable=False))
    system: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    code: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    text: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class StringIndex(SQLModel, table=True):
    __tablename__ = "idx_string"
    __table_args__ = (Index("ix_string_value", "res_type", "param", "value"), Index("ix_string_pk", "res_pk"))
    id: int | None = Field(default=None, sa_column=_row_id())
    res_pk: int = Field(sa_column=_resource_key())
    res_type: str = Field(sa_column=Column(String(64), nullable=False))
    param: str = Field(sa_column=Column(String(64), nullable=False))
    value: str = Field(sa_column=Column(Text, nullable=False))
    exact: str = Field(sa_column=Column(Text, nullable=False))


class DateIndex(SQLModel, table=True):
    __tablename__ = "idx_date"
    __table_args__ = (Index("ix_date_low", "res_type", "param", "low"), Index("ix_date_pk", "res_pk"))
    id: int | None = Field(default=None, sa_column=_row_id())
    res_pk: int = Field(sa_column=_resource_key())
    res_type: str = Field(sa_column=Column(String(64), nullable=False))
    param: str = Field(sa_column=Column(String(64), nullable=False))
    low: int = Field(sa_column=Column(BigInteger, nullable=False))  # microseconds since the epoch, inclusive
    high: int = Field(sa_column=Column(BigInteger, nullable=False))


class NumberIndex(SQLModel, table=True):
    __tablename__ = "idx_number"
    __table_args__ = (Index("ix_number_value", "res_type", "param", "value"), Index("ix_number_pk", "res_pk"))
    id: int | None = Field(default=None, sa_column=_row_id())
    res_pk: int = Field(sa_column=_resource_key())
    res_type: str = Field(sa_column=Column(String(64), nullable=False))
    param: str = Field(sa_column=Column(String(64), nullable=False))
    value: float = Field(sa_column=Column(Float, nullable=False))
    low: float = Field(sa_column=Column(Float, nullable=False))
    high: float = Field(sa_column=Column(Float, nullable=False))


class QuantityIndex(SQLModel, table=True):
    __tablename__ = "idx_quantity"
    __table_args__ = (Index("ix_quantity_value", "res_type", "param", "value"), Index("ix_quantity_pk", "res_pk"))
    id: int | None = Field(default=None, sa_column=_row_id())
    res_pk: int = Field(sa_column=_resource_key())
    res_type: str = Field(sa_column=Column(String(64), nullable=False))
    param: str = Field(sa_column=Column(String(64), nullable=False))
    system: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    code: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    value: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    low: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    high: float | None = Field(default=None, sa_column=Column(Float, nullable=True))


class ReferenceIndex(SQLModel, table=True):
    __tablename__ = "idx_reference"
    __table_args__ = (
        Index("ix_reference_target", "target_type", "target_id"),
        Index("ix_reference_param", "res_type", "param", "target_id"),
        Index("ix_reference_pk", "res_pk"),
    )
    id: int | None = Field(default=None, sa_column=_row_id())
    res_pk: int = Field(sa_column=_resource_key())
    res_type: str = Field(sa_column=Column(String(64), nullable=False))
    param: str = Field(sa_column=Column(String(64), nullable=False))
    target_type: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    target_id: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    url: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    identifier_system: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    identifier_value: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class UriIndex(SQLModel, table=True):
    __tablename__ = "idx_uri"
    __table_args__ = (Index("ix_uri_value", "res_type", "param", "uri"), Index("ix_uri_pk", "res_pk"))
    id: int | None = Field(default=None, sa_column=_row_id())
    res_pk: int = Field(sa_column=_resource_key())
    res_type: str = Field(sa_column=Column(String(64), nullable=False))
    param: str = Field(sa_column=Column(String(64), nullable=False))
    uri: str = Field(sa_column=Column(Text, nullable=False))


INDEX_TABLES = {
    "token": TokenIndex.__table__,
    "string": StringIndex.__table__,
    "date": DateIndex.__table__,
    "number": NumberIndex.__table__,
    "quantity": QuantityIndex.__table__,
    "reference": ReferenceIndex.__table__,
    "uri": UriIndex.__table__,
}
RESOURCE = Resource.__table__
VERSION = ResourceVersion.__table__
CLOCK = CommitClock.__table__
INFO = StoreInfo.__table__
