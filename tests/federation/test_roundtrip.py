"""Sign-in through an upstream OpenID Provider (a second instance of our own app) over real HTTP:
just-in-time accounts, linking rules, and the ID token the downstream issues afterwards."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest

from idp import clock

from idp.extensions import db
from idp.models import AuditEvent, LinkedIdentity, PendingLink, SsoSession, User
from tests.federation.journey import (Person, answer_totp, federated, sign_in_upstream, sign_in_with_totp,
                                      to_upstream_login)
from tests.helpers.forms import csrf_token
from tests.helpers.mfa import give_totp
from tests.helpers.rp import RelyingParty, verify_id_token
from tests.conftest import unique


def query(url: str) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def read(app, fn):
    with app.app_context():
        return fn()


def user_by_email(app, email: str) -> dict | None:
    def find():
        user = db.session.scalar(db.select(User).where(User.email == email))
        return None if user is None else {"id": user.id, "username": user.username, "name": user.name,
                                          "email_verified": user.email_verified,
                                          "password_hash": user.password_hash}
    return read(app, find)


def links_of(app, provider_id: str) -> list[tuple[int, str]]:
    return read(app, lambda: [(row.user_id, row.subject) for row in db.session.scalars(
        db.select(LinkedIdentity).where(LinkedIdentity.provider_id == provider_id))])


def events(app, provider_id: str) -> list[tuple[str, dict]]:
    return read(app, lambda: [(e.type, e.details) for e in db.session.scalars(
        db.select(AuditEvent).order_by(AuditEvent.id)) if e.details.get("provider") == provider_id])


def sessions_of(app, user_id: int) -> int:
    return read(app, lambda: db.session.scalar(db.select(db.func.count()).select_from(SsoSession)
                                               .where(SsoSession.user_id == user_id)))


def test_first_login_creates_an_account_and_the_client_gets_an_id_token_with_amr_fed(
        app, live_server, upstream, make_provider, make_client):
    provider_id = make_provider(upstream=upstream, allow_registration=True)
    person_upstream = upstream.make_user()
    client = make_client(first_party=True)
    rp = RelyingParty(live_server, client)
    person = Person()

    # The client names the provider with idp_hint: /authorize goes straight to it.
    response = person.get(rp.authorization_url(idp_hint=provider_id))
    assert response.status_code == 302
    assert response.headers["Location"].startswith(f"/federation/{provider_id}/start?next=/authorize/resume/")
    page = to_upstream_login(person, rp.authorization_url(idp_hint=provider_id), upstream.issuer)
    callback = sign_in_upstream(person, page, person_upstream)
    assert callback.startswith(f"{live_server}/federation/{provider_id}/callback?")
    assert query(callback)["iss"] == upstream.issuer  # RFC 9207, checked by the downstream

    url, response = person.follow(person.get(callback), lambda url: url.startswith(client["redirect_uri"]))
    assert url is not None, (response.status_code, response.text[:500])
    token = rp.fetch_token(rp.callback_params(response))
    claims = verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce)
    assert "fed" in claims["amr"] and "pwd" not in claims["amr"]
    assert claims["acr"] == "urn:idp:acr:pwd"

    created = user_by_email(app, person_upstream["email"])
    assert created is not None and created["password_hash"] is None and created["name"] == "Ada Upstream"
    assert created["email_verified"] is False  # the upstream did not say it was verified
    assert links_of(app, provider_id) == [(created["id"], person_upstream["subject"])]
    assert read(app, lambda: db.session.scalar(db.select(User.subject).where(User.id == created["id"]))) \
        == claims["sub"]
    types = [t for t, _ in events(app, provider_id)]
    assert {"federation.login.started", "users.user.provisioned", "federation.identity.linked",
            "federation.login.succeeded"} <= set(types)

    # The second time, the link is used: no new account.
    other = Person()
    landed = other.get(federated(other, live_server, provider_id, upstream.issuer, person_upstream))
    assert landed.status_code == 303 and landed.headers["Location"] == "/account"
    assert len(links_of(app, provider_id)) == 1
    assert sessions_of(app, created["id"]) == 2


def test_without_registration_an_unknown_person_gets_a_page_and_no_account(app, live_server, upstream,
                                                                          make_provider):
    provider_id = make_provider(upstream=upstream, allow_registration=False)
    person_upstream = upstream.make_user()
    person = Person()
    landed = person.get(federated(person, live_server, provider_id, upstream.issuer, person_upstream))
    assert landed.status_code == 403 and "No account here is linked" in landed.text
    assert user_by_email(app, person_upstream["email"]) is None
    assert ("federation.login.failed", {"provider": provider_id, "reason": "registration_closed"}) \
        in events(app, provider_id)


def test_existing_account_is_linked_only_after_its_owner_signs_in_to_it(app, live_server, upstream,
                                                                       make_provider, make_user):
    provider_id = make_provider(upstream=upstream, allow_registration=True, trust_email_verified=True)
    local = make_user()
    person_upstream = upstream.make_user(email=local["email"])  # not verified upstream
    person = Person()
    landed = person.get(federated(person, live_server, provider_id, upstream.issuer, person_upstream,
                                  next_path="/account"))
    assert landed.status_code == 303 and "/federation/link/" in landed.headers["Location"]
    link_url = live_server + landed.headers["Location"]
    page = person.get(link_url)
    assert page.status_code == 200 and "An account with the email" in page.text
    assert links_of(app, provider_id) == []
    assert sessions_of(app, local["id"]) == 0  # nobody is signed in by the upstream alone

    wrong = person.post(link_url, data={"csrf_token": csrf_token(page.text), "login": local["username"],
                                        "password": "not the password at all"})
    assert wrong.status_code == 400 and links_of(app, provider_id) == []

    done = person.post(link_url, data={"csrf_token": csrf_token(page.text), "login": local["username"],
                                       "password": local["password"]})
    assert done.status_code == 303 and done.headers["Location"] == "/account"
    assert links_of(app, provider_id) == [(local["id"], person_upstream["subject"])]
    assert user_by_email(app, local["email"])["id"] == local["id"]  # no second account
    assert ("federation.identity.linked", {"provider": provider_id, "via": "password"}) in events(app, provider_id)
    assert ("federation.login.succeeded", {"provider": provider_id, "amr": ["fed", "pwd"]}) \
        in events(app, provider_id)

    # Single use: the same wait cannot link again.
    assert person.post(link_url, data={"csrf_token": csrf_token(page.text), "login": local["username"],
                                       "password": local["password"]}).status_code == 400
    assert read(app, lambda: db.session.scalar(db.select(db.func.count()).select_from(PendingLink)
                                               .where(PendingLink.provider_id == provider_id))) == 0

    # From now on the upstream alone signs in to the linked account.
    again = Person()
    landed = again.get(federated(again, live_server, provider_id, upstream.issuer, person_upstream))
    assert landed.status_code == 303 and landed.headers["Location"] == "/account"
    assert sessions_of(app, local["id"]) == 2


def test_the_wait_for_proof_is_bound_to_the_browser(app, live_server, upstream, make_provider, make_user):
    provider_id = make_provider(upstream=upstream, allow_registration=True)
    local = make_user()
    person_upstream = upstream.make_user(email=local["email"], email_verified=True)
    person = Person()
    landed = person.get(federated(person, live_server, provider_id, upstream.issuer, person_upstream))
    link_url = live_server + landed.headers["Location"]
    stranger = Person()
    assert stranger.get(link_url).status_code == 400
    assert stranger.get(f"{live_server}/login").status_code == 200
    page = stranger.get(f"{live_server}/login")
    refused = stranger.post(link_url, data={"csrf_token": csrf_token(page.text), "login": local["username"],
                                            "password": local["password"]})
    assert refused.status_code == 400 and links_of(app, provider_id) == []


def test_the_wait_for_proof_expires(app, live_server, upstream, make_provider, make_user):
    provider_id = make_provider(upstream=upstream, allow_registration=True)
    local = make_user()
    person_upstream = upstream.make_user(email=local["email"])
    clock.set_now(datetime.now(timezone.utc))
    person = Person()
    landed = person.get(federated(person, live_server, provider_id, upstream.issuer, person_upstream))
    link_url = live_server + landed.headers["Location"]
    page = person.get(link_url)
    assert page.status_code == 200
    clock.advance(app.config["IDP_SETTINGS"].federation_state_ttl + 1)
    late = person.post(link_url, data={"csrf_token": csrf_token(page.text), "login": local["username"],
                                       "password": local["password"]})
    assert late.status_code == 400 and "expired" in late.text
    assert links_of(app, provider_id) == [] and sessions_of(app, local["id"]) == 0


def test_an_unverified_email_never_links_even_at_a_trusted_provider(app, live_server, upstream, make_provider,
                                                                    make_user):
    provider_id = make_provider(upstream=upstream, allow_registration=True, trust_email_verified=True)
    local = make_user()
    person_upstream = upstream.make_user(email=local["email"], email_verified=False)
    person = Person()
    landed = person.get(federated(person, live_server, provider_id, upstream.issuer, person_upstream))
    assert landed.status_code == 303 and "/federation/link/" in landed.headers["Location"]
    assert links_of(app, provider_id) == [] and sessions_of(app, local["id"]) == 0
    assert user_by_email(app, local["email"])["id"] == local["id"]


def verify_email(app, user_id: int) -> None:
    def mark():
        db.session.get(User, user_id).email_verified = True
        db.session.commit()
    read(app, mark)


def test_a_verified_email_links_at_once_only_when_the_provider_is_trusted(app, live_server, upstream,
                                                                          make_provider, make_user):
    trusted = make_provider(upstream=upstream, trust_email_verified=True)
    untrusted = make_provider(upstream=upstream, trust_email_verified=False, allow_registration=True)
    local = make_user()
    verify_email(app, local["id"])
    person_upstream = upstream.make_user(email=local["email"], email_verified=True)

    person = Person()
    landed = person.get(federated(person, live_server, untrusted, upstream.issuer, person_upstream))
    assert "/federation/link/" in landed.headers["Location"] and links_of(app, untrusted) == []

    person = Person()
    landed = person.get(federated(person, live_server, trusted, upstream.issuer, person_upstream))
    assert landed.status_code == 303 and landed.headers["Location"] == "/account"
    assert links_of(app, trusted) == [(local["id"], person_upstream["subject"])]
    assert ("federation.identity.linked", {"provider": trusted, "via": "verified_email"}) in events(app, trusted)
    assert sessions_of(app, local["id"]) == 1


def test_a_verified_email_links_only_to_the_same_mailbox_not_to_one_with_the_same_case_folding(
        app, live_server, upstream, make_provider, make_user):
    """straße.example and strasse.example are two domains: an upstream that verified the second
    must not be let into the account of the first (full case folding made them one key)."""
    trusted = make_provider(upstream=upstream, trust_email_verified=True, allow_registration=True)
    local = make_user(email=f"{unique('v')}@straße.example")
    verify_email(app, local["id"])
    other = upstream.make_user(email=local["email"].replace("ß", "ss").upper(), email_verified=True)
    person = Person()
    landed = person.get(federated(person, live_server, trusted, upstream.issuer, other))
    assert landed.status_code == 303 and landed.headers["Location"] == "/account"
    assert sessions_of(app, local["id"]) == 0
    [(user_id, subject)] = links_of(app, trusted)
    assert subject == other["subject"] and user_id != local["id"]
    assert user_by_email(app, other["email"])["id"] == user_id


def test_a_verified_email_never_links_at_once_to_an_account_whose_email_is_unverified(
        app, live_server, upstream, make_provider, make_user):
    """Pre-account hijacking: someone registered the victim's address here without proving it;
    the victim's trusted, verified upstream identity must not be merged into that account."""
    trusted = make_provider(upstream=upstream, trust_email_verified=True, allow_registration=True)
    squatter = make_user()  # email_verified stays false
    victim = upstream.make_user(email=squatter["email"], email_verified=True)
    person = Person()
    landed = person.get(federated(person, live_server, trusted, upstream.issuer, victim))
    assert landed.status_code == 303 and "/federation/link/" in landed.headers["Location"]
    assert links_of(app, trusted) == [] and sessions_of(app, squatter["id"]) == 0


