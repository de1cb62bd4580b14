"""`idp purge`: expired rows of every kind go, live ones stay, a second run finds nothing, and
purges running at once on one database neither fail nor delete a live row (SQLite and PostgreSQL)."""
from __future__ import annotations

import dataclasses
import json
import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from idp import clock
from idp.authn.throttle import QUIET
from idp.cli import purge_expired
from idp.extensions import db
from idp.models import (AuditEvent, AuthorizationCode, Client, ClientAssertion, Grant, InitialAccessToken,
                        LoginThrottle, OutboxMessage, PendingAuthorization, RefreshToken, RevokedToken, SsoSession)
from idp.oauth.purge import grace
from idp.security.tokens import random_token
from tests.helpers.rp import verify_id_token
from tests.oauth.flows import assert_token_error, refresh, tokens_for, userinfo


def _pin() -> datetime:
    moment = datetime.now(timezone.utc).replace(microsecond=0)
    clock.set_now(moment)
    return moment


def _grant(client_pk, user_pk, t, *, created=None, expires=None, revoked=None, sid=None) -> Grant:
    row = Grant(id=random_token(16), client_id=client_pk, user_id=user_pk, scope="openid", auth_time=int(t.timestamp()),
                created_at=created or t, expires_at=expires or t + timedelta(days=30), revoked_at=revoked, sid=sid)
    db.session.add(row)
    db.session.flush()
    return row


def _refresh(grant, expires) -> RefreshToken:
    row = RefreshToken(token_digest=random_token(32), grant_id=grant.id, expires_at=expires)
    db.session.add(row)
    return row


def _code(grant, expires) -> AuthorizationCode:
    row = AuthorizationCode(code_digest=random_token(32), grant_id=grant.id, redirect_uri="https://x.example/cb",
                            expires_at=expires)
    db.session.add(row)
    return row


def _session(user_pk, t, *, expires, last_seen=None) -> SsoSession:
    row = SsoSession(token_digest=random_token(32), sid=random_token(16), user_id=user_pk, auth_time=t, acr="x",
                     amr=["pwd"], created_at=t - timedelta(hours=1), last_seen_at=last_seen or t, expires_at=expires)
    db.session.add(row)
    return row


