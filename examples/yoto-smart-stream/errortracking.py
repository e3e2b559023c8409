"""Error tracking: report to Sentry when SENTRY_DSN is set (the real sentry-sdk, FastAPI integration); off when
it is not, and then sentry-sdk is not even imported.

The release is the deployed commit and the environment its name, from the variables the platform sets on every
replica (RAILWAY_GIT_COMMIT_SHA, RAILWAY_ENVIRONMENT_NAME — branchyard sets them as Railway does), so an error
names the exact commit and environment it came from.
"""

import os


def init() -> bool:
    """Start reporting if SENTRY_DSN is set; True when on. Call it before the FastAPI app is made."""
    dsn = os.getenv("SENTRY_DSN", "").strip()
    if not dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.fastapi import FastApiIntegration
    from sentry_sdk.integrations.starlette import StarletteIntegration

    sentry_sdk.init(
        dsn=dsn,
        release=os.getenv("RAILWAY_GIT_COMMIT_SHA") or os.getenv("BRANCHYARD_GIT_COMMIT_SHA") or None,
        environment=os.getenv("RAILWAY_ENVIRONMENT_NAME") or os.getenv("ENVIRONMENT") or None,
        integrations=[StarletteIntegration(), FastApiIntegration()],
        send_default_pii=False,  # no cookies, headers with tokens, or user IPs
        traces_sample_rate=0.0,  # errors only: no performance data
    )
    return True


def debug_route_enabled() -> bool:
    """GET /debug/error (raises, to check that errors reach Sentry) exists only with YOTO_DEBUG_ERROR_ROUTE=1."""
    return os.getenv("YOTO_DEBUG_ERROR_ROUTE", "") == "1"
