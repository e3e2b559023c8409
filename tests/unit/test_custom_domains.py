"""Custom domains, the pure parts: which names are accepted (exact one-line refusals), the TLS `ask` decision,
a certificate's state in words, the spec's `domains`, and reading Caddy's certificate storage (real PEM files)."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest

from branchyard.backends.local.certificates import CaddyCertificates, CaddyLogErrors, ca_errors, not_after_of
from branchyard.backends.ports import Route
from branchyard.domains import CertificateState, asked_host, certificate_state, may_issue
from branchyard.errors import NameRefused, SpecError
from branchyard.names import custom_domain
from branchyard.spec import load_project

BASE = "apps.example.com"  # BRANCHYARD_DOMAIN: branchyard's generated hosts live under it
AT_LIMIT = ".".join(["a" * 63] * 3) + "." + "b" * 61

# --- names.custom_domain ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("www.example.com", "www.example.com"),
        ("WWW.Example.COM", "www.example.com"),  # lowercase normalised
        ("www.example.com.", "www.example.com"),  # trailing dot (absolute name) stripped
        ("  shop.test  ", "shop.test"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),  # IDN as punycode
        ("a-b.c-d.example", "a-b.c-d.example"),
        ("3com.example", "3com.example"),  # RFC 1123: a label may start with a digit
        ("a" * 63 + ".example", "a" * 63 + ".example"),  # a label at the limit
        (AT_LIMIT, AT_LIMIT),  # 253 characters: at the limit
        ("example.apps.example.com.evil.test", "example.apps.example.com.evil.test"),  # merely contains the base
        ("notapps.example.com", "notapps.example.com"),  # not under the base: a label boundary counts
    ],
)
def test_accepted_domains_are_normalised(value: str, expected: str) -> None:
    assert custom_domain(value, generated_base=BASE) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("bücher.example", "domain 'bücher.example': internationalised names are given in punycode: xn--bcher-kva.example"),
        ("München.DE", "domain 'München.DE': internationalised names are given in punycode: xn--mnchen-3ya.de"),
        ("*.example.com", "domain '*.example.com': wildcard domains are not supported (certificates are issued on demand "
                          "per host name, through an HTTP-01 challenge, which cannot issue wildcards): add each host, "
                          "e.g. www.example.com"),
        ("www.*.example.com", "domain 'www.*.example.com': wildcard domains are not supported (certificates are issued "
                              "on demand per host name, through an HTTP-01 challenge, which cannot issue wildcards): "
                              "add each host, e.g. www.example.com"),
        ("192.0.2.10", "domain '192.0.2.10': an IP address is not a domain: point a host name at this machine and add that"),
        ("2001:db8::1", "domain '2001:db8::1': an IP address is not a domain: point a host name at this machine and add that"),
        ("[::1]", "domain '[::1]': an IP address is not a domain: point a host name at this machine and add that"),
        ("localhost", "domain 'localhost': localhost names only ever reach this machine itself; add a public host name"),
        ("shop.localhost", "domain 'shop.localhost': localhost names only ever reach this machine itself; add a public "
                           "host name"),
        ("yoto.apps.example.com", "domain 'yoto.apps.example.com': hosts under apps.example.com are branchyard's "
                                  "generated ones (BRANCHYARD_DOMAIN)"),
        ("apps.example.com", "domain 'apps.example.com': hosts under apps.example.com are branchyard's generated ones "
                             "(BRANCHYARD_DOMAIN)"),
        ("https://www.example.com", "domain 'https://www.example.com': give a bare host name, without scheme, port or "
                                    "path (e.g. www.example.com)"),
        ("www.example.com:8443", "domain 'www.example.com:8443': give a bare host name, without scheme, port or path "
                                 "(e.g. www.example.com)"),
        ("www.example.com/shop", "domain 'www.example.com/shop': give a bare host name, without scheme, port or path "
                                 "(e.g. www.example.com)"),
        ("shop", "domain 'shop': a single label is not a public host name: give the full name, e.g. www.example.com"),
        ("www..example.com", "domain 'www..example.com': an empty label (two dots in a row, or a leading dot)"),
        (".example.com", "domain '.example.com': an empty label (two dots in a row, or a leading dot)"),
        ("-shop.example.com", "domain '-shop.example.com': label '-shop': use letters, digits and dashes, starting and "
                              "ending with a letter or digit"),
        ("shop-.example.com", "domain 'shop-.example.com': label 'shop-': use letters, digits and dashes, starting and "
                              "ending with a letter or digit"),
        ("my_shop.example.com", "domain 'my_shop.example.com': label 'my_shop': use letters, digits and dashes, "
                                "starting and ending with a letter or digit"),
        ("a" * 64 + ".example", f"domain '{'a' * 64}.example': a label is 64 characters long (at most 63)"),
        ("xn--zz.example", "domain 'xn--zz.example': label 'xn--zz' is not valid punycode"),
        ("www.example.123", "domain 'www.example.123': the last label cannot be all digits"),
        ("", "domain '': give a host name such as www.example.com"),
        ("   ", "domain '   ': give a host name such as www.example.com"),
    ],
)
def test_refused_domains_get_one_line_naming_why(value: str, message: str) -> None:
    with pytest.raises(NameRefused) as err:
        custom_domain(value, generated_base=BASE)
    assert str(err.value) == message
    assert "\n" not in str(err.value)


def test_a_name_longer_than_253_characters_is_refused() -> None:
    assert len(AT_LIMIT) == 253
    name = AT_LIMIT + "b"
    with pytest.raises(NameRefused, match="longer than 253 characters"):
        custom_domain(name)


def test_not_a_string_is_refused() -> None:
    with pytest.raises(NameRefused, match="give a host name"):
        custom_domain(None)  # type: ignore[arg-type]


def test_an_accepted_domain_is_a_valid_route_host() -> None:
    """What passes here must be a host the router takes (backends/ports.py Route), or `domain add` could break routing."""
    for host in ("www.example.com", "xn--bcher-kva.example", "a" * 63 + ".example"):
        Route(host=custom_domain(host), project="yoto", environment="production", upstreams=(), state="unavailable")


# --- the ask decision ------------------------------------------------------------------------------------------

SERVED = frozenset({"yoto.apps.example.com", "yoto-staging.apps.example.com", "yoto-pr-12.apps.example.com",
                    "www.shop.test"})


@pytest.mark.parametrize(
    ("query", "allowed"),
    [
        ("yoto.apps.example.com", True),  # production's generated host
        ("yoto-pr-12.apps.example.com", True),  # a live preview
        ("www.shop.test", True),  # a custom domain
        ("WWW.Shop.Test", True),  # SNI is case-insensitive
        ("www.shop.test.", True),  # an absolute name
        ("yoto-pr-13.apps.example.com", False),  # a preview that does not exist (any more)
        ("shop.test", False),  # the apex of a custom domain is not the custom domain
        ("evil.www.shop.test", False),  # nor is a name under it
        ("apps.example.com", False),  # the base itself serves nothing
        ("*.apps.example.com", False),
        ("127.0.0.1", False),
        ("", False),
        (None, False),  # no ?domain= at all
        ("www.shop.test/../x", False),
        ("www.shop.test\x00", False),
        ("x" * 300, False),
        (["www.shop.test"], False),  # not a string
    ],
)
def test_may_issue_only_for_hosts_the_router_serves(query: object, allowed: bool) -> None:
    assert may_issue(query, SERVED) is allowed


def test_asked_host_normalises_like_the_store() -> None:
    assert asked_host("WWW.Shop.Test.") == "www.shop.test"
    assert asked_host("bücher.example") is None  # Caddy sends SNI names as ASCII (punycode); anything else is not ours


# --- certificate state -----------------------------------------------------------------------------------------

NOW = dt.datetime(2026, 12, 3, 12, 0, 0)
LATER = dt.datetime(2027, 3, 3, 11, 59, 59)
EARLIER = dt.datetime(2026, 11, 30, 0, 0, 0)
CA_ERROR = "HTTP 403 urn:ietf:params:acme:error:unauthorized - Invalid response from http://www.shop.test/.well-known/acme-challenge/x: 404"


@pytest.mark.parametrize(
    ("not_after", "error", "state", "text"),
    [
        (None, None, "pending", "pending"),
        (LATER, None, "issued", "issued until 2027-03-03"),
        (LATER, CA_ERROR, "issued", "issued until 2027-03-03"),  # a failed renewal: the valid certificate still serves
        (None, CA_ERROR, "failed", f"failed: {CA_ERROR}"),
        (None, "line one\n  line two", "failed", "failed: line one line two"),  # one line, whatever the CA sent
        (EARLIER, CA_ERROR, "failed", f"failed: {CA_ERROR}"),
        (EARLIER, None, "failed", "failed: the certificate expired on 2026-11-30 and was not renewed"),
        (NOW, None, "failed", "failed: the certificate expired on 2026-12-03 and was not renewed"),  # notAfter is the end
    ],
)
def test_certificate_state_from_what_the_edge_reports(not_after, error, state: str, text: str) -> None:
    derived = certificate_state(not_after, error, NOW)
    assert (derived.state, derived.text()) == (state, text)


def test_a_stored_state_reads_back_as_the_same_words() -> None:
    assert CertificateState("issued", LATER).text() == "issued until 2027-03-03"
    assert CertificateState("failed", None, None).text() == "failed: unknown error"
    assert CertificateState("pending").text() == "pending"


# --- Caddy's certificate storage -------------------------------------------------------------------------------


def _pem(host: str, not_after: dt.datetime) -> bytes:
    """A real self-signed certificate for `host` valid until `not_after` (what Caddy writes is a PEM chain like it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(not_after - dt.timedelta(days=90))
            .not_valid_after(not_after.replace(tzinfo=dt.timezone.utc))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def _store(root: Path, issuer: str, host: str, not_after: dt.datetime, *, chain: bool = False) -> None:
    where = root / "certificates" / issuer / host
    where.mkdir(parents=True)
    pem = _pem(host, not_after) + (_pem("Some Intermediate CA", not_after + dt.timedelta(days=3650)) if chain else b"")
    (where / f"{host}.crt").write_bytes(pem)
    (where / f"{host}.key").write_text("not read")


def test_caddy_storage_gives_the_latest_not_after_across_issuers_and_roots(tmp_path: Path) -> None:
    edge, routes = tmp_path / "caddy-edge", tmp_path / "caddy"
    _store(edge, "acme-v02.api.letsencrypt.org-directory", "www.shop.test", dt.datetime(2027, 1, 1, 8, 30), chain=True)
    _store(edge, "local", "www.shop.test", dt.datetime(2026, 12, 24, 0, 0))
    _store(routes, "acme.zerossl.com-v2-dv90", "www.shop.test", dt.datetime(2027, 2, 1, 0, 0))
    _store(edge, "local", "other.test", dt.datetime(2027, 6, 1))
    certs = CaddyCertificates([edge, routes, tmp_path / "absent"])
    status = certs.certificate("www.shop.test")
    assert status is not None
    assert (status.not_after, status.issuer, status.error) == (dt.datetime(2027, 2, 1, 0, 0), "acme.zerossl.com-v2-dv90", None)
    assert certs.certificate("nothing.test") is None
    # the leaf comes first in Caddy's PEM chain: its notAfter is the one read, not the intermediate's
    assert not_after_of(edge / "certificates" / "acme-v02.api.letsencrypt.org-directory" / "www.shop.test" /
                        "www.shop.test.crt") == dt.datetime(2027, 1, 1, 8, 30)


def test_an_unreadable_certificate_file_counts_as_none(tmp_path: Path) -> None:
    where = tmp_path / "certificates" / "local" / "bad.test"
    where.mkdir(parents=True)
    (where / "bad.test.crt").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    assert CaddyCertificates([tmp_path]).certificate("bad.test") is None


def test_the_error_hook_reports_the_cas_refusal(tmp_path: Path) -> None:
    _store(tmp_path, "local", "old.test", dt.datetime(2027, 1, 1))
    errors = {"www.shop.test": CA_ERROR, "old.test": "rate limited"}
    certs = CaddyCertificates([tmp_path], errors=errors.get)
    failed = certs.certificate("www.shop.test")
    assert failed is not None and (failed.not_after, failed.error) == (None, CA_ERROR)
    renewing = certs.certificate("old.test")
    assert renewing is not None and (renewing.not_after, renewing.error) == (dt.datetime(2027, 1, 1), "rate limited")
    assert certificate_state(failed.not_after, failed.error, NOW).text() == f"failed: {CA_ERROR}"


# --- branchyard.toml domains = [...] ---------------------------------------------------------------------------


def _spec(root: Path, toml: str):
    (root / "branchyard.toml").write_text(textwrap.dedent(toml).lstrip("\n"))
    return load_project(root)


def _spec_error(root: Path, toml: str) -> str:
    with pytest.raises(SpecError) as err:
        _spec(root, toml)
    return str(err.value)


def test_spec_domains_are_per_environment_normalised_and_not_inherited(tmp_path: Path) -> None:
    spec = _spec(tmp_path, """
        [project]
        name = "shop"

        [environments.production]
        branch = "main"
        domains = ["WWW.Shop.Test.", "shop.test"]

        [environments.staging]
        branch = "develop"
        base = "production"
    """)
    assert spec.environments["production"].domains == ("www.shop.test", "shop.test")
    assert spec.environments["staging"].domains == ()  # a base shares config, never its domains


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('domains = ["*.shop.test"]', "branchyard.toml: environments.production.domains: domain '*.shop.test': wildcard "
         "domains are not supported (certificates are issued on demand per host name, through an HTTP-01 challenge, "
         "which cannot issue wildcards): add each host, e.g. www.example.com (line 5)"),
        ('domains = ["bücher.example"]', "branchyard.toml: environments.production.domains: domain 'bücher.example': "
         "internationalised names are given in punycode: xn--bcher-kva.example (line 5)"),
        ('domains = "www.shop.test"', 'branchyard.toml: environments.production.domains: expected a list of host names, '
         'e.g. ["www.example.com"], got "www.shop.test" (line 5)'),
        ('domains = ["www.shop.test", "WWW.shop.test"]', "branchyard.toml: environments.production.domains: "
         "www.shop.test is listed twice (line 5)"),
    ],
)
def test_spec_domain_errors_are_located(tmp_path: Path, extra: str, message: str) -> None:
    toml = f"""
        [project]
        name = "shop"

        [environments.production]
        {extra}
    """
    assert _spec_error(tmp_path, toml) == message


