"""Operator settings: BRANCHYARD_* environment variables, cast and checked at start-up."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .cost import Prices, parse_prices
from .errors import BadInput
from .kube_settings import BACKENDS, KubeSettings, load_kube

TLS_MODES = ("off", "internal", "acme")
HSTS_MODES = ("production", "all", "off")
NETWORK_MODES = ("auto", "off")
LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"

_DOMAIN = re.compile(r"^(?=.{1,200}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


@dataclass(frozen=True)
class Acme:
    """Where `acme` mode orders certificates (BRANCHYARD_ACME_*)."""

    ca: str = LETS_ENCRYPT  # the CA's ACME directory URL
    email: str | None = None  # the account's contact (the CA's expiry notices)
    eab_key_id: str | None = None  # External Account Binding, for CAs that require it (ZeroSSL, Google, …)
    eab_mac_key: str | None = field(default=None, repr=False)
    ca_root: Path | None = None  # a PEM file the CA's own HTTPS is checked with (a private CA); None: the system's


@dataclass(frozen=True)
class Settings:
    home: Path
    http_port: int  # the router's (Caddy's) public listener
    api_port: int  # the control plane's HTTP API; 0 picks a free port
    admin_port: int  # Caddy's admin API on loopback
    domain: str
    cache_dir: Path
    python: str  # interpreter for apps that name no Python version (BRANCHYARD_PYTHON; default: the control plane's)
    releases_retained: int = 10  # per environment, for rollback
    postgres_url: str | None = None  # an existing server's admin URL; None: branchyard runs PostgreSQL itself
    github_token: str | None = field(default=None, repr=False)  # GitHub feedback; never printed or logged
    github_api_url: str = "https://api.github.com"
    github_webhook_secret: str | None = None  # BRANCHYARD_GITHUB_WEBHOOK_SECRET: verifies GitHub deliveries
    python_downloads: bool = False  # BRANCHYARD_PYTHON_DOWNLOADS: `uv python install` a Python the machine lacks
    pip_index_url: str | None = None  # BRANCHYARD_PIP_INDEX_URL: the package index builds use, over the app's `-i` lines
    tls: str = "off"  # BRANCHYARD_TLS: off | internal (Caddy's local CA) | acme
    https_port: int = 443  # BRANCHYARD_HTTPS_PORT: the router's TLS listener when tls is not off
    acme: Acme = field(default_factory=Acme)
    hsts: str = "production"  # BRANCHYARD_HSTS: which hosts answer with Strict-Transport-Security (TLS on only)
    control_url: str | None = None  # BRANCHYARD_PUBLIC_URL: the control plane's public URL (API, webhook, git)
    uptime_interval: float = 30.0  # BRANCHYARD_UPTIME_INTERVAL: seconds between probes of a public URL (issue 16)
    alerts_interval: float = 10.0  # BRANCHYARD_ALERTS_INTERVAL: seconds between evaluations of the alert rules
    access_log: bool = True  # BRANCHYARD_ACCESS_LOG: the router logs each environment's requests (off: no http records)
    log_cap_mb: int = 256  # BRANCHYARD_LOG_CAP_MB: an environment's log records on disk, at most (oldest dropped first)
    prices: Prices = field(default_factory=Prices)  # BRANCHYARD_PRICES: `cost`'s price table (a TOML file or k=v,…)
    # BRANCHYARD_TEST_CRON_CLOCK_SPEED, for tests only: the cron scheduler's clock runs this many times faster than the
    # wall clock from the control plane's start (60: a "* * * * *" schedule fires every second). Never in production.
    cron_clock_speed: float = 1.0
    preview_sleep_after: int = 1800  # BRANCHYARD_PREVIEW_SLEEP_AFTER: previews idle this long sleep (0: never; spec/sleep.py)
    network_isolation: str = "auto"  # BRANCHYARD_NETWORK_ISOLATION: auto (a namespace per environment as root) | off
    network_pool: str = "10.231.0.0/16"  # BRANCHYARD_NETWORK_POOL: the environments' /30 networks come from here
    # BRANCHYARD_API_HOST: the address the API listens on. Loopback unless the control plane runs in a cluster (its pods
    # fetch releases and send backups through its Service): "0.0.0.0" there, /metrics then answers whoever reaches it.
    api_host: str = "127.0.0.1"
    backend: str = "local"  # BRANCHYARD_BACKEND: local (this machine) | kubernetes (issue 19; BRANCHYARD_KUBE_*)
    kubernetes: KubeSettings = field(default_factory=KubeSettings)

    @property
    def state_db(self) -> Path:
        return self.home / "state.db"

    @property
    def server_file(self) -> Path:
        return self.home / "server.json"

    @property
    def repos_dir(self) -> Path:
        return self.home / "repos"

    @property
    def releases_dir(self) -> Path:
        return self.home / "releases"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def public_port(self) -> int:
        """The port apps' public URLs use: the HTTPS port with TLS on, else the HTTP port (on Kubernetes the ingress
        controller's: 443 with cert-manager, else 80)."""
        if self.backend == "kubernetes":
            return 443 if self.kubernetes.cluster_issuer else 80
        return self.http_port if self.tls == "off" else self.https_port

    def public_url(self, hostname: str) -> str:
        if self.backend == "kubernetes":  # the cluster's ingress controller serves it, on its default ports
            return f"{'https' if self.kubernetes.cluster_issuer else 'http'}://{hostname}"
        if self.tls == "off":
            return f"http://{hostname}" + ("" if self.http_port == 80 else f":{self.http_port}")
        return f"https://{hostname}" + ("" if self.https_port == 443 else f":{self.https_port}")


