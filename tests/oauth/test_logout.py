"""Logout that reaches every app, over real HTTP: RP-Initiated Logout 1.0 at /end-session and
Back-Channel Logout 1.0 to a tiny relying party receiver on loopback (http.server in a thread)
that records every logout token POSTed to it."""
from __future__ import annotations

import dataclasses
import socket
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode

import pytest
from joserfc import jwt

from idp import clock, outbox
from idp.extensions import db
from idp.models import AuditEvent, Client, Grant, OutboxMessage, SsoSession
from idp.oauth.logout import EVENT, KIND
from idp.oauth.purge import grace
from tests.helpers.forms import csrf_token
from tests.helpers.keys import use_keys_alg
from tests.helpers.rp import Browser, jwks, verify_id_token
from tests.oauth.flows import assert_redirect_error, assert_token_error, raw_authorize_url, refresh, tokens_for, with_db

WAIT = 30  # seconds to wait for something that must happen; never a speed assertion
PLR = "http://127.0.0.1:9999/signed-out"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """A relying party's backchannel_logout_uri: records each POST as it arrives, then answers
    `status`, after `gate` opens when one is set."""

    def __init__(self):
        self.port = free_port()
        self.status = 200
        self.gate: threading.Event | None = None
        self.posts: list[dict] = []
        self.answered = 0
        self.changed = threading.Condition()
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/backchannel-logout"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                with receiver.changed:
                    receiver.posts.append({"content_type": self.headers.get("Content-Type"), "path": self.path,
                                           "form": parse_qs(body, keep_blank_values=True)})
                    receiver.changed.notify_all()
                if receiver.gate is not None:
                    receiver.gate.wait(WAIT)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with receiver.changed:
                    receiver.answered += 1
                    receiver.changed.notify_all()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.gate is not None:
            self.gate.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def wait_for(self, posts: int = 1, answered: int = 0) -> list[str]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.posts) >= posts and self.answered >= answered, WAIT)
        return self.tokens()

    def tokens(self) -> list[str]:
        tokens = []
        for post in self.posts:
            assert post["content_type"] == "application/x-www-form-urlencoded"
            assert list(post["form"]) == ["logout_token"] and len(post["form"]["logout_token"]) == 1
            tokens.append(post["form"]["logout_token"][0])
        return tokens


@pytest.fixture
def receivers():
    started: list[Receiver] = []

    def make(up: bool = True) -> Receiver:
        receiver = Receiver()
        started.append(receiver)
        return receiver.start() if up else receiver
    yield make
    for receiver in started:
        receiver.stop()


@pytest.fixture
def logout_client(make_client):
    """A first-party client (no consent screen) with a registered post_logout_redirect_uri and,
    when given a receiver, a backchannel_logout_uri."""
    def make(receiver: Receiver | None = None, **extra):
        client = make_client(first_party=True, post_logout_redirect_uris=[PLR, PLR + "?from=idp"],
                             backchannel_logout_uri=receiver.url if receiver else None,
                             backchannel_logout_session_required=True, **extra)
        return client
    return make


def sign_in_to(issuer: str, user: dict, client: dict, browser: Browser | None = None, scope: str = "openid"):
    """A code flow in `browser` (signing in when needed); returns (browser, tokens, ID token claims)."""
    rp, browser, tokens = tokens_for(issuer, user, client, scope=scope, browser=browser)
    return browser, tokens, verify_id_token(issuer, tokens["id_token"], client["client_id"], rp.nonce)


def end_session(browser: Browser, issuer: str, method: str = "GET", **params):
    if method == "POST":
        return browser.post(f"{issuer}/end-session", data=params)
    return browser.get(f"{issuer}/end-session?" + urlencode(params))


def assert_signed_out(issuer: str, browser: Browser, client: dict) -> None:
    """OIDC Core 3.1.2.6: with no session, prompt=none answers login_required."""
    response = browser.get(raw_authorize_url(issuer, client, prompt="none", state="after-logout"))
    assert_redirect_error(response, client, issuer, "login_required", "after-logout")


def assert_signed_in(issuer: str, browser: Browser, client: dict) -> None:
    response = browser.get(raw_authorize_url(issuer, client, prompt="none", state="still-in"))
    assert response.status_code == 302 and "code=" in response.headers["Location"], response.headers.get("Location")


