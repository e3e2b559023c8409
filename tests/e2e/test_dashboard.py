"""The web dashboard (issue 18) on the example app, with a real control plane behind its edge (Caddy) and a real
browser: Debian's chromium driven by Playwright (`executable_path`, nothing downloaded).

Signed in as the machine's admin: the board shows production and staging; production's page rolls back and the
router serves the previous commit; a promotion is planned in the browser, approved by a second user in a browser of
their own, confirmed with the typed word, and followed to its success. Screenshots of the board and the promotion
page are saved in BRANCHYARD_TEST_ARTIFACTS (default: test-artifacts/ at the repository's root).

Without a browser (plain HTTP, as a script or an attacker would): a viewer sees no Rollback button and the post is
refused anyway; no secret value appears in any page the dashboard serves; sign-out revokes the session; the cookie's
flags, Secure behind TLS.
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

import httpx
import pytest
from conftest import free_port, new_home, start_plane, stop_plane, wait_for
from test_previews_rules import SECRET, branch_commit, decided, opened, preview, tiny_project  # a fork's pull request

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("BRANCHYARD_TEST_ARTIFACTS") or Path(__file__).resolve().parents[2] / "test-artifacts")
PROJECT = "dash"
CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')
DASHBOARD_SECRET = "dashboard-typed-secret-9f3c1e"


@pytest.fixture(scope="module")
def site(tmp_path_factory, venv_cache):
    """The control plane with its public URL on the edge (deploy.localhost, which browsers resolve to loopback), the
    example app's production (two pushes of main: v1, v2) and staging (develop: v3), one approval for production."""
    port = free_port()
    public = f"http://deploy.localhost:{port}"
    plane = start_plane(new_home(), venv_cache, http_port=port, extra_env={
        "BRANCHYARD_PUBLIC_URL": public, "BRANCHYARD_GITHUB_WEBHOOK_SECRET": SECRET})
    try:
        plane.api_url = plane.json("server", "status")["api_url"]  # where GitHub's deliveries go (webhooks.deliver)
        tmp = tmp_path_factory.mktemp("dash")
        repo = plane.app_repo(tmp, "app", project=PROJECT)
        toml = repo / "branchyard.toml"
        toml.write_text(toml.read_text().replace("approvals = 2", "approvals = 1", 1))
        v1 = plane.commit(repo, "v1: one approval")
        plane.git(repo, "push", "branchyard", "main")
        (repo / "CHANGELOG").write_text("v2\n")
        v2 = plane.commit(repo, "v2")
        plane.git(repo, "push", "branchyard", "main")
        plane.git(repo, "checkout", "--quiet", "-b", "develop")
        (repo / "CHANGELOG").write_text("v3\n")
        v3 = plane.commit(repo, "v3 on develop")
        plane.git(repo, "push", "branchyard", "develop")
        admin = (plane.home / "token").read_text().strip()
        bob = plane.json("users", "add", "bob", "--role", "member")["token"]
        vera = plane.json("users", "add", "vera", "--role", "viewer")["token"]
        yield {"plane": plane, "repo": repo, "public": public, "commits": (v1, v2, v3),
               "tokens": {"admin": admin, "bob": bob, "vera": vera}}
    finally:
        stop_plane(plane)


def served_commit(plane, env: str) -> str | None:
    host = f"{PROJECT}.localhost" if env == "production" else f"{PROJECT}-{env}.localhost"
    try:
        response = plane.get(host, "/health")
    except httpx.HTTPError:
        return None
    return response.json().get("commit") if response.status_code == 200 else None


def signed_in(public: str, token: str) -> httpx.Client:
    """A plain HTTP client signed in through the sign-in form (as a browser does), through the edge (Python's resolver
    does not map *.localhost to loopback as browsers do: the edge's address, the public host in the Host header)."""
    host = public.split("://", 1)[1]
    client = httpx.Client(base_url=f"http://127.0.0.1:{host.rsplit(':', 1)[1]}", headers={"Host": host},
                          trust_env=False, timeout=60, follow_redirects=False)
    form = client.get("/login")
    done = client.post("/login", data={"token": token, "csrf": CSRF.search(form.text).group(1), "next": "/"})
    assert done.status_code == 303 and done.headers["location"] == "/", done.text
    return client


def csrf_of(page: httpx.Response) -> str:
    return CSRF.search(page.text).group(1)


# --- in a real browser ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: the test prerequisites install Debian's chromium (scripts/lib/prereqs.sh)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def sign_in(browser, public: str, token: str):
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # the buttons' "are you sure?" (data-confirm)
    page.goto(public + "/")
    assert page.url.startswith(public + "/login?next=")  # no session: to sign-in first
    page.fill("#token", token)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(public + "/")
    return page


