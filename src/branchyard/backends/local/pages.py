"""The router's own HTML pages (sleeping, unavailable, not found, upstream error, routes tier down): small, no assets.

Every page is a static_response body, and Caddy expands `{placeholders}` in it, so all text that
comes from us is HTML-escaped *and* has its braces turned into entities; only the placeholders we
put in on purpose (the request host, the error status) survive as placeholders.
"""

from __future__ import annotations

import html

# The request host without its port. Go's HTTP server refuses Host headers containing <, >, " or
# spaces (400), so this placeholder cannot inject markup into the page.
HOST_PLACEHOLDER = "{http.request.host}"
ERROR_STATUS_PLACEHOLDER = "{http.error.status_code}"
ERROR_TEXT_PLACEHOLDER = "{http.error.status_text}"

_STYLE = (
    "body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#222}"
    "h1{font-size:1.4em}code{background:#f2f2f2;padding:.1em .3em;border-radius:3px}"
    "small{color:#777}"
)


def literal(text: str) -> str:
    """Escape `text` for HTML and hide its braces from Caddy's placeholder expansion."""
    return html.escape(text, quote=True).replace("{", "&#123;").replace("}", "&#125;")


def _page(title: str, body_html: str) -> str:
    # CSS is raw text inside <style> (entities would not decode there), so its braces get Caddy's
    # own escape instead: the replacer turns `\{` into a literal `{`.
    style = _STYLE.replace("{", "\\{").replace("}", "\\}")
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{title}</title><style>{style}</style></head>\n"
        f"<body>\n{body_html}\n<p><small>branchyard</small></p>\n</body></html>\n"
    )


def sleeping_page(project: str, environment: str) -> str:
    """503 body for an environment that has been put to sleep."""
    env, proj = literal(environment), literal(project)
    return _page(
        f"{env} ({proj}) is sleeping",
        f"<h1>Environment &#39;{env}&#39; of {proj} is sleeping</h1>\n"
        f"<p>Wake it up with <code>branchyard up -e {env}</code>, then reload this page.</p>",
    )


def unavailable_page(project: str, environment: str) -> str:
    """503 body for an environment with no healthy deployment yet."""
    env, proj = literal(environment), literal(project)
    return _page(
        f"{env} ({proj}) is not available",
        f"<h1>Environment &#39;{env}&#39; of {proj} is not available yet</h1>\n"
        "<p>It has no healthy deployment at the moment. If a deploy is running, this page will be "
        "replaced by the app as soon as it passes its health check.</p>",
    )


def not_found_page() -> str:
    """404 body for a host no environment claims; names the host through Caddy's placeholder."""
    return _page(
        "No branchyard environment here",
        f"<h1>No branchyard environment at host <code>{HOST_PLACEHOLDER}</code></h1>\n"
        "<p>Check the address, or list environments with <code>branchyard status</code>.</p>",
    )


def upstream_error_page() -> str:
    """Body for errors raised while handling a request (e.g. 502 when no app process answers)."""
    return _page(
        f"{ERROR_STATUS_PLACEHOLDER} {ERROR_TEXT_PLACEHOLDER}",
        f"<h1>{ERROR_STATUS_PLACEHOLDER} {ERROR_TEXT_PLACEHOLDER}</h1>\n"
        f"<p>The environment at host <code>{HOST_PLACEHOLDER}</code> did not answer. "
        "It may be restarting; try again in a moment.</p>",
    )


def routes_tier_unavailable_page() -> str:
    """The edge's error body when the routes tier does not answer (502 after retrying for a few seconds)."""
    return _page(
        "branchyard router: routes tier unavailable",
        f"<h1>{ERROR_STATUS_PLACEHOLDER} branchyard router: routes tier unavailable</h1>\n"
        f"<p>The router accepted the request for <code>{HOST_PLACEHOLDER}</code> but its routes tier is "
        "not answering. The branchyard control plane restarts it within seconds while it runs "
        "(<code>branchyard server</code>); try again in a moment.</p>",
    )
