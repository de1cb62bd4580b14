"""Branding from configuration: the product name, an accent colour and a logo, all served from
our own origin (the CSP allows nothing else, and our pages make no outside requests)."""
from __future__ import annotations

from pathlib import Path

from flask import Flask, Response, abort

from idp.config import LOGO_TYPES


def init_branding(app: Flask) -> None:
    settings = app.config["IDP_SETTINGS"]
    css = f":root {{ --accent: {settings.accent_color}; }}\n".encode()
    logo = Path(settings.logo_file).read_bytes() if settings.logo_file else None
    logo_type = LOGO_TYPES.get(Path(settings.logo_file).suffix.lower()) if logo else None

    def branding_css():
        return Response(css, mimetype="text/css", headers={"Cache-Control": "public, max-age=3600"})

    def branding_logo():
        if logo is None:
            abort(404)
        return Response(logo, mimetype=logo_type, headers={"Cache-Control": "public, max-age=3600"})

    app.add_url_rule("/branding.css", "branding_css", branding_css)
    app.add_url_rule("/branding/logo", "branding_logo", branding_logo)
    app.jinja_env.globals.update(product_name=settings.product_name, has_logo=logo is not None,
                                 terms_url=settings.terms_url, privacy_url=settings.privacy_url)