def test_the_login_page_shows_enabled_providers_only(app, live_server, upstream, make_provider):
    shown = make_provider(upstream=upstream, display_name="Shown Corp")
    hidden_id = make_provider(upstream=upstream, display_name="Hidden Corp")

    def disable():
        from idp.models import UpstreamProvider
        db.session.get(UpstreamProvider, hidden_id).enabled = False
        db.session.commit()
    read(app, disable)
    page = Person().get(f"{live_server}/login?next=/authorize/resume/abc")
    assert "Continue with Shown Corp" in page.text and "Hidden Corp" not in page.text
    assert f"/federation/{shown}/start?next=/authorize/resume/abc" in page.text
    assert Person().get(f"{live_server}/federation/{hidden_id}/start").status_code == 404


def test_an_unknown_idp_hint_shows_the_login_page(live_server, make_client):
    client = make_client(first_party=True)
    response = Person().get(RelyingParty(live_server, client).authorization_url(idp_hint="no-such-provider"))
    assert response.status_code == 302 and response.headers["Location"].startswith("/login?")


def test_linked_providers_are_listed_and_can_be_unlinked_while_another_way_remains(
        app, live_server, upstream, make_provider, make_user):
    provider_id = make_provider(upstream=upstream, allow_registration=True, display_name="Listed Corp")
    person_upstream = upstream.make_user()
    person = Person()
    person.get(federated(person, live_server, provider_id, upstream.issuer, person_upstream))
    account = person.get(f"{live_server}/account")
    assert "Listed Corp" in account.text
    link_id = read(app, lambda: db.session.scalar(db.select(LinkedIdentity.id)
                                                  .where(LinkedIdentity.provider_id == provider_id)))
    refused = person.post(f"{live_server}/account/linked/{link_id}/unlink",
                          data={"csrf_token": csrf_token(account.text)})
    assert refused.status_code == 409 and len(links_of(app, provider_id)) == 1  # the only way in

    person, second, link_id = _linked_by_verified_email(app, live_server, upstream, make_provider, make_user)
    account = person.get(f"{live_server}/account")
    stranger_link = read(app, lambda: db.session.scalar(db.select(LinkedIdentity.id)
                                                        .where(LinkedIdentity.provider_id == provider_id)))
    assert person.post(f"{live_server}/account/linked/{stranger_link}/unlink",
                       data={"csrf_token": csrf_token(account.text)}).status_code == 404
    done = person.post(f"{live_server}/account/linked/{link_id}/unlink", data={"csrf_token": csrf_token(account.text)})
    assert done.status_code == 303 and links_of(app, second) == []
    assert len(links_of(app, provider_id)) == 1
    assert ("federation.identity.unlinked", {"provider": second}) in events(app, second)


