"""Pure parts of the relying party: Microsoft's tenant-aware issuer, the acr/amr mapping, and
which upstream URLs are acceptable."""
from __future__ import annotations

import pytest

from idp.federation.client import check_error, expected_issuer, is_own_issuer
from idp.federation.errors import IssuerMismatch, UpstreamDenied
from idp.federation.flow import assurance
from idp.federation.providers import ProviderRejected, check_url, microsoft_issuer
from idp.models import UpstreamProvider

TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"
MULTI = {"issuer": "https://login.microsoftonline.com/{tenantid}/v2.0"}


def microsoft(issuer: str) -> UpstreamProvider:
    return UpstreamProvider(id="ms", kind="microsoft", issuer=issuer)


def test_multi_tenant_microsoft_expects_the_issuer_of_the_tokens_tenant():
    provider = microsoft(microsoft_issuer("common"))
    assert expected_issuer(provider, MULTI, {"tid": TENANT}) == f"https://login.microsoftonline.com/{TENANT}/v2.0"


@pytest.mark.parametrize("claims", [{}, {"tid": ""}, {"tid": 5}, {"tid": "a/b"}])
def test_multi_tenant_microsoft_without_a_usable_tid_is_a_mix_up(claims):
    with pytest.raises(IssuerMismatch):
        expected_issuer(microsoft(microsoft_issuer("common")), MULTI, claims)


def test_a_single_tenant_issuer_is_taken_as_it_is():
    issuer = microsoft_issuer(TENANT)
    assert expected_issuer(microsoft(issuer), {"issuer": issuer}, {"tid": "another"}) == issuer


def test_only_the_template_of_microsoft_is_filled_in():
    oidc = UpstreamProvider(id="x", kind="oidc", issuer="https://x.example")
    assert expected_issuer(oidc, {"issuer": "https://x.example/{tenantid}"}, {"tid": TENANT}) == \
        "https://x.example/{tenantid}"


@pytest.mark.parametrize("tenant,discovered,accepted", [
    ("contoso.onmicrosoft.com", f"https://login.microsoftonline.com/{TENANT}/v2.0", True),
    ("contoso.onmicrosoft.com", MULTI["issuer"], False),
    ("organizations", MULTI["issuer"], True),
    ("common", MULTI["issuer"], True),
    ("consumers", f"https://login.microsoftonline.com/{TENANT}/v2.0", True),
    (TENANT, f"https://login.microsoftonline.com/{TENANT}/v2.0", True),
    (TENANT, "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/v2.0", False),
    (TENANT, MULTI["issuer"], False),
    ("organizations", f"https://evil.example/{TENANT}/v2.0", False),
    ("organizations", None, False),
])
def test_microsoft_discovery_issuer_forms(tenant, discovered, accepted):
    assert is_own_issuer(microsoft(microsoft_issuer(tenant)), discovered) is accepted


def test_other_kinds_accept_only_the_configured_issuer():
    oidc = UpstreamProvider(id="x", kind="oidc", issuer="https://x.example")
    assert is_own_issuer(oidc, "https://x.example") and not is_own_issuer(oidc, "https://x.example/")
    assert not is_own_issuer(oidc, f"https://login.microsoftonline.com/{TENANT}/v2.0")


def test_assurance_defaults_to_the_password_level_and_fed():
    assert assurance({}, {"acr": "urn:upstream:gold", "amr": ["mfa", "otp"]}) == ("urn:idp:acr:pwd", ["fed"])


def test_assurance_keeps_only_mapped_upstream_amr_values():
    mapping = {"amr": {"otp": "urn:idp:acr:pwd"}, "acr": {"gold": "urn:not:ours"}}
    assert assurance(mapping, {"acr": "gold", "amr": ["otp", "hwk", 7]}) == ("urn:idp:acr:pwd", ["fed", "otp"])
    assert assurance(mapping, {"amr": "otp"}) == ("urn:idp:acr:pwd", ["fed"])  # amr must be a list


@pytest.mark.parametrize("url", ["http://idp.example", "ftp://idp.example", "https://user@idp.example", "",
                                 "https://idp.example/#x", "/relative"])
def test_upstream_urls_must_be_https_except_on_loopback(url):
    with pytest.raises(ProviderRejected):
        check_url(url, "issuer")


@pytest.mark.parametrize("url", ["https://idp.example", "http://127.0.0.1:8080", "http://localhost:9", "http://[::1]:5"])
def test_https_and_loopback_urls_are_accepted(url):
    assert check_url(url, "issuer") == url


def test_an_upstream_error_code_is_kept_only_when_it_looks_like_one():
    with pytest.raises(UpstreamDenied) as denied:
        check_error({"error": "access_denied"})
    assert denied.value.error == "access_denied"
    with pytest.raises(UpstreamDenied) as odd:
        check_error({"error": "<script>alert(1)</script>"})
    assert odd.value.error == "invalid"
    check_error({"code": "x"})  # no error: nothing raised