def verify_logout_token(issuer: str, token: str, client_id: str) -> dict:
    """BCL 1.0 2.4 and 2.6: signed with a key from /jwks, typ logout+jwt, the required claims, no nonce."""
    decoded = jwt.decode(token, jwks(issuer), algorithms=["RS256", "ES256"])
    assert decoded.header["typ"] == "logout+jwt" and decoded.header["kid"]
    claims = dict(decoded.claims)
    assert claims["iss"] == issuer and claims["aud"] == client_id
    assert claims["events"] == {EVENT: {}}
    assert "nonce" not in claims
    assert isinstance(claims["iat"], int) and 0 < claims["exp"] - claims["iat"] <= 120
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16
    assert set(claims) == {"iss", "aud", "iat", "exp", "jti", "events", "sid", "sub"}
    return claims


def messages_for(app, client_id: str) -> list[dict]:
    def read(db):
        rows = db.session.scalars(db.select(OutboxMessage).where(OutboxMessage.kind == KIND)).all()
        return [{"id": r.id, "status": r.status, "attempts": r.attempts, "last_error": r.last_error,
                 "next_attempt_at": clock.aware(r.next_attempt_at)}
                for r in rows if r.payload["client_id"] == client_id]
    return with_db(app, read)


def wait_until(condition) -> None:
    deadline = threading.Event()
    for _ in range(WAIT * 20):
        if condition():
            return
        deadline.wait(0.05)
    raise AssertionError("condition not reached")


def sessions_of(app, user: dict) -> int:
    return with_db(app, lambda db: db.session.scalar(
        db.select(db.func.count()).select_from(SsoSession).where(SsoSession.user_id == user["id"])))


# --- discovery ----------------------------------------------------------------------------------
def test_discovery_advertises_end_session_and_back_channel_logout(live_server):
    meta = Browser(live_server).get(f"{live_server}/.well-known/openid-configuration").json()
    assert meta["end_session_endpoint"] == f"{live_server}/end-session"
    assert meta["backchannel_logout_supported"] is True
    assert meta["backchannel_logout_session_supported"] is True
    assert meta["frontchannel_logout_supported"] is False


# --- RP-initiated logout with a valid id_token_hint ----------------------------------------------
def test_logout_with_hint_redirects_with_state_ends_the_session_and_tells_every_app(
        live_server, app, make_user, logout_client, receivers):
    user = make_user()
    first, second = receivers(), receivers()
    client_a = logout_client(first)
    client_b = logout_client(second, subject_type="pairwise")
    browser, tokens_a, id_a = sign_in_to(live_server, user, client_a)
    browser, _, id_b = sign_in_to(live_server, user, client_b, browser=browser)
    assert id_a["sid"] == id_b["sid"] and id_a["sub"] != id_b["sub"]   # one session; B sees a pairwise sub
    response = end_session(browser, live_server, id_token_hint=tokens_a["id_token"],
                           post_logout_redirect_uri=PLR, state="xyz 1")
    assert response.status_code == 302 and response.headers["Location"] == PLR + "?state=xyz+1"
    assert_signed_out(live_server, browser, client_a)
    assert sessions_of(app, user) == 0
    [token_a], [token_b] = first.wait_for(answered=1), second.wait_for(answered=1)
    claims_a = verify_logout_token(live_server, token_a, client_a["client_id"])
    claims_b = verify_logout_token(live_server, token_b, client_b["client_id"])
    assert (claims_a["sid"], claims_a["sub"]) == (id_a["sid"], id_a["sub"])
    assert (claims_b["sid"], claims_b["sub"]) == (id_b["sid"], id_b["sub"])
    assert claims_a["jti"] != claims_b["jti"]
    wait_until(lambda: [m["status"] for m in messages_for(app, client_b["client_id"])] == ["delivered"])
    assert [m["status"] for m in messages_for(app, client_a["client_id"])] == ["delivered"]
    events = with_db(app, lambda db: [(e.type, e.client_id) for e in db.session.scalars(
        db.select(AuditEvent).where(AuditEvent.user_id == user["id"]).order_by(AuditEvent.id))])
    assert ("oauth.logout.succeeded", client_a["client_id"]) in events
    assert ("oauth.logout_token.delivered", client_b["client_id"]) in events


def test_the_app_may_post_the_logout_request(live_server, app, make_user, logout_client):
    user = make_user()
    client = logout_client()
    browser, tokens, _ = sign_in_to(live_server, user, client)
    response = end_session(browser, live_server, method="POST", id_token_hint=tokens["id_token"],
                           client_id=client["client_id"], post_logout_redirect_uri=PLR + "?from=idp", state="s")
    assert response.status_code == 303 and response.headers["Location"] == PLR + "?from=idp&state=s"
    assert_signed_out(live_server, browser, client)