def _linked_by_verified_email(app, live_server, upstream, make_provider, make_user):
    """A local account (with a password) linked at once to a trusted upstream through a verified
    email, signed in through it: (the browser, the provider id, the link id)."""
    local = make_user()
    verify_email(app, local["id"])
    provider_id = make_provider(upstream=upstream, trust_email_verified=True)
    other = upstream.make_user(email=local["email"], email_verified=True)
    person = Person()
    person.get(federated(person, live_server, provider_id, upstream.issuer, other))
    link_id = read(app, lambda: db.session.scalar(db.select(LinkedIdentity.id)
                                                  .where(LinkedIdentity.provider_id == provider_id)))
    return person, provider_id, link_id


def test_unlinking_needs_a_recent_sign_in(app, live_server, upstream, make_provider, make_user):
    """An unlinked provider is a way to sign in gone: as for a passkey, not from a stale session."""
    person, provider_id, link_id = _linked_by_verified_email(app, live_server, upstream, make_provider, make_user)
    account = person.get(f"{live_server}/account")
    clock.set_now(datetime.now(timezone.utc) + timedelta(seconds=app.config["IDP_SETTINGS"].mfa_recent_auth_seconds + 60))
    try:
        stale = person.post(f"{live_server}/account/linked/{link_id}/unlink", data={"csrf_token": csrf_token(account.text)})
        assert stale.status_code == 303 and stale.headers["Location"].startswith("/login?")
        assert len(links_of(app, provider_id)) == 1
    finally:
        clock.set_now(None)


