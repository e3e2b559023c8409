"""Environment-specific settings, exactly as the architecture guide's config.py describes."""

import os


class Config:
    ENVIRONMENT = os.getenv("ENVIRONMENT", "development")
    DEBUG = os.getenv("DEBUG", "false").lower() == "true"
    LOG_LEVEL = os.getenv("LOG_LEVEL", "info")

    # Environment-specific settings
    if ENVIRONMENT == "production":
        WORKERS = 4
        TIMEOUT = 60
        LOG_LEVEL = "warning"
    elif ENVIRONMENT == "staging":
        WORKERS = 2
        TIMEOUT = 120
        LOG_LEVEL = "info"
    else:  # PR/development
        WORKERS = 1
        TIMEOUT = 300
        LOG_LEVEL = "debug"
    # The WORKERS variable is what the start command gives uvicorn (`--workers ${WORKERS:-1}`): report that count.
    WORKERS = int(os.getenv("WORKERS") or WORKERS)

    DATABASE_URL = os.getenv("DATABASE_URL")
    REDIS_URL = os.getenv("REDIS_URL")
    GIT_COMMIT = os.getenv("BRANCHYARD_GIT_COMMIT_SHA") or os.getenv("RAILWAY_GIT_COMMIT_SHA") or "unknown"
    REPLICA = os.getenv("BRANCHYARD_REPLICA_ID", "")


config = Config()
