from datetime import datetime, timezone

import pytest

from idp import clock
from idp.extensions import db
from idp.models import LoginThrottle
from tests.authn.web import Web


@pytest.fixture
def web(app):
    """A fresh browser with its own client IP."""
    return Web(app)


@pytest.fixture
def pinned():
    """The clock pinned at the current second; tests move it with clock.advance()."""
    clock.set_now(datetime.now(timezone.utc).replace(microsecond=0))
    return clock


@pytest.fixture
def loopback_ip_counter(app):
    """Restore the 127.0.0.1 counter that a live-server test's failures add to (the live server
    sees every request from that address)."""
    with app.app_context():
        row = db.session.get(LoginThrottle, "ip:127.0.0.1")
        saved = None if row is None else (row.failures, row.blocked_until, row.updated_at)
    yield
    with app.app_context():
        row = db.session.get(LoginThrottle, "ip:127.0.0.1")
        if saved is None and row is not None:
            db.session.delete(row)
        elif saved is not None:
            row.failures, row.blocked_until, row.updated_at = saved
        db.session.commit()