def _rows(app, make_user, make_client, t) -> dict[str, dict[str, list]]:
    """One or more rows of each kind, expired (`gone`) or still needed (`kept`); their keys per model."""
    settings = app.config["IDP_SETTINGS"]
    user_pk = make_user()["id"]
    client_id = make_client()["client_id"]
    with app.app_context():
        old = t - grace() - timedelta(seconds=1)
        client_pk = db.session.scalar(select(Client.id).where(Client.client_id == client_id))
        idle = timedelta(seconds=settings.session_idle_lifetime + 1)
        sessions = [_session(user_pk, t, expires=t + timedelta(hours=1)), _session(user_pk, t, expires=t - timedelta(seconds=1)),
                    _session(user_pk, t, expires=t + timedelta(hours=1), last_seen=t - idle)]
        live = _grant(client_pk, user_pk, t)
        kept_grants = [live, _grant(client_pk, user_pk, t, expires=t - timedelta(seconds=10)),
                       _grant(client_pk, user_pk, t, revoked=t - timedelta(seconds=10)),
                       _grant(client_pk, user_pk, t, created=old, expires=t + timedelta(days=1))]
        gone_grants = [_grant(client_pk, user_pk, t, created=old, expires=old),
                       _grant(client_pk, user_pk, t, created=old, revoked=old),
                       _grant(client_pk, user_pk, t, created=old, expires=t + timedelta(days=1))]  # no refresh token
        # A grant of a session that has not ended stays, however old (logout must still find its app);
        # one of a session this purge ends goes with it.
        kept_grants += [_grant(client_pk, user_pk, t, created=old, expires=e, revoked=r, sid=sessions[0].sid)
                        for e, r in ((old, None), (t + timedelta(days=1), old), (t + timedelta(days=1), None))]
        gone_grants += [_grant(client_pk, user_pk, t, created=old, expires=t + timedelta(days=1), sid=sessions[1].sid)]
        kept_refresh = [_refresh(kept_grants[3], t + timedelta(hours=1)), _refresh(live, t - timedelta(seconds=10))]
        gone_refresh = [_refresh(live, old), _refresh(gone_grants[0], t + timedelta(hours=1))]  # the latter by cascade
        kept_codes, gone_codes = [_code(live, t + timedelta(seconds=60))], [_code(live, t - timedelta(seconds=1))]
        pending = [PendingAuthorization(id_digest=random_token(32), browser_digest="b", params={}, expires_at=e)
                   for e in (t + timedelta(minutes=5), t - timedelta(seconds=1))]
        revoked = [RevokedToken(jti=random_token(16), expires_at=e) for e in (t + timedelta(minutes=5), t - timedelta(seconds=1))]
        assertions = [ClientAssertion(client_id=client_id, jti=random_token(16), expires_at=e)
                      for e in (t + timedelta(minutes=5), t - timedelta(seconds=1))]
        initial = [InitialAccessToken(token_digest=random_token(32), expires_at=e, used_at=u) for e, u in
                   ((None, None), (t + timedelta(days=1), None), (t - timedelta(seconds=1), None), (None, t))]
        quiet = t - QUIET - timedelta(seconds=1)
        throttles = [LoginThrottle(key=random_token(16), failures=f, updated_at=u, blocked_until=b) for f, u, b in
                     ((1, t, None), (9, quiet, t + timedelta(hours=1)), (1, quiet, None), (9, quiet, quiet))]
        retention = timedelta(seconds=settings.outbox_retention + 1)
        outbox = [OutboxMessage(kind="purge-test", payload={}, status=s, created_at=c) for s, c in
                  (("pending", t - retention), ("delivered", t), ("delivered", t - retention), ("failed", t - retention))]
        db.session.add_all(pending + revoked + assertions + initial + throttles + outbox)
        db.session.commit()
        key = {Grant: "id", RefreshToken: "id", AuthorizationCode: "id", PendingAuthorization: "id_digest",
               RevokedToken: "jti", ClientAssertion: "jti", InitialAccessToken: "id", LoginThrottle: "key",
               OutboxMessage: "id", SsoSession: "id"}
        split = {Grant: (kept_grants, gone_grants), RefreshToken: (kept_refresh, gone_refresh),
                 AuthorizationCode: (kept_codes, gone_codes), PendingAuthorization: (pending[:1], pending[1:]),
                 RevokedToken: (revoked[:1], revoked[1:]), ClientAssertion: (assertions[:1], assertions[1:]),
                 InitialAccessToken: (initial[:2], initial[2:]), LoginThrottle: (throttles[:2], throttles[2:]),
                 OutboxMessage: (outbox[:2], outbox[2:]), SsoSession: (sessions[:1], sessions[1:])}
        return {model: {"kept": [getattr(r, key[model]) for r in kept], "gone": [getattr(r, key[model]) for r in gone],
                        "key": key[model]} for model, (kept, gone) in split.items()}


def _present(app, model, key: str, values: list) -> set:
    with app.app_context():
        column = getattr(model, key)
        return set(db.session.scalars(select(column).where(column.in_(values))))


def _assert_purged(app, rows) -> None:
    for model, row in rows.items():
        assert _present(app, model, row["key"], row["kept"]) == set(row["kept"]), f"{model.__name__}: a live row went"
        assert _present(app, model, row["key"], row["gone"]) == set(), f"{model.__name__}: an expired row stayed"


def _cleanup_outbox(app) -> None:
    with app.app_context():
        db.session.execute(db.delete(OutboxMessage).where(OutboxMessage.kind == "purge-test"))
        db.session.commit()