def _hidden_fields(page: str) -> dict:
    import html
    import re
    return {html.unescape(name): html.unescape(value)
            for name, value in re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', page)}


def test_a_cross_site_logout_post_is_sent_again_from_our_page_so_the_session_cookie_comes_along(
        live_server, app, make_user, logout_client):
    """The app's page POSTs the logout (RP-Initiated Logout 1.0 2); the browser leaves our
    SameSite=Lax cookie out of that cross-site POST. Ending nothing and sending the person back
    as if signed out would leave the session (and its grants) alive: the same fields are sent
    again from a page of ours, and that POST carries the cookie."""
    user = make_user()
    client = logout_client()
    browser, tokens, _ = sign_in_to(live_server, user, client)
    params = {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": PLR, "state": "s",
              "ui_locales": "fr"}
    cross_site = Browser(live_server)  # what arrives: the fields without the cookie
    page = end_session(cross_site, live_server, method="POST", **params)
    assert page.status_code == 200 and sessions_of(app, user) == 1
    assert 'lang="fr"' in page.text, "ui_locales is read from a POSTed logout too"
    assert f'action="{live_server}/end-session"' in page.text or 'action="/end-session"' in page.text
    assert "js/form-post.js" in page.text and "data-autosubmit" in page.text
    fields = _hidden_fields(page.text)
    assert fields == {**params, "_same_site": "1"}
    response = browser.post(f"{live_server}/end-session", data=fields)  # the browser's re-send, with the cookie
    assert response.status_code == 303 and response.headers["Location"] == PLR + "?state=s"
    assert sessions_of(app, user) == 0
    assert_signed_out(live_server, browser, client)


def test_the_re_sent_logout_post_without_a_session_goes_on_once(live_server, make_user, logout_client):
    user = make_user()
    client = logout_client()
    _, tokens, _ = sign_in_to(live_server, user, client)
    response = end_session(Browser(live_server), live_server, method="POST", id_token_hint=tokens["id_token"],
                           post_logout_redirect_uri=PLR, _same_site="1")
    assert response.status_code == 303 and response.headers["Location"] == PLR


def test_an_invalid_logout_post_is_refused_before_any_re_send(live_server):
    response = end_session(Browser(live_server), live_server, method="POST", client_id="no-such-client")
    assert response.status_code == 400 and "data-autosubmit" not in response.text


def test_without_state_the_redirect_carries_none(live_server, make_user, logout_client):
    user = make_user()
    client = logout_client()
    browser, tokens, _ = sign_in_to(live_server, user, client)
    response = end_session(browser, live_server, id_token_hint=tokens["id_token"], post_logout_redirect_uri=PLR)
    assert response.status_code == 302 and response.headers["Location"] == PLR


def test_an_expired_id_token_is_still_a_valid_hint(live_server, app, make_user, logout_client):
    clock.set_now(clock.now().replace(microsecond=0))
    user = make_user()
    client = logout_client()
    browser, tokens, claims = sign_in_to(live_server, user, client)
    clock.advance(app.config["IDP_SETTINGS"].token_id_ttl + 60)
    assert claims["exp"] < clock.timestamp()
    response = end_session(browser, live_server, id_token_hint=tokens["id_token"], post_logout_redirect_uri=PLR,
                           state="late")
    assert response.status_code == 302 and response.headers["Location"] == PLR + "?state=late"
    assert sessions_of(app, user) == 0


@pytest.mark.parametrize("target", [
    "http://127.0.0.1:9999/elsewhere",          # not registered
    PLR + "/",                                   # not an exact match
    "http://127.0.0.1:9999/callback",            # the redirect_uri, not a post-logout one
])
def test_a_post_logout_redirect_uri_that_is_not_registered_exactly_is_not_followed(
        live_server, app, make_user, logout_client, target):
    user = make_user()
    client = logout_client()
    browser, tokens, _ = sign_in_to(live_server, user, client)
    response = end_session(browser, live_server, id_token_hint=tokens["id_token"], post_logout_redirect_uri=target,
                           state="s")
    assert response.status_code == 302 and response.headers["Location"] == "/logged-out"
    assert sessions_of(app, user) == 0            # the logout itself was trusted and done
    page = browser.get(f"{live_server}/logged-out")
    assert page.status_code == 200 and target not in page.text


def test_the_post_logout_redirect_uri_of_another_client_is_not_followed(live_server, app, make_user, make_client,
                                                                         logout_client):
    user = make_user()
    client = logout_client()
    other = make_client(first_party=True, post_logout_redirect_uris=["http://127.0.0.1:9998/bye"])
    browser, tokens, _ = sign_in_to(live_server, user, client)
    response = end_session(browser, live_server, id_token_hint=tokens["id_token"],
                           post_logout_redirect_uri="http://127.0.0.1:9998/bye")
    assert response.headers["Location"] == "/logged-out"
    other_hint = end_session(Browser(live_server), live_server, client_id=other["client_id"],
                             id_token_hint=tokens["id_token"], post_logout_redirect_uri="http://127.0.0.1:9998/bye")
    assert other_hint.status_code == 400 and "Location" not in other_hint.headers


def test_nobody_signed_in_goes_straight_to_the_redirect_and_ends_no_other_browser(live_server, app, make_user,
                                                                                  logout_client):
    user = make_user()
    client = logout_client()
    browser, tokens, _ = sign_in_to(live_server, user, client)
    stranger = Browser(live_server)
    response = end_session(stranger, live_server, id_token_hint=tokens["id_token"], post_logout_redirect_uri=PLR,
                           state="s")
    assert response.status_code == 302 and response.headers["Location"] == PLR + "?state=s"
    assert_signed_in(live_server, browser, client)   # only this browser's session is ever ended
    without_hint = end_session(Browser(live_server), live_server, client_id=client["client_id"],
                               post_logout_redirect_uri=PLR)
    assert without_hint.status_code == 302 and without_hint.headers["Location"] == PLR


# --- when the request cannot be trusted: confirmation ------------------------------------------
def confirmation_page(response) -> dict:
    """The confirmation form: its action, CSRF token and hidden fields."""
    import re
    from html import unescape
    assert response.status_code == 200, (response.status_code, response.headers.get("Location"))
    assert 'action="/end-session/confirm"' in response.text
    fields = {unescape(k): unescape(v) for k, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">',
                                                              response.text)}
    assert fields.pop("csrf_token") == csrf_token(response.text)
    return fields


