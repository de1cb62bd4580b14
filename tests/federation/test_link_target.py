"""The wait for proof links an upstream identity only to the account whose email matched it: the
link page names that address, so proving another account (by its password, or with a two-factor
session of it) is refused, recorded, and leaves the wait for the right account."""
from __future__ import annotations

from idp.extensions import db
from idp.models import PendingLink
from tests.federation.journey import Person, federated, sign_in_with_totp
from tests.federation.test_roundtrip import events, links_of, read, sessions_of
from tests.helpers.forms import csrf_token
from tests.helpers.mfa import give_totp


def waiting(app, provider_id: str) -> int:
    return read(app, lambda: db.session.scalar(db.select(db.func.count()).select_from(PendingLink)
                                               .where(PendingLink.provider_id == provider_id)))


def to_link_page(person: Person, live_server: str, provider_id: str, upstream, person_upstream: dict):
    landed = person.get(federated(person, live_server, provider_id, upstream.issuer, person_upstream,
                                  next_path="/account"))
    assert landed.status_code == 303 and "/federation/link/" in landed.headers["Location"]
    link_url = live_server + landed.headers["Location"]
    return link_url, person.get(link_url)


def test_another_accounts_valid_password_is_refused_and_links_nothing(app, live_server, upstream, make_provider,
                                                                      make_user):
    provider_id = make_provider(upstream=upstream, allow_registration=True, trust_email_verified=True)
    matched, other = make_user(), make_user()
    # The upstream spells the address in capitals: it still names the matched account.
    person_upstream = upstream.make_user(email=matched["email"].upper())
    person = Person()
    link_url, page = to_link_page(person, live_server, provider_id, upstream, person_upstream)
    assert matched["email"].upper() in page.text

    refused = person.post(link_url, data={"csrf_token": csrf_token(page.text), "login": other["username"],
                                          "password": other["password"]})
    assert refused.status_code == 403 and "You signed in to a different account." in refused.text
    assert links_of(app, provider_id) == []
    assert sessions_of(app, other["id"]) == 0 and sessions_of(app, matched["id"]) == 0
    assert ("federation.link.refused", {"provider": provider_id, "reason": "other_account"}) \
        in events(app, provider_id)
    assert waiting(app, provider_id) == 1  # not consumed: the right account can still link

    done = person.post(link_url, data={"csrf_token": csrf_token(refused.text), "login": matched["username"],
                                       "password": matched["password"]})
    assert done.status_code == 303 and done.headers["Location"] == "/account"
    assert links_of(app, provider_id) == [(matched["id"], person_upstream["subject"])]
    assert waiting(app, provider_id) == 0


def test_a_two_factor_session_of_another_account_does_not_link_to_it(app, live_server, upstream, make_provider,
                                                                     make_user):
    """The "owner already signed in with both factors" path checks the same: the session and the
    password are of the account the wait is about, not merely of each other."""
    provider_id = make_provider(upstream=upstream, allow_registration=True, trust_email_verified=True)
    matched, other = make_user(), make_user()
    secret = give_totp(app, other)
    person_upstream = upstream.make_user(email=matched["email"])
    person = Person()
    sign_in_with_totp(person, live_server, other, secret)

    link_url, page = to_link_page(person, live_server, provider_id, upstream, person_upstream)
    refused = person.post(link_url, data={"csrf_token": csrf_token(page.text), "login": other["username"],
                                          "password": other["password"]})
    assert refused.status_code == 403 and "You signed in to a different account." in refused.text
    assert links_of(app, provider_id) == [] and waiting(app, provider_id) == 1
    assert ("federation.link.refused", {"provider": provider_id, "reason": "other_account"}) \
        in events(app, provider_id)
