import pytest

from tests.authn.web import Web


@pytest.fixture
def web(app):
    """A fresh browser with its own client IP."""
    return Web(app)
