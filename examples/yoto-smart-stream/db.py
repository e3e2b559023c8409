"""PostgreSQL through SQLAlchemy 2: the schema, a lazily created engine, and short error reasons.

DATABASE_URL comes Railway style (`postgresql://user:pass@host:port/db`); SQLAlchemy needs the driver
in the scheme, so it becomes `postgresql+psycopg://…` (psycopg 3). Nothing here connects at import time.
"""

from __future__ import annotations

import threading
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String, create_engine, func, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker

CONNECT_TIMEOUT = 2  # seconds; libpq's minimum. The platform's health probe gives a request 2 s.


# --- schema (migrations/versions/0001_initial.py creates exactly this) ------------------------------


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())

    streams: Mapped[list[Stream]] = relationship(back_populates="user", passive_deletes=True)

    def to_dict(self) -> dict:
        return {"id": self.id, "email": self.email, "name": self.name, "created_at": _iso(self.created_at)}


class Stream(Base):
    __tablename__ = "streams"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    title: Mapped[str] = mapped_column(String(200), nullable=False)
    url: Mapped[str] = mapped_column(String(2048), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())

    user: Mapped[User] = relationship(back_populates="streams")
    cards: Mapped[list[Card]] = relationship(back_populates="stream", passive_deletes=True, order_by="Card.id")

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "user_id": self.user_id,
            "title": self.title,
            "url": self.url,
            "created_at": _iso(self.created_at),
            "cards": [card.to_dict() for card in self.cards],
        }


class Card(Base):
    __tablename__ = "cards"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stream_id: Mapped[int] = mapped_column(ForeignKey("streams.id", ondelete="CASCADE"), nullable=False, index=True)
    title: Mapped[str] = mapped_column(String(200), nullable=False)
    icon: Mapped[str | None] = mapped_column(String(200), nullable=True)

    stream: Mapped[Stream] = relationship(back_populates="cards")

    def to_dict(self) -> dict:
        return {"id": self.id, "title": self.title, "icon": self.icon}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# --- connection --------------------------------------------------------------------------------------


class BadDatabaseURL(ValueError):
    """DATABASE_URL is not a PostgreSQL URL. The message never contains the URL."""


def sqlalchemy_url(raw: str) -> str:
    """`postgres://` / `postgresql://` (Railway, Heroku) → `postgresql+psycopg://`; an explicit driver is kept."""
    scheme, sep, rest = raw.strip().partition("://")
    if not sep or not rest:
        raise BadDatabaseURL("DATABASE_URL is not a URL")
    scheme = scheme.lower()
    if scheme in ("postgres", "postgresql", "postgresql+psycopg"):
        return f"postgresql+psycopg://{rest}"
    raise BadDatabaseURL(f"DATABASE_URL has an unsupported scheme {scheme!r} (expected postgresql://)")


_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_sessions: dict[str, sessionmaker] = {}


def get_engine(raw_url: str) -> Engine:
    """One engine per URL, created on first use (create_engine does not connect)."""
    with _lock:
        engine = _engines.get(raw_url)
        if engine is None:
            engine = create_engine(
                sqlalchemy_url(raw_url),
                pool_pre_ping=True,  # a database restart must not leave dead connections in the pool
                # One pool per process, and each uvicorn worker is a process (WORKERS=4 in production): 4 × (2 + 3)
                # = 20 connections at most per replica, 40 for production's two, within PostgreSQL's default 100.
                pool_size=2,
                max_overflow=3,
                pool_timeout=5,
                connect_args={"connect_timeout": CONNECT_TIMEOUT, "application_name": "yoto-smart-stream"},
            )
            _engines[raw_url] = engine
        return engine


def session_factory(raw_url: str) -> sessionmaker:
    with _lock:
        factory = _sessions.get(raw_url)
    if factory is None:
        factory = sessionmaker(get_engine(raw_url), expire_on_commit=False)
        with _lock:
            factory = _sessions.setdefault(raw_url, factory)
    return factory


def ping(raw_url: str) -> None:
    """Raise if the database cannot answer `SELECT 1`."""
    with get_engine(raw_url).connect() as conn:
        conn.execute(text("SELECT 1"))


def dispose_all() -> None:
    with _lock:
        engines = list(_engines.values())
        _engines.clear()
        _sessions.clear()
    for engine in engines:
        engine.dispose()


# Phrases from libpq / redis-py errors (all must occur), mapped to a reason that never carries hosts,
# users or passwords. The first match wins.
_REASONS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("password authentication failed",), "authentication failed"),
    (("authentication failed",), "authentication failed"),
    (("invalid username-password",), "authentication failed"),
    (("wrongpass",), "authentication failed"),
    (("noauth",), "authentication required"),
    (("authentication required",), "authentication required"),
    (("no password supplied",), "authentication required"),
    (("relation", "does not exist"), "tables missing (run: python manage.py migrate)"),
    (("role", "does not exist"), "role does not exist"),
    (("database", "does not exist"), "database does not exist"),
    (("connection refused",), "connection refused"),
    (("timeout expired",), "timed out"),
    (("timed out",), "timed out"),
    (("timeout",), "timed out"),
    (("could not translate host name",), "unknown host"),
    (("name or service not known",), "unknown host"),
    (("temporary failure in name resolution",), "unknown host"),
    (("no route to host",), "no route to host"),
    (("network is unreachable",), "network unreachable"),
    (("the database system is starting up",), "database is starting up"),
    (("the database system is shutting down",), "database is shutting down"),
    (("too many connections",), "too many connections"),
    (("terminating connection",), "connection terminated"),
    (("server closed the connection",), "connection closed"),
    (("connection reset",), "connection reset"),
    (("invalid response",), "invalid response (not the expected server?)"),
    (("protocol error",), "invalid response (not the expected server?)"),
    (("ssl",), "SSL error"),
)


def short_reason(exc: BaseException) -> str:
    """A short, credential-free description of a connection failure: 'connection refused', 'timed out'…"""
    if isinstance(exc, BadDatabaseURL):
        return str(exc)
    inner = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps the driver's exception
    message = str(inner).lower()
    for needles, reason in _REASONS:
        if all(needle in message for needle in needles):
            return reason
    return type(inner).__name__
