"""Racing requests on one login in progress, over real HTTP (threads against the live server):
a double click, two tabs, a script. Whatever the order, no request gets a 500, a login ends at
most once, every wrong code still counts (the throttle and the login's own failure count), and a
one-time factor that was checked stays spent even when its login is found gone.

The live server sees every request from 127.0.0.1, so the shared per-IP counter is put back
afterwards (loopback_ip_counter)."""
from __future__ import annotations

from datetime import timedelta


import json

import requests
from sqlalchemy import func, select

from idp.extensions import db
from idp.models import AuditEvent, LoginAttempt, LoginThrottle, RecoveryCode, SsoSession
from idp.security.tokens import digest
from tests.helpers.authenticator import SoftAuthenticator
from tests.helpers.forms import csrf_token
from tests.helpers.mfa import code_at, give_recovery_codes, give_totp
from tests.helpers.races import at_once as _race

RACERS = 4
ROUNDS = 3
GONE = "This sign-in has already ended"
WRONG = "That code is not right"
NOT_IN_PROGRESS = "There is no sign-in in progress"


def _count(app, model, *where) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(*where))


def _sessions(app, user) -> int:
    return _count(app, SsoSession, SsoSession.user_id == user["id"])


def _events(app, user, kind: str) -> int:
    return _count(app, AuditEvent, AuditEvent.user_id == user["id"], AuditEvent.type == kind)


def _second_factor_failures(app, user) -> int:
    """The per-account throttle counter of second-factor codes (idp.authn.throttle.keys_for)."""
    with app.app_context():
        key = digest("second-factor:%d" % user["id"])[:32]
        row = db.session.get(LoginThrottle, f"acct:{key}")
        return row.failures if row is not None else 0


def _password_step(live_server, user, **extra) -> requests.Session:
    http = requests.Session()
    token = csrf_token(http.get(f"{live_server}/login?next=/account", timeout=10).text)
    response = http.post(f"{live_server}/login", data={"csrf_token": token, "login": user["username"],
                         "password": user["password"], **extra}, allow_redirects=False, timeout=30)
    assert response.status_code == 303, response.status_code
    return http


def _poster(http, live_server, path: str, code: str):
    token = csrf_token(http.get(f"{live_server}{path}", timeout=10).text)
    return lambda: http.post(f"{live_server}{path}", data={"csrf_token": token, "code": code},
                             allow_redirects=False, timeout=30)


def _wrong_code(secret: str) -> str:
    window = {code_at(secret, step) for step in (-1, 0, 1)}
    return next(code for code in ("000000", "111111", "222222") if code not in window)


def _no_error(responses) -> list[int]:
    statuses = [r.status_code for r in responses]
    assert all(status < 500 for status in statuses), statuses
    return statuses


def test_wrong_codes_racing_the_right_one_sign_in_once_and_all_count(app, live_server, make_user, pinned,
                                                                    loopback_ip_counter):
    for _ in range(ROUNDS):
        user = make_user()
        secret = give_totp(app, user)
        http = _password_step(live_server, user)
        wrong, right = _poster(http, live_server, "/login/totp", _wrong_code(secret)), \
            _poster(http, live_server, "/login/totp", code_at(secret))
        responses = _race([wrong] * (RACERS - 1) + [right])
        statuses = _no_error(responses)
        assert statuses.count(303) == 1, statuses
        assert _sessions(app, user) == 1
        assert _count(app, LoginAttempt, LoginAttempt.user_id == user["id"]) == 0
        # Every wrong code that was checked counts, also when the login ended under it (409).
        checked = [r for r in responses if WRONG in r.text or (r.status_code == 409 and GONE in r.text)]
        refused = [r for r in responses if r.status_code != 303]
        assert all(r in checked or NOT_IN_PROGRESS in r.text for r in refused), [r.text[:300] for r in refused]
        assert _second_factor_failures(app, user) == len(checked)


