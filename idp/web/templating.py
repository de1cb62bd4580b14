"""Template globals: the translation function and the product name."""
from __future__ import annotations

from flask import Flask


def gettext(message: str, **values) -> str:
    """Identity translation for now; every string people read goes through it."""
    return message % values if values else message


def init_templating(app: Flask) -> None:
    app.jinja_env.globals["_"] = gettext
    app.jinja_env.globals["product_name"] = app.config["IDP_SETTINGS"].product_name