def test_without_hint_the_person_confirms_and_a_post_without_csrf_ends_nothing(
        live_server, app, make_user, logout_client, receivers):
    user = make_user()
    receiver = receivers()
    client = logout_client(receiver)
    browser, _, claims = sign_in_to(live_server, user, client)
    page = end_session(browser, live_server, client_id=client["client_id"], post_logout_redirect_uri=PLR, state="q")
    fields = confirmation_page(page)
    assert fields == {"client_id": client["client_id"], "post_logout_redirect_uri": PLR, "state": "q"}
    assert "idp_session=" not in page.headers.get("Set-Cookie", "")  # only the form's CSRF token may be new
    assert_signed_in(live_server, browser, client)
    assert messages_for(app, client["client_id"]) == []

    refused = browser.post(f"{live_server}/end-session/confirm", data=fields)
    assert refused.status_code == 400 and "Location" not in refused.headers
    forged = browser.post(f"{live_server}/end-session/confirm", data={**fields, "csrf_token": "forged"})
    assert forged.status_code == 400
    assert_signed_in(live_server, browser, client)
    assert messages_for(app, client["client_id"]) == []

    confirmed = browser.post(f"{live_server}/end-session/confirm", data={**fields, "csrf_token": csrf_token(page.text)})
    assert confirmed.status_code == 303 and confirmed.headers["Location"] == PLR + "?state=q"
    assert_signed_out(live_server, browser, client)
    [token] = receiver.wait_for()
    assert verify_logout_token(live_server, token, client["client_id"])["sid"] == claims["sid"]


def test_without_any_client_the_confirmed_logout_never_redirects(live_server, app, make_user, logout_client):
    user = make_user()
    client = logout_client()
    browser, _, _ = sign_in_to(live_server, user, client)
    page = end_session(browser, live_server, post_logout_redirect_uri=PLR, state="q")
    fields = confirmation_page(page)
    confirmed = browser.post(f"{live_server}/end-session/confirm", data={**fields, "csrf_token": csrf_token(page.text)})
    assert confirmed.status_code == 303 and confirmed.headers["Location"] == "/logged-out"
    assert_signed_out(live_server, browser, client)


def tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    return ".".join([header, payload[:-4] + ("AAAA" if payload[-4:] != "AAAA" else "BBBB"), signature])


@pytest.mark.parametrize("kind", ["tampered", "access_token", "garbage"])
def test_a_hint_we_did_not_issue_as_an_id_token_counts_as_none(live_server, app, make_user, logout_client, kind):
    user = make_user()
    client = logout_client()
    browser, tokens, _ = sign_in_to(live_server, user, client)
    hint = {"tampered": tampered(tokens["id_token"]), "access_token": tokens["access_token"],
            "garbage": "not-a-jwt"}[kind]
    page = end_session(browser, live_server, id_token_hint=hint, post_logout_redirect_uri=PLR, state="q")
    fields = confirmation_page(page)
    assert_signed_in(live_server, browser, client)
    confirmed = browser.post(f"{live_server}/end-session/confirm", data={**fields, "csrf_token": csrf_token(page.text)})
    assert confirmed.headers["Location"] == "/logged-out"   # the client was never identified: no redirect


