"""Pre-account hijacking through the verification mail, end to end over real HTTP (classic-federated
merge, Sudhodanan and Paverd 2022): someone registers the victim's address with their own password;
the victim presses "Confirm" in the mail; later the victim signs in through a trusted upstream
that asserts the same verified address. The click must not verify the squatter's account, so the
upstream identity is not linked into it (linking never links into an unverified account:
test_roundtrip.test_a_verified_email_never_links_at_once_to_an_account_whose_email_is_unverified).
An account made through an upstream has no password: it confirms in the browser that signed in."""
from __future__ import annotations

import dataclasses

from tests.conftest import unique
from tests.federation.journey import Person, federated
from tests.federation.test_roundtrip import links_of, sessions_of, user_by_email
from tests.helpers.forms import csrf_token
from tests.users.test_email_links import link_in


def test_the_victims_click_does_not_let_their_upstream_sign_in_join_the_squatters_account(
        app, live_server, upstream, make_provider, mailbox):
    trusted = make_provider(upstream=upstream, trust_email_verified=True, allow_registration=True)
    victim_upstream = upstream.make_user(email=unique("victim") + "@example.com", email_verified=True)
    squatter = Person()
    form = squatter.get(f"{live_server}/register")
    registered = squatter.post(f"{live_server}/register", data={
        "csrf_token": csrf_token(form.text), "username": unique("squat"), "email": victim_upstream["email"],
        "password": "attacker chosen passphrase 1"})
    assert registered.status_code == 303
    link = link_in(mailbox.last(app, victim_upstream["email"]), "/verify-email/")
    victim = Person()
    page = victim.get(link)
    assert page.status_code == 200 and 'name="password"' in page.text
    pressed = victim.post(link, data={"csrf_token": csrf_token(page.text)})
    assert pressed.status_code == 400
    squat = user_by_email(app, victim_upstream["email"])
    assert squat["email_verified"] is False
    landed = victim.get(federated(victim, live_server, trusted, upstream.issuer, victim_upstream))
    assert landed.status_code == 303 and "/federation/link/" in landed.headers["Location"]
    assert links_of(app, trusted) == [] and sessions_of(app, squat["id"]) == 1  # the squatter's own
    assert victim.get(f"{live_server}/account").status_code == 302  # the victim is not in it


def test_an_account_made_through_an_upstream_confirms_in_the_browser_that_signed_in(
        app, live_server, upstream, make_provider, mailbox, monkeypatch):
    """IDP_EMAIL_VERIFICATION_REQUIRED stops the upstream's sign-in before a session; that sign-in
    is the browser's proof, since the account has no password to type."""
    provider_id = make_provider(upstream=upstream, allow_registration=True)  # untrusted: unverified
    person_upstream = upstream.make_user()
    monkeypatch.setitem(app.config, "IDP_SETTINGS",
                        dataclasses.replace(app.config["IDP_SETTINGS"], email_verification_required=True))
    person = Person()
    stopped = person.get(federated(person, live_server, provider_id, upstream.issuer, person_upstream))
    assert stopped.status_code == 403 and "Confirm your email address first" in stopped.text
    assert person.post(f"{live_server}/verify-email", data={"csrf_token": csrf_token(stopped.text)}).status_code == 200
    link = link_in(mailbox.last(app, person_upstream["email"]), "/verify-email/")
    stranger = Person()
    page = stranger.get(link)
    assert page.status_code == 200 and 'name="password"' in page.text
    guessed = stranger.post(link, data={"csrf_token": csrf_token(page.text), "password": "any password 123"})
    assert guessed.status_code == 400
    assert user_by_email(app, person_upstream["email"])["email_verified"] is False
    page = person.get(link)
    assert page.status_code == 200 and 'name="password"' not in page.text
    assert person.post(link, data={"csrf_token": csrf_token(page.text)}).status_code == 200
    assert user_by_email(app, person_upstream["email"])["email_verified"] is True