def test_parallel_wrong_codes_are_all_counted_and_end_the_login_once(app, live_server, make_user, pinned,
                                                                     loopback_ip_counter):
    user = make_user()
    secret = give_totp(app, user)
    http = _password_step(live_server, user)
    wrong = _poster(http, live_server, "/login/totp", _wrong_code(secret))
    statuses = _no_error(_race([wrong] * RACERS))
    assert statuses == [400] * RACERS  # the throttle blocks only from the fourth failure on
    with app.app_context():
        [attempt] = db.session.scalars(select(LoginAttempt).where(LoginAttempt.user_id == user["id"]))
        assert attempt.failures == RACERS, "no failure lost to a read-modify-write"
    assert _second_factor_failures(app, user) == RACERS
    pinned.advance(5)  # past the back-off (one second after the fourth failure)
    statuses = _no_error(_race([wrong] * RACERS))
    assert set(statuses) <= {400, 409, 429}, statuses
    assert _events(app, user, "authn.login.abandoned") == 1
    assert _count(app, LoginAttempt, LoginAttempt.user_id == user["id"]) == 0
    assert _sessions(app, user) == 0


def test_one_recovery_code_sent_together_signs_in_once(app, live_server, make_user, pinned, loopback_ip_counter):
    for _ in range(ROUNDS):
        user = make_user()
        give_totp(app, user)
        code = give_recovery_codes(app, user)[0]
        http = _password_step(live_server, user)
        token = csrf_token(http.get(f"{live_server}/login/recovery", timeout=10).text)

        def send():
            return http.post(f"{live_server}/login/recovery", data={"csrf_token": token, "code": code},
                             allow_redirects=False, timeout=30)

        statuses = _no_error(_race([send] * RACERS))
        assert statuses.count(303) == 1, statuses
        assert _sessions(app, user) == 1
        assert _count(app, RecoveryCode, RecoveryCode.user_id == user["id"], RecoveryCode.used_at.is_(None)) == 9
        assert _events(app, user, "authn.recovery.used") == 1


def test_a_double_submitted_password_signs_in_without_error(app, live_server, make_user, loopback_ip_counter):
    """Each racer that answers 303 started one session (none is left half-made); the others get
    the sign-in page again. The form's own `next` is posted too (it updates the login)."""
    for _ in range(ROUNDS):
        user = make_user()
        http = requests.Session()
        token = csrf_token(http.get(f"{live_server}/login?next=/account", timeout=10).text)
        form = {"csrf_token": token, "login": user["username"], "password": user["password"], "next": "/account"}
        wrong = dict(form, password="not the password")

        def send(data):
            return lambda: http.post(f"{live_server}/login", data=data, allow_redirects=False, timeout=30)

        responses = _race([send(form)] * (RACERS - 1) + [send(wrong)])
        statuses = _no_error(responses)
        assert 303 in statuses, statuses
        assert _sessions(app, user) == statuses.count(303)
        assert all(r.headers["Location"] == "/account" for r in responses if r.status_code == 303)
        assert all(r.status_code in (400, 409) and "<form" in r.text for r in responses if r.status_code != 303)


def test_pages_racing_a_sign_out_see_a_signed_out_browser(app, live_server, make_user, pinned):
    """A page that notes the session's use (once a minute) while another tab signs out."""
    for _ in range(ROUNDS):
        user = make_user()
        http = _password_step(live_server, user)
        assert http.get(f"{live_server}/account", allow_redirects=False, timeout=10).status_code == 200
        token = csrf_token(http.get(f"{live_server}/logout", timeout=10).text)
        pinned.advance(120)  # the next page touches last_seen_at

        def page():
            return http.get(f"{live_server}/account", allow_redirects=False, timeout=30)

        def logout():
            return http.post(f"{live_server}/logout", data={"csrf_token": token}, allow_redirects=False, timeout=30)

        responses = _race([page] * (RACERS - 1) + [logout])
        statuses = _no_error(responses)
        assert set(statuses[:-1]) <= {200, 302} and statuses[-1] == 303, statuses
        assert _sessions(app, user) == 0
        assert _events(app, user, "authn.logout.succeeded") == 1


