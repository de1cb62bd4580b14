"""Who may use an emailed link that confirms an address (verify_email and change_email): only a
browser that proves it can enter the account the link belongs to.

A link mailed to an address proves that someone reads the mailbox, not that the reader owns the
account. Someone may register the victim's address here with their own password (and their own
second factor); the mail asks the victim to confirm "their" address, and one click would make the
squatter's account verified. Then the victim's sign-in through a trusted upstream that asserts the
same verified address is linked into it (federation.linking), or, with
IDP_EMAIL_VERIFICATION_REQUIRED, the squatter may now sign in: pre-account hijacking, the
classic-federated merge (Sudhodanan and Paverd, 2022). An email change's link is the same attack
the other way round: the owner of an account asks to move it to the victim's address, and the
victim's click gives that account the victim's verified address. So a link confirms only when the
browser pressing its button

(a) holds an SSO session of the link's account; or
(b) proved a way into that account in this browser session at most RECENT_PROOF ago, where a
    sign-in (password, passkey, upstream) or the registration itself stopped short of a session
    because IDP_EMAIL_VERIFICATION_REQUIRED (authn.flow.remember_unverified); or
(c) sends the account's current password with the form, checked by password.confirm_password on
    the account's sign-in counters, so the sign-in back-off applies to guesses made here too: this
    is how a person confirms on another device.

A browser signed in to another account is refused whatever it sends, and told to sign out first:
the person at it is, as far as we know, someone else. An account without a password (made through
an upstream, or with a passkey only) confirms through (a) or (b). A person who can prove none of
these because someone else made the account uses "Forgot your password?" instead: the first reset
of an unverified account takes it back (users.recovery.reset_password removes every way to sign in
set up before the mailbox was proved, the reset page ends every session, grants are revoked).

Nothing here tells more than the link already does: the pages show no username or address, every
link without a proof in the browser asks for a password (whether the account has one or not), and
a wrong password is refused like a sign-in is. A refusal leaves the link usable; a GET never uses
it up (mail scanners fetch links)."""
from __future__ import annotations

from datetime import timedelta

from idp.authn import flow
from idp.authn import session as sso
from idp.authn.errors import LinkRefused, OtherAccount, WrongPassword
from idp.authn.password import confirm_password
from idp.models import User

RECENT_PROOF = timedelta(minutes=15)
SESSION, RECENT_SIGN_IN, PASSWORD = "session", "recent_sign_in", "password"


def proof_in_browser(user: User) -> str | None:
    """How this browser already proved it can enter `user`'s account: SESSION (a) or
    RECENT_SIGN_IN (b); None when it did not. Raises OtherAccount when it is signed in to
    another account."""
    current = sso.current_user()
    if current is not None:
        if current.id != user.id:
            raise OtherAccount(current.id)
        return SESSION
    if flow.unverified_user_id(within=RECENT_PROOF) == user.id:
        return RECENT_SIGN_IN
    return None


def prove(user: User, password: str) -> str:
    """The proof that lets this browser use a link of `user`'s: the browser's own, else the
    password sent with the form (c). Raises OtherAccount, LinkRefused (no password sent),
    WrongPassword, or authn.errors.Throttled while the account's back-off lasts. The caller
    commits, also after a wrong password (so that it counts)."""
    proof = proof_in_browser(user)
    if proof is not None:
        return proof
    if not password:
        raise LinkRefused()
    if not confirm_password(user, password):
        raise WrongPassword()
    return PASSWORD
