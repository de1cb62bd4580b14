"""A relying party web app (tests/helpers/rp_app.py) beside the live provider, and its clients."""
import pytest

from idp import clock
from tests.helpers.rp_app import RelyingPartyApp, RpClient


@pytest.fixture(scope="module")
def relying_party(live_server):
    """One app per module; its clock is the pinned one the provider reads (idp.clock)."""
    app = RelyingPartyApp(live_server, now=clock.timestamp)
    app.start()
    yield app
    app.stop()


@pytest.fixture
def make_rp(relying_party, make_client):
    """A client registered at the provider for the app's callback, and in the app (make_client's
    options, plus the scope the app asks for and its token endpoint auth method)."""
    def make(scope="openid profile email", auth_method=None, **client_options) -> RpClient:
        name = relying_party.new_name()
        if auth_method and auth_method != "client_secret_basic":
            client_options["token_endpoint_auth_method"] = auth_method
        client = make_client(redirect_uris=[relying_party.redirect_uri(name)], **client_options)
        method = auth_method or ("none" if client["public"] else "client_secret_basic")
        return relying_party.add(name, client, scope, method)
    return make