def test_rollback_and_a_promotion_in_the_browser(site, browser) -> None:
    plane, public, (v1, v2, v3) = site["plane"], site["public"], site["commits"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    admin = sign_in(browser, public, site["tokens"]["admin"])

    # the board: production and staging, each with its branch, commit, replicas, data services
    prod_card = admin.locator("li.card[data-env='production']")
    staging_card = admin.locator("li.card[data-env='staging']")
    assert "main" in prod_card.inner_text() and v2[:12] in prod_card.inner_text()
    assert "develop" in staging_card.inner_text() and v3[:12] in staging_card.inner_text()
    assert "2/2" in prod_card.inner_text() and "postgres, redis" in prod_card.inner_text()
    assert "SUCCESS" in prod_card.inner_text()  # the word, not only a colour
    admin.screenshot(path=str(ARTIFACTS / "dashboard-board.png"), full_page=True)
    phone = admin.context.new_page()  # the same session on a phone's screen: nothing wider than the screen
    phone.set_viewport_size({"width": 390, "height": 844})
    for path in ("/", f"/projects/{PROJECT}/environments/production"):
        phone.goto(public + path)
        wider = phone.evaluate("""() => [...document.querySelectorAll('body *')]
            .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1
                    && !(e.parentElement && e.parentElement.getBoundingClientRect().right > window.innerWidth + 1))
            .map(e => e.tagName + '.' + e.className + ': ' + (e.textContent || '').slice(0, 60))""")
        assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), (path, wider[:5])
    phone.screenshot(path=str(ARTIFACTS / "dashboard-environment-phone.png"), full_page=True)
    phone.close()

    # production's page: roll back; the router serves the previous commit
    admin.click("li.card[data-env='production'] h3 a")
    admin.wait_for_url(f"{public}/projects/{PROJECT}/environments/production")
    admin.locator("#log-state", has_text="Live").wait_for(timeout=60_000)  # new log lines arrived (server-sent)
    for _ in range(40):  # by keyboard alone: Tab to the button, Enter (the "are you sure?" is accepted)
        admin.keyboard.press("Tab")
        if admin.evaluate("document.activeElement.textContent.trim()") == "Rollback to the previous deployment":
            break
    else:
        raise AssertionError("the Rollback button cannot be reached with Tab")
    admin.keyboard.press("Enter")
    admin.wait_for_url(f"{public}/projects/{PROJECT}/environments/production")
    assert "rollback queued" in admin.locator(".flash").inner_text()
    wait_for(lambda: served_commit(plane, "production") == v1, timeout=240)
    admin.reload()
    current = admin.locator("tr.current")
    assert "rollback" in current.inner_text() and v1[:12] in current.inner_text()
    assert "web memory" in admin.locator("ul.metrics").inner_text()  # the sampler's series, as sparklines

    # a promotion: planned by the admin, approved by bob in his own browser, confirmed by the admin
    admin.goto(f"{public}/projects/{PROJECT}/promotions")
    admin.click("text=Plan the promotion")
    admin.wait_for_url(re.compile(re.escape(public) + r"/promotions/[0-9a-f-]+$"), timeout=300_000)
    promotion_url = admin.url
    promo_id = promotion_url.rsplit("/", 1)[1]
    api_promo = httpx.get(f"{plane.json('server', 'status')['api_url']}/api/promotions/{promo_id}",
                          headers={"Authorization": f"Bearer {site['tokens']['admin']}"}, trust_env=False).json()
    from branchyard.promotion_text import plan_lines

    shown = admin.locator("#plan").inner_text()
    assert shown.startswith("\n".join(plan_lines(api_promo)))  # exactly what `branchyard promote` prints
    assert "PASS  " in shown and "approvals" in shown and "staging → production" in shown
    assert admin.locator("form[action$='/approve']").count() == 0  # who planned it cannot approve (preventSelfReview)
    assert "admin planned this promotion" in admin.locator("#approval-note").inner_text()

    bob = sign_in(browser, public, site["tokens"]["bob"])
    bob.goto(promotion_url)
    bob.click("form[action$='/approve'] button")
    bob.wait_for_url(promotion_url)
    assert "approved by bob" in bob.locator(".flash").inner_text()

    admin.goto(promotion_url)
    admin.fill("#confirm", "PROMOTE")
    admin.click("form.confirm button")
    admin.wait_for_url(promotion_url)
    admin.locator("#promotion-state .badge", has_text="SUCCESS").wait_for(timeout=300_000)  # the page reloads itself
    assert "approved by   bob" in admin.locator("#plan").inner_text()
    admin.screenshot(path=str(ARTIFACTS / "dashboard-promotion.png"), full_page=True)
    assert served_commit(plane, "production") == v3

    admin.goto(public + "/")
    assert v3[:12] in admin.locator("li.card[data-env='production']").inner_text()
    admin.context.close()
    bob.context.close()