def test_unlinking_the_last_two_ways_in_at_once_leaves_one(app, live_server, upstream, make_provider):
    """An account without a password and two linked providers: two unlinks at the same moment
    must not both see the other way in and remove both (the account would be locked out)."""
    from tests.helpers.races import at_once

    first = make_provider(upstream=upstream, allow_registration=True)
    person_upstream = upstream.make_user()
    person = Person()
    person.get(federated(person, live_server, first, upstream.issuer, person_upstream))
    local = user_by_email(app, person_upstream["email"])
    second = make_provider(upstream=upstream)
    with app.app_context():
        db.session.add(LinkedIdentity(user_id=local["id"], provider_id=second, subject="second-subject"))
        db.session.commit()
    ids = read(app, lambda: list(db.session.scalars(db.select(LinkedIdentity.id)
                                                    .where(LinkedIdentity.user_id == local["id"]))))
    token = csrf_token(person.get(f"{live_server}/account").text)
    statuses = at_once([lambda link_id=link_id: person.http.post(
        f"{live_server}/account/linked/{link_id}/unlink", data={"csrf_token": token}, allow_redirects=False,
        timeout=30).status_code for link_id in ids])
    assert sorted(statuses) == [303, 409], statuses
    assert read(app, lambda: db.session.scalar(db.select(db.func.count()).select_from(LinkedIdentity)
                                               .where(LinkedIdentity.user_id == local["id"]))) == 1