def _port(env: dict[str, str], name: str, default: int, *, allow_zero: bool = False) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise BadInput(f"{name}: expected a TCP port number, got {raw!r}") from None
    low = 0 if allow_zero else 1
    if not low <= value <= 65535:
        raise BadInput(f"{name}: expected a TCP port number between {low} and 65535, got {raw!r}")
    return value


def load(env: dict[str, str] | None = None) -> Settings:
    """Read settings from the environment; raise BadInput naming the variable on a bad value."""
    env = dict(os.environ if env is None else env)
    home_raw = env.get("BRANCHYARD_HOME") or str(Path.home() / ".branchyard")
    home = Path(home_raw).expanduser()
    if not home.is_absolute():
        home = Path.cwd() / home
    domain = (env.get("BRANCHYARD_DOMAIN") or "localhost").strip().lower().rstrip(".")
    if not _DOMAIN.match(domain):
        raise BadInput(f"BRANCHYARD_DOMAIN: not a valid domain name: {env.get('BRANCHYARD_DOMAIN')!r}")
    http_port = _port(env, "BRANCHYARD_HTTP_PORT", 8080)
    api_port = _port(env, "BRANCHYARD_API_PORT", 0, allow_zero=True)
    admin_port = _port(env, "BRANCHYARD_CADDY_ADMIN_PORT", 0, allow_zero=True)
    if http_port in (api_port, admin_port):
        raise BadInput(f"BRANCHYARD_HTTP_PORT: {http_port} is also used by another BRANCHYARD_*_PORT setting")
    cache = Path(env.get("BRANCHYARD_CACHE_DIR") or home / "cache").expanduser()
    retained_raw = env.get("BRANCHYARD_RELEASES_RETAINED") or "10"
    try:
        retained = int(retained_raw)
    except ValueError:
        retained = 0
    if retained < 1:
        raise BadInput(f"BRANCHYARD_RELEASES_RETAINED: expected a whole number of releases (at least 1), got {retained_raw!r}")
    python = env.get("BRANCHYARD_PYTHON") or _default_python()
    tls = _choice(env, "BRANCHYARD_TLS", TLS_MODES)
    https_port = _port(env, "BRANCHYARD_HTTPS_PORT", 443)
    if tls != "off" and https_port in (http_port, api_port, admin_port):
        raise BadInput(f"BRANCHYARD_HTTPS_PORT: {https_port} is also used by another BRANCHYARD_*_PORT setting")
    return Settings(
        home=home,
        http_port=http_port,
        api_port=api_port,
        admin_port=admin_port,
        domain=domain,
        cache_dir=cache,
        python=python,
        releases_retained=retained,
        postgres_url=_postgres_url(env.get("BRANCHYARD_POSTGRES_URL")),
        github_token=_github_token(env.get("BRANCHYARD_GITHUB_TOKEN")),
        github_api_url=_github_api_url(env.get("BRANCHYARD_GITHUB_API_URL")),
        github_webhook_secret=env.get("BRANCHYARD_GITHUB_WEBHOOK_SECRET") or None,
        python_downloads=_flag(env, "BRANCHYARD_PYTHON_DOWNLOADS"),
        pip_index_url=_index_url(env.get("BRANCHYARD_PIP_INDEX_URL")),
        tls=tls,
        https_port=https_port,
        acme=_acme(env),
        hsts=_choice(env, "BRANCHYARD_HSTS", HSTS_MODES),
        control_url=_control_url(env.get("BRANCHYARD_PUBLIC_URL")),
        uptime_interval=_interval(env, "BRANCHYARD_UPTIME_INTERVAL", 30.0),
        alerts_interval=_interval(env, "BRANCHYARD_ALERTS_INTERVAL", 10.0),
        access_log=_flag(env, "BRANCHYARD_ACCESS_LOG", default=True),
        log_cap_mb=_positive(env, "BRANCHYARD_LOG_CAP_MB", 256),
        prices=parse_prices(env.get("BRANCHYARD_PRICES")),
        cron_clock_speed=_interval(env, "BRANCHYARD_TEST_CRON_CLOCK_SPEED", 1.0),
        preview_sleep_after=preview_sleep_after(env),
        network_isolation=_choice(env, "BRANCHYARD_NETWORK_ISOLATION", NETWORK_MODES),
        network_pool=(_network_pool(env.get("BRANCHYARD_NETWORK_POOL"))),
        api_host=_api_host(env.get("BRANCHYARD_API_HOST")),
        backend=_choice(env, "BRANCHYARD_BACKEND", BACKENDS),
        kubernetes=load_kube(env),
    )


