"""The GitHub preset (plain OAuth 2.0, then GET /user and GET /user/emails) against a local
stand-in that speaks GitHub's documented endpoints; the preset's base URLs are overridden."""
from __future__ import annotations

from tests.federation.journey import Person
from tests.federation.test_failures import assert_refused, failures, signed_in
from tests.federation.test_roundtrip import events, links_of, query, user_by_email


def github_provider(make_provider, fake_github, **options) -> str:
    return make_provider(fake_github.url, kind="github", api_base_url=fake_github.url,
                         client={"client_id": fake_github.client_id, "client_secret": fake_github.client_secret},
                         **options)


def round_trip(person: Person, live_server: str, fake_github, provider_id: str):
    started = person.get(f"{live_server}/federation/{provider_id}/start")
    location = started.headers["Location"]
    assert location.startswith(f"{fake_github.url}/login/oauth/authorize?")
    sent = query(location)
    assert sent["client_id"] == fake_github.client_id and sent["scope"] == "read:user user:email"
    assert sent["redirect_uri"] == f"{live_server}/federation/{provider_id}/callback"
    assert sent["state"] and sent["code_challenge_method"] == "S256" and "nonce" not in sent
    return person.get(person.get(location).headers["Location"])


def test_first_sign_in_with_github_creates_an_account_from_its_apis(app, live_server, fake_github, make_provider):
    fake_github.emails = [{"email": "other@github.example", "primary": False, "verified": True},
                          {"email": "octo-new@github.example", "primary": True, "verified": True}]
    provider_id = github_provider(make_provider, fake_github, allow_registration=True, trust_email_verified=True)
    person = Person()
    landed = round_trip(person, live_server, fake_github, provider_id)
    assert landed.status_code == 303, landed.text[:300]
    assert signed_in(person, live_server)
    created = user_by_email(app, "octo-new@github.example")
    assert created["username"] == "octocat" and created["name"] == "The Octocat"
    assert created["email_verified"] is True
    assert links_of(app, provider_id) == [(created["id"], "583231")]  # the numeric id, not the login
    assert [d for t, d in events(app, provider_id) if t == "federation.login.succeeded"] == \
        [{"provider": provider_id, "amr": ["fed"]}]
    assert ("POST", "/login/oauth/access_token") in fake_github.requests
    assert {("GET", "/user"), ("GET", "/user/emails")} <= set(fake_github.requests)


def test_an_unverified_github_email_does_not_link_to_the_account_that_has_it(app, live_server, fake_github,
                                                                             make_provider, make_user):
    local = make_user()
    fake_github.user = {**fake_github.user, "id": 777001}
    fake_github.emails = [{"email": local["email"], "primary": True, "verified": False}]
    provider_id = github_provider(make_provider, fake_github, allow_registration=True, trust_email_verified=True)
    person = Person()
    landed = round_trip(person, live_server, fake_github, provider_id)
    assert landed.status_code == 303 and "/federation/link/" in landed.headers["Location"]
    assert links_of(app, provider_id) == [] and not signed_in(person, live_server)


def test_a_wrong_github_client_secret_is_an_invalid_response_page(app, live_server, fake_github, make_provider):
    provider_id = make_provider(fake_github.url, kind="github", api_base_url=fake_github.url,
                                client={"client_id": fake_github.client_id, "client_secret": "not-the-secret"},
                                allow_registration=True)
    person = Person()
    assert_refused(round_trip(person, live_server, fake_github, provider_id), 502, "cannot trust")
    assert failures(app, provider_id)[-1] == {"provider": provider_id, "reason": "invalid_response",
                                              "check": "token_response"}
    assert ("GET", "/user") not in fake_github.requests