def test_a_disabled_account_cannot_sign_in_through_its_link(app, live_server, upstream, make_provider):
    provider_id = make_provider(upstream=upstream, allow_registration=True)
    person_upstream = upstream.make_user()
    first = Person()
    first.get(federated(first, live_server, provider_id, upstream.issuer, person_upstream))
    created = user_by_email(app, person_upstream["email"])

    def disable():
        db.session.get(User, created["id"]).disabled = True
        db.session.execute(db.delete(SsoSession).where(SsoSession.user_id == created["id"]))
        db.session.commit()
    read(app, disable)
    person = Person()
    landed = person.get(federated(person, live_server, provider_id, upstream.issuer, person_upstream))
    assert landed.status_code == 403 and "cannot sign in" in landed.text
    assert sessions_of(app, created["id"]) == 0
    assert events(app, provider_id)[-1] == ("federation.login.failed",
                                            {"provider": provider_id, "reason": "account_disabled"})


def test_when_verification_is_required_an_unverified_federated_account_cannot_sign_in(
        app, live_server, upstream, make_provider, monkeypatch):
    """IDP_EMAIL_VERIFICATION_REQUIRED applies to every way in, the upstream included."""
    import dataclasses

    provider_id = make_provider(upstream=upstream, allow_registration=True)
    person_upstream = upstream.make_user()
    monkeypatch.setitem(app.config, "IDP_SETTINGS",
                        dataclasses.replace(app.config["IDP_SETTINGS"], email_verification_required=True))
    person = Person()
    callback = federated(person, live_server, provider_id, upstream.issuer, person_upstream)
    response = person.get(callback)
    assert response.status_code == 403 and "Confirm your email address first" in response.text
    created = user_by_email(app, person_upstream["email"])
    assert created is not None and created["email_verified"] is False
    assert sessions_of(app, created["id"]) == 0
    with app.app_context():
        db.session.get(User, created["id"]).email_verified = True
        db.session.commit()
    again = Person()
    response = again.get(federated(again, live_server, provider_id, upstream.issuer, person_upstream))
    assert response.status_code == 303 and sessions_of(app, created["id"]) == 1


def test_a_federated_sign_in_asks_for_the_current_terms(app, live_server, upstream, make_provider, monkeypatch):
    import dataclasses

    provider_id = make_provider(upstream=upstream, allow_registration=True)
    person_upstream = upstream.make_user()
    monkeypatch.setitem(app.config, "IDP_SETTINGS", dataclasses.replace(
        app.config["IDP_SETTINGS"], terms_url="https://example.test/terms", terms_version="7"))
    person = Person()
    response = person.get(federated(person, live_server, provider_id, upstream.issuer, person_upstream))
    assert response.status_code == 303 and response.headers["Location"].startswith("/terms?next=")


@pytest.fixture
def pinned_clock():
    clock.set_now(datetime.now(timezone.utc).replace(microsecond=0))
    return clock


