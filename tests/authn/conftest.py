from datetime import datetime, timezone

import pytest

from idp import clock
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