def test_purge_removes_exactly_the_expired_rows_and_a_second_run_finds_nothing(app, make_user, make_client,
                                                                                idp_cli):
    t = _pin()
    rows = _rows(app, make_user, make_client, t)
    try:
        first = idp_cli.json("purge")
        _assert_purged(app, rows)
        assert first["grants"] >= 4 and first["refresh_tokens"] >= 1 and first["authorization_codes"] >= 1
        assert first["sso_sessions"] >= 2 and first["login_throttles"] >= 2 and first["outbox"] >= 2
        for name in ("pending_authorizations", "revoked_tokens", "client_assertions"):
            assert first[name] >= 1, name
        assert first["initial_access_tokens"] >= 2
        second = idp_cli.json("purge")
        assert set(second.values()) == {0}, second
        _assert_purged(app, rows)
    finally:
        _cleanup_outbox(app)


def test_purge_records_one_audit_event_with_the_counts(app, idp_cli):
    _pin()
    result = idp_cli("purge", "--batch", "5")
    assert "grants:" in result.stdout
    with app.app_context():
        event = db.session.scalars(select(AuditEvent).where(AuditEvent.type == "cli.purge.completed")
                                   .order_by(AuditEvent.id.desc())).first()
    assert event is not None and set(event.details["deleted"]) >= {"grants", "sso_sessions", "outbox"}


def test_purge_rejects_a_batch_of_zero(idp_cli):
    assert idp_cli("purge", "--batch", "0", ok=False).exit_code != 0


def test_parallel_purges_in_small_batches_do_not_fail_and_keep_live_rows(app, make_user, make_client):
    t = _pin()
    rows = _rows(app, make_user, make_client, t)
    user_pk = make_user()["id"]
    with app.app_context():
        extra = [PendingAuthorization(id_digest=random_token(32), browser_digest="b", params={},
                                      expires_at=t - timedelta(seconds=1)) for _ in range(150)]
        extra += [RevokedToken(jti=random_token(16), expires_at=t - timedelta(seconds=1)) for _ in range(150)]
        db.session.add_all(extra)
        for _ in range(60):
            _session(user_pk, t, expires=t - timedelta(seconds=1))
        db.session.commit()
    results, errors = [], []
    start = threading.Barrier(3)

    def run():
        try:
            with app.app_context():
                start.wait()
                results.append(purge_expired(batch=7))
        except Exception as error:  # noqa: BLE001 - the assertion below reports it
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    try:
        assert errors == []
        assert len(results) == 3
        _assert_purged(app, rows)
        assert sum(r["pending_authorizations"] for r in results) >= 151
        assert sum(r["revoked_tokens"] for r in results) >= 151
        assert sum(r["sso_sessions"] for r in results) >= 62
        with app.app_context():
            assert set(purge_expired(batch=7).values()) == {0}
    finally:
        _cleanup_outbox(app)


def test_a_rotated_refresh_token_replayed_after_a_purge_still_revokes_the_grant(live_server, app, make_user,
                                                                               make_client, idp_cli):
    """Used refresh tokens are kept until a GRACE past their idle limit, so reuse is still caught."""
    client = make_client(first_party=True)
    _, _, token = tokens_for(live_server, make_user(), client, scope="openid offline_access")
    rotated = refresh(live_server, client, token["refresh_token"]).json()
    idp_cli("purge")
    assert_token_error(refresh(live_server, client, token["refresh_token"]), "invalid_grant")
    assert_token_error(refresh(live_server, client, rotated["refresh_token"]), "invalid_grant")


def test_purge_leaves_a_fresh_sign_in_working(live_server, app, make_user, make_client, idp_cli):
    client = make_client(first_party=True)
    rp, _, token = tokens_for(live_server, make_user(), client, scope="openid profile offline_access")
    idp_cli("purge")
    assert userinfo(live_server, token["access_token"]).status_code == 200
    assert refresh(live_server, client, token["refresh_token"]).status_code == 200
    assert verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce)["sub"]


