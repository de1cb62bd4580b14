"""Everything that must not sign anyone in: tampered, replayed, foreign or expired state; issuer
mix-up; forged ID tokens; the person saying no; an upstream that is down or too slow. Each
ends on our page (never a 500), with an audit event, and without a session or an account."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from urllib.parse import urlencode, urlsplit

import pytest

from idp import clock
from idp.extensions import db
from idp.models import FederationState, User
from tests.conftest import _free_port
from tests.federation.journey import Person, federated
from tests.federation.test_roundtrip import events, links_of, query, read, user_by_email


def failures(app, provider_id: str) -> list[dict]:
    return [details for kind, details in events(app, provider_id) if kind == "federation.login.failed"]


def signed_in(person: Person, live_server: str) -> bool:
    return person.get(f"{live_server}/account").status_code == 200


def with_query(url: str, **changes) -> str:
    parts = urlsplit(url)
    params = {**query(url), **changes}
    return parts._replace(query=urlencode(params)).geturl()


def assert_refused(response, status: int, text: str):
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert text in response.text
    assert "Reference" in response.text and "Traceback" not in response.text


@pytest.fixture
def upstream_provider(upstream, make_provider):
    return make_provider(upstream=upstream, allow_registration=True)


def test_a_tampered_state_is_refused(app, live_server, upstream, upstream_provider):
    person_upstream = upstream.make_user()
    person = Person()
    callback = federated(person, live_server, upstream_provider, upstream.issuer, person_upstream)
    assert_refused(person.get(with_query(callback, state="x" + query(callback)["state"])), 400, "expired or was already used")
    assert_refused(person.get(with_query(callback, state="")), 400, "expired or was already used")
    assert not signed_in(person, live_server)
    assert user_by_email(app, person_upstream["email"]) is None
    assert [f["reason"] for f in failures(app, upstream_provider)] == ["state_invalid", "state_invalid"]


def test_a_replayed_callback_is_refused(app, live_server, upstream, upstream_provider):
    person_upstream = upstream.make_user()
    person = Person()
    callback = federated(person, live_server, upstream_provider, upstream.issuer, person_upstream)
    assert person.get(callback).status_code == 303
    assert_refused(person.get(callback), 400, "expired or was already used")
    assert failures(app, upstream_provider) == [{"provider": upstream_provider, "reason": "state_invalid"}]


def test_a_callback_from_another_browser_is_refused(app, live_server, upstream, upstream_provider):
    """Login CSRF: an attacker's own callback URL, opened in a victim's browser, signs nobody in."""
    person_upstream = upstream.make_user()
    attacker = Person()
    callback = federated(attacker, live_server, upstream_provider, upstream.issuer, person_upstream)
    victim = Person()
    victim.get(f"{live_server}/login")  # the victim has a browser session of their own
    assert_refused(victim.get(callback), 400, "expired or was already used")
    assert not signed_in(victim, live_server)
    assert user_by_email(app, person_upstream["email"]) is None


def test_an_expired_round_trip_is_refused(app, live_server, fake_op, make_provider):
    provider_id = make_provider(fake_op.url, allow_registration=True)
    clock.set_now(datetime.now(timezone.utc))
    person = Person()
    callback = person.get(f"{live_server}/federation/{provider_id}/start")
    callback = person.get(callback.headers["Location"]).headers["Location"]
    clock.advance(app.config["IDP_SETTINGS"].federation_state_ttl + 1)
    assert_refused(person.get(callback), 400, "expired or was already used")
    assert ("/token" not in {path for _, path in fake_op.requests})


def test_a_response_naming_another_issuer_is_refused(app, live_server, upstream, upstream_provider, fake_op):
    """RFC 9207: our upstream advertises iss in responses; a response whose iss is another
    provider's is a mix-up, and the code is never redeemed."""
    person_upstream = upstream.make_user()
    person = Person()
    callback = federated(person, live_server, upstream_provider, upstream.issuer, person_upstream)
    assert_refused(person.get(with_query(callback, iss=fake_op.url)), 502, "cannot trust")
    assert not signed_in(person, live_server)
    assert failures(app, upstream_provider)[-1]["reason"] == "issuer_mismatch"


def test_a_response_without_the_advertised_iss_is_refused(app, live_server, upstream, upstream_provider):
    person_upstream = upstream.make_user()
    person = Person()
    callback = federated(person, live_server, upstream_provider, upstream.issuer, person_upstream)
    parts = urlsplit(callback)
    stripped = parts._replace(query=urlencode({k: v for k, v in query(callback).items() if k != "iss"})).geturl()
    assert_refused(person.get(stripped), 502, "cannot trust")
    assert failures(app, upstream_provider)[-1] == {"provider": upstream_provider, "reason": "issuer_mismatch",
                                                    "check": "response"}