def test_a_hint_for_another_person_asks_for_confirmation(live_server, app, make_user, logout_client):
    alice, bob = make_user(), make_user()
    client = logout_client()
    _, alice_tokens, _ = sign_in_to(live_server, alice, client)
    bob_browser, _, _ = sign_in_to(live_server, bob, client)
    page = end_session(bob_browser, live_server, id_token_hint=alice_tokens["id_token"], post_logout_redirect_uri=PLR)
    confirmation_page(page)
    assert bob["username"] in page.text
    assert_signed_in(live_server, bob_browser, client)


@pytest.mark.parametrize("named, confirm", [("someone-else@example.com", True), ("own-email", False),
                                            ("own-username", False)])
def test_a_logout_hint_that_names_someone_else_asks_for_confirmation(live_server, make_user, logout_client,
                                                                     named, confirm):
    user = make_user()
    client = logout_client()
    browser, tokens, _ = sign_in_to(live_server, user, client)
    logout_hint = {"own-email": user["email"].upper(), "own-username": user["username"]}.get(named, named)
    response = end_session(browser, live_server, id_token_hint=tokens["id_token"], logout_hint=logout_hint,
                           post_logout_redirect_uri=PLR, ui_locales="en")
    if confirm:
        confirmation_page(response)
        assert_signed_in(live_server, browser, client)
    else:
        assert response.status_code == 302 and response.headers["Location"] == PLR


def test_client_id_that_is_not_the_audience_of_the_hint_is_refused(live_server, app, make_user, make_client,
                                                                   logout_client):
    user = make_user()
    client = logout_client()
    other = logout_client()
    browser, tokens, _ = sign_in_to(live_server, user, client)
    response = end_session(browser, live_server, id_token_hint=tokens["id_token"], client_id=other["client_id"],
                           post_logout_redirect_uri=PLR)
    assert response.status_code == 400 and "Location" not in response.headers
    assert "not valid" in response.text
    assert_signed_in(live_server, browser, client)


def test_an_unknown_client_id_is_refused(live_server, make_user, logout_client):
    user = make_user()
    client = logout_client()
    browser, _, _ = sign_in_to(live_server, user, client)
    response = end_session(browser, live_server, client_id="no-such-client", post_logout_redirect_uri=PLR)
    assert response.status_code == 400 and "Location" not in response.headers
    assert_signed_in(live_server, browser, client)


# --- what a session's end does to tokens ---------------------------------------------------------
def test_refresh_tokens_of_the_session_are_revoked_unless_granted_offline_access(
        live_server, app, make_user, logout_client):
    user = make_user()
    offline = logout_client()
    online = logout_client(refresh_without_offline=True)
    browser, offline_tokens, _ = sign_in_to(live_server, user, offline, scope="openid offline_access")
    browser, online_tokens, _ = sign_in_to(live_server, user, online, browser=browser)
    assert offline_tokens.get("refresh_token") and online_tokens.get("refresh_token")
    page = browser.get(f"{live_server}/logout")
    assert browser.post(f"{live_server}/logout", data={"csrf_token": csrf_token(page.text)}).status_code == 303
    assert_token_error(refresh(live_server, online, online_tokens["refresh_token"]), "invalid_grant")
    still = refresh(live_server, offline, offline_tokens["refresh_token"])
    assert still.status_code == 200 and still.json()["refresh_token"]
    revoked = with_db(app, lambda db: {g.client.client_id: g.revoked_at is not None for g in db.session.scalars(
        db.select(Grant).where(Grant.user_id == user["id"]))})
    assert revoked == {offline["client_id"]: False, online["client_id"]: True}