# --- plain HTTP ----------------------------------------------------------------------------------------------


def test_a_viewer_sees_no_rollback_button_and_the_post_is_refused_anyway(site) -> None:
    plane, public = site["plane"], site["public"]
    before = plane.json("deployments", "-e", "staging", cwd=site["repo"])
    vera = signed_in(public, site["tokens"]["vera"])
    for env in ("production", "staging"):
        page = vera.get(f"/projects/{PROJECT}/environments/{env}")
        assert page.status_code == 200 and "Deployments" in page.text
        assert "/rollback" not in page.text and "/redeploy" not in page.text and 'name="value"' not in page.text
    page = vera.get(f"/projects/{PROJECT}/environments/staging")
    refused = vera.post(f"/projects/{PROJECT}/environments/staging/rollback", data={"csrf": csrf_of(page)})
    assert refused.status_code == 403
    assert "permission &#39;deploy&#39; needs role member; vera is viewer" in refused.text
    assert plane.json("deployments", "-e", "staging", cwd=site["repo"]) == before  # nothing queued

    # a member: staging's buttons, none in protected production (admins only), as the API decides
    bob = signed_in(public, site["tokens"]["bob"])
    assert "/rollback" in bob.get(f"/projects/{PROJECT}/environments/staging").text
    prod = bob.get(f"/projects/{PROJECT}/environments/production")
    assert "/rollback" not in prod.text
    refused = bob.post(f"/projects/{PROJECT}/environments/production/rollback", data={"csrf": csrf_of(prod)})
    assert refused.status_code == 403 and "in protected environment production needs role admin" in html.unescape(refused.text)


def test_no_secret_value_appears_in_any_page(site) -> None:
    plane, public = site["plane"], site["public"]
    admin = signed_in(public, site["tokens"]["admin"])
    # a secret set through the dashboard's own form (never rendered back)
    page = admin.get(f"/projects/{PROJECT}/environments/staging")
    done = admin.post(f"/projects/{PROJECT}/environments/staging/variables",
                      data={"csrf": csrf_of(page), "key": "DASH_TOKEN", "value": DASHBOARD_SECRET, "secret": "on",
                            "skip_deploys": "on"})
    assert done.status_code == 303, done.text
    api = plane.json("server", "status")["api_url"]
    revealed = {env: httpx.post(f"{api}/api/projects/{PROJECT}/environments/{env}/variables/reveal", trust_env=False,
                                headers={"Authorization": f"Bearer {site['tokens']['admin']}"}).json()["variables"]
                for env in ("production", "staging")}
    secrets = {DASHBOARD_SECRET}
    for values in revealed.values():
        for key in ("YOTO_CLIENT_SECRET", "YOTO_CLIENT_ID", "SENTRY_DSN", "SENTRY_DSN_STAGING", "DASH_TOKEN"):
            if values.get(key):
                secrets.add(values[key])
        for key in ("DATABASE_URL", "REDIS_URL"):  # the passwords inside the URLs
            password = re.search(r"://[^:/]+:([^@]+)@", values.get(key) or "")
            if password:
                secrets.add(password.group(1))
    assert revealed["staging"]["DASH_TOKEN"] == DASHBOARD_SECRET  # the form did set it
    assert len(secrets) >= 8

    pages = ["/", f"/projects/{PROJECT}", f"/projects/{PROJECT}/promotions", f"/projects/{PROJECT}/previews"]
    for env in ("production", "staging"):
        base = f"/projects/{PROJECT}/environments/{env}"
        pages += [base, base + "?level=info", base + "?level=error"]
    promotions = admin.get(f"/projects/{PROJECT}/promotions").text
    pages += sorted(set(re.findall(r'href="(/promotions/[0-9a-f-]+)"', promotions)))
    for path in pages:
        response = admin.get(path)
        assert response.status_code == 200, (path, response.status_code)
        text = html.unescape(response.text)
        leaked = [s for s in secrets if s in text]
        assert not leaked, f"{path} shows secret values"
    stream = admin.get(f"/projects/{PROJECT}/environments/staging/logs/stream?cursor=0")
    assert stream.status_code == 200 and not [s for s in secrets if s in stream.text]