def preview_sleep_after(env: dict[str, str]) -> int:
    """BRANCHYARD_PREVIEW_SLEEP_AFTER: seconds or "30m" (0: previews never sleep by default)."""
    from .spec.sleep import PREVIEW_SLEEP_AFTER, sleep_after
    from .spec.values import InvalidValue

    raw = env.get("BRANCHYARD_PREVIEW_SLEEP_AFTER")
    if raw is None or raw.strip() == "":
        return PREVIEW_SLEEP_AFTER
    try:
        return sleep_after(raw.strip())
    except InvalidValue as err:
        raise BadInput(f"BRANCHYARD_PREVIEW_SLEEP_AFTER: {err.message}") from None


def _network_pool(raw: str | None) -> str:
    """An IPv4 network holding at least one /30 (an environment's network when isolation is on)."""
    value = (raw or "10.231.0.0/16").strip()
    try:
        pool = ipaddress.IPv4Network(value, strict=True)
    except ValueError as exc:
        raise BadInput(f"BRANCHYARD_NETWORK_POOL: expected an IPv4 network such as 10.231.0.0/16, got {raw!r} ({exc})") from None
    if pool.prefixlen > 30:
        raise BadInput(f"BRANCHYARD_NETWORK_POOL: {raw!r} is smaller than one /30")
    return str(pool)