# --- delivery -----------------------------------------------------------------------------------
def test_a_receiver_that_is_down_is_retried_later_and_gets_a_fresh_token(live_server, app, make_user,
                                                                         logout_client, receivers):
    user = make_user()
    receiver = receivers(up=False)
    client = logout_client(receiver)
    browser, tokens, claims = sign_in_to(live_server, user, client)
    response = end_session(browser, live_server, id_token_hint=tokens["id_token"], post_logout_redirect_uri=PLR)
    assert response.status_code == 302                           # the page did not fail with the receiver
    wait_until(lambda: [m["attempts"] for m in messages_for(app, client["client_id"])] == [1]
               and messages_for(app, client["client_id"])[0]["last_error"] is not None)
    [message] = messages_for(app, client["client_id"])
    assert message["status"] == "pending" and "unreachable" in message["last_error"]
    assert message["next_attempt_at"] > clock.now()

    receiver.start()
    with app.app_context():
        assert outbox.run_once(ids=[message["id"]]) == (0, 0)    # not due yet
    clock.set_now(message["next_attempt_at"] + timedelta(seconds=1))
    with app.app_context():
        assert outbox.run_once(ids=[message["id"]]) == (1, 0)
    [token] = receiver.wait_for(answered=1)
    logout = verify_logout_token(live_server, token, client["client_id"])
    assert logout["iat"] == clock.timestamp()                     # signed when delivered, not when queued
    assert (logout["sid"], logout["sub"]) == (claims["sid"], claims["sub"])
    assert messages_for(app, client["client_id"])[0]["status"] == "delivered"


@pytest.mark.parametrize("status", [400, 500, 302])
def test_an_answer_other_than_200_or_204_is_retried(live_server, app, make_user, logout_client, receivers, status):
    user = make_user()
    receiver = receivers()
    receiver.status = status
    client = logout_client(receiver)
    browser, tokens, _ = sign_in_to(live_server, user, client)
    end_session(browser, live_server, id_token_hint=tokens["id_token"])
    receiver.wait_for(answered=1)
    wait_until(lambda: messages_for(app, client["client_id"])[0]["last_error"] is not None)
    [message] = messages_for(app, client["client_id"])
    assert message["status"] == "pending" and message["last_error"] == f"backchannel_logout_uri answered HTTP {status}"
    receiver.status = 204
    clock.set_now(message["next_attempt_at"])
    with app.app_context():
        assert outbox.run_once(ids=[message["id"]]) == (1, 0)


def test_a_slow_receiver_does_not_hold_the_logout_page(live_server, app, make_user, logout_client, receivers):
    user = make_user()
    receiver = receivers()
    receiver.gate = threading.Event()
    client = logout_client(receiver)
    browser, tokens, _ = sign_in_to(live_server, user, client)
    response = end_session(browser, live_server, id_token_hint=tokens["id_token"], post_logout_redirect_uri=PLR)
    assert response.status_code == 302 and response.headers["Location"] == PLR
    receiver.wait_for(posts=1)
    assert receiver.answered == 0          # the page answered while the receiver still held the delivery
    receiver.gate.set()
    receiver.wait_for(answered=1)
    wait_until(lambda: messages_for(app, client["client_id"])[0]["status"] == "delivered")


@pytest.mark.parametrize("registered, alg", [(None, "RS256"), ("ES256", "ES256"), ("RS256", "RS256")])
def test_a_logout_token_is_signed_with_the_alg_the_client_registered_for_id_tokens_else_rs256(
        live_server, app, make_user, logout_client, receivers, es256_keys, registered, alg):
    """BCL 1.0 2.6: the RP validates a logout token's alg as an ID token's: the
    id_token_signed_response_alg it registered, otherwise RS256; never IDP_KEYS_ALG's (ES256
    here), which signs access tokens."""
    user = make_user()
    receiver = receivers()
    client = logout_client(receiver, id_token_signed_response_alg=registered)
    browser, tokens, claims = sign_in_to(live_server, user, client)
    end_session(browser, live_server, id_token_hint=tokens["id_token"])
    [token] = receiver.wait_for()
    header = jwt.decode(token, jwks(live_server), algorithms=[alg]).header
    assert header["alg"] == alg and header["kid"] == es256_keys[alg]
    assert verify_logout_token(live_server, token, client["client_id"])["sid"] == claims["sid"]


def test_when_no_key_of_the_registered_alg_signs_the_delivery_fails_at_once_and_is_audited(
        live_server, app, make_user, logout_client, receivers, es256_keys):
    """ES256 was given up since the client signed in (IDP_KEYS_ALG back to RS256, then `idp keys
    rotate`): no retired key signs, so the message ends as failed on its first attempt with the
    reason, instead of 12 attempts over 9 hours; the receiver gets nothing it would reject."""
    user = make_user()
    receiver = receivers()
    client = logout_client(receiver, id_token_signed_response_alg="ES256")
    browser, tokens, claims = sign_in_to(live_server, user, client)
    use_keys_alg(app, "RS256")
    response = end_session(browser, live_server, id_token_hint=tokens["id_token"], post_logout_redirect_uri=PLR)
    assert response.status_code == 302 and response.headers["Location"] == PLR   # the logout itself is done
    wait_until(lambda: [m["status"] for m in messages_for(app, client["client_id"])] == ["failed"])
    [message] = messages_for(app, client["client_id"])
    assert message["attempts"] == 1
    assert message["last_error"] == "id_token_signed_response_alg ES256 is registered but ID tokens are signed with RS256"
    assert receiver.posts == []
    events = with_db(app, lambda db: [(e.outcome, e.client_id, e.details) for e in db.session.scalars(
        db.select(AuditEvent).where(AuditEvent.user_id == user["id"], AuditEvent.type == "oauth.logout_token.failed"))])
    assert events == [("failure", client["client_id"], {"sid": claims["sid"], "reason": message["last_error"]})]


