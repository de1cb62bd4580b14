import pytest

from tests.authn.fakes import counting_hasher as counting
from tests.authn.web import Web


@pytest.fixture
def web(app):
    """A fresh browser with its own client IP."""
    return Web(app)


@pytest.fixture
def counting_hasher(app):
    with counting(app) as counter:
        yield counter