def test_one_reset_link_used_by_racing_requests_sets_one_password(app, live_server, make_user):
    from idp.models import User
    from idp.users import email_links

    user = make_user()
    with app.app_context():
        path = email_links.issue(db.session.get(User, user["id"]), email_links.RESET_PASSWORD)
        db.session.commit()
    http = requests.Session()
    token = csrf_token(http.get(path, timeout=10).text)
    passwords = [f"a brand new passphrase number {n}" for n in range(RACERS)]

    def send(password):
        return lambda: http.post(path, data={"csrf_token": token, "password": password}, allow_redirects=False,
                                 timeout=30)

    statuses = _no_error(_race([send(p) for p in passwords]))
    assert sorted(statuses) == [200] + [410] * (RACERS - 1), statuses
    assert _events(app, user, "users.password.reset") == 1


def test_racing_removals_of_the_authenticator_app_remove_it_once(app, live_server, make_user, pinned,
                                                                 loopback_ip_counter):
    user = make_user()
    secret = give_totp(app, user)
    http = _password_step(live_server, user)
    assert _poster(http, live_server, "/login/totp", code_at(secret))().status_code == 303
    token = csrf_token(http.get(f"{live_server}/account/security", timeout=10).text)

    def remove():
        return http.post(f"{live_server}/account/security/totp/remove", data={"csrf_token": token},
                         allow_redirects=False, timeout=30)

    statuses = _no_error(_race([remove] * RACERS))
    assert statuses == [303] * RACERS
    assert _events(app, user, "authn.totp.removed") == 1 and _events(app, user, "account.totp.removed") == 1


def _step_up_in_progress(app, live_server, user) -> tuple[requests.Session, str]:
    """A password session whose person has since set up an app, asked to step up to MFA."""
    http = _password_step(live_server, user)
    secret = give_totp(app, user)
    asked = http.get(f"{live_server}/login?next=/account&acr=urn:idp:acr:mfa&step_up=1", allow_redirects=False,
                     timeout=10)
    assert asked.headers["Location"] == "/login/totp"
    return http, secret


def test_a_step_up_finished_after_signing_out_signs_nobody_in(app, live_server, make_user, pinned):
    """Signing out ends the login in progress too: the password the step-up borrowed from the
    session does not outlive it."""
    user = make_user()
    http, secret = _step_up_in_progress(app, live_server, user)
    code = _poster(http, live_server, "/login/totp", code_at(secret))
    token = csrf_token(http.get(f"{live_server}/logout", timeout=10).text)
    assert http.post(f"{live_server}/logout", data={"csrf_token": token}, allow_redirects=False,
                     timeout=10).status_code == 303
    late = code()
    assert late.status_code == 400  # the sign-out renewed the CSRF token: the old form is refused
    fresh = csrf_token(http.get(f"{live_server}/login", timeout=10).text)  # and with a valid token:
    late = http.post(f"{live_server}/login/totp", data={"csrf_token": fresh, "code": code_at(secret)},
                     allow_redirects=False, timeout=30)
    assert late.status_code == 400 and NOT_IN_PROGRESS in late.text
    assert _sessions(app, user) == 0


def test_a_step_up_racing_a_sign_out_never_fails_and_leaves_a_consistent_session(app, live_server, make_user, pinned):
    for _ in range(ROUNDS):
        user = make_user()
        http, secret = _step_up_in_progress(app, live_server, user)
        code = _poster(http, live_server, "/login/totp", code_at(secret))
        token = csrf_token(http.get(f"{live_server}/logout", timeout=10).text)

        def logout():
            return http.post(f"{live_server}/logout", data={"csrf_token": token}, allow_redirects=False, timeout=30)

        statuses = _no_error(_race([code, logout]))
        assert statuses[1] == 303 and statuses[0] in (303, 400, 409), statuses
        # Either the sign-out ended the session (and the login with it), or the step-up ended
        # first and gave the session a new cookie value, which a sign-out sent with the old one
        # cannot name: then the session is at the new level, and the browser holds its cookie
        # or (when the sign-out's answer came last and cleared the cookie) none at all.
        if _sessions(app, user):
            assert statuses[0] == 303
            with app.app_context():
                [row] = db.session.scalars(select(SsoSession).where(SsoSession.user_id == user["id"]))
                assert row.acr == "urn:idp:acr:mfa"
                held = http.cookies.get("idp_session")
                assert held is None or row.token_digest == digest(held)


