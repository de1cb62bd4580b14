"""Blueprint "account": the account home and linked identities; the other pages join it from
their modules (passkeys, security, sessions, profile, privacy).

Two rules hold for every account page:
- Under IDP_MFA_REQUIRED a session below urn:idp:acr:mfa (made before the setting was turned on,
  or by an upstream provider that reported one factor) is not treated as signed in here: each
  page sends it through the same step-up a client's /authorize uses (authn.login with step_up,
  acr and required): the person proves their second factor, or sets one up at /login/totp/enrol
  or /login/passkey/enrol (then gets recovery codes), and comes back with an MFA session. Signing
  out (/logout) and the login pages themselves are authn pages and stay open.
- "Sign in again" (reauth_url) asks for a whole new login that must reach the level the session
  has now (acr and required = the session's acr), so re-authenticating never lowers it, and at
  least two factors for a person who has a second one: the sensitive pages count a sign-in as
  recent only at that level (authn.session.is_recent).
- Setting up an authenticator app or a passkey proves it (a code, a ceremony): the session is
  raised as a step-up would raise it (authn.session.add_factor), so the next change needs no new
  sign-in."""
from flask import Blueprint, current_app, redirect, render_template, request, url_for

from idp.authn import steps
from idp.authn.session import change_level, current_session, end_other_sessions, is_recent
from idp.extensions import db
from idp.federation import linking
from idp.federation.errors import LastWayToSignIn
from idp.users import profile
from idp.web.errors import PageError
from idp.web.templating import gettext as _

bp = Blueprint("account", __name__)


def reauth_url(row, next_path: str) -> str:
    """The sign-in that refreshes a session for sensitive changes: a new login that must reach at
    least the session's present level (a passkey session needs the passkey again) and the level
    changes need (session.change_level: two factors for a person who has a second one)."""
    level = steps.stronger(row.acr, change_level(row.user)) if row is not None else None
    return url_for("authn.login", next=next_path, reauth=1, acr=level, required=level)


def sign_out_elsewhere(row) -> int:
    """End the person's other sessions (how many) and the email change one of them may have asked
    for, which dies with it; the caller commits."""
    ended = end_other_sessions(row.user_id, row.id)
    profile.cancel_email_change(row.user)
    return ended


@bp.before_request
def _require_mfa():
    """IDP_MFA_REQUIRED: a session below MFA goes through the step-up first (see the docstring).
    A page reached by POST returns to the account home, since the login ends with a GET."""
    if not current_app.config["IDP_SETTINGS"].mfa_required:
        return None
    row = current_session()
    if row is None or steps.meets(row.acr, steps.ACR_MFA):
        return None  # signed out: each page sends the person to sign in as before
    target = request.path if request.method == "GET" else url_for("account.home")
    return redirect(url_for("authn.login", next=target, acr=steps.ACR_MFA, required=steps.ACR_MFA, step_up=1),
                    302 if request.method == "GET" else 303)


@bp.route("/account")
def home():
    row = current_session()
    if row is None:
        return redirect(url_for("authn.login", next=request.path))
    return render_template("account/home.html", user=row.user, session=row,
                           linked=linking.linked_identities(row.user_id))


@bp.route("/account/linked/<int(max=2147483647):link_id>/unlink", methods=["POST"])
def unlink(link_id: int):
    row = current_session()
    if row is None:
        return redirect(url_for("authn.login", next=url_for("account.home")), 303)
    if not is_recent(row):  # a way to sign in goes: as for a passkey or the app, a recent sign-in
        return redirect(reauth_url(row, url_for("account.home")), 303)
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