def test_sign_out_revokes_the_session_and_the_cookie_flags(site) -> None:
    plane, public = site["plane"], site["public"]
    client = signed_in(public, site["tokens"]["bob"])
    cookie = next(c for c in client.cookies.jar if c.name == "branchyard_session")
    assert cookie.has_nonstandard_attr("HttpOnly") and not cookie.secure and cookie.path == "/"
    board = client.get("/")
    assert board.status_code == 200 and "bob" in board.text
    tokens = plane.as_user(site["tokens"]["bob"]).json("tokens", "list")
    token_id = cookie.value.split(".")[0]  # the cookie: the session token's id, then the token
    session = [t for t in tokens if t["id"] == token_id]
    assert session and session[0]["name"] == "dashboard session" and session[0]["state"] == "active"
    assert session[0]["expires_at"] is not None  # a session expires (12 h)
    out = client.post("/logout", data={"csrf": csrf_of(board)})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    client.cookies.set("branchyard_session", cookie.value)  # the old cookie, replayed: revoked
    again = client.get("/")
    assert again.status_code == 303 and again.headers["location"].startswith("/login")
    states = {t["id"]: t["state"] for t in plane.as_user(site["tokens"]["bob"]).json("tokens", "list")}
    assert states[session[0]["id"]] == "revoked"

    # behind TLS (the edge says so in X-Forwarded-Proto, trusted from loopback) the cookie is Secure
    api = plane.json("server", "status")["api_url"]
    behind_tls = httpx.Client(base_url=api, trust_env=False, headers={"X-Forwarded-Proto": "https"})
    form = behind_tls.get("/login")
    # the sign-in nonce's cookie: Secure, and `__Host-` (no sibling host may plant one); sent back by hand (this is http)
    assert form.headers["set-cookie"].startswith("__Host-branchyard_login=") and "Secure" in form.headers["set-cookie"]
    nonce = form.cookies["__Host-branchyard_login"]
    behind_tls.cookies.clear()
    planted = behind_tls.post("/login", data={"token": site["tokens"]["bob"], "csrf": csrf_of(form)},
                              headers={"Cookie": f"branchyard_login={nonce}"})  # the unprefixed name counts for nothing
    assert planted.status_code == 403
    done = behind_tls.post("/login", data={"token": site["tokens"]["bob"], "csrf": csrf_of(form)},
                           headers={"Cookie": f"__Host-branchyard_login={nonce}"})
    assert done.status_code == 303
    session = next(h for h in done.headers.get_list("set-cookie") if "branchyard_session" in h)
    assert session.startswith("__Host-branchyard_session=") and "Secure" in session and "HttpOnly" in session
    assert "Path=/" in session and "Domain" not in session
    page = behind_tls.get("/", headers={"Cookie": session.split(";")[0]})
    assert page.status_code == 200 and "bob" in page.text
    unprefixed = behind_tls.get("/", headers={"Cookie": "branchyard_session=" + session.split(";")[0].split("=", 1)[1]})
    assert unprefixed.status_code == 303  # over HTTPS only the __Host- cookie is a session


def test_a_forks_preview_waits_on_the_previews_page_and_a_member_approves_it(site, tmp_path) -> None:
    plane, public = site["plane"], site["public"]
    repo, base = tiny_project(plane, tmp_path, "forks")
    fork = branch_commit(plane, repo, "feature/2", "from-a-fork")
    plane.git(repo, "push", "--quiet", "upstream", f"{fork}:refs/pull/2/head")  # where GitHub keeps fork heads
    plane.git(repo, "push", "--quiet", "upstream", ":feature/2")
    opened(plane, "forks", 2, fork, base, head_repository="stranger/forks")
    decided(plane, repo, "pr-2", "pending_approval")

    vera = signed_in(public, site["tokens"]["vera"])
    page = vera.get("/projects/forks/previews")
    assert page.status_code == 200 and "#2" in page.text and "pending approval" in page.text
    assert "previews approve" in html.unescape(page.text)  # why it waits, in the API's words
    assert "/previews/2/approve" not in page.text  # a viewer cannot approve
    refused = vera.post("/projects/forks/previews/2/approve", data={"csrf": csrf_of(page)})
    assert refused.status_code == 403 and preview(plane, repo, "pr-2")["approved_sha"] is None

    bob = signed_in(public, site["tokens"]["bob"])
    page = bob.get("/projects/forks/previews")
    assert 'action="/projects/forks/previews/2/approve"' in page.text
    done = bob.post("/projects/forks/previews/2/approve", data={"csrf": csrf_of(page)})
    assert done.status_code == 303 and done.headers["location"] == "/projects/forks/previews"
    assert preview(plane, repo, "pr-2")["approved_sha"] == fork
    events = plane.json("events", "-e", "pr-2", cwd=repo)
    assert any(e["kind"] == "preview.approved" and e["actor"] == "bob" for e in events)
    decided(plane, repo, "pr-2", "deploy")  # admitted: the preview loop takes it from here
