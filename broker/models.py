"""The exchange's registry: agencies, data categories, sources and purposes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from broker.db import Base, JSONType, utcnow

SLUG = r"^[a-z0-9][a-z0-9.-]*$"


class Agency(Base):
    """A member organisation; its id (``tax``, ``health``) names it in policies and tokens."""

    __tablename__ = "agency"
    __table_args__ = (CheckConstraint("status IN ('active', 'suspended')", name="status"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    sector: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: Other languages: ``{"fr": {"name": ...}}``; the columns are English.
    labels: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    sources: Mapped[list[Source]] = relationship(back_populates="agency")


class DataCategory(Base):
    """A kind of record (``income``, ``vehicle``) with its sensitivity and its field list."""

    __tablename__ = "data_category"
    __table_args__ = (
        CheckConstraint("sensitivity IN ('low', 'medium', 'high', 'special')", name="sensitivity"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    sensitivity: Mapped[str] = mapped_column(String(16))
    fields: Mapped[list[str]] = mapped_column(JSONType)
    #: Other languages: ``{"fr": {"name": ..., "description": ...}}``; the columns are English.
    labels: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class SourceCategory(Base):
    """Which categories a source provides."""

    __tablename__ = "source_category"

    source_id: Mapped[str] = mapped_column(
        ForeignKey("source.id", ondelete="CASCADE"), primary_key=True
    )
    category_id: Mapped[str] = mapped_column(ForeignKey("data_category.id"), primary_key=True)


class Source(Base):
    """An adapter instance through which one agency provides some categories."""

    __tablename__ = "source"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'disabled')", name="status"),
        CheckConstraint("timeout_ms > 0 AND timeout_ms <= 60000", name="timeout_ms"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agency.id"), index=True)
    adapter: Mapped[str] = mapped_column(String(64))
    config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    timeout_ms: Mapped[int] = mapped_column(Integer, default=2000)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    agency: Mapped[Agency] = relationship(back_populates="sources")
    categories: Mapped[list[DataCategory]] = relationship(secondary="source_category")


class Purpose(Base):
    """A registered purpose of use and its caps."""

    __tablename__ = "purpose"
    __table_args__ = (
        CheckConstraint(
            "max_consent_days IS NULL OR max_consent_days > 0", name="max_consent_days"
        ),
        CheckConstraint(
            "NOT break_glass_allowed OR justification_required", name="break_glass_justified"
        ),
        UniqueConstraint("name"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    max_consent_days: Mapped[int | None] = mapped_column(Integer)
    break_glass_allowed: Mapped[bool] = mapped_column(Boolean, default=False)
    justification_required: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Other languages: ``{"fr": {"name": ..., "description": ...}}``; the columns are English.
    labels: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
