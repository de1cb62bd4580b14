"""Failed logins back off exponentially per account+IP, per account and per IP; never a permanent lock."""
import random
import re
import uuid

import pytest
from sqlalchemy import select

from idp import audit
from idp.authn.throttle import FREE_FAILURES
from idp.extensions import db
from idp.models import LoginThrottle, SsoSession
from idp.security.tokens import digest
from tests.authn.web import Web, random_ip
from tests.authn.fakes import counting_hasher
from tests.helpers.forms import csrf_token
from tests.helpers.mfa import code_at, give_totp

WRONG = "not the right password"
FREE = FREE_FAILURES["acct-ip"]


def fail(web, user, times=1):
    for _ in range(times):
        response = web.login(user["username"], WRONG)
        assert response.status_code == 400, response.status_code


def assert_throttled(web, user, seconds=None):
    response = web.login(user["username"], user["password"])
    html = response.get_data(as_text=True)
    assert response.status_code == 429
    assert "Too many attempts" in html
    assert web.session_cookie is None
    wait = int(re.search(r"Wait (\d+) seconds", html).group(1))
    assert int(response.headers["Retry-After"]) == wait
    if seconds is not None:
        assert wait == seconds
    return wait


def assert_allowed(web, user):
    response = web.login(user["username"], user["password"])
    assert response.status_code == 303, response.status_code
    assert web.is_signed_in()


def test_after_the_free_failures_even_the_right_password_waits(app, web, make_user, pinned):
    user = make_user()
    fail(web, user, FREE + 1)
    assert_throttled(web, user, seconds=app.config["IDP_SETTINGS"].throttle_base_delay)


def test_throttled_attempt_checks_no_password_and_is_audited(app, web, make_user, pinned):
    user = make_user()
    fail(web, user, FREE + 1)
    with counting_hasher(app) as counter:
        assert_throttled(web, user)
    assert counter.verifies == 0
    with app.app_context():
        event = audit.as_dict(audit.events(type_prefix="authn.login.failed")[-1])
        assert db.session.scalar(select(SsoSession.id).where(SsoSession.user_id == user["id"])) is None
    assert event["details"] == {"reason": "throttled"} and event["ip"] == web.ip


def test_the_delay_doubles_with_each_further_failure(app, web, make_user, pinned):
    base = app.config["IDP_SETTINGS"].throttle_base_delay
    user = make_user()
    fail(web, user, FREE)
    for n in range(4):
        fail(web, user)                        # answered normally, but sets the next back-off
        delay = base * 2 ** n
        assert_throttled(web, user, seconds=delay)
        pinned.advance(delay - 1)
        assert_throttled(web, user, seconds=1)
        pinned.advance(1)
    assert_allowed(web, user)


def test_success_clears_the_account_and_ip_counter(app, web, make_user, pinned):
    user = make_user()
    fail(web, user, FREE)
    assert_allowed(web, user)
    fail(web, user, FREE)                      # a fresh allowance after the success
    assert_allowed(web, user)


