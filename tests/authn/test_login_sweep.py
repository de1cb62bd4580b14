"""The worker's periodic tasks delete expired logins in progress, so the anonymous rows that every
GET /login makes do not pile up when no `idp purge` runs from cron."""
from __future__ import annotations

from datetime import timedelta

from idp import worker_tasks
from idp.clock import now
from idp.extensions import db
from idp.models import LoginAttempt
from idp.security.tokens import digest, random_token


def test_the_worker_sweep_deletes_expired_logins_in_progress_and_keeps_live_ones(app, live_server, web):
    assert web.get("/login").status_code == 200  # an anonymous visit makes one
    moment = now()
    with app.app_context():
        expired, live = digest(random_token()), digest(random_token())
        for key, offset in ((expired, -1), (live, 600)):
            db.session.add(LoginAttempt(token_digest=key, target="urn:idp:acr:pwd", next="/account",
                                        expires_at=moment + timedelta(seconds=offset)))
        db.session.commit()
        for _interval, task in worker_tasks(app):
            task()
        db.session.expire_all()
        assert db.session.get(LoginAttempt, expired) is None
        assert db.session.get(LoginAttempt, live) is not None
        assert db.session.scalar(db.select(db.func.count()).select_from(LoginAttempt)
                                 .where(LoginAttempt.expires_at <= moment)) == 0
