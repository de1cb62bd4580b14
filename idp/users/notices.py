"""Tell the person when how their account signs in changed: the password, the authenticator app,
a passkey, recovery codes, a linked upstream account. A stolen or unattended session could make
these changes unseen; one mail to the account's address per change makes them visible to the
owner, with what to do if it was not them. The mail names what changed and when, never a secret
(no code, no key id, no passkey name)."""
from __future__ import annotations

from flask import current_app

from idp import mail
from idp.clock import now
from idp.models import User
from idp.web.templating import N_
from idp.web.templating import gettext as _

PASSWORD_CHANGED = "password_changed"
TOTP_ADDED = "totp_added"
TOTP_REMOVED = "totp_removed"
PASSKEY_ADDED = "passkey_added"
PASSKEY_REMOVED = "passkey_removed"
RECOVERY_CODES_MADE = "recovery_codes_made"
RECOVERY_CODES_REMOVED = "recovery_codes_removed"
IDENTITY_LINKED = "identity_linked"
IDENTITY_UNLINKED = "identity_unlinked"
OTHER_SESSIONS_ENDED = "other_sessions_ended"
ALL_SESSIONS_ENDED = "all_sessions_ended"
APPS_DISCONNECTED = "apps_disconnected"
USERNAME_CHANGED = "username_changed"

CHANGES = {
    PASSWORD_CHANGED: N_("Your password was changed."),
    TOTP_ADDED: N_("An authenticator app was set up for two-step sign-in."),
    TOTP_REMOVED: N_("The authenticator app was removed: its codes no longer work."),
    PASSKEY_ADDED: N_("A passkey was added: it can now be used to sign in."),
    PASSKEY_REMOVED: N_("A passkey was removed: it can no longer be used to sign in."),
    RECOVERY_CODES_MADE: N_("A new set of recovery codes was made: any earlier codes no longer work."),
    RECOVERY_CODES_REMOVED: N_("Your recovery codes were removed, as no second step is set up any more."),
    IDENTITY_LINKED: N_("Your %(provider)s account was linked: it can now sign in to this account."),
    IDENTITY_UNLINKED: N_("Your %(provider)s account was unlinked: it can no longer sign in to this account."),
    OTHER_SESSIONS_ENDED: N_("Every other session of your account was signed out."),
    ALL_SESSIONS_ENDED: N_("Every session of your account was signed out: sign in again with the new password."),
    APPS_DISCONNECTED: N_("Apps that were signed in to your account elsewhere lost their access."),
    USERNAME_CHANGED: N_("Your username was changed: sign in with the new one, or with your email address."),
}
RESET_PATH = "/forgot-password"


def notify_sign_in_change(user: User, *changes: str, provider: str | None = None) -> None:
    """Queue one `security_changed` mail listing `changes` (keys of CHANGES) in the language of
    this request; nothing when the account has no address. The caller commits, so a change that
    is rolled back sends nothing. `provider`: the upstream's display name, for the link changes."""
    if not user.email or not changes:
        return
    lines = [_(CHANGES[change], provider=provider) if "%(provider)s" in CHANGES[change] else _(CHANGES[change])
             for change in changes]
    mail.send(user.email, "security_changed", user=user, changes=lines,
              when=now().strftime("%Y-%m-%d %H:%M UTC"),
              reset_link=current_app.config["IDP_SETTINGS"].issuer + RESET_PATH)