# --- a one-time factor stays spent when its login is gone (RFC 6238 5.2) -----------------------

def _signed_out_everywhere(app, user) -> None:
    """What "sign out everywhere" on another device (or an administrator) does meanwhile."""
    from idp.authn import session

    with app.app_context():
        session.end_sessions_of(user["id"])
        db.session.commit()


def _password_again(live_server, user, http: requests.Session | None = None) -> requests.Response:
    http = http or requests.Session()
    token = csrf_token(http.get(f"{live_server}/login?next=/account", timeout=10).text)
    return http.post(f"{live_server}/login", data={"csrf_token": token, "login": user["username"],
                     "password": user["password"]}, allow_redirects=False, timeout=30)


def test_a_totp_code_spent_on_a_login_that_ended_is_refused_next_time(app, live_server, make_user, pinned,
                                                                       loopback_ip_counter):
    user = make_user()
    http, secret = _step_up_in_progress(app, live_server, user)
    send = _poster(http, live_server, "/login/totp", code_at(secret))
    _signed_out_everywhere(app, user)  # the session the step-up adds to ends under it
    gone = send()
    assert gone.status_code == 409 and GONE in gone.text
    again = requests.Session()
    assert _password_again(live_server, user, again).headers["Location"] == "/login/totp"
    reused = _poster(again, live_server, "/login/totp", code_at(secret))()  # same time step
    assert reused.status_code == 400 and WRONG in reused.text
    assert _sessions(app, user) == 0
    pinned.advance(30)  # the next time step's code is a new one: it works
    assert _poster(again, live_server, "/login/totp", code_at(secret))().status_code == 303


def test_a_recovery_code_spent_on_a_login_that_ended_stays_spent(app, live_server, make_user, pinned,
                                                                 loopback_ip_counter):
    user = make_user()
    http, _secret = _step_up_in_progress(app, live_server, user)
    code = give_recovery_codes(app, user)[0]
    send = _poster(http, live_server, "/login/recovery", code)
    _signed_out_everywhere(app, user)
    gone = send()
    assert gone.status_code == 409 and GONE in gone.text
    assert _count(app, RecoveryCode, RecoveryCode.user_id == user["id"], RecoveryCode.used_at.is_(None)) == 9
    assert _events(app, user, "authn.recovery.used") == 1
    again = requests.Session()
    assert _password_again(live_server, user, again).headers["Location"] == "/login/totp"
    reused = _poster(again, live_server, "/login/recovery", code)()
    assert reused.status_code == 400 and "already used" in reused.text
    assert _sessions(app, user) == 0


def test_a_recovery_code_racing_a_sign_out_is_spent_exactly_when_it_was_accepted(app, live_server, make_user,
                                                                                 pinned, loopback_ip_counter):
    """Whatever the order: refused before it was checked (no login any more) leaves the code
    unused; checked (the login then finished, or was found gone) spends it for good."""
    for _ in range(ROUNDS):
        user = make_user()
        http, _secret = _step_up_in_progress(app, live_server, user)
        code = give_recovery_codes(app, user)[0]
        send = _poster(http, live_server, "/login/recovery", code)
        token = csrf_token(http.get(f"{live_server}/logout", timeout=10).text)

        def logout():
            return http.post(f"{live_server}/logout", data={"csrf_token": token}, allow_redirects=False, timeout=30)

        sent, _ = _race([send, logout])
        assert sent.status_code in (303, 400, 409), sent.status_code
        unused = _count(app, RecoveryCode, RecoveryCode.user_id == user["id"], RecoveryCode.used_at.is_(None))
        assert unused == (10 if NOT_IN_PROGRESS in sent.text else 9), (sent.status_code, unused)


