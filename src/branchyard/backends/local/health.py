"""HTTP health checks for app replicas.

With a healthcheck path, a replica is healthy iff `GET path` answers 200 (Railway's rule). Without
one, `GET /` must answer any HTTP status below 500: a port that merely accepts TCP is not healthy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from ..ports import HealthResult

__all__ = ["HealthResult", "probe", "wait_healthy"]

_MAX_INTERVAL = 0.5
_BACKOFF = 1.3
# Apps usually come up within seconds: poll at the first interval that long, so that a replica is
# routed within ~interval of becoming healthy (a refused connect costs next to nothing), then back off.
_FAST_FOR = 5.0
REPORT_EVERY = 10.0  # seconds between progress lines while a replica is not healthy yet (a long start, a failing check)


@dataclass(frozen=True)
class _Probe:
    ok: bool
    status: int | None  # None: no HTTP answer at all
    error: str  # why there was no HTTP answer


def probe(port: int, path: str | None, *, host: str = "127.0.0.1", timeout: float = 2.0) -> HealthResult:
    """One health check of the app listening on host:port."""
    url_path = _path(path)
    started = time.monotonic()
    with _client(timeout) as client:
        result = _probe(client, host, port, path, timeout)
    if result.status is None:
        return HealthResult(False, f"GET {url_path}: {result.error}")
    return HealthResult(result.ok, f"GET {url_path} → {result.status} in {_secs(time.monotonic() - started)}")


def wait_healthy(
    port: int,
    path: str | None,
    *,
    timeout: float,
    alive: Callable[[], bool],
    interval: float = 0.02,
    exit_code: Callable[[], int | None] = lambda: None,
    host: str = "127.0.0.1",
    progress: Callable[[str], None] | None = None,
    report_every: float = REPORT_EVERY,
) -> HealthResult:
    """Poll until healthy, the process dies (fail fast with its exit code) or `timeout` seconds pass.

    Every `interval` seconds for the first few seconds, then backing off to one poll every 0.5 s. While it waits,
    `progress` hears every `report_every` seconds what the last probe got."""
    url_path = _path(path)
    started = time.monotonic()
    deadline = started + timeout
    next_report = started + report_every
    last: _Probe | None = None
    with _client(2.0) as client:
        while True:
            if not alive():
                return _died(exit_code())
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            last = _probe(client, host, port, path, min(2.0, max(remaining, 0.05)))
            if last.ok:
                return HealthResult(True, f"GET {url_path} → {last.status} in {_secs(time.monotonic() - started)}")
            if not alive():
                return _died(exit_code())
            now = time.monotonic()
            if progress is not None and now >= next_report:
                got = f"→ {last.status}" if last.status is not None else f": {last.error}"
                progress(f"not healthy yet after {_secs(now - started)} of {_secs(timeout)}: last GET {url_path} {got}")
                next_report = now + report_every
            remaining = deadline - now
            if remaining <= 0:
                break
            time.sleep(min(interval, remaining))
            interval = next_interval(interval, time.monotonic() - started)
    if last is None:
        return HealthResult(False, f"timed out after {_secs(timeout)}: no check completed")
    if last.status is not None:
        return HealthResult(False, f"GET {url_path} → {last.status} after {_secs(timeout)}")
    return HealthResult(False, f"timed out after {_secs(timeout)}: {last.error}")


def next_interval(interval: float, elapsed: float) -> float:
    """The pause before the next poll: unchanged for the first _FAST_FOR seconds, then ×1.3 up to 0.5 s."""
    if elapsed < _FAST_FOR:
        return interval
    return max(interval, min(interval * _BACKOFF, _MAX_INTERVAL))


# -- internals -------------------------------------------------------------------------------------


def _client(timeout: float) -> httpx.Client:
    # verify=False: probes are plain HTTP to 127.0.0.1, so skip loading the CA bundle (tens of ms on a busy machine).
    return httpx.Client(trust_env=False, timeout=timeout, follow_redirects=False, verify=False)


def _path(path: str | None) -> str:
    if not path:
        return "/"
    return path if path.startswith("/") else "/" + path


def _probe(client: httpx.Client, host: str, port: int, path: str | None, timeout: float) -> _Probe:
    url = f"http://{host}:{port}{_path(path)}"
    try:
        response = client.get(url, timeout=timeout, headers={"User-Agent": "branchyard-healthcheck"})
    except httpx.ConnectError as exc:
        return _Probe(False, None, _connect_error(exc))
    except httpx.TimeoutException:
        return _Probe(False, None, f"no HTTP response within {_secs(timeout)}")
    except httpx.HTTPError as exc:  # protocol errors: the port speaks something else than HTTP
        return _Probe(False, None, f"not an HTTP response ({type(exc).__name__})")
    status = response.status_code
    ok = status == 200 if path else status < 500
    return _Probe(ok, status, "")


def _connect_error(exc: httpx.ConnectError) -> str:
    text = str(exc).lower()
    if "refused" in text:
        return "connection refused"
    return f"cannot connect ({exc})" if str(exc) else "cannot connect"


def _died(code: int | None) -> HealthResult:
    if code is None:
        return HealthResult(False, "process exited")
    if code < 0:
        return HealthResult(False, f"process killed by signal {-code}")
    return HealthResult(False, f"process exited with code {code}")


def _secs(seconds: float) -> str:
    if seconds >= 10 or float(seconds).is_integer():
        return f"{seconds:.0f}s"
    return f"{seconds:.1f}s"