def _interval(env: dict[str, str], name: str, default: float) -> float:
    """Seconds, from 0.1 to a day (fractions allowed: tests run with short intervals)."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        value = -1.0
    if not 0.1 <= value <= 86400:
        raise BadInput(f"{name}: expected seconds from 0.1 to 86400, got {raw!r}")
    return value


def _choice(env: dict[str, str], name: str, choices: tuple[str, ...]) -> str:
    raw = (env.get(name) or choices[0]).strip().lower()
    if raw not in choices:
        raise BadInput(f"{name}: expected one of {', '.join(choices)}, got {env.get(name)!r}")
    return raw


def _acme(env: dict[str, str]) -> Acme:
    ca = (env.get("BRANCHYARD_ACME_CA") or LETS_ENCRYPT).strip()
    if not re.match(r"^https://[^\s/@]+(/\S*)?$", ca):
        shown = "a URL with credentials (not shown)" if "@" in ca else repr(ca)
        raise BadInput(f"BRANCHYARD_ACME_CA: expected the https:// URL of an ACME directory, got {shown}")
    email = (env.get("BRANCHYARD_ACME_EMAIL") or "").strip() or None
    if email is not None and not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", email):
        raise BadInput(f"BRANCHYARD_ACME_EMAIL: not an e-mail address: {email!r}")
    kid = (env.get("BRANCHYARD_ACME_EAB_KEY_ID") or "").strip() or None
    mac = (env.get("BRANCHYARD_ACME_EAB_MAC_KEY") or "").strip() or None
    if (kid is None) != (mac is None):
        missing = "BRANCHYARD_ACME_EAB_MAC_KEY" if mac is None else "BRANCHYARD_ACME_EAB_KEY_ID"
        raise BadInput(f"{missing}: External Account Binding needs both BRANCHYARD_ACME_EAB_KEY_ID and "
                       "BRANCHYARD_ACME_EAB_MAC_KEY (value not shown)")
    root_raw = (env.get("BRANCHYARD_ACME_CA_ROOT") or "").strip()
    root = Path(root_raw).expanduser() if root_raw else None
    if root is not None and not root.is_file():
        raise BadInput(f"BRANCHYARD_ACME_CA_ROOT: no such file: {root_raw!r}")
    return Acme(ca=ca, email=email, eab_key_id=kid, eab_mac_key=mac, ca_root=root)


def _positive(env: dict[str, str], name: str, default: int) -> int:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise BadInput(f"{name}: expected a whole number of at least 1, got {env.get(name)!r}")
    return int(raw)


def _flag(env: dict[str, str], name: str, *, default: bool = False) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw in ("0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise BadInput(f"{name}: expected 1/true/yes or 0/false/no, got {env.get(name)!r}")


def _index_url(raw: str | None) -> str | None:
    url = (raw or "").strip()
    if not url:
        return None
    if not re.fullmatch(r"(https?|file)://\S+", url):
        raise BadInput(f"BRANCHYARD_PIP_INDEX_URL: expected an http(s):// or file:// URL of a simple index, got {raw!r}")
    return url


def _control_url(raw: str | None) -> str | None:
    """BRANCHYARD_PUBLIC_URL: scheme and host (and port) only, e.g. https://deploy.example.com; None when unset."""
    url = (raw or "").strip()
    if not url:
        return None
    if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?", url):
        shown = "a URL with credentials (not shown)" if "@" in url else repr(raw)
        raise BadInput(f"BRANCHYARD_PUBLIC_URL: expected the control plane's http(s):// URL without a path, like "
                       f"https://deploy.example.com, got {shown}")
    return url.rstrip("/").lower()


def _api_host(raw: str | None) -> str:
    host = (raw or "").strip() or "127.0.0.1"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise BadInput(f"BRANCHYARD_API_HOST: expected an IP address to listen on (127.0.0.1, 0.0.0.0, ::), got {raw!r}") from None
    return host


def _postgres_url(raw: str | None) -> str | None:
    if not raw:
        return None
    if not raw.startswith(("postgres://", "postgresql://")):
        raise BadInput("BRANCHYARD_POSTGRES_URL: expected a postgresql:// URL of a role that can create databases and roles")
    return raw


def _github_token(raw: str | None) -> str | None:
    """The token as given, stripped; None when unset. The message never repeats it."""
    token = (raw or "").strip()
    if not token:
        return None
    if any(c.isspace() or not c.isprintable() for c in token):
        raise BadInput("BRANCHYARD_GITHUB_TOKEN: contains whitespace or control characters (value not shown)")
    return token


def _github_api_url(raw: str | None) -> str:
    """GitHub's REST API base URL (GitHub Enterprise: https://HOST/api/v3), without a trailing slash."""
    url = (raw or "").strip() or "https://api.github.com"
    if not re.fullmatch(r"https?://[^\s/?#@]+(/[^\s?#]*)?", url):
        shown = "a URL with credentials (not shown); the token goes in BRANCHYARD_GITHUB_TOKEN" if "@" in url else repr(raw)
        raise BadInput(f"BRANCHYARD_GITHUB_API_URL: expected an http(s):// URL like https://api.github.com, got {shown}")
    return url.rstrip("/")


def _default_python() -> str:
    import sys

    return sys.executable
