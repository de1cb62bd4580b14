"""Branding from configuration and operator-uploaded client logos (issue 6 item 10): all served
from our own origin."""
from __future__ import annotations

import base64
import dataclasses

import pytest

from idp import create_app
from idp.config import ConfigError, from_env
from idp.extensions import db
from idp.oauth.clients import ClientRejected, find_client, set_logo
from tests.helpers.rp import RelyingParty
from tests.oauth.flows import is_consent_page, signed_in_browser

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


@pytest.fixture(scope="module")
def branded(settings, app, tmp_path_factory):  # app: migrated
    logo = tmp_path_factory.mktemp("brand") / "logo.png"
    logo.write_bytes(PNG)
    return create_app(dataclasses.replace(settings, product_name="Acme ID", accent_color="#aa0000",
                                          logo_file=str(logo), terms_url="https://acme.example/terms",
                                          privacy_url="https://acme.example/privacy"))


def test_pages_carry_the_configured_name_logo_and_links(branded):
    web = branded.test_client()
    issuer = branded.config["IDP_SETTINGS"].issuer
    page = web.get("/login", base_url=issuer).get_data(as_text=True)
    assert "Acme ID" in page and 'src="/branding/logo"' in page and 'href="/branding.css"' in page
    assert 'href="https://acme.example/terms"' in page and 'href="https://acme.example/privacy"' in page
    css = web.get("/branding.css", base_url=issuer)
    assert css.status_code == 200 and css.mimetype == "text/css" and b"--accent: #aa0000" in css.data
    logo = web.get("/branding/logo", base_url=issuer)
    assert logo.status_code == 200 and logo.mimetype == "image/png" and logo.data == PNG
    assert logo.headers["X-Content-Type-Options"] == "nosniff"


def test_without_a_logo_there_is_no_logo(client):
    assert client.get("/branding/logo").status_code == 404
    assert "terms" not in client.get("/login").get_data(as_text=True).lower()


@pytest.mark.parametrize("overrides, variable", [
    ({"accent_color": "red"}, "IDP_ACCENT_COLOR"), ({"accent_color": "#12345"}, "IDP_ACCENT_COLOR"),
    ({"logo_file": "/etc/passwd"}, "IDP_LOGO_FILE"), ({"logo_file": "/nonexistent.png"}, "IDP_LOGO_FILE"),
    ({"terms_url": "http://acme.example/terms"}, "IDP_TERMS_URL"),
    ({"privacy_url": "javascript:alert(1)"}, "IDP_PRIVACY_URL"), ({"product_name": ""}, "IDP_PRODUCT_NAME")])
def test_bad_branding_settings_stop_start_up(tmp_path, overrides, variable):
    with pytest.raises(ConfigError, match=variable):
        from_env({"IDP_ENV": "development", "IDP_INSTANCE_PATH": str(tmp_path)}, **overrides)


def test_an_operator_logo_shows_on_the_consent_page_from_our_origin(live_server, app, make_user, make_client):
    client = make_client(name="Logo app")
    with app.app_context():
        set_logo(find_client(client["client_id"]), PNG)
        db.session.commit()
    browser = signed_in_browser(live_server, make_user())
    page = browser.get(RelyingParty(live_server, client).authorization_url())
    assert is_consent_page(page)
    assert f'src="/clients/{client["client_id"]}/logo"' in page.text
    logo = browser.get(f"{live_server}/clients/{client['client_id']}/logo")
    assert logo.status_code == 200 and logo.headers["Content-Type"] == "image/png" and logo.content == PNG
    assert browser.get(f"{live_server}/clients/no-such-client/logo").status_code == 404


@pytest.mark.parametrize("image", [b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>",
                                   b"GIF89a" + b"x" * (100 * 1024), b"not an image"])
def test_svg_oversized_or_unknown_logos_are_refused(app, make_client, image):
    client = make_client()
    with app.app_context():
        with pytest.raises(ClientRejected):
            set_logo(find_client(client["client_id"]), image)
