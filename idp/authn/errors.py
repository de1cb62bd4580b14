"""Sign-in failures; the views turn each into words."""
from idp.web.templating import gettext as _


def wait_message(seconds: int) -> str:
    """What a person reads while a back-off lasts (Throttled.retry_after seconds)."""
    return _("Too many attempts. Wait %(s)s seconds and try again.", s=seconds)


class AuthnError(Exception):
    """Base for sign-in failures; the view turns each into words."""


class LoginFailed(AuthnError):
    """Wrong login or password, or a disabled account: one message for all (reason is for audit)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Throttled(AuthnError):
    def __init__(self, retry_after: int):
        super().__init__(f"retry after {retry_after}s")
        self.retry_after = retry_after


class PasskeyFailed(AuthnError):
    """A WebAuthn ceremony did not verify: one message for people, the reason is for audit."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class TooManyPasskeys(PasskeyFailed):
    """The account holds passkeys.MAX_PER_ACCOUNT already: one must go before another is added."""

    def __init__(self):
        super().__init__("too_many_passkeys")


class LoginGone(AuthnError):
    """The login in progress ended (finished, given up or expired) while this request was working
    on it, usually in a racing request from the same browser. Nothing of this request is kept
    unless it was committed on purpose before (a wrong code still counts, a one-time factor stays
    spent: authn.flow); the person is asked to sign in again."""

    def __init__(self, next_path: str | None = None):
        super().__init__("login in progress is gone")
        self.next_path = next_path


class RateLimited(AuthnError):
    """A request past a fixed-window limit (authn.rate_limits); nothing of it was done."""

    def __init__(self, retry_after: int):
        super().__init__(f"retry after {retry_after}s")
        self.retry_after = retry_after


class LinkRefused(AuthnError):
    """This browser did not prove it can enter the account an emailed link confirms an address
    for (authn.link_proof); the link stays usable. reason is for audit."""

    reason = "no_proof"


class OtherAccount(LinkRefused):
    """The browser is signed in to another account (signed_in_as, its id) than the link's."""

    reason = "other_account"

    def __init__(self, signed_in_as: int):
        super().__init__(self.reason)
        self.signed_in_as = signed_in_as


class WrongPassword(LinkRefused):
    reason = "bad_password"
