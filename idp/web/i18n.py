"""Languages (Flask-Babel). The catalogues are idp/translations/<language>/LC_MESSAGES/messages.po;
they are compiled once per process into a temporary folder at start, so no compiled file is kept
in the repository or needs a build step.

The language of a request: a supported tag from `ui_locales` (OIDC Core 3.1.2.1) on this request,
else the one remembered from the authorization request that led here (the login and consent
pages come later, without the parameter), else the browser's Accept-Language, else English.
"""
from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import Flask, has_request_context, request, session
from flask_babel import Babel, get_locale
from werkzeug.exceptions import RequestEntityTooLarge

TRANSLATIONS = Path(__file__).resolve().parents[1] / "translations"
DEFAULT = "en"
SESSION_KEY = "idp_locale"
_compiled: dict[str, str] = {}


@lru_cache(maxsize=1)
def languages() -> tuple[str, ...]:
    """English (the source) and every language with a catalogue (read once per process)."""
    found = sorted(p.parts[-3] for p in TRANSLATIONS.glob("*/LC_MESSAGES/messages.po")) if TRANSLATIONS.is_dir() else []
    return (DEFAULT, *[p for p in found if p != DEFAULT])


def _compile() -> str:
    """Compile every .po into .mo under a temporary folder (once per process)."""
    if "dir" not in _compiled:
        target = Path(tempfile.mkdtemp(prefix="idp-i18n-"))
        atexit.register(shutil.rmtree, target, ignore_errors=True)
        for po in TRANSLATIONS.glob("*/LC_MESSAGES/messages.po"):
            out = target / po.relative_to(TRANSLATIONS).with_suffix(".mo")
            out.parent.mkdir(parents=True, exist_ok=True)
            with po.open("rb") as source, out.open("wb") as sink:
                write_mo(sink, read_po(source, locale=po.parts[-3]))
        _compiled["dir"] = str(target)
    return _compiled["dir"]


def match_language(tags: str | None) -> str | None:
    """The first supported language in a space-separated list of BCP 47 tags (fr-CA matches fr)."""
    supported = languages()
    for tag in (tags or "").split()[:10]:
        base = tag.replace("_", "-").split("-")[0].lower()
        if base in supported:
            return base
    return None


UI_LOCALES_ENDPOINTS = {"oauth.authorize", "oauth.end_session"}


def _ui_locales() -> str | None:
    """ui_locales is an OpenID parameter of the authorization and logout endpoints, which may be
    POSTed (Core 3.1.2.1, RP-Initiated Logout 2); a query parameter anywhere else. A body too
    large to read (the 413 page is being rendered) leaves the query."""
    if request.endpoint in UI_LOCALES_ENDPOINTS:
        try:
            return request.values.get("ui_locales")
        except RequestEntityTooLarge:
            pass
    return request.args.get("ui_locales")


def select_locale() -> str:
    if not has_request_context():  # a worker or the CLI rendering a mail: the source language
        return DEFAULT
    chosen = match_language(_ui_locales())
    if chosen:
        return chosen
    remembered = session.get(SESSION_KEY)
    if remembered in languages():
        return remembered
    return request.accept_languages.best_match(languages()) or DEFAULT


def init_i18n(app: Flask) -> None:
    Babel(app, locale_selector=select_locale, default_translation_directories=_compile())

    @app.before_request
    def _remember_ui_locales():
        # Not on a POST without the browser's cookie (a cross-site one, sent again same-site by
        # oauth): a session written now would replace the browser's own.
        if request.endpoint != "oauth.authorize" or (
                request.method == "POST" and app.config["SESSION_COOKIE_NAME"] not in request.cookies):
            return
        chosen = match_language(_ui_locales())
        if chosen and session.get(SESSION_KEY) != chosen:
            session[SESSION_KEY] = chosen

    app.jinja_env.globals["current_language"] = lambda: str(get_locale() or DEFAULT)