def sessions_at(app, user_id: int) -> list[tuple[str, str, list]]:
    return read(app, lambda: [(r.sid, r.acr, list(r.amr)) for r in db.session.scalars(
        db.select(SsoSession).where(SsoSession.user_id == user_id).order_by(SsoSession.id))])


def federated_with_totp(app, live_server, upstream, make_provider):
    """A person whose account was made by a first sign-in through the upstream and who then set
    up an authenticator app here: (provider id, upstream person, local user, TOTP secret)."""
    provider_id = make_provider(upstream=upstream, allow_registration=True)
    person_upstream = upstream.make_user()
    first = Person()
    assert first.get(federated(first, live_server, provider_id, upstream.issuer, person_upstream)).status_code == 303
    created = user_by_email(app, person_upstream["email"])
    with app.app_context():
        db.session.execute(db.delete(SsoSession).where(SsoSession.user_id == created["id"]))
        db.session.commit()
    return provider_id, person_upstream, created, give_totp(app, created)


def test_an_upstream_sign_in_continues_into_the_second_factor_set_up_here(app, live_server, upstream,
                                                                        make_provider, pinned_clock):
    """Whoever set up a second factor is always asked for it, after an upstream as after a
    password: the upstream's one factor makes no session of its own."""
    provider_id, person_upstream, local, secret = federated_with_totp(app, live_server, upstream, make_provider)
    person = Person()
    landed = person.get(federated(person, live_server, provider_id, upstream.issuer, person_upstream,
                                  next_path="/account"))
    assert landed.status_code == 303 and landed.headers["Location"] == "/login/totp"
    assert sessions_at(app, local["id"]) == []
    done = answer_totp(person, live_server, secret)
    assert done.status_code == 303 and done.headers["Location"] == "/account"
    [(_, acr, amr)] = sessions_at(app, local["id"])
    assert (acr, amr) == ("urn:idp:acr:mfa", ["fed", "otp", "mfa"])
    types = [t for t, d in events(app, provider_id)]
    assert types[-1] == "federation.login.succeeded"
    assert read(app, lambda: db.session.scalar(db.select(AuditEvent.details).where(
        AuditEvent.type == "authn.login.succeeded", AuditEvent.user_id == local["id"])
        .order_by(AuditEvent.id.desc()).limit(1)))["amr"] == ["fed", "otp", "mfa"]


def test_an_upstream_sign_in_does_not_refresh_a_two_factor_session_for_sensitive_changes(
        app, live_server, upstream, make_provider, pinned_clock):
    """Review finding H2: someone at an unattended browser, where the person is also signed in
    upstream, opened /federation/<id>/start directly and got a fresh one-factor session that
    passed the recent-sign-in check. Now the upstream's sign-in waits for the second factor, and
    the two-factor session stays as it was (same sid, same auth_time, not recent)."""
    provider_id, person_upstream, local, secret = federated_with_totp(app, live_server, upstream, make_provider)
    person = Person()
    person.get(federated(person, live_server, provider_id, upstream.issuer, person_upstream, next_path="/account"))
    assert answer_totp(person, live_server, secret).status_code == 303
    before = sessions_at(app, local["id"])
    pinned_clock.advance(3600)  # long past IDP_MFA_RECENT_AUTH_SECONDS, within the session's lifetime

    _, back = person.follow(person.get(f"{live_server}/federation/{provider_id}/start?next=/account/security"),
                            lambda url: False)
    assert back.url == f"{live_server}/login/totp" and back.status_code == 200
    assert sessions_at(app, local["id"]) == before
    page = person.get(f"{live_server}/account/security")
    assert page.status_code == 200 and "Sign in again" in page.text
    token = csrf_token(person.get(f"{live_server}/login").text)  # the page offers no forms now
    refused = person.post(f"{live_server}/account/security/recovery-codes", data={"csrf_token": token})
    assert refused.status_code == 403
    assert "account.recovery.regenerated" not in read(app, lambda: [e.type for e in db.session.scalars(
        db.select(AuditEvent).where(AuditEvent.user_id == local["id"]))])