def test_purge_prints_json_counts_for_every_table(idp_cli):
    counts = json.loads(idp_cli("purge", "--json").stdout)
    assert set(counts) == {"authorization_codes", "pending_authorizations", "refresh_tokens", "grants",
                           "revoked_tokens", "client_assertions", "initial_access_tokens", "sso_sessions",
                           "login_throttles", "outbox", "user_tokens", "login_attempts", "webauthn_challenges",
                           "federation_states", "pending_links", "rate_limits", "audit_events",
                           "audit_events_anonymised"}
    assert all(isinstance(v, int) and v >= 0 for v in counts.values())


def test_purge_removes_expired_short_lived_rows_and_keeps_live_ones(app, make_user, idp_cli):
    """Emailed links, logins in progress and passkey challenges go once expired."""
    from datetime import timedelta

    from idp.clock import now
    from idp.extensions import db
    from idp.models import LoginAttempt, UserToken, WebAuthnChallenge
    from idp.security.tokens import digest, random_token

    user = make_user()
    moment = now()
    with app.app_context():
        for offset in (-60, 600):
            db.session.add(UserToken(token_digest=digest(random_token()), user_id=user["id"], purpose="verify_email",
                                     email=user["email"], expires_at=moment + timedelta(seconds=offset)))
            db.session.add(LoginAttempt(token_digest=digest(random_token()), target="urn:idp:acr:pwd", next="/account",
                                        expires_at=moment + timedelta(seconds=offset)))
        db.session.commit()
    counts = json.loads(idp_cli("purge", "--json").stdout)
    assert counts["user_tokens"] >= 1 and counts["login_attempts"] >= 1
    with app.app_context():
        for model in (UserToken, LoginAttempt):
            assert db.session.scalar(db.select(db.func.count()).select_from(model)
                                     .where(model.expires_at <= moment)) == 0
            assert db.session.scalar(db.select(db.func.count()).select_from(model)) >= 1
        assert WebAuthnChallenge.__tablename__ == "webauthn_challenges"


def _audit_rows(app, t, ages_in_days) -> list[int]:
    with app.app_context():
        rows = [AuditEvent(type="test.purge.aged", outcome="success", at=t - timedelta(days=days), ip="203.0.113.9",
                           user_agent="Agent/1", details={}) for days in ages_in_days]
        db.session.add_all(rows)
        db.session.commit()
        return [row.id for row in rows]


def _audit_state(app, ids) -> list[tuple | None]:
    with app.app_context():
        found = {e.id: (e.ip, e.user_agent) for e in db.session.scalars(select(AuditEvent).where(AuditEvent.id.in_(ids)))}
        return [found.get(i) for i in ids]


def test_purge_blanks_the_ip_of_audit_events_past_their_retention_and_keeps_the_events(app):
    t = _pin()
    days = app.config["IDP_SETTINGS"].audit_ip_retention // 86400
    assert days == 90  # the documented default
    ids = _audit_rows(app, t, [days + 1, days - 1])
    with app.app_context():
        counts = purge_expired(batch=1)
    assert counts["audit_events_anonymised"] >= 1 and counts["audit_events"] == 0
    assert _audit_state(app, ids) == [(None, None), ("203.0.113.9", "Agent/1")]
    with app.app_context():
        assert purge_expired(batch=1)["audit_events_anonymised"] == 0  # nothing left to blank


def test_purge_deletes_audit_events_past_the_audit_retention_only_when_it_is_set(app, monkeypatch):
    t = _pin()
    settings = app.config["IDP_SETTINGS"]
    ids = _audit_rows(app, t, [4000, 20])
    monkeypatch.setitem(app.config, "IDP_SETTINGS", dataclasses.replace(settings, audit_ip_retention=0))
    with app.app_context():
        purge_expired(batch=50)
    assert _audit_state(app, ids) == [("203.0.113.9", "Agent/1")] * 2  # both off: kept whole
    monkeypatch.setitem(app.config, "IDP_SETTINGS",
                        dataclasses.replace(settings, audit_ip_retention=0, audit_retention=30 * 86400))
    with app.app_context():
        assert purge_expired(batch=50)["audit_events"] >= 1
    assert _audit_state(app, ids) == [None, ("203.0.113.9", "Agent/1")]