def _passkey_options(http, live_server, path: str, page: str) -> dict:
    token = csrf_token(http.get(f"{live_server}{page}", timeout=10).text)
    return http.post(f"{live_server}{path}", headers={"X-CSRFToken": token, "Accept": "application/json"},
                     timeout=10).json()


def test_a_passkey_assertion_spent_on_a_login_that_ended_cannot_be_replayed(app, live_server, make_user, pinned):
    user = make_user()
    http = _password_step(live_server, user)
    authenticator = SoftAuthenticator()
    # (the account page offers no passkey form at an IP-address issuer; the CSRF token is the same)
    created = authenticator.create(_passkey_options(http, live_server, "/account/passkeys/options", "/logout"),
                                   live_server)
    token = csrf_token(http.get(f"{live_server}/logout", timeout=10).text)
    assert http.post(f"{live_server}/account/passkeys", data={"csrf_token": token, "name": "Laptop",
                     "credential": json.dumps(created)}, allow_redirects=False, timeout=10).status_code == 200
    with app.app_context():  # setting the passkey up raised the session; as if it were older
        for row in db.session.scalars(db.select(SsoSession).where(SsoSession.user_id == user["id"])):
            row.acr, row.amr, row.proofs = "urn:idp:acr:pwd", ["pwd"], [["password", ["pwd"], 1]]
        db.session.commit()
    asked = http.get(f"{live_server}/login?next=/account&acr=urn:idp:acr:mfa&step_up=1", allow_redirects=False,
                     timeout=10)
    assert asked.headers["Location"] == "/login/passkey"
    answer = json.dumps(authenticator.get(_passkey_options(http, live_server, "/login/passkey/options",
                                                           "/login/passkey"), live_server))
    token = csrf_token(http.get(f"{live_server}/login/passkey", timeout=10).text)
    _signed_out_everywhere(app, user)
    gone = http.post(f"{live_server}/login/passkey", data={"csrf_token": token, "credential": answer},
                     allow_redirects=False, timeout=30)
    assert gone.status_code == 409 and GONE in gone.text
    # The same browser signs in again and presents the same assertion (its challenge is bound
    # to this browser and this person, as before).
    assert _password_again(live_server, user, http).headers["Location"] == "/login/passkey"
    token = csrf_token(http.get(f"{live_server}/login/passkey", timeout=10).text)
    replayed = http.post(f"{live_server}/login/passkey", data={"csrf_token": token, "credential": answer},
                         allow_redirects=False, timeout=30)
    assert replayed.status_code == 400 and "That passkey did not work" in replayed.text
    assert _sessions(app, user) == 0


def test_parallel_guesses_at_the_code_step_get_no_more_than_the_back_off_allows(app, live_server, make_user,
                                                                               loopback_ip_counter):
    """The check, the code and the count are one step per account (found by review: MFA M2):
    with the account's counter one failure from a long block, of forty guesses sent at once over
    ten logins exactly one is tried; the rest wait for it and then see the block."""
    from idp.clock import now
    from idp.models import LoginThrottle
    from idp.security.tokens import digest
    from tests.helpers.races import at_once

    user = make_user()
    secret = give_totp(app, user)
    sessions = [_password_step(live_server, user) for _ in range(10)]
    key = f"acct:{digest('second-factor:%d' % user['id'])[:32]}"
    with app.app_context():  # deep in back-off: the last block just ran out
        db.session.add(LoginThrottle(key=key, failures=40, updated_at=now(), blocked_until=now() - timedelta(seconds=1)))
        db.session.commit()
    statuses = [r.status_code for r in at_once([_poster(http, live_server, "/login/totp", _wrong_code(secret))
                                                for http in sessions for _ in range(4)])]
    assert statuses.count(400) == 1 and statuses.count(429) == 39, sorted(statuses)
