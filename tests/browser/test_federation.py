"""Sign-in through an upstream in Chromium: the "Continue with ..." button on our sign-in page
takes the browser to the upstream (a second instance of our own app, the federation tests'
`upstream`), whose sign-in form (resuming the upstream's pending request: no form-action) answers
our callback, and on through our consent page to the client."""
from __future__ import annotations

import pytest

from tests.federation.conftest import make_provider, upstream  # noqa: F401  (the federation tests' upstream)
from tests.helpers.rp import RelyingParty, verify_id_token

pytestmark = pytest.mark.browser


def test_the_upstream_button_signs_in_there_and_comes_back_to_the_client(
        live_server, upstream, make_provider, make_client, stand_in_client, browser_page):  # noqa: F811
    page, watch = browser_page
    provider_id = make_provider(upstream=upstream, allow_registration=True)
    person = upstream.make_user()
    client_app = stand_in_client()
    client = make_client(name="Stand-in Mail", redirect_uris=[client_app.redirect_uri])
    rp = RelyingParty(live_server, client)

    page.goto(rp.authorization_url())
    page.wait_for_url(lambda url: url.startswith(f"{live_server}/login?"))
    page.get_by_role("link", name=f"Continue with Upstream {provider_id}").click()
    page.wait_for_url(lambda url: url.startswith(f"{upstream.issuer}/login?"))
    page.get_by_label("Username or email").fill(person["username"])
    page.get_by_label("Password").fill(person["password"])
    # The upstream's form ends, through its redirects, at our callback, then our consent page.
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(lambda url: url.startswith(f"{live_server}/authorize/resume/"))
    assert f"/federation/{provider_id}/callback" in " ".join(watch.paths_navigated())
    page.get_by_role("button", name="Allow").click()

    page.wait_for_url(lambda url: url.startswith(f"{client_app.redirect_uri}?"))
    token = rp.fetch_token(client_app.only_callback()["params"])
    claims = verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce)
    assert "fed" in claims["amr"]
    watch.assert_clean()
