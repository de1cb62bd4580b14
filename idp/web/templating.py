"""Template globals and the translation functions every room uses for words people read."""
from __future__ import annotations

from flask import Flask, has_request_context
from flask_babel import gettext as _babel_gettext


def gettext(message: str, **values) -> str:
    """`message` in the language of this request (idp.web.i18n picks it), with %(name)s values."""
    if has_request_context():
        return _babel_gettext(message, **values)
    return message % values if values else message


def N_(message: str) -> str:  # noqa: N802 - the conventional name extraction tools look for
    """Marks a constant for translation where it is defined; translate it with gettext() where used."""
    return message


def init_templating(app: Flask) -> None:
    app.jinja_env.globals["product_name"] = app.config["IDP_SETTINGS"].product_name
