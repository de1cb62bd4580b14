"""Every page and email is translatable; French is complete (issue 6 item 9)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.frontend import CommandLineInterface  # noqa: F401  (pybabel is installed)
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from idp.web.i18n import TRANSLATIONS, languages, match_language
from tests.authn.web import Web
from tests.helpers.forms import csrf_token
from tests.helpers.rp import discovery

ROOT = Path(__file__).resolve().parents[1]
METHODS = [("idp/**.py", "python"), ("templates/**.html", "jinja2"), ("templates/**.txt", "jinja2")]
KEYWORDS = {"_": None, "gettext": None, "N_": None}
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def source_messages() -> set[str]:
    return {message for _, _, message, _, _ in extract_from_dir(str(ROOT), METHODS, keywords=KEYWORDS)
            if isinstance(message, str) and message}


@pytest.mark.parametrize("language", [lang for lang in languages() if lang != "en"])
def test_every_message_is_translated_with_the_same_placeholders(language):
    with (TRANSLATIONS / language / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        catalog = read_po(handle, locale=language)
    translated = {m.id: m.string for m in catalog if m.id}
    missing = sorted(m for m in source_messages() if not translated.get(m))
    assert not missing, f"untranslated in {language} (run `make translations`, then translate): {missing[:10]}"
    for message_id, text in translated.items():
        assert sorted(PLACEHOLDER.findall(message_id)) == sorted(PLACEHOLDER.findall(text)), message_id


def test_french_is_offered_and_advertised(live_server):
    assert set(languages()) >= {"en", "fr"}
    assert discovery(live_server)["ui_locales_supported"] == list(languages())


@pytest.mark.parametrize("tags, expected", [("fr", "fr"), ("de fr-CA", "fr"), ("en-GB", "en"), ("de", None),
                                            ("", None), (None, None), ("x" * 500, None)])
def test_ui_locales_match_the_first_supported_language(tags, expected):
    assert match_language(tags) == expected


def test_the_browser_language_picks_the_page_language(app):
    web = Web(app)
    page = web.get("/login", headers={"Accept-Language": "fr-FR,fr;q=0.9,en;q=0.5"}).get_data(as_text=True)
    assert '<html lang="fr">' in page and "Se connecter" in page and "Mot de passe oublié ?" in page
    english = Web(app).get("/login", headers={"Accept-Language": "de, en;q=0.5"}).get_data(as_text=True)
    assert '<html lang="en">' in english and "Sign in" in english


def test_ui_locales_of_the_authorization_request_carry_to_the_login_page(app, make_client):
    client = make_client()
    web = Web(app)
    response = web.get("/authorize", query_string={"response_type": "code", "client_id": client["client_id"],
                                                   "redirect_uri": client["redirect_uri"], "scope": "openid",
                                                   "ui_locales": "fr", "code_challenge": "x" * 43,
                                                   "code_challenge_method": "S256"},
                       headers={"Accept-Language": "en"})
    assert response.status_code == 302
    login = web.get(response.headers["Location"], headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert '<html lang="fr">' in login and "Se connecter" in login


def test_form_errors_and_emails_follow_the_language(app, make_user, mailbox):
    user = make_user()
    web = Web(app)
    french = {"Accept-Language": "fr"}
    page = web.get("/login", headers=french).get_data(as_text=True)
    failed = web.post("/login", headers=french, data={"csrf_token": csrf_token(page), "login": user["username"],
                                                      "password": "wrong password"})
    assert "Le nom d&#39;utilisateur" in failed.get_data(as_text=True) or \
        "Le nom d'utilisateur" in failed.get_data(as_text=True)
    form = web.get("/forgot-password", headers=french).get_data(as_text=True)
    web.post("/forgot-password", headers=french, data={"csrf_token": csrf_token(form), "login": user["email"]})
    message = mailbox.last(app, user["email"])
    assert message["Subject"] == "Choisir un nouveau mot de passe"
    assert "Bonjour" in message.get_body(preferencelist=("plain",)).get_content()


def test_every_template_compiles(app):
    """A template that does not parse would also be skipped silently by message extraction."""
    names = [name for name in app.jinja_env.list_templates() if name.endswith((".html", ".txt"))]
    assert len(names) > 20
    for name in names:
        app.jinja_env.get_template(name)
