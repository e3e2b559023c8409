"""yoto-smart-stream: the example app branchyard deploys (production, staging, PR previews)."""

import logging
import time

from fastapi import FastAPI

from config import config

logging.basicConfig(level=config.LOG_LEVEL.upper())
log = logging.getLogger("yoto")

app = FastAPI(title="yoto-smart-stream", debug=config.DEBUG)
STARTED = time.time()


def _configured(url: str | None) -> str:
    # Later slices wire real PostgreSQL/Redis; until then report whether a URL was provided.
    # Never echo the URL itself: it carries a password.
    return "configured" if url else "not configured"


@app.get("/health")
def health() -> dict:
    return {
        "status": "ok",
        "environment": config.ENVIRONMENT,
        "commit": config.GIT_COMMIT,
        "replica": config.REPLICA,
        "uptime_seconds": round(time.time() - STARTED, 3),
        "database": _configured(config.DATABASE_URL),
        "redis": _configured(config.REDIS_URL),
    }


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
