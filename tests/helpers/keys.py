"""Signing keys as an operator changes them: `idp keys rotate [--alg ALG] [--now]`, and
IDP_KEYS_ALG set on the running app (the session app, so its live server too)."""
from __future__ import annotations

import dataclasses

from idp.extensions import db
from idp.keys import rotate


def rotate_keys(app, alg: str | None = None, immediate: bool = True) -> dict[str, str]:
    """As `idp keys rotate [--alg ALG] [--now]`: the new kids by alg."""
    with app.app_context():
        rows = rotate(app.config["IDP_SETTINGS"], alg, immediate=immediate)
        db.session.commit()
        return {row.alg: row.kid for row in rows}


def use_keys_alg(app, alg: str) -> dict[str, str]:
    """IDP_KEYS_ALG=alg on the app, then `idp keys rotate --now` (which retires the keys of an
    alg given up): the new kids by alg."""
    app.config["IDP_SETTINGS"] = dataclasses.replace(app.config["IDP_SETTINGS"], keys_alg=alg)
    return rotate_keys(app)
