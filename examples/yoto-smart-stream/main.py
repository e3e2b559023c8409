"""yoto-smart-stream: the example app branchyard deploys (production, staging, PR previews).

PostgreSQL (DATABASE_URL) holds users, their streams and the streams' cards; Redis (REDIS_URL) caches
the user list. Both are optional: without DATABASE_URL the app still serves /health ("not configured"),
without REDIS_URL nothing is cached. Nothing connects at import time: start-up stays fast.
"""

import json
import logging
import re
import time
from datetime import UTC, datetime

import cache
import db
import errortracking
from config import config
from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import selectinload


class JSONLines(logging.Formatter):
    """One JSON object per line (time, level, logger, message): what `branchyard logs --level` filters on."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


_handler = logging.StreamHandler()
_handler.setFormatter(JSONLines())
logging.basicConfig(level=config.LOG_LEVEL.upper(), handlers=[_handler])
log = logging.getLogger("yoto")

errortracking.init()  # Sentry when SENTRY_DSN is set: before the app is made, so its integration sees it
app = FastAPI(title="yoto-smart-stream", debug=config.DEBUG)
STARTED = time.time()

USERS_CACHE_SECONDS = 5
USERS_CACHE_PREFIX = "yoto:users:v1:"
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

log.info(
    "environment=%s database=%s redis=%s",
    config.ENVIRONMENT,
    "configured" if config.DATABASE_URL else "not configured",
    "configured" if config.REDIS_URL else "not configured",
)


if errortracking.debug_route_enabled():

    @app.get("/debug/error")
    def debug_error() -> dict:
        """Raises on purpose (only with YOTO_DEBUG_ERROR_ROUTE=1): how to check that errors reach Sentry."""
        raise RuntimeError("debug error: raised on purpose by GET /debug/error")


# --- health -------------------------------------------------------------------------------------------


def _database_state() -> str:
    if not config.DATABASE_URL:
        return "not configured"
    try:
        db.ping(config.DATABASE_URL)
    except Exception as exc:  # noqa: BLE001 - any failure is reported, never raised
        return f"error: {db.short_reason(exc)}"
    return "ok"


def _redis_state() -> str:
    if not config.REDIS_URL:
        return "not configured"
    try:
        cache.ping(config.REDIS_URL)
    except ValueError:  # redis-py refuses to parse the URL (its message does not echo it)
        return "error: REDIS_URL is not a redis:// URL"
    except Exception as exc:  # noqa: BLE001
        return f"error: {db.short_reason(exc)}"
    return "ok"


@app.get("/health")
def health() -> JSONResponse:
    """200 while the app can serve; 503 only when the database is configured and unreachable.

    Redis down is "degraded" but still 200: the app works without its cache.
    """
    database = _database_state()
    redis_state = _redis_state()
    healthy = all(state in ("ok", "not configured") for state in (database, redis_state))
    body = {
        "status": "ok" if healthy else "degraded",
        "environment": config.ENVIRONMENT,
        "commit": config.GIT_COMMIT,
        "replica": config.REPLICA,
        "uptime_seconds": round(time.time() - STARTED, 3),
        "database": database,
        "redis": redis_state,
    }
    database_down = bool(config.DATABASE_URL) and database != "ok"
    return JSONResponse(body, status_code=503 if database_down else 200)


@app.get("/")
def index() -> dict:
    return {
        "app": "yoto-smart-stream",
        "environment": config.ENVIRONMENT,
        "debug": config.DEBUG,
        "log_level": config.LOG_LEVEL,
        "workers": config.WORKERS,
        "timeout": config.TIMEOUT,
    }


# --- data ---------------------------------------------------------------------------------------------


def _session():
    if not config.DATABASE_URL:
        raise HTTPException(503, "database not configured")
    try:
        return db.session_factory(config.DATABASE_URL)()
    except db.BadDatabaseURL as exc:
        raise HTTPException(503, f"database unavailable: {exc}") from None


def _unavailable(exc: Exception) -> HTTPException:
    log.warning("database error: %s", db.short_reason(exc))
    return HTTPException(503, f"database unavailable: {db.short_reason(exc)}")


class UserIn(BaseModel):
    email: str = Field(min_length=3, max_length=320)
    name: str = Field(min_length=1, max_length=200)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        value = value.strip().lower()
        if not EMAIL.match(value):
            raise ValueError("not an email address")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value


@app.get("/users")
def list_users(limit: int = Query(100, ge=1, le=1000)) -> dict:
    key = f"{USERS_CACHE_PREFIX}{limit}"
    cached = cache.get_json(config.REDIS_URL, key)
    if cached is not None:
        return {"cached": True, "users": cached}
    session = _session()
    try:
        with session:
            users = [u.to_dict() for u in session.scalars(select(db.User).order_by(db.User.id).limit(limit))]
    except SQLAlchemyError as exc:
        raise _unavailable(exc) from None
    cache.set_json(config.REDIS_URL, key, users, USERS_CACHE_SECONDS)
    return {"cached": False, "users": users}


@app.post("/users", status_code=201)
def create_user(body: UserIn) -> dict:
    session = _session()
    try:
        with session:
            user = db.User(email=body.email, name=body.name)
            session.add(user)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                raise HTTPException(409, "a user with this email already exists") from None
            session.refresh(user)
            created = user.to_dict()
    except SQLAlchemyError as exc:
        raise _unavailable(exc) from None
    _forget_users()
    return created


def _forget_users() -> None:
    """Drop every cached user list (one key per `limit`)."""
    if not config.REDIS_URL:
        return
    try:
        keys = list(cache.client(config.REDIS_URL).scan_iter(match=f"{USERS_CACHE_PREFIX}*", count=100))
    except Exception as exc:  # noqa: BLE001 - the cache expires on its own within seconds anyway
        log.warning("cache invalidation failed: %s", type(exc).__name__)
        return
    cache.delete(config.REDIS_URL, *keys)


@app.get("/streams")
def list_streams(limit: int = Query(100, ge=1, le=1000), user_id: int | None = None) -> dict:
    session = _session()
    query = select(db.Stream).options(selectinload(db.Stream.cards)).order_by(db.Stream.id).limit(limit)
    if user_id is not None:
        query = query.where(db.Stream.user_id == user_id)
    try:
        with session:
            streams = [s.to_dict() for s in session.scalars(query)]
    except SQLAlchemyError as exc:
        raise _unavailable(exc) from None
    return {"streams": streams}