def test_a_client_without_backchannel_logout_uri_gets_nothing(live_server, app, make_user, logout_client):
    user = make_user()
    client = logout_client()
    browser, tokens, _ = sign_in_to(live_server, user, client)
    end_session(browser, live_server, id_token_hint=tokens["id_token"])
    assert messages_for(app, client["client_id"]) == []


# --- other ways a session ends ------------------------------------------------------------------
def test_disabling_a_person_ends_their_sessions_and_tells_the_apps(live_server, app, make_user, logout_client,
                                                                  receivers, idp_cli):
    user = make_user()
    receiver = receivers()
    client = logout_client(receiver)
    first, _, claims = sign_in_to(live_server, user, client)
    second, _, other_claims = sign_in_to(live_server, user, client, browser=Browser(live_server))
    result = idp_cli("users", "disable", user["username"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "2 session(s) ended" in result.output
    tokens = receiver.wait_for(posts=2)
    sids = sorted(verify_logout_token(live_server, t, client["client_id"])["sid"] for t in tokens)
    assert sids == sorted([claims["sid"], other_claims["sid"]])
    assert sessions_of(app, user) == 0
    assert_signed_out(live_server, first, client)


def test_expired_sessions_swept_tell_the_apps(live_server, app, make_user, logout_client, receivers):
    from idp.authn.session import end_expired_sessions

    user = make_user()
    receiver = receivers()
    client = logout_client(receiver)
    _, _, claims = sign_in_to(live_server, user, client)
    clock.set_now(clock.now() + timedelta(seconds=app.config["IDP_SETTINGS"].session_idle_lifetime + 1))
    with app.app_context():
        while end_expired_sessions(limit=500):
            pass
    [message] = messages_for(app, client["client_id"])
    with app.app_context():
        assert outbox.run_once(ids=[message["id"]]) == (1, 0)
    [token] = receiver.wait_for()
    assert verify_logout_token(live_server, token, client["client_id"])["sid"] == claims["sid"]
    assert sessions_of(app, user) == 0
    reasons = with_db(app, lambda db: [e.details["reason"] for e in db.session.scalars(
        db.select(AuditEvent).where(AuditEvent.user_id == user["id"], AuditEvent.type == "authn.session.ended"))])
    assert reasons == ["expired"]


def grants_in(app, client: dict, sid: str) -> int:
    return with_db(app, lambda db: db.session.scalar(
        db.select(db.func.count()).select_from(Grant).join(Client, Grant.client_id == Client.id)
        .where(Client.client_id == client["client_id"], Grant.sid == sid)))


def an_app_signed_in_long_ago(live_server, app, user, logout_client, receiver, idp_cli):
    """App A signs the person in (openid only: its grant holds no refresh token), then the session
    stays in use through app B, 7 hours at a time (under the idle limit), until A's grant is older
    than the purge's grace; `idp purge` runs. Returns (browser, A, A's tokens and ID token claims)."""
    clock.set_now(clock.now().replace(microsecond=0))
    client_a, client_b = logout_client(receiver), logout_client()
    browser, tokens, claims = sign_in_to(live_server, user, client_a)
    assert "refresh_token" not in tokens
    with app.app_context():
        past_grace = clock.now() + grace()
    while clock.now() <= past_grace:
        clock.advance(7 * 3600)
        tokens_for(live_server, user, client_b, scope="openid", browser=browser)
    idp_cli("purge")
    assert grants_in(app, client_a, claims["sid"]) == 1   # kept: the session it took part in is still live
    return browser, client_a, tokens, claims


@pytest.mark.parametrize("how", ["end_session", "disable"])
def test_an_app_that_signed_the_person_in_before_a_purge_still_hears_of_the_logout(
        live_server, app, make_user, logout_client, receivers, idp_cli, how):
    """BCL 1.0 2: every RP with a session with the person is told, however long ago it joined;
    `idp purge` keeps the grants of a session that has not ended."""
    user = make_user()
    receiver = receivers()
    browser, client_a, tokens, claims = an_app_signed_in_long_ago(live_server, app, user, logout_client, receiver,
                                                                  idp_cli)
    if how == "end_session":
        response = end_session(browser, live_server, id_token_hint=tokens["id_token"], post_logout_redirect_uri=PLR)
        assert response.status_code == 302 and response.headers["Location"] == PLR
    else:
        idp_cli("users", "disable", user["username"])
    [token] = receiver.wait_for()
    logout = verify_logout_token(live_server, token, client_a["client_id"])
    assert (logout["sid"], logout["sub"]) == (claims["sid"], claims["sub"])
    assert sessions_of(app, user) == 0
    idp_cli("purge")                                   # the session ended: its grants may go now
    assert grants_in(app, client_a, claims["sid"]) == 0


def test_signing_in_again_keeps_the_apps_attached_to_the_session(live_server, app, make_user, logout_client,
                                                                 receivers):
    user = make_user()
    first, second = receivers(), receivers()
    client_a, client_b = logout_client(first), logout_client(second)
    browser, _, id_a = sign_in_to(live_server, user, client_a)
    assert browser.login(user["username"], user["password"]).status_code == 303   # e.g. prompt=login
    browser, tokens_b, id_b = sign_in_to(live_server, user, client_b, browser=browser)
    assert id_b["sid"] == id_a["sid"]
    end_session(browser, live_server, id_token_hint=tokens_b["id_token"])
    first.wait_for(), second.wait_for()



def test_a_pairwise_client_that_lost_its_sector_still_gets_a_token_with_sid_alone(
        live_server, app, make_user, logout_client, receivers):
    from idp.models import Client
    user = make_user()
    receiver = receivers()
    client = logout_client(receiver, subject_type="pairwise")
    browser, tokens, claims = sign_in_to(live_server, user, client)

    def lose_sector(db):
        row = db.session.scalar(db.select(Client).where(Client.client_id == client["client_id"]))
        row.redirect_uris = ["https://a.example/cb", "https://b.example/cb"]
        row.sector_identifier = None
    with_db(app, lose_sector)
    page = end_session(browser, live_server, id_token_hint=tokens["id_token"])
    fields = confirmation_page(page)                 # the hint's sub can no longer be matched
    confirmed = browser.post(f"{live_server}/end-session/confirm", data={**fields, "csrf_token": csrf_token(page.text)})
    assert confirmed.status_code == 303
    [token] = receiver.wait_for()
    logout = jwt.decode(token, jwks(live_server), algorithms=["RS256", "ES256"]).claims
    assert logout["sid"] == claims["sid"] and "sub" not in logout and logout["aud"] == client["client_id"]


def test_a_logout_token_is_not_an_id_token_hint(live_server, app, make_user, logout_client, receivers):
    user = make_user()
    receiver = receivers()
    client = logout_client(receiver)
    browser, _, _ = sign_in_to(live_server, user, client)
    second, _, _ = sign_in_to(live_server, user, client, browser=Browser(live_server))
    page = browser.get(f"{live_server}/logout")
    browser.post(f"{live_server}/logout", data={"csrf_token": csrf_token(page.text)})
    [logout_token] = receiver.wait_for()
    response = end_session(second, live_server, id_token_hint=logout_token, post_logout_redirect_uri=PLR)
    confirmation_page(response)                             # not trusted as a hint
    assert_signed_in(live_server, second, client)


def test_production_does_not_post_logout_tokens_to_a_loopback_receiver(app, settings, make_user, logout_client,
                                                                      receivers):
    """The delivery of a client whose backchannel_logout_uri names a loopback host fails like an
    unreachable receiver (retried later), and nothing reaches the receiver."""
    from idp import create_app

    user = make_user()
    receiver = receivers()
    client = logout_client()
    with app.app_context():  # as if DNS had moved the name since its registration
        stored = db.session.scalar(db.select(Client).where(Client.client_id == client["client_id"]))
        stored.backchannel_logout_uri = f"https://localhost:{receiver.port}/backchannel-logout"
        db.session.commit()
    production = create_app(dataclasses.replace(settings, env="production", issuer="https://127.0.0.1"))
    with production.app_context():
        message = outbox.enqueue(KIND, {"client_id": client["client_id"], "sid": "sid-1", "user_id": user["id"],
                                        "sub": None, "reason": "logout"})
        db.session.commit()
        assert outbox.run_once(ids=[message.id]) == (0, 1)
    [message] = messages_for(app, client["client_id"])
    assert message["status"] == "pending" and "not public" in message["last_error"]
    assert "logout_token" not in message["last_error"] and receiver.posts == []
