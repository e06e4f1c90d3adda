"""Users, roles, API tokens, login attempts and the audit log."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Boolean, CheckConstraint, FetchedValue, ForeignKey, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, UTCDateTime, added_later_in_1_1, utcnow


class Role(Base):
    __tablename__ = "roles"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    description: Mapped[str] = mapped_column(String(200))


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(120), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(ForeignKey("roles.name"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # the user of an operator's tool (erp_core.ops.create_user(service=True)): the API does not change it
    service: Mapped[bool] = added_later_in_1_1(Boolean, server_default=false())
    # the web pages' language (None: the browser's); FetchedValue keeps it out of an INSERT that does not set it
    locale: Mapped[str | None] = added_later_in_1_1(String(16), nullable=True, server_default=FetchedValue())
    # migration 0009: an administrator's reset sets it; the user can do nothing but change the password
    must_change_password: Mapped[bool] = added_later_in_1_1(Boolean, server_default=false())
    # the database fills `service` on INSERT; not read back (RETURNING), so a schema before 0006 gets users too
    __mapper_args__ = {"eager_defaults": False}


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    # migration 0009: what the user's session list shows (a token is a session: web or API)
    last_seen_at: Mapped[dt.datetime | None] = added_later_in_1_1(UTCDateTime, nullable=True,
                                                                  server_default=FetchedValue())
    remote_addr: Mapped[str] = added_later_in_1_1(String(64), server_default="")
    user_agent: Mapped[str] = added_later_in_1_1(String(200), server_default="")
    __mapper_args__ = {"eager_defaults": False}


class LoginAttempt(Base):
    __tablename__ = "login_attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    remote_addr: Mapped[str] = mapped_column(String(64), default="")
    succeeded: Mapped[bool] = mapped_column(Boolean)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class LoginThrottle(Base):
    """Failed-login counters (migration 0009): one row per key, "p:" an account from one client address,
    "a:" a client address, "u:" an account (erp_core/services/throttle.py)."""

    __tablename__ = "login_throttle"
    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    blocked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class AuditLog(Base):
    """Append-only: database triggers refuse UPDATE and DELETE."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))
    entity: Mapped[str] = mapped_column(String(64), index=True)
    entity_id: Mapped[str] = mapped_column(String(64))
    before: Mapped[dict | None] = mapped_column(JSON)
    after: Mapped[dict | None] = mapped_column(JSON)
    __table_args__ = (CheckConstraint("action IN ('create','update','delete','login','logout','login_failed')", name="action"),)


class SystemSetting(Base):
    """Operator switches the ERP reads (maintenance mode)."""

    __tablename__ = "system_settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_keys"
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    body: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class SchemaMigration(Base):
    """Each applied migration and its declared stage (expand, backfill, contract)."""

    __tablename__ = "erp_schema_migrations"
    revision: Mapped[str] = mapped_column(String(64), primary_key=True)
    stage: Mapped[str] = mapped_column(String(16))
    applied_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    __table_args__ = (CheckConstraint("stage IN ('expand','backfill','contract')", name="stage"),)


class DocSequence(Base):
    """Gapless document numbering per series (SO, PO, INV, BILL, PAY, JE, ST)."""

    __tablename__ = "doc_sequences"
    name: Mapped[str] = mapped_column(String(16), primary_key=True)
    last: Mapped[int] = mapped_column(Integer, default=0)
