from flask import Blueprint, redirect, render_template, request, url_for

from idp.authn.session import current_session

bp = Blueprint("account", __name__)


@bp.route("/account")
def home():
    row = current_session()
    if row is None:
        return redirect(url_for("authn.login", next=request.path))
    return render_template("account/home.html", user=row.user, session=row)


from idp.account import passkeys  # noqa: E402,F401  (adds the passkey pages to bp)
from idp.account import security  # noqa: E402,F401  (adds the security pages to bp)