def test_a_domain_declared_twice_in_the_file_names_the_first_environment(tmp_path: Path) -> None:
    message = _spec_error(tmp_path, """
        [project]
        name = "shop"

        [environments.production]
        domains = ["www.shop.test"]

        [environments.staging]
        domains = ["www.shop.test"]
    """)
    assert message == ("branchyard.toml: environments.staging.domains: www.shop.test is already a domain of "
                       "environment 'production' (line 8)")


def test_the_pr_template_takes_no_domains(tmp_path: Path) -> None:
    message = _spec_error(tmp_path, """
        [project]
        name = "shop"

        [environments.production]

        [environments.pr]
        domains = ["preview.shop.test"]
    """)
    assert message == ("branchyard.toml: environments.pr.domains: previews get generated hosts only: a custom domain "
                       "belongs to one persistent environment (line 7)")


# --- the CA's errors, from Caddy's log ---------------------------------------------------------------------------

# Two lines Caddy 2.11 wrote when a CA refused an on-demand order for www.shop.test (captured from a real run).
REFUSED = [
    ('{"level":"error","ts":1796278288.4706397,"logger":"tls.obtain","msg":"could not get certificate from issuer","'
     'identifier":"www.shop.test","issuer":"127.0.0.1:18915-directory","error":"HTTP 400 urn:ietf:params:acme:error:'
     'rejectedIdentifier - Error creating new order :: Cannot issue for \\"www.shop.test\\": Domain name does not end '
     'with a valid public suffix (TLD)"}'),
    ('{"level":"error","ts":1796278288.4706662,"logger":"tls.obtain","msg":"will retry","error":"[www.shop.test] Obt'
     'ain: registering account [] with server: provisioning client: HTTP 400 urn:ietf:params:acme:error:rejectedIden'
     'tifier - Error creating new order :: Cannot issue for \\"www.shop.test\\": Domain name does not end with a valid'
     ' public suffix (TLD)","attempt":1,"retrying_in":60,"elapsed":0.003441417,"max_duration":2592000}'),
]
REFUSAL = ('HTTP 400 urn:ietf:params:acme:error:rejectedIdentifier - Error creating new order :: Cannot issue for '
           '"www.shop.test": Domain name does not end with a valid public suffix (TLD)')