def test_a_response_delivered_to_another_providers_callback_is_refused(app, live_server, upstream, make_provider,
                                                                        upstream_provider):
    other = make_provider(upstream=upstream, allow_registration=True)
    person_upstream = upstream.make_user()
    person = Person()
    callback = federated(person, live_server, upstream_provider, upstream.issuer, person_upstream)
    moved = callback.replace(f"/federation/{upstream_provider}/", f"/federation/{other}/")
    assert_refused(person.get(moved), 502, "cannot trust")
    assert failures(app, other)[-1]["reason"] == "issuer_mismatch"
    assert_refused(person.get(callback), 400, "expired or was already used")  # that round trip is spent
    assert user_by_email(app, person_upstream["email"]) is None


def test_an_upstream_whose_discovery_claims_to_be_another_is_refused(app, live_server, upstream, fake_op,
                                                                      make_provider):
    fake_op.issuer = upstream.issuer  # everything it says claims to be our real upstream
    provider_id = make_provider(fake_op.url, allow_registration=True)
    person = Person()
    assert_refused(person.get(f"{live_server}/federation/{provider_id}/start"), 502, "cannot trust")
    assert failures(app, provider_id)[-1] == {"provider": provider_id, "reason": "issuer_mismatch",
                                              "check": "discovery"}


@pytest.mark.parametrize("lie", ["response_iss", "token_iss"])
def test_an_upstream_answering_with_another_providers_issuer_is_refused(app, live_server, upstream, fake_op,
                                                                        make_provider, lie):
    setattr(fake_op, lie, upstream.issuer)
    provider_id = make_provider(fake_op.url, allow_registration=True, trust_email_verified=True)
    person = Person()
    started = person.get(f"{live_server}/federation/{provider_id}/start")
    callback = person.get(started.headers["Location"]).headers["Location"]
    assert_refused(person.get(callback), 502, "cannot trust")
    assert failures(app, provider_id)[-1]["reason"] == "issuer_mismatch"
    assert failures(app, provider_id)[-1]["check"] == {"response_iss": "response", "token_iss": "id_token"}[lie]
    assert user_by_email(app, fake_op.claims["email"]) is None


def fake_round_trip(person: Person, live_server: str, fake_op, provider_id: str):
    started = person.get(f"{live_server}/federation/{provider_id}/start")
    assert started.status_code == 302 and started.headers["Location"].startswith(fake_op.url)
    sent = query(started.headers["Location"])
    assert sent["code_challenge_method"] == "S256" and sent["nonce"] and sent["state"]
    return person.get(person.get(started.headers["Location"]).headers["Location"])


def test_the_fake_provider_signs_in_when_it_tells_the_truth(app, live_server, fake_op, make_provider):
    """The baseline for the forgeries below: the same stand-in, honest, does sign in."""
    fake_op.claims = {**fake_op.claims, "email": f"{fake_op.subject}@op.example", "amr": ["pwd", "otp", "hwk"]}
    provider_id = make_provider(fake_op.url, allow_registration=True, trust_email_verified=True,
                                acr_mapping={"amr": {"otp": "urn:idp:acr:pwd"}})
    person = Person()
    landed = fake_round_trip(person, live_server, fake_op, provider_id)
    assert landed.status_code == 303, landed.text[:300]
    created = user_by_email(app, fake_op.claims["email"])
    assert created["email_verified"] is True  # trusted provider, verified upstream
    success = [d for t, d in events(app, provider_id) if t == "federation.login.succeeded"]
    assert success == [{"provider": provider_id, "amr": ["fed", "otp"]}]  # only mapped upstream amr values


def test_claims_missing_from_the_id_token_come_from_userinfo_of_the_same_subject(app, live_server, fake_op,
                                                                                 make_provider):
    email = f"{fake_op.subject}@userinfo.example"
    fake_op.claims = {"name": "Only In Token"}
    fake_op.userinfo = {"sub": fake_op.subject, "email": email, "email_verified": True}
    provider_id = make_provider(fake_op.url, allow_registration=True, trust_email_verified=True)
    landed = fake_round_trip(Person(), live_server, fake_op, provider_id)
    assert landed.status_code == 303, landed.text[:300]
    created = user_by_email(app, email)
    assert created["name"] == "Only In Token" and created["email_verified"] is True


def test_userinfo_about_another_subject_is_refused(app, live_server, fake_op, make_provider):
    email = f"{fake_op.subject}@userinfo.example"
    fake_op.claims = {}
    fake_op.userinfo = {"sub": "someone-else", "email": email, "email_verified": True}
    provider_id = make_provider(fake_op.url, allow_registration=True, trust_email_verified=True)
    assert_refused(fake_round_trip(Person(), live_server, fake_op, provider_id), 502, "cannot trust")
    assert failures(app, provider_id)[-1] == {"provider": provider_id, "reason": "invalid_response",
                                              "check": "userinfo"}
    assert user_by_email(app, email) is None


@pytest.mark.parametrize("forge,check", [
    ("bad_signature", "id_token_signature"), ("hs256", "id_token_signature"), ("none", "id_token_signature"),
    ("wrong_aud", "id_token_audience"), ("wrong_nonce", "id_token_nonce"), ("no_nonce", "id_token_nonce"),
    ("expired", "id_token_expired")])