def test_failures_elsewhere_do_not_block_the_victim_until_the_account_allowance_is_used(app, make_user, pinned):
    user = make_user()
    victim = Web(app)
    per_account = FREE_FAILURES["acct"]
    attackers = [Web(app) for _ in range(per_account // FREE)]
    for attacker in attackers:                 # each attacker IP uses only its own free failures
        fail(attacker, user, FREE)
    used = FREE * len(attackers)
    assert used <= per_account
    assert_allowed(victim, user)
    extra = Web(app)
    fail(extra, user, per_account - used + 1)  # past the account-wide allowance
    assert_throttled(Web(app), user)           # now the account waits everywhere ...
    pinned.advance(app.config["IDP_SETTINGS"].throttle_base_delay)
    assert_allowed(victim, user)               # ... but only for the back-off


def fail_as(web, login: str, times: int = 1):
    for _ in range(times):
        assert web.login(login, WRONG).status_code == 400


def test_the_username_and_the_email_share_one_account_allowance(app, make_user, pinned):
    """Each form of the login had its own 20 free failures, doubling the guesses per account:
    failures alternating between them reach the account's limit at the same count as one form."""
    user = make_user()
    forms = [user["username"], user["email"], user["username"].upper(), user["email"].upper()]
    for i in range(FREE_FAILURES["acct"] + 1):  # a new network for each guess: only the account counter grows
        fail_as(Web(app), forms[i % len(forms)])
    assert_throttled(Web(app), user)
    account = digest("user:%d" % user["id"])[:32]
    with app.app_context():
        assert db.session.get(LoginThrottle, f"acct:{account}").failures == FREE_FAILURES["acct"] + 1


def test_a_typed_login_never_counts_on_another_counter(app, make_user, pinned):
    """An unknown login counts on its own key: typing what another counter is named after
    (user:<id>, second-factor:<id>) past the account allowance slows neither the person's
    password nor their second-factor step."""
    user = make_user()
    secret = give_totp(app, user)
    for login in (f"user:{user['id']}", f"second-factor:{user['id']}"):
        for _ in range(FREE_FAILURES["acct"] // FREE + 1):
            fail_as(Web(app), login, FREE)
    web = Web(app)
    assert web.login(user["username"], user["password"]).headers["Location"] == "/login/totp"
    page = web.get("/login/totp").get_data(as_text=True)
    done = web.post("/login/totp", data={"csrf_token": csrf_token(page), "code": code_at(secret)})
    assert done.status_code == 303 and web.is_signed_in()


def test_failures_on_other_accounts_from_one_ip_block_that_ip_after_its_allowance(app, make_user, pinned):
    ip = random_ip()
    per_ip = FREE_FAILURES["ip"]
    for _ in range(per_ip // FREE):            # unknown logins: each is its own account counter
        fail(Web(app, ip=ip), {"username": f"ghost-{uuid.uuid4().hex}"}, FREE)
    spare = per_ip - (per_ip // FREE) * FREE
    fail(Web(app, ip=ip), {"username": f"ghost-{uuid.uuid4().hex}"}, spare + 1)
    newcomer = make_user()
    assert_throttled(Web(app, ip=ip), newcomer)
    assert_allowed(Web(app), newcomer)         # the account itself is not blocked elsewhere


def test_no_permanent_lock_after_the_maximum_delay(app, web, make_user, pinned):
    s = app.config["IDP_SETTINGS"]
    user = make_user()
    fail(web, user, FREE)
    delay = s.throttle_base_delay
    while delay < s.throttle_max_delay:
        fail(web, user)
        pinned.advance(min(delay, s.throttle_max_delay))
        delay *= 2
    fail(web, user)
    assert assert_throttled(web, user) == s.throttle_max_delay  # capped
    pinned.advance(s.throttle_max_delay)
    assert_allowed(web, user)


def test_occasional_typos_over_months_never_add_up_to_a_block(app, make_user, pinned):
    user = make_user()
    for _ in range(FREE_FAILURES["acct"] + 5):
        web = Web(app)                         # a new network each time: only the account counter grows
        fail(web, user)
        assert_allowed(web, user)
        pinned.advance(25 * 3600)


def test_ipv6_addresses_in_one_slash_64_share_a_counter(app, make_user, pinned):
    user = make_user()
    a, b = random.randrange(0x10000), random.randrange(0x10000)
    prefix, neighbour = f"2001:db8:{a:x}:{b:x}", f"2001:db8:{a:x}:{(b + 1) % 0x10000:x}"
    for i in range(FREE + 1):                  # a new address of the same /64 for every guess
        fail(Web(app, ip=f"{prefix}::{i + 1:x}"), user)
    assert_throttled(Web(app, ip=f"{prefix}:ffff:ffff:ffff:ffff"), user)
    assert_allowed(Web(app, ip=f"{neighbour}::1"), user)


def test_ipv4_mapped_ipv6_address_counts_as_the_ipv4_address(app, make_user, pinned):
    user = make_user()
    ip = random_ip()
    fail(Web(app, ip=f"::ffff:{ip}"), user, FREE + 1)
    assert_throttled(Web(app, ip=ip), user)


def test_throttle_rows_never_hold_the_login_in_clear(app, make_user):
    user = make_user()
    web = Web(app)
    fail(web, user)
    with app.app_context():
        keys = list(db.session.scalars(select(LoginThrottle.key)))
    assert not any(user["username"] in k or user["email"] in k for k in keys)


# Device cookies (idp.authn.known_devices): the person's own browsers are counted on their own.

def device_cookie(web) -> str | None:
    name = "idp_device" if web.app.config["IDP_SETTINGS"].is_loopback_http else "__Host-idp_device"
    cookie = web.http.get_cookie(name, domain=web.host)
    return cookie.value if cookie is not None else None


def set_device_cookie(web, value: str) -> None:
    name = "idp_device" if web.app.config["IDP_SETTINGS"].is_loopback_http else "__Host-idp_device"
    web.http.set_cookie(name, value, domain=web.host)


def block_the_account(app, user) -> None:
    """Guessing from many networks until the account-wide allowance is spent."""
    for _ in range(FREE_FAILURES["acct"] // FREE):
        fail(Web(app), user, FREE)
    fail(Web(app), user, FREE_FAILURES["acct"] - (FREE_FAILURES["acct"] // FREE) * FREE + 1)
    assert_throttled(Web(app), user)


def test_a_browser_that_signed_in_before_is_not_slowed_by_guessing_elsewhere(app, make_user, pinned):
    user = make_user()
    victim = Web(app)
    response = victim.login(user["username"], user["password"])
    assert response.status_code == 303 and device_cookie(victim)
    header = [h for h in response.headers.getlist("Set-Cookie") if h.startswith("idp_device=")][0]
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Path=/" in header
    victim.logout()
    before = device_counters(app)              # other tests' browsers may have left theirs
    block_the_account(app, user)
    assert_allowed(victim, user)               # its own counter, untouched by the attack
    assert device_counters(app) <= before      # the attack counted on no device's counter


def device_counters(app) -> set[str]:
    with app.app_context():
        return {key for key in db.session.scalars(select(LoginThrottle.key)) if key.startswith("dev:")}


def test_a_device_cookie_has_a_small_allowance_of_its_own(app, make_user, pinned):
    user = make_user()
    web = Web(app)
    assert_allowed(web, user)
    web.logout()
    fail(web, user, FREE_FAILURES["dev"] + 1)
    assert_throttled(web, user, seconds=app.config["IDP_SETTINGS"].throttle_base_delay)
    assert_allowed(Web(app), user)             # the account itself is not blocked


@pytest.mark.parametrize("change", ["tampered", "other_account", "expired"])
def test_a_device_cookie_counts_only_when_genuine_current_and_for_this_account(app, make_user, pinned, change):
    user, other = make_user(), make_user()
    web = Web(app)
    assert_allowed(web, other if change == "other_account" else user)
    value = device_cookie(web)
    web.logout()
    if change == "tampered":
        user_id, issued, nonce, mac = value.split(".")
        set_device_cookie(web, f"{user_id}.{int(issued) + 1}.{nonce}.{mac}")
    if change == "expired":
        pinned.advance(366 * 24 * 3600)
    block_the_account(app, user)
    assert_throttled(web, user)


def change_password(web, current: str, new: str = "a fresh new passphrase 77"):
    page = web.get("/account/security/password").get_data(as_text=True)
    return web.post("/account/security/password", data={"csrf_token": csrf_token(page), "current_password": current,
                                                         "new_password": new, "end_other_sessions": "1"})


def test_guessing_elsewhere_does_not_stop_the_owners_browser_confirming_its_password(app, make_user, pinned):
    """The password asked again (a new password, email or deletion, an emailed link) counts on the
    device cookie's counter like a sign-in, not on the account's that strangers keep blocked
    (found by review: the owner signed in but could change nothing, 429 for up to 15 minutes)."""
    user = make_user()
    owner = Web(app)
    assert_allowed(owner, user)
    owner.logout()
    block_the_account(app, user)
    assert_allowed(owner, user)
    response = change_password(owner, user["password"])
    assert response.status_code == 303, response.status_code
    assert_throttled(Web(app), user)           # the stranger's counter still holds


def test_wrong_confirmations_in_the_owners_browser_still_count_on_its_device_counter(app, make_user, pinned):
    user = make_user()
    owner = Web(app)
    assert_allowed(owner, user)
    for _ in range(FREE_FAILURES["dev"] + 1):
        assert change_password(owner, WRONG).status_code == 400
    response = change_password(owner, user["password"])
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) == app.config["IDP_SETTINGS"].throttle_base_delay
    assert_allowed(Web(app), user)             # the account itself is not blocked
