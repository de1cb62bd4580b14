"""The audit trail: what record() accepts, what every event carries, and the events() filters (item 9)."""
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from idp import audit, clock
from idp.extensions import db
from idp.models import AuditEvent
from tests.authn.web import USER_AGENT, Web


def all_rows_as_json(app) -> list[str]:
    with app.app_context():
        return [json.dumps(audit.as_dict(e), ensure_ascii=False) for e in db.session.scalars(select(AuditEvent))]


def row_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(AuditEvent))


@pytest.mark.parametrize("key", [
    "password", "code", "token", "secret", "client_secret", "access_token", "refresh_token", "id_token",
    "code_verifier", "new_password", "Password", "password_hash", "totp_secret", "recovery_code", "api_key",
    "session_cookie", "clientSecret", "user-code",
])
def test_record_refuses_details_keys_that_look_like_secrets(app, key):
    before = row_count(app)
    with app.app_context():
        with pytest.raises(ValueError, match="audit details must not carry secrets"):
            audit.record("tests.secret.refused", **{key: "s3cr3t-value"})
        assert not [o for o in db.session.new if isinstance(o, AuditEvent)]
        db.session.commit()
    assert row_count(app) == before


def test_record_refuses_secret_keys_nested_in_details(app):
    with app.app_context():
        with pytest.raises(ValueError, match="audit details must not carry secrets"):
            audit.record("tests.secret.refused", form={"login": "alice", "password": "s3cr3t-value"})
        with pytest.raises(ValueError, match="audit details must not carry secrets"):
            audit.record("tests.secret.refused", attempts=[{"token": "s3cr3t-value"}])


@pytest.mark.parametrize("key", ["reason", "amr", "sid", "kid", "alg", "scope", "via", "change", "first_party",
                                 "token_endpoint_auth_method", "code_challenge_method", "grant_type"])
def test_record_accepts_ordinary_details(app, key):
    with app.app_context():
        row = audit.record("tests.detail.accepted", **{key: "value"})
        db.session.commit()
        assert row.details == {key: "value"} and row.at is not None and row.outcome == "success"


def test_record_outside_a_request_has_no_ip_agent_or_request_id(app):
    with app.app_context():
        row = audit.record("tests.cli.ran", outcome="success", user=None, client="cli-client", via="cli")
        db.session.commit()
        assert (row.ip, row.user_agent, row.request_id, row.client_id) == (None, None, None, "cli-client")


def test_events_from_requests_carry_ip_user_agent_and_a_request_id(app, make_user):
    user = make_user()
    first, second = Web(app), Web(app)
    first.login(user["username"], "not the right password")
    second.login(user["username"], user["password"])
    with app.app_context():
        failed, succeeded = [audit.as_dict(e) for e in audit.events(user_id=user["id"])]
    assert (failed["type"], succeeded["type"]) == ("authn.login.failed", "authn.login.succeeded")
    assert (failed["ip"], succeeded["ip"]) == (first.ip, second.ip)
    assert failed["user_agent"] == succeeded["user_agent"] == USER_AGENT
    assert failed["request_id"] and succeeded["request_id"] and failed["request_id"] != succeeded["request_id"]
    assert failed["at"] and succeeded["at"] >= failed["at"]


def test_no_audit_row_ever_holds_a_password(app, make_user):
    secret = f"unique passphrase {uuid.uuid4().hex}"
    user = make_user(password=secret)
    Web(app).login(user["username"], secret + "x")            # wrong password
    Web(app).login(f"nobody-{uuid.uuid4().hex[:6]}", secret)  # unknown user
    Web(app).login(secret, secret)                            # password typed into the login field
    Web(app).login(user["email"], secret)                     # success
    name = f"auditee{uuid.uuid4().hex[:8]}"
    assert Web(app).register(name, f"{name}@example.com", "short").status_code == 400
    assert Web(app).register(name, f"{name}@example.com", secret).status_code == 303
    rows = all_rows_as_json(app)
    assert any('"users.user.registered"' in r for r in rows) and any('"bad_password"' in r for r in rows)
    assert not [r for r in rows if secret in r or '"short"' in r]


def test_events_filter_by_user_type_prefix_and_since(app, make_user):
    alice, bob = make_user(), make_user()
    t0 = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=400)   # after every other row
    with app.app_context():
        for offset, event, who in ((0, "tests.filter.first", alice), (10, "tests.filter.second", bob),
                                   (20, "tests.other.third", alice), (30, "tests.filter.fourth", alice)):
            clock.set_now(t0 + timedelta(seconds=offset))
            audit.record(event, user=who["id"])
            db.session.commit()
        clock.set_now(None)

        def types(**filters):
            return [e.type for e in audit.events(**filters) if e.type.startswith("tests.")]
        assert types(user_id=alice["id"]) == ["tests.filter.first", "tests.other.third", "tests.filter.fourth"]
        assert types(type_prefix="tests.filter.") == ["tests.filter.first", "tests.filter.second",
                                                      "tests.filter.fourth"]
        assert types(since=t0 + timedelta(seconds=10)) == ["tests.filter.second", "tests.other.third",
                                                          "tests.filter.fourth"]
        assert types(user_id=alice["id"], type_prefix="tests.filter.", since=t0 + timedelta(seconds=5)) == \
            ["tests.filter.fourth"]
        assert types(since=t0 + timedelta(seconds=31)) == []
        assert len(audit.events(type_prefix="tests.filter.", limit=2)) == 2


def test_events_since_honours_the_time_zone_it_is_given_in(app, make_user):
    user = make_user()
    t0 = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=500)
    with app.app_context():
        for offset in (0, 5400):
            clock.set_now(t0 + timedelta(seconds=offset))
            audit.record("tests.zone.recorded", user=user["id"], offset=offset)
            db.session.commit()
        clock.set_now(None)
        plus_two = timezone(timedelta(hours=2))
        since = (t0 + timedelta(hours=1)).astimezone(plus_two)        # the same instant, written in UTC+2
        assert [e.details["offset"] for e in audit.events(user_id=user["id"], since=since)] == [5400]
        naive = (t0 + timedelta(hours=1)).replace(tzinfo=None)           # naive values are UTC
        assert [e.details["offset"] for e in audit.events(user_id=user["id"], since=naive)] == [5400]


def test_events_type_prefix_is_a_prefix_not_a_pattern(app, make_user):
    user = make_user()
    with app.app_context():
        audit.record("tests.pattern.recorded", user=user["id"])
        db.session.commit()
        assert [e.type for e in audit.events(user_id=user["id"], type_prefix="tests.pattern")] == \
            ["tests.pattern.recorded"]
        assert audit.events(user_id=user["id"], type_prefix="tests_pattern") == []
        assert audit.events(user_id=user["id"], type_prefix="%") == []
