"""Self-service passkeys and security keys: list, add, rename, remove.

Adding or removing one changes how the account can be entered, so it needs a recent sign-in
(IDP_MFA_RECENT_AUTH_SECONDS); renaming does not. Removing the last passkey is refused when it
would leave no way in (no password) or no second factor where two are required (IDP_MFA_REQUIRED,
or a connected app that requires them: account.second_factor). An account holds at most
passkeys.MAX_PER_ACCOUNT: a full one is told so instead of offered another. Every change is an
audit event (in authn.passkeys); adding and removing one are also mailed to the person
(users.notices).
Removals hold the person's factors while they check and delete (account.second_factor), so two
at once cannot both remove what was meant to stay."""
from __future__ import annotations


from flask import Response, redirect, render_template, request, url_for

from idp import audit
from idp.account.second_factor import hold_factors, second_factor_requirement
from idp.account.views import bp, reauth_url
from idp.authn import passkeys, recovery, steps
from idp.authn.errors import PasskeyFailed, TooManyPasskeys
from idp.authn.factors import enrolled_factors, has_second_factor
from idp.authn.session import add_factor, current_session, is_recent
from idp.extensions import db
from idp.models import SsoSession
from idp.users import notices
from idp.web.errors import PageError
from idp.web.forms import form_value
from idp.web.templating import N_
from idp.web.templating import gettext as _

REGISTER_FAILED = N_("That passkey could not be added. Try again, or use another one.")
LAST_FACTOR = N_("This is your last way to sign in with two steps. Add another passkey or an authenticator app first.")
LAST_FACTOR_APP = N_("%(app)s requires two-step sign-in. Add another passkey or an authenticator app first, "
                     "or disconnect the app.")
LAST_WAY_IN = N_("This passkey is your only way to sign in. Add another passkey or set a password first.")


def _full() -> str:
    return _(passkeys.FULL, n=passkeys.MAX_PER_ACCOUNT)


def _page(row: SsoSession, errors: dict | None = None, status: int = 200):
    credentials = passkeys.credentials_of(row.user)
    return render_template("account/passkeys.html", user=row.user, credentials=credentials,
                           recent=is_recent(row), errors=errors or {},
                           full=_full() if len(credentials) >= passkeys.MAX_PER_ACCOUNT else None,
                           reauth_url=reauth_url(row, url_for("account.passkeys_page"))), status


def _signed_in() -> SsoSession | Response:
    row = current_session()
    return row if row is not None else redirect(url_for("authn.login", next=url_for("account.passkeys_page")))


def _recently_signed_in() -> SsoSession:
    row = current_session()
    if row is None or not is_recent(row):
        raise PageError(_("Sign in again to change how you sign in, then try once more."), 403)
    return row


def _removal_refused(user, credential_id: int) -> tuple[str, str] | None:
    """Why this passkey must stay (the message, and what requires it), or None. IDP_MFA_REQUIRED,
    or a connected app that requires two factors, makes a second factor a must. Only once the
    person's factors are held (hold_factors), so the answer still holds at the commit."""
    if any(other.id != credential_id for other in passkeys.credentials_of(user)):
        return None
    factors = enrolled_factors(user)
    if steps.PASSWORD not in factors:
        return _(LAST_WAY_IN), "last_way_in"
    need = second_factor_requirement(user) if steps.TOTP not in factors else None
    if need is None:
        return None
    if need.app is None:
        return _(LAST_FACTOR), "mfa_required"
    return _(LAST_FACTOR_APP, app=need.app), need.client_id


@bp.route("/account/passkeys")
def passkeys_page():
    row = _signed_in()
    return row if isinstance(row, Response) else _page(row)


@bp.route("/account/passkeys/options", methods=["POST"])
def passkey_registration_options():
    row = _recently_signed_in()
    try:
        options = passkeys.registration_options(row.user)
    except TooManyPasskeys:
        raise PageError(_full(), 409) from None
    db.session.commit()
    return Response(options, mimetype="application/json")


@bp.route("/account/passkeys", methods=["POST"])
def passkey_add():
    row = _recently_signed_in()
    try:
        proof = passkeys.register(row.user, request.form.get("credential", "")[:passkeys.MAX_CREDENTIAL],
                                  form_value("name", max_length=passkeys.NAME_MAX))[1]
    except PasskeyFailed as failed:
        db.session.commit()  # the challenge is spent and the failure audited
        if isinstance(failed, TooManyPasskeys):  # filled up since the options, e.g. in another tab
            return _page(row, {"form": _full()}, 409)
        return _page(row, {"form": _(REGISTER_FAILED)}, 400)
    # The first second factor comes with recovery codes, as with an authenticator app.
    codes = recovery.issue_recovery_codes(row.user) if recovery.remaining_codes(row.user) == 0 else None
    add_factor(row, proof)  # the ceremony proved the passkey: the session counts it (account.views)
    notices.notify_sign_in_change(row.user, notices.PASSKEY_ADDED, *([notices.RECOVERY_CODES_MADE] if codes else []))
    db.session.commit()
    if codes:
        return render_template("authn/recovery_codes.html", codes=codes, continue_url=None)
    return redirect(url_for("account.passkeys_page"), 303)


@bp.route("/account/passkeys/<int(max=2147483647):credential>/rename", methods=["POST"])
def passkey_rename(credential: int):
    row = _signed_in()
    if isinstance(row, Response):
        return row
    found = passkeys.find_credential(row.user, credential)
    if found is None:
        raise PageError(_("This passkey does not exist. Go back to your passkeys."), 404)
    name = form_value("name", max_length=passkeys.NAME_MAX)
    if not name:
        return _page(row, {f"name-{found.id}": _("Give the passkey a name.")}, 400)
    passkeys.rename(found, name)
    db.session.commit()
    return redirect(url_for("account.passkeys_page"), 303)


@bp.route("/account/passkeys/<int(max=2147483647):credential>/delete", methods=["POST"])
def passkey_delete(credential: int):
    row = _recently_signed_in()
    found = passkeys.find_credential(row.user, credential)
    if found is None:
        raise PageError(_("This passkey does not exist. Go back to your passkeys."), 404)
    hold_factors(row.user)  # a racing removal (the app, another passkey) waits, or this one does
    refusal = _removal_refused(row.user, found.id)
    if refusal:
        message, required_by = refusal
        audit.record("authn.passkey.removal_refused", outcome="failure", user=row.user, credential=found.id,
                     required_by=required_by)
        db.session.commit()
        return _page(row, {"form": message}, 409)
    if not passkeys.remove(found):  # a racing request (a double click) removed it first: no error
        db.session.commit()
        return redirect(url_for("account.passkeys_page"), 303)
    discarded = 0
    if not has_second_factor(row.user):
        discarded = recovery.discard_recovery_codes(row.user)  # they stood in for the second factor now gone
    notices.notify_sign_in_change(row.user, notices.PASSKEY_REMOVED,
                                  *([notices.RECOVERY_CODES_REMOVED] if discarded else []))
    db.session.commit()
    return redirect(url_for("account.passkeys_page"), 303)