OBTAINED = ('{"level":"info","ts":1796278390.1,"logger":"tls.obtain","msg":"certificate obtained successfully",'
            '"identifier":"www.shop.test","issuer":"acme-v02.api.letsencrypt.org-directory"}')


def test_ca_errors_takes_the_cas_words_from_caddys_log() -> None:
    assert ca_errors(REFUSED) == {"www.shop.test": REFUSAL}
    assert ca_errors([*REFUSED, OBTAINED]) == {}  # a later success clears it
    assert ca_errors([OBTAINED, *REFUSED]) == {"www.shop.test": REFUSAL}
    noise = ['{"level":"info","msg":"server running"}', "cut line: could not get certificate from issuer",
             '{"msg":"could not get certificate from issuer","identifier":42,"error":"x"}', ""]
    assert ca_errors(noise) == {}


def test_caddy_log_errors_reads_every_tiers_log_and_sees_new_lines(tmp_path: Path) -> None:
    edge, routes = tmp_path / "edge.log", tmp_path / "caddy.log"
    edge.write_text("\n".join(REFUSED) + "\n")
    hook = CaddyLogErrors([edge, routes, tmp_path / "absent.log"])
    assert hook("www.shop.test") == REFUSAL
    assert hook("other.test") is None
    with edge.open("a") as f:
        f.write(OBTAINED + "\n")
    assert hook("www.shop.test") is None
    certs = CaddyCertificates([tmp_path / "storage"], errors=CaddyLogErrors([edge]))
    edge.write_text(REFUSED[0] + "\n")
    status = certs.certificate("www.shop.test")
    assert status is not None and (status.not_after, status.error) == (None, REFUSAL)
    assert certificate_state(status.not_after, status.error, NOW).text() == f"failed: {REFUSAL}"
