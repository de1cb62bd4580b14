"""An upstream sign-in counts for what the provider's mapping says, and never more later: a
step-up starts from the proofs the session stored, not from its amr strings (where an upstream's
"pwd", "otp" or "swk" look like our own factors), and the account's password adds no second
factor to a one-factor upstream sign-in. Found by review (federation H1, M1)."""
from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import urlsplit

from idp import clock
from idp.clock import now
from idp.extensions import db
from idp.models import LinkedIdentity, SsoSession, User
from tests.federation.journey import Person
from tests.federation.test_roundtrip import read
from tests.helpers.forms import csrf_token
from tests.helpers.rp import RelyingParty

ENROLMENT = ("/login/totp/enrol", "/login/passkey/enrol")


def session_of(app, email: str) -> tuple:
    def find():
        uid = db.session.scalar(db.select(User.id).where(User.email == email))
        row = db.session.scalar(db.select(SsoSession).where(SsoSession.user_id == uid))
        return row.acr, list(row.amr), row.auth_time
    return read(app, find)


def fed_login(person, live_server, fake_op, provider_id, next_path=None):
    start = f"{live_server}/federation/{provider_id}/start" + (f"?next={next_path}" if next_path else "")
    started = person.get(start)
    assert started.status_code == 302
    return person.get(person.get(started.headers["Location"]).headers["Location"])


def stops_before_the_client(person, live_server, client, **params) -> str:
    """Run an authorization request in this browser; it must stop at one of our pages (never
    reach the client's redirect URI): returns that page's path."""
    rp = RelyingParty(live_server, client)
    url, response = person.follow(person.get(rp.authorization_url(**params)),
                                  lambda u: u.startswith(client["redirect_uri"]))
    assert url is None and response.status_code == 200
    return urlsplit(response.url).path


def export_status(person, live_server) -> int:
    page = person.get(f"{live_server}/account/privacy")
    return person.post(f"{live_server}/account/export", data={"csrf_token": csrf_token(page.text)}).status_code


def test_an_upstream_password_is_not_our_password_when_an_app_asks_for_two_factors_an_hour_later(
        app, live_server, fake_op, make_provider, make_client):
    clock.set_now(datetime.now(timezone.utc))
    fake_op.claims = {**fake_op.claims, "email": f"{fake_op.subject}@op.example", "amr": ["pwd"]}
    provider_id = make_provider(fake_op.url, allow_registration=True, trust_email_verified=True,
                                acr_mapping={"amr": {"pwd": "urn:idp:acr:pwd", "otp": "urn:idp:acr:mfa"}})
    person = Person()
    assert fed_login(person, live_server, fake_op, provider_id).status_code == 303
    email = fake_op.claims["email"]
    acr, amr, auth_time = session_of(app, email)
    assert (acr, amr) == ("urn:idp:acr:pwd", ["fed", "pwd"])
    clock.advance(3600)
    assert export_status(person, live_server) == 303  # stale: sign in again
    client = make_client(first_party=True, require_mfa=True)
    # An hour old, one factor, and two needed: a set-up needs fresh proofs, from the first factor.
    assert stops_before_the_client(person, live_server, client) == "/login"
    assert session_of(app, email) == (acr, amr, auth_time)  # neither raised nor made recent
    assert export_status(person, live_server) == 303


def test_an_upstream_passkey_mapped_to_mfa_does_not_pass_for_phishing_resistant(
        app, live_server, fake_op, make_provider, make_client):
    fake_op.claims = {**fake_op.claims, "email": f"{fake_op.subject}@op.example", "amr": ["swk"]}
    provider_id = make_provider(fake_op.url, allow_registration=True, trust_email_verified=True,
                                acr_mapping={"amr": {"hwk": "urn:idp:acr:phr", "swk": "urn:idp:acr:mfa"}})
    person = Person()
    assert fed_login(person, live_server, fake_op, provider_id).status_code == 303
    assert session_of(app, fake_op.claims["email"])[:2] == ("urn:idp:acr:mfa", ["fed", "swk"])
    client = make_client(first_party=True)
    essential = '{"id_token":{"acr":{"essential":true,"values":["urn:idp:acr:phr"]}}}'
    assert stops_before_the_client(person, live_server, client, claims=essential) == "/login/passkey/enrol"
    assert session_of(app, fake_op.claims["email"])[0] == "urn:idp:acr:mfa"


def test_a_one_factor_upstream_and_the_local_password_are_not_two_factors(
        app, live_server, fake_op, make_provider, make_client, make_user):
    local = make_user()
    fake_op.claims = {**fake_op.claims, "email": local["email"], "email_verified": False}
    provider_id = make_provider(fake_op.url)  # no mapping: the upstream sign-in is one factor
    with app.app_context():
        db.session.add(LinkedIdentity(user_id=local["id"], provider_id=provider_id, subject=fake_op.subject,
                                      email=local["email"], created_at=now(), last_used_at=now()))
        db.session.commit()
    client = make_client(first_party=True, require_mfa=True)
    person = Person()
    login_url = person.get(RelyingParty(live_server, client).authorization_url()).headers["Location"]
    assert person.get(f"{live_server}{login_url}").status_code == 200
    resume = login_url.split("next=")[1].split("&")[0]
    landed = fed_login(person, live_server, fake_op, provider_id, next_path=resume)
    assert landed.status_code == 303 and landed.headers["Location"] in ENROLMENT  # not "/login?resume=1"


def test_a_session_from_the_link_page_is_not_raised_without_a_new_proof(
        app, live_server, fake_op, make_provider, make_client, make_user):
    clock.set_now(datetime.now(timezone.utc))
    local = make_user()
    fake_op.claims = {**fake_op.claims, "email": local["email"], "email_verified": False}
    provider_id = make_provider(fake_op.url)
    person = Person()
    held = fed_login(person, live_server, fake_op, provider_id)
    assert held.status_code == 303 and "/federation/link/" in held.headers["Location"]
    page = person.get(f"{live_server}{held.headers['Location']}")
    assert person.post(f"{live_server}{held.headers['Location']}", data={
        "csrf_token": csrf_token(page.text), "login": local["username"],
        "password": local["password"]}).status_code == 303
    before = session_of(app, local["email"])
    assert before[:2] == ("urn:idp:acr:pwd", ["fed", "pwd"])
    clock.advance(3600)
    client = make_client(first_party=True, require_mfa=True)
    assert stops_before_the_client(person, live_server, client) == "/login"
    assert session_of(app, local["email"]) == before
    assert export_status(person, live_server) == 303
