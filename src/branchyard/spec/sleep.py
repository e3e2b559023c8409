"""Sleep: how long an environment may go without a request before its app processes stop (pure).

`sleepAfter` on an environment in branchyard.toml (`[environments.<env>] sleepAfter = 600` or `"10m"`; `0` or `false`:
never), Railway's `sleepApplication = true` (its [deploy] key: our default idle time, SLEEP_APPLICATION_AFTER), and
for previews the operator's default (BRANCHYARD_PREVIEW_SLEEP_AFTER). Production never sleeps unless told.
`effective` is the one rule; `should_sleep` the idle decision the control plane's sleeper applies.
"""

from __future__ import annotations

import re

from .values import InvalidValue, show

# Railway sleeps a service after 10 minutes without outbound packets (docs.railway.com/reference/app-sleeping); we
# count requests through the router instead (what we see), with the same 10 minutes.
SLEEP_APPLICATION_AFTER = 600
PREVIEW_SLEEP_AFTER = 1800  # BRANCHYARD_PREVIEW_SLEEP_AFTER's default: previews idle for 30 minutes sleep
MAX_SLEEP_AFTER = 30 * 86400  # a month
_DURATION = re.compile(r"\s*(\d+)\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?|d|days?)?\s*", re.IGNORECASE)
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def sleep_after(value: object) -> int:
    """Seconds of idleness before sleeping: a whole number of seconds or "30s"/"10m"/"2h"/"1d"; 0 or false: never."""
    what = 'seconds (e.g. 600) or a duration like "10m"; 0 or false: never'
    if value is False:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidValue(f"expected {what}, got {show(value)}")
    if isinstance(value, int):
        seconds = value
    else:
        m = _DURATION.fullmatch(value)
        if m is None:
            raise InvalidValue(f"expected {what}, got {show(value)}")
        seconds = int(m.group(1)) * _UNIT[(m.group(2) or "s")[0].lower()]
    if not 0 <= seconds <= MAX_SLEEP_AFTER:
        raise InvalidValue(f"expected {what} (at most {MAX_SLEEP_AFTER} s), got {show(value)}")
    return seconds


def effective(declared: int | None, *, sleep_application: bool, production: bool, ephemeral: bool,
              preview_default: int, cron: bool = False) -> tuple[int | None, str]:
    """(seconds of idleness before the environment sleeps, None: never; where that comes from).

    A cron service never sleeps for want of requests (nothing requests it: its schedule is what it does). Otherwise
    the environment's own `sleepAfter` wins (0: never); then `sleepApplication = true`; then previews sleep after the
    operator's default (0: never); anything else (production included) never sleeps."""
    if cron:
        return None, "a cron service: its schedule runs it, no request does"
    if declared is not None:
        return (declared or None), "sleepAfter"
    if sleep_application:
        return SLEEP_APPLICATION_AFTER, "sleepApplication (Railway: 10 minutes)"
    if ephemeral and not production:
        return (preview_default or None), "previews' default (BRANCHYARD_PREVIEW_SLEEP_AFTER)"
    return None, "default: never"


def should_sleep(last_activity: float, now: float, after: int | None) -> bool:
    """Whether an environment idle since `last_activity` (epoch seconds: its last request, deploy, wake or the
    control plane's start) sleeps at `now`."""
    return after is not None and after > 0 and now - last_activity >= after