def test_sign_in_again_through_an_upstream_never_lowers_a_two_factor_session(app, live_server, upstream,
                                                                             make_provider):
    """"Sign in again" on a two-factor session must reach two factors; an upstream that proves
    one does not replace the session: the login goes on here (for this person, who has no second
    factor here yet, through setting one up) and the session keeps its level meanwhile. A plain
    sign-in through the upstream still works."""
    provider_id = make_provider(upstream=upstream, allow_registration=True)
    person_upstream = upstream.make_user()
    person = Person()
    person.get(federated(person, live_server, provider_id, upstream.issuer, person_upstream))
    created = user_by_email(app, person_upstream["email"])

    def raise_to_mfa():  # as if this session had proved a second factor since
        row = db.session.scalar(db.select(SsoSession).where(SsoSession.user_id == created["id"]))
        row.acr, row.amr = "urn:idp:acr:mfa", ["fed", "otp", "mfa"]
        row.proofs = [["federated", ["fed"], 1, "urn:idp:acr:pwd"], ["totp", ["otp"], 1]]
        db.session.commit()
        return row.sid
    sid = read(app, raise_to_mfa)
    reauth = person.get(f"{live_server}/login", params={"next": "/account/security", "reauth": "1",
                                                        "acr": "urn:idp:acr:mfa", "required": "urn:idp:acr:mfa"})
    assert reauth.status_code == 200
    # Still signed in at the upstream, so the browser comes straight back to our callback.
    _, onward = person.follow(person.get(f"{live_server}/federation/{provider_id}/start?next=/account/security"),
                              lambda url: False)
    assert onward.url == f"{live_server}/login/totp/enrol" and onward.status_code == 200
    assert sessions_at(app, created["id"]) == [(sid, "urn:idp:acr:mfa", ["fed", "otp", "mfa"])]
    assert "authn.login.succeeded" not in [t for t, _ in events(app, provider_id)][-1:]

    other = Person()  # no login in progress that demands a level: the upstream's sign-in is enough
    landed = other.get(federated(other, live_server, provider_id, upstream.issuer, person_upstream))
    assert landed.status_code == 303 and landed.headers["Location"] == "/account"


def test_an_account_with_a_second_factor_is_not_linked_on_its_password_alone(app, live_server, upstream,
                                                                             make_provider, make_user):
    """A password is one factor: linking on it would let the upstream identity into an account
    that signs in with two. Signed in with both first, the owner links, and keeps that session."""
    provider_id = make_provider(upstream=upstream, allow_registration=True, trust_email_verified=True)
    local = make_user()
    secret = give_totp(app, local)
    person_upstream = upstream.make_user(email=local["email"])  # not verified upstream: a link must be proved
    person = Person()
    landed = person.get(federated(person, live_server, provider_id, upstream.issuer, person_upstream,
                                  next_path="/account"))
    link_url = live_server + landed.headers["Location"]
    page = person.get(link_url)
    refused = person.post(link_url, data={"csrf_token": csrf_token(page.text), "login": local["username"],
                                          "password": local["password"]})
    assert refused.status_code == 403 and "two-step sign-in" in refused.text
    assert links_of(app, provider_id) == [] and sessions_of(app, local["id"]) == 0
    assert ("federation.link.refused", {"provider": provider_id, "reason": "second_factor_required"}) \
        in events(app, provider_id)

    sign_in_with_totp(person, live_server, local, secret)
    sid = read(app, lambda: db.session.scalar(db.select(SsoSession.sid).where(SsoSession.user_id == local["id"])))

    # Still signed in upstream: straight back to the callback, then to a new wait for proof.
    url, back = person.follow(person.get(f"{live_server}/federation/{provider_id}/start?next=/account"),
                              lambda url: "/federation/link/" in url)
    assert url is not None
    page = person.get(url)
    linked = person.post(url, data={"csrf_token": csrf_token(page.text), "login": local["username"],
                                    "password": local["password"]})
    assert linked.status_code == 303 and linked.headers["Location"] == "/account"
    assert links_of(app, provider_id) == [(local["id"], person_upstream["subject"])]
    kept = read(app, lambda: [(r.sid, r.acr) for r in db.session.scalars(
        db.select(SsoSession).where(SsoSession.user_id == local["id"]))])
    assert kept == [(sid, "urn:idp:acr:mfa")]
