from flask import Blueprint, redirect, render_template, request, url_for

from idp.authn.session import current_session
from idp.extensions import db
from idp.federation import linking
from idp.federation.errors import LastWayToSignIn
from idp.web.errors import PageError
from idp.web.templating import gettext as _

bp = Blueprint("account", __name__)


@bp.route("/account")
def home():
    row = current_session()
    if row is None:
        return redirect(url_for("authn.login", next=request.path))
    return render_template("account/home.html", user=row.user, session=row,
                           linked=linking.linked_identities(row.user_id))


@bp.route("/account/linked/<int:link_id>/unlink", methods=["POST"])
def unlink(link_id: int):
    row = current_session()
    if row is None:
        return redirect(url_for("authn.login", next=url_for("account.home")), 303)
    try:
        removed = linking.unlink(row.user, link_id)
    except LastWayToSignIn:
        raise PageError(_("This is the only way you can sign in, so it cannot be unlinked. "
                          "Set a password or link another provider first."), 409) from None
    if removed is None:
        raise PageError(_("This linked account does not exist. Go back to your account page."), 404)
    db.session.commit()
    return redirect(url_for("account.home"), 303)


from idp.account import passkeys  # noqa: E402,F401  (adds the passkey pages to bp)
from idp.account import security  # noqa: E402,F401  (adds the security pages to bp)