def test_a_forged_or_wrong_id_token_is_refused(app, live_server, fake_op, make_provider, forge, check):
    fake_op.forge = forge
    fake_op.claims = {**fake_op.claims, "email": f"{fake_op.subject}@op.example"}
    provider_id = make_provider(fake_op.url, allow_registration=True, trust_email_verified=True)
    person = Person()
    assert_refused(fake_round_trip(person, live_server, fake_op, provider_id), 502, "cannot trust")
    assert failures(app, provider_id)[-1] == {"provider": provider_id, "reason": "invalid_response", "check": check}
    assert user_by_email(app, fake_op.claims["email"]) is None
    assert links_of(app, provider_id) == []
    assert not signed_in(person, live_server)


def test_the_person_saying_no_at_the_upstream_gets_a_page(app, live_server, upstream, make_provider):
    provider_id = make_provider(upstream=upstream, allow_registration=True, first_party=False)
    person_upstream = upstream.make_user()
    person = Person()
    callback = federated(person, live_server, provider_id, upstream.issuer, person_upstream, decision="deny")
    assert query(callback)["error"] == "access_denied"
    assert_refused(person.get(callback), 403, "did not sign you in")
    assert failures(app, provider_id) == [{"provider": provider_id, "reason": "denied", "error": "access_denied"}]
    assert user_by_email(app, person_upstream["email"]) is None


def test_a_slow_token_endpoint_times_out_into_a_page(app, live_server, fake_op, make_provider):
    fake_op.token_delay = app.config["IDP_SETTINGS"].federation_timeout + 2
    provider_id = make_provider(fake_op.url, allow_registration=True)
    person = Person()
    assert_refused(fake_round_trip(person, live_server, fake_op, provider_id), 504, "not answering")
    assert failures(app, provider_id)[-1] == {"provider": provider_id, "reason": "timeout"}


def test_a_slow_discovery_times_out_into_a_page(app, live_server, fake_op, make_provider):
    fake_op.discovery_delay = app.config["IDP_SETTINGS"].federation_timeout + 2
    provider_id = make_provider(fake_op.url)
    assert_refused(Person().get(f"{live_server}/federation/{provider_id}/start"), 504, "not answering")
    assert failures(app, provider_id)[-1] == {"provider": provider_id, "reason": "timeout"}


def test_an_unreachable_upstream_gets_a_page(app, live_server, make_provider):
    provider_id = make_provider(f"http://127.0.0.1:{_free_port()}")
    assert_refused(Person().get(f"{live_server}/federation/{provider_id}/start"), 504, "not answering")
    assert failures(app, provider_id)[-1] == {"provider": provider_id, "reason": "unreachable"}
    assert read(app, lambda: db.session.scalar(db.select(db.func.count()).select_from(FederationState)
                                               .where(FederationState.provider_id == provider_id))) == 0


def test_an_endpoint_without_https_in_discovery_is_refused(app, live_server, fake_op, make_provider):
    fake_op.endpoint_base = "http://idp.example"  # plain http off loopback
    provider_id = make_provider(fake_op.url)
    assert_refused(Person().get(f"{live_server}/federation/{provider_id}/start"), 502, "cannot trust")
    assert failures(app, provider_id)[-1] == {"provider": provider_id, "reason": "invalid_response",
                                              "check": "insecure_url"}


def test_a_callback_for_an_unknown_provider_is_a_page(live_server):
    assert_refused(Person().get(f"{live_server}/federation/nobody/callback?state=abc&code=x"), 400,
                   "expired or was already used")


def test_nothing_secret_is_audited(app, live_server, upstream, upstream_provider):
    person_upstream = upstream.make_user()
    person = Person()
    callback = federated(person, live_server, upstream_provider, upstream.issuer, person_upstream)
    person.get(callback)
    recorded = str(events(app, upstream_provider))
    for value in (query(callback)["code"], query(callback)["state"]):
        assert value not in recorded
    assert read(app, lambda: db.session.scalar(db.select(db.func.count()).select_from(User)
                                               .where(User.email == person_upstream["email"]))) == 1


def test_production_refuses_an_upstream_on_loopback_unless_its_network_is_allowed(app, settings, fake_op,
                                                                                   make_provider):
    """The upstream's address is not public: the same page as an unreachable upstream, with the
    reason in the audit; IDP_OUTBOUND_ALLOW_PRIVATE opens that network on purpose."""
    from idp import create_app

    provider_id = make_provider(fake_op.url)
    production = dataclasses.replace(settings, env="production", issuer="https://127.0.0.1")
    refused = create_app(production).test_client().get(f"/federation/{provider_id}/start",
                                                       base_url="https://127.0.0.1")
    assert_refused(refused, 504, "not answering")
    assert failures(app, provider_id)[-1] == {"provider": provider_id, "reason": "address_not_public"}
    allowed = create_app(dataclasses.replace(production, outbound_allow_private="127.0.0.0/8, ::1/128"))
    started = allowed.test_client().get(f"/federation/{provider_id}/start", base_url="https://127.0.0.1")
    assert started.status_code == 302 and started.headers["Location"].startswith(fake_op.url)
