"""Linking an upstream account to an existing account, and unlinking it, is mailed to the
account's owner (users.notices) once, naming the provider and never the upstream identity's
subject; an account made by the upstream sign-in itself gets no notice."""
from __future__ import annotations

from idp.extensions import db
from idp.models import LinkedIdentity
from tests.federation.journey import Person, federated
from tests.federation.test_roundtrip import links_of, read, user_by_email, verify_email
from tests.helpers.forms import csrf_token

SUBJECT = "How you sign in to your account changed"


def notices_to(app, mailbox, address: str) -> list:
    mailbox.deliver(app)
    return [m for m in mailbox.to(address) if m["Subject"] == SUBJECT]


def text_of(message) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def test_linking_after_the_owner_signs_in_is_mailed_once(app, live_server, upstream, make_provider, make_user,
                                                        mailbox):
    provider_id = make_provider(upstream=upstream, display_name="Acme SSO")
    local = make_user()
    person_upstream = upstream.make_user(email=local["email"])
    person = Person()
    landed = person.get(federated(person, live_server, provider_id, upstream.issuer, person_upstream))
    link_url = live_server + landed.headers["Location"]
    page = person.get(link_url)
    wrong = person.post(link_url, data={"csrf_token": csrf_token(page.text), "login": local["username"],
                                        "password": "not the password at all"})
    assert wrong.status_code == 400 and notices_to(app, mailbox, local["email"]) == []
    done = person.post(link_url, data={"csrf_token": csrf_token(page.text), "login": local["username"],
                                       "password": local["password"]})
    assert done.status_code == 303
    mailbox.wait_count(app, local["email"], 1)
    [notice] = notices_to(app, mailbox, local["email"])
    assert "Your Acme SSO account was linked" in text_of(notice)
    assert person_upstream["subject"] not in notice.as_string()


def test_a_link_on_a_verified_email_and_its_unlinking_are_each_mailed_once(app, live_server, upstream,
                                                                          make_provider, make_user, mailbox):
    provider_id = make_provider(upstream=upstream, trust_email_verified=True, display_name="Trusted Corp")
    local = make_user()
    verify_email(app, local["id"])
    person_upstream = upstream.make_user(email=local["email"], email_verified=True)
    person = Person()
    landed = person.get(federated(person, live_server, provider_id, upstream.issuer, person_upstream))
    assert landed.status_code == 303 and links_of(app, provider_id) == [(local["id"], person_upstream["subject"])]
    mailbox.wait_count(app, local["email"], 1)
    assert "Your Trusted Corp account was linked" in text_of(notices_to(app, mailbox, local["email"])[0])

    account = person.get(f"{live_server}/account")
    link_id = read(app, lambda: db.session.scalar(db.select(LinkedIdentity.id)
                                                  .where(LinkedIdentity.provider_id == provider_id)))
    done = person.post(f"{live_server}/account/linked/{link_id}/unlink", data={"csrf_token": csrf_token(account.text)})
    assert done.status_code == 303
    mailbox.wait_count(app, local["email"], 2)
    [_, unlinked] = notices_to(app, mailbox, local["email"])
    assert "Your Trusted Corp account was unlinked" in text_of(unlinked)
    assert person_upstream["subject"] not in unlinked.as_string()


def test_an_account_made_by_the_upstream_sign_in_and_a_refused_unlink_send_nothing(app, live_server, upstream,
                                                                                   make_provider, mailbox):
    provider_id = make_provider(upstream=upstream, allow_registration=True, trust_email_verified=True)
    person_upstream = upstream.make_user(email_verified=True)
    person = Person()
    person.get(federated(person, live_server, provider_id, upstream.issuer, person_upstream))
    local = user_by_email(app, person_upstream["email"])
    assert local is not None
    account = person.get(f"{live_server}/account")
    link_id = read(app, lambda: db.session.scalar(db.select(LinkedIdentity.id)
                                                  .where(LinkedIdentity.provider_id == provider_id)))
    refused = person.post(f"{live_server}/account/linked/{link_id}/unlink",
                          data={"csrf_token": csrf_token(account.text)})
    assert refused.status_code == 409  # the only way in
    assert notices_to(app, mailbox, person_upstream["email"]) == []
